"""della: DELLA-Merging: magnitude-ranked random drop (MAGPRUNE), then TIES election and mean.

Per row of each ΔWᵢ the keep probability rises linearly with the entry's magnitude rank from
density − ε to density + ε; kept entries are divided by their probability (E unchanged); then sign
election and the disjoint mean as in ``ties``. Reconstruction note: mergekit's ``della`` divides by
Σ wᵢ·mask (a weighted mean); we use the count-normalized disjoint mean of ``ties`` so that weights
act the same way in every TIES-family method here.

Reference: Deep et al., "DELLA-Merging: Reducing Interference in Model Merging through
Magnitude-Based Sampling", 2024 (arXiv 2406.11617); mergekit ``della`` (spec: anchors.md (b)).
"""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError
from workbench.merging.base import DENSITY, SIGN_METHODS, elementwise
from workbench.ops.sparsify import magprune_, ties_merge_


def _validate(params: dict) -> None:
    density, epsilon = params["density"], params["epsilon"]
    if density < 1 and not (0 <= epsilon < density and density + epsilon <= 1):
        raise WorkbenchError(
            f"della: density ± epsilon = {density} ± {epsilon} must stay inside (0, 1]; lower epsilon"
        )


def _prune(delta, generator, *, density, epsilon, **_):
    return magprune_(delta, density, epsilon, generator)


def _combine(stack, weights, *, peft_compat, majority_sign_method="total", **_):
    return ties_merge_(stack, weights, majority_sign_method, unweighted=False)


@elementwise("della", stochastic=True, bounds={"density": DENSITY, "epsilon": (0.0, 0.5)},
             choices={"majority_sign_method": SIGN_METHODS}, validate=_validate,
             prune=_prune, combine=_combine)
def della(deltas: torch.Tensor, weights: torch.Tensor, *, generators, peft_compat: bool,
          density: float = 0.3, epsilon: float = 0.15, majority_sign_method: str = "total") -> torch.Tensor:
    """MAGPRUNE (keep probability density ± ε by magnitude rank, rescaled), then TIES election and mean.

    Args:
        density: the mean keep probability of an entry, in (0, 1].
        epsilon: the spread ε of the keep probability over the magnitude ranks (density ± ε in (0, 1]).
        majority_sign_method: how each entry's sign is elected: ``"total"`` (sign of the weighted
            sum) or ``"frequency"`` (the most common sign).
    """
    for k in range(deltas.shape[0]):
        _prune(deltas[k], generators[k], density=density, epsilon=epsilon)
    return _combine(deltas, weights, peft_compat=peft_compat, majority_sign_method=majority_sign_method)
