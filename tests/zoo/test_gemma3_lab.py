"""The whole lab on a tiny Gemma 3 (sliding + full attention, one KV head, q/k norms, tied embeddings):
adapters, folding into the base, merging, geometry, routers and training work as on the Llama family.
PEFT equivalence runs on it through ``tests.conftest.TINY``."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from tests.routing.test_routing_all import _lab_with
from workbench.analysis.angles import angles
from workbench.routing import ROUTERS, routing_context
from workbench.training.fitting import fit

NAME = "tiny-gemma3"


@pytest.fixture
def lab():
    return tiny_lab(NAME)


def test_all_linear_targets_every_gemma_projection(lab):
    shapes = lab.shapes("all-linear")
    suffixes = {path.rsplit(".", 1)[-1] for path in shapes}
    assert suffixes == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert "lm_head" not in shapes  # tied to the embedding: never a target
    assert shapes["model.layers.0.self_attn.k_proj"] == (16, 64)  # one key/value head of width 16


def test_adapter_changes_the_output_and_folds_in_exactly(lab):
    x = tiny_inputs(lab.model)
    with lab.using(None):
        base = output_of(lab.model(**x))
    lab.new_adapter("a", r=4, targets="all-linear", init="random", seed=1)
    lab.use("a")
    adapted = output_of(lab.model(**x))
    assert not torch.allclose(adapted, base)
    before = {k: v.clone() for k, v in lab.model.state_dict().items() if "base_layer" in k}
    lab.use(None)
    lab.merge_into_base("a")
    torch.testing.assert_close(output_of(lab.model(**x)), adapted, rtol=1e-5, atol=1e-5)
    lab.unmerge("a")
    after = {k: v for k, v in lab.model.state_dict().items() if "base_layer" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "svd"])
def test_merges_and_angles_on_gemma(lab, method):
    for i in range(3):
        lab.new_adapter(f"t{i}", r=4, targets="all-linear", init="random", seed=i)
    merged = lab.merge(["t0", "t1", "t2"], method, name="m")
    assert set(merged.modules) == set(lab.adapters["t0"].modules)
    table = angles([lab.adapters[n] for n in ("t0", "t1", "t2")])
    assert len(table) and table.select_dtypes("number").notna().all().all()


@pytest.mark.parametrize("name", [n for n in ROUTERS.names() if n != "prompt-scale"])
def test_every_router_starts_as_the_base_on_gemma(name):
    lab, x, base, case = _lab_with(name, NAME)
    lab.use("r")
    with routing_context(**case.context(x["input_ids"])):
        out, cache = lab.run(x, record="*.hook_route")
    if case.zero_at_init:
        torch.testing.assert_close(output_of(out), base)
    assert len(cache) == len(lab.routers["r"].modules) > 0


def test_the_one_loop_trains_a_lora_on_gemma_and_nothing_else(lab):
    lab.new_adapter("a", r=4, targets="all-linear", seed=0)
    layers = [layer for layer in lab.layers.values() if "a" in layer.names]
    params = [p for layer in layers for p in (layer.lora_A["a"], layer.lora_B["a"])]
    frozen = {n: p.clone() for n, p in lab.model.named_parameters() if "lora" not in n}
    ids = tiny_inputs(lab.model, batch=4, length=9, seed=1)["input_ids"].tolist()
    features = [{"input_ids": row, "labels": row, "task": 0} for row in ids]
    history = fit(lab, params, features, use="a", label="a", steps=6, lr=0.05, batch_size=4, seed=0,
                  warmup=0.0, progress=False)
    assert history.loss.iloc[-1] < history.loss.iloc[0]
    assert all(torch.equal(p, frozen[n]) for n, p in lab.model.named_parameters() if n in frozen)
    assert any(layer.lora_B["a"].abs().sum() > 0 for layer in layers)
