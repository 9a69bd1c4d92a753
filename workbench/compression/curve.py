"""Perplexity against pruning ratio, per importance method: a tidy frame for the spec's curve.

``ratio_curve(model, [0.1, 0.25, 0.5], ["taylor", "l2", "random"], calib, heldout)`` prunes a copy for
every (method, ratio, seed) with the same settings and measures the held-out token loss; one row each:
``method, ratio, seed, loss, perplexity, parameters``. Ratio 0 is the unpruned model (its row is the
baseline, once per method). Recovery by LoRA is the caller's: train on ``prune(...).model`` and measure
again.

Reference: Ma et al., "LLM-Pruner: On the Structural Pruning of Large Language Models", NeurIPS 2023
(the spec's check: perplexity order Taylor ≲ L2 < random at equal ratio). Deviation: held-out loss on
token batches the caller gives (the paper: WikiText-2 and PTB perplexity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from workbench.compression.importance import IMPORTANCE
from workbench.compression.prune import prune


def token_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> float:
    """Mean next-token loss on ``batch`` (padding masked out)."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask", torch.ones_like(ids))
    with torch.no_grad():
        return float(model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss)


def ratio_curve(model: nn.Module, ratios: Sequence[float], methods: Sequence[str],
                calib: Mapping[str, torch.Tensor], heldout: Mapping[str, torch.Tensor],
                seeds: Sequence[int] = (0,), **settings) -> pd.DataFrame:
    """Held-out loss and perplexity of the model pruned at each ratio by each method.

    Args:
        model: the plain model (never modified).
        ratios: pruning ratios in [0, 1).
        methods: ``IMPORTANCE`` names.
        calib: calibration token batch for the gradient methods.
        heldout: token batch the loss is measured on.
        seeds: seeds (they matter for ``random``).
        **settings: passed to ``prune`` (layers, parts, attention, scope, aggregation).
    """
    rows = []
    for method in methods:
        IMPORTANCE.info(method)  # an unknown name fails before any work
        for ratio in ratios:
            for seed in seeds:
                pruned = prune(model, ratio, method=method, batch=calib, seed=seed, **settings).model
                loss = token_loss(pruned, heldout)
                rows.append({"method": method, "ratio": float(ratio), "seed": seed, "loss": loss,
                             "perplexity": math.exp(loss),
                             "parameters": sum(p.numel() for p in pruned.parameters())})
    return pd.DataFrame(rows, columns=["method", "ratio", "seed", "loss", "perplexity", "parameters"])
