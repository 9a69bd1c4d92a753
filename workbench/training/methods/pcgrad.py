"""PCGrad: project each task gradient off the gradients it conflicts with.

Reference: Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020.
"""

from __future__ import annotations

import torch

from workbench.training.grad_method import GRAD_METHODS, GradMethod


@GRAD_METHODS.register("pcgrad", flags=("per_task_gradients",))
class PCGrad(GradMethod):
    """For each task i, for the other tasks j in a random order: if ``g_i'·g_j < 0``, remove from
    ``g_i'`` its component along ``g_j`` (the original ``g_j``, as in the paper's Algorithm 1).
    The update is the sum of the projected gradients.

    With two tasks this makes each projected gradient orthogonal to the other task's gradient
    when they conflicted, so the update has a non-negative inner product with both.
    """

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        """(T, D) -> (T, D) projected task gradients."""
        g = grads.to(torch.float64)
        out = g.clone()
        sq = (g * g).sum(1)  # (T,)
        T = g.shape[0]
        for i in range(T):
            for j in torch.randperm(T, generator=self.generator).tolist():
                if j == i or sq[j] == 0:
                    continue
                dot = out[i] @ g[j]
                if dot < 0:
                    out[i] -= (dot / sq[j]) * g[j]
        return out.to(grads.dtype)

    def combine(self, grads: torch.Tensor) -> torch.Tensor:
        return self.project(grads).sum(0)  # (D,)
