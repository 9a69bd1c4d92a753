"""MixLoRA-Switch: MixLoRA's FFN experts with Switch-Transformer routing (top-1, expert capacity).

Per sequence (B, T) and token, p = softmax(W_r h) (fp32), e* = argmax p. Tokens take their expert in
order along the sequence; once ``capacity`` tokens of one sequence went to an expert, later ones
overflow:

    out = p_{e*} · FFN_{e*}(h)        routed tokens (the gate is the raw top-1 probability, as Switch)
    out = FFN(h)                      overflowing tokens: the frozen FFN alone (see deviations)

Auxiliary losses (training, over the logits of all layers): c_aux · E · Σ_e f_e P_e (f_e = the share of
tokens whose argmax is e: the code's E²·mean(f·P)) and c_z · mean(logsumexp(logits)²) (router z-loss).

Deviations: the code gives overflowing tokens their *input* (``next_states = hidden_states.clone()``,
times p in training; at inference it returns the block input for every token, a bug), which would
drop the frozen FFN the experts share; here they get the frozen FFN, unscaled. Padding tokens count
toward capacity (as the code) but are left out of the aux losses (the code counts them). The
``sparse_step`` and ``ffn_dropout`` options (off by default) are not offered. Because the gate is
p_{e*} < 1, the model does not start as the base even with B = 0 (as the code).

Reference: MoE-PEFT (github TUDB-Labs/MoE-PEFT @8115bbf) moe_peft/adapters/mixlora/model.py
(SwitchSparseMoe, _switch_router_z_loss_func, _switch_load_balancing_loss_func) and config.py
(expert_capacity 32, router_z_loss_coef 0.001, router_init_range 1.0, jitter 0.01); Fedus et al.,
"Switch Transformers" (JMLR 2022), eq. 4 and the z-loss of Zoph et al., ST-MoE (2022), eq. 5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.routing.base import INIT_NAMES, ROUTERS
from workbench.routing.context import token_mask
from workbench.routing.losses import AUX_LOSSES
from workbench.routing.mechanisms.mixlora import MixLoRA


@ROUTERS.register("mixlora-switch", bounds={"experts": (1, None), "capacity": (1, None), "r": (1, None),
                                            "alpha": (0.0, None), "dropout": (0.0, 1.0),
                                            "jitter": (0.0, None), "aux_coef": (0.0, None),
                                            "z_coef": (0.0, None), "router_init_range": (0.0, None)},
                  choices={"init": INIT_NAMES})
class MixLoRASwitch(MixLoRA):
    """MixLoRA with Switch routing: top-1 expert per token, at most ``capacity`` tokens per expert.

    Args:
        experts: number of FFN experts E.
        capacity: tokens per sequence an expert takes; later ones get the frozen FFN alone.
        r: rank of each LoRA expert.
        alpha: the LoRA scale numerator: s = α / r.
        dropout: dropout probability on the LoRA branch's input.
        jitter: multiplicative router-input noise in training (0: off).
        aux_coef: coefficient of the load-balance loss.
        z_coef: coefficient of the router z-loss.
        router_init_range: std of the router's N(0, σ²) initialization.
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    reference = "MixLoRA-Switch: github TUDB-Labs/MoE-PEFT @8115bbf adapters/mixlora/model.py"

    def __init__(self, d_model: int, d_ff: int, *, generator: torch.Generator, experts: int = 8,
                 capacity: int = 32, r: int = 16, alpha: float = 32.0, dropout: float = 0.05,
                 jitter: float = 0.01, aux_coef: float = 0.001, z_coef: float = 0.001,
                 router_init_range: float = 1.0, init: str = "lora"):
        super().__init__(d_model, d_ff, generator=generator, experts=experts, k=1, r=r, alpha=alpha,
                         dropout=dropout, jitter=jitter, aux_coef=aux_coef,
                         router_init_range=router_init_range, init=init)
        self.capacity, self.z_coef = int(capacity), z_coef

    def select(self, probs: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1) the top-1 expert, −1 when over capacity; (N, E) the top-1 probability there."""
        top, best = probs.max(-1)  # (N,)
        onehot = F.one_hot(best, self.experts)  # (N, E)
        length = x.shape[-2] if x.dim() >= 3 else x.shape[0]
        priority = onehot.reshape(-1, length, self.experts).cumsum(1).reshape(onehot.shape)  # per sequence
        kept = (priority * onehot).sum(-1) <= self.capacity  # (N,)
        gates = torch.zeros_like(probs).scatter(-1, best[:, None], (top * kept)[:, None])
        return best.masked_fill(~kept, -1)[:, None], gates

    def unrouted(self, out: torch.Tensor, h: torch.Tensor, idx: torch.Tensor, base: dict,
                 act: nn.Module) -> torch.Tensor:
        """Overflowing tokens get the frozen FFN, down(act(gate h) ⊙ up h), with no expert."""
        rows = torch.where(idx[:, 0] < 0)[0]
        if not rows.numel():
            return out
        z = h[rows]
        y = base["down_proj"](act(base["gate_proj"](z)) * base["up_proj"](z))
        return out.index_add(0, rows, y.to(out.dtype))

    def balance(self, logits: torch.Tensor, idx: torch.Tensor, x: torch.Tensor) -> None:
        mask = token_mask(x, needed_by="MixLoRA-Switch's load balance")
        mask = None if mask is None else mask.reshape(-1)
        if self.aux_coef:  # the shared load_balance with k = 1 is E·Σ f·P with f from the argmax
            self.add_aux("load_balance", self.aux_coef, logits=logits, k=1, mask=mask)
        if self.z_coef:
            self.add_aux("router_z", self.z_coef, logits=logits, mask=mask)


@AUX_LOSSES.register("router_z")
def router_z(payloads: list[dict]) -> torch.Tensor:
    """mean over the tokens of all layers of logsumexp(logits)² (ST-MoE's router z-loss).

    Payload: ``logits`` (N, E), optional ``mask`` (N,) of real tokens.
    Reference: Zoph et al., "ST-MoE" (arXiv 2202.08906), eq. 5; MoE-PEFT _switch_router_z_loss_func.
    """
    logits = torch.cat([p["logits"].reshape(-1, p["logits"].shape[-1]) for p in payloads])
    masks = [p.get("mask") for p in payloads]
    if all(m is not None for m in masks):
        logits = logits[torch.cat([m.reshape(-1) for m in masks]).bool()]
    return (torch.logsumexp(logits.float(), -1) ** 2).mean()
