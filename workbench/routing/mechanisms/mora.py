"""MoRA: a growing pool of rank-1 experts that score themselves (continual learning). RECONSTRUCTED.

RECONSTRUCTED: the authors released no code. This follows the spec (routing.md §7), itself built from
the abstract and a secondary summary of the paper's Eq. ~8; every detail below is unverified (⚠).

Each task adds r rank-1 experts (row A_i, "key"; column B_:,i, "value"); earlier ranks are frozen but
stay in the mixture. There is no router: each rank scores itself from its own activation.

    h = A x                                  A (R, in): the rows of every task so far (R grows by r per task)
    s_i = h_i / sqrt(Σ_j h_j²)               normalised self-activation over all R ranks
    idx = topk(s, k);  w = softmax(s_idx / τ) over the top-k, zero elsewhere   (activation budget k)
    evaluation only: w_i ← w_i · 1[s_i ≥ δ]  (threshold pruning; δ = −inf turns it off)
    Δ = scale · B (w ⊙ h)

⚠ Reconstructed choices: top-k on the signed s (not |s|); no renormalisation after pruning; ``scale``
(default 1, as the summary's equation has none) stands in for a possible α/r; k, τ, δ and r per task
are not known, so the defaults (r=8, k=4, τ=1, δ=−inf) are ours. Records carry ``selected`` = the
top-k, except for evaluation forwards that prune (then ``selected`` is None and the active ranks are
the non-zero weights). Input-dependent gates: not mergeable into W0.

Grow the pool with ``router.add_task_ranks(r)`` (or ``add_task_ranks(lab.routers[name], r)`` for every
module); ``trainable()`` is the newest task's ranks only.

Reference: Lu et al., "Little By Little: Continual Learning via Self-Activated Sparse Mixture-of-Rank
Adaptive Learning" (MoRA, arXiv 2506.21035); no public code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workbench.adapters.init import INITS
from workbench.errors import WorkbenchError
from workbench.routing.base import INIT_NAMES, ROUTERS, Router
from workbench.routing.gates import check_k, topk_dense
from workbench.routing.routed import Routed


@ROUTERS.register("mora", bounds={"r": (1, None), "k": (1, None), "tau": (0.0, None), "delta": (-1.0, 1.0),
                                  "scale": (0.0, None)},
                  flags=("exportable",),
                  choices={"init": INIT_NAMES})
class MoRA(Router):
    """MoRA: a growing pool of self-activated rank-1 experts (top-k of their own normalized activations).

    Args:
        r: rank-1 experts added per task.
        k: experts active per token.
        tau: softmax temperature over the top-k scores.
        delta: evaluation-time pruning threshold on the scores s ∈ [-1, 1] (-inf: no pruning).
        scale: the update's scale (1: none, as the summary's equation).
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    default_targets = "all-linear"  # the paper applies it to attention and MLP
    reference = "MoRA, arXiv 2506.21035 (RECONSTRUCTED: no public code)"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator, r: int = 8,
                 k: int = 4, tau: float = 1.0, delta: float = -math.inf, scale: float = 1.0,
                 init: str = "lora"):
        super().__init__()
        self.k = check_k(k, r, "ranks of the first task")
        if not tau > 0:
            raise WorkbenchError(f"MoRA temperature tau={tau} must be > 0 (small values: near one-hot)")
        self.in_features, self.out_features, self.init = in_features, out_features, init
        self.tau, self.delta, self.scale = tau, delta, scale
        self.seed = int(torch.randint(2**31 - 1, (1,), generator=generator))  # one generator per task
        self.A, self.B = nn.ParameterList(), nn.ParameterList()  # per task: (r_t, in), (out, r_t)
        self.add_task_ranks(r)

    @property
    def n_ranks(self) -> int:
        return sum(a.shape[0] for a in self.A)

    def add_task_ranks(self, r: int) -> None:
        """Freeze every rank so far and add ``r`` new trainable ones (B = 0 with ``init="lora"``)."""
        if not isinstance(r, int) or r < 1:
            raise WorkbenchError(f"MoRA add_task_ranks needs a positive int number of ranks; got {r!r}")
        for p in self.parameters():
            p.requires_grad_(False)
        like = self.A[0] if len(self.A) else torch.empty(0)
        A, B = INITS.get(self.init)(self.out_features, self.in_features, r,
                                    torch.Generator().manual_seed(self.seed + len(self.A)))
        self.A.append(nn.Parameter(A.to(like)))
        self.B.append(nn.Parameter(B.to(like)))

    def gates(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """(scores s, weights w, top-k indices, whether pruning applied) for rank activations h (…, R)."""
        s = F.normalize(h, dim=-1)  # h_i / sqrt(Σ_j h_j²)
        idx, w = topk_dense(s, self.k, lambda top: (top / self.tau).softmax(-1))
        prune = not self.training and self.delta > -math.inf
        return s, (w * (s >= self.delta) if prune else w), idx, prune

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        A, B = torch.cat(list(self.A)), torch.cat(list(self.B), dim=1)  # (R, in), (out, R)
        h = F.linear(x.to(A.dtype), A)  # (…, R)
        s, w, idx, pruned = self.gates(h)
        self.emit(s, w, None if pruned else idx)
        return self.scale * F.linear(w * h, B)

    def trainable(self) -> list[nn.Parameter]:
        """The newest task's ranks only (earlier ones stay frozen)."""
        return [self.A[-1], self.B[-1]]


def add_task_ranks(routed: Routed, r: int) -> None:
    """A new task for every MoRA router of a lab's ``Routed`` (``lab.routers[name]``): r more ranks each."""
    if not all(isinstance(r, MoRA) for r in routed.modules.values()):
        raise WorkbenchError(f"{routed.name!r} is a {routed.mechanism!r} router; add_task_ranks is for MoRA")
    for router in routed.modules.values():
        router.add_task_ranks(r)
    routed.params["task_ranks"] = [a.shape[0] for a in next(iter(routed.modules.values())).A]
