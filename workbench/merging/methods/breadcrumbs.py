"""breadcrumbs: drop each ΔWᵢ's largest outliers (top ``gamma``) and its small entries, then sum.

Keeps ``density`` of the entries, those just below the top ``gamma`` fraction by magnitude; no sign
election (mergekit's ``breadcrumbs``). Defaults: gamma 0.01 (mergekit's); density 0.2 is ours.

Reference: Davari & Belilovsky, "Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse
Masks", ECCV 2024; mergekit ``sparsify.magnitude_outliers`` (spec: anchors.md (b)).
"""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError
from workbench.merging.base import DENSITY, elementwise
from workbench.ops.sparsify import outlier_prune_, weighted_sum_


def _validate(params: dict) -> None:
    if not 0 <= params["gamma"] < 1:
        raise WorkbenchError(f"breadcrumbs: gamma={params['gamma']} must be in [0, 1) (the outlier "
                             "fraction dropped)")


def _prune(delta, generator, *, density, gamma, **_):
    return outlier_prune_(delta, density, gamma)


def _combine(stack, weights, *, peft_compat, **_):
    return weighted_sum_(stack, weights)


@elementwise("breadcrumbs", bounds={"density": DENSITY, "gamma": (0.0, 1.0)}, validate=_validate,
             prune=_prune, combine=_combine)
def breadcrumbs(deltas: torch.Tensor, weights: torch.Tensor, *, generators, peft_compat: bool,
                density: float = 0.2, gamma: float = 0.01) -> torch.Tensor:
    """Drop the top ``gamma`` outliers and the small entries of each ΔWᵢ (keep ``density``), then Σᵢ wᵢτ̂ᵢ.

    Args:
        density: the fraction of each ΔWᵢ's entries kept (those just below the outliers), in (0, 1].
        gamma: the fraction of largest-magnitude entries dropped as outliers, in [0, 1).
    """
    for k in range(deltas.shape[0]):
        _prune(deltas[k], None, density=density, gamma=gamma)
    return _combine(deltas, weights, peft_compat=peft_compat)
