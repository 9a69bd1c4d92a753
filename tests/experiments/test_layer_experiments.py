"""Flexora, LayRA and ScaleZero experiments: their measures by hand, their verdicts' direction, their code
paths on a tiny lab with a word tokenizer, and one quick end-to-end run each on SmolLM2 (slow)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tests.conftest import tiny_lab
from workbench.experiments import reproduce
from workbench.experiments.base import COLUMNS
from workbench.experiments.flexora import FlexoraExperiment, gate_frame, plant_teacher, teacher_measures
from workbench.experiments.layra import LayRAExperiment, continuation, delta_norms, layer_map
from workbench.experiments.scalezero import ScaleZeroExperiment, stage_rows, stage_timeline
from workbench.tasks import Example, Task
from workbench.training.layers import layer_paths


def table(rows):
    """A per-seed table from (seed, arm, measure, task, value) tuples."""
    return pd.DataFrame(rows, columns=["seed", "arm", "measure", "task", "value"]).assign(experiment="x")


# -- measures by hand --------------------------------------------------------------------------------
def test_stage_rows_forgetting_and_final_mean_by_hand():
    scores = {("a", 1): 0.9, ("b", 1): 0.2, ("c", 1): 0.1, ("a", 2): 0.7, ("b", 2): 0.8, ("c", 2): 0.3,
              ("a", 3): 0.5, ("b", 3): 0.6, ("c", 3): 0.9}
    got = {(r["measure"], r["task"]): r["value"] for r in stage_rows("x", scores, ["a", "b", "c"])}
    # a learned in stage 1 (0.9), b in stage 2 (0.8); final 0.5 and 0.6: drops 0.4 and 0.2
    assert got[("forgetting", "")] == pytest.approx(0.3)
    assert got[("final_mean", "")] == pytest.approx((0.5 + 0.6 + 0.9) / 3)
    assert got[("score", "b")] == 0.6 and got[("stage_score", "a@s2")] == 0.7


def test_teacher_measures_by_hand():
    gates = pd.DataFrame({"step": [0, 0, 0, 0, 1, 1, 1, 1], "layer": [0, 1, 2, 3] * 2,
                          "value": [9, 9, 9, 9, 1.0, 1.3, 0.8, 1.1]})  # only the last step counts
    assert teacher_measures(gates, 1) == {"hit": 1.0, "percentile": 1.0, "teacher_rank": 1}
    assert teacher_measures(gates, 3) == {"hit": 0.0, "percentile": pytest.approx(2 / 3), "teacher_rank": 2}
    assert teacher_measures(gates, 2) == {"hit": 0.0, "percentile": 0.0, "teacher_rank": 4}


def test_gate_frame_and_layer_map_parse_the_rows():
    t = table([(0, "planted", "gate", "L03@2", 1.5), (0, "planted", "gate", "L12@0", 0.5),
               (1, "flexora", "gate", "L00@1", 1.0), (0, "planted", "hit", "", 1.0)])
    f = gate_frame(t)
    assert list(f.columns) == ["seed", "arm", "layer", "step", "value"] and len(f) == 3
    assert f[(f.arm == "planted") & (f.layer == 3)].step.item() == 2
    m = layer_map(table([(0, "layra", "delta_norm", "L29", 0.4), (0, "layra", "delta_norm", "L00", 0.2)]))
    assert m.layer.tolist() == [0, 29] and m.delta_norm.tolist() == [0.2, 0.4]
    with pytest.raises(Exception, match="no gate rows"):
        gate_frame(t[t.measure == "hit"])
    s = table([(0, "scalezero", "stage_score", "language@s1", 0.7),
               (0, "scalezero", "stage_score", "trivia@s2", 0.4),
               (0, "scalezero", "stage_start", "s1", 0), (0, "scalezero", "stage_start", "s2", 6)])
    tl = stage_timeline(s)
    assert list(tl.columns) == ["seed", "arm", "task", "stage", "start", "score"]
    rows = tl[["task", "stage", "start", "score"]].values.tolist()
    assert rows == [["language", 1, 0, 0.7], ["trivia", 2, 6, 0.4]]


def test_delta_norms_by_hand_and_the_planted_teacher_size():
    lab = tiny_lab()
    layers = layer_paths(lab, "attention")
    lab.new_adapter("a", r=2, targets=layers[1], init="random", seed=0)
    got = delta_norms(lab, "a", layers)
    loras = [lab.layers[p] for p in layers[1]]
    want = sum(float((m.scaling["a"] * m.lora_B["a"] @ m.lora_A["a"]).norm()) for m in loras)
    assert got[0] == 0.0 and got[1] == pytest.approx(want)
    plant_teacher(lab, "t", layers[0], seed=0)
    for p in layers[0]:
        lora = lab.layers[p]
        delta = lora.scaling["t"] * lora.lora_B["t"] @ lora.lora_A["t"]
        assert float(delta.norm() / lora.base_layer.weight.norm()) == pytest.approx(0.5, rel=1e-4)


def test_continuation_splits_a_turn_in_half():
    assert continuation("one two three four five") == Example("one two", "three four five")
    assert continuation("too short here") is None


# -- verdict directions ------------------------------------------------------------------------------
def test_scalezero_verdicts_read_lower_forgetting_as_holding():
    rows = [(s, "lora_seq", "forgetting", "", 0.3 + 0.01 * s) for s in range(3)]
    rows += [(s, "scalezero", "forgetting", "", 0.1) for s in range(3)]
    rows += [(s, a, "final_mean", "", 0.5) for s in range(3) for a in ("lora_seq", "scalezero")]
    v = ScaleZeroExperiment().verdicts(table(rows))
    assert v[0].holds is True and v[0].interval.mean == pytest.approx(0.21)


def test_layra_verdicts_read_lower_old_loss_and_arithmetic_gain_as_holding():
    rows = [(s, "lora_all", "old_nll", "", 2.0 + 0.01 * s) for s in range(3)]
    rows += [(s, "layra", "old_nll", "", 1.5) for s in range(3)]
    rows += [(s, a, "new_nll", "", 3.0) for s in range(3) for a in ("lora_all", "layra")]
    rows += [(s, "layra", "dialog_nll@0", "", 4.0 + 0.01 * s) for s in range(3)]
    rows += [(s, "layra", "dialog_nll@1", "", 3.0) for s in range(3)]
    forget, learn, arithmetic = LayRAExperiment().verdicts(table(rows))
    assert forget.holds is True and forget.interval.mean == pytest.approx(0.51)
    assert learn.holds is None and arithmetic.holds is True
    assert arithmetic.interval.mean == pytest.approx(1.01)


def test_flexora_verdicts_compare_hits_with_chance():
    rows = [(s, "planted", "layers", "", 30) for s in range(3)]
    rows += [(s, "planted", "hit", "", 1.0) for s in range(3)]
    rows += [(s, "planted", "percentile", "", 0.2 + 0.01 * s) for s in range(3)]
    hit, pct = FlexoraExperiment().verdicts(table(rows))
    assert hit.holds is True and "chance 0.033" in hit.measure
    assert pct.holds is False


# -- code paths on a tiny lab ------------------------------------------------------------------------
def word_lab():
    from tests.tasks.helpers import build_tokenizer
    from workbench import Workbench, zoo

    z = zoo.load("tiny-llama")
    return Workbench(z.model, build_tokenizer(), name="tiny-llama", fingerprint=z.fingerprint)


def word_tasks() -> dict[str, Task]:
    colours = ("red", "green", "blue")
    fruit = [("apple", "red"), ("banana", "green"), ("cherry", "red"), ("fruit", "blue")] * 4
    colour = [Example(f"which colour is the {f} ?", c, colours) for f, c in fruit]
    nums = ("one", "two", "three", "four")
    sums = [Example(f"what is {a} plus {b} ?", c, nums)
            for a, b, c in [("one", "one", "two"), ("one", "two", "three"), ("two", "two", "four")] * 4]
    return {"colour": Task("colour", "toy", "accuracy", colour[:12], colour[12:], max_length=40),
            "sums": Task("sums", "toy", "accuracy", sums[:8], sums[8:], max_length=40)}


class TinyScaleZero(ScaleZeroExperiment):
    def load_tasks(self):
        return word_tasks()


class TinyFlexora(FlexoraExperiment):
    def load_task(self):
        t = word_tasks()["colour"]
        return Task(t.name, t.description, t.metric, t.train * 6, t.eval, max_length=40)


class TinyLayRA(LayRAExperiment):
    def load_data(self):
        words = ["one two three four", "red green blue apple", "what is the fruit", "which colour is red"]
        ex = [continuation(w) for w in words] * 3
        pairs = [Example("what is one plus two ?", "three"), Example("which fruit is red ?", "apple")] * 3
        return {"lm": Task("lm", "toy", "loss", ex, ex[:4], max_length=40),
                "old": Task("old", "toy", "loss", ex[:1], ex[4:8], max_length=40),
                "dialog": Task("dialog", "toy", "loss", pairs[:1], pairs, max_length=40),
                "instruct": Task("instruct", "toy", "loss", pairs, pairs[:1], max_length=40)}


@pytest.mark.parametrize("name, experiment", [("scalezero", TinyScaleZero), ("flexora", TinyFlexora),
                                              ("layra", TinyLayRA)])
def test_the_experiment_runs_every_arm_on_a_tiny_lab_and_leaves_it_clean(tmp_path, name, experiment):
    lab = word_lab()
    before = logits_of(lab)
    done = reproduce(name, quick=True, lab=lab, out=tmp_path, experiment=experiment(), seeds=[0, 1],
                     log=lambda s: None)
    t = pd.read_csv(tmp_path / f"{name}.csv", keep_default_na=False)
    assert list(t.columns) == COLUMNS and set(t.arm) == set(experiment.arms) and set(t.seed) == {0, 1}
    assert t.value.notna().all() and len(done.verdicts) == len(experiment.claims)
    assert not lab.adapters and not lab.routers
    torch.testing.assert_close(logits_of(lab), before)  # no hook or scale left behind
    if name == "flexora":
        frame = gate_frame(t)
        assert set(frame.arm) == {"planted", "flexora"} and frame.layer.nunique() == 2
        budget = t[t.measure == "trainable_params"].groupby("arm").value.first()
        assert budget["flexora"] == budget["lora_all"]  # equal trainable parameters
    if name == "layra":
        assert set(layer_map(t).arm) == {"lora_all", "layra"}
    if name == "scalezero":
        starts = t[(t.measure == "stage_start") & (t.seed == 0)].set_index(["arm", "task"]).value
        assert starts[("scalezero", "s2")] == 2 and starts[("lora_seq", "s2")] == 2


def logits_of(lab):
    x = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        return lab.model(input_ids=x).logits


# -- quick end-to-end on SmolLM2 ---------------------------------------------------------------------
@pytest.mark.reproduce
@pytest.mark.parametrize("name", ["flexora", "layra", "scalezero"])
def test_quick_end_to_end_on_smollm2(tmp_path, name):
    from workbench.cli import main

    assert main(["reproduce", name, "--quick", "--out", str(tmp_path)]) == 0
    t = pd.read_csv(tmp_path / f"{name}.csv", keep_default_na=False)
    assert list(t.columns) == COLUMNS and set(t.seed) == {0}
    assert "quick mode" in (tmp_path / f"{name}.md").read_text()
