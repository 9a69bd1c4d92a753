"""How much of a spread of values lies between groups: the between-group share of the sum of squares."""

from __future__ import annotations

import numpy as np


def between_share(values: np.ndarray, groups: np.ndarray) -> float:
    """Between-group sum of squares ÷ total sum of squares of the rows of ``values`` (N, D)."""
    values = np.asarray(values, dtype=np.float64)
    centred = values - values.mean(0)
    total = float((centred**2).sum())
    between = sum(float((groups == g).sum()) * float((centred[groups == g].mean(0) ** 2).sum())
                  for g in np.unique(groups))
    return between / total if total > 0 else float("nan")
