"""One registry for every family of interchangeable parts (zoo entries, tasks, merges, routers ...).

Callers write ``MERGES.get("ties")``; nobody writes ``if method == "ties"``. Tests parametrize over
``registry.names()`` so a new entry is checked against the shared invariants automatically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from workbench.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping from lowercase names to objects, filled by a decorator.

    Example:
        >>> TASKS = Registry("task")
        >>> @TASKS.register("arithmetic")
        ... def arithmetic(): ...
        >>> TASKS.get("arithmetic") is arithmetic
        True
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if name != name.lower() or not name:
            raise ValueError(f"{self.kind} names are lowercase and non-empty; got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice; pick another name")

        def add(obj: T) -> T:
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
