"""dare_linear: DARE drop-and-rescale of each ΔWᵢ, then the weighted sum.

Each entry survives with probability ``density`` (Bernoulli, seeded per source and module) and is
divided by ``density``, so E[τ̃ᵢ] = τᵢ. Same draws as peft's ``merge_utils.dare_linear`` for the same
generator; ``peft_compat=True`` draws from one stream seeded with ``seed`` (torch.manual_seed(seed)
before peft's ``add_weighted_adapter``) and, on ``dare_linear``, works on A and B separately.

Reference: Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous Models
as a Free Lunch", ICML 2024 (``yule-BUAA/MergeLM``); peft ``merge_utils.dare_linear``.
"""

from __future__ import annotations

import torch

from workbench.merging.base import DENSITY, elementwise
from workbench.ops.sparsify import random_prune_, weighted_sum_


def _prune(delta, generator, *, density, **_):
    return random_prune_(delta, density, generator)


def _combine(stack, weights, *, peft_compat, **_):
    return weighted_sum_(stack, weights)


@elementwise("dare_linear", stochastic=True, peft=True, bounds={"density": DENSITY},
             prune=_prune, combine=_combine)
def dare_linear(deltas: torch.Tensor, weights: torch.Tensor, *, generators, peft_compat: bool,
                density: float = 0.5) -> torch.Tensor:
    """DARE: keep each entry with probability ``density`` and divide by it, then Σᵢ wᵢτ̃ᵢ.

    Args:
        density: the probability each entry survives the random drop (kept ones are divided by it), in (0, 1].
    """
    for k in range(deltas.shape[0]):
        _prune(deltas[k], generators[k], density=density)
    return _combine(deltas, weights, peft_compat=peft_compat)
