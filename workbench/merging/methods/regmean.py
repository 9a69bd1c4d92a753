"""regmean: RegMean: per module, the update whose outputs best match every source's on its own inputs.

For a linear module, minimizing Σᵢ ‖Xᵢ(W₀ + ΔW)ᵀ − Xᵢ(W₀ + wᵢΔWᵢ)ᵀ‖² over ΔW has the closed form

    ΔW' = (Σᵢ wᵢΔWᵢ·G̃ᵢ)(Σᵢ G̃ᵢ)⁻¹,   G̃ᵢ = α·Gᵢ + (1 − α)·diag(Gᵢ)

(W₀ cancels: the base is the same under every source). Gᵢ = XᵢᵀXᵢ/n is the Gram of the module's
inputs with adapter i on (``statistics=merge_statistics(lab, names, data, kinds=("gram",))``);
α < 1 shrinks the off-diagonal entries (the paper's α; it keeps the sum invertible). Factored:
ΔW' = Σᵢ wᵢsᵢBᵢ·(AᵢG̃ᵢ(ΣG̃)⁺), A' = [AᵢG̃ᵢ(ΣG̃)⁺; …], B' = [wᵢsᵢBᵢ | …]: exact at rank Σrᵢ (``rank``
truncates), no dense ΔW. (ΣG̃)⁺ is the pseudo-inverse (eigh), so unused input directions get 0.

Deviations: the weights scale each update (the paper has none); a weight-0 source and its Gram take
no part. A source lacking a module (``targets="union"``) takes no part there. α = 0.9 by default is
ours (the paper tunes α per setting); α = 1 is the exact closed form.

Reference: Jin, Ren, Preotiuc-Pietro & Cheng, "Dataless Knowledge Fusion by Merging Weights of
Language Models", ICLR 2023 (arXiv 2212.09849), eq. 3 and §3.3 (α); bloomberg/dataless-model-merging.
"""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError
from workbench.merging.base import MERGES, RANK, MergeMethod
from workbench.merging.inputs import MergeInputs, resolve_rank
from workbench.merging.statistics import MergeStatistics
from workbench.ops.lowrank import factored_svd, truncate
from workbench.registry import Param


def shrink(G: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·G + (1 − α)·diag(G): the off-diagonal entries scaled by α."""
    return alpha * G + (1 - alpha) * torch.diag(G.diagonal())


def live_sources(inputs: MergeInputs, path: str) -> list[int]:
    """The sources with ``path`` and a nonzero weight."""
    return [i for i in inputs.present(path) if inputs.weights[i] != 0]


def check_statistics(inputs: MergeInputs, params: dict, kind: str, method: str) -> MergeStatistics:
    stats = params["statistics"]
    if not isinstance(stats, MergeStatistics):
        raise WorkbenchError(f"{method}: statistics={type(stats).__name__} is not a MergeStatistics; "
                             "compute it with workbench.merging.merge_statistics(lab, names, data)")
    live = sorted({i for p in inputs.paths for i in live_sources(inputs, p)})
    stats.check([inputs.adapters[i] for i in live], kind, method, [inputs.fingerprint(i) for i in live])
    return stats


def _run(inputs: MergeInputs, params: dict):
    stats = check_statistics(inputs, params, "gram", "regmean")
    out = {}
    for path in inputs.each("regmean"):
        rank = resolve_rank(params["rank"], inputs.ranks(path), "sum")
        live = live_sources(inputs, path)
        if not live:
            out_f, in_f = inputs.shape(path)
            out[path] = (torch.zeros(rank, in_f, dtype=torch.float64),
                         torch.zeros(out_f, rank, dtype=torch.float64))
            continue
        grams = [shrink(stats.grams[inputs.adapters[i].name][path].double(), params["alpha"]) for i in live]
        inverse = torch.linalg.pinv(sum(grams), hermitian=True)  # (in, in)
        As, Bs = [], []
        for i, G in zip(live, grams, strict=True):
            A, sB = inputs.adapters[i].factors(path)
            As.append(A.detach().double() @ G @ inverse)  # (rᵢ, in)
            Bs.append(inputs.weights[i] * sB.detach().double())  # (out, rᵢ)
        U, S, Vh = factored_svd(torch.cat(Bs, dim=1), torch.cat(As))
        out[path] = truncate(U, S, Vh, rank)
    return out


MERGES.register(
    "regmean", flags=("factored", "needs_data"),
    reference="Jin et al., Dataless Knowledge Fusion by Merging Weights of Language Models (RegMean), ICLR "
              "2023 (arXiv 2212.09849)",
    summary="RegMean: per module, the closed-form update whose outputs best match each source's on its own "
            "inputs, ΔW' = (Σ wᵢΔWᵢG̃ᵢ)(ΣG̃ᵢ)⁻¹; needs statistics=merge_statistics(...) (input Grams).",
    params=[Param("statistics", Param.REQUIRED, "the sources' input Gram matrices: "
                  "workbench.merging.statistics.merge_statistics(lab, names, data, kinds=('gram',))"),
            Param("alpha", 0.9, "scale of the Grams' off-diagonal entries (the paper's α; 1: exact "
                  "closed form)", low=0.0, high=1.0),
            RANK],
)(MergeMethod(name="regmean", run=_run))
