"""knots: KnOTS: align the updates in one shared basis by SVD, then merge the aligned components.

1. [ΔW₁ … ΔW_N] = U·Σ·[V₁ᵀ … V_Nᵀ] (the column-wise concatenation, out × N·in), computed from the
   factors: QR of [s₁B₁ | …] and of each Aᵢᵀ, then the SVD of a (≤ Σrᵢ)² core; no dense ΔW.
2. Task i's aligned components are ΣVᵢᵀ (k × in), k ≤ Σrᵢ, and ΔWᵢ = U·ΣVᵢᵀ exactly.
3. ``merge`` combines the weighted aligned components elementwise: ``"ties"`` (KnOTS-TIES, the
   default), ``"dare_ties"`` / ``"dare"`` (KnOTS-DARE-TIES), ``"dare_linear"``, ``"magnitude_prune"``,
   or ``"sum"`` (then the result is Σᵢ wᵢΔWᵢ exactly: task arithmetic).
4. ΔW' = U·merged: B' = U (out × k), A' = merged (k × in), rank k.

Defaults follow the KnOTS LLaMA-3-8B rank-16 config (TIES at topK 100, i.e. density 1: sign
election and disjoint mean without trimming). Reconstruction notes: KnOTS keeps components with
σ > 1e-5 (absolute); we keep the numerically nonzero ones (relative to σ₁) so the updates' scale does
not matter. The weights wᵢ (not in KnOTS, whose λ scales the result) multiply the aligned
components; a weight-0 source takes no part, not even in the alignment.

Reference: Stoica et al., "Model merging with SVD to tie the Knots", ICLR 2025
(``gstoica27/KnOTS`` ``task_merger.py::SVDMerger``).
"""

from __future__ import annotations

import torch

from workbench.merging.base import DENSITY, SIGN_METHODS, factored
from workbench.merging.methods.dare_linear import dare_linear
from workbench.merging.methods.dare_ties import dare_ties
from workbench.merging.methods.magnitude_prune import magnitude_prune
from workbench.merging.methods.ties import ties
from workbench.ops.sparsify import weighted_sum_


def _sum(deltas, weights, *, generators, peft_compat, density=1.0, majority_sign_method="total"):
    return weighted_sum_(deltas, weights)


INNER = {"ties": ties, "dare_ties": dare_ties, "dare": dare_ties, "dare_linear": dare_linear,
         "magnitude_prune": magnitude_prune, "sum": _sum}
_SIGNED = {"ties", "dare_ties", "dare"}  # the inner methods that take majority_sign_method


def align(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """KnOTS' shared basis, from the factors (float64).

    Returns:
        (U (out, k), [ΣVᵢᵀ (k, in) per part]) with U·ΣVᵢᵀ = sᵢBᵢAᵢ, k the numerical rank.
    """
    Q_B, R_B = torch.linalg.qr(torch.cat([sB for _, sB in parts], dim=1))  # (out, m), (m, R)
    QR_A = [torch.linalg.qr(A.T) for A, _ in parts]  # Aᵢᵀ = Qᵢ Rᵢ: (in, rᵢ), (rᵢ, rᵢ)
    core = R_B @ torch.block_diag(*[R.T for _, R in QR_A])  # (m, R)
    u, S, vh = torch.linalg.svd(core, full_matrices=False)  # (m, k0), (k0,), (k0, R)
    k = max(1, int((S > S[0] * max(core.shape) * torch.finfo(torch.float32).eps).sum())) if S[0] > 0 else 1
    blocks, start = [], 0
    for Q, R in QR_A:
        r = R.shape[0]
        blocks.append(S[:k, None] * (vh[:k, start:start + r] @ Q.T))  # (k, in)
        start += r
    return Q_B @ u[:, :k], blocks


@factored("knots", rank_default=None, stochastic=True, bounds={"density": DENSITY},
          choices={"merge": tuple(INNER), "majority_sign_method": SIGN_METHODS})
def knots(parts: list[tuple[torch.Tensor, torch.Tensor]], weights: list[float], *, generators,
          merge: str = "ties", density: float = 1.0, majority_sign_method: str = "total"
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """KnOTS: SVD-align the updates in a shared basis, merge the aligned components (TIES by default).

    Args:
        merge: how the aligned components are combined: a TIES/DARE-family method, or ``"sum"``
            (task arithmetic, exact).
        density: the fraction of the aligned components kept by the inner method, in (0, 1].
        majority_sign_method: how each entry's sign is elected: ``"total"`` (sign of the weighted
            sum) or ``"frequency"`` (the most common sign).
    """
    live = [i for i, w in enumerate(weights) if w != 0]
    if not live:
        A, sB = parts[0]
        return A.new_zeros(1, A.shape[1]), sB.new_zeros(sB.shape[0], 1)
    U, blocks = align([parts[i] for i in live])
    stacked = torch.stack(blocks)  # (K, k, in)
    kwargs = {"density": density}
    if merge in _SIGNED:
        kwargs["majority_sign_method"] = majority_sign_method
    merged = INNER[merge](stacked, torch.tensor([weights[i] for i in live], dtype=stacked.dtype),
                          generators=[generators[i] for i in live], peft_compat=False, **kwargs)  # (k, in)
    return merged, U
