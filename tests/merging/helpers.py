"""Shared sources for the merge tests: random adapters on tiny-llama's attention modules."""

from __future__ import annotations

import torch

from tests.conftest import tiny_lab
from workbench.adapters import Adapter, new_adapter
from workbench.merging import MERGES

_LAB = None


def shapes(targets: str = "attention") -> dict[str, tuple[int, int]]:
    global _LAB
    if _LAB is None:
        _LAB = tiny_lab("tiny-llama")
    return _LAB.shapes(targets)


def sources(ranks=(4, 4, 4), *, targets: str = "attention", seed: int = 0,
            scaling: str = "standard") -> list[Adapter]:
    """Random adapters (B ≠ 0) named a, b, c ... with the given ranks and alphas 2r, 3r, ..."""
    module_shapes = shapes(targets)
    out = []
    for i, r in enumerate(ranks):
        a = new_adapter("abcdefgh"[i], module_shapes, r=r, alpha=(2 + i) * r, init="random",
                        seed=seed * 10 + i, scaling=scaling, base_fingerprint=_LAB.fingerprint)
        for f in a.modules.values():  # B of the size of A, so sign elections are balanced
            f.B.mul_(20.0)
        out.append(a)
    return out


def delta(adapter: Adapter, path: str) -> torch.Tensor:
    return adapter.delta(path).double()


def weighted_sum(adapters: list[Adapter], weights: list[float], path: str) -> torch.Tensor:
    return sum(w * delta(a, path) for a, w in zip(adapters, weights, strict=True) if path in a.modules)


def rel(x: torch.Tensor, y: torch.Tensor) -> float:
    """||x − y||_F / ||y||_F (float64)."""
    x, y = x.double(), y.double()
    return float(torch.linalg.matrix_norm(x - y) / torch.linalg.matrix_norm(y))


def has(method: str, param: str) -> bool:
    return param in MERGES.get(method).params
