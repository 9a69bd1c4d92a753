"""A lab and random token data for cat_learned on tiny-llama (it trains mixing weights on data)."""

from __future__ import annotations

import torch

from tests.merging import helpers


def soup_inputs(steps: int = 3) -> dict:
    """cat_learned's inputs: the tiny lab the helper sources belong to, and random token features."""
    helpers.shapes()
    g = torch.Generator().manual_seed(0)
    features = []
    for i in range(8):
        ids = torch.randint(0, 256, (10,), generator=g).tolist()
        features.append({"input_ids": ids, "labels": ids, "task": i % 2})
    return {"lab": helpers._LAB, "features": features, "steps": steps, "progress": False}
