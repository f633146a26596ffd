"""Component configs: the pieces of `algos.AgentConfig` that their own modules define and check.

A component is a frozen dataclass deriving from `Component`. It checks its own fields
(`problems`: one message per bad field, every numeric field range-checked) and may name the
fields that a configuration never reads although they exist (`unread`, for the few choices that
cannot be structural). A *choice* is a family of components under one base class (e.g.
`rollout_schemes.RolloutConfig` with `Short` and `Persistent`): each concrete member sets the
class variable `kind`, the name the command line, presets and config.json use
(`--agent.rollout persistent`). A knob exists only in the members that read it: the algorithm
itself is a choice (`algos.common.AlgoConfig`: `--agent.algo pspo`), and PSPO's reference weight
is `--agent.algo.behaviour_weight`, which does not exist under RRPI. What cannot be structural is
said by the owning component's `unread` (a PSPO config never reads a fixed temperature's alpha;
BC, which trains no critic and no model, names the shared fields it never reads); there is no
other list of which knob applies where.

A research fork adds a member in one file: subclass the base, set `kind`, and register the
functions under the same name in the base's registry (e.g. `rollout_schemes.ROLLOUT_SCHEMES`).

In JSON a component is a dict of its fields; a member of a choice also holds "kind".
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, ClassVar, Mapping

from jaxrl_bayes.errors import UserError
from jaxrl_bayes.registry import closest

KIND = "kind"  # the key of a choice member's name in JSON


@dataclasses.dataclass(frozen=True)
class Component:
    """Base of every component config. `kind` is set by the concrete members of a choice."""

    kind: ClassVar[str] = ""

    def problems(self) -> list[str]:
        """One message per bad field (relative names); [] when all are valid."""
        return []

    def unread(self, config: Any) -> frozenset[str]:
        """The fields (relative names) that `config` (the whole AgentConfig) never reads."""
        del config
        return frozenset()


def is_choice(base: type) -> bool:
    """Whether `base` is the base of a choice (it has concrete members with a `kind`)."""
    return isinstance(base, type) and issubclass(base, Component) and not base.kind and bool(choices(base))


def choices(base: type) -> dict[str, type]:
    """{kind: class} of the concrete members of the choice `base` (every subclass with a kind)."""
    out: dict[str, type] = {}
    todo = [base]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.kind and sub.kind not in out:
                out[sub.kind] = sub
            todo.append(sub)
    return out


def choose(base: type, kind: str, where: str) -> type:
    """The member `kind` of the choice `base`, or a one-line `UserError` listing the members."""
    members = choices(base)
    if kind not in members:
        raise UserError(f"{where} = {kind!r} is not a choice; choose one of: {', '.join(members)}"
                        f"{closest(kind, members)}")
    return members[kind]


def field_types(cls: type) -> dict[str, Any]:
    """{field: type} of a dataclass, `Annotated` unwrapped."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def component_fields(obj: Any) -> dict[str, Any]:
    """{name: value} of the fields of `obj` that are components."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if isinstance(getattr(obj, f.name), Component)}


def numeric_problems(obj: Any, rules: Mapping[str, tuple[Any, str]], optional: tuple[str, ...] = ()) -> list[str]:
    """Range checks: `rules` maps a field to (predicate, rule text); NaN and inf are refused; a
    field in `optional` may be None."""
    out = []
    for name, (ok, rule) in rules.items():
        value = getattr(obj, name)
        if value is None and name in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
            out.append(f"{name} must be finite and {rule}, got {value}")
    return out


UNIT = (lambda v: 0.0 < v <= 1.0, "in (0, 1]")
PROBABILITY = (lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
POSITIVE = (lambda v: v > 0.0, "> 0")
NONNEGATIVE = (lambda v: v >= 0.0, ">= 0")
AT_LEAST_ONE = (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
COUNT = (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")


def all_problems(obj: Any, prefix: str) -> list[str]:
    """`obj.problems()` and those of its component fields, recursively, named by dotted path."""
    out = [f"{prefix}.{p}" for p in obj.problems()] if isinstance(obj, Component) else []
    for name, sub in component_fields(obj).items():
        out += all_problems(sub, f"{prefix}.{name}")
    return out


def to_json(obj: Any) -> Any:
    """A dataclass (with component fields) as JSON: dicts of fields, "kind" for choice members,
    tuples as lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {KIND: obj.kind} if isinstance(obj, Component) and obj.kind else {}
        out.update({f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
        return out
    if isinstance(obj, (tuple, list)):
        return [to_json(v) for v in obj]
    return obj


def paths(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted path: value} of every leaf field of `obj`, and of every choice's kind (at the
    choice's own path)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value, path = getattr(obj, f.name), prefix + f.name
        if isinstance(value, Component):
            if value.kind:
                out[path] = value.kind
            out.update(paths(value, path + "."))
        else:
            out[path] = value
    return out


def replace_path(obj: Any, path: str, value: Any, where: str = "") -> Any:
    """`obj` with the field at dotted `path` set to `value` (a kind string at a choice's path
    swaps the member, keeping the fields the two members share); a path that does not exist
    under the chosen members is a one-line `UserError`."""
    head, _, rest = path.partition(".")
    names = {f.name for f in dataclasses.fields(obj)}
    if head not in names:
        kind = f" under {obj.kind!r}" if isinstance(obj, Component) and obj.kind else ""
        there = f"fields there: {', '.join(sorted(names))}" if names else "it has no fields"
        raise UserError(f"{where or path}: no field {head!r}{kind}; {there}")
    current = getattr(obj, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise UserError(f"{where or path}: {head!r} has no fields")
        return dataclasses.replace(obj, **{head: replace_path(current, rest, value, where)})
    base = field_types(type(obj))[head]
    if isinstance(value, str) and is_choice(base):
        cls = choose(base, value, where or path)
        if type(current) is not cls:  # a new member: its defaults, with the fields both members have
            shared = {f.name: getattr(current, f.name) for f in dataclasses.fields(cls)
                      if f.name in {g.name for g in dataclasses.fields(current)}}
            value = cls(**shared)
        else:
            value = current
    return dataclasses.replace(obj, **{head: value})


__all__ = ["Component", "KIND", "all_problems", "choices", "choose", "component_fields", "field_types",
           "is_choice", "numeric_problems", "paths", "replace_path", "to_json"]
