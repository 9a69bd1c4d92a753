"""AngleMatrix: the adapters × adapters cosine (or angle) matrix; a click shows where a pair aligns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import anywidget
import numpy as np
import pandas as pd
import traitlets as t

from widgets._frontend import bundle, stylesheet
from widgets._heatmap import module_by_layer, payload
from workbench import analysis
from workbench.adapters.adapter import Adapter
from workbench.errors import WorkbenchError

VALUES = {"cosine": "cosine", "angle_deg": "angle (degrees)"}


class AngleMatrix(anywidget.AnyWidget):
    """Heatmap of ``analysis.angles`` between task vectors; click a cell for the pair's breakdown.

    The matrix and the breakdown (cosine per module and layer, from ``angles(..., by="module")``)
    travel to the browser as float32 buffers. A click sets ``selected`` to ``[a, b]``; Python then
    fills ``breakdown``, drawn under the matrix. Setting ``selected`` from Python does the same.

    Example::

        from widgets import AngleMatrix
        m = AngleMatrix(lab.adapters)             # or from frames: AngleMatrix(angles(ads),
                                                  #     by_module=angles(ads, by="module"))
        m                                         # display; click a cell
        m.selected                                # ["topic", "language"]
        m.selected = ["arithmetic", "code"]       # the breakdown follows
        m.frame, m.by_module                      # the frames behind the views
    """

    _esm = bundle("angle_matrix")
    _css = stylesheet("angle_matrix")

    value = t.Unicode("cosine").tag(sync=True)
    """What the cells show: ``"cosine"`` or ``"angle_deg"`` (read-only after construction)."""
    matrix = t.Dict().tag(sync=True)
    """The adapters × adapters payload (see ``widgets._heatmap``)."""
    selected = t.List(t.Unicode()).tag(sync=True)
    """The clicked pair ``[a, b]``, or ``[]``."""
    breakdown = t.Dict().tag(sync=True)
    """The selected pair's module × layer payload, with ``pair``; ``{}`` when nothing is selected."""

    def __init__(
        self,
        source: Mapping[str, Adapter] | Iterable[Adapter] | pd.DataFrame,
        *,
        by_module: pd.DataFrame | None = None,
        value: str = "cosine",
        **kwargs,
    ) -> None:
        """Args:
            source: adapters (a mapping name -> Adapter or a list), or the frame of ``angles(adapters)``.
            by_module: the frame of ``angles(adapters, by="module")`` for the breakdown; computed when
                ``source`` is adapters, none (no breakdown) when it is a frame and this is not given.
            value: ``"cosine"`` or ``"angle_deg"``.
        """
        if value not in VALUES:
            raise WorkbenchError(f"AngleMatrix(value={value!r}): choose one of {', '.join(VALUES)}")
        if isinstance(source, pd.DataFrame):
            if {"layer", "module"} & set(source.columns):
                raise WorkbenchError("AngleMatrix takes the total frame of angles(adapters); "
                                     "pass a per-module frame as by_module=")
            self.frame, self.by_module = source, by_module
        else:
            self.frame = analysis.angles(source)
            self.by_module = analysis.angles(source, by="module")
        self.names = list(dict.fromkeys(self.frame["adapter_a"]))
        super().__init__(value=value, **kwargs)
        table = self.frame.pivot(index="adapter_a", columns="adapter_b", values=value)
        table = table.loc[self.names, self.names]
        off = table.to_numpy()[~np.eye(len(self.names), dtype=bool)]
        lo, hi = self._scale(off)
        self.matrix = payload(table, f"{VALUES[value]} between task vectors ΔW", lo, hi)

    def _scale(self, values: np.ndarray) -> tuple[float, float]:
        """Colour range centred on orthogonal (cosine 0, 90°), as wide as the largest deviation."""
        center = 0.0 if self.value == "cosine" else 90.0
        dev = np.abs(values[np.isfinite(values)] - center)
        spread = float(dev.max()) if dev.size and dev.max() > 0 else 1.0
        sign = 1.0 if self.value == "cosine" else -1.0  # aligned pairs are red: high cosine, small angle
        return center - sign * spread, center + sign * spread

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
        lo, hi = self._scale(table.to_numpy(dtype=float).ravel())
        title = f"{a} · {b}: {VALUES[self.value]} per module (rows) and layer (columns)"
        self.breakdown = {**payload(table, title, lo, hi), "pair": [a, b]}
