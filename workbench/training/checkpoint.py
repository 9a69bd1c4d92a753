"""Checkpoints of a run: weight snapshots (the last good weights) and adapter copies with lineage.

``snapshot(params)`` / ``restore(params, snap)`` keep and put back the trained parameters (the loop
takes one at the start of every step, so a non-finite loss can put back the last weights whose
losses were finite). ``adapter_checkpoint`` copies an adapter out of the lab, its lineage saying
whose checkpoint it is, at which step, on which tasks and with which seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def snapshot(params: Sequence[torch.nn.Parameter]) -> list[torch.Tensor]:
    """Detached copies of ``params`` (the same shapes, dtypes and devices)."""
    return [p.detach().clone() for p in params]


@torch.no_grad()
def restore(params: Sequence[torch.nn.Parameter], snap: Sequence[torch.Tensor]) -> None:
    """Copy a ``snapshot`` back into ``params``."""
    for p, s in zip(params, snap, strict=True):
        p.copy_(s)


def adapter_checkpoint(adapter, step: int, *, tasks: Sequence[str], seed: int, note: str | None = None):
    """A copy of ``adapter`` named ``<name>_step<step>`` (not added to any lab), with lineage
    ``checkpoint_of, step, tasks, seed`` (and ``note``)."""
    ckpt = adapter.copy(f"{adapter.name}_step{step}")
    ckpt.lineage = {**ckpt.lineage, "checkpoint_of": adapter.name, "step": step, "tasks": list(tasks),
                    "seed": seed}
    if note:
        ckpt.lineage["note"] = note
    return ckpt
