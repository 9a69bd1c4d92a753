"""MixLoRA's other routings (MoE-PEFT): top-p ("mixlora-dynamic") and Switch top-1 with capacity."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_inputs, tiny_lab
from tests.routing.test_routing_mixlora import MLP, expert_output, inputs, record_of
from workbench.hooks import record
from workbench.routing import ROUTERS, aux_loss, routing_context
from workbench.routing.losses import AUX_LOSSES
from workbench.routing.mechanisms.mixlora import add_mixlora


def make(name: str, block, seed: int = 0, **params):
    params = {"experts": 4, "r": 4, "dropout": 0.0, "init": "random"} | params
    return ROUTERS.get(name).build(path="mlp", module=block, lab=None,
                                   generator=torch.Generator().manual_seed(seed), **params).eval()


def base_ffn(block, x):
    return block.down_proj(block.act_fn(block.gate_proj(x)) * block.up_proj(x))


# -- top-p ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("top_p", "kept"),
                         [(0.3, [0]), (0.7, [0, 1]), (0.85, [0, 1, 2]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_experts_up_to_and_including_the_one_that_crosses_p(top_p, kept):
    router = make("mixlora-dynamic", MLP(), top_p=top_p)
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])  # descending: experts 1, 3, 0, 2 (cum .5 .8 .95 1)
    idx, gates = router.select(probs, probs)
    order = [1, 3, 0, 2]
    assert sorted(i for i in idx[0].tolist() if i >= 0) == sorted(order[j] for j in kept)
    expected = torch.zeros(1, 4)
    for j in kept:
        expected[0, order[j]] = probs[0, order[j]]  # the raw softmax weight, not renormalised
    torch.testing.assert_close(gates, expected)


def test_top_p_at_an_exact_tie_keeps_the_expert_after_the_one_whose_mass_equals_p():
    """MoE-PEFT drops experts whose cumulative mass is > p except the first such: a cumulative mass equal
    to p is not a crossing, so the next expert is the crossing one and stays (binary-exact masses)."""
    router = make("mixlora-dynamic", MLP(), top_p=0.5)
    probs = torch.tensor([[0.25, 0.5, 0.125, 0.125]])  # descending: 1 (cum .5 = p), 0 (cum .75), 2, 3
    idx, gates = router.select(probs, probs)
    assert sorted(i for i in idx[0].tolist() if i >= 0) == [0, 1]
    torch.testing.assert_close(gates, torch.tensor([[0.25, 0.5, 0.0, 0.0]]))


def test_top_p_output_is_the_raw_probability_weighted_sum_of_the_kept_experts():
    block, x = MLP(), inputs()
    router = make("mixlora-dynamic", block, top_p=0.6, router_init_range=1.0)
    out, rec = record_of(router, x, block)
    kept = rec.weights != 0
    assert (kept.sum(-1) >= 1).all() and (kept.sum(-1) < 4).any()  # a variable number per token
    torch.testing.assert_close(rec.weights[kept], rec.scores[kept])  # gates = softmax values
    assert (rec.weights.sum(-1) >= 0.6 - 1e-6).all()
    expected = sum(rec.weights[..., e, None] * expert_output(router, block, e, x) for e in range(4))
    torch.testing.assert_close(out, expected)


def test_top_p_balance_loss_counts_every_kept_expert_as_the_code():
    lab = tiny_lab()
    batch = tiny_inputs(lab.model)
    lab.add_router("mix", "mixlora-dynamic", experts=4, r=4, top_p=0.5, router_init_range=1.0,
                   aux_coef=0.01, dropout=0.0, init="random")
    lab.use("mix")
    lab.model.train()
    with routing_context(attention_mask=batch["attention_mask"]), record(lab.model, "*.hook_route") as cache:
        lab.model(**batch)
    total, parts = aux_loss(lab.model)
    assert set(parts) == {"mix/dynamic_balance"}
    keep = batch["attention_mask"].reshape(-1).bool()
    probs = torch.cat([r.scores.reshape(-1, 4)[keep] for r in cache.values()])
    chosen = torch.cat([(r.weights != 0).reshape(-1, 4)[keep] for r in cache.values()]).float()
    expected = 0.01 * 4 * (chosen.mean(0) * probs.mean(0)).sum()
    assert total.item() == pytest.approx(expected.item(), rel=1e-4)


# -- switch -----------------------------------------------------------------------------------------
def test_switch_takes_the_top_expert_scaled_by_its_probability_until_capacity():
    block, x = MLP(), inputs(shape=(2, 7))
    router = make("mixlora-switch", block, capacity=2, router_init_range=1.0)
    out, rec = record_of(router, x, block)
    probs, best = rec.scores.max(-1)  # (B, T)
    expected = torch.empty_like(out)
    for b in range(2):
        seen = [0] * 4
        for t in range(7):
            e = int(best[b, t])
            seen[e] += 1
            if seen[e] <= 2:  # within capacity: p · FFN_e
                expected[b, t] = probs[b, t] * expert_output(router, block, e, x[b, t])
                assert rec.weights[b, t, e] == probs[b, t]
            else:  # overflow: the frozen FFN alone, and no expert recorded
                expected[b, t] = base_ffn(block, x[b, t])
                assert (rec.weights[b, t] == 0).all()
    assert (rec.weights == 0).all(-1).any()  # the case overflows somewhere
    torch.testing.assert_close(out, expected)


def test_switch_losses_are_the_balance_with_top1_and_the_router_z_loss():
    lab = tiny_lab()
    batch = tiny_inputs(lab.model)
    lab.add_router("mix", "mixlora-switch", experts=4, r=4, aux_coef=0.01, z_coef=0.1, jitter=0.0,
                   dropout=0.0, init="random")
    lab.use("mix")
    lab.model.train()
    with routing_context(attention_mask=batch["attention_mask"]), record(lab.model, "*.hook_route") as cache:
        lab.model(**batch)
    total, parts = aux_loss(lab.model)
    assert set(parts) == {"mix/load_balance", "mix/router_z"}
    keep = batch["attention_mask"].reshape(-1).bool()
    probs = torch.cat([r.scores.reshape(-1, 4)[keep] for r in cache.values()])
    f = torch.nn.functional.one_hot(probs.argmax(-1), 4).float().mean(0)
    balance = 0.01 * 4 ** 2 * (f * probs.mean(0)).mean()  # the code: E² · mean(f · P)
    assert parts["mix/load_balance"] == pytest.approx(balance.item(), rel=1e-4)
    assert parts["mix/router_z"] > 0
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-5)


def test_router_z_is_the_mean_squared_logsumexp_over_real_tokens():
    logits = torch.tensor([[0.0, 0.0], [1.0, 3.0], [5.0, 5.0]])
    by_hand = [torch.tensor(2.0).log(), (torch.tensor(1.0).exp() + torch.tensor(3.0).exp()).log()]
    value = AUX_LOSSES.get("router_z")([{"logits": logits, "mask": torch.tensor([1, 1, 0])}])
    assert value.item() == pytest.approx(float(sum(v ** 2 for v in by_hand) / 2), rel=1e-6)


def test_add_mixlora_builds_each_variant_with_its_own_parameters():
    lab = tiny_lab()
    for i, (mechanism, extra) in enumerate([("mixlora", {}), ("mixlora-dynamic", {"top_p": 0.5}),
                                           ("mixlora-switch", {"capacity": 4})]):
        routed, attn = add_mixlora(lab, f"m{i}", experts=4, k=2, r=2, mechanism=mechanism, **extra)
        assert routed.mechanism == mechanism and attn.name == f"m{i}_attn"
        assert ("k" in routed.params) == (mechanism == "mixlora")


def test_switch_counts_capacity_along_the_sequence_and_a_2d_input_is_one_sequence():
    block, x = MLP(), inputs(shape=(2, 7))
    router = make("mixlora-switch", block, capacity=2, router_init_range=1.0)
    both = router(x, block)
    torch.testing.assert_close(router(x[1], block), both[1])  # (T, d): capacity over its T tokens
    probs = torch.softmax(x[1] @ router.router.T, -1)
    idx, gates = router.select(probs, x[1])
    firsts = [t for t in range(7) if (probs[:t + 1].argmax(-1) == probs[t].argmax()).sum() <= 2]
    assert [t for t in range(7) if idx[t, 0] >= 0] == firsts  # the first two tokens of each expert
