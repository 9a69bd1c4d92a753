"""Task gradients of a LoRA module seen in ΔW space, reduced to a Gram matrix without forming ΔW.

Which map. Autograd gives a LoRA module ΔW = s·B·A (A (r, in), B (out, r)) only the factor gradients
``G_A = s Bᵀ G`` and ``G_B = s G Aᵀ`` of the full gradient G = ∂L/∂W. Their cosines between tasks
depend on how ΔW is split into A and B: with B → BM, A → M⁻¹A (same ΔW) they become ``MᵀG_A`` and
``G_B M⁻ᵀ``. The first-order change of ΔW under a factor gradient step, ``s(B G_A + G_B A)``, is no
better: it becomes ``s(BMMᵀG_A + G_B M⁻ᵀM⁻¹A)``, unchanged only for orthogonal M. What the factor
gradients determine independently of the split is the projection of G onto the tangent space of the
rank-r matrices at ΔW (the directions a LoRA of that rank can move ΔW in):

    T(G) = P_B G + (I − P_B) G P_A,    P_B = B(BᵀB)⁻¹Bᵀ,  P_A = Aᵀ(AAᵀ)⁻¹A,

which depends on B and A only through their column and row spaces. It is also LoRA-Pro's equivalent
gradient, the low-rank step closest to G (``workbench.training.lorapro``). From the factor gradients
alone: ``T(G) = B U + V A`` with ``U = (BᵀB)⁻¹G_A / s`` (r, in) and ``V = (I − P_B) G_B (AAᵀ)⁻¹ / s``
(out, r), so the Gram ``⟨T(G_i), T(G_j)⟩_F`` takes r×r products only (no out×in matrix). Pseudo-inverses
make B = 0 (the first step of a LoRA) well defined: then T(G) = G P_A, the only part a step can reach.
"""

from __future__ import annotations

import torch


def tangent_factors(A: torch.Tensor, B: torch.Tensor, s: float, G_A: torch.Tensor, G_B: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, V) with ``T(G) = B U + V A`` for every task at once.

    Args:
        A: (r, in); B: (out, r); s: the module's scale.
        G_A: (T, r, in) and G_B: (T, out, r): the task gradients of A and B.

    Returns:
        U (T, r, in) and V (T, out, r), float64.
    """
    A, B, G_A, G_B = (t.detach().double() for t in (A, B, G_A, G_B))
    Q = torch.linalg.pinv(B.T @ B, hermitian=True)  # (r, r)
    P = torch.linalg.pinv(A @ A.T, hermitian=True)  # (r, r)
    U = Q @ G_A / s  # (T, r, in)
    GBP = G_B @ P / s  # (T, out, r)
    V = GBP - B @ (Q @ (B.T @ GBP))  # (I − P_B) G_B P / s
    return U, V


def tangent_gram(A: torch.Tensor, B: torch.Tensor, s: float, G_A: torch.Tensor, G_B: torch.Tensor
                 ) -> torch.Tensor:
    """(T, T) Gram ``⟨T(G_i), T(G_j)⟩_F`` of the task gradients in ΔW space, from factored products.

    ``⟨BU_i + V_iA, BU_j + V_jA⟩ = ⟨U_i, BᵀB U_j⟩ + ⟨U_iAᵀ, BᵀV_j⟩ + ⟨BᵀV_i, U_jAᵀ⟩ + ⟨V_i AAᵀ, V_j⟩``;
    the cross terms vanish up to round-off (BᵀV = 0) and are kept for exactness.
    """
    U, V = tangent_factors(A, B, s, G_A, G_B)
    A, B = A.detach().double(), B.detach().double()
    BtB, AAt = B.T @ B, A @ A.T  # (r, r)
    UA, BV = U @ A.T, B.T @ V  # (T, r, r)
    cross = torch.einsum("tab,uab->tu", UA, BV)
    return (torch.einsum("tai,ab,ubi->tu", U, BtB, U) + cross + cross.T
            + torch.einsum("toa,ab,uob->tu", V, AAt, V))


def tangent_dense(A: torch.Tensor, B: torch.Tensor, s: float, G_A: torch.Tensor, G_B: torch.Tensor
                  ) -> torch.Tensor:
    """T(G) as dense (T, out, in) matrices: for tests and small modules only."""
    U, V = tangent_factors(A, B, s, G_A, G_B)
    return B.detach().double() @ U + V @ A.detach().double()
