"""ConflictMonitor: live gradient conflicts of a multi-task run (losses, cosines, layer × step map).

Built on ``TrainingMonitor`` (same background thread and pause/resume button). Whenever the
trainer captures conflicts, the monitor redraws from ``ConflictCapture`` frames computed by
``workbench.analysis.conflicts``: the task × task cosine matrix (all modules) of the last capture,
and the mean cosine over task pairs per layer and captured step (blue: the tasks pull apart). A
click on a cell of the map sets ``selected = [layer, step]``, and the matrix then shows that
layer at that step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import traitlets as t

from widgets._frontend import bundle, stylesheet
from widgets._heatmap import payload
from widgets.training_monitor import TrainingMonitor
from workbench.errors import WorkbenchError


def pair_mean(cosines: pd.DataFrame) -> pd.DataFrame:
    """Mean cosine over task pairs (i ≠ j) per step (and layer): a plain reduction of the frame."""
    keys = [c for c in ("step", "layer", "module") if c in cosines.columns]
    off = cosines[cosines.task != cosines.task_b]
    return off.groupby(keys, as_index=False)["value"].mean()


class ConflictMonitor(TrainingMonitor):
    """Losses per task, the cosine matrix and the layer × step conflict map of a running trainer.

    Example::

        trainer = MultiTaskTrainer(lab, "joint", tasks, capture_every=5, steps=120)
        mon = ConflictMonitor.from_trainer(trainer)   # trains in the background
        mon                                           # display; click the map for a layer's matrix
        mon.wait(); mon.capture.cosines(by="layer")   # the frames behind the views
    """

    _esm = bundle("conflict_monitor")
    _css = stylesheet("conflict_monitor")

    matrix = t.Dict().tag(sync=True)
    """The task × task cosine payload shown (last capture in total, or the selected layer and step);
    its ``at`` says which: ``["total", step]`` or ``[layer, step]``."""
    heatmap = t.Dict().tag(sync=True)
    """Layer (rows) × captured step (columns) payload of the mean task-pair cosine."""
    selected = t.List(t.Int()).tag(sync=True)
    """``[layer, step]`` clicked on the map (or set from Python), ``[]`` for the last capture in total."""

    def __init__(self, trainer=None, *, capture=None, history: pd.DataFrame | None = None, every: int = 1,
                 **kwargs):
        """Args:
            trainer: a ``MultiTaskTrainer`` with ``capture_every > 0``, or None with ``capture``.
            capture: a finished ``ConflictCapture`` to show (with ``history``) when there is no trainer.
        """
        if trainer is not None and trainer.conflicts is None:
            raise WorkbenchError("ConflictMonitor needs a trainer that captures conflicts: "
                                 "give MultiTaskTrainer(..., capture_every=N) with N ≥ 1")
        self.capture = trainer.conflicts if trainer is not None else capture
        if self.capture is None:
            raise WorkbenchError("ConflictMonitor needs a trainer or a ConflictCapture (capture=...)")
        self._shown = -1
        super().__init__(trainer, history=history, every=every, **kwargs)
        self._redraw()

    @classmethod
    def from_capture(cls, capture, history: pd.DataFrame | None = None) -> ConflictMonitor:
        """Show a finished run: its ``ConflictCapture`` and (optionally) its history."""
        return cls(None, capture=capture, history=history)

    def _refresh(self) -> None:
        super()._refresh()
        if len(self.capture.steps) != self._shown:
            self._redraw()

    def _redraw(self) -> None:
        cap = self.capture
        self._shown = len(cap.steps)
        if not cap.steps:
            self.matrix, self.heatmap = {}, {}
            return
        by_layer = pair_mean(cap.cosines(by="layer"))
        table = by_layer.pivot_table(index="layer", columns="step", values="value", aggfunc="first")
        spread = float(np.nanmax(np.abs(table.to_numpy()))) if table.size else 1.0
        spread = spread if spread > 0 else 1.0
        self.heatmap = payload(table, "mean cosine between task gradients, per layer (rows) and step "
                               "(columns); blue = conflict", -spread, spread)
        self._fill_matrix()

    @t.validate("selected")
    def _check_selected(self, proposal):
        sel = list(proposal["value"])
        if sel and (len(sel) != 2 or sel[1] not in self.capture.steps):
            raise t.TraitError(f"selected must be [] or [layer, step] with a captured step "
                               f"({self.capture.steps[:5]}...); got {sel}")
        return sel

    @t.observe("selected")
    def _on_select(self, change) -> None:
        self._fill_matrix()

    def _fill_matrix(self) -> None:
        cap = self.capture
        if not cap.steps:
            return
        if self.selected:
            layer, step = self.selected
            frame = cap.cosines(by="layer", step=step)
            frame = frame[frame.layer == layer]
            at, title = [layer, step], f"cosine between task gradients: layer {layer}, step {step}"
        else:
            frame = cap.cosines(by="total", last=True)
            step = cap.steps[-1]
            at, title = ["total", step], f"cosine between task gradients (all modules), step {step}"
        table = frame.pivot(index="task", columns="task_b", values="value").loc[cap.tasks, cap.tasks]
        self.matrix = {**payload(table, title, -1.0, 1.0), "at": at}


