"""The generation frames: PCA by hand, proximity and the experts' map, per-tensor histograms, fusion PCA."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_lab
from tests.generation.helpers import EXAMPLES, planted_family
from workbench.errors import WorkbenchError
from workbench.generation import HashingEncoder, ICMFusion, SGLoRA
from workbench.generation.frames import expert_map, fusion_pca, pca_2d, proximity_frame, tensor_histograms

DESCRIPTIONS = {"a": "quotes about sports", "b": "quotes about food", "c": "german sentences"}


@pytest.fixture(scope="module")
def lab_and_families():
    torch.set_num_threads(1)
    lab = tiny_lab()
    return lab, {t: planted_family(lab, t, seed=i, n=3) for i, t in enumerate(DESCRIPTIONS)}


@pytest.fixture(scope="module")
def sg(lab_and_families):
    lab, families = lab_and_families
    gen = SGLoRA(lab, encoder=HashingEncoder(32), k=2, tau=0.5, channels=(2, 4, 2), latent=4)
    gen.fit(families, DESCRIPTIONS, late=1.0, steps=2, batch_size=2, progress=False)
    return gen


def test_pca_by_hand():
    pts = torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [4.0, 0.0, 1.0]])  # variance along x only
    xy = pca_2d(pts)
    torch.testing.assert_close(xy[:, 0], torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(xy[:, 1], torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert pca_2d(pts[:1]).abs().sum() == 0


def test_proximity_frame_and_map(sg):
    frame = proximity_frame(sg, "quotes about sports and food")
    assert list(frame.columns) == ["expert", "cosine", "weight", "rank"]
    assert frame.weight.sum() == pytest.approx(1.0) and (frame.weight > 0).sum() == 2  # top-2
    assert frame.set_index("rank").loc[1, "expert"] == frame.loc[frame.cosine.idxmax(), "expert"]
    m = expert_map(sg, "quotes about sports")
    assert list(m.kind) == ["expert"] * 3 + ["query"] and m.weight.iloc[:3].sum() == pytest.approx(1.0)
    # the query lies where the experts' own PCA puts it: an expert's own description lands on that expert
    own = expert_map(sg, DESCRIPTIONS["c"])
    torch.testing.assert_close(
        torch.tensor(own.iloc[3][["x", "y"]].to_numpy(dtype=float)),
        torch.tensor(own.iloc[2][["x", "y"]].to_numpy(dtype=float)),
    )
    assert list(expert_map(sg).kind) == ["expert"] * 3


def test_tensor_histograms_count_every_value(lab_and_families):
    _, families = lab_and_families
    a, b = families["a"][0], families["b"][0]
    frame = tensor_histograms(a, b, bins=5)
    m = sorted(a.modules)[0]
    part = frame[frame.tensor == f"{m}.A"]
    assert set(part.which) == {"original", "generated"} and len(part) == 10
    assert part[part.which == "original"]["count"].sum() == a.modules[m].A.numel()
    lo = float(torch.minimum(a.modules[m].A.min(), b.modules[m].A.min()))
    assert part.left.min() == pytest.approx(lo)  # shared edges: the lower of the two minima
    assert frame.tensor.nunique() == 2 * len(a.modules)
    with pytest.raises(WorkbenchError, match="bins"):
        tensor_histograms(a, b, bins=0)


def test_fusion_pca(lab_and_families):
    lab, families = lab_and_families
    fusion = ICMFusion(lab, proj_dim=3, channels=(2, 4, 2), latent=4)
    conditions = {"a": EXAMPLES["left"], "b": EXAMPLES["right"], "c": EXAMPLES["left"][:1]}
    fusion.fit(families, conditions, late=1.0, steps=2, batch_size=2, progress=False)
    frame = fusion_pca(fusion, [1, 1, 2])
    assert set(frame.space) == {"task vectors", "fused latent"} and len(frame) == 8
    fused = frame[(frame.kind == "fused")]
    assert list(fused.weight) == [1.0, 1.0]
    tasks = frame[(frame.space == "fused latent") & (frame.kind == "task")]
    assert tasks.weight.tolist() == pytest.approx([0.25, 0.25, 0.5])
    # the fused point is the weighted mean of the task points (PCA is affine)
    lat = frame[frame.space == "fused latent"]
    want = (lat.x.iloc[:3] * [0.25, 0.25, 0.5]).sum()
    assert lat.x.iloc[3] == pytest.approx(want, abs=1e-9)
