"""MixLoRA: a sparse mixture of LoRA experts inside the FFN, sharing the frozen FFN weights.

Per FFN block, h (N = B·T, d) is the block's input (fp32 router):

    h ← h ⊙ U(1−ε, 1+ε)                        (jitter, training only; experts see it too, as the code)
    p = softmax(W_r h)   (N, E);   (w, idx) = topk(p, k);   w ← w / Σw
    FFN_e(h) = W'_down,e · act(W'_gate,e h ⊙ W'_up,e h),   W'_·,e x = W_· x + s B^e_· A^e_· dropout(x)
    out = Σ_{e ∈ idx} w_e FFN_e(h)              (each expert runs on its own tokens only)

There is no separate base-FFN term: Σw = 1, so the frozen FFN is inside every expert. ΔW is never
formed: each projection is the base layer plus s·B(A x). The attention projections get ONE plain
LoRA (the paper's "independent attention-layer LoRA"): ``add_mixlora`` adds both, and
``lab.use([name, f"{name}_attn"])`` turns both on.

Auxiliary loss (training forwards): c_aux · E · Σ_e f_e P_e over the router logits of all layers
concatenated (``load_balance``), padding masked out with the context's ``attention_mask`` when it is
there. f_e counts (token, slot) assignments as MoE-PEFT does (uniform optimum k); the shared
``load_balance`` divides by k, so the term is queued with coefficient c_aux·k: the same loss as the code.

Record: scores p (N → (B, T, E)), weights the renormalised gate (zero off the top-k), selected idx.

The block's projections are called through their base layers: an adapter on ``mlp.gate_proj`` keeps
its path and applies whenever this router is not in use; using both at once is an error (the block's
output comes from the experts, so the adapter would be skipped silently).

Reference: Li et al., "MixLoRA: Enhancing Large Language Models Fine-Tuning with LoRA-based Mixture of
Experts" (arXiv 2404.15159); code github TUDB-Labs/MoE-PEFT @40f8cb7 moe_peft/adapters/mixlora/model.py,
moe_peft/models/modeling_llama.py (_mixlora_forward). Defaults from templates/mixlora.json: E=8, k=2,
r=16, α=32, dropout 0.05, jitter 0, router init N(0, 0.02); c_aux 0.001 (code default; ⚠ the paper text
may quote 0.01). The code's "mixlora-dynamic" (top-p) and "mixlora-switch" (top-1 with capacity)
routings are the subclasses in ``mixlora_dynamic.py`` and ``mixlora_switch.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.adapters.layer import LoraLayer, out_in
from workbench.errors import WorkbenchError
from workbench.routing.base import INIT_NAMES, ROUTERS, Router
from workbench.routing.context import token_mask
from workbench.routing.factors import expert_factors
from workbench.routing.gates import check_k, renormalize, topk_dense

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


@ROUTERS.register("mixlora", bounds={"experts": (1, None), "k": (1, None), "r": (1, None),
                                     "alpha": (0.0, None),
                                     "dropout": (0.0, 1.0), "jitter": (0.0, None), "aux_coef": (0.0, None),
                                     "router_init_range": (0.0, None)},
                  flags=("exportable",),
                  choices={"init": INIT_NAMES})
class MixLoRA(Router):
    """MixLoRA: a sparse top-k mixture of LoRA experts inside the FFN block, sharing its frozen weights.

    Args:
        experts: number of FFN experts E.
        k: experts active per token.
        r: rank of each LoRA expert.
        alpha: the LoRA scale numerator: s = α / r.
        dropout: dropout probability on the LoRA branch's input.
        jitter: multiplicative router-input noise in training (0: off).
        aux_coef: coefficient of the load-balance loss.
        router_init_range: std of the router's N(0, σ²) initialization.
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    level = "block"
    default_targets = "mlp"
    reference = "MixLoRA, arXiv 2404.15159; github TUDB-Labs/MoE-PEFT @40f8cb7 adapters/mixlora/model.py"

    def __init__(self, d_model: int, d_ff: int, *, generator: torch.Generator, experts: int = 8, k: int = 2,
                 r: int = 16, alpha: float = 32.0, dropout: float = 0.05, jitter: float = 0.0,
                 aux_coef: float = 0.001, router_init_range: float = 0.02, init: str = "lora"):
        super().__init__()
        self.experts, self.k = experts, check_k(k, experts)
        self.scaling, self.dropout, self.jitter, self.aux_coef = alpha / r, dropout, jitter, aux_coef
        shapes = {"gate_proj": (d_model, d_ff), "up_proj": (d_model, d_ff), "down_proj": (d_ff, d_model)}
        self.lora_A, self.lora_B = nn.ParameterDict(), nn.ParameterDict()  # proj -> (E, r, in), (E, out, r)
        for name, (in_f, out_f) in shapes.items():
            self.lora_A[name], self.lora_B[name] = expert_factors(experts, in_f, out_f, r, init=init,
                                                                  generator=generator)
        self.router = nn.Parameter(torch.randn(experts, d_model, generator=generator) * router_init_range)

    @classmethod
    def build(cls, *, path, module, lab, generator, **params) -> MixLoRA:
        missing = [n for n in (*PROJECTIONS, "act_fn") if not hasattr(module, n)]
        if missing:
            raise WorkbenchError(
                f"MixLoRA wraps LlamaMLP-style blocks (gate_proj, up_proj, down_proj, act_fn); {path!r} is a "
                f"{type(module).__name__} without {missing}. Target the FFN blocks, e.g. targets='mlp'"
            )
        d_ff, d_model = out_in(module.gate_proj)
        return cls(d_model, d_ff, generator=generator, **params)

    def forward(self, x: torch.Tensor, block: nn.Module) -> torch.Tensor:
        h = x.reshape(-1, x.shape[-1])  # (N, d)
        if self.training and self.jitter:
            h = h * torch.empty_like(h).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
        logits = F.linear(h.float(), self.router.float())  # (N, E), fp32 as the code
        probs = logits.softmax(-1)
        idx, dense = self.select(probs, x)  # (N, s) experts of each token (−1: none), (N, E) gates
        base = {n: _base_projection(block, n) for n in PROJECTIONS}
        out = torch.zeros_like(h)
        for e in range(self.experts):
            rows = torch.where((idx == e).any(-1))[0]
            if rows.numel():
                y = self._expert(e, h[rows], base, block.act_fn)
                out = out.index_add(0, rows, (dense[rows, e, None] * y).to(out.dtype))
        out = self.unrouted(out, h, idx, base, block.act_fn)
        if self.training:
            self.balance(logits, idx, x)
        lead = x.shape[:-1]
        self.emit(probs.reshape(*lead, -1), dense.reshape(*lead, -1),
                  idx.reshape(*lead, -1) if bool((idx >= 0).all()) else None)
        return out.reshape(x.shape)

    def select(self, probs: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The experts of each token and their gates: top-k, renormalised (w = top / Σ top).

        Variants override this (``mixlora-dynamic``: top-p; ``mixlora-switch``: top-1 with capacity).

        Returns:
            (selected (N, s), −1 where a slot is empty; dense gates (N, E), zero off the selection).
        """
        return topk_dense(probs, self.k, renormalize)

    def unrouted(self, out: torch.Tensor, h: torch.Tensor, idx: torch.Tensor, base: dict,
                 act: nn.Module) -> torch.Tensor:
        """The output of tokens no expert took (none here: every token has k experts)."""
        return out

    def balance(self, logits: torch.Tensor, idx: torch.Tensor, x: torch.Tensor) -> None:
        """Queue the load-balance loss of this forward (training only)."""
        if self.aux_coef:
            self.add_aux("load_balance", self.aux_coef * self.k, logits=logits, k=self.k,
                         mask=_flat(token_mask(x, needed_by="MixLoRA's load balance")))

    def _expert(self, e: int, h: torch.Tensor, base: dict[str, nn.Module], act: nn.Module) -> torch.Tensor:
        """FFN_e on the tokens routed to expert e: every projection is base + s·B_e A_e dropout(x)."""
        def proj(name: str, z: torch.Tensor) -> torch.Tensor:
            A, B = self.lora_A[name][e], self.lora_B[name][e]
            zd = F.dropout(z, self.dropout, self.training) if self.dropout else z
            return base[name](z) + (self.scaling * F.linear(F.linear(zd.to(A.dtype), A), B)).to(z.dtype)

        return proj("down_proj", act(proj("gate_proj", h)) * proj("up_proj", h))


def _base_projection(block: nn.Module, name: str) -> nn.Module:
    """The frozen projection ``name`` of ``block`` (the base layer when a LoraLayer wraps it)."""
    m = getattr(block, name)
    if not isinstance(m, LoraLayer):
        return m
    busy = m.composition.names & (m.lora_A.keys() | m.routes.keys())
    if busy:
        raise WorkbenchError(
            f"MixLoRA replaces the output of the FFN at {m.path!r}, so {sorted(busy)} in use there would be "
            "skipped; use them without the MixLoRA router (or merge them into the base first)"
        )
    return m.base_layer


def add_mixlora(lab, name: str, *, experts: int = 8, k: int = 2, r: int = 16, alpha: float = 32.0,
                dropout: float = 0.05, jitter: float = 0.0, aux_coef: float = 0.001, targets="mlp",
                attention_targets="attention", init: str = "lora", seed: int = 0,
                mechanism: str = "mixlora", **variant):
    """Add MixLoRA as the paper builds it: the FFN expert router ``name`` and a plain attention LoRA.

    ``mechanism`` picks the routing variant (``"mixlora"`` top-k, ``"mixlora-dynamic"`` top-p,
    ``"mixlora-switch"`` top-1 with capacity); ``k`` goes only to a variant that takes it and
    ``variant`` holds the variant's own parameters (``top_p=0.8``, ``capacity=32`` ...).

    Example:
        >>> routed, attn = add_mixlora(lab, "mix")
        >>> lab.use(["mix", "mix_attn"])         # experts in the FFN + the attention LoRA

    Training both: ``workbench.training.fit(lab, routed.trainable() + [p for f in attn.modules.values()
    for p in (f.A, f.B)], features, use=["mix", "mix_attn"], ...)``; ``lab.train_router("mix", ...)``
    trains the router and its experts only.

    Returns:
        (the ``Routed`` of ``name``, the attention ``Adapter`` named ``f"{name}_attn"``, same r, α, dropout).
    """
    params = dict(experts=experts, r=r, alpha=alpha, dropout=dropout, jitter=jitter, aux_coef=aux_coef,
                  init=init, **variant)
    if "k" in ROUTERS.info(mechanism).params:
        params["k"] = k
    routed = lab.add_router(name, mechanism, targets=targets, seed=seed, **params)
    try:
        attn = lab.new_adapter(f"{name}_attn", r=r, alpha=alpha, targets=attention_targets, init=init,
                               seed=seed)
    except Exception:
        lab.remove_router(name)
        raise
    layers = lab.layers
    for path in attn.modules:
        layers[path].dropout[attn.name] = dropout
    return routed, attn


def _flat(mask):
    return None if mask is None else mask.reshape(-1)
