"""Allow-listed registries: models, losses, optimizers and schedulers are chosen by name.

Nothing in a spec or a checkpoint is ever executed; a name either resolves here or is an
error that lists the names that exist and suggests the closest one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from dentpy.errors import SpecError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(choices)}"


class Registry(Generic[T]):
    """Name -> factory. `register` is a decorator; `get` fails with a suggestion."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = item
            self._help[name] = help
            return item

        return decorate

    def get(self, name: str) -> T:
        if name not in self._items:
            raise SpecError(
                f"unknown {self.kind} '{name}'",
                expected=f"one of: {', '.join(sorted(self._items))}",
                found=name,
                fix=did_you_mean(name, sorted(self._items)),
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        return {name: self._help[name] for name in self.names()}
