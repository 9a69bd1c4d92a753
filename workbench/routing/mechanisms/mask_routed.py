"""Mask-routed LoRA: K named LoRA branches, each token goes through exactly one, chosen by its type id.

    t = token_types (B, T), an integer in [0, K) per token (branch k = position k in ``branches``)
    y = W x + Σ_k 1[t = k] · s_k · B_k A_k dropout(x)

Hard routing with no learned gate: Arcana's MM-LoRA (K = 2: a visual token goes through the vision
LoRA, every other token through the language LoRA), generalised to any number of named branches with
their own ranks, and usable for any token typing (e.g. TARA-like per-token adapters). The type ids
come from the routing context key ``token_types``; a shape that is not the sequence's (B, T) or an id
outside [0, K) is an error (no hard-coded image span as the authors' inference fallback).

Scaling: s_k = ``scaling`` (default 2 for every branch, hard-coded in Arcana's code, whatever the
rank); give ``alpha`` (one number or one per branch) instead for s_k = α_k / r_k. Each branch's A is
Kaiming-uniform and B zero (``init="lora"``), as in the code.

Telemetry: the RoutingRecord has one expert per branch; ``scores`` and ``weights`` are the one-hot
type of each token and ``selected`` (B, T, 1) its branch. ``hook_branch_norm`` carries (B, T, K):
‖Δ_k‖₂ of each token's update in the branch it went through (zero in the others), computed only when
someone records it, so per-layer ‖Δ_V‖ vs ‖Δ_L‖ (the spec's view) is a sum over tokens.

Reference: Arcana, "Improving Multi-modal Large Language Model through Boosting Vision Capabilities"
(arXiv 2410.13733); code github syp2ysy/Arcana @eefd549,
arcana/model/language_model/modeling_llama_mmlora.py (SLoRA). Defaults r_L = 192, r_V = 64,
scaling 2, dropout 0.05, targets q,k,v,o,gate,up,down ("all-linear" here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.adapters.init import INITS
from workbench.errors import WorkbenchError
from workbench.hooks import HookPoint
from workbench.routing.base import INIT_NAMES, ROUTERS, Router
from workbench.routing.context import context_value


def per_branch(value: float | dict[str, float], names: list[str], what: str) -> dict[str, float]:
    """One number for every branch, or a dict naming each branch exactly."""
    if not isinstance(value, dict):
        return {n: float(value) for n in names}
    if set(value) != set(names):
        raise WorkbenchError(f"{what} must name every branch {names} (or be one number); got {sorted(value)}")
    return {n: float(value[n]) for n in names}


def check_types(types: torch.Tensor, shape: torch.Size, n: int, who: str) -> torch.Tensor:
    """``types`` as a long (B, T) tensor of ids in [0, n), or a clear error."""
    if tuple(types.shape) != tuple(shape):
        raise WorkbenchError(
            f"{who}: token_types has shape {tuple(types.shape)} but the sequence is {tuple(shape)} (B, T); "
            "give one type id per token of the batch (during cached generation, the new tokens' ids)"
        )
    if types.dtype.is_floating_point or types.dtype == torch.bool:
        raise WorkbenchError(f"{who}: token_types must hold integer ids, got dtype {types.dtype}")
    if types.numel() and (types.min() < 0 or types.max() >= n):
        raise WorkbenchError(
            f"{who}: token_types ids must be in [0, {n}) (one per branch); got ids "
            f"{int(types.min())}..{int(types.max())}"
        )
    return types.long()


@ROUTERS.register("mask-routed", flags=("exportable", "needs_token_types"), bounds={"dropout": (0.0, 1.0)},
                  choices={"init": INIT_NAMES})
class MaskRoutedLoRA(Router):
    """Mask-routed LoRA (Arcana's MM-LoRA): named LoRA branches; each token takes the one its type picks.

    Args:
        branches: branch name -> rank, in type-id order (default: language 192, vision 64, as Arcana).
        scaling: the scale s of every branch, or one per branch (default 2, as Arcana's code).
        alpha: instead of ``scaling``: s_k = α_k / r_k (one number or one per branch).
        dropout: dropout probability on the LoRA branch's input.
        init: how the factors start (``workbench.adapters.INITS``): ``"lora"`` B = 0, ``"random"`` B ≠ 0.
    """

    default_targets = "all-linear"
    reference = "Arcana MM-LoRA, arXiv 2410.13733; github syp2ysy/Arcana @eefd549 modeling_llama_mmlora.py"

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator,
                 branches: dict[str, int] | None = None, scaling: float | dict[str, float] | None = None,
                 alpha: float | dict[str, float] | None = None, dropout: float = 0.05, init: str = "lora"):
        super().__init__()
        branches = dict(branches or {"language": 192, "vision": 64})
        names = list(branches)
        if not names or any(int(r) < 1 for r in branches.values()):
            raise WorkbenchError("branches must map names to ranks >= 1, e.g. "
                                 f"{{'language': 192, 'vision': 64}}; got {branches}")
        if scaling is not None and alpha is not None:
            raise WorkbenchError("give either scaling (s_k) or alpha (s_k = α_k / r_k), not both")
        if alpha is not None:
            alphas = per_branch(alpha, names, "alpha")
            self.scaling = {n: alphas[n] / branches[n] for n in names}
        else:
            self.scaling = per_branch(2.0 if scaling is None else scaling, names, "scaling")
        self.branches, self.dropout = names, dropout
        self.A, self.B = nn.ParameterDict(), nn.ParameterDict()
        for n in names:
            A, B = INITS.get(init)(out_features, in_features, int(branches[n]), generator)
            self.A[n], self.B[n] = nn.Parameter(A), nn.Parameter(B)  # (r_k, in), (out, r_k)
        self.hook_branch_norm = HookPoint()

    def forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        types = check_types(context_value("token_types", needed_by="mask-routed LoRA"), x.shape[:-1],
                            len(self.branches), "mask-routed LoRA")
        z = F.dropout(x, self.dropout, self.training) if self.dropout else x
        onehot = F.one_hot(types, len(self.branches)).to(x.dtype)  # (B, T, K)
        delta = torch.zeros(*x.shape[:-1], self.B[self.branches[0]].shape[0], dtype=x.dtype, device=x.device)
        parts = []  # each branch's update where its tokens are, zero elsewhere
        for k, n in enumerate(self.branches):
            update = self.scaling[n] * F.linear(F.linear(z, self.A[n]), self.B[n])  # (B, T, out)
            parts.append(torch.where((types == k)[..., None], update, torch.zeros((), dtype=update.dtype)))
            delta = delta + parts[-1]
        if self.hook_branch_norm._forward_hooks:
            self.hook_branch_norm(torch.stack([p.detach().norm(dim=-1) for p in parts], -1))  # (B, T, K)
        self.emit(onehot, onehot, types[..., None])
        return delta
