"""What the heatmap widgets share: a binary heatmap payload (Python side) and their ES module source.

A payload is one synced ``Dict`` trait that ``frontend/src/lib/heatmap.ts`` draws as a grid::

    {"values": <float32 bytes, row-major>, "shape": [rows, cols], "rows": [...], "cols": [...],
     "title": "...", "lo": -0.3, "hi": 0.3, "scale": "diverging" | "sequential"}

``values`` travels as a binary message part (ipywidgets strips bytes out of the JSON state), so the
front end gets a DataView, never a JSON list of numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def payload(table: pd.DataFrame, title: str, lo: float, hi: float, scale: str = "diverging") -> dict:
    """A heatmap payload from a pivoted frame (index = rows, columns = cols); NaN stays NaN.

    Colours run from ``lo`` to ``hi`` (``hi < lo`` flips them); ``"diverging"`` is white halfway,
    ``"sequential"`` is white at ``lo``.
    """
    values = np.ascontiguousarray(table.to_numpy(dtype=np.float32))  # (rows, cols)
    return {
        "values": values.tobytes(),
        "shape": list(values.shape),
        "rows": [str(r) for r in table.index],
        "cols": [str(c) for c in table.columns],
        "title": title,
        "lo": float(lo),
        "hi": float(hi),
        "scale": scale,
    }


def module_by_layer(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Pivot a frame with ``layer, module`` columns: one row per module, one column per layer.

    Modules outside a numbered block (layer <NA>) get a last column ``"-"``.
    """
    layer = frame["layer"].astype("Float64").fillna(float("inf"))
    table = frame.assign(layer=layer).pivot_table(index="module", columns="layer", values=value,
                                                  aggfunc="first", dropna=False)
    table = table.sort_index().sort_index(axis=1)
    table.columns = ["-" if c == float("inf") else str(int(c)) for c in table.columns]
    return table


def decode(p: dict) -> np.ndarray:
    """The (rows, cols) float32 array of a payload (what the front end reads from the DataView)."""
    return np.frombuffer(p["values"], dtype=np.float32).reshape(p["shape"])

