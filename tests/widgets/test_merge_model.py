"""MergeModel in plain Python (no traitlets, no browser), on a tiny model: previews equal the engine's,
request numbers, announcements, method changes, refusals, the quick evaluation, commit and export, and
method controls built from the registry's parameter declarations."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.widgets.merge_lab import sources, tiny_merge_lab, toy_tasks
from widgets._heatmap import decode, module_by_layer
from widgets.merge_controls import coerce, control, controls, declared, needs
from widgets.merge_model import MergeModel
from workbench import analysis, merging
from workbench.adapters import read_peft
from workbench.errors import WorkbenchError
from workbench.registry import Param


@pytest.fixture
def lab():
    return tiny_merge_lab()


def test_the_model_needs_no_traitlets():
    code = ("import sys, widgets.merge_model; "
            "print(sorted(m for m in ('traitlets', 'anywidget', 'ipywidgets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_previews_are_the_engines(lab):
    m = MergeModel(lab, method="ties", params={"density": 0.5})
    assert m.status == "current" and m.answered == m.request == 0
    needy = [n for n in merging.MERGES.names() if needs(merging.MERGES.info(n))]
    assert m.methods == [n for n in merging.MERGES.names() if n not in needy] and "cat_learned" in needy
    for method in m.methods:
        assert [c["name"] for c in m.controls[method]] == list(declared(method))
    assert m.params == {**merging.method_params("ties"), "density": 0.5}
    expected = merging.merge(sources(lab), "ties", [1.0] * 3, name="merged", density=0.5)
    np.testing.assert_allclose(decode(m.error_map), module_by_layer(expected.error, "value"), rtol=1e-5)
    assert m.result.total_error == pytest.approx(expected.total_error, rel=1e-6)
    named = {n: lab.adapters[n] for n in "abc"}
    frame = analysis.interference(named, weights=[1.0] * 3, density=0.5)
    np.testing.assert_allclose(decode(m.interference), module_by_layer(frame, "conflict_rate"), atol=1e-6)
    cos = analysis.angles(named).pivot(index="adapter_a", columns="adapter_b", values="cosine")
    np.testing.assert_allclose(decode(m.angles), cos.loc[list("abc"), list("abc")], atol=1e-6)
    assert "ties of a×1, b×1, c×1: rank" in m.summary
    m.update(metric="mass_lost")  # another column of the same frame, no new merge
    np.testing.assert_allclose(decode(m.interference), module_by_layer(frame, "mass_lost"), atol=1e-6)


def test_announcements_and_request_numbers(lab):
    m = MergeModel(lab)
    heard: list[dict] = []
    m.subscribe(heard.append)
    m.update(active=["a", "c"], weights={"a": 0.5, "b": 1.0, "c": -1.0}, method="dare_ties",
             params={"density": 0.3}, seed=3, request=1)
    assert heard[0] == {"status": "computing…"}  # before the work, on its own
    (answer,) = heard[1:]
    assert answer["answered"] == 1 and answer["status"] == "current" and answer["error_map"]
    assert answer["params"] == m.params == {**merging.method_params("dare_ties"), "density": 0.3}
    expected = merging.merge(sources(lab, "ac"), "dare_ties", [0.5, -1.0], name="merged", seed=3, density=0.3)
    np.testing.assert_allclose(decode(m.error_map), module_by_layer(expected.error, "value"), rtol=1e-5)
    # the same settings with a new request: answered without a new merge
    result = m.result
    heard.clear()
    m.update(request=2)
    assert m.result is result and [h["answered"] for h in heard] == [2] and "error_map" not in heard[0]
    m.update(request=2, name="other", eval_limit=3)  # nothing the previews depend on: no announcement
    assert len(heard) == 1 and m.name == "other"


def test_a_method_change_keeps_the_shared_parameters(lab):
    m = MergeModel(lab, method="ties", params={"density": 0.4})
    m.update(method="dare_ties")
    assert m.params == {**merging.method_params("dare_ties"), "density": 0.4}
    m.update(method="svd")
    assert m.params == merging.method_params("svd") and m.status == "current"
    assert m.result.adapter.lineage["merge"]["method"] == "svd"
    m.update(method="magnitude_prune", params={"density": 0.7}, request=5)
    assert m.params["density"] == 0.7 and m.answered == 5


def test_bad_settings_are_refused_or_reported(lab):
    m = MergeModel(lab, method="ties")
    with pytest.raises(WorkbenchError, match="takes no parameter"):
        m.update(params={"nope": 1})
    with pytest.raises(WorkbenchError, match="unknown method"):
        m.update(method="zzz")
    with pytest.raises(WorkbenchError, match="unknown adapters"):
        m.update(active=["a", "zzz"])
    with pytest.raises(WorkbenchError, match="a number"):
        m.update(params={"density": "many"})
    with pytest.raises(WorkbenchError, match="no setting"):
        m.update(colour="red")
    assert m.method == "ties" and m.status == "current"  # nothing changed
    m.update(params={"density": 1.5}, request=1)  # the engine refuses; the view is answered
    assert m.status.startswith("error:") and "density" in m.status and m.error_map == {}
    assert m.answered == 1 and m.result is None
    with pytest.raises(WorkbenchError, match="no merge"):
        m.commit()
    m.update(params={"density": 0.5})
    assert m.status == "current"
    m.update(active=["a"])  # one source: a merge, but nothing to compare
    assert m.error_map and m.interference == {} and m.angles == {}
    m.update(active=[])
    assert m.status == "choose at least one adapter" and m.error_map == {}
    with pytest.raises(WorkbenchError, match="zzz"):
        MergeModel(lab, ["a", "zzz"])
    with pytest.raises(WorkbenchError, match="2 weights for 3 adapters"):
        MergeModel(lab, weights=[1.0, 2.0])
    with pytest.raises(WorkbenchError, match="choose one of"):
        MergeModel(lab, method="sum")
    for needy in [n for n in merging.MERGES.names() if needs(merging.MERGES.info(n))]:
        with pytest.raises(WorkbenchError, match="call lab.merge"):
            MergeModel(lab, method=needy)
    with pytest.raises(WorkbenchError, match="no tasks"):
        MergeModel(lab).evaluate()


def test_quick_evaluation_progress_and_staleness(lab):
    tasks = toy_tasks()
    m = MergeModel(lab, tasks=tasks, eval_limit=3)
    heard: list[dict] = []
    m.subscribe(heard.append)
    m.act("evaluate")
    progress = [h["progress"] for h in heard if "progress" in h]
    assert [p["done"] for p in progress] == [0, 1, 2, 3, 4] and progress[-1]["label"] == "done"
    assert heard[0] == {"eval_status": "evaluating…"} and m.eval_status == "current"
    assert sorted(lab.adapters) == ["a", "b", "c"]  # the preview was never added for good
    frame = m.scores_frame.set_index("task")
    assert list(frame.solo_adapter) == ["a", "b"]
    direct = lab.evaluate([m.result.adapter, "a", "b"], tasks, limit=3, progress=False)
    value = direct.set_index(["adapter", "task"]).value
    assert frame.merged["toy_b"] == pytest.approx(value["merged", "toy_b"])
    assert frame.normalized["toy_b"] == pytest.approx(value["b", "toy_b"] / value["merged", "toy_b"])  # loss
    assert m.scores["rows"][0]["task"] == "toy_a" and m.scores["limit"] == 3
    m.update(weights={"a": 0.5, "b": 1.0, "c": 1.0})
    assert m.eval_status.startswith("stale")
    m.update(weights={"a": 1.0, "b": 1.0, "c": 1.0})
    assert m.eval_status == "current"
    heard.clear()
    m.update(active=["a", "c"])  # toy_b's adapter is not in the merge: that task is not scored
    m.evaluate()
    assert [h["progress"] for h in heard if "progress" in h][-1] == {"done": 1, "total": 1, "label": "done"}
    assert list(m.scores_frame.task) == ["toy_a"]


def test_commit_and_export(lab, tmp_path):
    m = MergeModel(lab, method="svd", name="mine")
    m.act("commit")
    assert "mine" in lab.adapters and m.committed == ["mine"] and "added 'mine'" in m.notice
    path = next(iter(m.result.adapter.modules))
    torch.testing.assert_close(lab.adapters["mine"].delta(path), m.result.adapter.delta(path))
    assert m.name == "mine_2" and "mine_2" not in lab.adapters  # the next name is free
    m.update(name="mine")
    m.act("commit")  # taken: the notice says why, nothing changes
    assert m.notice.startswith("commit failed") and m.committed == ["mine"]
    m.update(export_path=str(tmp_path / "out"))
    m.act("export")  # the committed adapter, with its lineage
    assert m.exported == str((tmp_path / "out").resolve()) and m.exported in m.notice
    assert '"svd"' in json.dumps(json.loads((tmp_path / "out" / "adapter_config.json").read_text()))
    m.act("export")
    assert m.notice.startswith("export failed")
    m.update(method="cat", name="fresh")  # not committed: the preview is written under the name
    written = m.export(tmp_path / "fresh")
    assert read_peft(written).name == "fresh" and "fresh" not in lab.adapters


def test_controls_from_declarations():
    assert control(Param("density", 0.2, "kept fraction", low=0.0, high=1.0)) == {
        "name": "density", "default": 0.2, "doc": "kept fraction", "kind": "float", "min": 0.0, "max": 1.0,
        "step": 0.01, "optional": False}
    rank = control(Param("rank", None, "output rank", low=1))
    assert (rank["kind"], rank["min"], rank["optional"]) == ("int", 1, True) and rank["max"] > 1
    assert control(Param("flag", False))["kind"] == "bool"
    assert control(Param("truncate", "exact", choices=("exact", "lowrank")))["kind"] == "choice"
    assert control(Param("mode", None))["kind"] == "text"
    unbounded = control(Param("k", 3))  # no bounds declared yet: a range from the default
    assert (unbounded["kind"], unbounded["min"], unbounded["max"]) == ("int", 0, 64)
    assert control(Param("beta", -2.0))["min"] < -2.0 < control(Param("beta", -2.0))["max"]
    specs = controls({"density": Param("density", 0.2, low=0.0, high=1.0), "rank": Param("rank", None, low=1),
                      "truncate": Param("truncate", "exact", choices=("exact", "lowrank")),
                      "flag": Param("flag", False), "k": Param("k", 3), "free": Param("free", None)})
    assert coerce(specs, {"density": "0.5", "rank": 4.0, "truncate": "lowrank", "flag": 1, "other": 9}) == {
        "density": 0.5, "rank": 4, "truncate": "lowrank", "flag": True, "k": 3, "free": None}
    assert coerce(specs, {"rank": "", "density": None})["rank"] is None  # emptied fields
    assert coerce(specs, {"density": None})["density"] == 0.2
    assert coerce(specs, {"free": "7"})["free"] == 7 and coerce(specs, {"free": "x"})["free"] == "x"
    with pytest.raises(WorkbenchError, match="one of"):
        coerce(specs, {"truncate": "fast"})
    with pytest.raises(WorkbenchError, match="an integer"):
        coerce(specs, {"rank": 2.5})
    with pytest.raises(WorkbenchError, match="a number"):
        coerce(specs, {"density": "x"})
    with pytest.raises(WorkbenchError, match="controls for"):
        control(Param("odd", object()))
    for method in merging.MERGES.names():  # every registered method gets controls
        controls(declared(method))
