"""SMoRAGates: SMoRA's balancing bias over training and the distribution of its gate values, per layer."""

from __future__ import annotations

import numpy as np
import pandas as pd

from widgets._chooser import Chooser
from widgets._heatmap import payload
from widgets._layers import in_layer, layer_options
from workbench.analysis.bias_trace import KINDS, gate_histogram, load_cv, selection_share
from workbench.errors import WorkbenchError

BIAS, GATES = "bias over steps", "gate values"
MAX_STEPS = 48  # columns of the bias map: evenly spaced steps when training ran longer


class SMoRAGates(Chooser):
    """Two maps of one layer (select; modules averaged), chosen with the buttons:

    - ``"bias over steps"``: rank × step heatmap of the balancing bias b (``bias_trajectory``), with the
      load CV over the ranks per step drawn under it (0 = every rank selected equally often);
    - ``"gate values"``: one histogram row per stage of a selected rank's gate value, the unbiased
      score g, the biased g + b that top-k compares, and the applied gate G / k (SMoRA's gates are the
      biased values renormalised to sum to k); each row's range is in its label.

    Beside them: how often each rank is selected in the layer (``selection_share``).

    Example::

        with trace_routes(lab.model) as trace:
            lab.train_router("smora", tasks, steps=60)
        _, cache = lab.run(batch, record="*.routes.smora.hook_route")
        SMoRAGates.from_frames(gate_values(cache, mask), bias_trajectory(trace))
    """

    values: pd.DataFrame | None = None  # gate_values(...)'s frame
    trajectory: pd.DataFrame | None = None  # bias_trajectory(...)'s frame, or None
    bins = 10

    @classmethod
    def from_frames(cls, values: pd.DataFrame, trajectory: pd.DataFrame | None = None, *, bins: int = 10,
                    **traits) -> SMoRAGates:
        """Args:
            values: ``analysis.bias_trace.gate_values``' frame (a run's selected gates).
            trajectory: ``analysis.bias_trace.bias_trajectory``' frame (training), or None: gates only.
            bins: histogram bins per stage.
        """
        need = {"layer", "module", "expert", "k", "score", "biased", "gate"}
        if values.empty or not need <= set(values.columns):
            raise WorkbenchError(f"SMoRAGates takes gate_values(...)'s frame (columns {sorted(need)})")
        steps = {"step", "layer", "expert", "bias", "count"}
        if trajectory is not None and not steps <= set(trajectory.columns):
            raise WorkbenchError("SMoRAGates(trajectory=...) takes bias_trajectory(...)'s frame")
        choices = [BIAS, GATES] if trajectory is not None else [GATES]
        w = cls(choices=choices, options=layer_options(values))
        w.values, w.trajectory, w.bins = values, trajectory, bins
        w._apply({"option": w.options[0], "choice": choices[0], **traits})
        return w

    def table(self, choice):
        if choice == BIAS:
            part = in_layer(self.trajectory, self.option)
            table = part.pivot_table(index="expert", columns="step", values="bias", aggfunc="mean")
            if table.shape[1] > MAX_STEPS:
                keep = np.linspace(0, table.shape[1] - 1, MAX_STEPS).round().astype(int)
                table = table.iloc[:, np.unique(keep)]
            table.index = [f"rank {e}" for e in table.index]
            table.columns = [str(s) for s in table.columns]
            hi = float(np.nanmax(np.abs(table.to_numpy()))) or 1e-12
            title = f"{self.option}: balancing bias b per rank (columns: training step)"
            return table, title, -hi, hi, "diverging"
        hist = gate_histogram(in_layer(self.values, self.option), bins=self.bins, by=[])
        ranges = hist.groupby("kind", sort=False).agg(lo=("lo", "min"), hi=("hi", "max"))
        table = hist.pivot_table(index="kind", columns="bin", values="share").reindex(list(KINDS))
        table.index = [f"{k} ∈ [{ranges.loc[k, 'lo']:.3g}, {ranges.loc[k, 'hi']:.3g}]" for k in table.index]
        table.columns = [f"b{c}" for c in table.columns]
        hi = float(np.nanmax(table.to_numpy())) or 1.0
        title = f"{self.option}: selected gate values, share per bin (each row its own range)"
        return table, title, 0.0, hi, "sequential"

    def redrawn(self) -> None:
        self.cell = 14 if self.choice == BIAS else 26
        share = selection_share(in_layer(self.values, self.option))
        row = share.groupby("expert")["share"].mean().to_frame("selected").T  # (1, E)
        row.columns = [str(c) for c in row.columns]
        self.aside = payload(row, f"{self.option}: share of tokens that select each rank", 0.0,
                             float(row.to_numpy().max()) or 1.0, "sequential")
        if self.choice == BIAS:
            cv = load_cv(in_layer(self.trajectory, self.option)).groupby("step")["cv"].mean()
            self.curve = {"title": f"{self.option}: load CV over the ranks (selection counts)",
                          "x": [float(s) for s in cv.index], "series": {"cv": [float(v) for v in cv]}}
        else:
            self.curve = {}

    def describe(self, row, col):
        table = self.table(self.choice)[0]
        return f"{self.option}, {row}, {col}: {table.loc[row, col]:.4g}"
