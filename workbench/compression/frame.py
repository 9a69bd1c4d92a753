"""A tidy frame of per-layer group importance with the kept mask: what the importance heatmap renders.

One row per group: ``layer, kind, group, score, kept`` (``kind``: "query" head, "kv" group or
"neuron"; ``group``: its index in the original model). ``kept`` reads the pruned model's index map.

Reference: Ma et al., "LLM-Pruner: On the Structural Pruning of Large Language Models", NeurIPS 2023
(the per-layer importance the pruning ranks; the view is this workbench's).
"""

from __future__ import annotations

import pandas as pd

from workbench.compression.prune import Pruned


def importance_frame(pruned: Pruned) -> pd.DataFrame:
    """``layer, kind, group, score, kept`` for every scored group of a ``prune`` result."""
    rows = []
    for (layer, kind), scores in pruned.scores.items():
        m = pruned.map.layers[layer]
        kept = set({"query": m.heads, "kv": m.kv, "neuron": m.neurons}[kind])
        rows += [{"layer": layer, "kind": kind, "group": g, "score": float(s), "kept": g in kept}
                 for g, s in enumerate(scores.tolist())]
    return pd.DataFrame(rows, columns=["layer", "kind", "group", "score", "kept"])
