"""slerp: spherical linear interpolation of two updates, ΔW' = c₀·w₀ΔW₀ + c₁·w₁ΔW₁.

With vᵢ = wᵢΔWᵢ (flattened) and θ the angle between them, mergekit's ``slerp``:

    c₀ = sin((1 − t)θ) / sin θ,   c₁ = sin(tθ) / sin θ;   |cos θ| > 0.9995 (colinear): c = (1 − t, t)

t = 0 gives v₀, t = 1 gives v₁. The coefficients come from three inner products read off the factors
(``spherical.frobenius_gram``), so the result is exact at rank r₀ + r₁ (``rank`` truncates by SVD).

Deviations: mergekit interpolates the full weights W₀ + ΔWᵢ, which for two adapters of one base are
nearly parallel (‖W₀‖ ≫ ‖ΔW‖: it would almost always fall back to linear); we interpolate the
updates, as mergekit's ``nuslerp`` does with a ``base_model``. A zero update has no direction, so the
pair falls back to linear (mergekit's normalize leaves it zero and takes θ = π/2). ``weights`` scale
each update first (w = −1 flips it), so negating both weights negates the result. mergekit requires
``t``; ours defaults to 0.5. Exactly two sources (a WorkbenchError otherwise); a module one source
lacks (``targets="union"``) is a zero update there, so it is linear: (1 − t)·v₀ or t·v₁.

Reference: Shoemake, "Animating rotation with quaternion curves", SIGGRAPH 1985; mergekit
``merge_methods/slerp.py`` (``slerp``, DOT_THRESHOLD 0.9995).
"""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError
from workbench.merging.base import MERGES, RANK, MergeMethod
from workbench.merging.inputs import MergeInputs, resolve_rank
from workbench.merging.spherical import frobenius_gram, slerp_coefficients
from workbench.ops.lowrank import factored_svd, stack, truncate
from workbench.registry import Param


def check_pair(inputs: MergeInputs, method: str) -> None:
    """Exactly two sources, or a WorkbenchError that says what to do instead."""
    if len(inputs.adapters) != 2:
        raise WorkbenchError(
            f"{method} interpolates exactly two adapters; got {len(inputs.adapters)} "
            f"({[a.name for a in inputs.adapters]}). Pass two, or use karcher (the spherical mean of "
            "any number) or task_arithmetic")


def pair_parts(inputs: MergeInputs, path: str, weights: list[float]
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(A₀, w₀s₀B₀), (A₁, w₁s₁B₁)] at ``path`` (float64); a missing source is a rank-1 zero update."""
    out_f, in_f = inputs.shape(path)
    parts = []
    for a, w in zip(inputs.adapters, weights, strict=True):
        if path in a.modules:
            A, sB = a.factors(path)
            parts.append((A.detach().double(), w * sB.detach().double()))
        else:
            parts.append((torch.zeros(1, in_f, dtype=torch.float64),
                          torch.zeros(out_f, 1, dtype=torch.float64)))
    return parts


def combine(parts, coefficients: list[float], rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Σᵢ cᵢ·(sBᵢ)·Aᵢ factored at ``rank`` (exact at Σrᵢ)."""
    U, S, Vh = factored_svd(*stack(parts, coefficients))  # (out, k), (k,), (k, in)
    return truncate(U, S, Vh, rank)


def _run(inputs: MergeInputs, params: dict):
    check_pair(inputs, "slerp")
    out = {}
    for path in inputs.each("slerp"):
        parts = pair_parts(inputs, path, inputs.weights)
        G = frobenius_gram(parts)
        c0, c1 = slerp_coefficients(params["t"], G[0, 0].sqrt(), G[1, 1].sqrt(), G[0, 1])
        rank = resolve_rank(params["rank"], inputs.ranks(path), "sum")
        out[path] = combine(parts, [float(c0), float(c1)], rank)
    return out


MERGES.register(
    "slerp", flags=("factored", "pair"),
    reference="Shoemake, Animating rotation with quaternion curves, SIGGRAPH 1985; mergekit "
              "merge_methods/slerp.py (DOT_THRESHOLD 0.9995)",
    summary="SLERP of two updates: c₀·w₀ΔW₀ + c₁·w₁ΔW₁ along the great circle between them (linear where "
            "they are colinear); exact at rank r₀ + r₁.",
    params=[Param("t", 0.5, "the interpolation point: 0 gives the first adapter, 1 the second",
                  low=0.0, high=1.0),
            RANK],
)(MergeMethod(name="slerp", run=_run))
