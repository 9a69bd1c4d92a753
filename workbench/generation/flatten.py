"""Flatten: an adapter's factors as one vector, each tensor z-scored by its own mean and std, and back.

    flat = flatten(adapter)                    # Flat(x (L,) float64, stats (K, 2), layout)
    same = unflatten(flat.x, flat.stats, flat.layout, name="copy")   # equal to adapter, bit for bit

The layout (module order, each tensor's shape, alpha, scaling, base fingerprint) is shared by every
adapter a generator learns from; the per-tensor ``(mean, std)`` belong to one adapter and are what
de-normalization needs. Tensors go in the order ``sorted(modules)``, each module's A then B.

Exactness: the arithmetic runs in float64 and the result is rounded to the adapter's dtype, so a
float32 (or half) adapter comes back bit for bit (the float64 round-trip error is ~1e-16 relative,
far below half a float32 ulp). A float64 adapter comes back to within an ulp.

Reference: Shao et al., "In-Context Meta LoRA Generation" (ICM-LoRA), IJCAI 2025, arXiv 2501.17635;
authors' code ``utils/normalizeLoraWeight_small.py`` (``(value - value.mean()) / value.std()`` per
tensor, torch's unbiased std; ``{mean, std, length, shape}`` kept) and ``utils/ReconstructLora_cvae.py``
(``data * std + mean``, reshape).
Deviations: a tensor whose std is 0 or not finite (a LoRA B at initialization) is divided by 1
instead of 0 (the authors' code would write NaN); only plain LoRA factors are flattened (DoRA
magnitudes, lora_bias and trained base parameters are refused), and alphas are kept in the layout,
not generated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from workbench.adapters import Adapter, LoraFactors
from workbench.errors import WorkbenchError


@dataclass(frozen=True)
class Layout:
    """What a flat vector means: the modules in order, the tensors' shapes, alphas and scaling.

    Attributes:
        modules: module paths, sorted.
        shapes: per module ``((r, in), (out, r))``: the shapes of A and B.
        alphas: per module alpha.
        scaling: the adapters' ``SCALINGS`` name.
        base_fingerprint: the base the adapters were made for (None if unknown).
        dtype: the factors' dtype (the one ``unflatten`` rounds to).
    """

    modules: tuple[str, ...]
    shapes: tuple[tuple[tuple[int, int], tuple[int, int]], ...]
    alphas: tuple[float, ...]
    scaling: str
    base_fingerprint: str | None = None
    dtype: torch.dtype = torch.float32
    lengths: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        lengths = tuple(rows * cols for pair in self.shapes for rows, cols in pair)  # A then B per module
        object.__setattr__(self, "lengths", lengths)

    @property
    def length(self) -> int:
        """L: the flat vector's length."""
        return sum(self.lengths)

    @property
    def n_tensors(self) -> int:
        """K: tensors in the vector (two per module)."""
        return len(self.lengths)

    def check_same(self, other: Layout, what: str) -> None:
        """Refuse ``other`` (of adapter ``what``) when its modules, shapes, alphas or scaling differ."""
        if self.modules != other.modules:
            extra = sorted(set(other.modules) ^ set(self.modules))
            raise WorkbenchError(
                f"{what} targets other modules than the first adapter ({extra[:3]} differ); a generator "
                "learns from adapters with one layout: train every run on the same targets")
        for m, s, o in zip(self.modules, self.shapes, other.shapes, strict=True):
            if s != o:
                raise WorkbenchError(f"{what}: module {m!r} has factor shapes {o} but the first adapter has "
                                     f"{s}; give adapters of one rank on one base")
        if self.alphas != other.alphas or self.scaling != other.scaling:
            raise WorkbenchError(f"{what} has other alphas or scaling ({other.scaling}) than the first "
                                 f"adapter ({self.scaling}); train every run with the same alpha and scaling")

    def to_dict(self) -> dict:
        """JSON-serializable form (for lineage and files)."""
        return {"modules": list(self.modules), "shapes": [[list(a), list(b)] for a, b in self.shapes],
                "alphas": list(self.alphas), "scaling": self.scaling,
                "base_fingerprint": self.base_fingerprint, "dtype": str(self.dtype).removeprefix("torch.")}


