"""fit_cvae: train a ``CVAE1D`` on a ``CheckpointSet`` through the one training loop (``training.Loop``).

    history = fit_cvae(vae, data, conditions, steps=400, lr=2e-4, batch_size=2, seed=2024)

The loop's parts: the source is ``Shuffled`` over ``(task id, checkpoint row)`` items; the objective
(``VAEObjective``) stacks the rows and their tasks' conditions and returns the CVAE loss; the session
puts the CVAE in train mode with its parameters trainable and back in eval mode after. The optimizer
is the loop's AdamW, the schedule its linear warm-up then linear decay; each step reseeds torch's
generator (the reparameterization noise), so the same seed gives the same generator bit for bit.

Reference: Shao et al., "In-Context Meta LoRA Generation" (ICM-LoRA), IJCAI 2025, arXiv 2501.17635;
authors' code ``TrainScript_CVAE.py`` (batch 2, lr 2e-4, cosine schedule with T_max = 2·epochs,
2000 epochs, seed 2024).
Deviations: the workbench's one schedule (linear warm-up over ``warmup`` of the steps, then linear
decay to zero) instead of the cosine one, and a number of optimizer steps instead of epochs.
"""

from __future__ import annotations

import contextlib

import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.generation.cvae import CVAE1D
from workbench.generation.data import CheckpointSet
from workbench.training import Loop, Losses, Shuffled


class VAEObjective:
    """The loop's objective: ``(task id, row)`` items -> the CVAE loss (its parts kept in ``parts``).

    Args:
        vae: the CVAE that trains.
        data: the checkpoints (``data.x`` rows).
        conditions: (T, H) one condition per task of ``data``.
    """

    def __init__(self, vae: CVAE1D, data: CheckpointSet, conditions: torch.Tensor):
        self.vae, self.module, self.data, self.conditions = vae, vae, data, conditions
        self.parts: list[tuple[float, float]] = []  # (recon, kl) of each forward

    def __call__(self, items, present: int | None = None) -> Losses:
        rows = torch.tensor([i for _, i in items])
        tasks = torch.tensor([t for t, _ in items])
        out = self.vae.loss(self.data.x[rows], self.conditions[tasks])  # x (B, L), c (B, H)
        self.parts.append((out.recon.item(), out.kl.item()))
        return Losses(out.total)


@contextlib.contextmanager
def _training(vae: CVAE1D):
    params = list(vae.parameters())
    wanted = [p.requires_grad for p in params]
    try:
        vae.train(True)
        for p in params:
            p.requires_grad_(True)
        yield
    finally:
        vae.train(False)
        for p, w in zip(params, wanted, strict=True):
            p.requires_grad_(w)


def fit_cvae(vae: CVAE1D, data: CheckpointSet, conditions: torch.Tensor, *, steps: int = 400,
             lr: float = 2e-4, batch_size: int = 2, seed: int = 2024, warmup: float = 0.0,
             weight_decay: float = 0.0, progress: bool = True, label: str = "cvae") -> pd.DataFrame:
    """Train ``vae`` to reconstruct ``data``'s checkpoints given their tasks' ``conditions``.

    Args:
        vae: a ``CVAE1D`` of ``data.layout.length`` and the conditions' size.
        data: the checkpoints; conditions: (T, H) one per task, in ``data.tasks`` order.
        steps, lr, batch_size, seed, warmup, weight_decay: as in every trainer.

    Returns:
        One row per step: ``step, loss, lr, recon, kl``.
    """
    if conditions.dim() != 2 or conditions.shape[0] != len(data.tasks):
        raise WorkbenchError(f"give one condition per task ({len(data.tasks)} tasks: {data.tasks}); got "
                             f"conditions of shape {tuple(conditions.shape)}")
    if vae.length != data.layout.length or vae.cond_dim != conditions.shape[1]:
        raise WorkbenchError(f"the CVAE takes length {vae.length} and conditions of {vae.cond_dim}; the data "
                             f"has length {data.layout.length} and conditions of {conditions.shape[1]}")
    if batch_size < 2:
        raise WorkbenchError("batch_size must be at least 2 (the CVAE's batch norm needs two rows)")
    objective = VAEObjective(vae, data, conditions)
    items = [(int(t), i) for i, t in enumerate(data.task.tolist())]
    loop = Loop(list(vae.parameters()), objective, Shuffled(items, seed), session=lambda: _training(vae),
                label=label, desc=f"fitting {label} on {len(data)} checkpoints", steps=steps, lr=lr,
                batch_size=batch_size, seed=seed, warmup=warmup, weight_decay=weight_decay,
                reseed="step", progress=progress)
    loop.run()
    history = loop.history()
    parts = pd.DataFrame(objective.parts, columns=["recon", "kl"])
    return pd.concat([history.reset_index(drop=True), parts], axis=1)
