"""freeze: a bank router's average gate weights over a prompt set become one static adapter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing.freeze import freeze
from workbench.routing.mechanisms.meteora import MeteoRA


def bank_lab():
    lab = tiny_lab()
    for i, (name, r) in enumerate([("a", 2), ("b", 3)]):
        adapter = lab.new_adapter(name, r=r, alpha=4.0 + i, init="random", targets="attention", seed=i)
        for f in adapter.modules.values():
            f.B.data.mul_(30)
    lab.add_router("m", "meteora", targets=MeteoRA.targets_for(lab, bank=["a", "b"]), bank=["a", "b"], k=2)
    return lab


def force_gate(lab, j: int) -> None:
    for r in lab.routers["m"].modules.values():
        r.gate_logits = lambda x, r=r: 1e4 * F.one_hot(torch.full(x.shape[:-1], j), len(r.bank)).float()


def test_a_one_hot_gate_freezes_to_that_adapter():
    lab = bank_lab()
    force_gate(lab, 1)
    x = tiny_inputs(lab.model)
    adapter, report = freeze(lab, "m", x)
    assert adapter.name == "m_frozen" and "m_frozen" in lab.adapters
    assert adapter.lineage["method"] == "freeze" and adapter.lineage["router"] == "m"
    for path, f in adapter.modules.items():
        b = lab.adapters["b"]
        assert f.r == 3 and adapter.scale(path) == 1.0  # only b is kept; alpha = rank
        torch.testing.assert_close(adapter.delta(path), b.delta(path))
    with lab.using("b"):
        want = output_of(lab.run(x)[0])
    with lab.using("m_frozen"):
        torch.testing.assert_close(output_of(lab.run(x)[0]), want, atol=1e-5, rtol=0)
    assert report["rel_logit_error"] < 1e-6 and report["kl"] < 1e-6 and report["top1_agreement"] == 1.0
    assert report["tokens"] == int(x["attention_mask"].sum())
    w = report["weights"]
    assert set(w.columns) == {"module", "adapter", "weight"} and len(w) == 16
    assert w.set_index(["module", "adapter"])["weight"].xs("b", level="adapter").eq(1.0).all()


def test_a_mixed_gate_is_an_exact_weighted_merge_with_a_cost():
    lab = bank_lab()
    x = tiny_inputs(lab.model)
    adapter, report = freeze(lab, "m", x, name="static")
    weights = report["weights"].pivot(index="module", columns="adapter", values="weight")
    assert ((weights > 0.05) & (weights < 0.95)).all().all()  # really mixed
    for path, f in adapter.modules.items():
        assert f.r == 5
        want = sum(weights.loc[path, n] * lab.adapters[n].delta(path) for n in ("a", "b"))
        torch.testing.assert_close(adapter.delta(path), want, atol=1e-6, rtol=1e-5)
    assert report["rel_logit_error"] > 1e-4 and report["kl"] > 0 and 0 < report["top1_agreement"] <= 1


def test_weights_average_the_real_tokens_only():
    lab = bank_lab()
    x = tiny_inputs(lab.model)
    lab.use("m")
    _, cache = lab.run(x, record="*.hook_route")
    lab.use(None)
    _, report = freeze(lab, "m", x)
    rec = cache["model.layers.0.self_attn.q_proj.routes.m.hook_route"]
    keep = x["attention_mask"].bool()
    want = rec.weights[keep].mean(0)
    got = report["weights"].query("module == 'model.layers.0.self_attn.q_proj'")["weight"].tolist()
    torch.testing.assert_close(torch.tensor(got), want)


def test_only_bank_routers_freeze():
    lab = tiny_lab()
    lab.add_router("sm", "smora", r=4, k=2, targets="q_proj")
    x = tiny_inputs(lab.model)
    with pytest.raises(WorkbenchError, match="bank of whole adapters"):
        freeze(lab, "sm", x)
    with pytest.raises(WorkbenchError, match="no router 'zz'"):
        freeze(lab, "zz", x)
    assert not lab.adapters
