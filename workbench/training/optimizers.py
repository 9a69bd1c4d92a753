"""Optimizers for what a run trains, behind ``OPTIMIZERS``: AdamW, LoRA+ (LoRA-Pro, NOLA in their files).

An entry is ``build(params, pairs, *, lr, weight_decay, **options) -> torch.optim.Optimizer``: ``params``
are every parameter the run trains, ``pairs`` the ``(A, B, s)`` LoRA factor pairs among them (A (r, in),
B (out, r), s the scale; empty when the run trains no adapter), so methods that treat A and B
differently, or need the pairing, can. An entry that works on the pairs alone declares the flag
``needs_pairs``; the loop refuses it for a run with no pairs or with parameters outside them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.registry import Registry

Pairs = Sequence[tuple[torch.nn.Parameter, torch.nn.Parameter, float]]
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry(
    "optimizer", skip=("lr", "weight_decay"), flags=("needs_pairs",))


@OPTIMIZERS.register("adamw")
def adamw(params: Sequence[torch.nn.Parameter], pairs: Pairs, *, lr: float,
          weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW on every trained parameter with one learning rate (the default of every trainer).

    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("loraplus", bounds={"ratio": (0.0, None)})
def loraplus(params: Sequence[torch.nn.Parameter], pairs: Pairs, *, lr: float, weight_decay: float = 0.0,
             ratio: float = 16.0) -> torch.optim.Optimizer:
    """AdamW with B's learning rate ``ratio`` times A's: ``lr_B = ratio · lr_A``, ``lr_A = lr``.

    Parameters outside the pairs (a router's gate, a projector) train at ``lr``.

    Reference: Hayou, Ghosh & Yu, "LoRA+: Efficient Low Rank Adaptation of Large Models", ICML 2024
    (the authors recommend ratios around 2^4 = 16).

    Args:
        ratio: lr_B / lr_A (> 0; the paper recommends about 16).
    """
    if ratio <= 0:
        raise WorkbenchError(f"LoRA+ ratio must be > 0 (lr_B / lr_A); got {ratio}")
    in_pairs = {id(p) for A, B, _ in pairs for p in (A, B)}
    groups = [{"params": [A for A, _, _ in pairs], "lr": lr, "name": "lora_A"},
              {"params": [B for _, B, _ in pairs], "lr": lr * ratio, "name": "lora_B"}]
    others = [p for p in params if id(p) not in in_pairs]
    if others:
        groups.append({"params": others, "lr": lr, "name": "other"})
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay)
