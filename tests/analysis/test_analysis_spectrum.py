"""Factored spectra equal the dense singular values; the effective rank of a rank-1 update is 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.analysis.helpers import MIXED, from_factors, random_adapter
from workbench.analysis import effective_rank, reparametrize, spectrum
from workbench.naming import split_module_name


def test_spectrum_equals_dense_svdvals_with_mixed_ranks():
    a = random_adapter("a", 0, MIXED)
    frame = spectrum(a)
    assert list(frame.columns) == ["adapter", "layer", "module", "rank", "value", "energy"]
    for path, r in MIXED.items():
        layer, module = split_module_name(path)
        got = frame[(frame.layer == layer) & (frame.module == module)].sort_values("rank").value
        want = torch.linalg.svdvals(a.delta(path).double())[:r]
        np.testing.assert_allclose(got.to_numpy(), want.numpy(), atol=1e-4, rtol=1e-4)
    energy = frame.groupby(["layer", "module"]).energy.sum()
    np.testing.assert_allclose(energy.to_numpy(), 1.0, atol=1e-12)


def test_spectrum_ignores_the_split():
    a = random_adapter("a", 0, MIXED)
    np.testing.assert_allclose(spectrum(reparametrize(a, 5)).value, spectrum(a).value, atol=1e-5)


def test_effective_rank_of_rank_one_and_of_flat_spectra():
    g = torch.Generator().manual_seed(0)
    p = "model.layers.2.self_attn.q_proj"
    u, v = torch.randn(12, 1, generator=g), torch.randn(1, 10, generator=g)
    # rank 3 factors whose product has rank 1
    rank1 = from_factors("r1", {p: (torch.cat([v, 2 * v, -v]), torch.cat([u, u, u], dim=1))})
    out = effective_rank(spectrum(rank1))
    assert list(out.columns) == ["adapter", "layer", "module", "effective_rank", "energy_top1"]
    assert out.effective_rank.iloc[0] == pytest.approx(1.0, abs=1e-4)
    assert out.energy_top1.iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert out.layer.iloc[0] == 2 and out.module.iloc[0] == "self_attn.q_proj"

    # orthonormal factors: r equal singular values -> effective rank r
    Q, _ = torch.linalg.qr(torch.randn(12, 3, generator=g))
    P, _ = torch.linalg.qr(torch.randn(10, 3, generator=g))
    flat = from_factors("flat", {p: (P.T, Q)})
    assert effective_rank(spectrum(flat)).effective_rank.iloc[0] == pytest.approx(3.0, abs=1e-5)


def test_effective_rank_is_between_one_and_r():
    a = random_adapter("a", 0, MIXED)
    out = effective_rank(spectrum(a))
    assert len(out) == len(MIXED)
    assert (out.effective_rank >= 1 - 1e-9).all()
    assert (out.effective_rank <= np.array(list(MIXED.values())) + 1e-9).all()
