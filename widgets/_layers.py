"""The layer select of the route-lab views: "all layers" or one layer, and the frame rows it keeps."""

from __future__ import annotations

import pandas as pd

ALL_LAYERS = "all layers"


def layer_options(frame: pd.DataFrame) -> list[str]:
    """``["all layers", "layer 0", "layer 1", ...]`` for the frame's numbered layers (plus ``"other"``
    when some rows sit outside a numbered block)."""
    layers = frame["layer"]
    named = [f"layer {int(v)}" for v in sorted(layers.dropna().unique())]
    return [ALL_LAYERS, *named, *(["other"] if layers.isna().any() else [])]


def in_layer(frame: pd.DataFrame, option: str) -> pd.DataFrame:
    """The rows of ``option`` (a ``layer_options`` entry)."""
    if option == ALL_LAYERS:
        return frame
    if option == "other":
        return frame[frame["layer"].isna()]
    return frame[frame["layer"] == int(option.removeprefix("layer "))]
