"""sce: SCE (select, calculate, erase) from FuseChat: variance-selected entries, norm-weighted, sign-agreed.

On the weighted updates vᵢ = wᵢΔWᵢ of the sources with a nonzero weight, per module (mergekit's ``sce``):

1. Select: keep the ``density`` fraction of the entries with the largest variance across the vᵢ
   (of those with a nonzero variance), in every vᵢ; density 1 keeps all (mergekit's select_topk).
2. Calculate: each source's coefficient λᵢ = mean(vᵢ²) / Σⱼ mean(vⱼ²) on the selected entries.
3. Erase: per entry, drop the vᵢ whose sign differs from the sign of Σᵢ vᵢ (≥ 0 counts as +).
4. ΔW' = Σᵢ λᵢmᵢvᵢ / Σᵢ λᵢmᵢ per entry (divisor 1 where nothing is kept).

Deviations: mergekit has no per-model weights (its λ are the only ones); ours scale each update
first, so a weight-0 source takes no part and negating every weight negates the result. The dense
result is factored back by SVD (rank Σrᵢ; ``sce_svd``: max rᵢ).

Reference: Wan et al., "FuseChat: Knowledge Fusion of Chat Models" (arXiv 2408.07990), §3.3 SCE;
mergekit ``merge_methods/sce.py`` (``get_sce_mask``, ``get_sce_weight``, ``get_erase_mask``).
"""

from __future__ import annotations

import torch

from workbench.merging.base import DENSITY, elementwise


def sce_combine(stack: torch.Tensor) -> torch.Tensor:
    """Steps 2-4 on a (K, …) stack of (already selected) weighted updates -> (…)."""
    K = stack.shape[0]
    energy = stack.pow(2).flatten(1).mean(1)  # (K,)
    total = float(energy.sum())
    lam = energy / total if total != 0 else torch.full_like(energy, 1.0 / K)
    lam = lam.reshape(K, *([1] * (stack.dim() - 1)))
    majority = torch.where(stack.sum(0) >= 0, 1.0, -1.0).to(stack.dtype)
    keep = (stack.sign() == majority).to(stack.dtype)  # (K, …)
    weights = lam * keep
    divisor = weights.sum(0)
    divisor = torch.where(divisor == 0, torch.ones_like(divisor), divisor)
    return (stack * weights).sum(0) / divisor


def select_mask(stack: torch.Tensor, density: float) -> torch.Tensor:
    """(…) 0/1: the top ``density`` fraction of the entries with a nonzero variance across dim 0."""
    if density >= 1:
        return torch.ones_like(stack[0])
    var = stack.var(0, unbiased=False)
    k = int(density * int(torch.count_nonzero(var)))
    mask = torch.zeros_like(var)
    if k:
        mask.view(-1)[torch.topk(var.abs().reshape(-1), k).indices] = 1
    return mask


@elementwise("sce", bounds={"density": DENSITY})
def sce(deltas: torch.Tensor, weights: torch.Tensor, *, generators, peft_compat: bool,
        density: float = 1.0) -> torch.Tensor:
    """SCE: select the highest-variance entries, weight each update by its mean square, erase minority signs.

    Args:
        density: the fraction of entries kept by variance across the updates, in (0, 1] (mergekit's
            ``select_topk``, default 1: no selection).
    """
    live = (weights != 0).nonzero().flatten()
    if not len(live):
        return torch.zeros_like(deltas[0])
    stack = deltas[live] * weights[live].reshape(-1, 1, 1)  # (K', out, in)
    stack = stack * select_mask(stack, density)
    return sce_combine(stack)
