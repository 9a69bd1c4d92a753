"""Task-vector angles from the factors equal the dense computation and ignore the A/B split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.analysis.helpers import MIXED, SHAPES, dense_cosine, from_factors, lookup, negated, random_adapter
from workbench.analysis import angles, flattened_factor_cosine, reparametrize
from workbench.errors import WorkbenchError
from workbench.naming import split_module_name


@pytest.fixture
def trio():
    ranks_b = {p: r for p, r in zip(SHAPES, (4, 1, 2, 3), strict=True)}
    return [random_adapter("a", 0, MIXED), random_adapter("b", 1, ranks_b), random_adapter("c", 2, 2)]



def test_factored_equals_dense_per_module_and_total_with_mixed_ranks(trio):
    by_module = angles(trio, by="module")
    total = angles(trio)
    paths = list(SHAPES)
    for x in trio:
        for y in trio:
            for p in paths:
                layer, module = split_module_name(p)
                row = lookup(by_module, x.name, y.name, layer=layer, module=module)
                assert row.cosine == pytest.approx(dense_cosine(x, y, [p]), abs=1e-5)
                assert math.cos(math.radians(row.angle_deg)) == pytest.approx(row.cosine, abs=1e-6)
            assert lookup(total, x.name, y.name).cosine == pytest.approx(dense_cosine(x, y, paths), abs=1e-5)


def test_by_layer_equals_dense_over_the_layer(trio):
    frame = angles(trio, by="layer")
    assert set(frame.columns) >= {"adapter_a", "adapter_b", "layer", "cosine", "angle_deg"}
    for layer in (0, 1):
        paths = [p for p in SHAPES if split_module_name(p)[0] == layer]
        row = lookup(frame, "a", "b", layer=layer)
        assert row.cosine == pytest.approx(dense_cosine(trio[0], trio[1], paths), abs=1e-5)
        assert row.shared_modules == 2


def test_frame_is_a_full_symmetric_matrix_with_unit_diagonal(trio):
    frame = angles({"x": trio[0], "y": trio[1], "z": trio[2]})
    assert list(frame.columns[:4]) == ["adapter_a", "adapter_b", "cosine", "angle_deg"]
    m = frame.pivot(index="adapter_a", columns="adapter_b", values="cosine")
    assert m.shape == (3, 3)
    np.testing.assert_allclose(np.diag(m.to_numpy()), 1.0, atol=1e-12)
    np.testing.assert_allclose(m.to_numpy(), m.to_numpy().T, atol=1e-12)


def test_reparametrization_changes_flattened_cosine_but_not_angles(trio):
    a, b = trio[0], random_adapter("d", 7, MIXED)  # equal ranks: the naive cosine needs them
    ref = angles([a, b], by="module")
    moved = []
    for seed in range(3):
        a2 = reparametrize(a, seed=seed)
        for p in a.modules:  # the update itself is unchanged
            torch.testing.assert_close(a2.delta(p), a.delta(p), atol=1e-6, rtol=1e-5)
        new = angles([a2, b], by="module")
        np.testing.assert_allclose(new.cosine, ref.cosine, atol=1e-5)
        np.testing.assert_allclose(angles([a2, b]).cosine, angles([a, b]).cosine, atol=1e-5)
        moved.append(abs(flattened_factor_cosine(a2, b) - flattened_factor_cosine(a, b)))
        # same ΔW, yet the naive cosine of the factors is far from 1
        assert flattened_factor_cosine(a, a2) < 0.95
        assert lookup(angles([a, reparametrize(a, seed, name="a2")]), "a", "a2").cosine == pytest.approx(
            1.0, abs=1e-5
        )
    assert max(moved) > 0.05


def test_self_negation_and_orthogonal_construction():
    a = random_adapter("a", 3)
    frame = angles([a, a.copy("same"), negated(a, "neg")])
    assert lookup(frame, "a", "same").cosine == pytest.approx(1.0, abs=1e-9)
    assert lookup(frame, "a", "same").angle_deg == pytest.approx(0.0, abs=1e-3)
    assert lookup(frame, "a", "neg").cosine == pytest.approx(-1.0, abs=1e-9)
    assert lookup(frame, "a", "neg").angle_deg == pytest.approx(180.0, abs=1e-3)

    # disjoint output rows: B1 on rows 0..2, B2 on rows 3..5, any A: <ΔW1, ΔW2> = 0
    g = torch.Generator().manual_seed(0)
    path = "model.layers.0.self_attn.q_proj"
    B1, B2 = torch.zeros(12, 2), torch.zeros(12, 2)
    B1[:3] = torch.randn(3, 2, generator=g)
    B2[3:6] = torch.randn(3, 2, generator=g)
    o1 = from_factors("o1", {path: (torch.randn(2, 10, generator=g), B1)})
    o2 = from_factors("o2", {path: (torch.randn(2, 10, generator=g), B2)})
    row = lookup(angles([o1, o2]), "o1", "o2")
    assert row.cosine == pytest.approx(0.0, abs=1e-12)
    assert row.angle_deg == pytest.approx(90.0, abs=1e-9)


def test_total_is_not_the_mean_of_module_cosines():
    # one module agrees (cos 1) with a tiny update, the other opposes (cos -1) with a large one
    p, q = "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(2, 10, generator=g), torch.randn(12, 2, generator=g)
    x = from_factors("x", {p: (A, 0.1 * B), q: (A, B)})
    y = from_factors("y", {p: (A, 0.1 * B), q: (A, -B)})
    per_module = angles([x, y], by="module")
    mean_cos = per_module[(per_module.adapter_a == "x") & (per_module.adapter_b == "y")].cosine.mean()
    total = lookup(angles([x, y]), "x", "y").cosine
    assert mean_cos == pytest.approx(0.0, abs=1e-9)
    assert total == pytest.approx((0.01 - 1) / (0.01 + 1), abs=1e-6)  # norm-weighted
    assert abs(total - mean_cos) > 0.5


def test_modules_in_one_adapter_only_count_in_its_norm():
    p, q = "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"
    a = random_adapter("a", 0, shapes={p: SHAPES[p], q: SHAPES[q]})
    b = random_adapter("b", 1, shapes={p: SHAPES[p]})
    row = lookup(angles([a, b]), "a", "b")
    # the dense reference forms ΔW in float32 before widening: agreement to float32 rounding
    assert row.cosine == pytest.approx(dense_cosine(a, b, [p, q]), abs=1e-6)
    assert row.shared_modules == 1
    by_module = angles([a, b], by="module")
    assert set(by_module[(by_module.adapter_a == "a") & (by_module.adapter_b == "b")].layer) == {0}


def test_bad_input_is_refused_with_clear_errors():
    a = random_adapter("a", 0)
    with pytest.raises(WorkbenchError, match="not a view"):
        angles([a], by="rank")
    with pytest.raises(WorkbenchError, match="two adapters are named"):
        angles([a, a])
    wrong = random_adapter("w", 1, shapes={"model.layers.0.self_attn.q_proj": (7, 10)})
    with pytest.raises(WorkbenchError, match=r"q_proj.*\(12, 10\).*\(7, 10\)"):
        angles([a, wrong])
    other = random_adapter("o", 2)
    a.base_fingerprint, other.base_fingerprint = "base1", "base2"
    with pytest.raises(WorkbenchError, match="different base models"):
        angles([a, other])
    with pytest.raises(WorkbenchError, match="equal ranks"):
        flattened_factor_cosine(random_adapter("x", 0, 2), random_adapter("y", 0, 3))


def test_zero_update_gives_nan_not_an_error():
    a = random_adapter("a", 0)
    z = a.copy("z")
    for f in z.modules.values():
        f.B = torch.zeros_like(f.B)
    row = lookup(angles([a, z]), "a", "z")
    assert math.isnan(row.cosine) and math.isnan(row.angle_deg)


def test_on_a_lab_with_a_tiny_model():
    from tests.conftest import tiny_lab

    lab = tiny_lab("tiny-llama")
    lab.new_adapter("one", r=4, init="random", seed=1)
    lab.new_adapter("two", r=2, init="random", seed=2)
    frame = angles(lab.adapters, by="module")
    assert set(frame.adapter_a) == {"one", "two"}
    assert frame.cosine.between(-1, 1).all()
