"""The route-lab core: routers in the lab like adapters, records, context, auxiliary losses."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import output_of, tiny_inputs, tiny_lab
from workbench.errors import WorkbenchError
from workbench.routing import RoutingRecord, aux_loss, context_value, routing_context


def test_router_turns_on_and_off_like_an_adapter():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    lab.add_router("sm", "smora", r=8, k=2, init="random", targets="attention")
    assert torch.equal(output_of(lab.model(**x)), base)  # added, not used
    lab.use("sm")
    assert not torch.allclose(output_of(lab.model(**x)), base)
    with lab.using(None):
        assert torch.equal(output_of(lab.model(**x)), base)
    lab.remove_router("sm")
    assert torch.equal(output_of(lab.model(**x)), base)
    assert not lab.routers and all(not len(layer.routes) for layer in lab.layers.values())


def test_router_and_adapter_sum():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    lab.new_adapter("a", r=2, init="random", targets="attention")
    lab.add_router("sm", "smora", r=8, k=2, init="random", targets="attention")
    with lab.using("a"):
        only_a = output_of(lab.model(**x))
    with lab.using(["a", "sm"]):
        both = output_of(lab.model(**x))
    assert not torch.allclose(both, only_a) and not torch.allclose(both, base)


def test_names_are_shared_between_adapters_and_routers():
    lab = tiny_lab()
    lab.new_adapter("a", r=2, targets="attention")
    with pytest.raises(WorkbenchError, match="taken"):
        lab.add_router("a", "smora", r=4, k=2)
    with pytest.raises(KeyError, match="unknown router"):
        lab.add_router("b", "no-such-router")
    with pytest.raises(WorkbenchError, match="no router"):
        lab.remove_router("b")


def test_a_failed_build_changes_nothing():
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    base = output_of(lab.model(**x))
    with pytest.raises(WorkbenchError, match="k <="):
        lab.add_router("sm", "smora", r=4, k=9)
    assert not lab.routers and all(not len(layer.routes) for layer in lab.layers.values())
    assert torch.equal(output_of(lab.model(**x)), base)


def test_records_come_through_the_cache():
    lab = tiny_lab()
    lab.add_router("sm", "smora", r=8, k=3, init="random", targets="q_proj")
    lab.use("sm")
    _, cache = lab.run(tiny_inputs(lab.model), record="*.hook_route")
    assert len(cache) == 2  # tiny-llama has two layers
    rec = next(iter(cache.values()))
    assert isinstance(rec, RoutingRecord) and rec.shape == (3, 7, 8)
    assert (rec.active.sum(-1) == 3).all()
    assert int(rec.counts().sum()) == 3 * 7 * 3
    frame = cache.to_frame()
    assert set(frame["adapter"]) == {"sm"} and set(frame["module"]) == {"self_attn.q_proj"}
    assert {"layer", "token", "expert", "score", "weight", "active"} <= set(frame.columns)


def test_record_concat_joins_tokens():
    w = torch.rand(2, 3, 4)
    rec = RoutingRecord(w, w, w.topk(2, -1).indices)
    joined = RoutingRecord.concat([rec, rec])
    assert joined.shape == (2, 6, 4) and joined.selected.shape == (2, 6, 2)


def test_mixed_batches_serve_routers_in_inference_only():
    """A router serves its rows of a mixed batch (tests/routing/test_routing_mixed_rows.py); training
    refuses, its losses being statistics over the whole batch."""
    lab = tiny_lab()
    lab.new_adapter("a", r=2, targets="attention")
    lab.add_router("sm", "smora", r=4, k=2, targets="attention")
    lab.use(rows=["a", "sm", None])
    lab.model.eval()
    lab.model(**tiny_inputs(lab.model))
    lab.model.train()
    with pytest.raises(WorkbenchError, match="training in a mixed batch"):
        lab.model(**tiny_inputs(lab.model))


def test_context_is_scoped_and_missing_keys_are_named():
    with routing_context(task=torch.tensor([1])):
        with routing_context(token_types=torch.zeros(1, 2)):
            assert context_value("task", needed_by="t").tolist() == [1]
        with pytest.raises(WorkbenchError, match="token_types"):
            context_value("token_types", needed_by="mask-routed LoRA")
    assert context_value("task", needed_by="t", default=None) is None


def test_aux_losses_are_collected_once_and_only_in_training():
    lab = tiny_lab()
    lab.add_router("sm", "smora", r=4, k=2, targets="q_proj")
    routers = list(lab.routers["sm"].modules.values())
    logits = torch.randn(5, 4, requires_grad=True)
    routers[0].add_aux("load_balance", 0.5, logits=logits, k=2)  # modules start in eval mode
    assert aux_loss(lab.model) == (None, {})
    for r in routers:
        r.train()
        r.add_aux("load_balance", 0.5, logits=logits, k=2)
    total, parts = aux_loss(lab.model)
    assert set(parts) == {"sm/load_balance"} and total.requires_grad
    assert aux_loss(lab.model) == (None, {})  # cleared


def test_load_balance_is_one_at_uniform_routing():
    from workbench.routing.losses import load_balance

    logits = torch.zeros(8, 4)  # uniform probabilities; top-2 ties resolve to the same two experts
    uniform = load_balance([{"logits": torch.eye(4).repeat(2, 1) * 50, "k": 1}])
    assert uniform.item() == pytest.approx(1.0, abs=1e-3)  # each expert gets a quarter, p ≈ one-hot
    skewed = load_balance([{"logits": logits + torch.tensor([9.0, 0, 0, 0]), "k": 1}])
    assert skewed.item() > 3.5  # all tokens on expert 0 with p ≈ 1: E·f·P ≈ 4


def test_train_router_updates_only_router_parameters(tmp_path):
    from workbench.training import fit

    lab = tiny_lab()
    lab.add_router("sm", "smora", r=4, k=2, targets="q_proj")
    routed = lab.routers["sm"]
    before = {k: v.clone() for k, v in routed.state_dict().items()}
    base = {k: v.clone() for k, v in lab.model.state_dict().items() if "routes" not in k}
    feats = [{"input_ids": [1, 2, 3, 4], "labels": [-100, 2, 3, 4], "task": 0}] * 4
    history = fit(lab, routed.trainable(), feats, use="sm", label="sm", steps=3, lr=1e-2, batch_size=2,
                  seed=0, progress=False)
    assert len(history) == 3
    after = routed.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(v, lab.model.state_dict()[k]) for k, v in base.items())
    assert routed.trainable() and all(p.grad is None for p in routed.trainable())
    fit(lab, routed.trainable(), feats, use="sm", label="sm", steps=1, lr=1e-2, batch_size=2,
        seed=0, progress=False)  # a router trains again


@pytest.mark.parametrize("mechanism", ["smora", "flylora"])  # flylora rebuilds its frozen A from the seed
def test_save_and_load_round_trip(tmp_path, mechanism):
    lab = tiny_lab()
    x = tiny_inputs(lab.model)
    lab.add_router("sm", mechanism, r=8, k=2, init="random", targets="attention", seed=5)
    routed = lab.routers["sm"]
    next(iter(routed.modules.values())).bias.add_(0.25)  # state that a fresh build would not have
    lab.use("sm")
    before = output_of(lab.model(**x))
    lab.save_router("sm", tmp_path / "sm")
    assert sorted(p.name for p in (tmp_path / "sm").iterdir()) == ["router.json", "router.safetensors"]
    other = tiny_lab()
    other.load_router(tmp_path / "sm", name="again")
    other.use("again")
    assert torch.equal(output_of(other.model(**x)), before)
    with pytest.raises(WorkbenchError, match="already exists"):
        lab.save_router("sm", tmp_path / "sm")
    with pytest.raises(WorkbenchError, match="router.json is missing"):
        other.load_router(tmp_path)


def test_router_parameters_are_checked_against_their_declarations_before_any_work():
    lab = tiny_lab()
    with pytest.raises(WorkbenchError, match=r"no parameter 'rank'; its parameters: r=64, k=8"):
        lab.add_router("sm", "smora", rank=4)
    with pytest.raises(WorkbenchError, match=r"dropout=1.5 is out of range.*\[0, 1\]"):
        lab.add_router("sm", "smora", dropout=1.5)
    with pytest.raises(WorkbenchError, match="init='xavier' is not allowed"):
        lab.add_router("sm", "smora", init="xavier")
    assert not lab.routers and all(not len(layer.routes) for layer in lab.layers.values())


def test_load_balance_is_e_times_sum_of_f_p_over_all_layers_concatenated_by_hand():
    import math

    from workbench.routing.losses import load_balance

    # layer 1: one token, probs softmax([0, ln 3]) = [1/4, 3/4], top-1 -> expert 1
    # layer 2: two tokens, probs [1/2, 1/2] (tie -> expert 0) and [3/4, 1/4] -> expert 0; a third is padding
    one = {"logits": torch.tensor([[0.0, math.log(3)]]), "k": 1}
    two = {"logits": torch.tensor([[0.0, 0.0], [math.log(3), 0.0], [9.0, -9.0]]), "k": 1}
    f = torch.tensor([2 / 3, 1 / 3])  # assignments over the 3 real tokens of both layers together
    P = torch.tensor([(0.25 + 0.5 + 0.75) / 3, (0.75 + 0.5 + 0.25) / 3])
    expected = 2 * (f * P).sum()
    masked = [one | {"mask": torch.tensor([1])}, two | {"mask": torch.tensor([1, 1, 0])}]
    torch.testing.assert_close(load_balance(masked), expected)
    unmasked = load_balance([one, {"logits": two["logits"][:2], "k": 1}])
    torch.testing.assert_close(unmasked, expected)  # concatenated, not a mean of per-layer losses
    # k = 2 of 2 experts: every expert in every token's slots, f = 1/2 each: E Σ f P = 2 · ½ · ΣP = 1
    torch.testing.assert_close(load_balance([{"logits": two["logits"], "k": 2}]), torch.tensor(1.0))


def test_load_balance_with_top_two_divides_the_slot_counts_by_k_by_hand():
    import math

    from workbench.routing.losses import load_balance

    # probs [1, 2, 5]/8 -> top-2 {2, 1}; [4, 3, 1]/8 -> top-2 {0, 1}: slots per expert (1, 2, 1) over 2 tokens
    logits = torch.tensor([[math.log(1), math.log(2), math.log(5)], [math.log(4), math.log(3), math.log(1)]])
    f = torch.tensor([1.0, 2.0, 1.0]) / 2 / 2  # mean over tokens, then / k
    P = torch.tensor([5.0, 5.0, 6.0]) / 16
    value = load_balance([{"logits": logits, "k": 2}])
    torch.testing.assert_close(value, 3 * (f * P).sum())  # = 0.984375
    assert value.item() == pytest.approx(0.984375)
    torch.testing.assert_close(load_balance([{"logits": logits[None], "k": 2}]), value)  # (B, T, E) payloads
