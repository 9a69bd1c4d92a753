"""Where a run's batches come from: seeded sources of ``(task index, payload)`` items.

Every source has ``draw(n) -> list[(task, payload)]`` and ``n_tasks``; the payload is what the
objective reads (encoded features for token losses, ``(Task, Example)`` pairs for joined models).

    Shuffled(items, seed)          a seeded permutation of all items, drawn in order, refilled when spent
    ByTask(features, probs, seed)  the task by its sampling probability, the example from that task's
                                   own seeded permutation (``workbench.training.sampling.TaskSampler``)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workbench.training.sampling import TaskSampler

Item = tuple[int, object]  # (task index, payload)


class Shuffled:
    """All items in a seeded random order; a new permutation starts when fewer than a batch remain.

    Args:
        items: ``(task index, payload)`` pairs.
        seed: seeds the permutations (same seed, same batches).
    """

    def __init__(self, items: Sequence[Item], seed: int):
        self.items = list(items)
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.n_tasks = max((t for t, _ in self.items), default=0) + 1

    def draw(self, n: int) -> list[Item]:
        if len(self.order) < n:
            self.order += torch.randperm(len(self.items), generator=self.generator).tolist()
        idx, self.order = self.order[:n], self.order[n:]
        return [self.items[i] for i in idx]


class ByTask:
    """Items drawn task first (by ``probabilities``), then example (each task cycles its own data).

    Args:
        features: one list of payloads per task.
        probabilities: (T,) the chance of drawing each task for one item (``SAMPLINGS``).
        seed: seeds the task draws and each task's example order.
    """

    def __init__(self, features: Sequence[Sequence[object]], probabilities: torch.Tensor, seed: int):
        self.features = [list(f) for f in features]
        self.sampler = TaskSampler([len(f) for f in self.features], probabilities,
                                   torch.Generator().manual_seed(seed), seed=seed)
        self.n_tasks = len(self.features)

    def draw(self, n: int) -> list[Item]:
        return [(t, self.features[t][i]) for t, i in self.sampler.draw(n)]
