"""flatten / unflatten: per-tensor z-scoring and its exact inverse (ICM-LoRA's normalizer)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_lab
from workbench.errors import WorkbenchError
from workbench.generation import flatten, layout_of, unflatten


@pytest.fixture(scope="module")
def adapter():
    lab = tiny_lab()
    a = lab.new_adapter("a", r=2, init="random", seed=3)
    for i, f in enumerate(a.modules.values()):  # tensors of very different scales and offsets
        f.A.mul_(10.0 ** (i - 3)).add_(0.5 * i)
    return a


def _same(a, b) -> bool:
    return all(torch.equal(a.modules[m].A, b.modules[m].A) and torch.equal(a.modules[m].B, b.modules[m].B)
               and a.modules[m].alpha == b.modules[m].alpha for m in a.modules)


def test_round_trip_is_exact_bit_for_bit(adapter):
    flat = flatten(adapter)
    back = unflatten(flat.x, flat.stats, flat.layout, name="back")
    assert back.modules.keys() == adapter.modules.keys() and back.scaling == adapter.scaling
    assert _same(adapter, back)
    assert back.base_fingerprint == adapter.base_fingerprint


def test_round_trip_through_float32_is_exact_for_half_precision(adapter):
    half = adapter.copy("half")
    for f in half.modules.values():
        f.A, f.B = f.A.to(torch.bfloat16), f.B.to(torch.bfloat16)
    flat = flatten(half)
    back = unflatten(flat.x.float(), flat.stats, flat.layout, name="back")  # what the CVAE sees: float32
    assert back.modules[next(iter(back.modules))].A.dtype == torch.bfloat16 and _same(half, back)


def test_each_tensor_is_z_scored_by_its_own_mean_and_unbiased_std(adapter):
    flat = flatten(adapter)
    pieces = torch.split(flat.x, list(flat.layout.lengths))
    assert len(pieces) == 2 * len(adapter.modules)  # A then B per module, modules sorted
    first = adapter.modules[sorted(adapter.modules)[0]]
    a64 = first.A.double()
    torch.testing.assert_close(pieces[0], ((a64 - a64.mean()) / a64.std()).reshape(-1), rtol=0, atol=1e-12)
    for k, p in enumerate(pieces):
        assert abs(p.mean().item()) < 1e-9 and abs(p.std().item() - 1) < 1e-9  # torch's std: unbiased
        assert flat.stats[k, 1] > 0


def test_a_constant_tensor_gets_std_one_not_nan(adapter):
    zero = adapter.copy("zero")
    for f in zero.modules.values():
        f.B.zero_()  # B at LoRA initialization
    flat = flatten(zero)
    assert torch.isfinite(flat.x).all() and (flat.stats[1::2, 1] == 1).all()
    assert _same(zero, unflatten(flat.x, flat.stats, flat.layout, name="back"))


def test_another_layout_is_refused_by_module_and_shapes(adapter):
    lab = tiny_lab()
    other = lab.new_adapter("o", r=4, init="random", seed=0)
    with pytest.raises(WorkbenchError, match="factor shapes"):
        flatten(other, layout_of(adapter))
    narrow = lab.new_adapter("n", r=2, init="random", seed=0, targets=["model.layers.0.self_attn.q_proj"])
    with pytest.raises(WorkbenchError, match="other modules"):
        flatten(narrow, layout_of(adapter))


def test_bad_vectors_are_refused(adapter):
    flat = flatten(adapter)
    with pytest.raises(WorkbenchError, match="values"):
        unflatten(flat.x[:-1], flat.stats, flat.layout, name="x")
    bad = flat.x.clone()
    bad[0] = float("nan")
    with pytest.raises(WorkbenchError, match="non-finite"):
        unflatten(bad, flat.stats, flat.layout, name="x")
