"""The same update, factored differently: (A, B) -> (R⁻¹A, BR). Geometry must not change."""

from __future__ import annotations

import torch

from workbench.adapters.adapter import Adapter, LoraFactors


def random_invertible(r: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random well-conditioned R (r, r) = Q·diag(d) and its exact inverse diag(1/d)·Qᵀ.

    Q is orthogonal (QR of a Gaussian matrix), d ∈ [e⁻¹, e], so the condition number is at most e².
    Float64.
    """
    Q, Rq = torch.linalg.qr(torch.randn(r, r, generator=generator, dtype=torch.float64))
    Q = Q * torch.sign(torch.diagonal(Rq))  # Haar-distributed orthogonal
    d = torch.exp(torch.rand(r, generator=generator, dtype=torch.float64) * 2 - 1)  # (r,)
    return Q * d, (Q / d).T  # R (r, r), R⁻¹ (r, r)


def reparametrize(adapter: Adapter, seed: int = 0, name: str | None = None) -> Adapter:
    """A new adapter with the same ΔW per module but other factors: B' = B·R, A' = R⁻¹·A.

    R is a random well-conditioned invertible (r, r) matrix per module (orthogonal times a positive
    diagonal). Ranks, alphas and so the scales are unchanged; ΔW matches up to rounding of the
    factors' dtype. Used to test that a metric depends on the update only.

    Args:
        adapter: the adapter to refactor (left untouched).
        seed: seeds the random R's (deterministic).
        name: the new adapter's name; defaults to the original name.

    Returns:
        The refactored adapter, with lineage ``{"method": "reparametrize", "source": ..., "seed": ...}``.
    """
    g = torch.Generator().manual_seed(seed)
    modules = {}
    for path, f in adapter.modules.items():
        R, R_inv = random_invertible(f.r, g)
        A = (R_inv @ f.A.double()).to(f.A.dtype)  # (r, in)
        B = (f.B.double() @ R).to(f.B.dtype)  # (out, r)
        modules[path] = LoraFactors(A, B, f.alpha, f.magnitude, f.bias, f.embedding)  # BA unchanged
    return Adapter(
        name=name or adapter.name,
        modules=modules,
        scaling=adapter.scaling,
        base_fingerprint=adapter.base_fingerprint,
        lineage={"method": "reparametrize", "source": adapter.name, "seed": seed},
        metadata=dict(adapter.metadata),
    )
