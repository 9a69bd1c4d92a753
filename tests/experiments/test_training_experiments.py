"""LoRA-Pro, NOLA and Menta experiments: their measures by hand, their code paths on a tiny lab, and one
quick end-to-end run each on SmolLM2 (slow)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.experiments.helpers import text_lab, toy_tasks
from workbench.experiments import EXPERIMENTS, reproduce
from workbench.experiments.base import COLUMNS
from workbench.experiments.lora_pro import LoRAProExperiment, step_label
from workbench.experiments.menta import MentaExperiment, per_class_recall
from workbench.experiments.nola import NOLAExperiment
from workbench.tasks.skew import skewed


class TinyLoRAPro(LoRAProExperiment):
    def load_tasks(self):
        return toy_tasks("a", "b")


class TinyNOLA(NOLAExperiment):
    def load_tasks(self):
        return toy_tasks("a", "b")


class TinyMenta(MentaExperiment):
    def load_tasks(self, seed):
        return {n: skewed(t, ratio=3, n_majority=3, seed=seed) for n, t in toy_tasks("a", "b").items()}


def test_per_class_recall_by_hand():
    targets = ["x", "x", "x", "y", "y", "z"]
    preds = ["x", "x", "y", "y", "x", "x"]
    assert per_class_recall(targets, preds) == {"x": 2 / 3, "y": 0.5, "z": 0.0}
    assert step_label(7) == "step 07"


def test_the_three_are_registered_with_three_seeds():
    assert {"lora_pro", "nola", "menta"} <= set(EXPERIMENTS.names())
    for name in ("lora_pro", "nola", "menta"):
        assert len(EXPERIMENTS.get(name)().full.seeds) >= 3 and EXPERIMENTS.info(name).reference


def test_lora_pro_code_path_records_the_gap_per_step(tmp_path):
    lab = text_lab()
    done = reproduce("lora_pro", experiment=TinyLoRAPro(), out=tmp_path, lab=lab, quick=True, seeds=[0, 1],
                     log=lambda s: None)
    table = pd.read_csv(tmp_path / "lora_pro.csv", keep_default_na=False)
    assert list(table.columns) == COLUMNS and not lab.adapters
    steps = table[table.measure == "gap_lorapro"]
    assert set(steps.task) == {"step 00", "step 01"} and len(steps) == 2 * 2 * 2  # steps × arms × seeds
    wide = table[table.measure.isin(["gap_lora", "gap_lorapro"])].pivot_table(
        index=["seed", "arm", "task"], columns="measure", values="value")
    assert (wide.gap_lorapro <= wide.gap_lora + 1e-9).all()  # at the same point, never farther
    budget = table[table.measure == "trainable_params"].groupby("arm").value.first()
    assert budget["lora"] == budget["lorapro"]  # equal trainable budget
    assert [v.measure.split(":")[0] for v in done.verdicts] == ["mean_gap", "mean_sine", "multitask_score"]
    assert all(v.interval.n == 2 for v in done.verdicts)


def test_nola_code_path_counts_coefficients_and_reloads_bit_exactly(tmp_path):
    lab = text_lab()
    done = reproduce("nola", experiment=TinyNOLA(), out=tmp_path, lab=lab, quick=True, seeds=[0, 1],
                     log=lambda s: None)
    table = pd.read_csv(tmp_path / "nola.csv", keep_default_na=False)
    params = table[table.measure == "trainable_params"].groupby("arm").value.first()
    modules = 2 * lab.model.config.num_hidden_layers  # q and v
    assert params["nola_k16"] == modules * 32 and params["nola_k256"] == modules * 512
    assert (table[table.measure == "reload_exact"].value == 1.0).all() and not lab.adapters
    assert done.verdicts[-1].holds is True and "6 runs" in done.verdicts[-1].note


def test_menta_code_path_scores_balanced_accuracy(tmp_path):
    lab = text_lab()
    done = reproduce("menta", experiment=TinyMenta(), out=tmp_path, lab=lab, quick=True, seeds=[0],
                     log=lambda s: None)
    table = pd.read_csv(tmp_path / "menta.csv", keep_default_na=False)
    per_task = table[(table.measure == "balanced_accuracy") & (table.task != "")]
    assert set(per_task.task) == {"a", "b"} and per_task.value.between(0, 1).all()
    whole = table[(table.measure == "balanced_accuracy") & (table.task == "")].set_index("arm").value
    for arm in ("ce", "balanced"):
        assert whole[arm] == pytest.approx(per_task[per_task.arm == arm].value.mean())
    assert [v.measure for v in done.verdicts] == ["balanced_accuracy: balanced − ce",
                                                  "minority_recall: balanced − ce"]


@pytest.mark.reproduce
@pytest.mark.parametrize("name, arms", [("lora_pro", ["lora", "lorapro"]), ("nola", ["lora_r1", "nola_k16"]),
                                        ("menta", ["ce", "balanced"])])
def test_quick_end_to_end_on_smollm2(tmp_path, name, arms):
    from workbench.cli import main

    assert main(["reproduce", name, "--quick", "--out", str(tmp_path), "--arms", *arms]) == 0
    table = pd.read_csv(tmp_path / f"{name}.csv", keep_default_na=False)
    assert set(table.arm) == set(arms) and set(table.seed) == {0}
    assert "quick mode" in (tmp_path / f"{name}.md").read_text()
