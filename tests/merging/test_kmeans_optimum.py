"""k-means reaches the best partition of a small overlapping set (found by enumerating all of them)."""

from __future__ import annotations

import itertools

import pytest
import torch

from workbench.merging.kmeans import kmeans


def _inertia(points: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    return sum(float(((points[labels == j] - points[labels == j].mean(0)) ** 2).sum())
               for j in range(k) if (labels == j).any())


@pytest.mark.parametrize("seed", range(3))
def test_kmeans_finds_the_enumerated_optimum(seed):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(9, 2, generator=g, dtype=torch.float64)  # no clear clusters: Lloyd steps matter
    best = min(_inertia(points, torch.tensor((0,) + lab), 2) for lab in itertools.product((0, 1), repeat=8))
    labels = kmeans(points, 2, generator=torch.Generator().manual_seed(seed), n_init=10)
    assert _inertia(points, labels, 2) == pytest.approx(best, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_seeding_and_labels_do_not_depend_on_the_points_scale(seed):
    """k-means++ draws the next center with probability d²/Σd² whatever Σd² is: points scaled by 1e-3
    (Σd² < 1) give the same labels as the points themselves (kills a uniform draw below Σd² = 1). One
    restart and one assignment, so that the labels are those of the seeds (Lloyd would hide a bad draw)."""
    points = torch.randn(12, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    labels = [kmeans(p, 3, generator=torch.Generator().manual_seed(seed), n_init=1, max_iter=1)
              for p in (points, points * 1e-3)]
    assert torch.equal(labels[0], labels[1])


def test_identical_points_are_one_cluster_without_a_nan():
    """Every point the same: Σd² = 0 after the first center, so the seeding draws uniformly (no 0/0)
    and every label is the first cluster."""
    labels = kmeans(torch.ones(5, 2, dtype=torch.float64), 2, generator=torch.Generator().manual_seed(0))
    assert labels.tolist() == [0] * 5
