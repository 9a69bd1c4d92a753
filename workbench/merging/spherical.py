"""Angles between updates, from the factors: Gram matrices of the ΔWᵢ and the spherical interpolations
(SLERP, the Karcher mean) written as coefficients on the sources, so the result Σᵢ cᵢ·ΔWᵢ is exact
at rank Σrᵢ and no dense ΔW is ever formed.

Every inner product ⟨ΔWᵢ, ΔWⱼ⟩_F = Σ (sBᵢᵀ sBⱼ) ∘ (AᵢAⱼᵀ) costs O(rᵢrⱼ(out + in)); the row-wise
(each output row a vector) and column-wise ones are the diagonals of sBᵢ(AᵢAⱼᵀ)sBⱼᵀ and of
Aᵢᵀ(sBᵢᵀsBⱼ)Aⱼ, read without forming either. A spherical method only needs these numbers: its result
is always a linear combination of the sources (SLERP by construction; the Karcher iterate stays in
their span because every tangent step is one).

Reference: Shoemake, "Animating rotation with quaternion curves", SIGGRAPH 1985 (SLERP); Karcher,
"Riemannian center of mass and mollifier smoothing", CPAM 1977; Buss & Fillmore, "Spherical averages
and applications to spherical splines and interpolation", ACM TOG 2001 (the fixed-point iteration);
mergekit ``merge_methods/slerp.py``, ``nuslerp.py``, ``karcher.py`` (the conventions followed).
"""

from __future__ import annotations

import math

import torch

Parts = list[tuple[torch.Tensor, torch.Tensor]]  # [(Aᵢ (rᵢ, in), sᵢBᵢ (out, rᵢ))], float64

SLERP_DOT_THRESHOLD = 0.9995  # mergekit's slerp: |cos θ| above this is colinear -> linear
NORM_EPS = 1e-8  # mergekit's eps: a vector with a smaller norm has no direction


def frobenius_gram(parts: Parts) -> torch.Tensor:
    """(K, K) float64: ⟨ΔWᵢ, ΔWⱼ⟩_F of the parts' updates sBᵢ·Aᵢ."""
    K = len(parts)
    G = torch.zeros(K, K, dtype=torch.float64)
    for i, (Ai, Bi) in enumerate(parts):
        for j in range(i, K):
            Aj, Bj = parts[j]
            G[i, j] = G[j, i] = ((Bi.T @ Bj) * (Ai @ Aj.T)).sum()
    return G


def row_gram(parts: Parts) -> torch.Tensor:
    """(K, K, out) float64: the inner products of each output row j of ΔWᵢ and ΔWₖ."""
    K, out_f = len(parts), parts[0][1].shape[0]
    G = torch.zeros(K, K, out_f, dtype=torch.float64)
    for i, (Ai, Bi) in enumerate(parts):
        for k in range(i, K):
            Ak, Bk = parts[k]
            G[i, k] = G[k, i] = ((Bi @ (Ai @ Ak.T)) * Bk).sum(1)
    return G


def column_gram(parts: Parts) -> torch.Tensor:
    """(K, K, in) float64: the inner products of each input column j of ΔWᵢ and ΔWₖ."""
    K, in_f = len(parts), parts[0][0].shape[1]
    G = torch.zeros(K, K, in_f, dtype=torch.float64)
    for i, (Ai, Bi) in enumerate(parts):
        for k in range(i, K):
            Ak, Bk = parts[k]
            G[i, k] = G[k, i] = (Ai * ((Bi.T @ Bk) @ Ak)).sum(0)
    return G


