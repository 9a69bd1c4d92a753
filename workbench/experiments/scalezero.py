"""ScaleZero's dynamic parameter scaling: tasks learned one after another, one frozen adapter per stage.

Claims (ScaleZero's DPS strategy, read for a task sequence on SmolLM2):

1. staged adapters keep what earlier stages learned: the forgetting of the earlier tasks (their score
   at the end of their own stage minus their final score) is lower than that of one plain LoRA of the
   same total trainable parameters trained on the same sequence;
2. the final multi-task score is at least that of the sequential plain LoRA.

Arms (same tasks in the same order, same steps, lr, batch, seeds, the same controller rule):
``lora_seq`` (one plain LoRA of rank ``STAGES·R`` on the attention projections, all of it training in
every stage) and ``scalezero`` (``workbench.training.staged``: one rank-``R`` adapter per task, earlier
adapters frozen, bounded learnable scales on the base weight and on earlier adapters, α ∈ (0.8, 1.2)).

Reference: Huang et al., "One Model for All Tasks: Leveraging Efficient World Models in Multi-Task
Planning" (ScaleZero, arXiv 2509.02722); code github opendilab/LightZero (``CurriculumLoRALinear``).
"""

from __future__ import annotations

import time

import pandas as pd

from workbench.errors import WorkbenchError
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
from workbench.training.staged import train_staged

TASKS = ("language", "trivia")  # the order they arrive in (stage 1, stage 2)
R = 4  # rank of one stage adapter; the plain LoRA has rank len(TASKS) · R
SOLVE_LOSS = 0.05  # a task is solved when its training loss (mean of its last two steps) is below this
PLAIN, STAGED = "lora_seq", "scalezero"


@EXPERIMENTS.register("scalezero")
class ScaleZeroExperiment(Experiment):
    """Staged adapters (ScaleZero's DPS) against one sequential plain LoRA: forgetting over a sequence."""

    title = "ScaleZero's staged adapters against a sequential plain LoRA of equal budget (language → trivia)"
    claims = ("staged adapters forget earlier tasks less than a sequential plain LoRA",
              "final multi-task score ≥ sequential plain LoRA")
    arms = (PLAIN, STAGED)
    tasks = TASKS
    full = Schedule(steps=6, lr=3e-3, batch_size=4, eval_limit=24)
    quick = Schedule(steps=2, lr=3e-3, batch_size=2, eval_limit=2, seeds=(0,))
    notes = (f"tasks arrive one per stage: {' → '.join(TASKS)}; stage s trains task s only; steps = the "
             "controller's max_stage_iters per stage (a task solved earlier hands its spare steps to the "
             f"last stage); solved ⇔ mean training loss of its last two steps < {SOLVE_LOSS}.",
             f"scalezero: one rank-{R} LoRA (α = 2r) per stage on q/k/v/o of every layer; at stage s only "
             "A_s, B_s, the base-weight scale α_0 and the earlier adapters' scales α_j (j < s) train, "
             "per module, α = 1 + 0.2·tanh(θ); the current adapter.s scale stays 1 (as the authors).",
             f"lora_seq: one plain LoRA of rank {len(TASKS) * R} (α = 2r) on the same modules (the same "
             "total trainable count), continued through the stages.",
             "stage_score (task@sN): the task's score (first-token accuracy) on its first eval_limit "
             "held-out examples when stage N ends; forgetting = mean over the earlier tasks of (score at "
             "the end of its own stage − final score); final_mean = mean final score over the tasks.",
             "Deviations: ScaleZero is an RL world model (Atari/DMC/Jericho) whose unsolved tasks train "
             "together; here the stage structure, bounded scales and switch rule are kept and applied to a "
             "task sequence on SmolLM2 (CPU scale: a few steps per stage); no stage 0 (the backbone is "
             "pretrained); peft's LoRA init (A Kaiming-uniform) instead of A ~ 0.01·N(0, 1).",
             "Size: the full schedule is cut to fit about 10 minutes at 1 thread on a quiet core (3 seeds); "
             "the CPUs were shared with other runs (load average in the header).")


    def run_arm(self, lab, arm: str, seed: int, schedule: Schedule) -> pd.DataFrame:
        loaded = self.load_tasks()
        names = list(loaded)
        order = [loaded[t] for t in names]
        out: list[dict] = []
        staged = arm == STAGED
        with scratch(lab):
            t0 = time.perf_counter()
            scores: dict[tuple[str, int], float] = {}
            use = _names(arm, staged, len(order))

            def score_stage(stage: int, loop) -> None:
                found = lab.evaluate({arm: use}, loaded, limit=schedule.eval_limit, progress=False)
                for s in found.itertuples():
                    scores[(s.task, stage)] = float(s.value)

            r = R if staged else len(order) * R
            run = train_staged(lab, arm, order, r=r, alpha=2 * r, stage_steps=schedule.steps,
                               solve_loss=SOLVE_LOSS, lr=schedule.lr, batch_size=schedule.batch_size,
                               seed=seed, plain=not staged, on_stage_end=score_stage, progress=False)
            seconds = time.perf_counter() - t0
            params = sum(p.numel() for n in run.names for f in lab.adapters[n].modules.values()
                         for p in (f.A, f.B))
            out += rows(arm, {"trainable_params": params, "train_seconds": seconds,
                              "final_loss": run.history["loss"].tail(2).mean()})
            out += stage_rows(arm, scores, names)
            for j, step in enumerate(run.starts, start=1):
                out += rows(arm, {"stage_start": step}, task=f"s{j}")
            if staged:
                alphas = run.staged.scale_frame().groupby("scale")["value"]
                for j, (lo, hi) in enumerate(zip(alphas.min(), alphas.max(), strict=True)):
                    out += rows(arm, {"alpha_min": lo, "alpha_max": hi}, task=f"a{j}")
            run.remove()
        return pd.DataFrame(out)

    def verdicts(self, table: pd.DataFrame) -> list[Verdict]:
        if not {PLAIN, STAGED} <= set(table.arm):
            return []
        f = paired(table, "forgetting", PLAIN, STAGED)
        s = paired(table, "final_mean", STAGED, PLAIN)
        return [Verdict(self.claims[0], "forgetting: lora_seq − scalezero (> 0: staged forgets less)", f,
                        decide(f)),
                Verdict(self.claims[1], "final_mean: scalezero − lora_seq", s, at_least(s))]


