"""DMoERM: top-1 category routing, then an MLP over the last-token states of each capability adapter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing.dmoerm import DMoERM, last_token_states, pairwise_loss


@pytest.fixture(scope="module")
def lab():
    lab = tiny_lab()
    for i, name in enumerate(["a", "b", "c"]):
        adapter = lab.new_adapter(name, r=2, init="random", targets="attention", seed=i)
        for f in adapter.modules.values():
            f.B.data.mul_(30)
    return lab


def test_one_expert_is_an_mlp_over_its_last_token_state(lab):
    rm = DMoERM(lab, {"chat": ["a"]}, seed=1)
    x = tiny_inputs(lab.model)
    with torch.no_grad(), lab.using("a"):
        h = lab.model(**x, output_hidden_states=True).hidden_states[-1]
    last = torch.tensor([6, 6, 4])  # the last row has two padding tokens
    h = h[torch.arange(3), last]
    inner = rm.inner["chat"]
    z = h @ inner.W1.weight.T + inner.W1.bias
    want = (F.prelu(z, inner.prelu.weight) @ inner.w2.weight.T + inner.w2.bias).squeeze(-1)
    torch.testing.assert_close(rm(x), want)
    assert inner.prelu.weight.item() == 0.25 and inner.W1.in_features == 64


def test_each_slot_holds_its_own_adapters_state(lab):
    rm = DMoERM(lab, {"chat": ["a", "b"]})
    x = tiny_inputs(lab.model)
    before = rm.inner["chat"].features(lab, x)
    assert before.shape == (3, 128) and not before.requires_grad
    torch.testing.assert_close(before[:, :64], last_token_states(lab, x, "a"))
    assert (before[:, :64] - last_token_states(lab, x, None)).abs().max() > 1e-3  # not the base state
    factors = lab.adapters["b"].modules["model.layers.1.self_attn.v_proj"]
    saved = factors.B.detach().clone()
    try:
        with torch.no_grad():
            factors.B.mul_(-2)
        after = rm.inner["chat"].features(lab, x)
    finally:
        with torch.no_grad():
            factors.B.copy_(saved)
    assert torch.equal(after[:, :64], before[:, :64])  # a's slot is unchanged
    assert (after[:, 64:] - before[:, 64:]).abs().max() > 1e-4  # b's slot moved


def test_pairwise_loss_trains_the_aggregator(lab):
    rm = DMoERM(lab, {"chat": ["a", "b"]})
    inner = rm.inner["chat"]
    g = torch.Generator().manual_seed(0)
    chosen = {"input_ids": torch.randint(0, 128, (6, 5), generator=g)}  # a toy preference: low ids
    rejected = {"input_ids": torch.randint(128, 256, (6, 5), generator=g)}
    f_w, f_l = inner.features(lab, chosen), inner.features(lab, rejected)  # frozen: compute once
    opt = torch.optim.Adam(inner.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = pairwise_loss(inner(f_w), inner(f_l))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert pairwise_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(
        -F.logsigmoid(torch.tensor(2.0)).item())


def test_each_sample_is_scored_by_its_category(lab):
    pick = ["qa", "chat", "qa"]
    rm = DMoERM(lab, {"chat": ["a"], "qa": ["b", "c"]}, router=lambda batch: pick)
    x = tiny_inputs(lab.model)
    assert rm.route(x).tolist() == [1, 0, 1] and rm.head is None
    rewards = rm(x)
    for i, category in enumerate(pick):
        row = {k: v[i:i + 1] for k, v in x.items()}
        inner = rm.inner[category]
        torch.testing.assert_close(rewards[i:i + 1], inner(inner.features(lab, row)))


def test_the_head_routes_top1_and_learns_categories(lab):
    rm = DMoERM(lab, {"chat": ["a"], "qa": ["b"]})
    x = tiny_inputs(lab.model)
    assert torch.equal(rm.route(x), rm.route_logits(x).argmax(-1))
    target = torch.tensor([1, 0, 1])
    opt = torch.optim.Adam(rm.head.parameters(), lr=0.1)
    for _ in range(20):
        loss = rm.router_loss(x, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert rm.route(x).tolist() == [1, 0, 1]


def test_bad_experts_and_categories_are_clear_errors(lab):
    with pytest.raises(WorkbenchError, match=r"\['zzz'\] are not in this lab"):
        DMoERM(lab, {"chat": ["a", "zzz"]})
    with pytest.raises(WorkbenchError, match="at least one"):
        DMoERM(lab, {"chat": []})
    rm = DMoERM(lab, {"chat": ["a"]}, router=lambda batch: ["poetry"] * 3)
    with pytest.raises(WorkbenchError, match="'poetry'"):
        rm(tiny_inputs(lab.model))


def test_reward_is_w2_prelu_w1_of_concatenated_last_real_token_states(lab):
    batch = tiny_inputs(lab.model)  # the last row is right-padded (two pads)
    rm = DMoERM(lab, {"all": list(lab.adapters)[:2]})
    inner = rm.inner["all"]
    with torch.no_grad():
        inner.prelu.weight.fill_(0.1)
        states = []
        for e in inner.experts:
            with lab.using(e):
                h = lab.model(**batch, output_hidden_states=True).hidden_states[-1]
            last = batch["attention_mask"].sum(1) - 1  # the last real token of each row
            states.append(h[torch.arange(h.shape[0]), last])
        pre = torch.cat(states, -1) @ inner.W1.weight.T + inner.W1.bias
        expected = (torch.where(pre > 0, pre, 0.1 * pre) @ inner.w2.weight.T + inner.w2.bias).squeeze(-1)
        torch.testing.assert_close(rm(batch), expected)
    assert pairwise_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])).item() == pytest.approx(
        (-F.logsigmoid(torch.tensor(2.0)) + torch.log(torch.tensor(2.0))).item() / 2)


def test_pairwise_loss_is_minus_log_sigmoid_of_the_margin_by_hand():
    import math

    value = pairwise_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 3.0]))  # margins 1 and −3
    assert value.item() == pytest.approx((math.log1p(math.exp(-1)) + math.log1p(math.exp(3))) / 2, rel=1e-6)



def test_one_category_takes_every_sample_and_text_is_encoded_first():
    """One category and no router: every sample (not every position) goes to it without a head's
    argmax; text is tokenized by the lab before routing and scoring (kills dropping ``as_batch``)."""
    from tests.transfer.helpers import llama_lab  # a tiny lab with a word tokenizer

    lab = llama_lab()
    for i, name in enumerate(["a", "b"]):
        lab.new_adapter(name, r=2, init="random", targets="attention", seed=i)
    rm = DMoERM(lab, {"chat": ["a", "b"]})
    x = tiny_inputs(lab.model)  # (3, 7): batch and length differ
    assert rm.route(x).tolist() == [0, 0, 0]
    inner = rm.inner["chat"]
    torch.testing.assert_close(rm(x), inner(inner.features(lab, x)))
    texts = ["apple", "banana apple"]
    assert rm.route(texts).tolist() == [0, 0]
    torch.testing.assert_close(rm(texts), inner(inner.features(lab, lab.encode(texts))))
