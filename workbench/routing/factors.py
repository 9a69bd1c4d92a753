"""Seeded parameter initialisations that routers share (experts' factors, router weights)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workbench.adapters.init import INITS


def expert_factors(n_experts: int, in_f: int, out_f: int, r: int, *, init: str,
                   generator: torch.Generator) -> tuple[nn.Parameter, nn.Parameter]:
    """Stacked factors of ``n_experts`` LoRAs: A (E, r, in) and B (E, out, r), each from ``INITS[init]``.

    ``init="lora"`` gives B = 0 (every update starts at zero); ``"random"`` a non-zero B for tests.
    """
    pairs = [INITS.get(init)(out_f, in_f, r, generator) for _ in range(n_experts)]
    return (nn.Parameter(torch.stack([a for a, _ in pairs])),
            nn.Parameter(torch.stack([b for _, b in pairs])))


def linear_weight(out_f: int, in_f: int, generator: torch.Generator) -> nn.Parameter:
    """nn.Linear's default weight init (Kaiming-uniform, a=√5: U(±1/√in)), seeded."""
    bound = 1.0 / math.sqrt(in_f)
    return nn.Parameter((torch.rand(out_f, in_f, generator=generator) * 2 - 1) * bound)


def mixture_delta(z: torch.Tensor, A: torch.Tensor, B: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Σ_e gate_e · B_e A_e z, without forming any ΔW.

    Args:
        z: (…, in); A: (E, r, in); B: (E, out, r); gate: (…, E) (any scaling folded in).
    Returns:
        (…, out)
    """
    n_experts, r, in_f = A.shape
    h = F.linear(z.to(A.dtype), A.reshape(n_experts * r, in_f)).unflatten(-1, (n_experts, r))  # (…, E, r)
    h = h * gate[..., None].to(h.dtype)
    return F.linear(h.flatten(-2), B.permute(1, 0, 2).reshape(B.shape[1], n_experts * r))
