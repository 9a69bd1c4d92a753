"""SearchProgress: the figures render a search's frame, the view follows a background search live, and a
candidate opens in the MergeBuilder with its method, weights and density."""

from __future__ import annotations

import threading

import pytest

from tests.widgets.merge_lab import tiny_merge_lab
from widgets.search_progress import SearchProgress, pareto_figure, progress_figure, weights_figure
from workbench.errors import WorkbenchError
from workbench.search import Candidate, FunctionObjective, SearchSpace, search


def _objective():
    def scores(c):
        return {"x": c.weights["a"], "y": 1.5 - c.weights["a"] + 0.1 * c.weights["b"]}
    return FunctionObjective(scores, ["x", "y"])


def test_the_figures_render_the_frame():
    space = SearchSpace(["a", "b"], methods=["ties"], density=(0.2, 1.0))
    run = search(_objective(), space, "random", budget=5, seed=0, progress=False)
    fig = progress_figure(run.frame)
    assert [len(t.x) for t in fig.data] == [5, 5]
    assert list(fig.data[1].y) == sorted(fig.data[1].y)  # best so far never falls
    assert max(fig.data[0].y) == pytest.approx(run.best_value)
    bars = weights_figure(run.frame).data[0]
    assert list(bars.x) == ["a", "b"] and list(bars.y) == [run.best.weights["a"], run.best.weights["b"]]
    front = pareto_figure(run.frame, "x", "y")
    assert sum(len(t.x) for t in front.data) == 5
    assert weights_figure(run.frame.iloc[:0]).layout.title.text.endswith("no candidate yet")


def test_the_view_follows_a_background_search_and_opens_a_candidate():
    lab = tiny_merge_lab()
    gate = threading.Event()

    def slow(c):
        gate.wait(5)
        return {"x": c.weights["a"], "y": c.weights["b"]}

    space = SearchSpace(["a", "b", "c"], methods=["ties"], density=(0.2, 0.9))
    run = search(FunctionObjective(slow, ["x", "y"]), space, "random", budget=4, seed=1, background=True,
                 progress=False)
    view = SearchProgress.from_run(run, lab=lab)
    assert "0</b> evaluations" in view.status.value
    gate.set()
    run.wait(10)
    assert "4</b> evaluations" in view.status.value and "stopped: budget" in view.status.value
    assert len(view.progress.data[0].x) == 4 and view.pick.max == 3
    view.x_task.value, view.y_task.value = "y", "x"
    assert view.pareto.layout.xaxis.title.text == "y"
    builder = view.open_candidate(2)
    c = run.candidates[2]
    assert builder.method == "ties" and builder.params["density"] == pytest.approx(c.density)
    assert builder.weights == pytest.approx(dict(c.weights))
    with pytest.raises(WorkbenchError, match="no candidate 9"):
        view.open_candidate(9)
    view.pick.value = 1
    view._open_clicked()
    assert view.builder_box.children and view.builder_box.children[0].weights == pytest.approx(
        dict(run.candidates[1].weights))


def test_a_frame_alone_renders_but_opens_nothing():
    run = search(_objective(), SearchSpace(["a", "b"]), "grid", budget=4, progress=False)
    view = SearchProgress.from_frame(run.frame)
    assert view.open_button.disabled and "4</b> evaluations" in view.status.value
    with pytest.raises(WorkbenchError, match="no lab"):
        view.open_candidate(0)
    layered = Candidate({"a": 1.0}, layer_weights={0: {"a": 0.5}})
    view.lab, view.candidates = object(), [layered]
    with pytest.raises(WorkbenchError, match="layer-wise"):
        view.open_candidate(0)
