"""dare_ties: DARE drop-and-rescale of each ΔWᵢ, then TIES' sign election and disjoint mean.

Election as in ``ties`` (weighted, ours; unweighted with ``peft_compat=True``). Draws as in
``dare_linear``.

Reference: Yu et al., "Language Models are Super Mario", ICML 2024; Yadav et al., TIES-Merging,
NeurIPS 2023; peft ``merge_utils.dare_ties``.
"""

from __future__ import annotations

import torch

from workbench.merging.base import DENSITY, SIGN_METHODS, elementwise
from workbench.ops.sparsify import random_prune_, ties_merge_


def _prune(delta, generator, *, density, **_):
    return random_prune_(delta, density, generator)


def _combine(stack, weights, *, peft_compat, majority_sign_method="total", **_):
    return ties_merge_(stack, weights, majority_sign_method, unweighted=peft_compat)


@elementwise("dare_ties", stochastic=True, peft=True, bounds={"density": DENSITY},
             choices={"majority_sign_method": SIGN_METHODS},
             prune=_prune, combine=_combine)
def dare_ties(deltas: torch.Tensor, weights: torch.Tensor, *, generators, peft_compat: bool,
              density: float = 0.5, majority_sign_method: str = "total") -> torch.Tensor:
    """DARE drop-and-rescale, then TIES sign election and the mean of the agreeing entries.

    Args:
        density: the probability each entry survives the random drop (kept ones are divided by it), in (0, 1].
        majority_sign_method: how each entry's sign is elected: ``"total"`` (sign of the weighted
            sum) or ``"frequency"`` (the most common sign).
    """
    for k in range(deltas.shape[0]):
        _prune(deltas[k], generators[k], density=density)
    return _combine(deltas, weights, peft_compat=peft_compat, majority_sign_method=majority_sign_method)
