"""The interference map's columns and its payload, shared by InterferenceMap and the merge builder."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from widgets._heatmap import module_by_layer, payload

METRICS = {"conflict_rate": "sign-conflict rate", "overlap": "overlap of kept entries",
           "mass_lost": "L1 mass lost to the trim"}
"""column of ``analysis.interference`` -> what it is called on screen."""


def check_metric(metric: str) -> str:
    """``metric`` if it is a column the maps show, else a ValueError naming the choices."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


def interference_payload(frame: pd.DataFrame, metric: str, title: str) -> dict:
    """Module × layer payload of one column of ``analysis.interference``'s frame (0..1, sequential)."""
    return payload(module_by_layer(frame, metric), title, 0.0, 1.0, "sequential")


def mix(names: Sequence[str], weights: Sequence[float]) -> str:
    """``"a×1, b×0.5"``: the weighted sources in a title."""
    return ", ".join(f"{n}×{x:g}" for n, x in zip(names, weights, strict=True))
