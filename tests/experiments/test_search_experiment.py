"""The search experiment: its code path on the tiny lab (every arm, paired verdicts, a clean lab), and a quick
end-to-end run on SmolLM2 (slow)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.experiments.toy import toy_lab, toy_tasks
from workbench.experiments import Schedule, reproduce
from workbench.experiments.base import COLUMNS
from workbench.experiments.search import SearchExperiment


class TinySearch(SearchExperiment):
    """The same arms on the toy tasks (adapters trained here: the tiny model has no ready ones)."""

    tasks = ("colour", "fruit", "sum")
    quick = Schedule(steps=3, batch_size=4, eval_limit=1, prompts=1, seeds=(0, 1))
    bank_steps = 2

    def load_tasks(self):
        return toy_tasks()


def test_the_search_experiment_runs_every_arm_and_tries_each_claim_on_the_tiny_lab(tmp_path):
    lab = toy_lab()
    done = reproduce("search", quick=True, lab=lab, experiment=TinySearch(), out=tmp_path, log=lambda s: None)
    table = done.table
    assert list(table.columns) == COLUMNS and set(table.seed) == {0, 1}
    assert set(table.arm) == set(SearchExperiment.arms)
    mean = table[table.measure == "mean_normalized"]
    assert len(mean) == 2 * len(SearchExperiment.arms) and mean.value.between(0, 10).all()
    fixed = mean[mean.arm.isin(["uniform", "ties"])].pivot_table(index="seed", columns="arm", values="value")
    assert (fixed.loc[0] == fixed.loc[1]).all()  # the seed-independent arms are the same in every seed
    evals = table[table.measure == "evaluations"].set_index(["arm", "seed"]).value
    assert (evals.loc[["nevergrad", "random"]] <= 3).all()  # the budget
    ada = table[table.arm == "adamerging"].set_index(["seed", "measure"]).value
    assert ada.loc[(0, "entropy_end")] <= ada.loc[(0, "entropy_start")]
    assert [v.measure for v in done.verdicts] == ["mean_normalized: nevergrad − uniform",
                                                  "mean_normalized: nevergrad − ties",
                                                  "mean_normalized: nevergrad − random",
                                                  "mean_normalized: adamerging − uniform"]
    assert not lab.adapters and not lab.active.names  # each arm removed what it added


@pytest.mark.reproduce  # make reproduce-check
def test_reproduce_search_quick_end_to_end_on_smollm2(tmp_path):
    from workbench.cli import main

    args = ["reproduce", "search", "--quick", "--out", str(tmp_path), "--arms", "uniform", "nevergrad"]
    assert main(args) == 0
    table = pd.read_csv(tmp_path / "search.csv", keep_default_na=False)
    assert set(table.arm) == {"uniform", "nevergrad"}
    norm = table[table.measure == "normalized"]
    assert set(norm.task) <= {"arithmetic", "topic", "language", "code"}
    assert "mean_normalized: nevergrad − uniform" in (tmp_path / "search.md").read_text()
