"""Task sampling for multi-task training: how often each task is drawn, behind ``SAMPLINGS``.

Every entry maps the tasks' training-set sizes to the probability of drawing each task for one
example of a batch: ``p_t ∝ n_t^(1/τ)``. Proportional is τ = 1, uniform is τ → ∞, ``temperature``
takes τ (Arivazhagan et al. 2019 used τ = 5 for massively multilingual translation).

Reference: Arivazhagan et al., "Massively Multilingual Neural Machine Translation in the Wild:
Findings and Challenges", 2019 (proportional, uniform and temperature sampling of tasks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.registry import Registry

SAMPLINGS: Registry[Callable[..., torch.Tensor]] = Registry("task sampling")


@SAMPLINGS.register("proportional")
def proportional(sizes: Sequence[int]) -> torch.Tensor:
    """p_t = n_t / Σ n: every example equally likely (the concatenated data set)."""
    return temperature(sizes, 1.0)


@SAMPLINGS.register("uniform")
def uniform(sizes: Sequence[int]) -> torch.Tensor:
    """p_t = 1 / T: every task equally likely, whatever its size."""
    return torch.full((len(sizes),), 1.0 / len(sizes), dtype=torch.float64)


@SAMPLINGS.register("temperature", bounds={"temperature": (0.0, None)})
def temperature(sizes: Sequence[int], temperature: float = 2.0) -> torch.Tensor:
    """p_t ∝ n_t^(1/τ): between proportional (τ = 1) and uniform (τ → ∞).

    Args:
        temperature: τ (> 0); 1 is proportional, large values approach uniform.

    Reference: Arivazhagan et al., "Massively Multilingual Neural Machine Translation in the Wild", 2019.
    """
    if temperature <= 0:
        raise WorkbenchError(f"sampling temperature must be > 0; got {temperature}")
    n = torch.tensor(list(sizes), dtype=torch.float64)
    p = n ** (1.0 / temperature)
    return p / p.sum()


class TaskSampler:
    """Draws (task, example) pairs: the task from the sampling probabilities, the example from a
    seeded permutation of that task's examples (each task cycles through its own data)."""

    def __init__(self, sizes: Sequence[int], probabilities: torch.Tensor, generator: torch.Generator,
                 seed: int = 0):
        self.sizes = list(sizes)
        self.p = probabilities
        self.g = generator
        # one generator per task: a task's example order does not depend on how tasks are drawn
        self.task_g = [torch.Generator().manual_seed(seed * 7919 + t) for t in range(len(sizes))]
        self.orders: list[list[int]] = [[] for _ in sizes]

    def draw(self, n: int) -> list[tuple[int, int]]:
        """n pairs (task index, example index)."""
        tasks = torch.multinomial(self.p, n, replacement=True, generator=self.g).tolist()
        out = []
        for t in tasks:
            if not self.orders[t]:
                self.orders[t] = torch.randperm(self.sizes[t], generator=self.task_g[t]).tolist()[::-1]
            out.append((t, self.orders[t].pop()))
        return out
