"""model_stock: Model Stock: the mean update pulled toward the base by the angle between the updates.

With vᵢ = wᵢΔWᵢ of the N sources with a nonzero weight and cos θ the mean over pairs of their
cosine similarity (mergekit's reading of the paper for N > 2):

    t = N·cos θ / (1 + (N − 1)·cos θ),     ΔW' = t·(1/N)Σᵢ vᵢ + (1 − t)·0

The base (the anchor w₀ of the paper) is the pre-trained model, whose update is 0, so mergekit's
w_h = t·w_avg + (1 − t)·w₀ becomes t·mean(vᵢ) exactly. ``filter_wise=True`` takes one θ (one t) per
output row (a filter), as mergekit's ``filter_wise``: B' = diag(t)·[B₁ | …]/N. Exact at rank Σrᵢ
(``rank`` truncates); every cosine is read off the factors.

Deviations: mergekit requires two or more fine-tuned models; with one (θ undefined) we return it
(t = 1, the formula's value at cos θ = 1). Where the denominator is ≤ 0 (cos θ ≤ −1/(N − 1), the
formula's pole) we take t = 0 (the base); mergekit divides anyway. Weights scale each update first
(mergekit has none): a weight-0 source takes no part, negating every weight negates the result.

Reference: Jang, Yun & Han, "Model Stock: All we need is just a few fine-tuned models", ECCV 2024
(arXiv 2403.19522); mergekit ``merge_methods/model_stock.py`` (``filter_wise``, norms clamped at 1e-6).
"""

from __future__ import annotations

import torch

from workbench.merging.base import MERGES, RANK, MergeMethod
from workbench.merging.inputs import MergeInputs, resolve_rank
from workbench.merging.methods.slerp import combine
from workbench.merging.spherical import frobenius_gram, row_gram
from workbench.ops.lowrank import factored_svd, truncate
from workbench.registry import Param

NORM_CLAMP = 1e-6  # mergekit: the product of norms is clamped at this before dividing


def stock_ratio(cos: torch.Tensor, n: int) -> torch.Tensor:
    """t = n·cos / (1 + (n − 1)·cos), 0 at and beyond the pole (denominator ≤ 0), 1 for n = 1."""
    if n == 1:
        return torch.ones_like(cos)
    den = 1 + (n - 1) * cos
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, n * cos / safe, torch.zeros_like(cos))


def mean_cosine(G: torch.Tensor) -> torch.Tensor:
    """Mean over pairs i < j of Gᵢⱼ/max(‖vᵢ‖‖vⱼ‖, 1e-6), clamped to [−1, 1]; G is (N, N, …)."""
    n = G.shape[0]
    norms = G.diagonal(dim1=0, dim2=1).clamp(min=0).sqrt().movedim(-1, 0)  # (N, …)
    cos = [(G[i, j] / (norms[i] * norms[j]).clamp(min=NORM_CLAMP)).clamp(-1, 1)
           for i in range(n) for j in range(i + 1, n)]
    return torch.stack(cos).mean(0)


def _run(inputs: MergeInputs, params: dict):
    out, ratios = {}, {}
    for path in inputs.each("model_stock"):
        parts, weights = inputs.parts(path)
        rank = resolve_rank(params["rank"], inputs.ranks(path), "sum")
        live = [(A, w * sB) for (A, sB), w in zip(parts, weights, strict=True) if w != 0]
        if not live:
            A, sB = parts[0]
            out[path] = (A.new_zeros(rank, A.shape[1]), sB.new_zeros(sB.shape[0], rank))
            continue
        n = len(live)
        if params["filter_wise"]:
            t = stock_ratio(mean_cosine(row_gram(live)), n) if n > 1 else torch.ones(live[0][1].shape[0],
                                                                                       dtype=torch.float64)
            A = torch.cat([A for A, _ in live])  # (Σr, in)
            B = torch.cat([t[:, None] * sB / n for _, sB in live], dim=1)  # (out, Σr)
            U, S, Vh = factored_svd(B, A)
            out[path] = truncate(U, S, Vh, rank)
            ratios[path] = float(t.mean())
        else:
            t = float(stock_ratio(mean_cosine(frobenius_gram(live)), n)) if n > 1 else 1.0
            out[path] = combine(live, [t / n] * n, rank)
            ratios[path] = t
    inputs.notes["model_stock_t"] = ratios
    return out


MERGES.register(
    "model_stock", flags=("factored",),
    reference="Jang et al., Model Stock, ECCV 2024 (arXiv 2403.19522); mergekit merge_methods/model_stock.py",
    summary="Model Stock: the mean update scaled by t = N·cosθ/(1+(N−1)·cosθ) toward the base, θ the mean "
            "angle between the updates (per module, or per output row); exact at rank Σrᵢ.",
    params=[Param("filter_wise", False, "one angle and ratio per output row (mergekit's filter_wise)",
                  choices=(False, True)),
            RANK],
)(MergeMethod(name="model_stock", run=_run))
