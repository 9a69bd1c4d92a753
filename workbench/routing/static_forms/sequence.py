"""Static form of ALoRA, whose update for a token reads the earlier tokens' codes.

    Δ_t = s B (z_t + W_o concat_h Σ_u p^h_tu W_v^h z_u),   z = A x

No static map sees the other tokens, so the static form keeps each token's attention to itself,
averaged per head: d̄_h = mean_t p^h_tt, and drops the attention to other tokens:

    Δ ≈ s B (I + W_o D̄ W_v) A x,   D̄ = diag(d̄_h repeated over the head's r/h dims)

Exact when W_o = 0 (ALoRA is then the plain LoRA) and on the first token of every sequence (p_11 = 1).
The statistic is read from ``hook_attn`` (B, h, T, T), the per-head attention.

Reference: the mechanism's own (workbench.routing.mechanisms.alora, reconstructed).
"""

from __future__ import annotations

import torch

from workbench.routing.static_form import StaticForm, register


def _self_attention(probs: torch.Tensor) -> torch.Tensor:
    return probs.diagonal(dim1=-2, dim2=-1).transpose(1, 2)  # (B, h, T, T) -> (B, T, h)


def _alora(router, path: str, d: torch.Tensor):
    W_o, W_v = router.W_o.detach().float().cpu(), router.W_v.detach().float().cpu()  # (r, r)
    D = d.float().cpu().repeat_interleave(router.r // router.heads)  # (r,)
    mix = torch.eye(router.r) + W_o @ (D[:, None] * W_v)  # (r, r)
    return {path: (mix @ router.A.detach().float().cpu(), router.scaling * router.B.detach().float().cpu())}


register("alora", "s·B (I + W_o D̄ W_v) A: each token's mean attention to itself kept",
    StaticForm(_alora, constant=lambda r: torch.zeros(r.heads) if not r.W_o.detach().any() else None,
               statistic=_self_attention, hook="hook_attn", exact_when="W_o = 0 (the plain LoRA)"))
