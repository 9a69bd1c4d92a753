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
