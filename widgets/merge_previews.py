"""The merge builder's three previews and its summary line, as heatmap payloads (pure functions).

Each takes what the engine computed (``MergeResult``, ``analysis.angles``/``interference`` frames) and
returns what a view draws; nothing here computes a merge or a metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from widgets._heatmap import module_by_layer, payload
from widgets._interference import METRICS, interference_payload, mix


def error_payload(result, method: str, params: Sequence[tuple[str, object]]) -> dict:
    """Module × layer payload of the merge's relative error per module (``MergeResult.error``)."""
    table = module_by_layer(result.error, "value")
    hi = float(np.nanmax(table.to_numpy(dtype=float))) if table.size else 1.0
    shown = ", ".join(f"{k}={v}" for k, v in params)
    title = f"relative error vs Σ wᵢΔWᵢ per module · {method}" + (f" ({shown})" if shown else "")
    return payload(table, title, 0.0, hi if hi > 0 else 1.0, "sequential")


def angles_payload(frame: pd.DataFrame, chosen: Sequence[str]) -> dict:
    """Sources × sources payload of ``analysis.angles``' cosines, centred on orthogonal."""
    table = frame.pivot(index="adapter_a", columns="adapter_b", values="cosine")
    table = table.loc[list(chosen), list(chosen)]
    off = table.to_numpy()[~np.eye(len(chosen), dtype=bool)]
    spread = float(np.abs(off).max()) if off.size and np.abs(off).max() > 0 else 1.0
    return payload(table, "cosine between the sources' ΔW", -spread, spread)


def sources_interference(frame: pd.DataFrame, metric: str, density: float) -> dict:
    """The interference preview: one column of the weighted sources' frame at the trim density."""
    title = f"{METRICS[metric]} of the weighted sources · trim density {density:g}"
    return interference_payload(frame, metric, title)


def summary_line(result, method: str, chosen: Sequence[str], weights: Sequence[float]) -> str:
    """``"ties of a×1, b×1: rank 8, 12,345 parameters, total relative error 0.12"``."""
    ranks = sorted(set(result.adapter.ranks.values()))
    rank = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}–{ranks[-1]}"
    return (f"{method} of {mix(chosen, weights)}: rank {rank}, {result.adapter.num_parameters():,} "
            f"parameters, total relative error {result.total_error:.3g}")
