"""What a forward pass applies: no adapter, one, a weighted sum, or one adapter per batch row."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Real

from workbench.errors import WorkbenchError


@dataclass(frozen=True)
class Composition:
    """``weights`` for a (weighted) sum of adapters; ``rows`` for a mixed batch (None = base row)."""

    weights: Mapping[str, float] = field(default_factory=dict)
    rows: tuple[str | None, ...] | None = None

    @property
    def names(self) -> set[str]:
        if self.rows is not None:
            return {r for r in self.rows if r is not None}
        return set(self.weights)

    def __bool__(self) -> bool:
        return bool(self.names)


def composition_of(spec, known: Iterable[str]) -> Composition:
    """Parse what users pass to ``lab.use``.

    ``None`` -> base only; ``"a"`` -> adapter a; ``["a", "b"]`` -> a + b (peft's multi-adapter sum);
    ``{"a": 0.7, "b": 0.3}`` -> weighted sum; a ``Composition`` passes through.
    """
    known = set(known)
    if isinstance(spec, Composition):
        comp = spec
        for k, v in comp.weights.items():
            _weight(k, v)
    elif spec is None:
        comp = Composition()
    elif isinstance(spec, str):
        comp = Composition({spec: 1.0})
    elif isinstance(spec, Mapping):
        comp = Composition({_name(k): _weight(k, v) for k, v in spec.items()})
    elif isinstance(spec, Iterable):
        comp = Composition({_name(k): 1.0 for k in spec})
    else:
        raise WorkbenchError(
            f"cannot use {spec!r}: pass None, a name, a list of names or a {{name: weight}} dict"
        )
    unknown = comp.names - known
    if unknown:
        raise WorkbenchError(
            f"unknown adapter(s) {sorted(unknown)}; this lab has: {sorted(known) or '(none yet)'}"
        )
    return comp


def per_row(rows: Iterable[str | None]) -> Composition:
    """A mixed batch: ``per_row(["arith", None, "topic"])`` applies one adapter per batch row."""
    if isinstance(rows, str) or not isinstance(rows, Iterable):
        raise WorkbenchError(f"rows= takes a list with one adapter name (or None) per batch row, "
                             f"got {rows!r}")
    rows = tuple(rows)
    if not rows:
        raise WorkbenchError("rows= is empty; give one adapter name (or None) per batch row")
    return Composition(rows=tuple(None if r is None else _name(r) for r in rows))


def _name(k) -> str:
    """An adapter or router name; objects are refused (they may belong to another lab)."""
    if not isinstance(k, str):
        label = getattr(k, "name", None)
        hint = f" (use its name {label!r} if it is in this lab)" if isinstance(label, str) else ""
        raise WorkbenchError(f"use() takes adapter names (strings), got {type(k).__name__} {k!r:.60}{hint}")
    return k


def _weight(name, value) -> float:
    """A composition weight: a finite number (NaN or inf would poison every output)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise WorkbenchError(f"use(): the weight of {name!r} is {value!r}; give a number such as 0.5")
    if not math.isfinite(value):
        raise WorkbenchError(f"use(): the weight of {name!r} is {value}; weights must be finite numbers")
    return float(value)
