"""The registry of multi-task gradient methods and the interface they share."""

from __future__ import annotations

import torch

from workbench.registry import Registry


class GradMethod:
    """Maps the task gradients of one step to one update.

    Subclasses implement ``combine``; the constructor takes the method's options (and ``seed``, the
    run's seed, for methods that draw random orders).
    """

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def combine(self, grads: torch.Tensor) -> torch.Tensor:
        """(T, D) task gradients -> (D,) update, on the scale of their sum."""
        raise NotImplementedError


GRAD_METHODS: Registry[type[GradMethod]] = Registry(
    "gradient method", base=GradMethod, skip=("seed",), flags=("per_task_gradients",),
    package="workbench.training.methods")  # a method is one file of this package, found by scan
"""``per_task_gradients``: the method needs each task's gradient apart (a forward and backward per task);
without it the loop takes one backward over the whole batch."""
