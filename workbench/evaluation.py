"""evaluate: score adapters and the base model on tasks, as one tidy frame."""

from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from workbench.adapters import Adapter
from workbench.errors import WorkbenchError
from workbench.tasks import METRICS

BASE = "base"


def evaluate(lab, adapters, tasks, *, limit: int | None = None, batch_size: int = 16,
             progress: bool = True) -> pd.DataFrame:
    """Score each adapter (``None`` = the base model) on each task's eval split with its metric.

    Args:
        adapters: a name, an ``Adapter`` in the lab, ``None``, a ``{label: composition}`` dict, or a
            list of these. ``{"mix": {"a": .5, "b": .5}}`` scores a weighted sum under label "mix".
        tasks: a Task, a list of Tasks, or a ``{name: Task}`` dict (what ``tasks.load`` returns).
        limit: score only the first ``limit`` eval examples of each task (quick looks).

    Returns:
        DataFrame with columns ``adapter, task, metric, value, higher_is_better, n``; the base model's
        rows say ``adapter == "base"``.
    """
    if lab.tokenizer is None:
        raise WorkbenchError("evaluate needs a tokenizer; build the lab with Workbench(model, tokenizer)")
    runs = _runs(adapters)
    task_list = list(tasks.values()) if isinstance(tasks, dict) else (
        list(tasks) if isinstance(tasks, list | tuple) else [tasks])
    rows = []
    before, was_training = lab.active, lab.model.training
    lab.model.eval()
    bar = tqdm(total=len(runs) * len(task_list), desc="evaluating", disable=not progress)
    try:
        for label, spec in runs:
            lab.use(spec)
            for task in task_list:
                metric = METRICS.get(task.metric)
                examples = task.eval[:limit] if limit else task.eval
                bar.set_postfix_str(f"{label} on {task.name}")
                value = metric.fn(lab.model, lab.tokenizer, task, examples, batch_size=batch_size)
                rows.append({"adapter": label, "task": task.name, "metric": metric.name,
                             "value": float(value), "higher_is_better": metric.higher_is_better,
                             "n": len(examples)})
                bar.update()
    finally:
        bar.close()
        lab.use(before)
        lab.model.train(was_training)
    return pd.DataFrame(rows)


def _runs(adapters) -> list[tuple[str, object]]:
    """(label, composition spec) for each thing to score."""
    items = adapters if isinstance(adapters, list | tuple) else [adapters]
    runs = []
    for a in items:
        if a is None:
            runs.append((BASE, None))
        elif isinstance(a, Adapter):
            runs.append((a.name, a.name))
        elif isinstance(a, str):
            runs.append((a, a))
        elif isinstance(a, dict):
            runs += [(str(k), v) for k, v in a.items()]
        else:
            raise WorkbenchError(f"cannot evaluate {a!r}: give adapter names, Adapters, None or dicts")
    return runs


def relative_to_base(scores: pd.DataFrame) -> pd.DataFrame:
    """Each score beside the base model's on the same task, with the gain (sign-corrected for losses)."""
    base = scores[scores.adapter == BASE][["task", "value"]].rename(columns={"value": "base"})
    out = scores[scores.adapter != BASE].merge(base, on="task", how="left")
    sign = out["higher_is_better"].map({True: 1.0, False: -1.0})
    out["gain"] = sign * (out["value"] - out["base"])
    return out
