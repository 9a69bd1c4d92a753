"""What a forward pass applies: no adapter, one, a weighted sum, or one adapter per batch row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
    elif spec is None:
        comp = Composition()
    elif isinstance(spec, str):
        comp = Composition({spec: 1.0})
    elif isinstance(spec, Mapping):
        comp = Composition({str(k): float(v) for k, v in spec.items()})
    elif isinstance(spec, Iterable):
        comp = Composition({str(k): 1.0 for k in spec})
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
    return Composition(rows=tuple(rows))
