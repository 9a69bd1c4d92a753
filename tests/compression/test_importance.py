"""Importance against hand computations on a tiny Linear, and group aggregation."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_inputs
from workbench import zoo
from workbench.compression import IMPORTANCE, element_scores, group_scores, group_sets
from workbench.compression.groups import GroupSet, Member
from workbench.compression.importance import gradients
from workbench.errors import WorkbenchError


def _one_linear():
    """A (4, 3) weight with a known gradient; groups = output rows 0..3 of one module."""
    w = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0], [2.0, 2.0, 2.0], [-0.5, 0.1, 4.0]])
    g = torch.tensor([[0.5, 0.5, -1.0], [9.0, -0.1, 0.2], [0.0, 0.0, 0.1], [-2.0, 1.0, 0.0]])
    fisher = g * g
    sets = [GroupSet(0, "neuron", (Member("lin", 0, torch.arange(4)[:, None]),))]
    return w, g, fisher, sets


@pytest.mark.parametrize(("method", "hand"), [
    ("taylor", lambda w, g, f: (w * g).abs()),
    ("taylor2", lambda w, g, f: w * w * f),
    ("taylor-mix", lambda w, g, f: (w * g - 0.5 * w * w * f).abs()),
    ("l1", lambda w, g, f: w.abs()),
    ("l2", lambda w, g, f: w * w),
])
def test_group_score_is_the_sum_of_element_scores(method, hand):
    w, g, f, sets = _one_linear()
    elem = IMPORTANCE.get(method)(w, g, f, torch.Generator().manual_seed(0))
    torch.testing.assert_close(elem, hand(w, g, f))
    scores = group_scores(sets, {"lin": elem})[(0, "neuron")]
    torch.testing.assert_close(scores, hand(w, g, f).sum(dim=1))


def test_taylor_is_w_times_g_not_g_alone():
    """Row 1 has the largest gradient but a zero weight where it is largest: |w·g| ranks it low, |g| high."""
    w, g, f, sets = _one_linear()
    taylor = group_scores(sets, {"lin": IMPORTANCE.get("taylor")(w, g, f, None)})[(0, "neuron")]
    assert torch.allclose(taylor, torch.tensor([0.5 + 1.0 + 0.5, 0.0 + 0.3 + 0.2, 0.2, 1.0 + 0.1 + 0.0]))
    assert taylor.argmax() == 0 and taylor[1] < taylor[0]
    assert g.abs().sum(1).argmax() == 1  # |g| alone would pick row 1


def test_aggregations_over_coupled_members():
    ch = torch.arange(2)[:, None]
    s = GroupSet(0, "neuron", (Member("a", 0, ch), Member("b", 1, ch)))
    a = torch.tensor([[1.0, 1.0], [0.0, 4.0]])  # rows 1+1=2, 0+4=4
    b = torch.tensor([[3.0, 0.0], [1.0, 0.0]])  # columns 4, 0
    got = {agg: group_scores([s], {"a": a, "b": b}, agg)[(0, "neuron")] for agg in ("sum", "mean", "max")}
    torch.testing.assert_close(got["sum"], torch.tensor([6.0, 4.0]))
    torch.testing.assert_close(got["mean"], torch.tensor([3.0, 2.0]))
    torch.testing.assert_close(got["max"], torch.tensor([4.0, 4.0]))
    with pytest.raises(WorkbenchError, match="aggregation"):
        group_scores([s], {"a": a, "b": b}, "prod")


def test_model_gradients_and_fisher_match_autograd():
    model = zoo.load("tiny-llama").model
    batch = tiny_inputs(model, batch=2, length=5)
    path = "model.layers.0.mlp.up_proj"
    grads, fisher = gradients(model, [path], batch, fisher=True)
    w = dict(model.named_modules())[path].weight
    per = []
    w.requires_grad_(True)
    for i in range(2):
        w.grad = None
        ids = batch["input_ids"][i:i + 1]
        mask = batch["attention_mask"][i:i + 1]
        model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
        per.append(w.grad.clone())
    w.requires_grad_(False)
    w.grad = None
    torch.testing.assert_close(fisher[path], (per[0] ** 2 + per[1] ** 2) / 2)
    assert grads[path].shape == w.shape and grads[path].abs().sum() > 0
    sets = group_sets(model, [0], parts=("mlp",))
    elem = element_scores(model, sets, "taylor", batch)
    torch.testing.assert_close(elem[path], (w.detach() * grads[path]).abs())


def test_gradient_methods_need_calibration_data():
    model = zoo.load("tiny-llama").model
    with pytest.raises(WorkbenchError, match="calibration"):
        element_scores(model, group_sets(model), "taylor")
    random = element_scores(model, group_sets(model), "random", seed=3)
    again = element_scores(model, group_sets(model), "random", seed=3)
    assert all(torch.equal(random[k], again[k]) for k in random)


def test_max_aggregation_takes_each_groups_largest_member():
    """Three coupled members, two groups: ``max`` is per group over the members (3 and 5 here), not per
    member over the groups."""
    ch = torch.arange(2)[:, None]
    s = GroupSet(0, "neuron", tuple(Member(m, 0, ch) for m in "abc"))
    rows = {"a": torch.tensor([[1.0, 0.0], [5.0, 0.0]]),  # row sums 1, 5
            "b": torch.tensor([[3.0, 0.0], [2.0, 0.0]]),  # 3, 2
            "c": torch.tensor([[0.0, 2.0], [0.0, 0.0]])}  # 2, 0
    torch.testing.assert_close(group_scores([s], rows, "max")[(0, "neuron")], torch.tensor([3.0, 5.0]))
