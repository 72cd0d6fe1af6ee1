"""A small name -> object registry with timm-style "unknown X, did you mean" errors.

Used for tasks, dataset formats, scene domains and (later) backbones and methods, so every
lookup of a user-supplied name fails the same way: one line naming the bad value and the choices.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from taskadapt.errors import ConfigError

T = TypeVar("T")


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    """``unknown task 'smeseg'; did you mean 'semseg'? Available: depth, edge, semseg``."""
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else "."
    return f"unknown {kind} '{name}'{hint} Available: {', '.join(sorted(choices))}"


class Registry(Generic[T]):
    """Maps names to objects (classes, factories, specs).

    >>> r = Registry("task"); r.register("semseg", 1)
    >>> r.get("semseg")
    1
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = obj
        return obj

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REGISTRY.decorator("name")`` registers the decorated object under ``name``."""

        def wrap(obj: T) -> T:
            return self.register(name, obj)

        return wrap

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(unknown_name_message(self.kind, name, list(self._items)))
        return self._items[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def values(self) -> list[T]:
        """The registered objects, in name order."""
        return [self._items[n] for n in sorted(self._items)]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)
