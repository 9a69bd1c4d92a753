"""MergeBuilder without a browser, on a tiny model: previews equal the engine's, simulated front-end
messages, request numbers and stale scores, the quick evaluation's progress, commit and export."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

from tests.tasks.helpers import build_tokenizer
from tests.widgets.fake_comm import FakeComm
from widgets import MergeBuilder
from widgets._heatmap import decode, module_by_layer
from widgets._merge_controls import coerce, control, controls
from workbench import Workbench, analysis, merging, zoo
from workbench.adapters import read_peft
from workbench.errors import WorkbenchError
from workbench.tasks import Example, Task

FRUIT = ("apple", "banana", "cherry")


@pytest.fixture
def lab():
    """A tiny llama with a word-level chat tokenizer and three random adapters (a: toy_a, b: toy_b)."""
    z = zoo.load("tiny-llama")
    lab = Workbench(copy.deepcopy(z.model), build_tokenizer(), name="tiny-llama", fingerprint=z.fingerprint)
    for seed, (name, task) in enumerate([("a", "toy_a"), ("b", "toy_b"), ("c", None)]):
        adapter = lab.new_adapter(name, r=2, init="random", seed=seed, targets="attention")
        adapter.lineage["tasks"] = [task] if task else []
    return lab


@pytest.fixture
def tasks():
    pick = Task("toy_a", "pick a fruit", "accuracy", train=[], eval=[
        Example("which fruit is red ?", "apple", FRUIT), Example("what fruit", "banana", FRUIT),
        Example("answer the letter A", "cherry", FRUIT), Example("which colour", "apple", FRUIT)])
    count = Task("toy_b", "count", "loss", train=[], eval=[
        Example("what is one plus two ?", "three"), Example("what is two plus two ?", "four"),
        Example("what is one plus four ?", "five"), Example("what is three plus three ?", "six")])
    return {"toy_a": pick, "toy_b": count}


def sources(lab, names=("a", "b", "c")):
    return [lab.adapters[n] for n in names]


def test_previews_are_the_engines_and_travel_as_binary(lab):
    b = MergeBuilder(lab, method="ties", density=0.5)
    state = b.get_state()
    assert state["_model_module"] == "anywidget" and b.status == "current" and b.answered == b.request == 0
    _, paths, buffers = _remove_buffers(state)
    binary = {tuple(p) for p in paths}
    assert {("error_map", "values"), ("interference", "values"), ("angles", "values")} <= binary
    assert all(isinstance(x, bytes | memoryview) for x in buffers)
    # methods and their controls come from the registry
    assert b.methods == [m for m in merging.MERGES.names() if not merging.MERGES.get(m).needs]
    assert "ties" in b.methods and all(merging.MERGES.get(m).needs for m in merging.MERGES.names()
                                       if m not in b.methods)
    for m in b.methods:
        assert [c["name"] for c in b.controls[m]] == list(merging.method_params(m))
    assert b.params == {**merging.method_params("ties"), "density": 0.5}
    # the error map is MergeResult.error; interference and angles are the analysis functions'
    expected = merging.merge(sources(lab), "ties", [1.0] * 3, name="merged", density=0.5)
    np.testing.assert_allclose(decode(b.error_map), module_by_layer(expected.error, "value"), rtol=1e-5)
    assert b.result.total_error == pytest.approx(expected.total_error, rel=1e-6)
    named = {n: lab.adapters[n] for n in "abc"}
    frame = analysis.interference(named, weights=[1.0] * 3, density=0.5)
    np.testing.assert_allclose(decode(b.interference), module_by_layer(frame, "conflict_rate"), atol=1e-6)
    cos = analysis.angles(named).pivot(index="adapter_a", columns="adapter_b", values="cosine")
    np.testing.assert_allclose(decode(b.angles), cos.loc[list("abc"), list("abc")], atol=1e-6)
    assert "ties of a×1, b×1, c×1: rank" in b.summary
    b.metric = "mass_lost"  # another column of the same frame, no new merge
    np.testing.assert_allclose(decode(b.interference), module_by_layer(frame, "mass_lost"), atol=1e-6)


def test_a_front_end_message_is_answered_with_its_request_number(lab):
    b = MergeBuilder(lab)
    b.comm = comm = FakeComm()
    # what the view sends after the debounce: the settings and a new request number
    b.set_state({"active": ["a", "c"], "weights": {"a": 0.5, "b": 1.0, "c": -1.0}, "method": "dare_ties",
                 "params": {"density": 0.3}, "seed": 3, "request": 1, "status": "computing…"})
    states = comm.states()
    [answer] = [s for s in states if "answered" in s]  # one answer, with the previews
    assert answer["answered"] == 1 and answer["status"] == "current" and "values" not in answer["error_map"]
    assert states[-1]["params"] == b.params  # the validated parameters go back to the view
    assert b.params == {**merging.method_params("dare_ties"), "density": 0.3}
    expected = merging.merge(sources(lab, "ac"), "dare_ties", [0.5, -1.0], name="merged", seed=3, density=0.3)
    np.testing.assert_allclose(decode(b.error_map), module_by_layer(expected.error, "value"), rtol=1e-5)
    assert b.result.adapter.lineage["merge"]["seed"] == 3
    # a request with the same settings is answered without a new merge
    result = b.result
    comm.sent.clear()
    b.set_state({"request": 2})
    assert b.result is result and b.answered == 2 and b.status == "current"
    assert [s for s in comm.states() if "status" in s and s["status"] != "current"] == []
    # settings changed from Python: "computing…" goes out before the work, then the previews
    comm.sent.clear()
    b.seed = 4
    assert comm.states()[:2] == [{"seed": 4}, {"status": "computing…"}]
    assert comm.states()[-1]["status"] == "current"
    assert b.result is not result and b.answered == b.request == 2


def test_a_method_change_keeps_the_shared_parameters(lab):
    b = MergeBuilder(lab, method="ties", density=0.4)
    b.method = "dare_ties"
    assert b.params == {**merging.method_params("dare_ties"), "density": 0.4}
    b.method = "svd"
    assert b.params == merging.method_params("svd") and b.status == "current"
    assert b.result.adapter.lineage["merge"]["method"] == "svd"
    b.set_state({"method": "magnitude_prune", "params": {"density": 0.7}, "request": 5})
    assert b.params["density"] == 0.7 and b.answered == 5


def test_bad_settings_are_refused_or_reported(lab):
    b = MergeBuilder(lab, method="ties")
    with pytest.raises(traitlets.TraitError, match="takes no parameter"):
        b.params = {"nope": 1}
    with pytest.raises(traitlets.TraitError, match="unknown method"):
        b.method = "zzz"
    with pytest.raises(traitlets.TraitError, match="unknown adapters"):
        b.active = ["a", "zzz"]
    with pytest.raises(traitlets.TraitError, match="an integer"):
        b.params = {"rank": "many"}
    b.set_state({"params": {"density": 1.5}, "request": 1})  # the engine refuses; the view is answered
    assert b.status.startswith("error:") and "density" in b.status and b.error_map == {}
    assert b.answered == 1 and b.result is None
    with pytest.raises(WorkbenchError, match="no merge"):
        b.commit()
    b.params = {"density": 0.5}
    assert b.status == "current"
    b.active = ["a"]  # one source: a merge, but nothing to compare
    assert b.error_map and b.interference == {} and b.angles == {}
    b.active = []
    assert b.status == "choose at least one adapter" and b.error_map == {}
    with pytest.raises(WorkbenchError, match="zzz"):
        MergeBuilder(lab, ["a", "zzz"])
    with pytest.raises(WorkbenchError, match="2 weights for 3 adapters"):
        MergeBuilder(lab, weights=[1.0, 2.0])
    with pytest.raises(WorkbenchError, match="choose one of"):
        MergeBuilder(lab, method="sum")
    needs = [m for m in merging.MERGES.names() if merging.MERGES.get(m).needs]
    for m in needs:
        with pytest.raises(WorkbenchError, match="call lab.merge"):
            MergeBuilder(lab, method=m)
    with pytest.raises(WorkbenchError, match="no tasks"):
        MergeBuilder(lab).evaluate()


def test_quick_evaluation_shows_progress_and_goes_stale(lab, tasks):
    b = MergeBuilder(lab, tasks=tasks, method="task_arithmetic", eval_limit=3)
    b.comm = comm = FakeComm()
    b._handle_custom_msg({"action": "evaluate"}, [])  # the "evaluate" button
    progress = [s["progress"] for s in comm.states() if "progress" in s]
    assert [p["done"] for p in progress] == [0, 1, 2, 3, 4] and {p["total"] for p in progress} == {4}
    assert progress[-1]["label"] == "done" and b.eval_status == "current"
    assert sorted(lab.adapters) == ["a", "b", "c"]  # the temporary merge is gone again
    frame = b.scores_frame.set_index("task")
    assert list(frame.solo_adapter) == ["a", "b"]
    # the same numbers from the engine directly
    check = merging.merge(sources(lab), "task_arithmetic", [1.0] * 3, name="check").adapter
    lab.add_adapter(check)
    direct = lab.evaluate(["check", "a", "b"], list(tasks.values()), limit=3, progress=False)
    value = direct.set_index(["adapter", "task"]).value
    assert frame.merged["toy_a"] == pytest.approx(value["check", "toy_a"])
    assert frame.merged["toy_b"] == pytest.approx(value["check", "toy_b"])
    assert frame.solo["toy_b"] == pytest.approx(value["b", "toy_b"])
    assert frame.normalized["toy_b"] == pytest.approx(value["b", "toy_b"] / value["check", "toy_b"])  # loss
    if value["a", "toy_a"] > 0:
        assert frame.normalized["toy_a"] == pytest.approx(value["check", "toy_a"] / value["a", "toy_a"])
    assert b.scores["rows"][0]["task"] == "toy_a" and b.scores["limit"] == 3
    # settings move on: the scores are kept but labelled stale; back to them: current again
    b.weights = {"a": 0.5}
    assert b.eval_status.startswith("stale")
    b.weights = {"a": 1.0, "b": 1.0, "c": 1.0}
    assert b.eval_status == "current"
    # a second evaluation reuses the solo scores: only the merge is scored
    comm.sent.clear()
    b.active = ["a", "c"]  # toy_b's adapter is not in the merge: that task is not scored
    b.evaluate()
    progress = [s["progress"] for s in comm.states() if "progress" in s]
    assert progress[-1] == {"done": 1, "total": 1, "label": "done"}
    assert list(b.scores_frame.task) == ["toy_a"]


def test_commit_adds_the_merge_and_export_writes_it(lab, tmp_path):
    b = MergeBuilder(lab, method="svd", name="m")
    b.comm = FakeComm()
    b.set_state({"name": "mine"})
    b._handle_custom_msg({"action": "commit"}, [])  # the "commit" button
    assert "mine" in lab.adapters and b.committed == ["mine"] and "added 'mine'" in b.notice
    assert lab.adapters["mine"].lineage["merge"]["method"] == "svd" and lab.last_merge is not None
    path = next(iter(b.result.adapter.modules))
    torch.testing.assert_close(lab.adapters["mine"].delta(path), b.result.adapter.delta(path))
    assert b.name == "mine_2" and "mine_2" not in lab.adapters  # the next name is free
    b.name = "mine"
    b._handle_custom_msg({"action": "commit"}, [])  # taken: the view shows why, nothing changes
    assert b.notice.startswith("commit failed") and b.committed == ["mine"]
    # export of the committed settings writes the committed adapter, with its lineage
    b.export_path = str(tmp_path / "out")
    b._handle_custom_msg({"action": "export"}, [])
    assert b.exported == str((tmp_path / "out").resolve()) and b.exported in b.notice
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert '"svd"' in json.dumps(config)
    back = read_peft(tmp_path / "out", "back")
    torch.testing.assert_close(back.delta(path), lab.adapters["mine"].delta(path), rtol=1e-5, atol=1e-6)
    b._handle_custom_msg({"action": "export"}, [])  # the folder exists now
    assert b.notice.startswith("export failed")
    # other settings, not committed: the preview is written under the builder's name
    b.method, b.name = "cat", "fresh"
    written = b.export(tmp_path / "fresh")
    assert read_peft(written).name == "fresh" and "fresh" not in lab.adapters


def test_controls_from_method_params():
    assert control("density", 0.2) == {"name": "density", "kind": "float", "min": 0.01, "max": 1.0,
                                       "step": 0.01, "default": 0.2, "optional": False}
    assert control("rank", None)["optional"] and control("rank", None)["kind"] == "int"
    assert control("peft_compat", False) == {"name": "peft_compat", "kind": "bool", "default": False}
    assert control("truncate", "exact", ("exact", "lowrank"))["kind"] == "choice"
    assert control("mode", None)["kind"] == "text"
    specs = controls({"density": 0.2, "rank": None, "truncate": "exact", "flag": False, "k": 3},
                     {"truncate": ("exact", "lowrank")})
    assert coerce(specs, {"density": "0.5", "rank": 4.0, "truncate": "lowrank", "flag": 1, "other": 9}) == {
        "density": 0.5, "rank": 4, "truncate": "lowrank", "flag": True, "k": 3}
    assert coerce(specs, {"rank": "", "density": None})["rank"] is None  # emptied fields
    assert coerce(specs, {"density": None})["density"] == 0.2
    with pytest.raises(WorkbenchError, match="one of"):
        coerce(specs, {"truncate": "fast"})
    with pytest.raises(WorkbenchError, match="an integer"):
        coerce(specs, {"rank": 2.5})
    with pytest.raises(WorkbenchError, match="a number"):
        coerce(specs, {"density": "x"})
    with pytest.raises(WorkbenchError, match="controls for"):
        control("odd", object())
