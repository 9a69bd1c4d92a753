"""SMoRA: every rank of one LoRA is an expert; a sigmoid router keeps the top-k ranks per token.

    z = dropout(x);  g = sigmoid(W_g z) (repeated P times when ranks are grouped in blocks of P)
    ĝ = g + b;  (v, idx) = topk(ĝ, k);  G = scatter(idx, v), G ← k·G / ΣG   (Σ_i G_i = k)
    Δ = (α/k) · B (G ⊙ A z)

The bias b is not trained: after every training forward, b_i ← b_i + u·sign(mean(c) − c_i) with
c_i the number of tokens (padding included, as the authors' code) that selected rank i. The biased
values v enter the gate (not only the selection), as in the code. ``sparse=True`` computes only the
k selected rank-1 products per token (gathering rows of A and columns of B); the dense path is
the same function.

Reference: Zhao et al., "Each Rank Could be an Expert: Single-Ranked Mixture of Experts LoRA for
Multi-Task Learning" (SMoRA, arXiv 2501.15103); code github StyxXuan/smora @8bdabcd,
packages/peft/src/peft/tuners/srmole/layer.py. Defaults r=64, k=8, α=16, P=1, u=1e-5 from its configs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import WorkbenchError
from workbench.routing.base import INIT_NAMES, ROUTERS, Router
from workbench.routing.factors import expert_factors, linear_weight
from workbench.routing.gates import check_k, renormalize, sign_bias_update, topk_dense


@ROUTERS.register("smora", bounds={"r": (1, None), "k": (1, None), "alpha": (0.0, None),
                                   "rank_partition": (1, None),
                                   "bias_u": (0.0, None), "dropout": (0.0, 1.0)},
                  flags=("exportable",),
                  choices={"init": INIT_NAMES})
class SMoRA(Router):
    """SMoRA: every rank of one LoRA is an expert; a sigmoid router with a balancing bias keeps the top k.

    Args:
        r: rank of the LoRA (the number of rank experts).
        k: ranks active per token.
        alpha: the LoRA scale numerator (s = α / k: the gates sum to k).
        rank_partition: ranks per router output (P; it divides r).
        bias_u: step u of the balancing bias (moved after training forwards, not trained).
        dropout: dropout probability on the LoRA branch's input.
        sparse: compute only the k selected rank-1 products per token (same function).
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    default_targets = "all-linear"
    reference = "SMoRA, arXiv 2501.15103; github StyxXuan/smora @8bdabcd srmole/layer.py"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator, r: int = 64,
                 k: int = 8, alpha: float = 16.0, rank_partition: int = 1, bias_u: float = 1e-5,
                 dropout: float = 0.0, sparse: bool = False, init: str = "lora"):
        super().__init__()
        self.k = check_k(k, r, "ranks")
        if r % rank_partition:
            raise WorkbenchError(f"rank_partition={rank_partition} must divide r={r}")
        self.r, self.partition, self.scaling = r, rank_partition, alpha / k  # α/k, not α/r (as the code)
        self.bias_u, self.dropout, self.sparse = bias_u, dropout, sparse
        A, B = expert_factors(1, in_features, out_features, r, init=init, generator=generator)
        self.A, self.B = nn.Parameter(A.data[0]), nn.Parameter(B.data[0])  # (r, in), (out, r)
        self.router = linear_weight(r // rank_partition, in_features, generator)  # W_g (r/P, in)
        self.register_buffer("bias", torch.zeros(r))

    def gates(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores g (…, r), gates G (…, r) with Σ G = k, selected ranks (…, k))."""
        g = torch.sigmoid(F.linear(z, self.router)).repeat_interleave(self.partition, dim=-1)
        idx, G = topk_dense(g + self.bias, self.k)
        G = renormalize(G, total=self.k)
        return g, G, idx

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        z = F.dropout(x, self.dropout, self.training) if self.dropout else x
        g, G, idx = self.gates(z)
        if self.sparse:  # only the k selected rank-1 products
            A_sel = self.A[idx]  # (…, k, in)
            h = torch.einsum("...ki,...i->...k", A_sel, z) * G.gather(-1, idx)
            delta = torch.einsum("...k,...ko->...o", h, self.B.T[idx])
        else:
            delta = F.linear(G * F.linear(z, self.A), self.B)
        self.emit(g, G, idx, self.bias)  # the bias that made this selection (before its update)
        if self.training and self.bias_u:
            sign_bias_update(self.bias, torch.bincount(idx.reshape(-1), minlength=self.r), self.bias_u)
        return self.scaling * delta
