"""DMoERM's two levels as tidy frames: the outer router's bars and the inner MLP's capability weights.

    router_bars(probs, groups, categories)            # group, category, prob, chosen
    capability_weights(inner, features, experts, groups)   # group, expert, weight

``router_bars``: per group of conversations (e.g. the capability each came from), the mean routing
probability of every category and the share routed to it (top-1). ``capability_weights``: how much
each capability expert's state moves the aggregated reward: the gradient × input attribution of the
reward to each expert's block of the concatenated features, |Σ_j ∂r/∂f_j · f_j| over the block,
normalised to sum to 1 per conversation and averaged over the group (routing.md §12 (g), "MLP input
attribution per capability").

Reference: Quan, "DMoERM: Recipes of Mixture-of-Experts for Effective Reward Modeling" (arXiv
2403.01197); gradient × input: Shrikumar et al., "Not Just a Black Box" (arXiv 1605.01713).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch

from workbench.errors import WorkbenchError


def router_bars(probs: torch.Tensor, groups: Sequence[str], categories: Sequence[str]) -> pd.DataFrame:
    """``group, category, prob, chosen`` from the router's probabilities ``probs`` (N, n_categories)."""
    probs = probs.detach().float().cpu()
    if probs.ndim != 2 or probs.shape != (len(groups), len(categories)):
        raise WorkbenchError(f"probs has shape {tuple(probs.shape)}; expected (conversations, categories) = "
                             f"({len(groups)}, {len(categories)})")
    top = probs.argmax(-1)
    rows = []
    for group in dict.fromkeys(groups):
        sel = torch.tensor([g == group for g in groups])
        for i, category in enumerate(categories):
            rows.append((group, category, float(probs[sel, i].mean()), float((top[sel] == i).float().mean())))
    return pd.DataFrame(rows, columns=["group", "category", "prob", "chosen"])


def capability_weights(reward: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor,
                       experts: Sequence[str], groups: Sequence[str]) -> pd.DataFrame:
    """``group, expert, weight``: each expert's share of the gradient × input attribution of ``reward``.

    Args:
        reward: features (N, C·H) -> rewards (N,), e.g. a DMoERM ``InnerRM``.
        features: (N, C·H) the experts' states concatenated in the order of ``experts``.
        experts: the C capability experts.
        groups: a label per row.
    """
    c = len(experts)
    if features.ndim != 2 or features.shape[1] % c or features.shape[0] != len(groups):
        raise WorkbenchError(f"features {tuple(features.shape)} do not split into {c} expert blocks for "
                             f"{len(groups)} rows; pass (rows, experts × hidden)")
    f = features.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(reward(f).sum(), f)
    contrib = (grad * f).detach().view(f.shape[0], c, -1).sum(-1).abs().float().cpu()  # (N, C)
    share = contrib / contrib.sum(-1, keepdim=True).clamp(min=1e-12)
    rows = []
    for group in dict.fromkeys(groups):
        sel = torch.tensor([g == group for g in groups])
        rows += [(group, e, float(share[sel, i].mean())) for i, e in enumerate(experts)]
    return pd.DataFrame(rows, columns=["group", "expert", "weight"])
