"""TARA: a bank of the lab's adapters, each masked to its own tokens on key/value projections."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.adapters import LoraFactors
from workbench.errors import WorkbenchError
from workbench.routing import aux_loss, routing_context
from workbench.routing.mechanisms.tara import alignment_loss


def bank_lab(targets="attention", **params):
    lab = tiny_lab()
    lab.new_adapter("dog", r=2, init="random", targets="attention", seed=1)
    lab.new_adapter("cat", r=3, init="random", targets="attention", seed=2)
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    lab.add_router("tara", "tara", targets=targets, bank=["dog", "cat"], **params)
    return lab, x, base


def masks(x, dog, cat):
    shape = x["input_ids"].shape
    return {"token_masks": {"dog": torch.full(shape, float(dog)), "cat": torch.full(shape, float(cat))}}


def test_all_ones_is_the_plain_sum_and_zeros_the_base():
    lab, x, base = bank_lab(kv_only=False)
    with lab.using(["dog", "cat"]):
        both = output_of(lab.model(**x))
    lab.use("tara")
    with routing_context(**masks(x, 1, 1)):
        torch.testing.assert_close(output_of(lab.model(**x)), both, rtol=0, atol=0)
    with routing_context(**masks(x, 0, 0)):
        torch.testing.assert_close(output_of(lab.model(**x)), base, rtol=0, atol=0)
    with lab.using("dog"):
        dog = output_of(lab.model(**x))
    with routing_context(**masks(x, 1, 0)):
        torch.testing.assert_close(output_of(lab.model(**x)), dog, rtol=0, atol=0)


def on_q_and_o(adapter, name):
    """A copy of ``adapter`` restricted to the q and o projections."""
    modules = {p: LoraFactors(f.A.detach().clone(), f.B.detach().clone(), f.alpha)
               for p, f in adapter.modules.items() if p.endswith(("q_proj", "o_proj"))}
    return replace(adapter, name=name, modules=modules, base_fingerprint=None)


def test_kv_only_ignores_masks_on_q_and_o():
    lab, x, base = bank_lab()  # kv_only=True by default, on q, k, v, o
    for n in ("dog", "cat"):
        lab.add_adapter(on_q_and_o(lab.adapters[n], f"{n}_qo"))
    with lab.using(["dog_qo", "cat_qo"]):
        plain_qo = output_of(lab.model(**x))
    lab.use("tara")
    with routing_context(**masks(x, 0, 0)):  # k, v masked off; q, o unmasked
        torch.testing.assert_close(output_of(lab.model(**x)), plain_qo, rtol=0, atol=0)
    lab.remove_router("tara")
    lab.add_router("tara", "tara", targets=["k_proj", "v_proj"], bank=["dog", "cat"])
    lab.use("tara")
    with routing_context(**masks(x, 0, 0)):
        torch.testing.assert_close(output_of(lab.model(**x)), base, rtol=0, atol=0)


def test_masks_act_per_token_and_the_record_shows_them():
    lab, x, _ = bank_lab(targets=["k_proj"])
    lab.use("tara")
    dog = torch.zeros(3, 7)
    dog[:, 2] = 1
    ctx = {"token_masks": {"dog": dog, "cat": torch.zeros(3, 7)}}
    with routing_context(**ctx):
        out, cache = lab.run(x, record=["*.hook_route", "*.hook_delta"])
    for key, rec in cache.items():
        if key.endswith("hook_route"):
            assert rec.shape == (3, 7, 2) and torch.equal(rec.weights[..., 0], dog)
            assert not rec.active[..., 1].any()
        else:  # the update is zero except at the dog's token
            assert (rec[:, [0, 1, 3, 4, 5, 6]] == 0).all() and (rec[:, 2] != 0).any()


def test_bad_masks_and_banks_are_clear_errors():
    lab, x, _ = bank_lab(targets=["k_proj"])
    lab.use("tara")
    with pytest.raises(WorkbenchError, match=r"\(3, 6\).*\(3, 7\)"):
        with routing_context(token_masks={"dog": torch.ones(3, 6), "cat": torch.ones(3, 7)}):
            lab.model(**x)
    with pytest.raises(WorkbenchError, match=r"no mask for \['cat'\]"):
        with routing_context(token_masks={"dog": torch.ones(3, 7)}):
            lab.model(**x)
    with pytest.raises(WorkbenchError, match="token_masks"):
        lab.model(**x)
    with pytest.raises(WorkbenchError, match="unknown"):
        lab.add_router("t2", "tara", bank=["dog", "bird"])
    with pytest.raises(WorkbenchError, match="bank"):
        lab.add_router("t2", "tara", bank=["dog"], train=["cat"])


def test_alignment_loss_is_the_code_version():
    base = torch.nn.Linear(4, 3, bias=False)
    delta = torch.nn.Linear(4, 3, bias=False)
    x = torch.randn(1, 4, 4)
    rare, cls = torch.tensor([[0, 1, 0, 0]]), torch.tensor([[0, 0, 1, 0]])
    want = ((base(x[0, 1]) + delta(x[0, 1])) - base(x[0, 2])).abs().mean()
    torch.testing.assert_close(alignment_loss(base, delta, x, rare, cls), want)
    with pytest.raises(WorkbenchError, match="counts"):
        alignment_loss(base, delta, x, rare, torch.tensor([[0, 0, 1, 1]]))


def test_training_one_concept_under_its_mask_with_alignment():
    lab, x, _ = bank_lab(targets="attention", train=["dog"], align=1.0)
    routed = lab.routers["tara"]
    params = routed.trainable()
    dog_factors = [p for layer in lab.layers.values() for p in (layer.lora_A["dog"], layer.lora_B["dog"])]
    assert {id(p) for p in params} == {id(p) for p in dog_factors}  # the lab adapter's own factors
    dog = torch.zeros(3, 7)
    dog[:, 2] = 1
    cls = torch.zeros(3, 7)
    cls[:, 4] = 1
    for p in params:
        p.requires_grad_(True)
    lab.use("tara")
    lab.model.train()
    with routing_context(token_masks={"dog": dog, "cat": torch.zeros(3, 7)}, class_masks={"dog": cls}):
        loss = output_of(lab.model(**x)).square().mean()
    extra, parts = aux_loss(lab.model)
    assert set(parts) == {"tara/tara_alignment"} and extra.requires_grad
    (loss + extra).backward()
    assert all(p.grad is not None for p in params)
    assert lab.layers[next(iter(lab.layers))].lora_A["cat"].grad is None  # the rest of the bank is frozen


def test_alignment_is_the_mean_over_key_projections_only_and_masks_pick_each_adapters_tokens():
    lab, x, _ = bank_lab(targets="attention", align=1.0)
    lab.use("tara")
    lab.model.train()
    dog, cat, cls = torch.zeros(3, 7), torch.zeros(3, 7), torch.zeros(3, 7)
    dog[:, 2], cat[:, 3], cls[:, 5] = 1, 1, 1
    inputs, handles = {}, []
    for path, layer in lab.layers.items():
        handles.append(layer.register_forward_hook(lambda m, a, o, p=path: inputs.__setitem__(p, (a[0], o))))
    with routing_context(token_masks={"dog": dog, "cat": cat}, class_masks={"dog": cls}):
        lab.model(**x)
    for h in handles:
        h.remove()
    _, parts = aux_loss(lab.model)
    keys = [p for p in inputs if p.endswith("k_proj")]
    assert len(keys) == 2 and len(inputs) == 8
    with torch.no_grad():
        want = torch.stack([alignment_loss(lab.layers[p].base_layer,
                                           lambda e, p=p: lab.layers[p].update("dog", e),
                                           inputs[p][0], dog, cls) for p in keys]).mean()
        assert parts["tara/tara_alignment"] == pytest.approx(want.item(), rel=1e-5)
        for p, (xin, out) in inputs.items():  # k/v: Σ_c m_c ⊙ Δ_c; q/o: the plain sum
            layer = lab.layers[p]
            dd, dc = layer.update("dog", xin), layer.update("cat", xin)
            kv = p.endswith(("k_proj", "v_proj"))
            delta = dd * dog[..., None] + dc * cat[..., None] if kv else dd + dc
            torch.testing.assert_close(out, layer.base_layer(xin) + delta)


def test_the_record_is_each_adapters_mask_where_masked_and_one_where_not():
    lab, x, _ = bank_lab(targets=["q_proj", "k_proj"])  # kv_only: k masked, q the plain sum
    lab.use("tara")
    dog, cat = torch.zeros(3, 7), torch.zeros(3, 7)
    dog[:, 2], cat[:, 4] = 1, 1
    with routing_context(token_masks={"dog": dog, "cat": cat}):
        _, cache = lab.run(x, record="*.hook_route")
    assert len(cache) == 4  # 2 layers × q, k
    for key, rec in cache.items():
        want = torch.stack([dog, cat], -1) if ".k_proj." in key else torch.ones(3, 7, 2)
        assert torch.equal(rec.weights, want), key
