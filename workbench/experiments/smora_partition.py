"""SMoRA's central claim: single ranks as experts beat block-wise LoRA experts at equal activated parameters.

Claim (Zhao et al., SMoRA, arXiv 2501.15103, its ``rank_partition`` ablation): with the same LoRA rank r
and the same number k of active ranks per token, routing single ranks (P = 1: r experts of rank 1, top-k)
scores better on a multi-task mix than routing blocks of ranks (P = k: r/k experts of rank k, top-1),
i.e. finer-grained experts share knowledge better at the same activated parameters. Also tried: both
against a plain LoRA of rank k (the same activated parameters, fewer total).

Arms (same tasks, schedule, seeds): ``lora_k`` (plain LoRA of rank k on q/k/v/o, α = 2k), ``smora``
(r = 16, k = 4, P = 1) and ``smora_blocks`` (r = 16, k = 4, P = 4: four rank-4 experts, one active). All
on q/k/v/o; the two SMoRA arms have the same factors and the same activated ranks, differing only in P,
so in the router: P = 1 scores r outputs per module, P = k scores r/k (on SmolLM2 2.95 M against 2.12 M
trainable parameters in all).

Reference: Zhao et al., "Each Rank Could be an Expert: Single-Ranked Mixture of Experts LoRA for
Multi-Task Learning" (SMoRA, arXiv 2501.15103); mechanism ``workbench/routing/mechanisms/smora.py``.
"""

from __future__ import annotations

import time

import pandas as pd

from workbench.experiments.answers import answer_features, answer_scores
from workbench.experiments.banks import final_loss
from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    at_least,
    paired,
    rows,
    scratch,
)
from workbench.training import fit

TARGETS = "attention"
R, K, ALPHA = 16, 4, 8.0  # the shipped ready SMoRA router's setting (workbench/ready_routers.py)
ARMS = {"lora_k": None, "smora": 1, "smora_blocks": K}  # arm -> rank_partition (None: plain LoRA)


@EXPERIMENTS.register("smora_partition")
class SMoRAPartitionExperiment(Experiment):
    """SMoRA with single-rank experts against block experts (rank_partition) and a plain rank-k LoRA."""

    title = "SMoRA: single ranks as experts against blocks of ranks at equal activated parameters"
    tasks = ("arithmetic", "topic", "language")
    claims = ("single-rank experts (P = 1) beat block experts (P = k) at equal activated parameters",
              "SMoRA (P = 1) beats a plain LoRA of rank k (equal activated parameters)")
    arms = tuple(ARMS)
    full = Schedule(steps=12, lr=3e-3, batch_size=4, eval_limit=16)
    quick = Schedule(steps=2, lr=2e-3, batch_size=2, eval_limit=2, seeds=(0,))
    notes = (f"SMoRA: r={R}, k={K}, α={ALPHA:g} (scale α/k) on q/k/v/o, balancing bias step u = 1e-5, router "
             "and factors trained; smora_blocks is the same with rank_partition = k (the router scores r/k "
             "blocks, each block's score repeated over its k ranks, top-k ranks = one block).",
             f"lora_k: a plain LoRA of rank {K} on q/k/v/o (α = 2k): the same ranks active per token, "
             "without a router and with r/k times fewer factor parameters.",
             "Scores are teacher-forced on the first eval_limit held-out examples of each task: loss = mean "
             "answer NLL, accuracy = first-token accuracy among the choices (topic, language). "
             "multitask_loss / multitask_accuracy average the tasks.",
             "The paper trains r = 64, k = 8 on all linear layers of 7B models for epochs; here 12 steps "
             "of batch 4 on SmolLM2, the CPU scale.")

    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        loaded = self.load_tasks()
        train = [f for i, t in enumerate(loaded.values())
                 for f in answer_features(lab.tokenizer, t, t.train, task_index=i)]
        held = [f for i, t in enumerate(loaded.values())
                for f in answer_features(lab.tokenizer, t, t.eval[:schedule.eval_limit], task_index=i)]
        partition = ARMS[arm]
        with scratch(lab):
            t0 = time.perf_counter()
            if partition is None:
                adapter = lab.new_adapter(arm, r=K, alpha=2 * K, targets=TARGETS, seed=seed)
                params = [p for f in adapter.modules.values() for p in (f.A, f.B)]
            else:
                routed = lab.add_router(arm, "smora", seed=seed, r=R, k=K, alpha=ALPHA,
                                        rank_partition=partition, targets=TARGETS)
                params = routed.trainable()
            history = fit(lab, params, train, use=arm, label=arm, steps=schedule.steps, lr=schedule.lr,
                          batch_size=schedule.batch_size, seed=seed, progress=False)
            seconds = time.perf_counter() - t0
            scores = answer_scores(lab, held, use=arm)
        names = list(loaded)
        per_task = scores.groupby("task")[["loss", "correct"]].mean()
        out = rows(arm, {"trainable_params": sum(p.numel() for p in params), "train_seconds": seconds,
                         "final_loss": final_loss(history), "multitask_loss": per_task["loss"].mean(),
                         "multitask_accuracy": per_task["correct"].mean()})
        for index, r in per_task.iterrows():
            out += rows(arm, {"loss": r["loss"]}, task=names[int(index)])
        return pd.DataFrame(out)

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        out, arms = [], set(table.arm)
        if {"smora", "smora_blocks"} <= arms:
            d = paired(table, "multitask_loss", "smora_blocks", "smora")
            out.append(Verdict(self.claims[0], "multitask_loss: blocks − single ranks (> 0: single ranks "
                               "better)", d, at_least(d)))
        if {"smora", "lora_k"} <= arms:
            d = paired(table, "multitask_loss", "lora_k", "smora")
            out.append(Verdict(self.claims[1], "multitask_loss: lora_k − smora (> 0: SMoRA better)", d,
                               at_least(d)))
        return out
