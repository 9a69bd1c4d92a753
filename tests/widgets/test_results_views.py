"""widgets.results: the full runs' claims and a measure's bars with their intervals, from results/."""

from __future__ import annotations

import pandas as pd

from widgets.results import interval_bars, show_full

TABLE = pd.DataFrame({"arm": ["a", "b", "a", "b", "a"], "measure": ["s", "s", "s", "s", "t"],
                      "task": ["", "", "x", "x", ""], "mean": [0.5, 0.7, 0.2, 0.3, 9.0],
                      "low": [0.4, 0.6, 0.1, 0.1, 8.0], "high": [0.6, 0.9, 0.3, 0.6, 10.0], "n": [3] * 5})


def test_bars_show_the_mean_and_the_asymmetric_interval_of_the_chosen_rows():
    fig = interval_bars(TABLE, "s", "title")
    assert [t.name for t in fig.data] == ["a", "b"] and [list(t.y) for t in fig.data] == [[0.5], [0.7]]
    b = fig.data[1].error_y
    assert list(b.array) == [0.9 - 0.7] and list(b.arrayminus) == [0.7 - 0.6] and b.symmetric is False
    by_task = interval_bars(TABLE, "s", "title", by_task=True, arms=["b"])
    assert len(by_task.data) == 1 and list(by_task.data[0].x) == ["x"] and list(by_task.data[0].y) == [0.3]
    assert interval_bars(None, "s", "title") is None


def test_show_full_names_the_command_when_there_is_no_run(capsys):
    assert show_full("no_such_experiment") is None
    assert "lora-workbench reproduce no_such_experiment" in capsys.readouterr().out
    table = show_full("mixlora")
    assert {"arm", "measure", "task", "mean", "low", "high", "n"} <= set(table.columns)
    assert "## Claims" in capsys.readouterr().out
