"""Our adapter layer against real peft: same factors, same outputs; PEFT files both ways."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from tests.conftest import TINY, output_of, tiny_inputs, tiny_lab
from workbench import Workbench, zoo
from workbench.adapters import new_adapter

TARGETS = {"tiny-llama": "attention", "tiny-gemma3": "all-linear", "tiny-gpt2": "all-linear",
           "tiny-bert": "attention"}



def _ranks(lab: Workbench, targets) -> dict[str, int]:
    """Different ranks per module (2, 3, 4 ...) so rank_pattern is exercised."""
    return {p: 2 + i % 3 for i, p in enumerate(lab.shapes(targets))}


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("scaling", ["standard", "rslora"])
def test_ours_to_peft_same_outputs(name, scaling, tmp_path):
    lab = tiny_lab(name)
    targets = TARGETS[name]
    a = new_adapter("a", lab.shapes(targets), r=_ranks(lab, targets), init="random",
                    scaling=scaling, seed=2)
    for i, f in enumerate(a.modules.values()):  # alphas differ per module: alpha_pattern
        f.alpha = 3.0 + i % 2
    lab.add_adapter(a)
    lab.use("a")
    x = tiny_inputs(lab.model)
    ours = output_of(lab.run(x)[0])
    lab.save_adapter("a", tmp_path / "a")

    peft_model = PeftModel.from_pretrained(zoo.load(name).model, tmp_path / "a").eval()
    with torch.no_grad():
        theirs = output_of(peft_model(**x))
    base = output_of(zoo.load(name).model(**x))
    assert (ours - base).abs().max() > 1e-3, "the adapter must change the output for this to test anything"
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TINY)
def test_peft_to_ours_same_outputs(name, tmp_path):
    base = zoo.load(name).model
    cfg = LoraConfig(r=4, lora_alpha=7, target_modules=_peft_targets(name), init_lora_weights=False,
                     rank_pattern={"layers.1.self_attn.q_proj": 2, "h.1.attn.c_attn": 3},
                     alpha_pattern={"layers.0.self_attn.v_proj": 11}, use_rslora=True,
                     fan_in_fan_out=name == "tiny-gpt2")
    torch.manual_seed(0)
    peft_model = get_peft_model(base, cfg).eval()
    peft_model.save_pretrained(tmp_path / "p")
    x = tiny_inputs(base)
    with torch.no_grad():
        theirs = output_of(peft_model(**x))

    lab = tiny_lab(name)
    a = lab.load_adapter(tmp_path / "p", name="p")
    assert a.scaling == "rslora"
    if name in ("tiny-llama", "tiny-gemma3"):
        assert a.modules["model.layers.1.self_attn.q_proj"].r == 2
        assert a.modules["model.layers.0.self_attn.v_proj"].alpha == 11
    lab.use("p")
    torch.testing.assert_close(output_of(lab.run(x)[0]), theirs, atol=1e-5, rtol=0)


def _peft_targets(name: str) -> list[str]:
    return {"tiny-llama": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
            "tiny-gemma3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "tiny-gpt2": ["c_attn", "c_fc"],
            "tiny-bert": ["query", "value", "dense"]}[name]


def test_round_trip_keeps_factors_and_lineage(tmp_path):
    lab = tiny_lab("tiny-llama")
    a = lab.new_adapter("a", r=3, targets="all-linear", init="random", seed=3)
    a.metadata["note"] = "hello"
    lab.save_adapter("a", tmp_path / "a")
    lab2 = tiny_lab("tiny-llama")
    b = lab2.load_adapter(tmp_path / "a")
    assert b.name == "a" and b.metadata == {"note": "hello"}
    assert b.lineage == a.lineage and b.base_fingerprint == lab.fingerprint
    for m, f in a.modules.items():
        assert torch.equal(f.A, b.modules[m].A) and torch.equal(f.B, b.modules[m].B)


@pytest.mark.slow
def test_smollm2_equals_peft(smollm2, tmp_path):
    """The real model: our logits equal peft's to 1e-5 with the same factors, both directions."""
    lab = Workbench(smollm2.model, smollm2.tokenizer, name="smollm2-135m",
                    fingerprint=smollm2.fingerprint)
    try:
        lab.new_adapter("a", r=8, targets="attention", init="random", seed=0)
        lab.use("a")
        x = lab.encode(["The capital of France is", "def add(a, b):"])
        ours = lab.run(x)[0].logits
        lab.save_adapter("a", tmp_path / "a")
        lab.use(None)
        base = lab.run(x)[0].logits
        assert (ours - base).abs().max() > 1e-2
        lab.detach()  # give peft the plain model
        peft_model = PeftModel.from_pretrained(smollm2.model, tmp_path / "a").eval()
        with torch.no_grad():
            theirs = peft_model(**x).logits
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
        peft_model.save_pretrained(tmp_path / "back")
        peft_model.unload()  # restores the plain modules
        lab2 = Workbench(smollm2.model, smollm2.tokenizer, fingerprint=smollm2.fingerprint)
        lab2.load_adapter(tmp_path / "back", name="back")
        lab2.use("back")
        torch.testing.assert_close(lab2.run(x)[0].logits, theirs, atol=1e-5, rtol=0)
        lab2.detach()
    finally:
        lab.detach()
