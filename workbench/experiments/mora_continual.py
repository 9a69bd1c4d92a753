"""MoRA in continual learning: tasks one after another, forgetting against a sequential plain LoRA.

Claim (Lu et al., MoRA "Little By Little", arXiv 2506.21035): a pool of self-activated rank-1
experts, grown by a block of ranks per task with every earlier rank frozen but kept in the mixture,
learns tasks in sequence with less forgetting of the earlier tasks than fine-tuning one adapter
sequentially. Tried as: forgetting of task 1 (its score right after it was learned minus its score
after the last task) is lower for MoRA than for a plain LoRA trained on the same tasks in the same
order with the same per-task trainable budget, steps, lr, batch and seeds.

Also recorded: the mean forgetting over all earlier tasks, the last task's score (plasticity: low
forgetting bought by not learning is no win), and **rank reuse**: right after task t is learned, the
share of the gate weight its held-out tokens put on the ranks of tasks < t, against the share a
uniform choice over the ranks would give ((t − 1)/t): reuse above it means the new task leans on old
ranks, below it that it mostly adds its own.

The mechanism is the workbench's reconstruction (``workbench.routing.mechanisms.mora``, no public
code).

Reference: Lu et al., "Little By Little: Continual Learning via Self-Activated Sparse Mixture-of-Rank
Adaptive Learning" (MoRA, arXiv 2506.21035); no public code (the mechanism is reconstructed).
"""

from __future__ import annotations

import time

import pandas as pd
import torch

from workbench.analysis.rank_reuse import rank_block_mass
from workbench.experiments._heldout import held_out_prompts
from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    at_least,
    decide,
    paired,
    rows,
    scratch,
)
from workbench.experiments.stats import mean_interval
from workbench.routing.mechanisms.mora import add_task_ranks
from workbench.training import encode_tasks, fit

TASKS = ("language", "topic", "trivia")  # the order they arrive in
RANK, K, TAU = 8, 4, 1.0  # rank-1 experts added per task, active per token, temperature
SCALE = 2.0 * K  # top-k softmax weights average 1/k: k·s makes MoRA's update scale match LoRA's s = α/r = 2
TARGETS = "all-linear"  # the paper: attention and MLP
PLAIN, ROUTED = "lora_seq", "mora"


