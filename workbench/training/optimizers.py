"""Optimizers for adapter factors, behind ``OPTIMIZERS``: AdamW, LoRA+ (and LoRA-Pro in its file).

An entry is ``build(pairs, lr=..., weight_decay=..., **options) -> torch.optim.Optimizer`` where
``pairs`` lists ``(A, B, s)`` per module (A (r, in), B (out, r) parameters, s the scale), so
methods that treat A and B differently, or need the pairing, can.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.registry import Registry

Pairs = Sequence[tuple[torch.nn.Parameter, torch.nn.Parameter, float]]
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("adamw")
def adamw(pairs: Pairs, *, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW on every factor with one learning rate (what ``train_lora`` uses)."""
    return torch.optim.AdamW([p for A, B, _ in pairs for p in (A, B)], lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("loraplus")
def loraplus(pairs: Pairs, *, lr: float, weight_decay: float = 0.0,
             ratio: float = 16.0) -> torch.optim.Optimizer:
    """AdamW with B's learning rate ``ratio`` times A's: ``lr_B = ratio · lr_A``, ``lr_A = lr``.

    Reference: Hayou, Ghosh & Yu, "LoRA+: Efficient Low Rank Adaptation of Large Models", ICML 2024
    (the authors recommend ratios around 2^4 = 16).
    """
    if ratio <= 0:
        raise WorkbenchError(f"LoRA+ ratio must be > 0 (lr_B / lr_A); got {ratio}")
    return torch.optim.AdamW(
        [{"params": [A for A, _, _ in pairs], "lr": lr, "name": "lora_A"},
         {"params": [B for _, B, _ in pairs], "lr": lr * ratio, "name": "lora_B"}],
        lr=lr, weight_decay=weight_decay)
