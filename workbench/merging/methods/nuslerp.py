"""nuslerp: mergekit's NuSLERP: SLERP with the point set by the weights, whole, row-wise or column-wise.

t = |w₁| / (|w₀| + |w₁|) (0.5 when both are 0), vᵢ = sign(wᵢ)·ΔWᵢ, and then

- ``flatten=True`` (default): one SLERP of the flattened updates (``slerp`` at that t, except for
  the colinear test, |sin θ| < 1e-8 as mergekit's ``nuslerp``);
- ``flatten=False``: one SLERP per vector: each output row of ΔW (length in), or with
  ``row_wise=True`` each input column (length out), as mergekit's ``dim=-1`` / ``dim=0`` after its
  transpose. Row j of the result is c₀ⱼ·v₀ⱼ + c₁ⱼ·v₁ⱼ, so B' = [diag(c₀)B₀ | diag(c₁)B₁] (columns:
  A' = [A₀ diag(c₀); A₁ diag(c₁)]): exact at rank r₀ + r₁, never dense.

Deviations: we interpolate the updates ΔWᵢ (mergekit's ``nuslerp`` with a ``base_model``; without
one mergekit interpolates full weights). mergekit takes t = w₁/(w₀ + w₁) with signed weights; we
take the magnitudes for t and the signs as the updates' directions, so negating both weights negates
the result (mergekit would return the same merge) and a weight of 0 returns the other update. A
zero vector has no direction: linear there (mergekit takes θ = π/2). Exactly two sources.

Reference: mergekit ``merge_methods/nuslerp.py`` (``nuslerp``, parameters ``nuslerp_flatten``,
``nuslerp_row_wise``, per-model ``weight``); Shoemake, SIGGRAPH 1985.
"""

from __future__ import annotations

import math

import torch

from workbench.merging.base import MERGES, RANK, MergeMethod
from workbench.merging.inputs import MergeInputs, resolve_rank
from workbench.merging.methods.slerp import check_pair, combine, pair_parts
from workbench.merging.spherical import column_gram, frobenius_gram, row_gram, slerp_coefficients
from workbench.ops.lowrank import factored_svd, truncate
from workbench.registry import Param

COLINEAR_EPS = 1e-8  # mergekit's nuslerp: |sin θ| below this is colinear


def interpolation_point(weights: list[float]) -> float:
    """t = |w₁| / (|w₀| + |w₁|); 0.5 when both are zero (mergekit's fallback)."""
    total = abs(weights[0]) + abs(weights[1])
    return 0.5 if total < 1e-6 else abs(weights[1]) / total


def _run(inputs: MergeInputs, params: dict):
    check_pair(inputs, "nuslerp")
    t = interpolation_point(inputs.weights)
    signs = [math.copysign(1.0, w) if w != 0 else 0.0 for w in inputs.weights]
    out = {}
    for path in inputs.each("nuslerp"):
        parts = pair_parts(inputs, path, signs)
        rank = resolve_rank(params["rank"], inputs.ranks(path), "sum")
        if params["flatten"]:
            G = frobenius_gram(parts)
            c0, c1 = slerp_coefficients(t, G[0, 0].sqrt(), G[1, 1].sqrt(), G[0, 1], colinear_eps=COLINEAR_EPS)
            out[path] = combine(parts, [float(c0), float(c1)], rank)
            continue
        G = column_gram(parts) if params["row_wise"] else row_gram(parts)  # (2, 2, n)
        c0, c1 = slerp_coefficients(t, G[0, 0].clamp(min=0).sqrt(), G[1, 1].clamp(min=0).sqrt(), G[0, 1],
                                    colinear_eps=COLINEAR_EPS)  # (n,) each
        (A0, B0), (A1, B1) = parts
        if params["row_wise"]:  # columns: scale the inputs
            A, B = torch.cat([A0 * c0, A1 * c1]), torch.cat([B0, B1], dim=1)
        else:  # rows: scale the outputs
            A, B = torch.cat([A0, A1]), torch.cat([c0[:, None] * B0, c1[:, None] * B1], dim=1)
        U, S, Vh = factored_svd(B, A)
        out[path] = truncate(U, S, Vh, rank)
    return out


MERGES.register(
    "nuslerp", flags=("factored", "pair"),
    reference="mergekit merge_methods/nuslerp.py (NuSLERP); Shoemake, SIGGRAPH 1985",
    summary="NuSLERP (mergekit): SLERP of two updates at t = |w₁|/(|w₀|+|w₁|), over the whole update or "
            "per row/column; exact at rank r₀ + r₁.",
    params=[Param("flatten", True, "one SLERP of the whole flattened update (False: one per row or column)",
                  choices=(True, False)),
            Param("row_wise", False, "with flatten=False: interpolate the input columns (mergekit's "
                  "nuslerp_row_wise, dim 0) instead of the output rows", choices=(False, True)),
            RANK],
)(MergeMethod(name="nuslerp", run=_run))
