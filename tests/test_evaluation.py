"""Evaluation semantics in the engine: tasks by lineage, ownership, normalized scores, and scoring an
adapter that is not in the lab without adding it (tiny model, word-level tokenizer)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from tests.widgets.merge_lab import tiny_merge_lab
from workbench import merging
from workbench.errors import WorkbenchError
from workbench.evaluation import (
    against_solo,
    base_cache,
    evaluate,
    installed,
    normalize,
    normalized,
    own_tasks,
    owner,
    tasks_of,
)
from workbench.tasks import Example, Task

FRUIT = ("apple", "banana", "cherry")


@pytest.fixture
def lab():
    return tiny_merge_lab()  # three random adapters: a (toy_a), b (toy_b), c (no task)


@pytest.fixture
def tasks():
    pick = Task("toy_a", "pick a fruit", "accuracy", train=[], eval=[
        Example("which fruit is red ?", "apple", FRUIT), Example("what fruit", "banana", FRUIT),
        Example("answer the letter A", "cherry", FRUIT)])
    count = Task("toy_b", "count", "loss", train=[], eval=[
        Example("what is one plus two ?", "three"), Example("what is two plus two ?", "four")])
    return {"toy_a": pick, "toy_b": count}


def test_tasks_of_reads_the_lineage_and_a_merges_sources(lab):
    merged = lab.merge(["a", "b"], method="task_arithmetic", name="m")
    assert own_tasks(lab.adapters["a"]) == ["toy_a"] and own_tasks(merged) == []
    assert tasks_of(merged, lab.adapters) == ["toy_a", "toy_b"]
    assert tasks_of(merged) == []  # without the sources at hand nothing is known
    twice = lab.merge(["m", "a"], method="cat", name="mm")  # a merge of a merge: once each
    assert tasks_of(twice, lab.adapters) == ["toy_a", "toy_b"]
    odd = lab.adapters["c"].copy("odd")
    odd.lineage = {"tasks": "toy_a"}  # not a list: ignored, not split into letters
    assert tasks_of(odd) == []


def test_owner_by_lineage_else_by_name(lab):
    assert owner("toy_a", lab.adapters) == "a" and owner("toy_b", lab.adapters) == "b"
    assert owner("toy_a", lab.adapters, among=["b", "c"]) is None
    assert owner("c", lab.adapters) == "c" and owner("nothing", lab.adapters) is None


def test_normalized_inverts_a_loss_and_is_nan_without_a_denominator():
    assert normalized(0.5, 1.0, True) == 0.5 and normalized(2.0, 1.0, False) == 0.5
    assert math.isnan(normalized(0.5, 0.0, True)) and math.isnan(normalized(0.0, 1.0, False))
    scores = pd.DataFrame({"adapter": ["a", "m", "base", "a", "m"], "task": ["t", "t", "t", "l", "l"],
                           "metric": ["accuracy"] * 3 + ["loss"] * 2, "value": [0.8, 0.4, 0.2, 1.0, 2.0],
                           "higher_is_better": [True, True, True, False, False]})
    out = normalize(scores, {"t": "a", "l": "a"}).set_index("task")
    assert list(out.adapter) == ["m", "m"]
    assert out.normalized["t"] == pytest.approx(0.5) and out.normalized["l"] == pytest.approx(0.5)


def test_an_adapter_not_in_the_lab_is_scored_and_never_added(lab, tasks):
    result = merging.merge([lab.adapters["a"], lab.adapters["b"]], "task_arithmetic", [1.0, 1.0], name="free")
    free = result.adapter
    before = {p: (f.A, f.B) for p, f in free.modules.items()}
    free.base_fingerprint = None  # as for one read from a file without it
    scores = lab.evaluate(["a", free, None], tasks, limit=2, progress=False)
    assert list(dict.fromkeys(scores.adapter)) == ["a", "free", "base"]
    assert sorted(lab.adapters) == ["a", "b", "c"] and lab.active.names == set()
    assert all(free.modules[p].A is a and free.modules[p].B is b for p, (a, b) in before.items())
    assert free.base_fingerprint is None  # untouched: the lab stamped only its private twin
    # the same numbers as with the adapter added for good
    lab.add_adapter(free.copy("kept"))
    kept = lab.evaluate("kept", tasks, limit=2, progress=False)
    assert list(kept.value) == pytest.approx(list(scores[scores.adapter == "free"].value))
    # removed also when scoring fails
    with pytest.raises(RuntimeError), installed(lab, free) as name:
        assert name.startswith("_private_free") and name in lab.adapters
        raise RuntimeError("boom")
    assert "_private_free" not in lab.adapters
    other = free.copy("other")
    other.base_fingerprint = "not-this-base"
    with pytest.raises(WorkbenchError, match="fingerprint"):
        lab.evaluate(other, tasks, progress=False)
    assert sorted(lab.adapters) == ["a", "b", "c", "kept"]


def test_against_solo_scores_the_owners_and_leaves_the_lab_alone(lab, tasks):
    merged = merging.merge([lab.adapters[n] for n in "abc"], "task_arithmetic", [1.0] * 3, name="m").adapter
    calls, cache = [], {}
    frame = against_solo(lab, merged, ["a", "b", "c"], tasks, limit=2, cache=cache,
                         progress=lambda *a: calls.append(a))
    assert sorted(lab.adapters) == ["a", "b", "c"]
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4] and calls[-1] == (4, 4, "done")
    assert list(frame.task) == ["toy_a", "toy_b"] and list(frame.solo_adapter) == ["a", "b"]
    direct = lab.evaluate([merged, "a", "b"], tasks, limit=2, progress=False).set_index(["adapter", "task"])
    assert frame.merged.tolist() == pytest.approx([direct.value["m", "toy_a"], direct.value["m", "toy_b"]])
    assert frame.normalized[1] == pytest.approx(direct.value["b", "toy_b"] / direct.value["m", "toy_b"])
    assert set(cache) == {("a", "toy_a", 2), ("b", "toy_b", 2)}
    calls.clear()
    again = against_solo(lab, merged, ["a", "c"], tasks, limit=2, cache=cache,
                         progress=lambda *a: calls.append(a))
    assert list(again.task) == ["toy_a"] and calls[-1] == (1, 1, "done")  # solo scores reused


def test_evaluate_restores_what_was_used_and_the_train_mode_when_a_metric_fails(lab, tasks):
    bad = Task("toy_bad", "same first token", "accuracy", train=[], eval=[
        Example("which fruit ?", "apple", ("apple", "apple banana"))])  # one first token: refused
    lab.use("b")
    lab.model.train()
    with pytest.raises(WorkbenchError, match="same token"):
        evaluate(lab, ["a", None], [tasks["toy_a"], bad], progress=False)
    assert lab.active.names == {"b"} and lab.model.training
    scores = evaluate(lab, "a", tasks["toy_a"], progress=False)  # and the lab still evaluates
    assert scores.adapter.tolist() == ["a"] and lab.active.names == {"b"} and lab.model.training


def test_the_base_models_scores_are_cached_and_any_change_of_the_base_misses(lab, tasks, capsys):
    base_cache.clear()
    hits, misses = base_cache.stats()["hits"], base_cache.stats()["misses"]
    first = evaluate(lab, [None], tasks, limit=2, progress=False)
    assert base_cache.stats()["misses"] == misses + 2
    again = evaluate(lab, ["a", None], tasks, limit=2, progress=False)  # the base: read back
    assert base_cache.stats()["hits"] == hits + 2
    assert again[again.adapter == "base"].value.tolist() == first.value.tolist()
    assert capsys.readouterr().err == ""  # progress=False: no bar, not even the metrics' own
    fresh = evaluate(lab, [None], tasks, limit=2, progress=False, cache=False)  # cache off: computed
    assert fresh.value.tolist() == pytest.approx(first.value.tolist())
    assert base_cache.stats()["hits"] == hits + 2

    def misses_after(change) -> bool:
        before = base_cache.stats()["misses"]
        change()
        evaluate(lab, [None], tasks, limit=2, progress=False)
        return base_cache.stats()["misses"] == before + 2

    solo = evaluate(lab, ["a"], tasks, limit=2, progress=False).value.tolist()
    assert misses_after(lambda: lab.merge_into_base("a"))  # other base weights: computed again
    merged = evaluate(lab, [None], tasks, limit=2, progress=False).value.tolist()
    assert merged == pytest.approx(solo, rel=1e-4)  # the base with `a` folded in scores as `a`
    assert misses_after(lab.unmerge)  # written again (bit-exact, but the key does not read values)
    restored = evaluate(lab, [None], tasks, limit=2, progress=False).value.tolist()
    assert restored == first.value.tolist()
    embed = lab.model.get_input_embeddings().weight
    assert embed.numel() > 4096  # index 1 falls between the fingerprint's samples
    with torch.no_grad():
        embed.view(-1)[1] += 0.5
    try:
        assert misses_after(lambda: None)
    finally:
        with torch.no_grad():
            embed.view(-1)[1] -= 0.5
    other = {n: Task(t.name, t.description, t.metric, train=[], eval=t.eval[:1]) for n, t in tasks.items()}
    before = base_cache.stats()["misses"]
    evaluate(lab, [None], other, progress=False)  # other examples: another key
    assert base_cache.stats()["misses"] == before + 2
