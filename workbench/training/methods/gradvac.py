"""GradVac: move each pair's gradient cosine up to a target learned as a moving average.

Reference: Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task Optimization in
Massively Multilingual Models", ICLR 2021.

Deviation: the paper sets targets per layer group; here one target per task pair over the whole
adapter (``granularity`` of LibMTL's "whole model" setting).
"""

from __future__ import annotations

import math

import torch

from workbench.training.grad_method import GRAD_METHODS, GradMethod


@GRAD_METHODS.register("gradvac", flags=("per_task_gradients",), bounds={"beta": (0.0, 1.0)})
class GradVac(GradMethod):
    """Lifts each task pair's gradient cosine to a target learned as a moving average.

    For each task i and other task j (random order), with φ = cos(g_i', g_j) and target φ̂_ij:
    if φ < φ̂_ij, add ``g_j · ‖g_i'‖ (φ̂ √(1−φ²) − φ √(1−φ̂²)) / (‖g_j‖ √(1−φ̂²))`` to g_i', which
    makes cos(g_i', g_j) equal φ̂_ij exactly; then φ̂_ij ← (1−β) φ̂_ij + β φ. Targets start at 0.

    Args:
        beta: the moving-average rate of the targets (paper: 0.01).
    """

    def __init__(self, beta: float = 0.01, seed: int = 0):
        super().__init__(seed)
        self.beta = beta
        self.targets: torch.Tensor | None = None  # (T, T) φ̂

    def adjust(self, grads: torch.Tensor) -> torch.Tensor:
        """(T, D) -> (T, D) adjusted task gradients (and the targets move)."""
        g = grads.to(torch.float64)
        T = g.shape[0]
        if self.targets is None or self.targets.shape[0] != T:
            self.targets = torch.zeros(T, T, dtype=torch.float64)
        out = g.clone()
        norms = g.norm(dim=1)  # (T,)
        for i in range(T):
            for j in torch.randperm(T, generator=self.generator).tolist():
                ni = out[i].norm()
                if j == i or norms[j] == 0 or ni == 0:
                    continue
                phi = float((out[i] @ g[j]) / (ni * norms[j]))
                target = float(self.targets[i, j])
                if phi < target:
                    coef = (target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2)) \
                        / math.sqrt(1 - target**2)
                    out[i] += g[j] * (ni * coef / norms[j])
                self.targets[i, j] = (1 - self.beta) * target + self.beta * phi
        return out.to(grads.dtype)

    def combine(self, grads: torch.Tensor) -> torch.Tensor:
        return self.adjust(grads).sum(0)  # (D,)
