"""fisher: Fisher merging: each weight entry is the Fisher-weighted mean of the sources' updates.

    ΔW' = Σᵢ F̃ᵢ ∘ wᵢΔWᵢ / Σᵢ F̃ᵢ,   F̃ᵢ = Fᵢ + ε   (elementwise, per module)

Fᵢ (out, in) is the diagonal Fisher of the module's weight with adapter i on, measured on its data
(``statistics=merge_statistics(lab, names, data, kinds=("fisher",))``); ε = ``min_fisher`` keeps
entries no source is sensitive to at the plain mean. The base W₀ cancels (every source has it),
so merging W₀ + ΔWᵢ is merging ΔWᵢ. Elementwise on the dense update, one module at a time, then
factored back by SVD (rank Σrᵢ by default; ``rank`` truncates).

Deviations: the paper's per-model scalars λᵢ multiply the Fisher (Σλᵢ = 1 leaves the scale); our
weights scale each update instead, as in every merge here (a weight-0 source and its Fisher take no
part; negating every weight negates the result). The Fisher is the empirical one on the task's
targets (see ``workbench.merging.statistics``). ε = 1e-6 is FusionBench's ``minimal_fisher_weight``.

Reference: Matena & Raffel, "Merging Models with Fisher-Weighted Averaging", NeurIPS 2022 (arXiv
2111.09832), eq. 2; FusionBench ``fisher_merging`` (minimal_fisher_weight).
"""

from __future__ import annotations

import torch

from workbench.merging.base import MERGES, RANK, MergeMethod
from workbench.merging.inputs import MergeInputs, resolve_rank
from workbench.merging.methods.regmean import check_statistics, live_sources
from workbench.ops.lowrank import dense_svd
from workbench.registry import Param


def _run(inputs: MergeInputs, params: dict):
    stats = check_statistics(inputs, params, "fisher", "fisher")
    out = {}
    for path in inputs.each("fisher"):
        rank = resolve_rank(params["rank"], inputs.ranks(path), "sum")
        out_f, in_f = inputs.shape(path)
        num = torch.zeros(out_f, in_f, dtype=torch.float64)
        den = torch.zeros(out_f, in_f, dtype=torch.float64)
        for i in live_sources(inputs, path):
            A, sB = inputs.adapters[i].factors(path)
            F = stats.fishers[inputs.adapters[i].name][path].double() + params["min_fisher"]  # (out, in)
            num += F * (inputs.weights[i] * (sB.detach().double() @ A.detach().double()))
            den += F
        safe = torch.where(den > 0, den, torch.ones_like(den))
        merged = torch.where(den > 0, num / safe, torch.zeros_like(num))
        out[path] = dense_svd(merged, rank)
    return out


MERGES.register(
    "fisher", flags=("elementwise", "needs_data"),
    reference="Matena & Raffel, Merging Models with Fisher-Weighted Averaging, NeurIPS 2022 "
              "(arXiv 2111.09832)",
    summary="Fisher merging: each entry the Fisher-weighted mean Σ Fᵢ∘wᵢΔWᵢ / Σ Fᵢ of the updates; needs "
            "statistics=merge_statistics(...) (diagonal Fishers).",
    params=[Param("statistics", Param.REQUIRED, "the sources' diagonal Fishers: "
                  "workbench.merging.statistics.merge_statistics(lab, names, data, kinds=('fisher',))"),
            Param("min_fisher", 1e-6, "ε added to every Fisher entry (FusionBench's minimal_fisher_weight)",
                  low=0.0),
            RANK],
)(MergeMethod(name="fisher", run=_run))
