"""LoRA-LEGO's clusters of rank-1 units, as a tidy frame and as measures: which units of which adapters
a merge grouped, where they lie (2-D PCA), and whether the groups join units of different adapters
that do similar things.

    clusters = lego_clusters([arith, topic, language], rank=8, seed=0)    # workbench.merging
    frame = cluster_frame(clusters)      # one row per unit: layer, module, source, index, cluster, x, y
    cluster_measures(clusters["model.layers.3.self_attn.q_proj"])   # mixed share, similarity gaps

A unit (a Minimal Semantic Unit) is one rank of one source: the row m = (√(|w|s)·a, ±√(|w|s)·b) of
``workbench.merging.methods.lora_lego.units``, so its rank-1 update is b·aᵀ (scaled). ``UnitClusters``
holds the pool of one module with each unit's source name and rank index, and the k-means labels the
merge used; it is built in the merging layer (``lego_clusters``) and read here.

Reference: Zhao et al., "Merging LoRAs like Playing LEGO: Pushing the Modularity of LoRA to Extremes
Through Rank-Wise Clustering", ICLR 2025 (arXiv 2409.16167), Sec. 3 (MSUs, rank-wise clustering).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.naming import split_module_name

FRAME_COLUMNS = ["path", "layer", "module", "unit", "source", "index", "cluster", "norm", "x", "y"]


@dataclass(frozen=True)
class UnitClusters:
    """The pooled units of one module and their clusters.

    Attributes:
        units: (n, in + out) float64, row j = (a-half, b-half) of unit j.
        source: n source adapter names, one per unit.
        index: n rank indices (the unit's rank inside its source).
        labels: (n,) cluster ids in [0, k).
        in_features: the width of the a-half.
    """

    units: torch.Tensor
    source: list[str]
    index: list[int]
    labels: torch.Tensor
    in_features: int

    def __post_init__(self):
        n = self.units.shape[0]
        if not (len(self.source) == len(self.index) == self.labels.shape[0] == n):
            raise WorkbenchError(f"UnitClusters: {n} units but {len(self.source)} sources, {len(self.index)} "
                                 f"indices and {self.labels.shape[0]} labels; give one of each per unit")


def pca_2d(points: torch.Tensor) -> torch.Tensor:
    """(n, 2) coordinates of ``points`` (n, d) on their first two principal axes (centred; zeros pad
    when there are fewer than two axes). Each axis' sign is fixed so its largest loading is positive."""
    x = points.double() - points.double().mean(0)  # (n, d)
    if x.shape[0] < 2 or float(x.abs().max()) == 0:
        return torch.zeros(points.shape[0], 2, dtype=torch.float64)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)  # vh (min(n, d), d)
    axes = vh[:2]
    axes = axes * torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))  # deterministic signs
    xy = x @ axes.T  # (n, ≤2)
    return torch.cat([xy, xy.new_zeros(xy.shape[0], 2 - xy.shape[1])], dim=1)


def cluster_frame(clusters: Mapping[str, UnitClusters]) -> pd.DataFrame:
    """One row per unit of every module: ``path, layer, module, unit, source, index, cluster, norm, x, y``.

    ``norm`` is the unit's ‖b‖·‖a‖ (the Frobenius norm of its rank-1 update, in the pool's scale);
    ``x, y`` its coordinates on the module's first two principal axes of the unit vectors.
    """
    rows = []
    for path, c in clusters.items():
        layer, module = split_module_name(path)
        xy = pca_2d(c.units)
        a, b = c.units[:, :c.in_features], c.units[:, c.in_features:]
        norms = a.norm(dim=1) * b.norm(dim=1)
        for j in range(c.units.shape[0]):
            rows.append({"path": path, "layer": -1 if layer is None else layer, "module": module, "unit": j,
                         "source": c.source[j], "index": int(c.index[j]), "cluster": int(c.labels[j]),
                         "norm": float(norms[j]), "x": float(xy[j, 0]), "y": float(xy[j, 1])})
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def unit_cosines(c: UnitClusters) -> tuple[torch.Tensor, torch.Tensor]:
    """(|cos| of the units' rank-1 updates b·aᵀ (n, n), |cos| of their output directions b (n, n)).

    cos(vec(bᵢaᵢᵀ), vec(bⱼaⱼᵀ)) = cos(aᵢ, aⱼ)·cos(bᵢ, bⱼ); the absolute value makes both independent of
    the sign a unit is stored with ((a, b) and (−a, −b) are the same update).
    """
    a = torch.nn.functional.normalize(c.units[:, :c.in_features].double(), dim=1)
    b = torch.nn.functional.normalize(c.units[:, c.in_features:].double(), dim=1)
    cb = b @ b.T
    return (a @ a.T * cb).abs(), cb.abs()


def cluster_measures(c: UnitClusters) -> dict[str, float]:
    """What one module's clusters join, over the pairs of units from *different* sources.

    - ``mixed_cluster_share``: share of the clusters with ≥ 2 units that hold units of ≥ 2 sources;
    - ``update_cos_gap``: mean |cos| of the rank-1 updates of cross-source pairs in one cluster minus
      that of cross-source pairs in different clusters (> 0: the clusters join units that do alike);
    - ``output_cos_gap``: the same on the output directions b alone (what a unit writes);
    - ``same_index_share``: among cross-source pairs in one cluster, the share with the same rank index
      (high when the sources share an initialisation of A and their units stayed near it).
    NaN where a quantity has no pairs.
    """
    labels = c.labels.long()
    names = {s: i for i, s in enumerate(dict.fromkeys(c.source))}
    src = torch.tensor([names[s] for s in c.source])
    idx = torch.tensor([int(i) for i in c.index])
    n = labels.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    cross = (src[:, None] != src[None, :]) & off
    same = (labels[:, None] == labels[None, :]) & off
    upd, out = unit_cosines(c)

    def gap(m: torch.Tensor) -> float:
        within, between = m[cross & same], m[cross & ~same]
        if not len(within) or not len(between):
            return float("nan")
        return float(within.mean() - between.mean())

    sizes = torch.bincount(labels)
    multi = [j for j in range(len(sizes)) if sizes[j] >= 2]
    mixed = [len({c.source[i] for i in (labels == j).nonzero().flatten().tolist()}) >= 2 for j in multi]
    pairs = cross & same
    return {"mixed_cluster_share": float(sum(mixed) / len(mixed)) if mixed else float("nan"),
            "update_cos_gap": gap(upd), "output_cos_gap": gap(out),
            "same_index_share": float((idx[:, None] == idx[None, :])[pairs].double().mean())
            if pairs.any() else float("nan")}


def mean_cluster_measures(clusters: Mapping[str, UnitClusters]) -> dict[str, float]:
    """``cluster_measures`` averaged over the modules (NaNs skipped)."""
    frame = pd.DataFrame([cluster_measures(c) for c in clusters.values()])
    if frame.empty:
        raise WorkbenchError("no modules to measure; pass the clusters of at least one module")
    return {k: float(v) for k, v in frame.mean(skipna=True).items()}
