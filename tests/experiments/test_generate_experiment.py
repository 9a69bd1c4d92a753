"""The generation experiment: pair sub-tasks of the real data, its code path on a tiny lab (toy experts,
the hashing encoder), its verdicts by hand, and one quick end-to-end run on SmolLM2 (slow)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.experiments.helpers import text_lab, toy_task
from workbench.experiments import reproduce
from workbench.experiments.base import COLUMNS
from workbench.experiments.generate import GenerateExperiment
from workbench.generation import HashingEncoder


class TinyGenerate(GenerateExperiment):
    cvae_steps = {"full": 4, "quick": 4}

    def load_experts(self):
        experts = {f"e{i}": toy_task(f"e{i}", offset=i) for i in range(3)}
        for t in experts.values():
            t.metric = "loss"
        descriptions = {
            "e0": "pick apple for colours",
            "e1": "pick banana for fruits",
            "e2": "sum two numbers",
        }
        heldout = toy_task("held", offset=1)
        heldout.metric = "loss"
        return experts, descriptions, heldout, "pick banana for colours"

    def encoder(self):
        return HashingEncoder(32)

    def fused(self, experts):
        return list(experts)[:2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_the_experiment_runs_every_arm_on_a_tiny_lab_and_leaves_it_clean(tmp_path):
    lab = text_lab()
    done = reproduce(
        "generate", experiment=TinyGenerate(), out=tmp_path, lab=lab, quick=True, log=lambda s: None
    )
    table = pd.read_csv(tmp_path / "generate.csv", keep_default_na=False)
    assert list(table.columns) == COLUMNS and set(table.arm) == {
        "experts",
        "icm_lora",
        "sg_lora",
        "icm_fusion",
    }
    assert not lab.adapters and not lab.routers
    m = table.set_index(["arm", "measure", "task"])["value"]
    assert {"recovered_fraction", "swap_gap", "storage_ratio"} <= set(table[table.arm == "icm_lora"].measure)
    assert m[("sg_lora", "nearest_minus_sg", "")] == pytest.approx(
        m[("sg_lora", "loss_nearest", "held")] - m[("sg_lora", "loss_sg", "held")]
    )
    assert m[("sg_lora", "loss_sg", "held")] == pytest.approx(
        (m[("sg_lora", "loss_sg_sample0", "held")] + m[("sg_lora", "loss_sg_sample1", "held")]) / 2
    )
    prox = table[(table.arm == "sg_lora") & (table.measure == "proximity")]
    assert prox.value.sum() == pytest.approx(1.0, abs=1e-5) and (prox.value > 0).sum() == 2  # top-2
    assert m[("icm_fusion", "ta_minus_fused", "")] == pytest.approx(
        m[("icm_fusion", "multitask_loss_ta", "")] - m[("icm_fusion", "multitask_loss_fused_meta", "")]
    )
    per_task = table[(table.arm == "icm_lora") & (table.measure == "recovered")]
    base = table[(table.arm == "experts") & (table.measure == "loss_base")].set_index("task")["value"]
    trained = table[(table.arm == "experts") & (table.measure == "loss_trained")].set_index("task")["value"]
    gen = table[(table.arm == "icm_lora") & (table.measure == "loss_generated")].set_index("task")["value"]
    for row in per_task.itertuples():
        want = (base[row.task] - gen[row.task]) / (base[row.task] - trained[row.task])
        assert row.value == pytest.approx(want)
    assert len(done.verdicts) == 0 or all(v.holds is None for v in done.verdicts)  # one seed decides nothing


def test_verdicts_by_hand():
    exp = GenerateExperiment()
    rows = []
    for seed, (rec, gap, near) in enumerate([(0.95, 0.2, 0.1), (0.97, 0.3, 0.2), (0.99, 0.25, 0.15)]):
        rows += [
            {
                "experiment": "g",
                "seed": seed,
                "arm": "icm_lora",
                "measure": "recovered_fraction",
                "task": "",
                "value": rec,
            },
            {
                "experiment": "g",
                "seed": seed,
                "arm": "icm_lora",
                "measure": "swap_gap",
                "task": "",
                "value": gap,
            },
            {
                "experiment": "g",
                "seed": seed,
                "arm": "sg_lora",
                "measure": "nearest_minus_sg",
                "task": "",
                "value": near,
            },
            {
                "experiment": "g",
                "seed": seed,
                "arm": "icm_lora",
                "measure": "storage_ratio",
                "task": "",
                "value": 2.0,
            },
        ]
    verdicts = {v.claim: v for v in exp.verdicts(pd.DataFrame(rows))}
    assert verdicts[exp.claims[0]].holds is True  # 0.95-0.99: above 0.9
    assert verdicts[exp.claims[1]].holds is True and verdicts[exp.claims[2]].holds is True
    assert verdicts[exp.claims[5]].holds is False  # a generator twice the LoRAs' size
    assert exp.claims[3] not in verdicts  # no rows, no verdict


def test_pair_tasks_of_the_real_data():
    from workbench import tasks
    from workbench.errors import WorkbenchError
    from workbench.tasks.pairs import pair_task

    topic = tasks.load("topic")["topic"]
    cs = pair_task(topic, "Computers", "Sports")
    assert cs.name == "topic_computers_sports"
    assert cs.description == "classify a quote as being about computers or sports" and cs.metric == "loss"
    assert {e.target for e in cs.train} == {"Computers", "Sports"} and len(cs.train) == len(topic.train) // 2
    assert cs.eval[0].prompt.startswith("Which topic is this quote about: Computers or Sports?")
    assert cs.eval[0].choices == ("Computers", "Sports")
    assert not {e.prompt for e in cs.train} & {e.prompt for e in cs.eval}
    with pytest.raises(WorkbenchError, match="two different classes"):
        pair_task(topic, "Computers", "Cooking")


@pytest.mark.reproduce  # make reproduce-check (kept out of make test: about a minute and a half)
def test_generate_quick_end_to_end_on_smollm2(tmp_path):
    from workbench.cli import main

    assert (
        main(["reproduce", "generate", "--quick", "--out", str(tmp_path), "--arms", "experts", "sg_lora"])
        == 0
    )
    table = pd.read_csv(tmp_path / "generate.csv", keep_default_na=False)
    assert set(table.arm) == {"experts", "sg_lora"}
    assert "loss_sg" in set(table.measure)
