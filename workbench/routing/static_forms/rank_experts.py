"""Static forms of the rank-expert routers: SMoRA, FlyLoRA and MoRA (every rank of one LoRA is an expert).

Each routes per token over the r ranks of one pair of factors, Δ = s·B (g ⊙ A x), so the static form
at the mean gate ḡ is s·B diag(ḡ) A: the ranks ḡ switches off (ḡ_i = 0) are left out.

Reference: the mechanisms' own (workbench.routing.mechanisms.smora, flylora, mora).
"""

from __future__ import annotations

import math

import torch

from workbench.routing.static_form import StaticForm, ranks_weighted, register


def _smora(router, path: str, g: torch.Tensor):
    return {path: ranks_weighted(router.A, router.scaling * router.B, g)}  # (α/k) B diag(Ḡ) A


def _smora_constant(router):
    """k = r and one router output for every rank (P = r) with a uniform bias: each G_i = k/r·r/k = 1."""
    uniform = bool((router.bias == router.bias[0]).all())
    return torch.ones(router.r) if router.k == router.r == router.partition and uniform else None


register("smora", "s·B diag(Ḡ) A with Ḡ the mean rank gate (Σ Ḡ = k)", StaticForm(
    _smora, constant=_smora_constant,
    exact_when="k = r = rank_partition with a uniform bias (every G_i = 1)"))


def _flylora(router, path: str, m: torch.Tensor):
    return {path: ranks_weighted(router.A, router.scaling * router.B, m)}  # (α/r) B diag(m̄) A


register("flylora", "(α/r)·B diag(m̄) A, m̄ how often each rank is in the top k", StaticForm(
    _flylora, constant=lambda r: torch.ones(r.r) if r.k == r.r else None,
    exact_when="k = r (every rank active: the full (α/r)·B·A)"))


def _mora(router, path: str, w: torch.Tensor):
    A, B = torch.cat(list(router.A)), torch.cat(list(router.B), dim=1)  # (R, in), (out, R)
    return {path: ranks_weighted(A, router.scale * B, w)}


def _mora_constant(router):
    """One rank in all, no pruning: its weight is the softmax of one value, 1."""
    return torch.ones(1) if router.n_ranks == 1 and router.delta == -math.inf else None


register("mora", "scale·B diag(w̄) A over every task's ranks, w̄ the mean top-k weight",
    StaticForm(_mora, constant=_mora_constant, exact_when="a single rank in the pool and delta = -inf"))
