"""ALoRA, MoRA (continual) and DMoERM experiments: their measures by hand, their code paths on a tiny lab."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import torch

from tests.experiments.toy import toy_lab, toy_tasks
from workbench.analysis.rank_reuse import block_slices, rank_block_mass, reuse_table
from workbench.analysis.reward_mixture import capability_weights, router_bars
from workbench.errors import WorkbenchError
from workbench.experiments import reproduce
from workbench.experiments.alora import (
    ALoRAExperiment,
    alora_budget,
    attention_off,
    prev_token_share,
    uniform_prev_share,
)
from workbench.experiments.base import COLUMNS
from workbench.experiments.dmoerm import DMoERMExperiment, dmoerm_budget, pairwise_accuracy
from workbench.experiments.mora_continual import MoRAContinualExperiment, continual_measures
from workbench.hooks.routing_record import RoutingRecord
from workbench.tasks import Example, Task
from workbench.tasks.preference import corrupt, preference_pairs

# ---------------------------------------------------------------------------------------------- measures


def test_prev_token_share_is_one_minus_the_self_weight_over_real_tokens():
    w = torch.tensor([[[1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.2, 0.3, 0.5]]])  # (1, T=3, T)
    # self weights 1, .75, .5 -> others 0, .25, .5: mean over the 3 tokens = .25
    assert prev_token_share(w).item() == pytest.approx(0.25)
    # the last token is padding: mean over the first two = .125
    assert prev_token_share(w, torch.tensor([[1, 1, 0]])).item() == pytest.approx(0.125)


def test_the_uniform_yardstick_is_the_share_of_a_causal_mean():
    assert uniform_prev_share(1) == 0.0
    assert uniform_prev_share(3) == pytest.approx((0 + 1 / 2 + 2 / 3) / 3)
    t = 4
    uniform = torch.ones(t, t).tril() / torch.arange(1, t + 1)[:, None]  # row t: 1/t on tokens 1..t
    assert prev_token_share(uniform[None]).item() == pytest.approx(uniform_prev_share(t))


def test_attention_off_turns_alora_into_its_plain_lora_and_restores_it():
    lab = toy_lab()
    routed = lab.add_router("al", "alora", "attention", seed=0, r=4, heads=2, init="random")
    router = next(iter(routed.modules.values()))
    x = torch.randn(2, 5, router.A.shape[1])
    before = router.W_o.detach().clone()
    with attention_off(routed):
        out = router(x, None)
        plain = router.scaling * (x @ router.A.T) @ router.B.T  # s · B A x
        torch.testing.assert_close(out, plain)
    torch.testing.assert_close(router.W_o.detach(), before)
    assert not torch.allclose(router(x, None), plain)  # the attention is back


def test_the_alora_budget_counts_what_the_router_trains():
    lab = toy_lab()
    import workbench.experiments.alora as mod

    routed = lab.add_router("al", "alora", mod.TARGETS, seed=0, r=mod.RANK, heads=mod.HEADS)
    assert alora_budget(lab) == routed.n_parameters(trainable_only=True)


def test_continual_measures_by_hand():
    after = {(0, "a"): 0.8, (1, "a"): 0.6, (1, "b"): 0.9, (2, "a"): 0.5, (2, "b"): 0.7, (2, "c"): 0.4}
    m = continual_measures(after, ["a", "b", "c"])
    assert m["forgetting_first"] == pytest.approx(0.8 - 0.5)  # right after task a, minus after the last
    assert m["mean_forgetting"] == pytest.approx(((0.8 - 0.5) + (0.9 - 0.7)) / 2)  # b: after its own stage
    assert m["last_score"] == pytest.approx(0.4)
    assert m["final_score"] == pytest.approx((0.5 + 0.7 + 0.4) / 3)


def _cache(weights: torch.Tensor, selected: torch.Tensor | None = None) -> dict:
    key = "model.layers.0.self_attn.q_proj.routes.mora.hook_route"
    return {key: RoutingRecord(weights, weights, selected)}


def test_rank_block_mass_shares_the_gate_weight_by_task_block():
    # 1 layer, 2 rows (tasks a, b), 2 tokens, 3 ranks: block a = rank 0, block b = ranks 1-2
    w = torch.tensor([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]],
                      [[0.0, 0.5, 0.5], [0.2, 0.8, 0.0]]])
    sel = torch.tensor([[[0, 1], [0, 2]], [[1, 2], [0, 1]]])  # top-2 per token
    mass = rank_block_mass(_cache(w, sel), [("a", 1), ("b", 2)], ["a", "b"])
    got = mass.set_index(["group", "block"])
    assert got.loc[("a", "a"), "mass"] == pytest.approx(1.5 / 2)  # row a: 0.5 + 1.0 of 2.0 on rank 0
    assert got.loc[("b", "b"), "mass"] == pytest.approx(1.8 / 2)
    assert got.loc[("a", "b"), "active"] == pytest.approx(2 / 4)  # selections 0,1,0,2: two in block b
    # padding is excluded: row b's second token masked -> all of b's weight on block b
    masked = rank_block_mass(_cache(w, sel), [("a", 1), ("b", 2)], ["a", "b"], torch.tensor([[1, 1], [1, 0]]))
    assert masked.set_index(["group", "block"]).loc[("b", "b"), "mass"] == pytest.approx(1.0)
    table = reuse_table(mass)
    assert list(table.columns) == ["a", "b"] and list(table.index) == ["a", "b"]
    assert table.sum(axis=1).tolist() == pytest.approx([1.0, 1.0])


def test_rank_blocks_must_cover_the_ranks():
    assert block_slices([("a", 2), ("b", 3)]) == {"a": slice(0, 2), "b": slice(2, 5)}
    with pytest.raises(WorkbenchError, match="distinct"):
        block_slices([("a", 2), ("a", 1)])
    with pytest.raises(WorkbenchError, match="sum to 2"):
        rank_block_mass(_cache(torch.ones(1, 1, 3)), [("a", 1), ("b", 1)])


def test_pairwise_accuracy_counts_ties_as_half():
    chosen, rejected = torch.tensor([1.0, 0.0, 2.0, 1.0]), torch.tensor([0.0, 1.0, 2.0, 0.5])
    assert pairwise_accuracy(chosen, rejected) == 2.5 / 4  # win, loss, tie, win


def test_router_bars_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])
    bars = router_bars(probs, ["x", "x", "y"], ["c0", "c1"]).set_index(["group", "category"])
    assert bars.loc[("x", "c0"), "prob"] == pytest.approx(0.6) and bars.loc[("x", "c0"), "chosen"] == 0.5
    assert bars.loc[("y", "c1"), "prob"] == pytest.approx(0.8) and bars.loc[("y", "c1"), "chosen"] == 1.0
    with pytest.raises(WorkbenchError, match="conversations, categories"):
        router_bars(probs, ["x", "x"], ["c0", "c1"])


def test_capability_weights_are_gradient_times_input_shares_per_block():
    w = torch.tensor([1.0, 2.0, -1.0, 3.0])  # a linear reward: grad × input = w ⊙ f
    f = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 1.0]])  # 2 experts of H = 2
    weights = capability_weights(lambda x: x @ w, f, ["e1", "e2"], ["g", "h"]).set_index(["group", "expert"])
    # row g: blocks |1+2| = 3 and |-1+3| = 2 -> .6, .4; row h: |2| and |3| -> .4, .6
    assert weights.loc[("g", "e1"), "weight"] == pytest.approx(0.6)
    assert weights.loc[("h", "e2"), "weight"] == pytest.approx(0.6)


class _Tok:
    eos_token = "<|im_end|>"
    chat_template = None


def test_preference_pairs_corrupt_the_answer_plausibly_and_deterministically():
    rng = random.Random(0)
    ex = Example("which colour ?", "red", ("red", "green", "blue"))
    assert {corrupt(ex, [ex], rng) for _ in range(50)} == {"green", "blue"}
    num = Example("Calculate 2 + 3.", "5")
    wrong = {int(corrupt(num, [num], rng)) for _ in range(200)}
    assert 5 not in wrong and min(wrong) >= -5 and max(wrong) <= 15 and len(wrong) > 10
    text = [Example("say a", "alpha"), Example("say b", "beta")]
    assert corrupt(text[0], text, rng) == "beta"
    with pytest.raises(WorkbenchError, match="same target"):
        corrupt(text[0], text[:1], rng)
    task = Task("t", "toy", "exact_match", text, [num])
    pairs = preference_pairs(_Tok(), task, task.train, seed=0)
    assert pairs[0].chosen == pairs[0].prompt + "alpha<|im_end|>"
    assert pairs[0].rejected.endswith("<|im_end|>") and pairs[0].rejected != pairs[0].chosen
    assert pairs == preference_pairs(_Tok(), task, task.train, seed=0)  # same seed, same pairs


def test_the_dmoerm_budget_counts_what_dmoerm_trains():
    class Toy(DMoERMExperiment):
        def categories(self):
            return {"choose": ("colour", "fruit"), "count": ("sum",)}

        def load_tasks(self):
            return toy_tasks()

    lab = toy_lab()
    done = reproduce("dmoerm", experiment=Toy(), quick=True, lab=lab, out=_tmp(), log=lambda s: None)
    table = done.table
    sizes = table[table.measure == "trainable_params"].set_index("arm")["value"]
    assert sizes["dmoerm"] == dmoerm_budget(lab, Toy().categories())
    assert abs(sizes["single_rm"] / sizes["dmoerm"] - 1) < 0.05  # the same trainable budget
    assert not lab.adapters and not lab.routers
    assert set(table[table.measure == "pref_accuracy"].task) == {"", "colour", "fruit", "sum"}
    assert table[table.measure.str.startswith("pref_accuracy")].value.between(0, 1).all()
    bars = table[table.measure.str.startswith("route_prob:")]
    assert bars.groupby("task").value.sum().tolist() == pytest.approx([1.0] * 3)  # per prompt task
    assert {"router_accuracy", "expert_accuracy", "capability_weight:colour"} <= set(table.measure)
    assert len(done.verdicts) == 1 + 3 + 1  # overall, per capability, router


def _tmp():
    import tempfile

    return tempfile.mkdtemp(prefix="routeb_")


# ---------------------------------------------------------------------------------------------- code paths


def test_alora_experiment_runs_both_arms_on_a_tiny_lab():
    class Toy(ALoRAExperiment):
        def load_tasks(self):
            t = toy_tasks()
            return {k: t[k] for k in ("colour", "fruit")}

    lab = toy_lab()
    done = reproduce("alora", experiment=Toy(), quick=True, lab=lab, out=_tmp(), log=lambda s: None)
    table = done.table
    assert list(table.columns) == COLUMNS and set(table.arm) == {"lora", "alora"}
    assert not lab.adapters and not lab.routers
    sizes = table[table.measure == "trainable_params"].set_index("arm")["value"]
    assert abs(sizes["lora"] / sizes["alora"] - 1) < 0.05
    alora = set(table[table.arm == "alora"].measure)
    assert {"multitask_score_no_attention", "prev_token_share"} <= alora
    assert [v.measure for v in done.verdicts] == ["multitask_score: alora − lora",
                                                 "multitask_score: alora − alora with O = 0"]


def test_mora_continual_runs_the_tasks_in_order_and_grows_the_ranks():
    class Toy(MoRAContinualExperiment):
        def load_tasks(self):
            return toy_tasks()

    lab = toy_lab()
    done = reproduce("mora_continual", experiment=Toy(), quick=True, lab=lab, out=_tmp(), log=lambda s: None)
    table = done.table
    assert not lab.adapters and not lab.routers
    # after stage j the first j tasks are scored
    for j, seen in enumerate([{"colour"}, {"colour", "fruit"}, {"colour", "fruit", "sum"}], start=1):
        assert set(table[(table.arm == "mora") & (table.measure == f"score_after_{j}")].task) == seen
    reuse = table[(table.arm == "mora") & (table.measure == "reuse")].set_index("task")["value"]
    assert list(reuse.index) == ["fruit", "sum"] and reuse.between(0, 1).all()
    mass = table[table.measure.str.startswith("block_mass:")]
    assert mass.groupby("task").value.sum().tolist() == pytest.approx([1.0] * 3)
    sizes = table[table.measure == "trainable_params"].set_index("arm")["value"]
    assert sizes["mora"] == sizes["lora_seq"]  # the same trainable count per task
    assert len(done.verdicts) == 4


def test_the_experiments_are_registered_with_their_references():
    from workbench.experiments import EXPERIMENTS

    assert {"alora", "mora_continual", "dmoerm"} <= set(EXPERIMENTS.names())
    for name in ("alora", "mora_continual", "dmoerm"):
        assert "arXiv" in EXPERIMENTS.info(name).reference


# ---------------------------------------------------------------------------------------------- SmolLM2


@pytest.mark.reproduce
@pytest.mark.parametrize("name", ["alora", "mora_continual", "dmoerm"])
def test_quick_end_to_end_on_smollm2(name, tmp_path):
    from workbench.cli import main

    assert main(["reproduce", name, "--quick", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / f"{name}.csv", keep_default_na=False)
    assert list(table.columns) == COLUMNS and set(table.seed) == {0} and len(set(table.arm)) == 2
    scores = table[table.measure.isin(["score", "pref_accuracy", "score_after_3"])]
    assert len(scores) and scores.value.between(0, 1).all()
    assert "quick mode" in (tmp_path / f"{name}.md").read_text()


# ---------------------------------------------------------------------------------------------- views


def _summary(rows):
    return pd.DataFrame(rows, columns=["arm", "measure", "task", "mean", "low", "high", "n"])


def test_the_rank_reuse_view_reads_the_block_mass_rows_of_a_run():
    from widgets.rank_reuse import rank_reuse_figure
    from workbench.experiments.mora_continual import reuse_frame

    summary = _summary([("mora", "block_mass:a", "a", 0.7, 0.6, 0.8, 3),
                        ("mora", "block_mass:b", "a", 0.3, 0.2, 0.4, 3),
                        ("mora", "block_mass:a", "b", 0.4, 0.3, 0.5, 3),
                        ("mora", "block_mass:b", "b", 0.6, 0.5, 0.7, 3),
                        ("mora", "reuse", "b", 0.4, 0.3, 0.5, 3),
                        ("lora_seq", "block_mass:a", "a", 9, 9, 9, 3)])  # another arm: left out
    table = reuse_table(reuse_frame(summary))
    assert table.loc["a", "a"] == 0.7 and table.loc["b", "a"] == 0.4 and list(table.columns) == ["a", "b"]
    fig = rank_reuse_figure(table)
    assert fig.data[0].z.tolist() == [[0.7, 0.3], [0.4, 0.6]]


def test_the_dmoerm_views_read_the_two_levels_of_a_run():
    from widgets.reward_mixture import capability_weights_figure, router_bars_figure
    from workbench.experiments.dmoerm import level_frames

    summary = _summary([("dmoerm", "route_prob:labels", "topic", 0.9, 0.8, 1.0, 3),
                        ("dmoerm", "route_prob:answers", "topic", 0.1, 0.0, 0.2, 3),
                        ("dmoerm", "capability_weight:topic", "topic", 0.6, 0.5, 0.7, 3),
                        ("dmoerm", "capability_weight:language", "topic", 0.4, 0.3, 0.5, 3),
                        ("dmoerm", "pref_accuracy", "topic", 0.5, 0.4, 0.6, 3)])
    bars, weights = level_frames(summary)
    assert bars.set_index("category").loc["labels", "prob"] == 0.9 and len(bars) == 2
    assert weights.set_index("expert").loc["language", "weight"] == 0.4 and len(weights) == 2
    assert [t.name for t in router_bars_figure(bars).data] == ["labels", "answers"]
    fig = capability_weights_figure(weights)
    assert list(fig.data[0].error_y.array) == pytest.approx([0.1])
    with pytest.raises(WorkbenchError, match="columns"):
        router_bars_figure(weights)
