"""Named registries: a name -> entry mapping filled by the module that defines the entries.

Every configurable choice that a config names by a string (a rollout member selector, a
consistency metric, a belief update, a real-pair target, an algorithm) is looked up in a
`Registry`. The module that defines an entry registers it at definition time,

    SELECTORS = Registry("selector")

    @SELECTORS.register("worst")
    def worst(...): ...

so a research fork adds a choice with one function and one decorator, in its own file, and
nothing low in the package imports anything high to find it. `Registry.check` turns an unknown
name into one line (a `UserError`) naming the bad value, the valid choices and the closest one.
"""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, Mapping, TypeVar

from jaxrl_bayes.errors import UserError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """An insertion-ordered mapping name -> entry with a `register` decorator.

    Attributes:
      kind: what an entry is, for messages ("selector", "consistency metric", ...).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None, *, overwrite: bool = False):
        """Registers `entry` under `name`; without `entry`, returns a decorator that does.

        Registering a taken name raises ValueError unless `overwrite=True` (so two forks cannot
        silently replace each other's entry).
        """

        def add(value: T) -> T:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
            if name in self._entries and not overwrite and self._entries[name] is not value:
                raise ValueError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
            self._entries[name] = value
            return value

        return add if entry is None else add(entry)

    def check(self, name: str, field: str | None = None) -> None:
        """Raises a one-line `UserError` unless `name` is registered.

        Args:
          name: the value to check.
          field: the config field it came from (e.g. "agent.selector"), named in the message.
        """
        if name in self._entries:
            return
        where = f"{field} = {name!r}" if field else repr(name)
        choices = ", ".join(self._entries) or "(none registered)"
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"{where} is not a registered {self.kind}; choose one of: {choices}{hint}")

    def lookup(self, name: str, field: str | None = None) -> T:
        """The entry of `name`, or the one-line `UserError` of `check`."""
        self.check(name, field)
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


def closest(name: str, choices) -> str:
    """' Did you mean X?' for the closest of `choices`, or '' (for hand-written one-line errors)."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


__all__ = ["Registry", "closest"]
