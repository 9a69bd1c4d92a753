"""Loss weightings for multi-task training, behind ``LOSS_WEIGHTINGS``.

A weighting gives, for one task's examples in a batch, a weight per example (how its loss counts
inside the task's loss) and the task's weight in the total. The total loss of a batch is
``Σ_t task_weight_t · Σ_i w_i ℓ_i / Σ_i w_i``, where ``ℓ_i`` is example i's mean token loss.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from workbench.registry import Registry


class LossWeighting:
    """Built per run with every task's training features (``fit(features_per_task)``)."""

    def fit(self, features: Sequence[Sequence[dict]]) -> LossWeighting:
        return self

    def example_weights(self, task: int, features: Sequence[dict]) -> torch.Tensor:
        return torch.ones(len(features))

    def task_weight(self, n_task: int, n_batch: int, n_tasks_present: int) -> float:
        return n_task / n_batch


LOSS_WEIGHTINGS: Registry[type[LossWeighting]] = Registry("loss weighting", base=LossWeighting)


@LOSS_WEIGHTINGS.register("uniform", reference="Caruana, \"Multitask Learning\", Machine Learning 28, "
                                                "1997 (the summed task losses)")
class Uniform(LossWeighting):
    """Every example counts the same: the batch's mean example loss (tasks weigh by their share)."""


@LOSS_WEIGHTINGS.register("balanced")
class Balanced(LossWeighting):
    """Menta's balanced-accuracy-oriented loss: class-balanced cross-entropy per task, tasks equal.

    An example of class c (its target answer) weighs ``w_c ∝ 1/n_c`` (n_c: that class's count in the
    task's training set), normalized so the task's training examples average weight 1; each task
    present in the batch weighs 1/T in the total.

    Reference: Zhang et al., "Menta", arXiv 2512.02716. The paper's exact form is unverified; this
    is the reconstruction the spec asks for (../shared/specs/merging.md §15).
    """

    def fit(self, features: Sequence[Sequence[dict]]) -> Balanced:
        self.weights: list[dict] = []
        for feats in features:
            counts = Counter(_class(f) for f in feats)
            raw = {c: 1.0 / n for c, n in counts.items()}
            mean = sum(raw[_class(f)] for f in feats) / max(1, len(feats))
            self.weights.append({c: w / mean for c, w in raw.items()})
        return self

    def example_weights(self, task: int, features: Sequence[dict]) -> torch.Tensor:
        table = self.weights[task]
        return torch.tensor([table.get(_class(f), 1.0) for f in features])

    def task_weight(self, n_task: int, n_batch: int, n_tasks_present: int) -> float:
        return 1.0 / n_tasks_present


def _class(feature: dict):
    """The class of an example: its ``class`` key, else its answer tokens (labels ≠ -100)."""
    if "class" in feature:
        return feature["class"]
    return tuple(t for t in feature["labels"] if t != -100)
