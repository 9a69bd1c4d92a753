"""DoRA, exactly as peft computes it: a learned magnitude per output row times a normalized direction.

    W' = diag(m / ‖W + sBA‖_row) (W + sBA)

The forward adds to the base output (peft ``DoraLinearLayer.forward``; the norm is detached, as the
paper's section 4.3 and peft do, so it gets no gradient):

    Δy = (m/n − 1) ⊙ (x Wᵀ) + (m/n) ⊙ s·(B A x),   n = ‖W + s·BA‖_row (detached)

What "the update" means for DoRA: the effective weight update is the dense matrix
ΔW_eff = diag(m/n)(W + sBA) − W. It depends on the base W and is not the low-rank product sBA, so
factored geometry (angles, spectra) and factor-space merges do not apply to it: ``Adapter.delta`` and
``Adapter.factors`` refuse DoRA modules, and ``effective_delta`` computes ΔW_eff from a base weight.
A weight w scales the whole contribution (w·Δy); w = 1 is peft's DoRA, and a sum of adapters adds
their contributions, each computed against the base weight W (peft's training-mode path).

Reference: Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation", ICML 2024.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def row_norm(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, s: float) -> torch.Tensor:
    """n = ‖W + s·BA‖ per output row, (out,), detached. W is (out, in) in its forward layout."""
    lora_weight = (B @ A).to(W.dtype)  # (out, in)
    return torch.linalg.norm(W + s * lora_weight.detach(), dim=1).to(W.dtype).detach()


def dora_update(x: torch.Tensor, W: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                magnitude: torch.Tensor, s: float, lora_out: torch.Tensor) -> torch.Tensor:
    """Δy added to the base output for inputs x (..., in); ``lora_out`` = B A x (..., out)."""
    W = W.to(x.dtype)
    scale = (magnitude / row_norm(W, A.to(x.dtype), B.to(x.dtype), s)).view(1, -1)  # (1, out)
    return (scale - 1) * F.linear(x, W) + scale * lora_out * s


def effective_delta(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, magnitude: torch.Tensor,
                    s: float) -> torch.Tensor:
    """ΔW_eff = diag(m/n)(W + sBA) − W, (out, in): what ``merge_into_base`` adds at weight 1."""
    Wf, lora = W.float(), s * (B.float() @ A.float())
    scale = (magnitude.float() / torch.linalg.norm(Wf + lora, dim=1)).view(-1, 1)  # (out, 1)
    return (scale - 1) * Wf + scale * lora
