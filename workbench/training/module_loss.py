"""ModuleLoss: the Loop's objective for a plain module trained on a batch function (no lab).

    objective = ModuleLoss(unet, lambda ids: denoising_loss(unet, *batch(ids)))
    loop = Loop(list(unet.parameters()), objective, Shuffled([(0, i) for i in ids], seed=0),
                session=lambda: training_session(unet), label="scene-unet", ...)

The diffusion UNet and its judge are not language models with adapters, but they train through
the one loop all the same (seeded steps, schedule, non-finite checks, history): their loss is a
function of the drawn payloads (here scene indices).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

from workbench.training.objectives import Losses


class ModuleLoss:
    """Objective ``(items, present=None) -> Losses`` for one task: ``loss_fn(payloads)``.

    Args:
        module: what trains (the Loop looks for routers' auxiliary terms in it: none here).
        loss_fn: payloads (list) -> scalar loss tensor (mean over the batch).
    """

    def __init__(self, module: torch.nn.Module, loss_fn: Callable[[list], torch.Tensor]):
        self.module, self.loss_fn = module, loss_fn

    def __call__(self, items, present=None) -> Losses:
        payloads = [p for _, p in items]
        loss = self.loss_fn(payloads)
        return Losses(loss, [(0, loss, len(payloads), 1.0)])


@contextmanager
def training_session(module: torch.nn.Module):
    """Train mode with every parameter trainable for the block; the previous state comes back after."""
    was_training = module.training
    flags = [p.requires_grad for p in module.parameters()]
    module.train().requires_grad_(True)
    try:
        yield
    finally:
        module.train(was_training)
        for p, f in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(f)
