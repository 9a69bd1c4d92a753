"""Small random adapters for the analysis tests (no model needed: shapes only)."""

from __future__ import annotations

import torch

from workbench.adapters.adapter import Adapter, LoraFactors
from workbench.adapters.init import new_adapter

SHAPES = {
    "model.layers.0.self_attn.q_proj": (12, 10),
    "model.layers.0.self_attn.v_proj": (6, 10),
    "model.layers.1.self_attn.q_proj": (12, 10),
    "model.layers.1.mlp.down_proj": (10, 16),
}
MIXED = {p: r for p, r in zip(SHAPES, (1, 2, 3, 4), strict=True)}


def random_adapter(name: str, seed: int, r: int | dict[str, int] = 3, shapes=None) -> Adapter:
    """A random adapter with non-zero B, mixed ranks allowed, and a non-trivial alpha."""
    return new_adapter(name, shapes or SHAPES, r=r, init="random", seed=seed, alpha=5.0)


def from_factors(name: str, modules: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Adapter:
    """An adapter from explicit (A, B) per module, alpha = r so that s = 1."""
    return Adapter(name, {p: LoraFactors(A, B, float(A.shape[0])) for p, (A, B) in modules.items()})


def negated(adapter: Adapter, name: str) -> Adapter:
    """B -> -B: the opposite update."""
    out = adapter.copy(name)
    for f in out.modules.values():
        f.B = -f.B
    return out


def dense_cosine(a: Adapter, b: Adapter, paths) -> float:
    """Cosine of the concatenated dense ΔW over ``paths`` (0 where an adapter lacks a module)."""

    def vec(x: Adapter):
        return torch.cat(
            [
                x.delta(p).double().flatten()
                if p in x.modules
                else torch.zeros(SHAPES[p][0] * SHAPES[p][1], dtype=torch.float64)
                for p in paths
            ]
        )

    return float(torch.nn.functional.cosine_similarity(vec(a), vec(b), dim=0))


def lookup(frame, a: str, b: str, **where):
    """The one row of a pairwise frame for (a, b) and the given column values."""
    sel = (frame.adapter_a == a) & (frame.adapter_b == b)
    for col, val in where.items():
        sel &= frame[col] == val
    rows = frame[sel]
    assert len(rows) == 1, rows
    return rows.iloc[0]
