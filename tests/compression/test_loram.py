"""LoRAM recovery: the recovered ΔW is the pruned ΔW on the kept indices and zero elsewhere (GQA
included), the recovered adapter runs on the full model and exports to PEFT with the lab's logits, and
LLM-Pruner's recovery LoRA trains on the pruned model through the one loop."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from tests.conftest import output_of, tiny_inputs
from workbench import Workbench, zoo
from workbench.compression import prune, recover
from workbench.errors import WorkbenchError
from workbench.training.fitting import fit

CASES = [("tiny-llama", "query"), ("tiny-llama", "kv"), ("tiny-gemma3", "query")]


def _pruned_lab_and_adapter(name, attention, ratio=0.5, train=False):
    full = zoo.load(name)
    p = prune(full.model, ratio, method="taylor", batch=tiny_inputs(full.model, batch=4, length=9, seed=5),
              attention=attention)
    lab = Workbench(p.model, None, name=f"{name}-pruned")
    if train:  # LLM-Pruner's recovery LoRA / LoRAM's training step: the one training loop
        a = lab.new_adapter("a", r=4, targets="all-linear", seed=0)
        layers = [layer for layer in lab.layers.values() if "a" in layer.names]
        params = [t for layer in layers for t in (layer.lora_A["a"], layer.lora_B["a"])]
        rows = tiny_inputs(p.model, batch=4, length=9, seed=1)["input_ids"].tolist()
        feats = [{"input_ids": r, "labels": r, "task": 0} for r in rows]
        history = fit(lab, params, feats, use="a", label="a", steps=4, lr=0.05, batch_size=4, seed=0,
                      warmup=0.0, progress=False)
        assert history.loss.iloc[-1] < history.loss.iloc[0]
    else:
        a = lab.new_adapter("a", r=4, targets="all-linear", init="random", seed=0)
    return full, p, lab, a


@pytest.mark.parametrize(("name", "attention"), CASES)
def test_recovered_delta_is_the_pruned_delta_on_kept_indices_and_zero_elsewhere(name, attention):
    full, p, lab, a = _pruned_lab_and_adapter(name, attention)
    r = recover(a, p.map, base_fingerprint=full.fingerprint)
    assert r.lineage["method"] == "loram-recover" and r.lineage["loram"]["source"] == "a"
    shapes = Workbench(full.model, None).shapes("all-linear")
    for module in a.modules:
        layer = p.map.layers[int(module.split(".")[2])]
        rows, cols = torch.arange(shapes[module][0]), torch.arange(shapes[module][1])
        kind = module.rsplit(".", 1)[-1]
        rows = {"q_proj": layer.q_channels, "k_proj": layer.kv_channels, "v_proj": layer.kv_channels,
                "gate_proj": layer.neuron_index, "up_proj": layer.neuron_index}.get(kind, rows)
        cols = {"o_proj": layer.q_channels, "down_proj": layer.neuron_index}.get(kind, cols)
        big, small = r.delta(module), a.delta(module)
        assert big.shape == shapes[module]
        torch.testing.assert_close(big[rows][:, cols], small, rtol=0, atol=0)
        mask = torch.zeros_like(big, dtype=torch.bool)
        mask[rows[:, None], cols[None, :]] = True
        assert not big[~mask].any()
    if attention == "kv":  # a pruned KV head takes its g query heads' channels with it
        m = p.map.layers[0]
        d, g = m.head_dim, m.n_heads // m.n_kv
        gone = ({0, 1} - set(m.kv)).pop()
        q = r.delta("model.layers.0.self_attn.q_proj")
        assert q[gone * g * d:(gone + 1) * g * d].abs().max() == 0
        assert r.delta("model.layers.0.self_attn.k_proj")[gone * d:(gone + 1) * d].abs().max() == 0


@pytest.mark.parametrize(("name", "attention"), CASES)
def test_recovered_adapter_exports_to_peft_with_the_labs_logits(name, attention, tmp_path):
    full, p, _, a = _pruned_lab_and_adapter(name, attention, train=True)
    r = recover(a, p.map, name="rec", base_fingerprint=full.fingerprint)
    lab = Workbench(full.model, None, name=name, fingerprint=full.fingerprint)
    lab.add_adapter(r)
    lab.use("rec")
    x = tiny_inputs(full.model)
    ours = output_of(lab.run(x)[0])
    lab.use(None)
    base = output_of(lab.run(x)[0])
    assert (ours - base).abs().max() > 1e-4, "the recovered adapter must change the full model's output"
    lab.save_adapter("rec", tmp_path / "rec")
    peft_model = PeftModel.from_pretrained(zoo.load(name).model, tmp_path / "rec").eval()
    with torch.no_grad():
        theirs = output_of(peft_model(**x))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    lab.detach()


def test_normal_fill_only_touches_pruned_a_columns_and_bad_inputs_are_refused():
    full, p, _, a = _pruned_lab_and_adapter("tiny-llama", "query")
    zero, normal = recover(a, p.map), recover(a, p.map, fill="normal", seed=1)
    m = p.map.layers[0]
    path = "model.layers.0.mlp.down_proj"
    keep = m.neuron_index
    assert torch.equal(zero.modules[path].A[:, keep], normal.modules[path].A[:, keep])
    assert normal.modules[path].A.abs().sum() > zero.modules[path].A.abs().sum()
    path = "model.layers.0.mlp.up_proj"
    assert torch.equal(zero.modules[path].B, normal.modules[path].B)  # B rows stay zero
    with pytest.raises(WorkbenchError, match="fill"):
        recover(a, p.map, fill="ones")
    other = prune(full.model, 0.25, method="l2")
    with pytest.raises(WorkbenchError, match="not trained on this pruned model"):
        recover(a, other.map)


def test_llm_pruner_recovery_trains_through_train_lora_and_loram_carries_it_to_the_full_model():
    from tests.tasks.helpers import build_tokenizer
    from workbench.tasks import Example, Task

    full = zoo.load("tiny-llama")
    tok = build_tokenizer()
    calib = tok(["what is one plus two ? three", "what is two plus two ? four"], return_tensors="pt",
                padding=True)
    p = prune(full.model, 0.5, method="taylor", batch=dict(calib), parts=("attention", "mlp"))
    ex = [Example("what is one plus two ?", "three", ("three", "four")),
          Example("what is two plus two ?", "four", ("three", "four")),
          Example("what is two plus one ?", "three", ("three", "four"))]
    task = Task("sums", "toy sums", "accuracy", ex[:2], ex[2:], max_length=40)
    small = Workbench(p.model, tok, name="tiny-llama-pruned")
    a, history = small.train_lora("rec", task, r=2, steps=3, batch_size=2, lr=1e-2, progress=False)
    assert len(history) and a.base_fingerprint == small.fingerprint
    r = recover(a, p.map, base_fingerprint=full.fingerprint)
    lab = Workbench(full.model, tok, name="tiny-llama", fingerprint=full.fingerprint)
    lab.add_adapter(r)
    assert set(r.modules) == set(a.modules)
    for module, f in r.modules.items():
        assert (f.out_features, f.in_features) == lab.shapes("all-linear")[module]
    lab.use(r.name)
    x = tiny_inputs(full.model)
    assert torch.isfinite(output_of(lab.run(x)[0])).all()
    lab.detach()
