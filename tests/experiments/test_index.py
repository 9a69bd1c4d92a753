"""results/README.md: every claim's verdict recomputed from the per-seed tables, not copied."""

from __future__ import annotations

import shutil

import pandas as pd

from workbench.experiments import results_root
from workbench.experiments.index import claims_frame, index_markdown, write_index


def test_the_index_recomputes_each_verdict_from_the_table(tmp_path):
    for ext in ("csv", "md"):
        shutil.copy(results_root() / f"mixlora.{ext}", tmp_path / f"mixlora.{ext}")
    frame = claims_frame(tmp_path)
    assert set(frame.experiment) == {"mixlora"} and frame.n.eq(3).all()
    assert frame.schedule.str.startswith("16 steps").all()
    # change the data: the MixLoRA arm's score far above LoRA's in every seed -> the first claim holds
    table = pd.read_csv(tmp_path / "mixlora.csv", keep_default_na=False)
    table.loc[(table.arm == "mixlora") & (table.measure == "multitask_score"), "value"] = 0.99
    table.to_csv(tmp_path / "mixlora.csv", index=False)
    first = claims_frame(tmp_path).iloc[0]
    assert first.measure == "multitask_score: mixlora − lora" and first.verdict == "holds" and first.low > 0
    path = write_index(tmp_path)
    text = path.read_text()
    assert path == tmp_path / "README.md" and "## [mixlora](mixlora.md)" in text and "| holds |" in text
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_empty_folder_says_how_to_fill_it(tmp_path):
    assert claims_frame(tmp_path).empty
    assert "No full run yet" in index_markdown(tmp_path)
