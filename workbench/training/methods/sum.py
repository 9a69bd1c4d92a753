"""sum: the plain multi-task update, the gradient of the (weighted) sum of the task losses.

Reference: Caruana, "Multitask Learning", Machine Learning 28, 1997 (hard parameter sharing on the
summed task losses).
"""

from __future__ import annotations

import torch

from workbench.training.grad_method import GRAD_METHODS, GradMethod


@GRAD_METHODS.register("sum")
class Sum(GradMethod):
    """g = Σ_t g_t: what one backward pass through the summed loss gives."""

    def combine(self, grads: torch.Tensor) -> torch.Tensor:
        return grads.sum(0)  # (D,)
