"""The LoRA-Mixer, RecLoRA and TARA experiments: their code paths on the tiny lab, quick runs on SmolLM2."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tests.conftest import tiny_lab
from tests.training.helpers import id_task
from workbench.experiments import EXPERIMENTS
from workbench.experiments.base import COLUMNS, Schedule
from workbench.experiments.lora_mixer import LoRAMixerExperiment, mixer_arm, mixer_budget
from workbench.experiments.reclora import RecLoRAExperiment, reclora_arm
from workbench.experiments.tara import TARAExperiment, tara_arm

TINY = Schedule(steps=2, lr=1e-2, batch_size=2, eval_limit=2, seeds=(0,), prompts=2)


def seeded(runs) -> pd.DataFrame:
    return pd.concat([pd.DataFrame(r).assign(seed=s) for s, r in runs], ignore_index=True)


def test_lora_mixer_arms_share_the_budget_and_leave_the_lab_clean():
    lab = tiny_lab()
    train = {n: [f | {"task": i} for f in id_task(3 + i, n=6, seed=i)] for i, n in enumerate("abc")}
    evals = [f | {"task": i} for i in range(3) for f in id_task(3 + i, n=2, seed=10 + i)]
    table = seeded((s, mixer_arm(lab, arm, s, TINY, train, evals))
                   for s in (0, 1) for arm in LoRAMixerExperiment.arms)
    assert not lab.adapters and not lab.routers
    budget = table[table.measure == "trainable_params"].groupby("arm")["value"].first()
    assert budget["mixer"] == mixer_budget(lab, 3, 8) == budget["mixer_bank"]
    assert abs(budget["lora"] / budget["mixer"] - 1) < 0.1  # the matched rank
    assert budget["static"] == budget["mixer_bank"] - 3 * sum(i for _, i in lab.shapes("attention").values())
    assert {"task_mi", "own_lora_share"} <= set(table[table.arm == "mixer_bank"].measure)
    assert set(table[table.measure == "loss"].task) == {"a", "b", "c"}
    verdicts = LoRAMixerExperiment().verdicts(table)
    assert [v.interval.n for v in verdicts] == [2, 2, 2, 2]
    assert verdicts[1].measure == "multitask_loss: static − mixer_bank (> 0: mixer_bank better)"


def test_reclora_arms_score_every_user_and_map_the_mixtures():
    lab = tiny_lab()
    train = [f | {"task": 0, "user": u} for u in range(3) for f in id_task(3 + u, n=4, seed=u)]
    evals = [f | {"task": 0, "user": u} for u in range(3) for f in id_task(3 + u, n=2, seed=10 + u)]
    ctx = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    profiles = {"a": (1, 0), "b": (0, 1), "c": (0.5, 0.5)}
    table = seeded((s, reclora_arm(lab, arm, s, TINY, train, evals, ctx, ["a", "b", "c"], profiles))
                   for s in (0, 1) for arm in RecLoRAExperiment.arms)
    assert not lab.adapters and not lab.routers
    assert set(table[table.measure == "user_loss"].task) == {"a", "b", "c"}
    shared = table[table.arm == "reclora_shared"].set_index("measure")["value"]
    assert (shared["weight_spread"] == 0).all() and "mix_alignment" not in shared  # one context: one mix
    assert (table[(table.arm == "reclora") & (table.measure == "weight_spread")]["value"] > 0).all()
    worst = table[table.measure == "user_loss_worst"].set_index(["arm", "seed"])["value"]
    per_user = table[table.measure == "user_loss"].groupby(["arm", "seed"])["value"].max()
    pd.testing.assert_series_equal(worst.sort_index(), per_user.sort_index(), check_names=False)
    claims = {v.measure for v in RecLoRAExperiment().verdicts(table)}
    assert "user_loss_mean: reclora_shared − reclora (> 0: reclora better)" in claims


def conversation(i: int) -> dict:
    """14 ids: 2 system tokens, 6 of one adapter's turn, 6 of the other's (2 answer tokens each)."""
    ids = torch.randint(10, 200, (14,), generator=torch.Generator().manual_seed(i)).tolist()
    first, second = (0, 1) if i % 2 == 0 else (1, 0)
    labels = [-100] * 14
    for p in (6, 7, 12, 13):
        labels[p] = ids[p]
    return {"input_ids": ids, "labels": labels, "owner": [-1, -1] + [first] * 6 + [second] * 6,
            "first": [(6, first, [ids[6], 5]), (12, second, [ids[12], 4])]}


def test_tara_masks_cut_the_leakage_of_the_plain_sum_on_the_tiny_lab():
    lab = tiny_lab()
    for name, seed in (("a", 0), ("b", 1)):
        lab.new_adapter(name, r=4, targets="attention", init="random", seed=seed)
    convs = [conversation(i) for i in range(4)]
    table = seeded((0, tara_arm(lab, arm, ["a", "b"], convs, batch_size=3)) for arm in TARAExperiment.arms)
    assert set(lab.adapters) == {"a", "b"} and not lab.routers  # its routers removed, the bank kept
    cross = table[table.measure == "cross_leakage"].set_index("arm")["value"]
    assert cross["tara"] < cross["tara_kv"] < cross["plain_sum"]
    leak = table[table.measure == "leakage"]
    assert set(leak.task) == {"a→a", "a→b", "b→a", "b→b"}
    assert "solo_loss" in set(table[table.arm == "plain_sum"].measure)


def test_tara_leakage_under_masks_flows_only_forward_in_time():
    """Masked, an adapter changes nothing before its own turn: its leakage comes only from earlier turns."""
    lab = tiny_lab()
    for name, seed in (("a", 0), ("b", 1)):
        lab.new_adapter(name, r=4, targets="attention", init="random", seed=seed)
    a_first = [conversation(0), conversation(2)]  # a's turn comes first: b cannot reach it
    table = pd.DataFrame(tara_arm(lab, "tara", ["a", "b"], a_first, batch_size=2))
    leak = table[table.measure == "leakage"].set_index("task")["value"]
    assert leak["b→a"] == pytest.approx(0.0, abs=1e-7) and leak["a→b"] > 0


def test_the_routed_experiments_are_registered_with_quick_schedules():
    for name in ("lora_mixer", "reclora", "tara"):
        exp = EXPERIMENTS.get(name)()
        assert exp.claims and exp.notes and len(exp.full.seeds) == 3 and exp.quick.seeds == (0,)
        assert EXPERIMENTS.info(name).reference


@pytest.mark.reproduce
@pytest.mark.parametrize("name", ["tara", "reclora", "lora_mixer"])
def test_routed_experiment_quick_end_to_end_on_smollm2(tmp_path, name):
    from workbench.cli import main

    arms = {"tara": ["plain_sum", "tara"], "reclora": ["lora", "reclora"],
            "lora_mixer": ["static", "mixer_bank"]}
    assert main(["reproduce", name, "--quick", "--out", str(tmp_path), "--arms", *arms[name]]) == 0
    table = pd.read_csv(tmp_path / f"{name}.csv", keep_default_na=False)
    assert list(table.columns) == COLUMNS and set(table.arm) == set(arms[name])
    assert "quick mode" in (tmp_path / f"{name}.md").read_text()
