"""Geometry widgets without a browser: state, binary buffers, simulated front-end messages, errors."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

from tests.analysis.helpers import random_adapter
from tests.widgets.fake_comm import FakeComm
from widgets import AngleMatrix, InterferenceMap, Spectrum, SubspaceView
from widgets._heatmap import decode, module_by_layer
from workbench import analysis
from workbench.errors import WorkbenchError


@pytest.fixture(scope="module")
def adapters():
    return {n: random_adapter(n, seed) for seed, n in enumerate(["a", "b", "c"])}


def test_angle_matrix_sends_the_cosines_as_binary(adapters):
    m = AngleMatrix.from_adapters(adapters)
    state = m.get_state()
    assert state["_model_module"] == "anywidget" and state["value"] == "cosine"
    _, paths, buffers = _remove_buffers(state)
    assert ["matrix", "values"] in paths and all(isinstance(b, bytes | memoryview) for b in buffers)
    expected = analysis.angles(adapters).pivot(index="adapter_a", columns="adapter_b", values="cosine")
    assert m.matrix["rows"] == m.matrix["cols"] == ["a", "b", "c"] and m.matrix["shape"] == [3, 3]
    np.testing.assert_allclose(decode(m.matrix), expected.loc[["a", "b", "c"], ["a", "b", "c"]], atol=1e-6)
    assert m.breakdown == {}
    assert "application/vnd.jupyter.widget-view+json" in m._repr_mimebundle_()[0]


def test_a_click_reaches_python_and_fills_the_breakdown(adapters):
    m = AngleMatrix.from_adapters(adapters)
    m.set_state({"selected": ["a", "c"]})  # what the front end sends on a click
    assert m.selected == ["a", "c"] and m.breakdown["pair"] == ["a", "c"]
    rows = analysis.angles(adapters, by="module").query("adapter_a == 'a' and adapter_b == 'c'")
    np.testing.assert_allclose(decode(m.breakdown), module_by_layer(rows, "cosine"), atol=1e-6)
    assert m.breakdown["rows"] == ["mlp.down_proj", "self_attn.q_proj", "self_attn.v_proj"]
    assert m.breakdown["cols"] == ["0", "1"]
    assert np.isnan(decode(m.breakdown)[0, 0])  # down_proj only exists in layer 1
    m.selected = []
    assert m.breakdown == {}


def test_angle_matrix_from_frames_and_in_degrees(adapters):
    total, by_module = analysis.angles(adapters), analysis.angles(adapters, by="module")
    m = AngleMatrix.from_frame(total, by_module=by_module, value="angle_deg", selected=["b", "a"])
    assert m.breakdown["pair"] == ["b", "a"]
    assert decode(m.matrix)[0, 0] == pytest.approx(0, abs=1e-3)
    assert m.matrix["lo"] > 90 > m.matrix["hi"]  # small angles (aligned) at the red end
    no_breakdown = AngleMatrix.from_frame(total, selected=["a", "b"])  # no per-module frame
    assert no_breakdown.breakdown == {}


def test_angle_matrix_bad_input(adapters):
    m = AngleMatrix.from_adapters(adapters)
    with pytest.raises(traitlets.TraitError, match="two of"):
        m.selected = ["a", "zzz"]
    with pytest.raises(WorkbenchError, match="choose one of"):
        AngleMatrix.from_adapters(adapters, value="sine")
    with pytest.raises(WorkbenchError, match="no adapters"):
        AngleMatrix.from_adapters({})
    with pytest.raises(WorkbenchError, match="by_module"):
        AngleMatrix.from_frame(analysis.angles(adapters, by="module"))


def test_interference_map_matches_the_analysis(adapters):
    m = InterferenceMap.from_adapters(adapters, density=0.3)
    assert m.status == "current" and m.active == ["a", "b", "c"] and m.metric == "conflict_rate"
    _, paths, _ = _remove_buffers(m.get_state())
    assert ["heatmap", "values"] in paths
    expected = analysis.interference(adapters, density=0.3)
    np.testing.assert_allclose(decode(m.heatmap), module_by_layer(expected, "conflict_rate"), atol=1e-6)


def test_controls_recompute(adapters):
    m = InterferenceMap.from_adapters(adapters)
    m.comm = comm = FakeComm()
    # one message from the front end, as the view sends it after the debounce
    m.set_state({"active": ["a", "c"], "weights": {"a": 0.5, "b": 1.0, "c": -1.0}, "density": 0.5,
                 "status": "computing…"})
    [answer] = comm.states()  # the new map and "current" in one message, the map as a buffer
    assert answer["status"] == m.status == "current" and "values" not in answer["heatmap"]
    assert len(comm.sent[-1][1]) == 1
    ac = {"a": adapters["a"], "c": adapters["c"]}
    expected = analysis.interference(ac, weights=[0.5, -1.0], density=0.5)
    np.testing.assert_allclose(decode(m.heatmap), module_by_layer(expected, "conflict_rate"), atol=1e-6)
    m.metric = "mass_lost"  # no recompute: the same frame, another column
    assert m.frame is not None and "mass lost" in m.heatmap["title"]
    np.testing.assert_allclose(decode(m.heatmap), module_by_layer(expected, "mass_lost"), atol=1e-6)
    comm.sent.clear()
    m.density = 0.1  # from Python: "computing…" goes out before the work, "current" with the map
    assert [s.get("status") for s in comm.states()] == [None, "computing…", "current"]
    expected = analysis.interference(ac, weights=[0.5, -1.0], density=0.1)
    np.testing.assert_allclose(decode(m.heatmap), module_by_layer(expected, "mass_lost"), atol=1e-6)


def test_fewer_than_two_active_clears_the_map(adapters):
    m = InterferenceMap.from_adapters(adapters, active=["a", "b"])
    m.active = ["a"]
    assert m.heatmap == {} and m.status == "choose at least two adapters"
    m.active = ["a", "b"]
    assert m.status == "current" and m.heatmap["shape"] == [3, 2]


def test_interference_map_bad_input(adapters):
    with pytest.raises(traitlets.TraitError, match="unknown metric 'sign'.*conflict_rate"):
        InterferenceMap.from_adapters(adapters, metric="sign")
    with pytest.raises(WorkbenchError, match="at least two"):
        InterferenceMap.from_adapters({})
    with pytest.raises(WorkbenchError, match="at least two"):
        InterferenceMap.from_adapters([adapters["a"]])
    with pytest.raises(WorkbenchError, match="2 weights for 3 adapters"):
        InterferenceMap.from_adapters(adapters, weights=[1.0, 2.0])
    m = InterferenceMap.from_adapters(adapters)
    with pytest.raises(traitlets.TraitError, match="unknown metric"):
        m.metric = "nope"
    with pytest.raises(traitlets.TraitError, match=r"\(0, 1\]"):
        m.density = 0
    with pytest.raises(traitlets.TraitError, match="unknown adapters"):
        m.active = ["a", "zzz"]


def test_static_figures(adapters):
    fig = Spectrum(adapters)
    assert isinstance(fig, go.Figure)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 3 and heat[0].x[:2] == ("0.q", "0.v")
    dots = [t for t in fig.data if t.type == "scatter"]
    erank = analysis.effective_rank(analysis.spectrum(adapters["a"])).sort_values(["layer", "module"])
    np.testing.assert_allclose(dots[0].y, erank.effective_rank)
    fig = SubspaceView(adapters)
    assert [t.y for t in fig.data][0] == ("a · b", "a · c", "b · c") and len(fig.data) == 2
    frame = analysis.subspaces(adapters)
    row = frame.query("adapter_a == 'a' and adapter_b == 'b' and side == 'column' and layer == 0 "
                      "and module == 'self_attn.q_proj'")
    assert fig.data[0].z[0][0] == pytest.approx(row.overlap.iloc[0])
