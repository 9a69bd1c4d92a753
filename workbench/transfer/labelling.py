"""Labelling: the source model with its task LoRA (the teacher) answers the kept synthetic inputs.

A generation task is answered greedily (up to ``task.max_new_tokens`` tokens, stopping at the end of
turn), in the task's prompt format, exactly as the ``exact_match`` metric reads a model's answer. A
choice task (``accuracy`` metric) whose examples all share one ``choices`` tuple (fixed labels, as
``topic``) is answered as the metric scores it: the choice whose first token is the most probable.
Inputs whose greedy answer is empty are dropped (an empty target teaches only the end of turn).

Reference: Wang et al., "Trans-LoRA: towards data-free Transferable Parameter Efficient Finetuning",
NeurIPS 2024 (arXiv 2405.17258): the source base model with the source LoRA labels the filtered
synthetic inputs. Deviations: greedy answers only (no sampling of several teacher answers), and a
choice task needs fixed, shared choices (per-question choices cannot be synthesized here).
"""

from __future__ import annotations

from collections.abc import Sequence

from workbench.errors import WorkbenchError
from workbench.tasks import METRICS, Example, Task
from workbench.tasks.answers import greedy_answers as answers_of
from workbench.tasks.metrics import choice_predictions


def shared_choices(task: Task) -> tuple[str, ...] | None:
    """The one ``choices`` tuple every example of ``task`` has, else None."""
    found = {e.choices for e in [*task.train, *task.eval]}
    return next(iter(found)) if len(found) == 1 else None


def greedy_answers(lab, task: Task, inputs: Sequence[Example], *, batch_size: int = 16) -> list[str]:
    """Greedy answers (``task.max_new_tokens`` at most) of the model as ``lab`` applies it now, with white
    space collapsed as ``exact_match`` compares them."""
    answers = answers_of(lab.model, lab.tokenizer, task, inputs, batch_size=batch_size)
    return [" ".join(a.split()) for a in answers]


def label(lab, adapter: str | None, task: Task, inputs: Sequence[Example], *,
          batch_size: int = 16) -> list[Example]:
    """The inputs with the answers of ``lab`` using ``adapter`` as targets (see the module docstring).

    Args:
        lab: the source lab (a ``Workbench`` with a tokenizer).
        adapter: the source LoRA's name in ``lab`` (None: the base model, for comparisons).
        task: gives the prompt format, ``max_new_tokens`` and, for choice tasks, the choices.
        inputs: Examples whose ``prompt`` is the input (targets are ignored).

    Raises:
        WorkbenchError: no tokenizer, or a choice task whose examples do not share one choices tuple.
    """
    if lab.tokenizer is None:
        raise WorkbenchError("labelling needs a tokenizer; build the lab with Workbench(model, tokenizer)")
    inputs = list(inputs)
    if not inputs:
        return []
    with lab.using(adapter):
        if METRICS.has(task.metric, "needs_choices"):
            choices = shared_choices(task)
            if choices is None:
                raise WorkbenchError(
                    f"task {task.name!r} is a choice task whose examples have different choices, so "
                    "synthetic inputs cannot be given any; transfer a task with fixed labels (shared "
                    "choices) or a generation task")
            asked = [Example(e.prompt, choices[0], choices) for e in inputs]
            preds = choice_predictions(lab.model, lab.tokenizer, task, asked, batch_size=batch_size)
            return [Example(e.prompt, p, choices) for e, p in zip(inputs, preds, strict=True)]
        answers = greedy_answers(lab, task, inputs, batch_size=batch_size)
    return [Example(e.prompt, a) for e, a in zip(inputs, answers, strict=True) if a]
