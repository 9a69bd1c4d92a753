"""SMoRA's rank_partition and FlyLoRA's merging experiments: their measures by hand, their code paths on
the tiny text lab (toy tasks), the lab left clean."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tests.experiments.helpers import text_lab, toy_tasks
from workbench.experiments import EXPERIMENTS, reproduce
from workbench.experiments.base import COLUMNS
from workbench.experiments.flylora_merge import FlyLoRAMergeExperiment, mean_abs_cosine
from workbench.experiments.smora_partition import SMoRAPartitionExperiment


class TinySMoRA(SMoRAPartitionExperiment):
    def load_tasks(self):
        return toy_tasks("a", "b")


class TinyFly(FlyLoRAMergeExperiment):
    def load_tasks(self):
        return toy_tasks("a", "b")


def test_mean_abs_cosine_by_hand():
    a = {"m1": torch.tensor([[1.0, 0.0]]), "m2": torch.tensor([[1.0, 1.0]]), "only_a": torch.ones(1, 2)}
    b = {"m1": torch.tensor([[0.0, 2.0]]), "m2": torch.tensor([[-3.0, -3.0]])}
    # |cos| (the sign ignored), over the shared modules only
    assert mean_abs_cosine(a, b) == pytest.approx((0.0 + 1.0) / 2)
    assert mean_abs_cosine({"m": torch.zeros(2, 2)}, {"m": torch.ones(2, 2)}) == 0.0


def test_both_are_registered():
    assert {"smora_partition", "flylora_merge"} <= set(EXPERIMENTS.names())


def test_smora_partition_arms_share_activated_ranks_and_differ_only_in_partition(tmp_path):
    lab = text_lab()
    reproduce("smora_partition", experiment=TinySMoRA(), out=tmp_path, lab=lab, quick=True, seeds=[0, 1],
              log=lambda s: None)
    table = pd.read_csv(tmp_path / "smora_partition.csv", keep_default_na=False)
    assert list(table.columns) == COLUMNS and not lab.adapters and not lab.routers
    params = table[table.measure == "trainable_params"].groupby("arm")["value"].first()
    assert params["smora"] - params["smora_blocks"] == 3 * 4 * sum(  # the router: r/P rows of width in
        i for _, i in lab.shapes("attention").values())
    assert params["lora_k"] < params["smora_blocks"]
    assert set(table[table.measure == "loss"].task) == {"a", "b"}
    verdicts = TinySMoRA().verdicts(table)
    assert [v.interval.n for v in verdicts] == [2, 2]


def test_flylora_merge_measures_both_adapters_and_their_sum(tmp_path):
    lab = text_lab()
    reproduce("flylora_merge", experiment=TinyFly(), out=tmp_path, lab=lab, quick=True, seeds=[0, 1],
              log=lambda s: None)
    table = pd.read_csv(tmp_path / "flylora_merge.csv", keep_default_na=False)
    assert not lab.adapters and not lab.routers
    wide = table.pivot_table(index=["arm", "seed", "task"], columns="measure", values="value")
    per_task = wide.dropna(subset=["loss_alone"])
    drop = (per_task["loss_summed"] - per_task["loss_alone"]).groupby(["arm", "seed"]).mean()
    overall = wide.dropna(subset=["merge_drop"])["merge_drop"].droplevel("task")
    pd.testing.assert_series_equal(drop.sort_index(), overall.sort_index(), check_names=False)
    assert set(overall.index.get_level_values(0)) == {"lora", "flylora"}
    cos = wide.dropna(subset=["abs_cos"])["abs_cos"]
    assert ((cos >= 0) & (cos <= 1)).all()
    assert [v.interval.n for v in TinyFly().verdicts(table)] == [2, 2]


@pytest.mark.reproduce
@pytest.mark.parametrize("name", ["smora_partition", "flylora_merge"])
def test_quick_end_to_end_on_smollm2(tmp_path, name):
    from workbench.cli import main

    assert main(["reproduce", name, "--quick", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / f"{name}.csv", keep_default_na=False)
    assert list(table.columns) == COLUMNS and set(table.arm) == set(EXPERIMENTS.get(name)().arms)
    assert EXPERIMENTS.info(name).reference
