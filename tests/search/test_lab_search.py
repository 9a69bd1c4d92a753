"""The search on the tiny lab: the objective's normalized scores and cache, the merged adapters it builds,
AdaMerging's entropy (its gradient against a finite difference, its descent), and the lab left clean."""

from __future__ import annotations

import json

import pytest
import torch

from tests.experiments.toy import toy_library, toy_tasks
from workbench.errors import WorkbenchError
from workbench.search import (
    LINEAR,
    Candidate,
    EntropyLoss,
    FunctionObjective,
    LabObjective,
    SearchSpace,
    build,
    search,
    wide,
)
from workbench.tasks.encoding import prompt_ids

NAMES = ["colour", "fruit", "sum"]


@pytest.fixture(scope="module")
def lab():
    return toy_library(NAMES)


def test_the_objective_normalizes_by_each_tasks_solo_adapter_and_reads_its_cache(lab, tmp_path):
    tasks = toy_tasks()
    obj = LabObjective(lab, NAMES, tasks, limit=2, cache_dir=tmp_path)
    c = Candidate({"colour": 1.0, "fruit": 0.5, "sum": 0.0}, "ties", 0.5)
    scores = obj.scores(c)
    merged = lab.evaluate(build(lab, NAMES, c), tasks, limit=2, progress=False).set_index("task").value
    solo = {t: lab.evaluate(t, tasks[t], limit=2, progress=False).value.iloc[0] for t in NAMES}
    for t in NAMES:
        assert scores[t]["value"] == pytest.approx(merged[t])
        if solo[t] > 0:
            assert scores[t]["normalized"] == pytest.approx(merged[t] / solo[t])
    assert len(list(tmp_path.glob("*.json"))) == 1
    again = LabObjective(lab, NAMES, tasks, limit=2, cache_dir=tmp_path)
    again.lab = None  # a cached candidate needs no lab: reading it must not evaluate
    again._key = obj._key
    assert json.dumps(again.scores(c)) == json.dumps(scores)  # (NaN where a solo score is 0)
    assert list(lab.adapters) == NAMES  # nothing left behind


def test_held_out_slices_and_bad_settings_are_refused(lab):
    tasks = toy_tasks()
    with pytest.raises(WorkbenchError, match="offset"):
        LabObjective(lab, NAMES, tasks, limit=2, offset=5)
    with pytest.raises(WorkbenchError, match="no adapter"):
        LabObjective(lab, ["nope"], tasks)
    with pytest.raises(WorkbenchError, match="task_weights"):
        LabObjective(lab, NAMES, tasks, kind="weighted", task_weights={"colour": 1.0})


def test_layer_wise_weights_build_the_exact_per_layer_sum(lab):
    layers = {0: {"colour": 0.2, "fruit": -0.5, "sum": 1.0}, 1: {"colour": 1.5, "fruit": 0.0, "sum": 0.3}}
    c = Candidate({"colour": 1.0, "fruit": 1.0, "sum": 1.0}, LINEAR, layer_weights=layers)
    merged = build(lab, NAMES, c)
    for path in merged.modules:
        layer = int(path.split(".layers.")[1].split(".")[0])
        w = layers.get(layer, c.weights)
        want = sum(w[n] * lab.adapters[n].delta(path) for n in NAMES)
        torch.testing.assert_close(merged.delta(path), want, atol=1e-6, rtol=1e-5)
    plain = build(lab, NAMES, Candidate({"colour": 0.5, "fruit": 1.0, "sum": 0.0}, LINEAR))
    path = next(iter(plain.modules))
    torch.testing.assert_close(plain.delta(path), 0.5 * lab.adapters["colour"].delta(path)
                               + lab.adapters["fruit"].delta(path), atol=1e-6, rtol=1e-5)


def _loss(lab, layerwise: bool) -> EntropyLoss:
    tasks = toy_tasks()
    prompts = {t: [prompt_ids(lab.tokenizer, tasks[t], e) for e in tasks[t].eval] for t in NAMES}
    return EntropyLoss(lab, NAMES, prompts, layerwise=layerwise, batch_size=2)


@pytest.mark.parametrize("layerwise", [False, True])
def test_the_entropy_gradient_matches_a_finite_difference(lab, layerwise):
    loss = _loss(lab, layerwise)
    lam = loss.initial(0.3) + 0.1 * torch.randn(loss.shape, generator=torch.Generator().manual_seed(0))
    value, grad = loss.value_and_grad(lam)
    assert value == pytest.approx(loss.value(lam), rel=1e-6)
    direction = torch.randn(loss.shape, generator=torch.Generator().manual_seed(1))
    eps = 1e-2
    fd = (loss.value(lam + eps * direction) - loss.value(lam - eps * direction)) / (2 * eps)
    assert float((grad * direction).sum()) == pytest.approx(fd, rel=5e-2, abs=1e-4)
    assert abs(fd) > 1e-3  # the check has something to compare
    for p in lab.model.parameters():
        assert p.grad is None  # only λ gets a gradient


def test_the_entropy_changes_with_the_coefficients_as_the_merged_model_does(lab):
    """λ = e_k gives adapter k alone: the hooks reproduce the lab's own composition."""
    loss = _loss(lab, False)
    tasks = toy_tasks()
    ids = prompt_ids(lab.tokenizer, tasks["colour"], tasks["colour"].eval[0])
    batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
    with torch.no_grad(), lab.session("fruit", train=False):
        want = lab.model(**batch).logits[:, -1]
    with torch.no_grad(), loss._applied(torch.tensor([0.0, 1.0, 0.0])), lab.session(None, train=False):
        got = lab.model(**batch).logits[:, -1]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("granularity", ["task", "layer"])
def test_adamerging_lowers_the_entropy_and_proposes_its_coefficients(lab, granularity):
    tasks = toy_tasks()
    obj = LabObjective(lab, NAMES, tasks, limit=2)
    run = search(obj, SearchSpace(NAMES, weights=(0.0, 1.0)), "adamerging", budget=2, seed=0, progress=False,
                 granularity=granularity, steps=4, lr=0.1)
    h = run.searcher.history
    assert len(h) == 8 and h.entropy.iloc[-1] < h.entropy.iloc[0]
    assert run.evaluations == 2 and len(wide(run.frame)) == 2
    last = run.candidates[-1]
    assert last.method == LINEAR and all(0.0 <= w <= 1.0 for w in last.weights.values())
    assert (last.layer_weights is not None) == (granularity == "layer")
    assert list(lab.adapters) == NAMES and not lab.active.names


def test_adamerging_needs_the_lab_and_the_linear_merge(lab):
    with pytest.raises(WorkbenchError, match="LabObjective"):
        search(FunctionObjective(lambda c: {"t": 0.0}, ["t"]), SearchSpace(NAMES), "adamerging", budget=1,
               progress=False)
    obj = LabObjective(lab, NAMES, toy_tasks(), limit=1)
    with pytest.raises(WorkbenchError, match="task_arithmetic"):
        search(obj, SearchSpace(NAMES, methods=["ties"]), "adamerging", budget=1, progress=False)


def test_a_search_on_the_lab_leaves_it_as_it_was(lab):
    obj = LabObjective(lab, NAMES, toy_tasks(), limit=1)
    space = SearchSpace(NAMES, methods=[LINEAR, "ties"], density=(0.2, 1.0))
    run = search(obj, space, "random", budget=3, seed=0, start=space.uniform(), progress=False)
    assert run.evaluations == 3 and list(lab.adapters) == NAMES and not lab.active.names
