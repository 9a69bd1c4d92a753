"""The adapter layer's exact facts: merge/unmerge, mixed batches, sums, hook points, detach."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY, output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError


def _weights(model) -> dict[str, torch.Tensor]:
    return {k.replace("base_layer.", ""): v.clone() for k, v in model.state_dict().items()
            if "lora_" not in k}


@pytest.mark.parametrize("name", TINY)
def test_merge_then_unmerge_restores_base(name):
    lab = tiny_lab(name)
    before = _weights(lab.model)
    lab.new_adapter("a", r=4, targets="all-linear", init="random", seed=0)
    lab.new_adapter("b", r=2, targets="attention", init="random", seed=1)
    x = tiny_inputs(lab.model)
    with lab.using({"a": 1.0, "b": 0.5}):
        applied = output_of(lab.run(x)[0])
    lab.merge_into_base("a")
    lab.merge_into_base("b", weight=0.5)
    merged = output_of(lab.run(x)[0])
    torch.testing.assert_close(merged, applied, atol=1e-5, rtol=1e-5)  # merged == applied
    after_merge = _weights(lab.model)
    assert any(not torch.equal(before[k], after_merge[k]) for k in before)
    lab.unmerge("b")
    lab.unmerge("a")
    for k, v in _weights(lab.model).items():
        assert torch.equal(v, before[k]), k  # bit for bit, as the README promises


def test_partial_unmerge_subtracts_and_last_restores_exactly():
    lab = tiny_lab()
    before = _weights(lab.model)
    lab.new_adapter("a", r=4, init="random", seed=0)
    lab.new_adapter("b", r=4, init="random", seed=1)
    lab.merge_into_base("a")
    lab.merge_into_base("b")
    lab.unmerge("a")  # b still merged: subtraction, float-exact to ~1e-7
    lab.use(None)
    x = tiny_inputs(lab.model)
    only_b = output_of(lab.run(x)[0])
    lab.unmerge("b")
    with lab.using("b"):
        torch.testing.assert_close(only_b, output_of(lab.run(x)[0]), atol=1e-5, rtol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in _weights(lab.model).items())  # bit-exact


def test_using_a_merged_adapter_is_refused():
    lab = tiny_lab()
    lab.new_adapter("a", r=2, init="random")
    lab.merge_into_base("a")
    with pytest.raises(WorkbenchError, match="merged into the base"):
        lab.use("a")


@pytest.mark.parametrize("name", TINY)
def test_mixed_batch_equals_each_row_alone(name):
    lab = tiny_lab(name)
    lab.new_adapter("a", r=4, init="random", seed=0)
    lab.new_adapter("b", r=2, init="random", seed=1)
    x = tiny_inputs(lab.model, batch=4)
    rows = ["a", None, "b", "a"]
    lab.use(rows=rows)
    mixed = output_of(lab.run(x)[0])
    for i, r in enumerate(rows):
        lab.use(r)
        alone = output_of(lab.run({k: v[i : i + 1] for k, v in x.items()})[0])
        torch.testing.assert_close(mixed[i : i + 1], alone, atol=1e-5, rtol=1e-5)
    lab.use(rows=["a", "b"])
    with pytest.raises(WorkbenchError, match="one name .or None. per row"):
        lab.run(x)


def test_weighted_sum_is_linear_in_the_weights():
    lab = tiny_lab()
    lab.new_adapter("a", r=4, init="random", seed=0)
    lab.new_adapter("b", r=4, init="random", seed=1)
    layer = next(iter(lab.layers.values()))
    x = torch.randn(2, 5, layer.in_features)
    deltas = {}
    for spec in ("a", "b", {"a": 0.3, "b": -1.2}, None):
        lab.use(spec)
        deltas[str(spec)] = layer(x) - layer.base_layer(x)
    torch.testing.assert_close(deltas[str({"a": 0.3, "b": -1.2})],
                               0.3 * deltas["a"] - 1.2 * deltas["b"], atol=1e-6, rtol=1e-5)
    assert deltas["None"].abs().max() == 0


def test_hook_points_record_rank_activations_and_delta():
    lab = tiny_lab()
    a = lab.new_adapter("a", r=3, init="random", seed=0)
    lab.use("a")
    x = tiny_inputs(lab.model)
    _, cache = lab.run(x, record=["*.hook_rank.*", "*.hook_in", "*.hook_delta"])
    path = "model.layers.0.self_attn.q_proj"
    h = cache[f"{path}.hook_rank.a"]
    assert h.shape == (3, 7, 3)
    torch.testing.assert_close(h, cache[f"{path}.hook_in"] @ a.modules[path].A.T)
    torch.testing.assert_close(cache[f"{path}.hook_delta"], a.scale(path) * h @ a.modules[path].B.T)
    frame = cache.to_frame([f"{path}.hook_rank.a"])
    assert set(frame.columns) >= {"layer", "module", "hook", "adapter", "batch", "token", "rank", "value"}
    assert frame.layer.unique().tolist() == [0] and frame.module.iloc[0] == "self_attn.q_proj"
    assert len(frame) == 3 * 7 * 3
    # hooks are gone after recording
    assert all(not hp._forward_hooks for hp in lab.layers[path].hook_rank.values())
    with pytest.raises(WorkbenchError, match="matches no hook point"):
        lab.run(x, record=["*.hook_nothing"])


def test_detach_restores_original_modules():
    lab = tiny_lab()
    original = {n: type(m) for n, m in lab.model.named_modules()}
    lab.new_adapter("a", r=2, init="random")
    lab.merge_into_base("a")
    lab.detach()
    assert {n: type(m) for n, m in lab.model.named_modules()} == original
    assert not lab.adapters


def test_training_changes_only_the_adapter():
    lab = tiny_lab()
    a = lab.new_adapter("a", r=2, init="random")
    lab.use("a")
    before = _weights(lab.model)
    layer = lab.layers["model.layers.0.self_attn.q_proj"]
    for p in (layer.lora_A["a"], layer.lora_B["a"]):
        p.requires_grad_(True)
    x = tiny_inputs(lab.model)
    lab.model(**x).logits.sum().backward()
    assert layer.lora_B["a"].grad is not None
    with torch.no_grad():
        layer.lora_B["a"] += 1.0
    assert torch.equal(a.modules["model.layers.0.self_attn.q_proj"].B, layer.lora_B["a"])  # shared
    assert all(torch.equal(v, before[k]) for k, v in _weights(lab.model).items())


def test_attach_and_detach_by_pattern():
    lab = tiny_lab()
    paths = lab.attach("attention")
    assert set(lab.layers) == set(paths) and len(paths) == 8
    _, cache = lab.run(tiny_inputs(lab.model), record=["*.hook_in"])
    assert len(cache) == 0  # nothing used: the layers pass through without recording inputs
    lab.new_adapter("a", r=2, targets="self_attn.q_proj")
    with pytest.raises(WorkbenchError, match="still holds adapter"):
        lab.detach("attention")
    assert lab.detach("v_proj") == ["model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.v_proj"]
    assert len(lab.layers) == 6
    lab.detach()
    assert not lab.layers and not lab.adapters
