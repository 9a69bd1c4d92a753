"""The LoRA-LEGO merging experiment: its code path on the tiny text lab (toy tasks, a bank trained
here), the lab left clean, every arm merged at the same rank; the quick run on SmolLM2."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.experiments.helpers import text_lab, toy_tasks
from workbench.experiments import EXPERIMENTS, reproduce
from workbench.experiments.base import COLUMNS
from workbench.experiments.lora_lego import LEGO, LoRALegoExperiment, draw


class TinyLego(LoRALegoExperiment):
    scored = ("a", "b")  # c is merged, not scored

    def load_tasks(self):
        return toy_tasks("a", "b", "c")


def test_draw_is_seeded_and_the_same_for_every_call():
    xs = list(range(20))
    assert draw(xs, 5, 0) == draw(xs, 5, 0) and draw(xs, 5, 0) != draw(xs, 5, 1)
    assert len(set(draw(xs, 5, 2))) == 5 and draw(xs, None, 0) == xs and draw(xs, 50, 0) == xs


def test_lora_lego_arms_merge_at_one_rank_score_every_task_and_leave_the_lab_clean(tmp_path):
    lab = text_lab()
    exp = TinyLego()
    reproduce("lora_lego", experiment=exp, out=tmp_path, lab=lab, quick=True, seeds=[0, 1],
              log=lambda s: None)
    table = pd.read_csv(tmp_path / "lora_lego.csv", keep_default_na=False)
    assert list(table.columns) == COLUMNS and not lab.adapters and not lab.routers
    assert set(table.arm) == set(LoRALegoExperiment.arms)
    keep = table[table.measure == "keep"]
    assert set(keep.task) == {"a", "b"} and len(keep) == 5 * 2 * 2
    # keep is (base − merged) / (base − own), from the losses in the same table
    ta = table[(table.arm == "task_arithmetic") & (table.task != "")]
    ref = ta.pivot_table(index=["seed", "task"], columns="measure", values="value")
    want = (ref.loss_base - ref.loss) / (ref.loss_base - ref.loss_own)
    assert ref["keep"].to_numpy() == pytest.approx(want.to_numpy())
    lego = set(table[table.arm == LEGO].measure) & set(table[table.arm == "lora_lego_svd"].measure)
    assert {"mixed_cluster_share", "update_cos_gap", "output_cos_gap", "same_index_share"} <= lego
    verdicts = exp.verdicts(table)
    assert all(v.interval.n == 2 for v in verdicts) and len(verdicts) == 10
    assert verdicts[0].measure == "mean_keep: lora_lego − task_arithmetic (> 0: LEGO keeps more)"


def test_registered_with_claims_notes_and_a_quick_schedule():
    exp = EXPERIMENTS.get("lora_lego")()
    assert exp.claims and exp.notes and len(exp.full.seeds) == 3 and exp.quick.seeds == (0,)
    assert EXPERIMENTS.info("lora_lego").reference


@pytest.mark.reproduce
def test_lora_lego_quick_end_to_end_on_smollm2(tmp_path):
    from workbench.cli import main

    assert main(["reproduce", "lora_lego", "--quick", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "lora_lego.csv", keep_default_na=False)
    assert set(table.arm) == set(LoRALegoExperiment.arms) and set(table.seed) == {0}
    assert set(table[table.measure == "keep"].task) == {"arithmetic", "topic", "language"}
    assert "quick mode" in (tmp_path / "lora_lego.md").read_text()
