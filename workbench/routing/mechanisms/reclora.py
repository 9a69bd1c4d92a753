"""RecLoRA: a bank of M meta-LoRAs per module, mixed in parameter space by weights from a context vector.

    w = softmax(MLP(u) / T)        u (B, d): the routing context's ``context`` (a user representation)
    MLP = LayerNorm(d) → Linear(d, 60) → ReLU → Dropout(0.1) → Linear(60, M)
    A_u = Σ_m w_m A_m   (r, in);   B_u = Σ_m w_m B_m   (out, r)      per sample: rank stays r
    Δ = (α/r) · B_u A_u dropout(x)

Mixing the factors (not the outputs) gives cross terms: B_u A_u = Σ_m Σ_n w_m w_n B_m A_n, which is
not Σ_m w_m B_m A_m unless w is one-hot. ``routing="hard"`` keeps the top-``topk`` (2) logits and
takes the softmax over them (others get weight 0). ⚠ Reconstruction: the code's hard mode writes
``states[~indices] = 0`` (a bitwise-not on integer indices, then a plain softmax), which does not do
that; we implement the evident intent. As the code, T divides the logits in soft mode only.
``sqrt=True`` takes √w after the softmax (the code's ``enable_sqrt_after_softmax``).

One MLP per (layer, module), as the code (``Loreclayer.ctr_final_layer``); only the CTR model that
produces u is shared, and it lives outside the LLM: pass u through ``routing_context(context=u)``.
Init as the code: each A_m Kaiming-uniform (a=√5), B_m = 0, MLP Linear weights Kaiming-uniform with
zero biases, LayerNorm (1, 0).

Reference: Zhu et al., "Lifelong Personalized Low-Rank Adaptation of Large Language Models for
Recommendation" (RecLoRA, arXiv 2408.03533); code github Gebro13/RecLoRA @90f45f9,
modeling_lorec_trash_v1.py (Loreclayer, Lorec), finetune_lorec.py. Defaults M=8, r=8, α=16,
dropout 0.05, targets q,v, T=1 from the code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from workbench.errors import WorkbenchError
from workbench.routing.base import INIT_NAMES, ROUTERS, Router
from workbench.routing.context import context_value
from workbench.routing.factors import expert_factors, linear_weight
from workbench.routing.gates import check_k, topk_dense

ROUTINGS = ("soft", "hard")


@ROUTERS.register("reclora", flags=("exportable", "needs_context_vector"),
                  bounds={"ctr_dim": (1, None), "M": (1, None), "r": (1, None), "alpha": (0.0, None),
                          "T": (0.0, None), "topk": (1, None), "hidden": (1, None), "mlp_dropout": (0.0, 1.0),
                          "dropout": (0.0, 1.0)},
                  choices={"routing": ROUTINGS, "init": INIT_NAMES})
class RecLoRA(Router):
    """RecLoRA: M meta-LoRAs per module, mixed in parameter space by weights read from a context vector.

    Args:
        ctr_dim: width of the context vector u (``routing_context(context=u)``).
        M: number of meta-LoRAs.
        r: rank of each LoRA expert.
        alpha: the LoRA scale numerator: s = α / r.
        T: softmax temperature of the mixing logits (soft routing only).
        routing: ``"soft"`` (softmax over all M) or ``"hard"`` (softmax over the top ``topk``).
        topk: meta-LoRAs kept in hard routing.
        sqrt: take √w after the softmax (the code's ``enable_sqrt_after_softmax``).
        hidden: hidden width of the mixing MLP.
        mlp_dropout: dropout probability inside the mixing MLP.
        dropout: dropout probability on the LoRA branch's input.
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    default_targets = ["q_proj", "v_proj"]
    reference = "RecLoRA, arXiv 2408.03533; github Gebro13/RecLoRA @90f45f9 modeling_lorec_trash_v1.py"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator, ctr_dim: int,
                 M: int = 8, r: int = 8, alpha: float = 16.0, T: float = 1.0, routing: str = "soft",
                 topk: int = 2, sqrt: bool = False, hidden: int = 60, mlp_dropout: float = 0.1,
                 dropout: float = 0.05, init: str = "lora"):
        super().__init__()
        if routing not in ROUTINGS:
            raise WorkbenchError(f"RecLoRA routing={routing!r}; choose one of {ROUTINGS}")
        self.topk = check_k(topk, M, "meta-LoRAs") if routing == "hard" else topk
        self.ctr_dim, self.M, self.r, self.scaling = ctr_dim, M, r, alpha / r
        self.T, self.routing, self.sqrt, self.dropout = T, routing, sqrt, dropout
        self.A, self.B = expert_factors(M, in_features, out_features, r, init=init, generator=generator)
        first, last = skip_init(nn.Linear, ctr_dim, hidden), skip_init(nn.Linear, hidden, M)
        for layer in (first, last):  # seeded Kaiming-uniform weights, zero biases (the code's reset)
            layer.weight = linear_weight(layer.out_features, layer.in_features, generator)
            layer.bias = nn.Parameter(torch.zeros(layer.out_features))
        self.mlp = nn.Sequential(nn.LayerNorm(ctr_dim), first, nn.ReLU(), nn.Dropout(mlp_dropout), last)

    def mix_weights(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(logits (B, M), weights w (B, M), selected (B, topk) in hard mode or None)."""
        logits = self.mlp(u)
        if self.routing == "soft":
            w, idx = (logits / self.T).softmax(-1), None
        else:  # softmax over the top-k logits only (see the module docstring)
            idx, w = topk_dense(logits, self.topk, lambda top: top.softmax(-1))
        return logits, (w.sqrt() if self.sqrt else w), idx

    def mixed_factors(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A_u = Σ_m w_m A_m (B, r, in) and B_u = Σ_m w_m B_m (B, out, r), per sample."""
        return torch.einsum("bm,mri->bri", w, self.A), torch.einsum("bm,mor->bor", w, self.B)

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        x = x.to(self.A.dtype)
        u = self.context(x)
        logits, w, idx = self.mix_weights(u)
        A_u, B_u = self.mixed_factors(w)
        z = F.dropout(x, self.dropout, self.training) if self.dropout else x
        h = torch.einsum("b...i,bri->b...r", z, A_u)
        delta = self.scaling * torch.einsum("b...r,bor->b...o", h, B_u)
        if x.dim() == 3:  # one record row per token: the weights are per sample
            t = x.shape[1]
            self.emit(logits[:, None].expand(-1, t, -1), w[:, None].expand(-1, t, -1),
                      None if idx is None else idx[:, None].expand(-1, t, -1))
        return delta

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """u (B, d) from the routing context, checked against the batch and ``ctr_dim``."""
        who = f"RecLoRA (router {self.owner or '?'})"
        u = context_value("context", needed_by=who)
        u = torch.as_tensor(u, device=x.device, dtype=self.A.dtype)
        if u.dim() != 2 or u.shape != (x.shape[0], self.ctr_dim):
            raise WorkbenchError(
                f"{who} needs context of shape (batch={x.shape[0]}, ctr_dim={self.ctr_dim}), one vector "
                f"per sample; got {tuple(u.shape)}"
            )
        return u

    def extra_repr(self) -> str:
        return f"M={self.M}, r={self.r}, ctr_dim={self.ctr_dim}, routing={self.routing!r}, T={self.T}"
