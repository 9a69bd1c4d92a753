"""ConflictCapture: per-task gradients of a multi-task step, reduced at once to small Gram matrices.

``record(step, grads)`` turns the (T, D) task gradients into one (M, T, T) float64 array (one Gram
matrix per adapter module, see ``workbench.analysis.conflicts``) and drops the gradients; frames are
built from the Grams when asked for. Memory: ``steps · M · T² · 8`` bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from workbench.analysis import conflicts


class ConflictCapture:
    """The history of task-gradient Gram matrices over training steps.

    Attributes:
        modules: the adapter's module paths (M), in the order of ``slices``.
        tasks: the task names (T).
        steps: the captured steps.
        grams: one (M, T, T) array per captured step.
    """

    def __init__(self, modules: Sequence[str], tasks: Sequence[str], slices: Sequence[slice]):
        self.modules = list(modules)
        self.tasks = list(tasks)
        self.slices = list(slices)
        self.steps: list[int] = []
        self.grams: list[np.ndarray] = []

    def record(self, step: int, grads: torch.Tensor) -> np.ndarray:
        """Reduce the (T, D) task gradients of ``step``; returns that step's (M, T, T) Grams."""
        gram = conflicts.module_grams(grads, self.slices)
        self.steps.append(int(step))
        self.grams.append(gram)
        return gram

    @property
    def nbytes(self) -> int:
        """Bytes held by the reductions (the only arrays this object keeps)."""
        return sum(g.nbytes for g in self.grams)

    def cosines(self, by: str = "module", last: bool = False, step: int | None = None) -> pd.DataFrame:
        """Task × task cosines (``step, [layer, module,] task, task_b, value``).

        ``last``: the last captured step only; ``step``: that captured step only.
        """
        steps, grams = self._pick(last, step)
        return conflicts.cosine_frame(steps, grams, self.modules, self.tasks, by=by)

    def conflicts(self, by: str = "module", last: bool = False, step: int | None = None) -> pd.DataFrame:
        """Fraction of task pairs with negative cosine (``step, [layer, module,] value``)."""
        steps, grams = self._pick(last, step)
        return conflicts.conflict_frame(steps, grams, self.modules, by=by)

    def norms(self, by: str = "total", last: bool = False, step: int | None = None) -> pd.DataFrame:
        """Gradient norm per task (``step, [layer, module,] task, value``)."""
        steps, grams = self._pick(last, step)
        return conflicts.norm_frame(steps, grams, self.modules, self.tasks, by=by)

    def _pick(self, last: bool, step: int | None = None):
        if step is not None:
            if step not in self.steps:
                from workbench.errors import WorkbenchError

                raise WorkbenchError(f"step {step} was not captured; captured: {self.steps[:10]} ...")
            i = self.steps.index(step)
            return self.steps[i:i + 1], self.grams[i:i + 1]
        if last:
            return self.steps[-1:], self.grams[-1:]
        return self.steps, self.grams

    def __repr__(self) -> str:
        return (f"ConflictCapture(tasks={self.tasks}, modules={len(self.modules)}, "
                f"steps={len(self.steps)}, {self.nbytes:,} bytes)")
