"""magnitude_prune: keep each ΔWᵢ's top ``density`` entries by magnitude, then the weighted sum.

The same as peft's ``merge_utils.magnitude_prune`` on ΔWᵢ (linear, so no election difference).
``peft_compat=True`` on ``magnitude_prune`` prunes the stacked A and B separately, as peft does.

Reference: peft ``merge_utils.magnitude_prune``; the trim step of Yadav et al., TIES-Merging,
NeurIPS 2023.
"""

from __future__ import annotations

import torch

from workbench.merging.base import DENSITY, elementwise
from workbench.ops.sparsify import magnitude_prune_, weighted_sum_


def _prune(delta, generator, *, density, **_):
    return magnitude_prune_(delta, density)


def _combine(stack, weights, *, peft_compat, **_):
    return weighted_sum_(stack, weights)


@elementwise("magnitude_prune", peft=True, bounds={"density": DENSITY},
             prune=_prune, combine=_combine)
def magnitude_prune(deltas: torch.Tensor, weights: torch.Tensor, *, generators, peft_compat: bool,
                    density: float = 0.2) -> torch.Tensor:
    """Trim each ΔWᵢ to its top ``density`` entries by magnitude, then Σᵢ wᵢτ̂ᵢ.

    Args:
        density: the fraction of each ΔWᵢ's entries kept, by magnitude, in (0, 1].
    """
    for k in range(deltas.shape[0]):
        _prune(deltas[k], None, density=density)
    return _combine(deltas, weights, peft_compat=peft_compat)