@EXPERIMENTS.register("mora_continual")
class MoRAContinualExperiment(Experiment):
    """MoRA (growing rank-1 experts, reconstructed) against a sequential plain LoRA: forgetting, reuse."""

    title = "MoRA in continual learning (language → topic → trivia) against a sequentially trained plain LoRA"
    claims = ("MoRA forgets the first task less than a sequential plain LoRA",
              "MoRA forgets the earlier tasks less on average",
              "MoRA still learns the last task as well (plasticity ≥ plain LoRA)",
              "a new task reuses earlier ranks beyond a uniform choice")
    arms = (PLAIN, ROUTED)
    tasks = TASKS
    full = Schedule(steps=5, lr=5e-3, batch_size=4, eval_limit=8, prompts=2)
    quick = Schedule(steps=2, lr=2e-3, batch_size=2, eval_limit=2, seeds=(0,), prompts=2)
    notes = (f"order: {' → '.join(TASKS)}; `steps` optimizer steps per task (so 3× in all), the same lr, "
             "batch and seeds for both arms; after each task, every task seen so far is scored on its first "
             "eval_limit held-out examples (first-token accuracy).",
             f"MoRA (RECONSTRUCTED, no public code): {RANK} rank-1 experts per task on every linear layer "
             f"(q/k/v/o/gate/up/down), top-{K} of the normalised self-activations s_i = h_i/‖h‖, softmax "
             f"(τ = {TAU:g}) over the top-k, no test-time pruning (δ = −∞); earlier tasks' ranks frozen. "
             f"scale = {SCALE:g} (the spec leaves it open: k·α/r so that the mean top-k weight 1/k gives "
             "plain LoRA's s = 2).",
             f"sequential plain LoRA: one rank-{RANK} LoRA (α = 2r) on the same layers, trained on each task "
             "in turn: the same trainable count per task as MoRA's new block; MoRA's total grows by that "
             "each task (frozen), the LoRA's does not.",
             "forgetting (per earlier task): score right after learning it − score after the last task; "
             "forgetting_first is task 1's, mean_forgetting the mean over tasks 1..T−1. last_score: the "
             "last task's score after training it. final_score: the mean over all tasks after the last.",
             "reuse (task t ≥ 2, MoRA): share of the gate weight of task t's held-out prompt tokens on the "
             "ranks of tasks < t, right after learning task t, mean over modules; reuse_vs_uniform subtracts "
             "(t − 1)/t. block_mass:<block> (task = the prompts' task): the same share per block after the "
             "last task (the rank-reuse view's matrix).",
             "CPU scale: 5 steps of batch 4 per task (lr 5e-3 so that 5 steps learn a task); the paper "
             "trains CLIP/T5/LLaMA-7B for epochs per task.")


    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        loaded = self.load_tasks()
        names = list(loaded)
        out, after, blocks = [], {}, []  # after[(stage, task)] = score
        with scratch(lab):
            t0 = time.perf_counter()
            if arm == PLAIN:
                adapter = lab.new_adapter(PLAIN, r=RANK, alpha=2.0 * RANK, targets=TARGETS, seed=seed)
                trainable = [p for f in adapter.modules.values() for p in (f.A, f.B)]
                out += rows(arm, {"trainable_params": sum(p.numel() for p in trainable)})
            else:
                routed = lab.add_router(ROUTED, "mora", TARGETS, seed=seed, r=RANK, k=K, tau=TAU, scale=SCALE)
                out += rows(arm, {"trainable_params": routed.n_parameters(trainable_only=True)})
            for stage, name in enumerate(names):
                if arm == ROUTED:
                    if stage:
                        add_task_ranks(routed, RANK)
                    trainable = routed.trainable()
                    blocks.append((name, RANK))
                fit(lab, trainable, encode_tasks(lab, [loaded[name]]), use=arm, label=f"{arm}:{name}",
                    steps=schedule.steps, lr=schedule.lr, batch_size=schedule.batch_size, seed=seed,
                    progress=False)
                seen = {n: loaded[n] for n in names[:stage + 1]}
                scores = lab.evaluate({arm: arm}, seen, limit=schedule.eval_limit, progress=False)
                for s in scores.itertuples():
                    after[(stage, s.task)] = s.value
                    out += rows(arm, {f"score_after_{stage + 1}": s.value}, task=s.task)
                if arm == ROUTED and stage:
                    mass = block_mass(lab, ROUTED, {name: loaded[name]}, blocks, schedule.prompts)
                    reuse = float(mass[mass.block.isin(names[:stage])].groupby(
                        ["layer", "module"])["mass"].sum().mean())
                    out += rows(arm, {"reuse": reuse, "reuse_vs_uniform": reuse - stage / (stage + 1)},
                                task=name)
            out += rows(arm, {"train_seconds": time.perf_counter() - t0})
            out += rows(arm, continual_measures(after, names))
            if arm == ROUTED:
                mass = block_mass(lab, ROUTED, loaded, blocks, schedule.prompts)
                for (group, block), part in mass.groupby(["group", "block"], sort=False):
                    out += rows(arm, {f"block_mass:{block}": part["mass"].mean()}, task=group)
        return pd.DataFrame(out)

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        out = []
        if {PLAIN, ROUTED} <= set(table.arm):
            for claim, measure in zip(self.claims[:2], ("forgetting_first", "mean_forgetting"), strict=True):
                d = paired(table, measure, PLAIN, ROUTED)
                out.append(Verdict(claim, f"{measure}: lora_seq − mora (> 0: MoRA forgets less)", d,
                                   decide(d)))
            d = paired(table, "last_score", ROUTED, PLAIN)
            out.append(Verdict(self.claims[2], "last_score: mora − lora_seq", d, at_least(d)))
        part = table[(table.arm == ROUTED) & (table.measure == "reuse_vs_uniform")]
        if len(part):
            r = mean_interval(part.groupby("seed")["value"].mean().tolist())
            out.append(Verdict(self.claims[3], "reuse − (t − 1)/t, mean over tasks t ≥ 2 (mora)", r,
                               decide(r)))
        return out


def continual_measures(after: dict[tuple[int, str], float], names: list[str]) -> dict[str, float]:
    """forgetting_first, mean_forgetting, last_score, final_score from the scores after each stage.

    Args:
        after: (stage index, task) -> score of the task after training stages 0..stage.
        names: the tasks in arrival order (task i is learned at stage i).
    """
    last = len(names) - 1
    forgetting = [after[(i, n)] - after[(last, n)] for i, n in enumerate(names[:-1])]
    return {"forgetting_first": forgetting[0] if forgetting else 0.0,
            "mean_forgetting": sum(forgetting) / len(forgetting) if forgetting else 0.0,
            "last_score": after[(last, names[-1])],
            "final_score": sum(after[(last, n)] for n in names) / len(names)}


@torch.no_grad()
def block_mass(lab, router: str, loaded: dict, blocks, n_prompts: int) -> pd.DataFrame:
    """``rank_block_mass`` of ``router`` on each task's held-out prompts (group = the prompts' task)."""
    frames = []
    with lab.using(router), lab.session(train=False):
        for task, texts in held_out_prompts(lab, loaded, n_prompts).items():
            batch = lab.encode(texts)
            _, cache = lab.run(batch, record=f"*.routes.{router}.hook_route")
            frames.append(rank_block_mass(cache, blocks, [task] * len(texts), batch["attention_mask"]))
    return pd.concat(frames, ignore_index=True)



def reuse_frame(summary: pd.DataFrame, arm: str = ROUTED) -> pd.DataFrame:
    """``group, block, mass`` (with ``low, high``) from a measure table's ``block_mass:<block>`` rows.

    ``summary`` is ``summary.measure_table`` of a run (what ``full_results`` returns): the mean over
    seeds of each (prompt task, rank block) share; ``analysis.rank_reuse.reuse_table`` makes the matrix.
    """
    part = summary[(summary.arm == arm) & summary.measure.str.startswith("block_mass:")]
    return pd.DataFrame({"group": part.task.to_numpy(),
                         "block": part.measure.str.split(":", n=1).str[1].to_numpy(),
                         "mass": part["mean"].to_numpy(), "low": part.low.to_numpy(),
                         "high": part.high.to_numpy()})
