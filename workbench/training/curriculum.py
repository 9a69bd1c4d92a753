"""WavLLM's two-stage curriculum: first the single tasks, then tasks combined in one instruction.

Reference: Hu et al., "WavLLM: Towards Robust and Adaptive Speech Large Language Model", EMNLP 2024
(stage 1: mixed single-task data; stage 2, "advanced multi-task": complex instructions that combine
tasks, trained together with the single ones). The prompt-aware weight adapter of their stage 2 is
``routing``'s ``prompt_scale`` router; here is the data curriculum.

A combined example asks two tasks' questions at once and expects both answers, in order::

    prompt: "Answer both, one line each.\\n1. <prompt of task a>\\n2. <prompt of task b>"
    target: "<target a>\\n<target b>"
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from workbench.errors import WorkbenchError
from workbench.tasks import Example, Task

COMBINED_PROMPT = "Answer both, one line each.\n1. {a}\n2. {b}"


def combine_tasks(tasks: Sequence[Task], n: int, *, seed: int = 0, name: str = "combined") -> Task:
    """A task of ``n`` combined examples, each joining one example of two different tasks.

    Train examples come from the tasks' train splits, eval ones from their eval splits, so the
    splits stay disjoint. The metric is exact match on the joined answer.
    """
    if len(tasks) < 2:
        raise WorkbenchError(f"combining tasks needs at least two; got {[t.name for t in tasks]}")
    rng = random.Random(f"{name}:{seed}")

    def draw(split: str, count: int) -> list[Example]:
        out = []
        for _ in range(count):
            ta, tb = rng.sample(list(tasks), 2)
            ea, eb = rng.choice(getattr(ta, split)), rng.choice(getattr(tb, split))
            out.append(Example(COMBINED_PROMPT.format(a=ea.prompt, b=eb.prompt), f"{ea.target}\n{eb.target}"))
        return out

    for t in tasks:
        if not t.train or not t.eval:
            raise WorkbenchError(f"task {t.name!r} needs train and eval examples to be combined")
    return Task(name=name, description=f"pairs of {', '.join(t.name for t in tasks)} in one instruction",
                metric="exact_match", train=draw("train", n), eval=draw("eval", max(1, n // 4)),
                max_new_tokens=2 * max(t.max_new_tokens for t in tasks),
                max_length=sum(sorted(t.max_length for t in tasks)[-2:]))


@dataclass
class CurriculumResult:
    """Both stages' results (``workbench.training.MultiTaskResult``) and the combined task."""

    single: object
    combined: object
    combined_task: Task

    @property
    def adapter(self):
        return self.combined.adapter


def two_stage(lab, name: str, tasks: Sequence[Task], *, single_steps: int = 30, combined_steps: int = 30,
              n_combined: int = 64, seed: int = 0, **trainer_options) -> CurriculumResult:
    """Stage 1: train ``name`` on the single tasks; stage 2: keep training it on the single tasks
    plus their combinations (``combine_tasks``). Same trainer options in both stages."""
    from workbench.training.multitask import MultiTaskTrainer

    tasks = list(tasks)
    combined = combine_tasks(tasks, n_combined, seed=seed)
    first = MultiTaskTrainer(lab, name, tasks, steps=single_steps, seed=seed, **trainer_options).run()
    made = ("r", "alpha", "targets", "init", "scaling")  # the adapter exists by stage 2
    options = {k: v for k, v in trainer_options.items() if k not in made}
    second = MultiTaskTrainer(lab, name, [*tasks, combined], steps=combined_steps, seed=seed + 1,
                              **options).run()
    second.adapter.lineage["curriculum"] = {
        "reference": "WavLLM two-stage", "single_steps": single_steps, "combined_steps": combined_steps,
        "tasks": [t.name for t in tasks]}
    return CurriculumResult(first, second, combined)
