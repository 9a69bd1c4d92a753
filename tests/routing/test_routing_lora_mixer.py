"""LoRA-Mixer (⚠ reconstructed): straight-through hard top-k gate over attention LoRA experts, RSL loss."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing import aux_loss, routing_context
from workbench.routing.losses import load_balance
from workbench.routing.mechanisms.lora_mixer import LoRAMixer, specialization

IN, OUT = 16, 12


def make(experts: int = 4, k: int = 2, seed: int = 0, **params) -> LoRAMixer:
    params = {"r": 4, "dropout": 0.0} | params
    return LoRAMixer(IN, OUT, generator=torch.Generator().manual_seed(seed), experts=experts, k=k, **params)


def inputs(seed: int = 1, shape=(2, 5)) -> torch.Tensor:
    return torch.randn(*shape, IN, generator=torch.Generator().manual_seed(seed))


def test_forward_uses_the_hard_gate_and_backward_the_soft_probabilities():
    router, x = make(init="random"), inputs()
    logits, p, gate, idx = router.gates(x)
    hard = torch.zeros_like(p).scatter(-1, idx, p.gather(-1, idx))
    torch.testing.assert_close(gate, hard / hard.sum(-1, keepdim=True))
    assert ((gate != 0).sum(-1) == 2).all()
    torch.testing.assert_close(gate.sum(-1), torch.ones(2, 5))
    c = torch.randn(gate.shape, generator=torch.Generator().manual_seed(3))
    (gate * c).sum().backward()
    st_grad, router.router.grad = router.router.grad.clone(), None
    (torch.softmax(x @ router.router.T, -1) * c).sum().backward()
    torch.testing.assert_close(st_grad, router.router.grad)
    assert st_grad.abs().sum() > 0


def test_the_update_is_the_gated_sum_of_experts():
    router, x = make(init="random").eval(), inputs()
    records = []
    router.hook_route.register_forward_hook(lambda m, i, o: records.append(o))
    out = router(x, None)
    rec = records[0]
    assert rec.shape == (2, 5, 4) and rec.selected.shape == (2, 5, 2) and (rec.active.sum(-1) == 2).all()
    expected = sum(rec.weights[..., e, None] * router.scaling[e] * x @ (router.B[e] @ router.A[e]).T
                   for e in range(4))
    torch.testing.assert_close(out, expected)


def test_zero_B_gives_the_base_and_k_too_large_is_an_error():
    assert torch.equal(make(init="lora")(inputs(), None), torch.zeros(2, 5, OUT))
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    routed = lab.add_router("mx", "lora-mixer", experts=4, k=2, r=4)
    assert sorted({p.rsplit(".", 1)[-1] for p in routed.modules}) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    lab.use("mx")
    out, cache = lab.run(x, record="*.hook_route")
    torch.testing.assert_close(output_of(out), base)
    assert len(cache) == 8 and all((rec.active.sum(-1) == 2).all() for rec in cache.values())
    with pytest.raises(WorkbenchError, match="k <= 4"):
        make(k=5)


def test_specialization_term_is_negative_when_sharp_and_distinct_zero_when_identical():
    sharp = torch.eye(4).repeat(3, 1)  # every token one-hot, all experts used equally
    assert specialization([{"probs": sharp}]).item() == pytest.approx(-math.log(4), abs=1e-6)
    same = torch.softmax(torch.randn(4), -1).expand(12, 4)
    assert specialization([{"probs": same}]).item() == pytest.approx(0.0, abs=1e-6)
    random = torch.softmax(torch.randn(12, 4, generator=torch.Generator().manual_seed(0)) * 3, -1)
    assert specialization([{"probs": random}]).item() < 0
    masked = specialization([{"probs": torch.cat([same, sharp]), "mask": torch.arange(24) < 12}])
    assert masked.item() == pytest.approx(0.0, abs=1e-6)  # only the identical rows count


def test_rsl_is_the_configured_sum_of_balance_and_specialization():
    router, x = make(init="random", lambda_bal=0.3, lambda_spec=0.7).train(), inputs()
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[1, -2:] = 0
    with routing_context(attention_mask=mask):
        router(x, None)
    total, parts = aux_loss(router)
    assert set(parts) == {"/load_balance", "/lora_mixer_specialization"}
    logits = x @ router.router.T
    keep = mask.reshape(-1).bool()
    expected = (0.3 * load_balance([{"logits": logits.reshape(-1, 4)[keep], "k": 2}])
                + 0.7 * specialization([{"probs": torch.softmax(logits, -1).reshape(-1, 4)[keep]}]))
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    make(lambda_bal=0.0, lambda_spec=0.0).train()(x, None)  # both terms can be switched off
    router.eval()(x, None)
    assert aux_loss(router) == (None, {})


def test_training_reaches_the_router_and_the_experts():
    from workbench.training import fit

    lab = tiny_lab()
    routed = lab.add_router("mx", "lora-mixer", experts=4, k=2, r=4, init="random")
    before = {k: v.clone() for k, v in routed.state_dict().items()}
    feats = [{"input_ids": [1, 2, 3, 4], "labels": [-100, 2, 3, 4], "task": 0}] * 4
    history = fit(lab, routed.trainable(), feats, use="mx", label="mx", steps=2, lr=1e-2, batch_size=2,
                  seed=0, progress=False)
    assert {"aux/mx/load_balance", "aux/mx/lora_mixer_specialization"} <= set(history.columns)
    after = routed.state_dict()
    changed = {k.rsplit(".", 1)[-1] for k in before if not torch.equal(before[k], after[k])}
    assert {"router", "A", "B"} <= changed


def test_a_frozen_bank_routes_over_the_labs_adapters():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    lab.new_adapter("a", r=2, alpha=4, init="random", seed=1)
    lab.new_adapter("b", r=4, alpha=4, init="random", seed=2)
    routed = lab.add_router("mx", "lora-mixer", bank=["a", "b"], k=2)
    assert [id(p) for p in routed.trainable()] == [id(r.router) for r in routed.modules.values()]
    with torch.no_grad():
        for r in routed.modules.values():
            r.router.zero_()  # uniform: each adapter at weight 1/2
    with lab.using({"a": 0.5, "b": 0.5}):
        expected = output_of(lab.model(**x))
    with lab.using("mx"):
        torch.testing.assert_close(output_of(lab.model(**x)), expected)
    with pytest.raises(WorkbenchError, match="not in this lab"):
        lab.add_router("mx2", "lora-mixer", bank=["a", "nope"])
    lab.new_adapter("q_only", r=2, targets="q_proj")
    with pytest.raises(WorkbenchError, match="no factors"):
        lab.add_router("mx2", "lora-mixer", bank=["a", "q_only"])


def test_dropout_hits_the_lora_input_in_training_only_and_the_record_holds_no_graph():
    router, plain = make(init="random", dropout=0.5), make(init="random")
    x = inputs()
    records = []
    router.hook_route.register_forward_hook(lambda m, i, o: records.append(o))
    torch.testing.assert_close(router.eval()(x, None), plain.eval()(x, None))
    assert not records[0].weights.requires_grad  # the gate is recorded detached
    torch.manual_seed(0)
    assert not torch.allclose(router.train()(x, None), plain(x, None))


def test_each_expert_scale_is_alpha_over_r_by_hand():
    router, x = make(init="random", r=4, alpha=8.0).eval(), inputs()  # s_e = 8/4 = 2
    records = []
    router.hook_route.register_forward_hook(lambda m, i, o: records.append(o))
    out = router(x, None)
    w = records[0].weights
    expected = sum(w[..., e, None] * 2.0 * x @ (router.B[e] @ router.A[e]).T for e in range(4))
    torch.testing.assert_close(out, expected)
