"""MergeBuilder, the view of a MergeModel, without a browser: every trait comes from the model, previews
travel as binary, a front-end message is answered with its request number, refusals are TraitErrors,
and the buttons reach the model. (The model's logic is tested in test_merge_model.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

from tests.widgets.fake_comm import FakeComm
from tests.widgets.merge_lab import sources, tiny_merge_lab, toy_tasks
from widgets import MergeBuilder
from widgets._heatmap import decode, module_by_layer
from widgets.merge_model import OFFER, OUTPUTS, SETTINGS, VIEW, MergeModel
from workbench import merging
from workbench.errors import WorkbenchError


@pytest.fixture
def lab():
    return tiny_merge_lab()


def test_traits_mirror_the_model_and_previews_travel_as_binary(lab):
    b = MergeBuilder.from_lab(lab, method="ties", density=0.5)
    assert all(getattr(b, k) == v for k, v in b.model.state().items() if not isinstance(v, dict)
               or "values" not in v)
    assert set(b.model.state()) == {*OFFER, *SETTINGS, *VIEW, *OUTPUTS}
    state = b.get_state()
    assert state["_model_module"] == "anywidget" and b.status == "current" and b.answered == b.request == 0
    _, paths, buffers = _remove_buffers(state)
    binary = {tuple(p) for p in paths}
    assert {("error_map", "values"), ("interference", "values"), ("angles", "values")} <= binary
    assert all(isinstance(x, bytes | memoryview) for x in buffers)
    assert b.params == {**merging.method_params("ties"), "density": 0.5}
    b.metric = "mass_lost"
    assert b.model.metric == "mass_lost" and decode(b.interference).shape == decode(b.error_map).shape
    with pytest.raises(WorkbenchError, match="from_lab"):
        MergeBuilder(lab)


def test_a_front_end_message_is_answered_with_its_request_number(lab):
    b = MergeBuilder.from_lab(lab)
    b.comm = comm = FakeComm()
    # what the view sends after the debounce: the settings and a new request number
    b.set_state({"active": ["a", "c"], "weights": {"a": 0.5, "b": 1.0, "c": -1.0}, "method": "dare_ties",
                 "params": {"density": 0.3}, "seed": 3, "request": 1, "status": "computing…"})
    b.wait()  # a browser message is computed in the background (test_merge_background.py)
    states = comm.states()
    [answer] = [s for s in states if "answered" in s]  # one answer, with the previews
    assert answer["answered"] == 1 and answer["status"] == "current" and "values" not in answer["error_map"]
    [params] = [s["params"] for s in states if "params" in s]  # completed: the view is told
    assert params == b.params == {**merging.method_params("dare_ties"), "density": 0.3}
    expected = merging.merge(sources(lab, "ac"), "dare_ties", [0.5, -1.0], name="merged", seed=3, density=0.3)
    np.testing.assert_allclose(decode(b.error_map), module_by_layer(expected.error, "value"), rtol=1e-5)
    result = b.result
    comm.sent.clear()
    b.set_state({"request": 2})  # the same settings: answered without a new merge
    assert b.result is result and b.answered == 2 and b.status == "current"
    assert [s for s in comm.states() if "status" in s and s["status"] != "current"] == []
    comm.sent.clear()
    b.seed = 4  # from Python: "computing…" goes out before the work, then the previews (waited for)
    assert comm.states()[:2] == [{"seed": 4}, {"status": "computing…", "computing": 2, "stale": True}]
    assert comm.states()[-1]["status"] == "current"
    assert b.result is not result and b.answered == b.request == 2
    b.method = "svd"  # the model adapts the parameters; the trait follows
    assert b.params == merging.method_params("svd") == b.model.params


def test_refusals_are_trait_errors_and_change_nothing(lab):
    b = MergeBuilder.from_lab(lab, method="ties")
    with pytest.raises(traitlets.TraitError, match="takes no parameter"):
        b.params = {"nope": 1}
    with pytest.raises(traitlets.TraitError, match="unknown method"):
        b.method = "zzz"
    with pytest.raises(traitlets.TraitError, match="unknown adapters"):
        b.active = ["a", "zzz"]
    with pytest.raises(traitlets.TraitError, match="unknown metric"):
        b.metric = "zzz"
    assert (b.model.method, b.model.active) == ("ties", ["a", "b", "c"])


def test_the_buttons_reach_the_model(lab, tmp_path):
    b = MergeBuilder.from_lab(lab, tasks=toy_tasks(), method="task_arithmetic", eval_limit=3, name="m")
    b.comm = comm = FakeComm()
    b._handle_custom_msg({"action": "evaluate"}, [])
    progress = [s["progress"] for s in comm.states() if "progress" in s]
    assert [p["done"] for p in progress] == [0, 1, 2, 3, 4] and b.eval_status == "current"
    assert b.scores["rows"][0]["task"] == "toy_a" and b.scores_frame is b.model.scores_frame
    b.weights = {"a": 0.5}
    assert b.eval_status.startswith("stale")
    b.set_state({"name": "mine"})
    b._handle_custom_msg({"action": "commit"}, [])
    assert "mine" in lab.adapters and b.committed == ["mine"] and b.name == "mine_2"
    b._handle_custom_msg({"action": "commit"}, [])  # the same settings again under a free name
    b.name = "mine"
    b._handle_custom_msg({"action": "commit"}, [])
    assert b.notice.startswith("commit failed")
    b.export_path = str(tmp_path / "out")
    b._handle_custom_msg({"action": "export"}, [])
    assert b.exported == str((tmp_path / "out").resolve())
    b._handle_custom_msg({"action": "nothing"}, [])  # an unknown action is ignored
    assert isinstance(b.model, MergeModel)
