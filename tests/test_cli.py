"""The lora-workbench command: notebooks are built from jupytext sources; inspect summarizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tiny_lab
from workbench.cli import build_notebooks, main

ROOT = Path(__file__).resolve().parents[1]


def test_notebooks_are_built_and_user_notebooks_kept(tmp_path):
    made = build_notebooks(ROOT / "tutorials", tmp_path)
    assert [p.name for p in made][0] == "00_quickstart.ipynb"
    nb = json.loads(made[0].read_text())
    assert nb["cells"] and nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "jupytext" not in nb["metadata"]  # not paired: Lab opens it, edits stay in the notebook
    made[0].write_text(made[0].read_text().replace("Quickstart", "My edits"))
    assert build_notebooks(ROOT / "tutorials", tmp_path) == []  # an existing notebook is kept
    assert "My edits" in made[0].read_text()


def test_inspect_prints_a_summary(tmp_path, capsys):
    lab = tiny_lab()
    lab.new_adapter("a", r=3, init="random")
    lab.save_adapter("a", tmp_path / "a")
    assert main(["inspect", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "Adapter('a'" in out and "ranks: [3]" in out and "lineage.method: new" in out


def test_bad_input_is_an_error_line_not_a_traceback(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["inspect", str(tmp_path), "--bogus"])
