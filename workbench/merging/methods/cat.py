"""cat: concatenate the factors, A' = [A₁; …], B' = [w₁s₁B₁ | …]: exactly Σᵢ wᵢΔWᵢ at rank Σrᵢ.

Ranks may differ. peft's ``combination_type="cat"`` puts wᵢsᵢ on A instead; the product (the ΔW,
what the oracle test compares) is the same. The merged adapter has s = 1.

Reference: peft ``LoraModel.add_weighted_adapter(combination_type="cat")``; Prabhakar et al.,
"LoRA Soups" (CAT with frozen weights), COLING Industry 2025.
"""

from __future__ import annotations

import torch

from workbench.merging.base import factored


@factored("cat", rank_default=None, flags=("peft_equivalent",))
def cat(parts: list[tuple[torch.Tensor, torch.Tensor]], weights: list[float]
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact concatenation of the factors, rank Σrᵢ: the weighted sum with no approximation."""
    A = torch.cat([A for A, _ in parts])  # (Σr, in)
    B = torch.cat([w * sB for (_, sB), w in zip(parts, weights, strict=True)], dim=1)  # (out, Σr)
    return A, B
