"""`lora-workbench serve`: clear refusals (port, folder), and the Panel twins that carry the widgets."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import tiny_lab
from widgets._frontend import DIST
from workbench.cli import main
from workbench.errors import WorkbenchError

pn = pytest.importorskip("panel")


@pytest.fixture(scope="module")
def adapters():
    lab = tiny_lab()
    for i, name in enumerate(["a", "b", "c"]):
        lab.new_adapter(name, r=2 + i, seed=i)
    return dict(lab.adapters), lab


@pytest.fixture(scope="module")
def folder(adapters, tmp_path_factory):
    ads, lab = adapters
    root = tmp_path_factory.mktemp("adapters")
    for name in ads:
        lab.save_adapter(name, root / name)
    return root


@pytest.mark.parametrize("port", ["0", "70000", "-1"])
def test_serve_refuses_a_port_that_is_no_port(port, folder, capsys):
    assert main(["serve", "--adapters", str(folder), "--port", port, "--no-browser"]) == 2
    assert f"--port {port} is not a TCP port; give a number from 1 to 65535" in capsys.readouterr().err


def test_serve_refuses_a_port_in_use(folder, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--adapters", str(folder), "--port", str(port), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "pass another --port" in err


def test_serve_refuses_a_missing_or_empty_folder(tmp_path, capsys):
    assert main(["serve", "--adapters", str(tmp_path / "nope"), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert f"adapter folder {tmp_path / 'nope'} does not exist; pass --adapters DIR" in err
    from widgets.dashboard import load_folder

    with pytest.raises(WorkbenchError, match="holds no adapter"):
        load_folder(tmp_path)


def test_serve_binds_to_localhost_by_default():
    from workbench.cli import parser

    args = parser().parse_args(["serve"])
    assert (args.host, args.port, args.adapters) == ("127.0.0.1", 5006, None)


def test_the_folder_loads_as_adapters(folder, adapters):
    from widgets.dashboard import Dashboard

    board = Dashboard.from_folder(folder, load_base=False)  # tiny-llama's files: no zoo base to load
    assert list(board.adapters) == ["a", "b", "c"] and board.lab is None
    assert set(board.views()) == {"Angle matrix", "Interference map", "Merge builder", "Evaluation", "Runs"}


def test_twin_runs_the_widgets_module_and_syncs_both_ways(adapters):
    """A change from the page reaches the controller; what it computes comes back to the page."""
    from widgets import AngleMatrix, InterferenceMap
    from widgets.dashboard import twin

    ads, _ = adapters
    widget = AngleMatrix.from_adapters(ads)
    comp = twin(widget)
    assert isinstance(comp, pn.custom.AnyWidgetComponent)
    assert comp._esm == str(widget._esm)  # the widget's own bundle, as it is
    assert comp._esm == (DIST / "angle_matrix.js").read_text() and comp.lw_rename == {}
    assert comp.matrix["shape"] == [3, 3] and comp.breakdown == {}
    comp.selected = ["a", "c"]  # what a click in the page does
    assert widget.selected == ["a", "c"]
    assert comp.breakdown["pair"] == ["a", "c"] and comp.breakdown == widget.breakdown
    widget.selected = ["b", "a"]  # and from Python
    assert comp.selected == ["b", "a"] and comp.breakdown["pair"] == ["b", "a"]
    comp.selected = ["a", "nope"]  # refused by the widget's validator: the page is put back
    assert widget.selected == ["b", "a"] and comp.selected == ["b", "a"]

    imap = twin(InterferenceMap.from_adapters(ads))
    imap.active = ["a", "b"]
    assert imap.status == "current" and "a×1, b×1" in imap.heatmap["title"]


def test_twin_renames_traits_panel_reserves_and_carries_send():
    import anywidget
    import traitlets as t

    from widgets.dashboard import MESSAGE, twin

    class Probe(anywidget.AnyWidget):
        _esm = "function render({ model, el }) {}\nexport default { render };"
        name = t.Unicode("x").tag(sync=True)
        got = t.List().tag(sync=True)

        def __init__(self, **kw):
            super().__init__(**kw)
            self.on_msg(lambda _w, content, _b: setattr(self, "got", [*self.got, content]))

    probe = Probe()
    comp = twin(probe)
    assert comp.w_name == "x" and comp.lw_rename == {"name": "w_name"}  # the view's module reads it
    comp.w_name = "y"
    assert probe.name == "y"
    setattr(comp, MESSAGE, {"n": 1, "msg": {"action": "commit"}})  # what model.send does in the page
    assert probe.got == [{"action": "commit"}] and comp.got == [{"action": "commit"}]


def test_the_merge_builder_and_evaluation_get_the_tasks_the_lineage_names():
    """The dashboard's builder evaluates on the tasks its adapters were trained on (not on none)."""
    from widgets.dashboard import Dashboard

    lab = tiny_lab()
    for name, task in (("a", "arithmetic"), ("b", "topic"), ("c", "no-such-task")):
        lab.new_adapter(name, r=2, seed=0).lineage["tasks"] = [task]
    board = Dashboard(dict(lab.adapters), lab=lab)
    assert list(board._tasks_of(["a", "b", "c"])) == ["arithmetic", "topic"]
    assert board._tasks_of(["c"]) == {}
    builder = board.views()["Merge builder"]._lw_widget
    assert list(builder.tasks) == ["arithmetic", "topic"] and builder.eval_limit == 4