@dataclass
class Flat:
    """One adapter flattened: ``x`` (L,) float64 normalized values, ``stats`` (K, 2) its (mean, std)."""

    x: torch.Tensor  # (L,) float64
    stats: torch.Tensor  # (K, 2) float64: per tensor (mean, std)
    layout: Layout


def layout_of(adapter: Adapter) -> Layout:
    """The layout of a plain LoRA adapter (refuses DoRA, lora_bias, embeddings, trained base params)."""
    adapter.require_plain("generation (flattening an adapter)")
    modules = tuple(sorted(adapter.modules))
    fs = [adapter.modules[m] for m in modules]
    dtypes = {f.A.dtype for f in fs} | {f.B.dtype for f in fs}
    if len(dtypes) != 1:
        raise WorkbenchError(f"adapter {adapter.name!r} mixes dtypes {sorted(map(str, dtypes))}; "
                             "cast it to one")
    return Layout(modules, tuple((tuple(f.A.shape), tuple(f.B.shape)) for f in fs),
                  tuple(float(f.alpha) for f in fs), adapter.scaling, adapter.base_fingerprint,
                  dtypes.pop())


def _moments(t: torch.Tensor) -> tuple[float, float]:
    """(mean, std) of a float64 tensor; std 1 where it is 0 or undefined (a constant tensor)."""
    mean = t.mean().item()
    std = t.std().item() if t.numel() > 1 else 0.0
    return mean, (std if math.isfinite(std) and std > 0 else 1.0)


def flatten(adapter: Adapter, layout: Layout | None = None) -> Flat:
    """z-score each factor by its own mean and std and concatenate: ``x (L,)``, ``stats (K, 2)``.

    Args:
        adapter: a plain LoRA adapter.
        layout: the layout it must have (checked); default: its own.
    """
    own = layout_of(adapter)
    if layout is not None:
        layout.check_same(own, f"adapter {adapter.name!r}")
    parts, stats = [], []
    for m in own.modules:
        f = adapter.modules[m]
        for t in (f.A, f.B):
            t64 = t.detach().cpu().to(torch.float64).reshape(-1)
            if not torch.isfinite(t64).all():
                raise WorkbenchError(f"adapter {adapter.name!r}: module {m!r} has non-finite weights; "
                                     "a generator cannot learn from it")
            mean, std = _moments(t64)
            parts.append((t64 - mean) / std)
            stats.append((mean, std))
    return Flat(torch.cat(parts), torch.tensor(stats, dtype=torch.float64), layout or own)


def unflatten(x: torch.Tensor, stats: torch.Tensor, layout: Layout, *, name: str,
              lineage: Mapping | None = None) -> Adapter:
    """The adapter of a normalized vector: each tensor ``x_k · std_k + mean_k``, reshaped, in layout.dtype.

    Args:
        x: (L,) normalized values (any float dtype; computed in float64).
        stats: (K, 2) per-tensor (mean, std) to de-normalize with.
        layout: what the vector means.
        name: the new adapter's name; lineage: its lineage.
    """
    if x.dim() != 1 or x.numel() != layout.length:
        raise WorkbenchError(f"a flat vector of this layout has {layout.length} values; got shape "
                             f"{tuple(x.shape)}")
    if tuple(stats.shape) != (layout.n_tensors, 2):
        raise WorkbenchError(f"stats must be ({layout.n_tensors}, 2) (mean, std per tensor); got "
                             f"{tuple(stats.shape)}")
    if not torch.isfinite(x).all():
        raise WorkbenchError("the flat vector has non-finite values; it cannot become an adapter")
    pieces = torch.split(x.detach().cpu().to(torch.float64), list(layout.lengths))
    stats = stats.to(torch.float64)
    tensors = [(p * stats[k, 1] + stats[k, 0]).to(layout.dtype) for k, p in enumerate(pieces)]
    modules = {}
    for i, (m, (sa, sb), alpha) in enumerate(zip(layout.modules, layout.shapes, layout.alphas, strict=True)):
        modules[m] = LoraFactors(tensors[2 * i].reshape(sa), tensors[2 * i + 1].reshape(sb), alpha)
    return Adapter(name, modules, scaling=layout.scaling, base_fingerprint=layout.base_fingerprint,
                   lineage=dict(lineage or {}))
