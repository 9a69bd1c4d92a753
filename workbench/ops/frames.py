"""tidy: rows -> the long DataFrame every analysis and merge report returns."""

from __future__ import annotations

import pandas as pd


def tidy(rows: list[dict]) -> pd.DataFrame:
    """Rows -> DataFrame with ``layer`` as nullable integers (modules outside a block get <NA>)."""
    frame = pd.DataFrame(rows)
    if "layer" in frame.columns:
        frame["layer"] = frame["layer"].astype("Int64")
    return frame
