"""LoRA-Mixer: LoRA experts routed into the attention projections with a hard–soft top-k gate.

⚠ RECONSTRUCTED from the abstracts (arXiv 2507.00029 v1/v2): the authors' code is not released and the
paper's Sec. 3 was not checked, so every equation below is a reconstruction. Per projection (q, k, v, o),
x (B, T, n):

    p = softmax(W_r x)   (B, T, E);   M = onehot(topk(p, k))
    ĝ = straight_through(M⊙p / Σ(M⊙p), p)      forward: the hard renormalised gate; backward: ∂p only
    Δ = Σ_e ĝ_e s_e B_e A_e dropout(x),   s_e = α/r

The hard part is detached, so the backward is exactly that of p (⚠ the spec's "hard + p − sg(p)" leaves
open whether hard also carries its own gradient). Record: scores p, weights ĝ, selected idx.

⚠ Routing Specialization Loss (RSL, v2; "Specialization Balance Loss" in v1), training forwards:

    L = λ_bal · E Σ_e f_e P_e  (``load_balance``, all projections' logits concatenated)
      + λ_spec · mean over projections of (mean_t H(p_t) − H(mean_t p_t))   (sharp per token, diverse overall)

The specialization term is ≤ 0 (entropy is concave) and 0 when every token routes alike. Padding is
masked out of both when the context has an ``attention_mask``.

Frozen-bank mode (the "plug-and-play" regime): ``bank=[adapter names]`` routes over adapters already
in the lab instead of new experts; their factors are copied in, zero-padded to the largest rank, kept
frozen with their own scales s_j, and only W_r trains.

Reference: "LoRA-Mixer: Coordinate Modular LoRA Experts Through Serial Attention Routing"
(arXiv 2507.00029, ICLR'26); repo hustcselwb/LoRA-Mixer @076f673 (README only). ⚠ Defaults are not
published: E=8, k=2, r=16, α=32, dropout 0.05 are borrowed from MixLoRA's template; λ_bal = λ_spec = 0.01
are placeholders; the router init is nn.Linear's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import WorkbenchError
from workbench.routing.base import INIT_NAMES, ROUTERS, Router
from workbench.routing.context import token_mask
from workbench.routing.factors import expert_factors, linear_weight, mixture_delta
from workbench.routing.gates import check_k, entropy, renormalize, straight_through, topk_dense
from workbench.routing.losses import AUX_LOSSES


@ROUTERS.register("lora-mixer", flags=("bank", "exportable"),
                  bounds={"experts": (1, None), "k": (1, None), "r": (1, None), "alpha": (0.0, None),
                          "dropout": (0.0, 1.0), "lambda_bal": (0.0, None), "lambda_spec": (0.0, None)},
                  choices={"init": INIT_NAMES},
                  docs={"bank": "names of the lab's adapters to route over, frozen, instead of new experts "
                                "(then experts and r come from the bank)"})
class LoRAMixer(Router):
    """LoRA-Mixer: LoRA experts in the attention projections behind a hard–soft (straight-through) top-k gate.

    Args:
        experts: number of LoRA experts E.
        k: experts active per token.
        r: rank of each LoRA expert.
        alpha: the LoRA scale numerator: s = α / r.
        dropout: dropout probability on the LoRA branch's input.
        lambda_bal: coefficient of the load-balance term of the specialization loss.
        lambda_spec: coefficient of the entropy (specialization) term.
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    default_targets = "attention"
    reference = "LoRA-Mixer, arXiv 2507.00029 (⚠ reconstructed from the abstracts; code not released)"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator, experts: int = 8,
                 k: int = 2, r: int = 16, alpha: float = 32.0, dropout: float = 0.05,
                 lambda_bal: float = 0.01, lambda_spec: float = 0.01, init: str = "lora"):
        super().__init__()
        self.experts, self.k = experts, check_k(k, experts)
        self.dropout, self.lambda_bal, self.lambda_spec = dropout, lambda_bal, lambda_spec
        self.A, self.B = expert_factors(experts, in_features, out_features, r, init=init, generator=generator)
        self.register_buffer("scaling", torch.full((experts,), alpha / r))  # s_e (bank: per adapter)
        self.router = linear_weight(experts, in_features, generator)  # W_r (E, in)

    @classmethod
    def build(cls, *, path, module, lab, generator, bank: list[str] | None = None, **params) -> LoRAMixer:
        if bank is None:
            return cls(module.in_features, module.out_features, generator=generator, **params)
        unknown = [n for n in bank if n not in lab.adapters]
        if unknown or {"experts", "r"} & params.keys():
            raise WorkbenchError(f"LoRA-Mixer bank: adapters {unknown} are not in this lab (it has "
                                 f"{list(lab.adapters)}); experts and r come from the bank, do not pass them")
        adapters = [lab.adapters[n] for n in bank]
        for a in adapters:
            a.require_plain("a LoRA-Mixer bank")
        missing = [a.name for a in adapters if path not in a.modules]
        if missing:
            raise WorkbenchError(f"LoRA-Mixer bank: adapters {missing} have no factors at {path!r}; "
                                 "target only modules every bank adapter covers")
        factors = [a.modules[path] for a in adapters]
        r = max(f.A.shape[0] for f in factors)
        router = cls(module.in_features, module.out_features, generator=generator, experts=len(bank), r=r,
                     **params)
        with torch.no_grad():
            router.A.zero_(), router.B.zero_()
            for e, (f, a) in enumerate(zip(factors, adapters, strict=True)):
                router.A[e, : f.A.shape[0]] = f.A
                router.B[e, :, : f.B.shape[1]] = f.B
                router.scaling[e] = a.scale(path)
        router.A.requires_grad_(False), router.B.requires_grad_(False)
        return router

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, soft p, gate ĝ (hard value, soft gradient), selected experts (…, k))."""
        logits = F.linear(x.float(), self.router.float())
        p = logits.softmax(-1)
        idx, hard = topk_dense(p, self.k)
        hard = renormalize(hard)  # over the dense row, as the code
        return logits, p, straight_through(hard.detach(), p), idx

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        logits, p, gate, idx = self.gates(x)
        z = F.dropout(x, self.dropout, self.training) if self.dropout else x
        delta = mixture_delta(z, self.A, self.B, gate * self.scaling)
        if self.training:
            mask = token_mask(x, needed_by="LoRA-Mixer's routing loss")
            self.add_aux("load_balance", self.lambda_bal, logits=logits, k=self.k, mask=mask)
            self.add_aux("lora_mixer_specialization", self.lambda_spec, probs=p, mask=mask)
        self.emit(p, gate.detach(), idx)
        return delta


@AUX_LOSSES.register("lora_mixer_specialization")
def specialization(payloads: list[dict]) -> torch.Tensor:
    """⚠ mean over modules of mean_t H(p_t) − H(mean_t p_t) (≤ 0; 0 when all tokens route alike).

    Payload: ``probs`` (…, E) router probabilities, optional ``mask`` (…) of real tokens.
    """
    terms = []
    for payload in payloads:
        p = payload["probs"].reshape(-1, payload["probs"].shape[-1]).float()
        if payload.get("mask") is not None:
            p = p[payload["mask"].reshape(-1).bool()]
        terms.append(entropy(p).mean() - entropy(p.mean(0)))
    return torch.stack(terms).mean()
