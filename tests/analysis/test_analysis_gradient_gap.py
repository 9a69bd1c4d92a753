"""gap_over_steps: the per-step gap rows of a measure table, parsed into a tidy frame."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.analysis.gradient_gap import gap_over_steps
from workbench.errors import WorkbenchError


def measures(rows):
    return pd.DataFrame(rows, columns=["arm", "measure", "task", "mean", "low", "high", "n"])


def test_gap_rows_become_arm_kind_quantity_step():
    table = measures([("lora", "gap_lora", "step 01", 0.9, 0.8, 1.0, 3),
                      ("lora", "gap_lora", "step 00", 0.95, 0.9, 1.0, 3),
                      ("lora", "gap_lorapro", "step 00", 0.5, 0.4, 0.6, 3),
                      ("lorapro", "sine_lorapro", "step 10", 0.3, 0.2, 0.4, 3),
                      ("lora", "score", "topic", 0.7, 0.6, 0.8, 3),  # not a gap row
                      ("lora", "mean_gap", "", 0.9, 0.8, 1.0, 3)])  # whole-run, not per step
    frame = gap_over_steps(table)
    assert frame[["arm", "kind", "quantity", "step"]].values.tolist() == [
        ["lora", "lora", "gap", 0], ["lora", "lora", "gap", 1], ["lora", "lorapro", "gap", 0],
        ["lorapro", "lorapro", "sine", 10]]
    assert frame["mean"].tolist() == [0.95, 0.9, 0.5, 0.3]
    own = gap_over_steps(table, own=True)
    assert set(zip(own.arm, own.kind, strict=True)) == {("lora", "lora"), ("lorapro", "lorapro")}
    assert gap_over_steps(table[table.measure == "score"]).empty


def test_gap_over_steps_refuses_a_per_seed_table():
    with pytest.raises(WorkbenchError, match="measure table"):
        gap_over_steps(pd.DataFrame({"seed": [0], "arm": ["a"], "measure": ["gap_lora"], "value": [1.0]}))


def test_the_view_draws_one_line_and_band_per_arm_and_kind():
    from widgets import gradient_gap_figure

    table = measures([(arm, f"{q}_{kind}", f"step {s:02d}", 0.5, 0.4, 0.6, 3)
                      for arm in ("lora", "lorapro") for kind in ("lora", "lorapro") for q in ("gap", "sine")
                      for s in range(3)])
    fig = gradient_gap_figure(gap_over_steps(table))
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(fig.data) == 8 and len(lines) == 4
    assert {t.line.dash for t in lines} == {"solid", "dot"}
    with pytest.raises(WorkbenchError, match="gap_over_steps"):
        gradient_gap_figure(table)
