"""Principal angles between column and row spaces: 1 with itself, 0 on orthogonal subspaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.analysis.helpers import MIXED, from_factors, random_adapter
from workbench.analysis import reparametrize, subspaces


def test_an_adapter_with_itself_overlaps_fully():
    a = random_adapter("a", 0, MIXED)
    frame = subspaces([a, a.copy("b")])
    assert list(frame.columns) == [
        "adapter_a",
        "adapter_b",
        "layer",
        "module",
        "side",
        "overlap",
        "min_angle_deg",
    ]
    assert len(frame) == 4 * len(MIXED) * 2  # ordered pairs with the diagonal, × module × side
    np.testing.assert_allclose(frame.overlap, 1.0, atol=1e-9)
    np.testing.assert_allclose(frame.min_angle_deg, 0.0, atol=1e-3)


def test_orthogonal_subspaces_do_not_overlap():
    g = torch.Generator().manual_seed(0)
    p = "model.layers.0.self_attn.q_proj"
    B1, B2 = torch.zeros(12, 2), torch.zeros(12, 3)
    B1[:4] = torch.randn(4, 2, generator=g)
    B2[4:9] = torch.randn(5, 3, generator=g)
    A1, A2 = torch.zeros(2, 10), torch.zeros(3, 10)
    A1[:, :4] = torch.randn(2, 4, generator=g)
    A2[:, 5:] = torch.randn(3, 5, generator=g)
    frame = subspaces([from_factors("x", {p: (A1, B1)}), from_factors("y", {p: (A2, B2)})])
    cross = frame[frame.adapter_a != frame.adapter_b]
    assert set(cross.side) == {"column", "row"}
    np.testing.assert_allclose(cross.overlap, 0.0, atol=1e-12)
    np.testing.assert_allclose(cross.min_angle_deg, 90.0, atol=1e-6)


def test_overlap_is_one_when_one_space_contains_the_other_and_ignores_the_split():
    a, b = random_adapter("a", 0, MIXED), random_adapter("b", 1, 2)
    ref = subspaces([a, b])
    new = subspaces([reparametrize(a, 3), reparametrize(b, 4)])
    np.testing.assert_allclose(new.overlap, ref.overlap, atol=1e-5)
    assert ((ref.overlap >= -1e-12) & (ref.overlap <= 1 + 1e-12)).all()

    # y's column space (2 dims) lies inside x's (3 dims): column overlap 1, row overlap < 1
    g = torch.Generator().manual_seed(1)
    p = "model.layers.0.self_attn.q_proj"
    Bx = torch.randn(12, 3, generator=g)
    x = from_factors("x", {p: (torch.randn(3, 10, generator=g), Bx)})
    y = from_factors("y", {p: (torch.randn(2, 10, generator=g), Bx @ torch.randn(3, 2, generator=g))})
    frame = subspaces([x, y]).set_index(["adapter_a", "adapter_b", "side"])
    assert frame.loc[("x", "y", "column"), "overlap"] == pytest.approx(1.0, abs=1e-9)
    assert frame.loc[("x", "y", "row"), "overlap"] < 0.9


def test_rank_deficient_update_uses_the_rank_of_the_update():
    # rank-2 factors with rank-1 product: the subspace is the line, not a plane
    g = torch.Generator().manual_seed(2)
    p = "model.layers.0.self_attn.q_proj"
    u, v = torch.randn(12, 1, generator=g), torch.randn(1, 10, generator=g)
    line = from_factors("line", {p: (torch.cat([v, v]), torch.cat([u, torch.randn(12, 1, generator=g)], 1))})
    # ΔW = u v + w v = (u + w) v: rank 1 with column space span(u + w)
    frame = subspaces([line, line.copy("twin")])
    np.testing.assert_allclose(frame.overlap, 1.0, atol=1e-9)
