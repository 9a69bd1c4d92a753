"""MixLoRA-Dynamic: MixLoRA's FFN experts with top-p routing, a variable number of experts per token.

Per token (N = B·T), p = softmax(W_r h) (N, E). Sorted descending, an expert is kept while the mass
before it is at most ``top_p``, so the expert whose cumulative mass first exceeds ``top_p`` is kept too:

    keep_j = (Σ_{i<j} p_(i)) ≤ top_p                 (j in descending order of p)
    out = Σ_{e kept} p_e FFN_e(h)                     (the softmax weights themselves: NOT renormalised)

As the code, the weights are not renormalised, so Σ p_kept ∈ [top_p, 1] scales the frozen FFN that
every expert contains: the model does not start exactly as the base (it does for top_p = 1).
Auxiliary loss (training): c_aux · E · Σ_e c_e P_e, c_e = the share of real tokens whose kept set has e
(each kept slot counts, as the code's per-slot masks summed), P_e the mean router probability.

Deviations: the code's ``temperature`` (dividing the softmax *probabilities* before the cumulative sum;
0 = off, its default) is not offered; padding tokens are left out of the aux loss (the code counts
them). Everything else is ``mixlora.MixLoRA`` (experts, jitter, attention LoRA via ``add_mixlora``).

Reference: MoE-PEFT (github TUDB-Labs/MoE-PEFT @8115bbf) moe_peft/adapters/mixlora/model.py
(_dynamic_top_p, _dynamic_load_balancing_loss_func, DynamicSparseMoe) and config.py (top_p 0.8,
temperature 0, router_init_range 0.02, jitter 0); the routing strategy "mixlora-dynamic" of Li et al.,
"MixLoRA" (arXiv 2404.15159).
"""

from __future__ import annotations

import torch

from workbench.routing.base import INIT_NAMES, ROUTERS
from workbench.routing.context import token_mask
from workbench.routing.losses import AUX_LOSSES
from workbench.routing.mechanisms.mixlora import MixLoRA


@ROUTERS.register("mixlora-dynamic", bounds={"experts": (1, None), "top_p": (0.0, 1.0), "r": (1, None),
                                             "alpha": (0.0, None), "dropout": (0.0, 1.0),
                                             "jitter": (0.0, None), "aux_coef": (0.0, None),
                                             "router_init_range": (0.0, None)},
                  choices={"init": INIT_NAMES})
class MixLoRADynamic(MixLoRA):
    """MixLoRA with top-p routing: each token takes the fewest experts whose mass exceeds ``top_p``.

    Args:
        experts: number of FFN experts E.
        top_p: the routing mass to cover (the expert that crosses it is kept).
        r: rank of each LoRA expert.
        alpha: the LoRA scale numerator: s = α / r.
        dropout: dropout probability on the LoRA branch's input.
        jitter: multiplicative router-input noise in training (0: off).
        aux_coef: coefficient of the load-balance loss.
        router_init_range: std of the router's N(0, σ²) initialization.
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    reference = "MixLoRA-Dynamic: github TUDB-Labs/MoE-PEFT @8115bbf adapters/mixlora/model.py"

    def __init__(self, d_model: int, d_ff: int, *, generator: torch.Generator, experts: int = 8,
                 top_p: float = 0.8, r: int = 16, alpha: float = 32.0, dropout: float = 0.05,
                 jitter: float = 0.0, aux_coef: float = 0.001, router_init_range: float = 0.02,
                 init: str = "lora"):
        super().__init__(d_model, d_ff, generator=generator, experts=experts, k=experts, r=r, alpha=alpha,
                         dropout=dropout, jitter=jitter, aux_coef=aux_coef,
                         router_init_range=router_init_range, init=init)
        self.top_p = top_p

    def select(self, probs: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-p: (N, E) expert ids in descending p, −1 past the crossing one; (N, E) raw softmax gates."""
        top, order = probs.sort(-1, descending=True)
        keep = (top.cumsum(-1) - top) <= self.top_p  # mass before each expert ≤ p: the crossing one stays
        return order.masked_fill(~keep, -1), torch.zeros_like(probs).scatter(-1, order, top * keep)

    def balance(self, logits: torch.Tensor, idx: torch.Tensor, x: torch.Tensor) -> None:
        if self.aux_coef:
            chosen = torch.zeros_like(logits).scatter_add(-1, idx.clamp_min(0), (idx >= 0).to(logits.dtype))
            mask = token_mask(x, needed_by="MixLoRA-Dynamic's load balance")
            self.add_aux("dynamic_balance", self.aux_coef, logits=logits, chosen=chosen,
                         mask=None if mask is None else mask.reshape(-1))


@AUX_LOSSES.register("dynamic_balance")
def dynamic_balance(payloads: list[dict]) -> torch.Tensor:
    """E · Σ_e c_e P_e over the tokens of all layers: c_e the share of tokens that kept expert e.

    Payload: ``logits`` (N, E), ``chosen`` (N, E) 0/1 (the top-p selection), optional ``mask`` (N,).
    Reference: MoE-PEFT _dynamic_load_balancing_loss_func (github TUDB-Labs/MoE-PEFT @8115bbf).
    """
    logits = torch.cat([p["logits"].reshape(-1, p["logits"].shape[-1]) for p in payloads])
    chosen = torch.cat([p["chosen"].reshape(-1, p["chosen"].shape[-1]) for p in payloads]).detach()
    masks = [p.get("mask") for p in payloads]
    if all(m is not None for m in masks):
        keep = torch.cat([m.reshape(-1) for m in masks]).bool()
        logits, chosen = logits[keep], chosen[keep]
    probs = logits.float().softmax(-1)
    return logits.shape[-1] * (chosen.float().mean(0) * probs.mean(0)).sum()
