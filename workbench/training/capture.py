"""ConflictCapture: per-task gradients of a multi-task step, reduced at once to small Gram matrices.

``record(step, grads)`` turns the (T, D) task gradients into one (M, T, T) float64 array (one Gram
matrix per adapter module, see ``workbench.analysis.conflicts``) per *space* and drops the gradients;
frames are built from the Grams when asked for. Memory: ``spaces · steps · M · T² · 8`` bytes.

Spaces (``space=`` of the frames):

- ``"factor"``: the trained parameters as they are: a LoRA module's A and B gradients together, a
  router's own parameters (router and experts). Always captured. For a LoRA it depends on how ΔW
  is split into A and B.
- ``"delta_w"``: a LoRA module's task gradients mapped to ΔW space, the projection of ∂L/∂W on the
  tangent space of rank-r matrices at ΔW (``workbench.analysis.delta_space``): independent of the
  A/B split, the same geometry as the angle views. Captured when the factors are known (``pairs``).
- ``"adjusted"``: the factor gradients after the seed optimizer's own transform of each task's
  gradient, e.g. LoRA-Pro's closest-to-vanilla adjustment (``ADJUSTERS``; its ΔW-space image is the
  ``"delta_w"`` gradient exactly). Captured when the trainer's optimizer has one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from workbench.analysis import conflicts
from workbench.analysis.delta_space import tangent_gram
from workbench.errors import WorkbenchError
from workbench.training.lorapro import adjusted_gradients

ADJUSTERS = {"lorapro": adjusted_gradients}  # optimizer -> (A, B, s, G_A, G_B, first=) -> (g_A, g_B)


class ConflictCapture:
    """The history of task-gradient Gram matrices over training steps.

    Attributes:
        modules: the adapter's module paths (M), in the order of ``slices``.
        tasks: the task names (T).
        steps: the captured steps.
        grams: one (M, T, T) array per captured step (the ``"factor"`` space).
        spaces: the captured spaces; ``by_space[space]`` holds their Grams like ``grams``.
    """

    def __init__(self, modules: Sequence[str], tasks: Sequence[str], slices: Sequence[slice],
                 pairs: Sequence[tuple] | None = None, optimizer: str | None = None):
        """``pairs``: one (A, B, s) per module (a LoRA's factors, read at each capture), or None (a router).

        ``optimizer``: the trainer's optimizer; one in ``ADJUSTERS`` adds the ``"adjusted"`` space.
        """
        self.modules = list(modules)
        self.tasks = list(tasks)
        self.slices = list(slices)
        self.pairs = list(pairs or [])
        if self.pairs and len(self.pairs) != len(self.modules):
            raise WorkbenchError(f"ConflictCapture: {len(self.pairs)} factor pairs for {len(self.modules)} "
                                 "modules; give one (A, B, s) per module or none")
        self.adjust = ADJUSTERS.get(optimizer) if self.pairs else None
        self.spaces = ["factor"] + (["delta_w"] if self.pairs else []) + (["adjusted"] if self.adjust else [])
        self.steps: list[int] = []
        self.grams: list[np.ndarray] = []
        self.by_space: dict[str, list[np.ndarray]] = {"factor": self.grams}
        self.by_space.update({sp: [] for sp in self.spaces[1:]})

    def record(self, step: int, grads: torch.Tensor) -> np.ndarray:
        """Reduce the (T, D) task gradients of ``step``; returns that step's (M, T, T) factor Grams."""
        gram = conflicts.module_grams(grads, self.slices)
        self.steps.append(int(step))
        self.grams.append(gram)
        if self.pairs:
            self._record_lora(grads)
        return gram

    def _record_lora(self, grads: torch.Tensor) -> None:
        T = grads.shape[0]
        delta, adjusted = [], []
        for (A, B, s), sl in zip(self.pairs, self.slices, strict=True):
            g = grads[:, sl].detach().double()
            G_A = g[:, :A.numel()].reshape(T, *A.shape)  # (T, r, in)
            G_B = g[:, A.numel():].reshape(T, *B.shape)  # (T, out, r)
            delta.append(tangent_gram(A, B, s, G_A, G_B).numpy())
            if self.adjust is not None:
                first = not bool((B != 0).any())
                Ad, Bd = A.detach(), B.detach()
                parts = [self.adjust(Ad, Bd, s, G_A[t], G_B[t], first=first) for t in range(T)]
                flat = torch.stack([torch.cat([a.reshape(-1), b.reshape(-1)]) for a, b in parts])  # (T, D_m)
                adjusted.append((flat @ flat.T).numpy())
        self.by_space["delta_w"].append(np.stack(delta))
        if self.adjust is not None:
            self.by_space["adjusted"].append(np.stack(adjusted))

    @property
    def nbytes(self) -> int:
        """Bytes held by the reductions (the only arrays this object keeps)."""
        return sum(g.nbytes for grams in self.by_space.values() for g in grams)

    def cosines(self, by: str = "module", last: bool = False, step: int | None = None,
                space: str = "factor") -> pd.DataFrame:
        """Task × task cosines (``step, [layer, module,] task, task_b, value``).

        ``last``: the last captured step only; ``step``: that captured step only; ``space``: one of
        ``spaces``, or ``"all"`` (every captured space, with a ``space`` column).
        """
        return self._frame(lambda st, gr: conflicts.cosine_frame(st, gr, self.modules, self.tasks, by=by),
                           last, step, space)

    def conflicts(self, by: str = "module", last: bool = False, step: int | None = None,
                  space: str = "factor") -> pd.DataFrame:
        """Fraction of task pairs with negative cosine (``step, [layer, module,] value``)."""
        return self._frame(lambda st, gr: conflicts.conflict_frame(st, gr, self.modules, by=by),
                           last, step, space)

    def norms(self, by: str = "total", last: bool = False, step: int | None = None,
              space: str = "factor") -> pd.DataFrame:
        """Gradient norm per task (``step, [layer, module,] task, value``)."""
        return self._frame(lambda st, gr: conflicts.norm_frame(st, gr, self.modules, self.tasks, by=by),
                           last, step, space)

    def _frame(self, build, last: bool, step: int | None, space: str) -> pd.DataFrame:
        if space == "all":
            frames = [build(*self._pick(last, step, sp)).assign(space=sp) for sp in self.spaces]
            return pd.concat(frames, ignore_index=True)
        return build(*self._pick(last, step, space))

    def _pick(self, last: bool, step: int | None = None, space: str = "factor"):
        if space not in self.spaces:
            why = {"delta_w": "it needs the LoRA factors (a router has none)",
                   "adjusted": "the optimizer has no per-task adjustment (see ADJUSTERS)"}
            why = why.get(space, "unknown")
            raise WorkbenchError(f"space={space!r} was not captured ({why}); captured: {self.spaces} "
                                 "or 'all'")
        grams = self.by_space[space]
        if step is not None:
            if step not in self.steps:
                raise WorkbenchError(f"step {step} was not captured; captured: {self.steps[:10]} ...")
            i = self.steps.index(step)
            return self.steps[i:i + 1], grams[i:i + 1]
        if last:
            return self.steps[-1:], grams[-1:]
        return self.steps, grams

    def __repr__(self) -> str:
        return (f"ConflictCapture(tasks={self.tasks}, modules={len(self.modules)}, spaces={self.spaces}, "
                f"steps={len(self.steps)}, {self.nbytes:,} bytes)")