def _names(arm: str, staged: bool, n_tasks: int) -> list[str]:
    """What the arm's evaluation uses: every stage adapter (later ones have B = 0 until their stage)."""
    return [f"{arm}_{j}" for j in range(1, n_tasks + 1)] if staged else [arm]


def stage_rows(arm: str, scores: dict[tuple[str, int], float], order) -> list[dict]:
    """``stage_score`` per (task, stage), the final ``score`` per task, ``forgetting`` and ``final_mean``.

    ``scores[(task, s)]`` is the task's score when stage s ended (stages 1..T, task i trained in stage i+1).
    forgetting = mean over tasks i < T of (score at the end of stage i+1 − score at the end of stage T).
    """
    last = len(order)
    out = [r for (task, s), v in scores.items() for r in rows(arm, {"stage_score": v}, task=f"{task}@s{s}")]
    out += [r for t in order for r in rows(arm, {"score": scores[(t, last)]}, task=t)]
    drops = [scores[(t, i + 1)] - scores[(t, last)] for i, t in enumerate(order[:-1])]
    out += rows(arm, {"forgetting": sum(drops) / len(drops) if drops else 0.0,
                      "final_mean": sum(scores[(t, last)] for t in order) / len(order)})
    return out


def stage_timeline(table: pd.DataFrame) -> pd.DataFrame:
    """``seed, arm, task, stage, start, score``: each task's score when each stage ended, with the step at
    which that stage began (rows ``stage_score`` and ``stage_start`` of a scalezero table)."""
    part = table[table.measure == "stage_score"]
    if part.empty:
        raise WorkbenchError("this table has no stage_score rows; give the per-seed table of the scalezero "
                             "experiment")
    where = part.task.str.extract(r"^(?P<task>.+)@s(?P<stage>\d+)$")
    out = pd.DataFrame({"seed": part.seed.to_numpy(), "arm": part.arm.to_numpy(),
                        "task": where.task.to_numpy(), "stage": where.stage.astype(int).to_numpy(),
                        "score": part.value.to_numpy()})
    starts = table[table.measure == "stage_start"]
    starts = pd.DataFrame({"seed": starts.seed.to_numpy(), "arm": starts.arm.to_numpy(),
                           "stage": starts.task.str[1:].astype(int).to_numpy(),
                           "start": starts.value.to_numpy()})
    return out.merge(starts, on=["seed", "arm", "stage"], how="left")[
        ["seed", "arm", "task", "stage", "start", "score"]].sort_values(["arm", "seed", "stage", "task"],
                                                                         ignore_index=True)
