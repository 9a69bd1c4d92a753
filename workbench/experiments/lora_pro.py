"""LoRA-Pro against plain LoRA at equal rank, steps and learning rate, on SmolLM2.

Claims (Wang et al., LoRA-Pro, ICLR 2025):

1. closer to full fine-tuning: along training, LoRA-Pro's equivalent gradient is closer to the full
   gradient G = ∂L/∂W of each adapted weight than plain LoRA's (relative gap ‖g̃ − G‖_F/‖G‖_F, each
   arm on its own trajectory, mean over steps and modules);
2. the same holds up to scale (the sine of the angle between g̃ and G, what a learning rate cannot fix);
3. a better score than plain LoRA at equal steps.

Arms (same targets, rank, α, steps, lr, batch, seeds): ``lora`` (AdamW on A and B), ``lorapro``
(the ``lorapro`` optimizer: adjusted gradients, full-size Adam state on the equivalent gradient, SGD
on A and B). Both arms record, at every step, the gap of both kinds at their own (A, B, G)
(``workbench.training.gradient_gap``): rows ``gap_lora``/``gap_lorapro`` (and ``sine_*``) with task
``step NN`` (the mean over modules), so the gradient-gap view can plot them over steps with their
interval over seeds; ``mean_gap``/``mean_sine`` are the run's own kind (LoRA's raw g̃ for ``lora``,
the adjusted g̃ for ``lorapro``) averaged over steps.

Reference: Wang et al., "LoRA-Pro: Are Low-Rank Adapters Properly Optimized?", ICLR 2025 (arXiv
2407.18242); code github mrflogs/LoRA-Pro.
"""

from __future__ import annotations

import time

import pandas as pd

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
from workbench.training.gradient_gap import GradientGap

TASKS = ("topic", "language")
RANK, TARGETS = 8, "attention"
OPTIMIZER = {"lora": "adamw", "lorapro": "lorapro"}
OWN = {"lora": "lora", "lorapro": "lorapro"}  # the gap kind each arm actually steps with


def step_label(step: int) -> str:
    """The ``task`` cell of a per-step row: ``step 07``."""
    return f"step {step:02d}"


@EXPERIMENTS.register("lora_pro")
class LoRAProExperiment(Experiment):
    """LoRA-Pro against plain LoRA: the equivalent-gradient gap to full fine-tuning, and the score."""

    title = "LoRA-Pro against plain LoRA at equal rank and steps (topic, language)"
    claims = ("LoRA-Pro's equivalent gradient is closer to the full gradient than LoRA's",
              "closer in direction too (the scale-free gap)",
              "LoRA-Pro scores better than plain LoRA at equal steps")
    arms = ("lora", "lorapro")
    tasks = TASKS
    full = Schedule(steps=8, lr=3e-3, batch_size=4, eval_limit=24)
    quick = Schedule(steps=2, lr=2e-3, batch_size=2, eval_limit=2, seeds=(0,))
    notes = ("sizing: the full schedule is cut to finish in about 6 minutes at 1 torch thread on the shared "
             "2-CPU machine (load average ~11 at the time, two run slots shared by six helpers, a queue of "
             "13 runs); far shorter than the paper's training, so small effects cannot show.",
             f"both arms: a rank-{RANK} LoRA (α = 2r, s = 2, the paper's r = 8, α = 16) on q/k/v/o of every "
             "layer, dropout 0, the same lr, linear warm-up (10%) and decay, batch and seeds; trained on the "
             f"mix of {', '.join(TASKS)}. The paper also adapts gate/up/down and runs lr 2e-5 for 1 epoch "
             "at batch 32 on LLaMA-2-7B; the CPU budget allows only a few steps, so the lr is the "
             "workbench's (one lr for both arms as in the paper, no sweep).",
             "lorapro: the authors' 'full' variant (adjusted gradients with the Sylvester X, full-size Adam "
             "state on the equivalent gradient, plain SGD step; workbench.training.lorapro).",
             "gap: ‖g̃ − G‖_F/‖G‖_F per adapted weight, G = ∂L/∂W built from the layer's input and output "
             "gradient (hooks), g̃ = s(B g_A + g_B A) with LoRA's raw gradients (kind lora) or LoRA-Pro's "
             "adjusted ones before the Adam state (kind lorapro), mean over the 120 modules; sine = "
             "√(1 − cos²∠(g̃, G)). Per-step rows: task 'step NN'.",
             "claims 1-2 compare each arm's own kind on its own trajectory (lorapro's adjusted g̃ on the "
             "lorapro run against LoRA's raw g̃ on the lora run), paired by seed; on the same point the "
             "adjusted g̃ is never farther (a theorem; the unit tests check it).",
             "training: the multi-task trainer (tasks drawn in proportion to their sizes, the mean example "
             "loss), on an adapter made first with the seed (PEFT's init: B = 0).",
             "score: first-token accuracy on the first eval_limit held-out examples of each task; "
             "multitask_score is their mean. No full fine-tuning arm (CPU budget).")


    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        loaded = self.load_tasks()
        with scratch(lab):
            t0 = time.perf_counter()
            adapter = lab.new_adapter(arm, r=RANK, alpha=2 * RANK, targets=TARGETS, seed=seed)
            params = sum(f.A.numel() + f.B.numel() for f in adapter.modules.values())
            with GradientGap(lab, arm) as probe:  # the multi-task trainer trains the adapter made here
                result = lab.train_multitask(arm, list(loaded.values()), steps=schedule.steps, lr=schedule.lr,
                                             batch_size=schedule.batch_size, seed=seed,
                                             optimizer=OPTIMIZER[arm], progress=False)
            history = result.history[result.history.task == "total"]
            seconds = time.perf_counter() - t0
            scores = lab.evaluate({arm: arm}, loaded, limit=schedule.eval_limit, progress=False)
            per_step = probe.per_step()
            own = per_step[per_step.kind == OWN[arm]]
            out = rows(arm, {"trainable_params": params, "train_seconds": seconds,
                             "final_loss": history["loss"].tail(max(1, len(history) // 4)).mean(),
                             "multitask_score": scores["value"].mean(),
                             "mean_gap": own["gap"].mean(), "mean_sine": own["sine"].mean()})
            for s in scores.itertuples():
                out += rows(arm, {"score": s.value}, task=s.task)
            for r in per_step.itertuples():
                out += rows(arm, {f"gap_{r.kind}": r.gap, f"sine_{r.kind}": r.sine}, task=step_label(r.step))
        return pd.DataFrame(out)

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        if not {"lora", "lorapro"} <= set(table.arm):
            return []
        gap = paired(table, "mean_gap", "lora", "lorapro")
        sine = paired(table, "mean_sine", "lora", "lorapro")
        score = paired(table, "multitask_score", "lorapro", "lora")
        return [Verdict(self.claims[0], "mean_gap: lora − lorapro (> 0: LoRA-Pro closer)", gap,
                        decide(gap)),
                Verdict(self.claims[1], "mean_sine: lora − lorapro (> 0: LoRA-Pro closer)", sine,
                        decide(sine)),
                Verdict(self.claims[2], "multitask_score: lorapro − lora", score, at_least(score))]
