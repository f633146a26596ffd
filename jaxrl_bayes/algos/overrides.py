"""Overrides of an `AgentConfig` by path, and the table from the flat field names of the
configs written before the components existed to their paths.

    apply_overrides(config, {"targets.kth": 2, "rollout": "persistent", "rollout.horizon": 1000})
    apply_overrides(config, {"kth": 2, "rollout_scheme": "persistent"})   # flat names, same result
    apply_overrides(config, {"rollout": Persistent(horizon=1000)})        # a component

A choice is set by its member's kind (a string) or by a component; its fields after it (shorter
paths are applied first). A path that does not exist under the chosen members is refused with
one line: a knob that its component does not have cannot be set. `from_flat` reads a saved flat
agent section (a config.json of a run started before): fields that its own choices never read
are dropped, every other value lands at its path. `to_flat` is the inverse, for the config hash
of such a run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from jaxrl_bayes.components import Component, paths, replace_path
from jaxrl_bayes.errors import UserError

# flat name -> path; the choices among them are converted by `_CHOICE_VALUES`
FLAT_NAMES: dict[str, str] = {
    "critic_lr": "optim.critic_lr", "policy_lr": "optim.policy_lr", "tau": "optim.tau", "ref_tau": "optim.ref_tau",
    "rollout_scheme": "rollout", "rollout_batch": "rollout.batch", "rollout_horizon": "rollout.horizon",
    "rollout_samples": "rollout.samples", "rollout_explore": "rollout.explore",
    "num_next_samples": "sampling.num_next_samples", "common_noise": "sampling.common_noise",
    "model_reward": "sampling.reward", "model_successor": "sampling.successor",
    "selector": "targets.selector", "kth": "targets.kth", "backup": "targets.backup",
    "real_target": "targets.real_target", "real_weight": "targets.real_weight", "value_clip": "targets.value_clip",
    "value_max": "targets.value_max", "box_terminal": "targets.box_terminal",
    "belief": "belief", "consistency": "belief.consistency", "lam": "belief.lam", "consistency_batch": "belief.batch",
    "consistency_samples": "belief.samples",
    "auto_temperature": "temperature", "temperature": "temperature.alpha", "target_kl": "temperature.target_kl",
    "algo": "algo", "behaviour_weight": "algo.behaviour_weight", "trust_eta": "algo.trust_eta",
    "trust_epsilon": "algo.trust_epsilon", "trust_rate": "algo.trust_rate",
    "bc_steps": "behaviour.steps", "bc_lr": "behaviour.lr", "bc_batch": "behaviour.batch",
    "init_from_behaviour": "behaviour.init_policy", "bc_top_fraction": "algo.top_fraction", "bc_holdout": "algo.holdout",
}
# flat names spelled as their path (the choices `algo` and `belief`, whose kinds kept their names):
# no sign of a flat section
_SAME = frozenset(name for name, path in FLAT_NAMES.items() if name == path)
# flat names whose value was a flag choosing a component member: value -> kind
_CHOICE_VALUES = {"auto_temperature": {True: "kl_budget", False: "fixed"}}


def _is_flat_temperature(name: str, value: Any) -> bool:
    """The flat `temperature` (a number) against the component `temperature` (a kind or a component)."""
    return name == "temperature" and isinstance(value, (int, float)) and not isinstance(value, bool)


def to_path(name: str, value: Any) -> tuple[str, Any]:
    """(path, value) of an override given by path or by flat name."""
    if _is_flat_temperature(name, value) or (name in FLAT_NAMES and name != "temperature" and name not in _SAME):
        choice = _CHOICE_VALUES.get(name, {})
        return FLAT_NAMES[name], choice.get(value, value) if isinstance(value, bool) else value
    return name, value


def apply_overrides(config: Any, overrides: Mapping[str, Any], where: str = "agent") -> Any:
    """`config` with `overrides` ({path or flat name: value}) applied, choices before their
    fields. An unknown name or a path its chosen members lack is a one-line `UserError`."""
    items = [to_path(k, v) for k, v in overrides.items()]
    for path, value in sorted(items, key=lambda kv: kv[0].count(".")):
        config = replace_path(config, path, value, f"{where}.{path}")
    return config


def from_flat(base: Any, flat: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """A config from a flat agent section on top of `base`: the choices first, then every value
    whose path exists under them. Returns (config, the flat names dropped: fields that the
    section's own choices never read)."""
    items = [(name,) + to_path(name, value) for name, value in flat.items()]
    dropped = []
    for name, path, value in sorted(items, key=lambda t: t[1].count(".")):
        try:
            base = replace_path(base, path, value, f"agent.{name}")
        except UserError:
            if path.count(".") == 0:
                raise
            dropped.append(name)
    return base, dropped


def is_flat(section: Mapping[str, Any]) -> bool:
    """Whether an agent section (of a config.json or a preset) uses the flat names."""
    return any(name in FLAT_NAMES and name != "temperature" and name not in _SAME for name in section) or \
        _is_flat_temperature("temperature", section.get("temperature", ""))


def to_flat(config: Any) -> dict[str, Any]:
    """The flat names of `config` whose paths it has (the inverse of the table), plus its shared
    fields; JSON values."""
    from jaxrl_bayes.components import to_json

    have = paths(config)
    out = {f.name: to_json(getattr(config, f.name)) for f in dataclasses.fields(config)
           if not isinstance(getattr(config, f.name), Component)}
    for name, path in FLAT_NAMES.items():
        if path in have:
            value = have[path]
            inverse = {kind: flag for flag, kind in _CHOICE_VALUES.get(name, {}).items()}
            out[name] = inverse.get(value, value) if inverse else to_json(value)
    return out


# Components of the layout between the flat names and the algorithm choice: a config.json agent
# section with "algo": "<kind>" and these sections, whose fields now live under `algo`
ALGO_SECTIONS = ("pspo", "bc")


def has_algo_sections(section: Mapping[str, Any]) -> bool:
    """Whether a nested agent section holds the algorithm's knobs in `ALGO_SECTIONS` beside a
    string `algo` (a config.json written before the algorithm was a choice)."""
    return isinstance(section.get("algo"), str) and any(isinstance(section.get(s), Mapping) for s in ALGO_SECTIONS)


def lift_algo_sections(section: Mapping[str, Any]) -> dict[str, Any]:
    """Such a section in today's layout: the section named by its algorithm becomes `algo`'s
    fields, the others (which that algorithm never read) are dropped."""
    kind = section["algo"]
    out = {k: v for k, v in section.items() if k not in ALGO_SECTIONS and k != "algo"}
    out["algo"] = {"kind": kind, **dict(section.get(kind) or {})} if kind in ALGO_SECTIONS else {"kind": kind}
    return out


def algo_sections_form(flat: Mapping[str, Any], saved: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted paths of today's agent (`flat`) in the layout of `has_algo_sections` (`saved`, also
    dotted): "algo.<field>" back at "<kind>.<field>", and the other sections' paths at their
    saved values (never read), so such a run's checkpoints keep their config hash."""
    kind = flat.get("algo")
    out = {(f"{kind}.{k[5:]}" if k.startswith("algo.") else k): v for k, v in flat.items()}
    out.update({k: v for k, v in saved.items() if k.split(".")[0] in ALGO_SECTIONS and k not in out})
    return out


__all__ = ["ALGO_SECTIONS", "FLAT_NAMES", "algo_sections_form", "apply_overrides", "from_flat", "has_algo_sections",
           "is_flat", "lift_algo_sections", "to_flat", "to_path"]
