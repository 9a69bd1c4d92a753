"""FlyLoRA: a frozen sparse random A is both the down-projection and the router (rank-wise implicit MoE).

    a = A · dropout(x)                       A (r, in): frozen, p non-zeros per row, values N(0, 1/r²)
    idx = topk(select(a + d), k)             select = identity ("signed", peft code) or |·| ("abs")
    Δ = (α/r) · B (a ⊙ onehot(idx))          the mask multiplies the UNBIASED a

There are no router parameters: the k ranks with the largest (biased) activation win, and only
those columns of B are used (and get gradient). The per-rank bias d is not trained by the optimizer;
it moves after a forward toward balanced rank usage, with c_i the number of tokens (padding
included) that selected rank i:

    update="every_forward" (peft code: every forward, training AND evaluation)  d ← d + u·sign(mean(c) − c)
    update="train_only"    (minimal flylora.py @0da2ff: training forwards only)  same rule
    update="accumulate"    (spec's minimal flylora.py variant: counts add up over training forwards;
                            ``update_bias()`` applies d ← d + u·sign(k/r − c) and resets them.
                            Note the units: k/r is a fraction, c raw counts, so in effect used ranks
                            go down and unused ones up.)

``detach_A_branch=True`` follows the peft code's non-bnb path (a computed under no_grad: no gradient
reaches x through the LoRA branch); False keeps it, as the bnb path does. A is a seeded buffer, so
adapters of one seed are reproducible, and A of different seeds are near-orthogonal (the model
merging argument). Merging into W0: only B·A without the mask; the mask depends on the input, so
the routed update is NOT exactly mergeable into the base weight.

Reference: Zou et al., "FlyLoRA: Boosting Task Decoupling and Parameter Efficiency via Implicit
Rank-Wise Mixture-of-Experts" (NeurIPS'25, arXiv 2510.08396); code github gfyddha/FlyLoRA @91d9e36,
peft/src/peft/tuners/lora/layer.py (reset_lora_parameters 'sparse': p = n // (r // k); Linear.forward)
and flylora.py. Defaults r=32, k=8, α=64, u=0.001 from scripts/run_mmlu.sh (config default u=0.01).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.adapters.init import INITS
from workbench.errors import WorkbenchError
from workbench.routing.base import INIT_NAMES, ROUTERS, Router
from workbench.routing.gates import check_k, sign_bias_update, topk_dense

SELECT = {"signed": lambda v: v, "abs": torch.abs}  # what top-k ranks: a + d, or |a + d|
UPDATES = ("every_forward", "train_only", "accumulate")


def sparse_projection(r: int, n: int, p: int, generator: torch.Generator) -> torch.Tensor:
    """(r, n): each row has ``p`` non-zeros at random positions, values N(0, 1/r²) (std 1/r)."""
    cols = torch.rand(r, n, generator=generator).argsort(-1)[:, :p]  # p distinct positions per row
    values = torch.randn(r, p, generator=generator) / r
    return torch.zeros(r, n).scatter(-1, cols, values)


@ROUTERS.register("flylora", bounds={"r": (1, None), "k": (1, None), "alpha": (0.0, None),
                                     "bias_u": (0.0, None), "p": (1, None), "dropout": (0.0, 1.0)},
                  flags=("exportable",),
                  choices={"select": tuple(SELECT), "update": UPDATES, "init": INIT_NAMES})
class FlyLoRA(Router):
    """FlyLoRA: a frozen sparse random A selects the top-k of r ranks per token; only B trains.

    Args:
        r: number of ranks (the implicit experts).
        k: ranks active per token.
        alpha: the LoRA scale numerator: s = α / r.
        bias_u: step u of the per-rank balancing bias d (moved after forwards, not trained).
        p: non-zeros per row of A (None: n // (r // k) as the peft code, at least 1).
        dropout: dropout probability on the LoRA branch's input.
        select: what the top-k ranks: ``"signed"`` a + d (the code) or ``"abs"`` |a + d|.
        update: when d moves: after every forward, training forwards only, or on ``update_bias()``.
        detach_A_branch: compute a = A x without gradient to x (the code's non-bnb path).
        init: how B starts (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    default_targets = "all-linear"  # q,k,v,o,gate,up,down on Llama (the authors' run script)
    reference = "FlyLoRA, arXiv 2510.08396; github gfyddha/FlyLoRA @91d9e36 peft/.../lora/layer.py"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator, r: int = 32,
                 k: int = 8, alpha: float = 64.0, bias_u: float = 1e-3, p: int | None = None,
                 dropout: float = 0.0, select: str = "signed", update: str = "every_forward",
                 detach_A_branch: bool = True, init: str = "lora"):
        """``p``: non-zeros per row of A (default n // (r // k) as the peft code, at least 1)."""
        super().__init__()
        self.k = check_k(k, r, "ranks")
        if select not in SELECT:
            raise WorkbenchError(f"FlyLoRA select={select!r} is unknown; use one of {list(SELECT)}")
        if update not in UPDATES:
            raise WorkbenchError(f"FlyLoRA update={update!r} is unknown; use one of {list(UPDATES)}")
        self.p = max(1, in_features // (r // k)) if p is None else p
        if not 1 <= self.p <= in_features:
            raise WorkbenchError(f"FlyLoRA p={p} non-zeros per row of A must be in [1, {in_features}]")
        self.r, self.scaling, self.bias_u, self.dropout = r, alpha / r, bias_u, dropout
        self.select, self.update, self.detach_A_branch = select, update, detach_A_branch
        # frozen and regenerated from the seed on every build, so not saved (persistent=False)
        self.register_buffer("A", sparse_projection(r, in_features, self.p, generator), persistent=False)
        self.B = nn.Parameter(INITS.get(init)(out_features, in_features, r, generator)[1])  # (out, r)
        self.register_buffer("bias", torch.zeros(r))  # d
        self.register_buffer("counts", torch.zeros(r))  # update="accumulate" only

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        z = F.dropout(x, self.dropout, self.training) if self.dropout else x
        a = F.linear(z.to(self.A.dtype), self.A)  # (…, r)
        if self.detach_A_branch:
            a = a.detach()
        idx, mask = topk_dense(SELECT[self.select](a + self.bias), self.k, torch.ones_like)  # (…, k), (…, r)
        mask = mask.to(a.dtype)  # a no-op unless the bias buffer has another dtype than A
        self.emit(a, mask, idx, self.bias)
        self._balance(torch.bincount(idx.reshape(-1), minlength=self.r))
        return self.scaling * F.linear(a * mask, self.B)

    @torch.no_grad()
    def _balance(self, c: torch.Tensor) -> None:
        if self.update == "every_forward" or (self.update == "train_only" and self.training):
            sign_bias_update(self.bias, c, self.bias_u)
        elif self.update == "accumulate" and self.training:
            self.counts += c

    @torch.no_grad()
    def update_bias(self) -> None:
        """``update="accumulate"``: d ← d + u·sign(k/r − c) with the counts since the last call; reset."""
        self.bias += self.bias_u * torch.sign(self.k / self.r - self.counts)
        self.counts.zero_()
