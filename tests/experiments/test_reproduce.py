"""The reproduce harness: arms over seeds, tidy per-seed tables and summaries written to a folder."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import tiny_lab
from workbench.errors import WorkbenchError
from workbench.experiments import EXPERIMENTS, Experiment, Schedule, Verdict, reproduce
from workbench.experiments.base import COLUMNS, paired, rows, scratch
from workbench.training import fit

FEATURES = [{"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, 2, 3, 4, 5, 6], "task": 0}] * 4


class TinyRanks(Experiment):
    """Rank 1 against rank 4 on a tiny random Llama (real training, a few steps)."""

    title = "rank 4 against rank 1 on tiny-llama"
    claims = ("rank 4 fits the batch at least as well",)
    arms = ("r1", "r4")
    full = Schedule(steps=3, lr=1e-2, batch_size=2, seeds=(0, 1))
    quick = Schedule(steps=1, lr=1e-2, batch_size=2, seeds=(0,))
    notes = ("a test experiment",)

    def run_arm(self, lab, arm, seed, schedule):
        with scratch(lab):
            adapter = lab.new_adapter(arm, r=int(arm[1:]), targets="attention", init="random", seed=seed)
            params = [p for f in adapter.modules.values() for p in (f.A, f.B)]
            history = fit(lab, params, FEATURES, use=arm, label=arm, steps=schedule.steps, lr=schedule.lr,
                          batch_size=schedule.batch_size, seed=seed, progress=False)
            return pd.DataFrame(rows(arm, {"final_loss": history["loss"].iloc[-1],
                                           "trainable_params": sum(p.numel() for p in params)}))

    def verdicts(self, table):
        if set(table.arm) != {"r1", "r4"}:
            return []
        d = paired(table, "final_loss", "r1", "r4")
        return [Verdict(self.claims[0], "final_loss: r1 − r4", d, None)]


def test_reproduce_writes_a_tidy_table_and_a_summary_and_leaves_the_lab_clean(tmp_path):
    lab = tiny_lab()
    done = reproduce("tiny", experiment=TinyRanks(), out=tmp_path, lab=lab, log=lambda s: None)
    table = pd.read_csv(tmp_path / "tiny.csv", keep_default_na=False)
    assert list(table.columns) == COLUMNS and done.csv == tmp_path / "tiny.csv"
    assert len(table) == 2 * 2 * 2  # arms × seeds × measures
    assert set(table.seed) == {0, 1} and set(table.arm) == {"r1", "r4"} and set(table.experiment) == {"tiny"}
    assert not lab.adapters and not lab.routers  # every arm cleaned up after itself
    md = (tmp_path / "tiny.md").read_text()
    assert "lora-workbench reproduce tiny --seeds 0 1" in md and "Seeds finished: [0, 1] of [0, 1]" in md
    assert "| r4 | trainable_params | — |" in md and "| 2 |" in md  # n = 2 seeds
    assert "torch threads" not in md and "thread(s)" in md and "load average" in md
    assert done.verdicts[0].interval.n == 2 and not list(tmp_path.glob(".*.tmp"))  # atomic: no leftovers


def test_an_arm_run_alone_keeps_the_other_arms_rows(tmp_path):
    lab = tiny_lab()
    reproduce("tiny", experiment=TinyRanks(), out=tmp_path, lab=lab, seeds=[0], log=lambda s: None)
    first = pd.read_csv(tmp_path / "tiny.csv", keep_default_na=False)
    reproduce("tiny", experiment=TinyRanks(), out=tmp_path, lab=lab, seeds=[0], arms=["r4"],
              log=lambda s: None)
    again = pd.read_csv(tmp_path / "tiny.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(first[first.arm == "r1"].reset_index(drop=True),
                                  again[again.arm == "r1"].reset_index(drop=True))
    md = (tmp_path / "tiny.md").read_text()
    assert len(again) == len(first)
    assert ("`lora-workbench reproduce tiny --seeds 0` then "
            "`lora-workbench reproduce tiny --seeds 0 --arms r4`") in md


def test_bad_arms_and_seeds_are_refused_before_any_work(tmp_path):
    with pytest.raises(WorkbenchError, match="no arm"):
        reproduce("tiny", experiment=TinyRanks(), out=tmp_path, lab=object(), arms=["r9"])
    with pytest.raises(WorkbenchError, match="seeds"):
        reproduce("tiny", experiment=TinyRanks(), out=tmp_path, lab=object(), seeds=[-1])
    assert not list(tmp_path.iterdir())


def test_the_registered_experiments_declare_claims_arms_and_a_quick_schedule():
    assert {"mixlora", "loramoe"} <= set(EXPERIMENTS.names())
    for name in EXPERIMENTS.names():
        info = EXPERIMENTS.info(name)
        exp = info.obj()
        assert info.summary and info.reference, name
        assert exp.claims and exp.arms and len(exp.full.seeds) >= 3, name
        assert len(exp.quick.seeds) == 1 and exp.quick.steps <= 3 and exp.quick.eval_limit, name


@pytest.mark.slow
def test_reproduce_mixlora_quick_end_to_end_on_smollm2(tmp_path):
    from workbench.cli import main

    assert main(["reproduce", "mixlora", "--quick", "--out", str(tmp_path), "--arms", "lora", "mixlora"]) == 0
    table = pd.read_csv(tmp_path / "mixlora.csv", keep_default_na=False)
    assert list(table.columns) == COLUMNS and set(table.arm) == {"lora", "mixlora"} and set(table.seed) == {0}
    scores = table[table.measure == "score"]
    assert set(scores.task) == {"arithmetic", "topic", "language"} and scores.value.between(0, 1).all()
    budget = table[table.measure == "trainable_params"].set_index("arm")["value"]
    assert abs(budget["lora"] / budget["mixlora"] - 1) < 0.05  # the same trainable budget
    routing = set(table[table.arm == "mixlora"].measure)
    assert {"task_mi", "half_mi", "specialization", "load_cv"} <= routing
    md = (tmp_path / "mixlora.md").read_text()
    assert "quick mode" in md and "multitask_score: mixlora − lora" in md


@pytest.mark.slow
def test_reproduce_loramoe_quick_end_to_end_on_smollm2(tmp_path):
    """The LoRAMoE arm alone (tutorial 08 names this run instead of running it under make test)."""
    from workbench.cli import main

    assert main(["reproduce", "loramoe", "--quick", "--out", str(tmp_path), "--arms", "loramoe"]) == 0
    table = pd.read_csv(tmp_path / "loramoe.csv", keep_default_na=False)
    assert set(table.arm) == {"loramoe"} and set(table.seed) == {0}
    values = table.set_index("measure")["value"]
    assert 0 <= values["knowledge_score"] <= 1 and "knowledge_gate_gap" in values
    assert "quick mode" in (tmp_path / "loramoe.md").read_text()


def test_the_command_lists_the_experiments_and_names_an_unknown_one(capsys):
    from workbench.cli import main

    assert main(["reproduce", "--list"]) == 0
    assert "mixlora:" in capsys.readouterr().out
    assert main(["reproduce", "nosuch", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'nosuch'; choose one of: " in err and "loramoe" in err and "mixlora" in err


def test_a_seed_with_some_arms_missing_is_not_finished(tmp_path):
    from workbench.experiments.runner import machine
    from workbench.experiments.summary import summary_markdown

    table = pd.DataFrame([{"experiment": "tiny", "seed": s, "arm": a, "measure": "final_loss", "task": "",
                           "value": 1.0} for s, a in [(0, "r1"), (0, "r4"), (1, "r1")]])
    info = {"commands": ["c"], "started": "t0", "finished": "t1", "machine": machine(), "load_start": "0",
            "load_end": "0", "schedule": TinyRanks.full, "quick": False, "seeds_asked": [0, 1]}
    md = summary_markdown(TinyRanks(), "tiny", table, [], info)
    assert "Seeds finished: [0] of [0, 1] (**partial run**)" in md


def test_resume_keeps_finished_seeds_and_reruns_a_half_done_one(tmp_path):
    lab = tiny_lab()
    reproduce("tiny", experiment=TinyRanks(), out=tmp_path, lab=lab, seeds=[0, 1], log=lambda s: None)
    first = pd.read_csv(tmp_path / "tiny.csv", keep_default_na=False)
    half = first[(first.seed == 0) | (first.arm == "r1")]  # a run stopped after seed 1's first arm
    half.to_csv(tmp_path / "tiny.csv", index=False)
    said = []
    reproduce("tiny", experiment=TinyRanks(), out=tmp_path, lab=lab, seeds=[0, 1], resume=True,
              log=said.append)
    again = pd.read_csv(tmp_path / "tiny.csv", keep_default_na=False)
    assert said[0] == "tiny: seeds [0] already in tiny.csv for every arm: kept"
    assert [s for s in said if "seed 0 (" in s] == []  # seed 0 did not run again
    assert len([s for s in said if "seed 1 (" in s]) == 2  # seed 1 ran both arms again
    pd.testing.assert_frame_equal(first[first.seed == 0].reset_index(drop=True),
                                  again[again.seed == 0].reset_index(drop=True))
    assert len(again) == len(first) and sorted(set(again.seed)) == [0, 1]
    md = (tmp_path / "tiny.md").read_text()
    assert "Seeds finished: [0, 1] of [0, 1]" in md and "--resume" in md
