"""Mixed batches through the factor pool (workbench.adapters.pool / segments): every row equals that
row run alone with its adapter, and peft's ``adapter_names`` on the same adapters, in prefill and in
generation with a KV cache, for one or many adapters, mixed ranks and base rows."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from tests.conftest import assert_rows_generate_alone, output_of, tiny_inputs, tiny_lab
from workbench import zoo
from workbench.adapters import new_adapter, segments

RANKS = (2, 4, 16)  # the 8/16/64 mix of serving benchmarks, scaled to hidden 64


def _lab(n: int, ranks=RANKS, name: str = "tiny-llama"):
    lab = tiny_lab(name)
    for i in range(n):
        lab.new_adapter(f"a{i}", r=ranks[i % len(ranks)], targets="all-linear", init="random", seed=i)
    return lab


def _paths(lab) -> set[str]:
    return {layer.mixed_path for layer in lab.layers.values() if layer.mixed_path}


def _alone(lab, x, rows) -> torch.Tensor:
    outs = []
    for i, r in enumerate(rows):
        with lab.using(r):
            outs.append(output_of(lab.run({k: v[i:i + 1] for k, v in x.items()})[0]))
    return torch.cat(outs)


@pytest.fixture(params=["auto", "padded", "segments"])
def mode(request, monkeypatch):
    """Both kernels of the pool path: chosen per batch (auto) or forced one way."""
    if request.param == "padded":
        monkeypatch.setattr(segments, "PAD_ROWS", 10**9)
    elif request.param == "segments":
        monkeypatch.setattr(segments, "PAD_ROWS", 0)
        monkeypatch.setattr(segments, "PAD_WASTE", 0.0)
    return request.param


@pytest.mark.parametrize("rows", [
    ["a0"] * 4,  # one adapter
    ["a0", None, "a1", "a0", "a2", None],  # mixed ranks and base rows
    ["a2", "a0", "a3", "a1", "a5", "a4", "a2", "a2", "a2"],  # many adapters, uneven segments
    [None, None],  # base only
])
def test_prefill_equals_each_row_alone(rows, mode):
    lab = _lab(6)
    x = tiny_inputs(lab.model, batch=len(rows), length=9)
    with lab.using(rows=rows):
        mixed = output_of(lab.run(x)[0])
    if any(rows):
        assert _paths(lab) == {"pool"}
        with lab.using(None):
            base = output_of(lab.run(x)[0])
        assert (mixed - base).abs().amax() > 1e-3, "the adapters must change the output"
    torch.testing.assert_close(mixed, _alone(lab, x, rows), atol=1e-5, rtol=0)


def test_subset_of_the_pool_and_changes_to_it():
    """Adapters present in a non-contiguous run of slots; the pool follows adds, removes and edits."""
    lab = _lab(5)
    x = tiny_inputs(lab.model, batch=3, length=5)
    rows = ["a4", "a1", None]
    with lab.using(rows=rows):
        lab.run(x)  # builds the pools
    lab.remove_adapter("a1")  # a4 moves into a1's slot
    lab.new_adapter("a9", r=4, targets="all-linear", init="random", seed=9)
    for layer in lab.layers.values():  # an in-place edit, as an optimizer step makes
        with torch.no_grad():
            layer.lora_B["a4"].mul_(3.0)
    rows = ["a4", "a9", None]
    with lab.using(rows=rows):
        mixed = output_of(lab.run(x)[0])
    assert _paths(lab) == {"pool"}
    torch.testing.assert_close(mixed, _alone(lab, x, rows), atol=1e-5, rtol=0)


def test_generation_with_a_kv_cache_keeps_each_rows_adapter():
    lab = _lab(3)
    x = tiny_inputs(lab.model, batch=4, length=6)
    x["attention_mask"] = torch.ones_like(x["input_ids"])
    rows = ["a2", None, "a0", "a1"]
    kw = dict(max_new_tokens=5, do_sample=False, return_dict_in_generate=True, output_logits=True,
              pad_token_id=0)
    with lab.using(rows=rows), torch.no_grad():
        mixed = lab.model.generate(**x, **kw)
    assert _paths(lab) == {"pool"}
    assert_rows_generate_alone(lab, x, rows, mixed, **kw)


def test_equals_peft_adapter_names(tmp_path):
    lab = _lab(4)
    for n in lab.adapters:
        lab.save_adapter(n, tmp_path / n)
    peft_model = PeftModel.from_pretrained(zoo.load("tiny-llama").model, tmp_path / "a0", adapter_name="a0")
    for n in ["a1", "a2", "a3"]:
        peft_model.load_adapter(tmp_path / n, adapter_name=n)
    peft_model.eval()
    rows = ["a3", None, "a0", "a2", "a3", "a1"]
    x = tiny_inputs(lab.model, batch=len(rows), length=7)
    with lab.using(rows=rows):
        ours = output_of(lab.run(x)[0])
    with torch.no_grad():
        theirs = output_of(peft_model(**x, adapter_names=[r or "__base__" for r in rows]))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_gpt2_conv1d_rows():
    lab = _lab(3, name="tiny-gpt2")
    rows = ["a1", "a0", None, "a2"]
    x = tiny_inputs(lab.model, batch=4, length=5)
    with lab.using(rows=rows):
        mixed = output_of(lab.run(x)[0])
    assert _paths(lab) == {"pool"}
    torch.testing.assert_close(mixed, _alone(lab, x, rows), atol=1e-5, rtol=0)


def test_falls_back_to_the_loop_where_the_pool_cannot_serve():
    """DoRA and gradients to the factors take the per-adapter loop, say so, and stay exact."""
    lab = _lab(2)
    dora = new_adapter("d", lab.shapes("all-linear"), r=4, init="random", seed=7,
                       base_fingerprint=lab.fingerprint)
    g = torch.Generator().manual_seed(0)
    for f in dora.modules.values():
        f.magnitude = torch.rand(f.out_features, generator=g) + 0.5  # (out,)
    lab.add_adapter(dora)
    rows = ["d", "a1", None]
    x = tiny_inputs(lab.model, batch=3, length=5)
    with lab.using(rows=rows):
        mixed = output_of(lab.run(x)[0])
    assert all(p.startswith("loop: ") and "DoRA" in p for p in _paths(lab))
    torch.testing.assert_close(mixed, _alone(lab, x, rows), atol=1e-5, rtol=0)

    a = lab.adapters["a0"]
    params = [f.A for f in a.modules.values()] + [f.B for f in a.modules.values()]
    with lab.session(rows=["a0", "a1"], trainable=params):
        loss = output_of(lab.model(**tiny_inputs(lab.model, batch=2, length=5))).square().mean()
        loss.backward()
        assert all("needs gradients" in p for p in _paths(lab))
        assert all(p.grad is not None for p in params)
