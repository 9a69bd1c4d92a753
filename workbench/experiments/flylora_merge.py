"""FlyLoRA's merging claim: task adapters with frozen random sparse A interfere less when summed.

Claim (Zou et al., FlyLoRA, NeurIPS'25, Sec. on model merging): because each adapter's A is a frozen
sparse random projection, and random projections of different seeds are nearly orthogonal, FlyLoRA
adapters trained on different tasks occupy nearly orthogonal subspaces; summed, they interfere less
than plain LoRAs summed. Tried here two ways:

1. geometry: the mean |cos| between the two task adapters' ΔW (per module, over the routed modules;
   FlyLoRA's static ΔW = (α/r)·B·A, plain LoRA's (α/r)·B·A) is lower for FlyLoRA;
2. behaviour: the merge drop — each task's held-out answer loss under the sum of both adapters minus
   under its own adapter alone, averaged over the two tasks — is lower for FlyLoRA.

Arms: ``lora`` (one plain LoRA per task on q/k/v/o, rank matched to FlyLoRA's trainable count, α = 2r)
and ``flylora`` (one FlyLoRA per task, r = 32, k = 8, α = 64, A drawn from a different seed per task);
each arm trains both task adapters with the same schedule, then measures both adapters and their sum.

Reference: Zou et al., "FlyLoRA: Boosting Task Decoupling and Parameter Efficiency via Implicit
Rank-Wise Mixture-of-Experts" (NeurIPS'25, arXiv 2510.08396); mechanism in
``workbench/routing/mechanisms/flylora.py``.
"""

from __future__ import annotations

import time

import pandas as pd
import torch

from workbench.experiments.answers import answer_features, answer_scores
from workbench.experiments.banks import final_loss, n_trainable
from workbench.experiments.base import (
    EXPERIMENTS,
    Experiment,
    Schedule,
    Verdict,
    decide,
    matched_rank,
    paired,
    rows,
    scratch,
)
from workbench.training import fit

TARGETS = "attention"
R, K, ALPHA = 32, 8, 64.0  # the authors' run_mmlu.sh defaults
PLAIN, FLY = "lora", "flylora"


@EXPERIMENTS.register("flylora_merge")
class FlyLoRAMergeExperiment(Experiment):
    """FlyLoRA task adapters summed against plain LoRA task adapters summed (two tasks)."""

    title = "FlyLoRA against plain LoRA when two task adapters are summed (topic, arithmetic)"
    tasks = ("topic", "arithmetic")
    claims = ("FlyLoRA task adapters are closer to orthogonal than plain LoRA's (mean |cos| of ΔW)",
              "summed, FlyLoRA task adapters lose less on each task than plain LoRAs summed")
    arms = (PLAIN, FLY)
    full = Schedule(steps=10, lr=3e-3, batch_size=4, eval_limit=24)
    quick = Schedule(steps=2, lr=2e-3, batch_size=2, eval_limit=2, seeds=(0,))
    notes = (f"FlyLoRA: r={R}, k={K}, α={ALPHA:g} on q/k/v/o (the authors' MMLU script), A frozen and "
             "sparse, a different A seed per task (seed·10 + task index); only B trains.",
             "plain LoRA: q/k/v/o, rank chosen so its trainable count is the closest to FlyLoRA's (r·out per "
             "module), α = 2r, B = 0 at the start, A initialised from the same per-task seeds as FlyLoRA's A "
             "(so neither arm starts with shared factors); the same steps, lr, batch and data order.",
             "abs_cos: per routed module the |cosine| between the two tasks' flattened ΔW, averaged over "
             "modules. FlyLoRA's ΔW here is its static (α/r)·B·A, without the input-dependent top-k mask.",
             "merge_drop: for each task, the mean answer NLL (teacher-forced, first eval_limit held-out "
             "examples) under both adapters summed minus under its own adapter alone; averaged over tasks.",
             "The paper merges on larger models and more tasks; two tasks and 10 steps is the CPU scale.")

    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        loaded = self.load_tasks()
        names = list(loaded)
        train = {n: answer_features(lab.tokenizer, t, t.train, task_index=i)
                 for i, (n, t) in enumerate(loaded.items())}
        held = {n: answer_features(lab.tokenizer, t, t.eval[:schedule.eval_limit], task_index=i)
                for i, (n, t) in enumerate(loaded.items())}
        out = []
        with scratch(lab):
            t0 = time.perf_counter()
            deltas, losses, params = {}, [], 0
            for i, name in enumerate(names):
                label = f"{arm}_{name}"
                if arm == PLAIN:
                    r = matched_rank(lab, _fly_budget(lab), TARGETS)
                    adapter = lab.new_adapter(label, r=r, alpha=2 * r, targets=TARGETS, seed=seed * 10 + i)
                    history = fit(lab, [p for f in adapter.modules.values() for p in (f.A, f.B)], train[name],
                                  use=label, label=label, steps=schedule.steps, lr=schedule.lr,
                                  batch_size=schedule.batch_size, seed=seed, progress=False)
                    deltas[name] = {p: adapter.delta(p) for p in adapter.modules}
                    params += n_trainable(adapter)
                else:
                    routed = lab.add_router(label, "flylora", seed=seed * 10 + i, r=R, k=K, alpha=ALPHA,
                                            targets=TARGETS)
                    history = fit(lab, routed.trainable(), train[name], use=label, label=label,
                                  steps=schedule.steps, lr=schedule.lr, batch_size=schedule.batch_size,
                                  seed=seed, progress=False)
                    deltas[name] = {p: m.scaling * (m.B @ m.A) for p, m in routed.modules.items()}
                    params += sum(p.numel() for p in routed.trainable())
                losses.append(final_loss(history))
            seconds = time.perf_counter() - t0
            labels = [f"{arm}_{n}" for n in names]
            drops = []
            for i, name in enumerate(names):
                alone = answer_scores(lab, held[name], use=labels[i])["loss"].mean()
                summed = answer_scores(lab, held[name], use=labels)["loss"].mean()
                out += rows(arm, {"loss_alone": alone, "loss_summed": summed}, task=name)
                drops.append(summed - alone)
            out += rows(arm, {"trainable_params": params, "train_seconds": seconds,
                              "final_loss": sum(losses) / len(losses), "merge_drop": sum(drops) / len(drops),
                              "abs_cos": mean_abs_cosine(deltas[names[0]], deltas[names[1]])})
        return pd.DataFrame(out)

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        if not {PLAIN, FLY} <= set(table.arm):
            return []
        cos = paired(table, "abs_cos", PLAIN, FLY)
        drop = paired(table, "merge_drop", PLAIN, FLY)
        return [Verdict(self.claims[0], "abs_cos: lora − flylora (> 0: FlyLoRA closer to orthogonal)", cos,
                        decide(cos)),
                Verdict(self.claims[1], "merge_drop: lora − flylora (> 0: FlyLoRA loses less)", drop,
                        decide(drop))]


def mean_abs_cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The mean over shared modules of |cos| between the flattened ΔW of ``a`` and ``b`` (0 if one is 0)."""
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("the two adapters share no module")
    values = []
    for path in shared:
        x, y = a[path].detach().flatten().double(), b[path].detach().flatten().double()
        norm = x.norm() * y.norm()
        values.append(0.0 if norm == 0 else float((x @ y).abs() / norm))
    return sum(values) / len(values)


def _fly_budget(lab) -> int:
    """FlyLoRA's trainable count on ``TARGETS``: B (out, r) per module (A is frozen)."""
    return sum(R * out for out, _ in lab.shapes(TARGETS).values())
