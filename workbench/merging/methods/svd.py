"""svd: the best rank-r approximation of Σᵢ wᵢ·ΔWᵢ, from the factors (no dense ΔW).

QR of the stacked factors B = [w₁s₁B₁ | …] and Aᵀ, then the SVD of the (≤ Σrᵢ)² core: the exact
singular values of the weighted sum, so the error is exactly the Eckart–Young tail
√(Σ_{j>r} σⱼ²) / √(Σ σⱼ²). Default rank max rᵢ, as peft's ``svd`` (``svd_rank=None``); peft
materializes every ΔWᵢ and runs a full SVD of the dense sum instead: same result, far slower.

Reference: peft ``LoraModel.add_weighted_adapter(combination_type="svd")`` (after kohya-ss
``svd_merge_lora.py``); Eckart & Young, "The approximation of one matrix by another of lower
rank", Psychometrika 1936.
"""

from __future__ import annotations

import torch

from workbench.merging.base import factored
from workbench.ops.lowrank import factored_svd, stack, truncate


@factored("svd", rank_default="max", flags=("peft_equivalent",))
def svd(parts: list[tuple[torch.Tensor, torch.Tensor]], weights: list[float], *,
        rank: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-r approximation of the weighted sum (r = max rᵢ by default), exact SVD from the factors."""
    U, S, Vh = factored_svd(*stack(parts, weights))  # (out, k), (k,), (k, in)
    return truncate(U, S, Vh, rank)
