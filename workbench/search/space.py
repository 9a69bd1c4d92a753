"""What a search may choose: one weight per adapter, a density, a merge method; a ``Candidate`` is one choice.

    space = SearchSpace(["arithmetic", "topic"], methods=["task_arithmetic", "ties"], weights=(0, 1.5),
                        density=(0.1, 1.0))
    space.sample(rng)              # a Candidate drawn uniformly
    space.decode(space.encode(c))  # the same Candidate (x in [0, 1]^d: what the optimizers see)

Searchers work on the unit cube ``[0, 1]^d`` (one coordinate per adapter weight, one for the density when
it is searched, one for the method when there are several), so that every optimizer sees the same box;
``decode`` maps a point to a ``Candidate`` and ``encode`` back. A method coordinate is cut into equal
bins, one per method (nevergrad's ``TransitionChoice`` does the same for an ordered choice).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from workbench.errors import WorkbenchError

LINEAR = "task_arithmetic"  # the exact weighted sum: the method a gradient search can differentiate


@dataclass(frozen=True)
class Candidate:
    """One merge setting a search tries.

    Attributes:
        weights: adapter name -> merge weight (the sources, in the space's order).
        method: the merge method (``workbench.merging.MERGES``).
        density: the method's density when it takes one (None: its default, or a method without one).
        layer_weights: layer index -> {adapter: weight} (AdaMerging's layer-wise coefficients: the
            exact weighted sum with one weight per adapter and layer; ``weights`` then holds their means).
        note: where it came from (the searcher's own words, e.g. "adamerging step 12").
    """

    weights: Mapping[str, float]
    method: str = LINEAR
    density: float | None = None
    layer_weights: Mapping[int, Mapping[str, float]] | None = field(default=None, compare=False)
    note: str = field(default="", compare=False)

    def params(self) -> dict:
        """``method, density, weight.<adapter>...`` (the candidate's columns in a search's frame)."""
        out = {"method": self.method, "density": np.nan if self.density is None else float(self.density)}
        out |= {f"weight.{n}": float(w) for n, w in self.weights.items()}
        return out

    def key(self) -> tuple:
        """A hashable identity (rounded to 1e-9) for caches and duplicate checks."""
        layers = None if self.layer_weights is None else tuple(
            (int(layer), tuple((n, round(float(w), 9)) for n, w in ws.items()))
            for layer, ws in sorted(self.layer_weights.items()))
        return (self.method, None if self.density is None else round(float(self.density), 9),
                tuple((n, round(float(w), 9)) for n, w in self.weights.items()), layers)


@dataclass(frozen=True)
class SearchSpace:
    """The box a search explores.

    Args:
        adapters: the lab's adapters to merge (their names), in order.
        methods: the merge methods to choose among (default: the exact weighted sum only).
        weights: (low, high) of every merge weight.
        density: (low, high) of the density (None: not searched; methods use their default).
    """

    adapters: Sequence[str]
    methods: Sequence[str] = (LINEAR,)
    weights: tuple[float, float] = (0.0, 1.5)
    density: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapters", tuple(self.adapters))
        object.__setattr__(self, "methods", tuple(self.methods))
        if len(self.adapters) < 1 or len(set(self.adapters)) != len(self.adapters):
            raise WorkbenchError(f"a search space needs distinct adapter names; got {list(self.adapters)}")
        if not self.methods:
            raise WorkbenchError("a search space needs at least one merge method, e.g. methods=['ties']")
        from workbench.merging import MERGES

        for m in self.methods:
            MERGES.get(m)  # an unknown method fails here, naming the choices
        lo, hi = self.weights
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise WorkbenchError(f"weights=(low, high) must be finite with low < high; got {self.weights}")
        if self.density is not None:
            dlo, dhi = self.density
            if not (0 < dlo <= dhi <= 1):
                raise WorkbenchError(f"density=(low, high) must satisfy 0 < low <= high <= 1; "
                                     f"got {self.density}")

    @property
    def dims(self) -> int:
        """The number of coordinates of the unit cube: weights, then density, then method."""
        return len(self.adapters) + (self.density is not None) + (len(self.methods) > 1)

    def decode(self, x: Sequence[float], note: str = "") -> Candidate:
        """The Candidate at point ``x`` of ``[0, 1]^dims`` (clipped into the cube)."""
        x = np.clip(np.asarray(x, dtype=float).reshape(-1), 0.0, 1.0)
        if x.shape[0] != self.dims:
            raise WorkbenchError(f"a point of this space has {self.dims} coordinates, got {x.shape[0]}")
        k = len(self.adapters)
        lo, hi = self.weights
        weights = {n: float(lo + (hi - lo) * v) for n, v in zip(self.adapters, x[:k], strict=True)}
        density, i = None, k
        if self.density is not None:
            dlo, dhi = self.density
            density, i = float(dlo + (dhi - dlo) * x[i]), i + 1
        method = self.methods[0]
        if len(self.methods) > 1:
            method = self.methods[min(int(x[i] * len(self.methods)), len(self.methods) - 1)]
        return Candidate(weights, method, density, note=note)

    def encode(self, c: Candidate) -> np.ndarray:
        """The point of the unit cube that decodes to ``c`` (a method at its bin's centre)."""
        lo, hi = self.weights
        x = [(float(c.weights[n]) - lo) / (hi - lo) for n in self.adapters]
        if self.density is not None:
            dlo, dhi = self.density
            d = dhi if c.density is None else float(c.density)
            x.append(0.5 if dhi == dlo else (d - dlo) / (dhi - dlo))
        if len(self.methods) > 1:
            x.append((self.methods.index(c.method) + 0.5) / len(self.methods))
        return np.clip(np.asarray(x, dtype=float), 0.0, 1.0)

    def sample(self, rng: np.random.Generator, note: str = "random") -> Candidate:
        """A Candidate drawn uniformly from the box (and uniformly among the methods)."""
        return self.decode(rng.random(self.dims), note=note)

    def grid(self, points: int) -> list[Candidate]:
        """The full grid with ``points`` values per continuous coordinate (ends included) × every method."""
        if points < 1:
            raise WorkbenchError(f"a grid needs at least 1 point per coordinate; got {points}")
        axis = [0.5] if points == 1 else list(np.linspace(0.0, 1.0, points))
        cont = len(self.adapters) + (self.density is not None)
        out = []
        for m in self.methods:
            for xs in itertools.product(axis, repeat=cont):
                c = self.decode([*xs, *([0.0] * (len(self.methods) > 1))], note="grid")
                out.append(Candidate(c.weights, m, c.density, note="grid"))
        return out

    def uniform(self, weight: float = 1.0, method: str | None = None) -> Candidate:
        """Every adapter at ``weight`` (the uniform sum with the default method)."""
        return Candidate({n: float(weight) for n in self.adapters}, method or self.methods[0],
                         None if self.density is None else float(self.density[1]), note="uniform")
