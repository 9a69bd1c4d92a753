"""karcher: the Karcher (Riemannian) mean of the updates' directions on the sphere, at their mean norm.

With ûᵢ = vᵢ/‖vᵢ‖, vᵢ = sign(wᵢ)·ΔWᵢ and pulls pᵢ = |wᵢ|/Σ|wⱼ|, the mean u minimizes
Σ pᵢ·d(u, ûᵢ)² (d the geodesic angle); it is found by mergekit's fixed-point iteration (start at the
normalized weighted mean, step along the weighted tangent, ``max_iter`` steps or ‖T‖ < ``tol``), and
the result is u·Σ pᵢ‖vᵢ‖. The iterate stays in the span of the ΔWᵢ, so it runs on K coefficients
from the Gram of the updates (``spherical.karcher_coefficients``): the result is Σᵢ cᵢΔWᵢ exactly,
at rank Σrᵢ (``rank`` truncates), without a dense ΔW.

Deviations: we average the updates (mergekit averages full weights, whose directions for adapters
of one base are nearly the same). mergekit weighs every model equally (1/K); here the weights are
the pulls (relative, normalized: [2, 2] is [1, 1]) and a negative weight flips its update, so
negating every weight negates the result. A zero-weight or zero source takes no part (mergekit
drops zero tensors from the mean but keeps them in the norm average). A direction antipodal to the
iterate (sin θ = 0) adds no tangent (mergekit divides by sin θ there).

Reference: Karcher, "Riemannian center of mass and mollifier smoothing", CPAM 1977; Buss & Fillmore,
ACM TOG 2001 (the iteration); mergekit ``merge_methods/karcher.py`` (max_iter 10, tol 1e-5).
"""

from __future__ import annotations

import torch

from workbench.merging.base import MERGES, RANK, MergeMethod
from workbench.merging.inputs import MergeInputs, resolve_rank
from workbench.merging.methods.slerp import combine
from workbench.merging.spherical import NORM_EPS, frobenius_gram, karcher_coefficients
from workbench.registry import Param


def _run(inputs: MergeInputs, params: dict):
    out, steps = {}, {}
    for path in inputs.each("karcher"):
        parts, weights = inputs.parts(path)
        rank = resolve_rank(params["rank"], inputs.ranks(path), "sum")
        signed = [(A, (1.0 if w > 0 else -1.0) * sB) for (A, sB), w in zip(parts, weights, strict=True)]
        G = frobenius_gram(signed)
        live = [i for i, w in enumerate(weights) if w != 0 and float(G[i, i]) > NORM_EPS**2]
        if not live:
            A, sB = parts[0]
            out[path] = (A.new_zeros(rank, A.shape[1]), sB.new_zeros(sB.shape[0], rank))
            continue
        c, steps[path] = karcher_coefficients(G[live][:, live], torch.tensor([abs(weights[i]) for i in live]),
                                              max_iter=params["max_iter"], tol=params["tol"])
        out[path] = combine([signed[i] for i in live], c.tolist(), rank)
    inputs.notes["karcher_steps"] = max(steps.values(), default=0)
    return out


def _validate(params: dict) -> None:
    from workbench.errors import WorkbenchError

    steps = params["max_iter"]
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise WorkbenchError(f"karcher: max_iter={params['max_iter']!r} must be an int >= 0 (0: the "
                             "normalized weighted mean, no iteration)")
    if params["tol"] <= 0:
        raise WorkbenchError(f"karcher: tol={params['tol']!r} must be > 0 (the tangent norm that stops it)")


MERGES.register(
    "karcher", flags=("factored",),
    reference="Karcher, Riemannian center of mass and mollifier smoothing, CPAM 1977; mergekit "
              "merge_methods/karcher.py",
    summary="Karcher mean: the Riemannian mean of the updates' directions on the sphere (weights pull), "
            "scaled to their weighted mean norm; exact at rank Σrᵢ.",
    params=[Param("max_iter", 10, "fixed-point steps at most (mergekit's 10)", low=0, high=10_000),
            Param("tol", 1e-5, "stop when the tangent's norm is below this (mergekit's 1e-5)",
                  low=0.0, high=1.0),
            RANK],
)(MergeMethod(name="karcher", run=_run, validate=_validate))
