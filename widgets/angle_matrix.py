"""AngleMatrix: the adapters × adapters cosine (or angle) matrix; a click shows where a pair aligns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import traitlets as t

from widgets._frontend import bundle, stylesheet
from widgets._heatmap import module_by_layer, payload
from widgets._view import View
from workbench import analysis
from workbench.adapters.adapter import Adapter
from workbench.errors import WorkbenchError

VALUES = {"cosine": "cosine", "angle_deg": "angle (degrees)"}


class AngleMatrix(View):
    """Heatmap of ``analysis.angles`` between task vectors; click a cell for the pair's breakdown.

    The matrix and the breakdown (cosine per module and layer, from ``angles(..., by="module")``)
    travel to the browser as float32 buffers. A click sets ``selected`` to ``[a, b]``; Python then
    fills ``breakdown``, drawn under the matrix. Setting ``selected`` from Python does the same.

    Example::

        from widgets import AngleMatrix
        m = AngleMatrix.from_adapters(lab.adapters)   # or from frames: AngleMatrix.from_frame(
                                                      #     angles(ads), by_module=angles(ads, by="module"))
        m                                             # display; click a cell
        m.selected                                    # ["topic", "language"]
        m.selected = ["arithmetic", "code"]           # the breakdown follows
        m.frame, m.by_module                          # the frames behind the views
    """

    _esm = bundle("angle_matrix")
    _css = stylesheet("angle_matrix")

    value = t.Unicode("cosine", help="What the cells show: 'cosine' or 'angle_deg' (read-only after "
                      "construction).").tag(sync=True)
    matrix = t.Dict(help="The adapters × adapters heatmap payload (see widgets._heatmap).").tag(sync=True)
    selected = t.List(t.Unicode(), help="The clicked pair [a, b], or [].").tag(sync=True)
    breakdown = t.Dict(help="The selected pair's module × layer payload, with 'pair'; {} when nothing is "
                       "selected.").tag(sync=True)

    frame: pd.DataFrame | None = None  # angles(adapters)
    by_module: pd.DataFrame | None = None  # angles(adapters, by="module"), or None: no breakdown

    @classmethod
    def from_adapters(cls, adapters: Mapping[str, Adapter] | Iterable[Adapter], *, value: str = "cosine",
                      **traits) -> AngleMatrix:
        """From adapters (a mapping name -> Adapter, or a list): the angles and the per-module breakdown."""
        return cls.from_frame(analysis.angles(adapters), by_module=analysis.angles(adapters, by="module"),
                              value=value, **traits)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, by_module: pd.DataFrame | None = None, value: str = "cosine",
                   **traits) -> AngleMatrix:
        """From the frame of ``angles(adapters)`` (and ``angles(adapters, by="module")`` for the breakdown).

        Args:
            frame: the total frame (``adapter_a, adapter_b, cosine, angle_deg``).
            by_module: the per-module frame; None: no breakdown.
            value: ``"cosine"`` or ``"angle_deg"``.
            traits: any other trait (``selected=["a", "b"]``).
        """
        if value not in VALUES:
            raise WorkbenchError(f"AngleMatrix(value={value!r}): choose one of {', '.join(VALUES)}")
        if {"layer", "module"} & set(frame.columns):
            raise WorkbenchError("AngleMatrix takes the total frame of angles(adapters); "
                                 "pass a per-module frame as by_module=")
        names = list(dict.fromkeys(frame["adapter_a"]))
        table = frame.pivot(index="adapter_a", columns="adapter_b", values=value).loc[names, names]
        off = table.to_numpy()[~np.eye(len(names), dtype=bool)]
        lo, hi = _scale(off, value)
        w = cls(value=value, matrix=payload(table, f"{VALUES[value]} between task vectors ΔW", lo, hi))
        w.frame, w.by_module = frame, by_module
        w._apply(traits)
        return w

    @property
    def names(self) -> list[str]:
        """The adapters, in the matrix's order."""
        return list(self.matrix.get("rows", []))

    @t.validate("selected")
    def _check_selected(self, proposal):
        pair = list(proposal["value"])
        unknown = [n for n in pair if n not in self.names]
        if len(pair) not in (0, 2) or unknown:
            raise t.TraitError(f"selected must be [] or two of {self.names}; got {pair}")
        return pair

    @t.observe("selected")
    def _fill_breakdown(self, change) -> None:
        if len(self.selected) != 2 or self.by_module is None:
            self.breakdown = {}
            return
        a, b = self.selected
        rows = self.by_module[(self.by_module["adapter_a"] == a) & (self.by_module["adapter_b"] == b)]
        table = module_by_layer(rows, self.value)
        lo, hi = _scale(table.to_numpy(dtype=float).ravel(), self.value)
        title = f"{a} · {b}: {VALUES[self.value]} per module (rows) and layer (columns)"
        self.breakdown = {**payload(table, title, lo, hi), "pair": [a, b]}


def _scale(values: np.ndarray, value: str) -> tuple[float, float]:
    """Colour range centred on orthogonal (cosine 0, 90°), as wide as the largest deviation."""
    center = 0.0 if value == "cosine" else 90.0
    dev = np.abs(values[np.isfinite(values)] - center)
    spread = float(dev.max()) if dev.size and dev.max() > 0 else 1.0
    sign = 1.0 if value == "cosine" else -1.0  # aligned pairs are red: high cosine, small angle
    return center - sign * spread, center + sign * spread