def slerp_coefficients(t: float, n0: torch.Tensor, n1: torch.Tensor, dot: torch.Tensor, *,
                       threshold: float = SLERP_DOT_THRESHOLD, colinear_eps: float | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(c₀, c₁) with slerp(t, v₀, v₁) = c₀·v₀ + c₁·v₁, elementwise over any batch of vector pairs.

    Args:
        t: the interpolation point in [0, 1] (0: v₀, 1: v₁).
        n0, n1: the norms ‖v₀‖, ‖v₁‖; dot: ⟨v₀, v₁⟩ (tensors of one shape: one entry per pair).
        threshold: mergekit's ``slerp``: |cos θ| > threshold counts as colinear (linear interpolation).
        colinear_eps: mergekit's ``nuslerp`` instead: |sin θ| < colinear_eps counts as colinear.

    Returns:
        c₀ = sin((1−t)θ)/sin θ, c₁ = sin(tθ)/sin θ (θ the angle), or (1 − t, t) where the pair is
        colinear or a vector has no direction (norm ≤ 1e-8: the angle is undefined).
    """
    n0, n1, dot = (torch.as_tensor(x, dtype=torch.float64) for x in (n0, n1, dot))
    degenerate = (n0 <= NORM_EPS) | (n1 <= NORM_EPS)
    cos = torch.where(degenerate, torch.ones_like(dot), dot / (n0 * n1).clamp(min=NORM_EPS**2))
    cos = cos.clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    linear = degenerate | ((sin.abs() < colinear_eps) if colinear_eps is not None else cos.abs() > threshold)
    safe = torch.where(linear, torch.ones_like(sin), sin)
    c0 = torch.where(linear, torch.full_like(sin, 1.0 - t), torch.sin((1.0 - t) * theta) / safe)
    c1 = torch.where(linear, torch.full_like(sin, float(t)), torch.sin(t * theta) / safe)
    return c0, c1


def karcher_coefficients(G: torch.Tensor, pulls: torch.Tensor, *, max_iter: int = 10, tol: float = 1e-5
                         ) -> tuple[torch.Tensor, int]:
    """The weighted Karcher mean of the unit vectors ûᵢ = vᵢ/‖vᵢ‖, as coefficients on the vᵢ.

    mergekit's ``karcher_merge_tensors`` step for step, in the span of the vᵢ: start at the
    normalized weighted mean of the ûᵢ (û₀ if it vanishes), then u ← cos‖T‖·u + sin‖T‖·T/‖T‖ with
    the tangent T = Σ pᵢ·θᵢ/sin θᵢ·(ûᵢ − cos θᵢ·u) until ‖T‖ < tol or ``max_iter`` steps, and scale
    the unit mean by Σ pᵢ‖vᵢ‖. Each vector is a coefficient vector α (K,) with norm √(αᵀĜα), Ĝ the
    Gram of the ûᵢ.

    Args:
        G: (K, K) Gram ⟨vᵢ, vⱼ⟩ of K vectors, each with a nonzero norm.
        pulls: (K,) the weights pᵢ ≥ 0 (normalized here to sum 1).
        max_iter, tol: mergekit's defaults (10, 1e-5).

    Returns:
        (c (K,) with the mean = Σ cᵢvᵢ, the number of steps taken).
    """
    norms = G.diagonal().clamp(min=0).sqrt()  # (K,)
    U = G / (norms[:, None] * norms[None, :])  # (K, K): Gram of the unit vectors
    p = pulls.to(torch.float64) / pulls.sum()

    def norm(alpha: torch.Tensor) -> float:
        return math.sqrt(max(float(alpha @ U @ alpha), 0.0))

    u = p.clone()
    if norm(u) < tol:
        u = torch.zeros_like(p)
        u[0] = 1.0
    else:
        u = u / norm(u)
    steps = 0
    for _ in range(max_iter):
        dots = (U @ u).clamp(-1.0, 1.0)  # (K,): cos θᵢ = ⟨u, ûᵢ⟩
        theta = torch.arccos(dots)
        sin = torch.sin(theta)
        # θ < tol: at u already (mergekit skips it); sin θ ≈ 0 at θ ≈ π: antipodal, no tangent direction
        skip = (theta < tol) | (sin < 1e-12)
        safe = torch.where(skip, torch.ones_like(sin), sin)
        gain = torch.where(skip, torch.zeros_like(theta), p * theta / safe)
        T = torch.diag(gain) - torch.outer(u, gain * dots)  # column i: gain_i·(eᵢ − dotᵢ·u)
        T = T.sum(1)  # (K,)
        t_norm = norm(T)
        if t_norm < tol:
            break
        u = math.cos(t_norm) * u + math.sin(t_norm) * T / t_norm
        if norm(u) > tol:
            u = u / norm(u)
        steps += 1
    scale = float((p * norms).sum())
    return scale * u / norms, steps
