"""lora_lego: LoRA-LEGO: pool the rank-1 units of every adapter, cluster them, one unit per cluster.

Per module:
1. Pool: every rank-1 unit (Minimal Semantic Unit) j of source i as one vector
   m = (√(|wᵢ|sᵢ)·aⱼ, sign(wᵢ)·√(|wᵢ|sᵢ)·bⱼ) ∈ R^{in+out}: m's two halves multiply to wᵢsᵢ·bⱼaⱼᵀ.
2. Cluster: k-means into ``rank`` = k clusters (default max rᵢ, the paper's k = r), seeded.
3. Reassemble: each centroid (member mean) is split back into (a', b'): A' (k, in), B' (out, k).
4. Parameter reweighting (default on): c ← c·mean‖m‖/‖c‖ over its members (undoes norm decay).
5. Output reweighting γ on ΔW': ``"none"`` (default), ``"sqrt_rank"`` γ = √(r̄/k) (r̄ = mean source
   rank), ``"match"``: ||ΔW'||_F = mean over sources of ||wᵢΔWᵢ||_F in RMS, i.e. Var(ΔW'x) equals the
   mean Var(wᵢΔWᵢx) for Gaussian x.

With k = Σrᵢ every unit is its own cluster and (γ = 1) the result is ``cat`` exactly.

Reconstruction notes: no official code; the pool, k-means and reassembly follow the abstract and
reviews [P]; the folding √s on each side, both γ formulas and the default "none" are ours [R,
unverified]. ``sign_canonicalize=True`` (our ablation, off by default as in the paper) flips each unit
so that its a-half's largest entry is positive, since (a, b) and (−a, −b) are the same unit.
Zero-weight sources and zero units take no part. ``unit_basis="svd"`` (our ablation, off by default)
first re-factors each source's BᵢAᵢ by its SVD (aⱼ = √σⱼvⱼ, bⱼ = √σⱼuⱼ): the same update, but units
that do not inherit the factorization, e.g. an A initialisation shared by LoRAs trained from one seed
(which otherwise makes k-means group the units by rank index). Sign ambiguity as above.

Reference: Zhao et al., "Merging LoRAs like Playing LEGO: Pushing the Modularity of LoRA to
Extremes Through Rank-Wise Clustering", ICLR 2025 (arXiv 2409.16167).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import replace

import torch

from workbench.adapters.adapter import Adapter
from workbench.analysis.unit_clusters import UnitClusters
from workbench.errors import WorkbenchError
from workbench.merging.base import MERGES, RANK, MergeMethod
from workbench.merging.inputs import MergeInputs, resolve_rank
from workbench.merging.kmeans import kmeans
from workbench.ops.lowrank import factored_norm, factored_svd
from workbench.registry import Param

OUTPUT_REWEIGHT = ("none", "sqrt_rank", "match")
UNIT_BASES = ("factors", "svd")  # a parameter's values (the units' basis), not merge-method names
FACTORS, SVD_UNITS = UNIT_BASES


def units(inputs: MergeInputs, path: str, sign_canonicalize: bool = False, unit_basis: str = "factors"
          ) -> tuple[torch.Tensor, list[float], int]:
    """(pool (n, in + out) float64, the sources' ||wᵢΔWᵢ||_F, in_features) of one module."""
    pool, norms, _, _ = _pool(inputs, path, sign_canonicalize, unit_basis)
    return pool, norms, inputs.shape(path)[1]


def _pool(inputs: MergeInputs, path: str, sign_canonicalize: bool, unit_basis: str = "factors"
          ) -> tuple[torch.Tensor, list[float], list[str], list[int]]:
    """(pool, norms, each unit's source name, each unit's rank index in its source) of one module."""
    rows, norms, source, index = [], [], [], []
    for i in inputs.present(path):
        w, a = inputs.weights[i], inputs.adapters[i]
        if w == 0:
            continue
        f, s = a.modules[path], a.scale(path)
        c = math.sqrt(abs(w) * s)
        A, B = f.A.detach().double(), f.B.detach().double()  # (r, in), (out, r)
        if unit_basis == SVD_UNITS:  # the same B·A in its balanced SVD factors: aⱼ = √σⱼ·vⱼ, bⱼ = √σⱼ·uⱼ
            U, S, Vh = factored_svd(B, A)  # (out, k), (k,), (k, in)
            A, B = S.sqrt()[:, None] * Vh, U * S.sqrt()
        m = torch.cat([c * A, (c if w > 0 else -c) * B.T], dim=1)  # (r, in + out)
        rows.append(m)
        norms.append(factored_norm(w * s * B, A))
        source += [a.name] * m.shape[0]
        index += list(range(m.shape[0]))
    pool = torch.cat(rows) if rows else torch.zeros(0, 0, dtype=torch.float64)
    if len(pool):
        live = pool.abs().amax(dim=1) > 0
        source = [x for x, keep in zip(source, live.tolist(), strict=True) if keep]
        index = [x for x, keep in zip(index, live.tolist(), strict=True) if keep]
        pool = pool[live]
    if sign_canonicalize and len(pool):
        in_f = inputs.shape(path)[1]
        lead = pool[:, :in_f].gather(1, pool[:, :in_f].abs().argmax(dim=1, keepdim=True))  # (n, 1)
        pool = pool * torch.where(lead < 0, -1.0, 1.0).to(pool.dtype)
    return pool, norms, source, index


def _labels(inputs: MergeInputs, path: str, pool: torch.Tensor, k: int, n_init: int) -> torch.Tensor:
    """The merge's k-means labels (n,) of ``pool`` (one cluster per unit when k ≥ n), seeded per module."""
    n = pool.shape[0]
    if k >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(zlib.crc32(f"{inputs.seed}|{path}".encode()))
    return kmeans(pool, k, generator=g, n_init=n_init)


def _lego_module(inputs: MergeInputs, path: str, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
    out_f, in_f = inputs.shape(path)
    k = resolve_rank(params["rank"], inputs.ranks(path), "max")
    pool, norms, _ = units(inputs, path, params["sign_canonicalize"], params["unit_basis"])
    n = pool.shape[0]
    if n == 0:
        return torch.zeros(k, in_f), torch.zeros(out_f, k)
    if k >= n:  # one cluster per unit: exact
        centroids = torch.cat([pool, pool.new_zeros(k - n, pool.shape[1])])
    else:
        labels = _labels(inputs, path, pool, k, params["n_init"])
        centroids = pool.new_zeros(k, pool.shape[1])
        for j in range(k):
            members = pool[labels == j]
            if not len(members):
                continue
            c = members.mean(0)
            if params["parameter_reweight"] and float(c.norm()) > 0:
                c = c * (members.norm(dim=1).mean() / c.norm())
            centroids[j] = c
    A, B = centroids[:, :in_f], centroids[:, in_f:].T  # (k, in), (out, k)
    gamma = 1.0
    if params["output_reweight"] == "sqrt_rank":
        gamma = math.sqrt(sum(inputs.ranks(path)) / len(inputs.ranks(path)) / k)
    elif params["output_reweight"] == "match":
        merged = factored_norm(B, A)
        target = math.sqrt(sum(x * x for x in norms) / len(norms))
        gamma = target / merged if merged > 0 else 1.0
    return A, gamma * B


def lego_clusters(adapters: list[Adapter], weights: list[float] | None = None, *, rank: int | None = None,
                  seed: int = 0, n_init: int = 10, sign_canonicalize: bool = False,
                  unit_basis: str = "factors", paths: list[str] | None = None) -> dict[str, UnitClusters]:
    """path -> the pooled units, their sources and rank indices, and the k-means labels that
    ``merge(adapters, "lora_lego", weights, rank=rank, seed=seed, n_init=n_init, ...)`` uses (the same
    pool, generator and restarts, so the same clusters). ``paths``: a subset of the shared modules.

    Read it with ``workbench.analysis.unit_clusters`` (``cluster_frame``, ``cluster_measures``).
    """
    weights = [1.0] * len(adapters) if weights is None else [float(w) for w in weights]
    if len(weights) != len(adapters):
        raise WorkbenchError(f"{len(weights)} weights for {len(adapters)} adapters; "
                             "give one weight per adapter")
    shared = [p for p in adapters[0].modules if all(p in a.modules for a in adapters)]
    unknown = sorted(set(paths or ()) - set(shared))
    if unknown:
        raise WorkbenchError(f"lego_clusters: {unknown[:3]} are not modules every adapter has; pick from "
                             f"{shared[:3]}...")
    inputs = MergeInputs(list(adapters), weights, seed, list(paths) if paths else shared)
    out = {}
    for path in inputs.paths:
        pool, _, source, index = _pool(inputs, path, sign_canonicalize, unit_basis)
        k = resolve_rank(rank, inputs.ranks(path), "max")
        out[path] = UnitClusters(pool, source, index, _labels(inputs, path, pool, k, n_init),
                                 inputs.shape(path)[1])
    return out


def _run(inputs: MergeInputs, params: dict):
    return {path: _lego_module(inputs, path, params) for path in inputs.paths}


def _validate(params: dict) -> None:
    if not isinstance(params["n_init"], int) or params["n_init"] < 1:
        raise WorkbenchError(f"lora_lego: n_init={params['n_init']!r} must be a positive int")


MERGES.register(
    "lora_lego", flags=("stochastic", "factored"),
    reference="Zhao et al., Merging LoRAs like Playing LEGO, ICLR 2025 (arXiv 2409.16167)",
    summary="LoRA-LEGO: k-means of the pooled rank-1 units of every adapter; one unit per cluster "
            "(rank = k clusters, default max rᵢ).",
    params=[replace(RANK, doc="the number k of clusters, the output rank (None: max rᵢ, the paper's k = r)"),
            Param("parameter_reweight", True, "rescale each centroid to its members' mean norm (undoes the "
                  "norm decay of averaging)", choices=(True, False)),
            Param("output_reweight", "none", "scale γ of the merged ΔW': none, √(r̄/k), or matching the "
                  "sources' mean Frobenius norm", choices=OUTPUT_REWEIGHT),
            Param("sign_canonicalize", False, "flip each unit so its a-half's largest entry is positive "
                  "(our ablation)", choices=(True, False)),
            Param("unit_basis", "factors", "the units: the sources' own rank-1 factors (the paper), or "
                  "each source's update re-factored by SVD first (our ablation: units that do not inherit "
                  "a shared initialisation)", choices=UNIT_BASES),
            Param("n_init", 10, "k-means restarts (k-means++ seeds); the lowest inertia wins",
                  low=1, high=100)],
)(MergeMethod(name="lora_lego", run=_run, validate=_validate))
