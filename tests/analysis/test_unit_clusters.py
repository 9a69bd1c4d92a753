"""LoRA-LEGO's unit clusters as a frame: a planted case with known clusters (k-means must find them;
random labels must not), the labels are the merge's own, the cluster measures and the PCA by hand,
and the scatter that renders the frame."""

from __future__ import annotations

import math

import pytest
import torch

from tests.merging.test_lora_lego_planted import K, planted
from workbench.analysis.unit_clusters import (
    UnitClusters,
    cluster_frame,
    cluster_measures,
    mean_cluster_measures,
    pca_2d,
)
from workbench.errors import WorkbenchError
from workbench.merging import merge
from workbench.merging.methods import lora_lego
from workbench.merging.methods.lora_lego import lego_clusters


def _same_partition(labels, groups) -> bool:
    pairs = {(int(a), int(b)) for a, b in zip(labels, groups, strict=True)}
    return len(pairs) == len(set(map(int, labels))) == len(set(map(int, groups)))


def _frame_finds_planted(seed: int) -> bool:
    adapters, _, groups = planted(seed)
    paths = list(adapters[0].modules)[:3]
    frame = cluster_frame(lego_clusters(adapters, rank=K, seed=seed, n_init=3, paths=paths))
    return all(_same_partition(frame[frame.path == p]["cluster"], groups[p]) for p in paths)


@pytest.mark.parametrize("seed", range(2))
def test_the_frame_holds_the_planted_clusters_one_unit_per_source_and_rank(seed):
    adapters, _, groups = planted(seed)
    path = next(iter(adapters[0].modules))
    frame = cluster_frame(lego_clusters(adapters, rank=K, seed=seed, n_init=3, paths=[path]))
    assert list(frame.source) == [a.name for a in adapters for _ in range(K)]
    assert list(frame["index"]) == list(range(K)) * len(adapters)
    assert _same_partition(frame.cluster, groups[path]) and frame.cluster.nunique() == K
    assert frame.layer.iloc[0] == 0 and frame.module.iloc[0].endswith("_proj") and (frame.norm > 0).all()
    # every planted cluster holds one noisy copy of its prototype from each source
    assert frame.groupby("cluster")["source"].nunique().eq(len(adapters)).all()


def test_random_labels_in_place_of_kmeans_lose_the_planted_clusters(monkeypatch):
    """What the test above sees: k-means swapped for random labels fails it."""
    assert _frame_finds_planted(0)

    def random_labels(points, k, *, generator, n_init=10):
        return torch.randint(k, (points.shape[0],), generator=generator)

    monkeypatch.setattr(lora_lego, "kmeans", random_labels)
    assert not _frame_finds_planted(0)


def test_the_clusters_are_the_ones_the_merge_used():
    adapters, _, _ = planted(1)
    merged = merge(adapters, "lora_lego", rank=K, seed=5, n_init=2, parameter_reweight=False).adapter
    for path, c in lego_clusters(adapters, rank=K, seed=5, n_init=2).items():
        cents = torch.stack([c.units[c.labels == j].mean(0) for j in range(K)])  # (K, in + out)
        want = cents[:, c.in_features:].T @ cents[:, :c.in_features]  # Σ_j b_j a_jᵀ
        torch.testing.assert_close(merged.delta(path).double(), want, atol=1e-5, rtol=1e-4)


def test_cluster_measures_by_hand():
    # two sources s, t; a-half width 2, b-half width 2. Units: s0 = (e1, e1), t0 = (e1, e1+e2),
    # s1 = (e2, e2), t1 = (e1, e2). Clusters {s0, t0}, {s1, t1}.
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    units = torch.stack([torch.cat([e1, e1]), torch.cat([e2, e2]), torch.cat([e1, e1 + e2]),
                         torch.cat([e1, e2])]).double()
    c = UnitClusters(units, ["s", "s", "t", "t"], [0, 1, 0, 1], torch.tensor([0, 1, 0, 1]), 2)
    r = 1 / math.sqrt(2)
    # |cos| of b·aᵀ = |cos a|·|cos b|: (s0,t0) = 1·r, (s1,t1) = 0·1 -> within = r/2
    # different clusters: (s0,t1) = 1·0, (s1,t0) = 0·r -> between = 0
    m = cluster_measures(c)
    assert m["update_cos_gap"] == pytest.approx(r / 2)
    # outputs b only: within (s0,t0) = r, (s1,t1) = 1; between (s0,t1) = 0, (s1,t0) = r
    assert m["output_cos_gap"] == pytest.approx((r + 1) / 2 - r / 2)
    assert m["mixed_cluster_share"] == 1.0 and m["same_index_share"] == 1.0
    one_source = UnitClusters(units, ["s", "s", "t", "t"], [0, 1, 0, 1], torch.tensor([0, 0, 1, 1]), 2)
    assert cluster_measures(one_source)["mixed_cluster_share"] == 0.0
    assert math.isnan(cluster_measures(one_source)["update_cos_gap"])  # no cross-source pair in a cluster
    assert mean_cluster_measures({"a": c, "b": one_source})["mixed_cluster_share"] == 0.5
    with pytest.raises(WorkbenchError, match="one of each per unit"):
        UnitClusters(units, ["s"], [0], torch.tensor([0]), 2)


def test_pca_2d_by_hand():
    pts = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [4.0, 1.0, 0.0], [6.0, 1.0, 0.0]])
    xy = pca_2d(pts)
    centred = pts.double() - pts.double().mean(0)
    assert xy.shape == (4, 2) and xy.sum(0).abs().max() < 1e-9  # centred
    assert (xy ** 2).sum() == pytest.approx(float((centred ** 2).sum()))  # all variance in two axes
    assert float(xy[:, 0].var()) > float(xy[:, 1].var())  # the first axis carries the most
    assert xy[-1, 0] > 0  # sign fixed by the largest loading (along +x here)
    assert pca_2d(torch.ones(3, 4)).abs().max() == 0


def test_the_scatter_renders_one_trace_per_source_coloured_by_cluster():
    from widgets.lego_clusters import lego_cluster_figure

    adapters, _, _ = planted(0)
    frame = cluster_frame(lego_clusters(adapters, rank=K, seed=0, n_init=2))
    path = frame.path.iloc[-1]
    fig = lego_cluster_figure(frame, path=path)
    assert [t.name for t in fig.data] == [a.name for a in adapters]
    colours = sorted(int(v) for t in fig.data for v in t.marker.color)
    assert colours == sorted(frame[frame.path == path].cluster)
    with pytest.raises(WorkbenchError, match="no units of module"):
        lego_cluster_figure(frame, path="nowhere")
    with pytest.raises(WorkbenchError, match="cluster_frame"):
        lego_cluster_figure(frame.drop(columns="x"))
