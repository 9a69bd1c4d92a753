"""Pruning tiny-llama (GQA, 2 KV heads) and tiny-gemma3 (1 KV head, q/k norms): zero ratio is the
original, a pruned model runs with consistent shapes, saves and reloads as a plain transformers model."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.conftest import tiny_inputs
from workbench import zoo
from workbench.compression import PruneMap, load_pruned, prune, save_pruned
from workbench.compression.groups import blocks
from workbench.errors import WorkbenchError

MODELS = ["tiny-llama", "tiny-gemma3"]


def _logits(model, x):
    with torch.no_grad():
        return model(**x).logits


def _calib(model):
    return tiny_inputs(model, batch=4, length=9, seed=5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", ["taylor", "l2"])
def test_zero_ratio_is_the_original(name, method):
    model = zoo.load(name).model
    x = tiny_inputs(model)
    p = prune(model, 0.0, method=method, batch=_calib(model))
    assert torch.equal(_logits(p.model, x), _logits(model, x))
    assert all(not m.pruned for m in p.map.layers.values())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", ["taylor", "taylor2", "l1", "random"])
def test_pruned_model_runs_saves_and_reloads(name, method, tmp_path):
    model = zoo.load(name).model
    x = tiny_inputs(model)
    before = _logits(model, x)
    p = prune(model, 0.5, method=method, batch=_calib(model))
    assert torch.equal(_logits(model, x), before), "the model given is left as it was"
    cfg = p.model.config
    assert cfg.intermediate_size == 64 and cfg.num_attention_heads == 2
    for b, m in zip(blocks(p.model), p.map.layers.values(), strict=True):
        kept = (len(m.heads), len(m.kv), len(m.neurons))
        assert (b.n_heads, b.n_kv, b.d_ff) == kept == (2, cfg.num_key_value_heads, 64)
    out = _logits(p.model, x)
    assert out.shape == before.shape and torch.isfinite(out).all()
    save_pruned(p, tmp_path / "m")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()  # a normal model directory
    torch.testing.assert_close(_logits(plain, x), out, rtol=0, atol=1e-6)
    again, index_map = load_pruned(tmp_path / "m")
    assert index_map.to_dict() == p.map.to_dict()
    assert sum(t.numel() for t in plain.parameters()) < sum(t.numel() for t in model.parameters())


def test_pruned_slices_are_the_kept_rows_of_the_original():
    model = zoo.load("tiny-llama").model
    p = prune(model, 0.25, method="l2", layers=[1])
    m = p.map.layers[1]
    full, small = model.model.layers[1], p.model.model.layers[1]
    assert torch.equal(small.self_attn.q_proj.weight, full.self_attn.q_proj.weight[m.q_channels])
    assert torch.equal(small.self_attn.o_proj.weight, full.self_attn.o_proj.weight[:, m.q_channels])
    assert torch.equal(small.mlp.down_proj.weight, full.mlp.down_proj.weight[:, m.neuron_index])
    assert torch.equal(small.mlp.up_proj.weight, full.mlp.up_proj.weight[m.neuron_index])
    assert not p.map.layers[0].pruned and p.map.layers[1].pruned
    # l2 keeps the neurons of largest squared norm over gate rows + up rows + down columns
    norms = (full.mlp.gate_proj.weight ** 2).sum(1) + (full.mlp.up_proj.weight ** 2).sum(1) \
        + (full.mlp.down_proj.weight ** 2).sum(0)
    assert m.neurons == sorted(torch.argsort(norms, descending=True)[:96].tolist())


def test_query_heads_stay_balanced_across_kv_groups():
    model = zoo.load("tiny-llama").model  # 4 query heads, 2 KV heads: groups {0, 1} and {2, 3}
    p = prune(model, 0.5, method="taylor", batch=_calib(model), parts=("attention",))
    for m in p.map.layers.values():
        assert len(m.heads) == 2 and {h // 2 for h in m.heads} == {0, 1} and m.kv == [0, 1]
        assert p.model.model.layers[0].self_attn.num_key_value_groups == 1


def test_kv_mode_drops_a_kv_head_with_its_query_heads():
    model = zoo.load("tiny-llama").model
    x = tiny_inputs(model)
    p = prune(model, 0.5, method="taylor", batch=_calib(model), attention="kv", parts=("attention",))
    for m in p.map.layers.values():
        assert len(m.kv) == 1 and m.heads == [2 * m.kv[0], 2 * m.kv[0] + 1]
    assert p.model.config.num_key_value_heads == 1 and p.model.config.num_attention_heads == 2
    assert torch.isfinite(_logits(p.model, x)).all()
    with pytest.raises(WorkbenchError, match="one key/value head"):
        prune(zoo.load("tiny-gemma3").model, 0.5, method="l2", attention="kv")


def test_global_pruning_runs_but_a_nonuniform_model_refuses_to_save(tmp_path):
    model = zoo.load("tiny-gemma3").model
    x = tiny_inputs(model)
    p = prune(model, 0.3, method="taylor", batch=_calib(model), scope="global", parts=("mlp",))
    sizes = [len(m.neurons) for m in p.map.layers.values()]
    assert sum(sizes) == 256 - int(0.3 * 256)
    assert torch.isfinite(_logits(p.model, x)).all()
    if len(set(sizes)) > 1:
        with pytest.raises(WorkbenchError, match="different sizes"):
            save_pruned(p, tmp_path / "m")
    local = prune(model, 0.3, method="l2", layers=[0])  # only one layer pruned: non-uniform too
    with pytest.raises(WorkbenchError, match="Prune all layers locally"):
        save_pruned(local, tmp_path / "m")
    assert torch.isfinite(_logits(local.model, x)).all()


def test_bad_arguments_say_what_to_do():
    model = zoo.load("tiny-llama").model
    with pytest.raises(WorkbenchError, match=r"\[0, 1\)"):
        prune(model, 1.0, method="l2")
    with pytest.raises(WorkbenchError, match="do not exist"):
        prune(model, 0.5, method="l2", layers=[7])
    with pytest.raises(WorkbenchError, match="scope"):
        prune(model, 0.5, method="l2", scope="everywhere")
    with pytest.raises(WorkbenchError, match="pruning.json"):
        PruneMap.load("/nonexistent")


@pytest.mark.parametrize(("name", "attention"), [("tiny-llama", "query"), ("tiny-llama", "kv"),
                                                 ("tiny-gemma3", "query")])
def test_global_pruning_of_heads_keeps_gqa_balanced_and_runs(name, attention):
    model = zoo.load(name).model
    x = tiny_inputs(model)
    p = prune(model, 0.5, method="taylor2", batch=_calib(model), scope="global", attention=attention,
              aggregation="max")
    for b, m in zip(blocks(p.model), p.map.layers.values(), strict=True):
        assert b.n_heads % b.n_kv == 0 and b.n_kv == len(m.kv) and b.n_heads == len(m.heads) >= 1
    assert torch.isfinite(_logits(p.model, x)).all()
    assert p.map.settings["scope"] == "global" and p.map.kept_fraction()["neurons"] == 0.5


def test_ratio_curve_starts_at_the_base_loss_and_shrinks_the_model():
    from workbench.compression import ratio_curve, token_loss

    model = zoo.load("tiny-gemma3").model
    held = tiny_inputs(model, batch=2, length=8, seed=9)
    frame = ratio_curve(model, [0.0, 0.5], ["taylor", "random"], _calib(model), held, seeds=(0, 1))
    assert len(frame) == 2 * 2 * 2
    base = frame[frame.ratio == 0]
    assert (base.loss == token_loss(model, held)).all()
    assert (frame[frame.ratio == 0.5].parameters < base.parameters.iloc[0]).all()
    r = frame[(frame.method == "random") & (frame.ratio == 0.5)]
    assert r.loss.nunique() == 2  # seeds differ
    with pytest.raises(Exception, match="taylr"):
        ratio_curve(model, [0.1], ["taylr"], _calib(model), held)
