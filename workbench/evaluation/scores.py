"""evaluate: score adapters and the base model on tasks, as one tidy frame."""

from __future__ import annotations

from contextlib import ExitStack

import pandas as pd
from tqdm.auto import tqdm

from workbench.adapters import Adapter, composition_of
from workbench.errors import WorkbenchError
from workbench.evaluation import base_cache
from workbench.evaluation.private import installed
from workbench.tasks import METRICS, Task, batching

BASE = "base"


def evaluate(lab, adapters, tasks, *, limit: int | None = None, batch_size: int = 16,
             progress: bool = True, cache: bool = True) -> pd.DataFrame:
    """Score each adapter (``None`` = the base model) on each task's eval split with its metric.

    Prompts are batched (``workbench.tasks.batching``: shared prefix computed once, similar lengths
    together, left padding, greedy decoding with a KV cache). The base model's score on a task is
    kept (``base_cache``: keyed by the base weights as they are now, the tokenizer, the task and its
    examples) and read back by later calls instead of running the base again. One progress bar
    counts runs × tasks.

    Args:
        adapters: a name, an ``Adapter``, ``None``, a ``{label: composition}`` dict, or a list of these.
            ``{"mix": {"a": .5, "b": .5}}`` scores a weighted sum under label "mix". An ``Adapter``
            that is not in the lab (a merge preview, one read from disk) is scored under its own name
            without being added to the lab: it is installed privately for the call and removed after.
        tasks: a Task, a list of Tasks, or a ``{name: Task}`` dict (what ``tasks.load`` returns).
        limit: score only the first ``limit`` eval examples of each task (quick looks).
        batch_size: most examples per forward pass.
        progress: show the bar (``tqdm.auto``: a widget in Jupyter, text in a terminal).
        cache: read and fill the base model's score cache (False: always run the base).

    Returns:
        DataFrame with columns ``adapter, task, metric, value, higher_is_better, n``; the base model's
        rows say ``adapter == "base"``.
    """
    if lab.tokenizer is None:
        raise WorkbenchError("evaluate needs a tokenizer; build the lab with Workbench(model, tokenizer)")
    task_list = list(tasks.values()) if isinstance(tasks, dict) else (
        list(tasks) if isinstance(tasks, list | tuple) else [tasks])
    with ExitStack() as private:
        runs = [(label, private.enter_context(installed(lab, spec)) if isinstance(spec, Adapter) else spec)
                for label, spec in _runs(lab, adapters)]
        _check(lab, runs, task_list, limit, batch_size)
        rows = _score(lab, runs, task_list, limit=limit, batch_size=batch_size, progress=progress,
                      cache=cache)
    return pd.DataFrame(rows)


def _score(lab, runs: list[tuple[str, object]], task_list: list, *, limit: int | None, batch_size: int,
           progress: bool, cache: bool) -> list[dict]:
    """One row per (run, task): the compositions are used one at a time, then what was used is restored."""
    rows, base_key = [], None
    routers = set(lab.routers)
    bar = tqdm(total=len(runs) * len(task_list), desc="evaluating", disable=not progress)
    with lab.session(train=False), bar:
        for label, spec in runs:
            # a router may condition on the whole prompt: no shared prefix under one
            share = not composition_of(spec, [*lab.adapters, *lab.routers]).names & routers
            with lab.session(spec), batching.configured(prefix=share, progress=False):
                for task in task_list:
                    metric = METRICS.get(task.metric)
                    examples = task.eval[:limit] if limit else task.eval
                    bar.set_postfix_str(f"{label} on {task.name}")
                    key = None
                    if cache and spec is None:
                        base_key = base_key or base_cache.model_key(lab.model, lab.tokenizer)
                        key = base_cache.task_key(base_key, task, examples, batch_size)
                    value = base_cache.get(key) if key else None
                    if value is None:
                        value = metric.fn(lab.model, lab.tokenizer, task, examples, batch_size=batch_size)
                        if key:
                            base_cache.put(key, value)
                    rows.append({"adapter": label, "task": task.name, "metric": metric.name,
                                 "value": float(value), "higher_is_better": metric.higher_is_better,
                                 "n": len(examples)})
                    bar.update()
    return rows


def _check(lab, runs, task_list, limit, batch_size) -> None:
    """Everything ``evaluate`` needs is checked before the first example runs."""
    if not task_list:
        raise WorkbenchError("evaluate needs at least one task (workbench.tasks.load(names))")
    for t in task_list:
        if not isinstance(t, Task):
            hint = f": workbench.tasks.load([{t!r}])" if isinstance(t, str) else ""
            raise WorkbenchError(f"evaluate takes Task objects, got {type(t).__name__} {t!r:.40}{hint}")
    for name, value in (("limit", limit), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise WorkbenchError(f"{name}={value!r} must be a whole number of at least 1"
                                 + (" (or None for all)" if name == "limit" else ""))
    for _label, spec in runs:
        composition_of(spec, [*lab.adapters, *lab.routers])  # unknown names fail before any work


def _runs(lab, adapters) -> list[tuple[str, object]]:
    """(label, composition spec) for each thing to score; an Adapter not in the lab stays an Adapter."""
    items = adapters if isinstance(adapters, list | tuple) else [adapters]
    runs = []
    for a in items:
        if a is None:
            runs.append((BASE, None))
        elif isinstance(a, Adapter):
            runs.append((a.name, a.name if lab.adapters.get(a.name) is a else a))
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
