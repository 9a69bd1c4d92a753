"""LoRA-LEGO by hand on one 2 → 1 module (milliseconds): the pooled units, the clusters, the centroids,
parameter reweighting and both output reweightings, each written out.

Sources (s = α/r = 1): a (w = 1): A = [[1, 0], [−3, 4]], B = [[1, −5]]; b (w = −4, so √(|w|s) = 2 and the
b-halves flip sign): A = [[0.5, 0.5], [−2.5, 2]], B = [[−0.5, 3.5]]; c (w = 0): takes no part. Units
m = (√(|w|s)·aⱼ, sign(w)·√(|w|s)·bⱼ): a₁ = (1, 0, 1), a₂ = (−3, 4, −5), b₁ = (1, 1, 1), b₂ = (−5, 4, −7);
two clear clusters {a₁, b₁} and {a₂, b₂}, centroids (1, ½, 1) and (−4, 4, −6).
wΔW: a (16, −20), b (36, −27) (norms √656 and 45).
"""

from __future__ import annotations

import math

import pytest
import torch

from workbench.adapters import Adapter, LoraFactors
from workbench.merging import merge
from workbench.merging.inputs import MergeInputs
from workbench.merging.methods.lora_lego import lego_clusters, units

PATH = "m"
WEIGHTS = [1.0, -4.0, 0.0]


def _sources() -> list[Adapter]:
    def one(name, A, B):
        A, B = torch.tensor(A, dtype=torch.float64), torch.tensor(B, dtype=torch.float64)
        return Adapter(name, {PATH: LoraFactors(A, B, float(A.shape[0]))}, scaling="standard")

    return [one("a", [[1, 0], [-3, 4]], [[1, -5]]),
            one("b", [[0.5, 0.5], [-2.5, 2]], [[-0.5, 3.5]]),
            one("c", [[7, 7], [7, 7]], [[7, 7]])]


def _delta(**params) -> torch.Tensor:
    return merge(_sources(), "lora_lego", WEIGHTS, **params).adapter.delta(PATH).double()  # (1, 2)


def test_the_pool_folds_the_weight_into_both_halves():
    pool, norms, in_f = units(MergeInputs(_sources(), WEIGHTS, 0, [PATH]), PATH)
    want = torch.tensor([[1, 0, 1], [-3, 4, -5], [1, 1, 1], [-5, 4, -7]], dtype=torch.float64)
    torch.testing.assert_close(pool, want)
    assert norms == pytest.approx([math.sqrt(656), 45.0]) and in_f == 2  # the zero-weight c is skipped
    flipped, _, _ = units(MergeInputs(_sources(), WEIGHTS, 0, [PATH]), PATH, sign_canonicalize=True)
    torch.testing.assert_close(flipped, want * torch.tensor([[1.0], [1.0], [1.0], [-1.0]]))  # b₂'s lead −5


def test_the_clusters_are_the_planted_pairs():
    clusters = lego_clusters(_sources(), WEIGHTS, seed=0)[PATH]
    labels = clusters.labels.tolist()
    assert labels[0] == labels[2] and labels[1] == labels[3] and labels[0] != labels[1]


def test_centroids_without_reweighting_are_the_member_means():
    # (1, ½)·1 + (−4, 4)·(−6): Σ_j b'_j a'_jᵀ of the two centroids
    want = torch.tensor([[25.0, -23.5]], dtype=torch.float64)
    torch.testing.assert_close(_delta(parameter_reweight=False), want)


def test_parameter_reweighting_gives_each_centroid_its_members_mean_norm():
    r1 = (math.sqrt(2) + math.sqrt(3)) / 2 / 1.5  # mean ‖m‖ / ‖(1, ½, 1)‖
    r2 = (math.sqrt(50) + math.sqrt(90)) / 2 / math.sqrt(68)  # mean ‖m‖ / ‖(−4, 4, −6)‖
    want = r1 ** 2 * torch.tensor([1.0, 0.5]) + r2 ** 2 * torch.tensor([24.0, -24.0])
    torch.testing.assert_close(_delta(), want[None].double())


def test_one_cluster_per_unit_is_the_weighted_sum_and_extra_rank_is_zero():
    torch.testing.assert_close(_delta(rank=4), torch.tensor([[52.0, -47.0]], dtype=torch.float64))
    wide = merge(_sources(), "lora_lego", WEIGHTS, rank=5).adapter.modules[PATH]
    assert wide.A.shape == (5, 2) and not wide.A[4].any() and not wide.B[:, 4].any()


def test_output_reweightings():
    # sqrt_rank, k = 1: γ = √(r̄/k) = √2, one centroid: the mean of all four units, reweighted
    pool = torch.tensor([[1, 0, 1], [-3, 4, -5], [1, 1, 1], [-5, 4, -7]], dtype=torch.float64)
    c = pool.mean(0)
    c = c * pool.norm(dim=1).mean() / c.norm()
    want = math.sqrt(2) * c[2] * c[:2]
    torch.testing.assert_close(_delta(rank=1, output_reweight="sqrt_rank"), want[None])
    # match: ‖ΔW'‖_F = √(mean of ‖wᵢΔWᵢ‖²) over the two live sources = √((656 + 2025)/2)
    matched = _delta(output_reweight="match")
    assert float(matched.norm()) == pytest.approx(math.sqrt((656 + 2025) / 2), rel=1e-6)  # float32 factors
    torch.testing.assert_close(matched / matched.norm(), _delta() / _delta().norm())


def test_the_scale_folds_in_and_zero_units_are_dropped():
    A, B = torch.tensor([[1.0, 0], [0, 0], [-1, -2]]).double(), torch.tensor([[1.0, 0, -3]]).double()
    a = Adapter("s", {PATH: LoraFactors(A, B, 12.0)}, scaling="standard")  # s = 12/3 = 4: units × √4
    pool, norms, _ = units(MergeInputs([a], [1.0], 0, [PATH]), PATH)
    # the zero unit goes, the all-negative one stays
    torch.testing.assert_close(pool, 2 * torch.tensor([[1.0, 0, 1], [-1, -2, -3]]).double())
    assert norms == pytest.approx([4 * float((B @ A).norm())])  # ‖w·s·B·A‖


def test_one_unit_alone_is_kept():
    a = Adapter("one", {PATH: LoraFactors(torch.tensor([[1.0, 2]]).double(), torch.tensor([[3.0]]).double(),
                                          1.0)}, scaling="standard")
    torch.testing.assert_close(merge([a], "lora_lego").adapter.delta(PATH).double(),
                               torch.tensor([[3.0, 6.0]]).double())


def test_small_centroids_are_reweighted_and_matched_too():
    # weights ×1/100: every unit ×1/10, so ΔW' ×1/100 (centroid norms and ‖ΔW'‖ now below 1)
    small = [w / 100 for w in WEIGHTS]
    got = merge(_sources(), "lora_lego", small).adapter.delta(PATH).double()
    torch.testing.assert_close(got, _delta() / 100)
    matched = merge(_sources(), "lora_lego", small, output_reweight="match").adapter.delta(PATH).double()
    assert float(matched.norm()) == pytest.approx(math.sqrt((656 + 2025) / 2) / 100, rel=1e-6)
    # sqrt_rank with k = 4 = n: γ = √(r̄/k) = √(2/4) on the exact sum
    torch.testing.assert_close(_delta(rank=4, output_reweight="sqrt_rank"),
                               math.sqrt(0.5) * torch.tensor([[52.0, -47.0]], dtype=torch.float64))
