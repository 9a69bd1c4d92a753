"""ties: TIES-Merging in ΔW space: trim each ΔWᵢ to its largest entries, elect signs, disjoint mean.

1. Trim: keep the top ``density`` fraction of each ΔWᵢ by magnitude (per module tensor, as peft).
2. Elect: per entry the sign of Σᵢ wᵢτ̂ᵢ (``"total"``) or of the sign count (``"frequency"``).
3. Disjoint mean: average the weighted entries that agree with it (divided by their count).

Deviation from peft (on purpose, tested): peft elects on the *unweighted* trimmed ΔWᵢ and counts
every agreeing entry whatever its weight, so a weight-0 adapter still dilutes the mean; we elect on
the weighted ones (like mergekit), so weight 0 removes an adapter. Both agree for equal positive
weights. ``peft_compat=True`` uses peft's election and, on ``ties`` (not ``ties_svd``), peft's
factor space: TIES on the stacked A and on the stacked B separately (not TIES on ΔW).

Reference: Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023
(``prateeky2806/ties-merging`` ``ties_minimal.ipynb``); peft ``merge_utils.ties``.
"""

from __future__ import annotations

import torch

from workbench.merging.base import DENSITY, SIGN_METHODS, elementwise
from workbench.ops.sparsify import magnitude_prune_, ties_merge_


def _prune(delta, generator, *, density, **_):
    return magnitude_prune_(delta, density)


def _combine(stack, weights, *, peft_compat, majority_sign_method="total", **_):
    return ties_merge_(stack, weights, majority_sign_method, unweighted=peft_compat)


@elementwise("ties", peft=True, bounds={"density": DENSITY}, choices={"majority_sign_method": SIGN_METHODS},
             prune=_prune, combine=_combine)
def ties(deltas: torch.Tensor, weights: torch.Tensor, *, generators, peft_compat: bool,
         density: float = 0.2, majority_sign_method: str = "total") -> torch.Tensor:
    """TIES on ΔW: trim to the top ``density`` by magnitude, elect signs, mean of the agreeing entries.

    Args:
        density: the fraction of each ΔWᵢ's entries kept, by magnitude, in (0, 1].
        majority_sign_method: how each entry's sign is elected: ``"total"`` (sign of the weighted
            sum) or ``"frequency"`` (the most common sign).
    """
    for k in range(deltas.shape[0]):
        _prune(deltas[k], generators[k] if generators else None, density=density)
    return _combine(deltas, weights, peft_compat=peft_compat, majority_sign_method=majority_sign_method)
