"""Sweeps: train a grid (learning rate × variant × rank × seed), score each run, cache every result.

LoRAFactory's question (He et al., arXiv 2601.22708, ../shared/specs/merging.md §14): does the
learning rate matter more than the LoRA variant? ``sweep`` answers with a tidy frame and
``spread`` with the share of variance each factor explains. A run's result (its scores and the
trained factors) is written to ``cache_dir`` as ``<key>.json`` + ``<key>.safetensors``, atomically,
keyed by everything that decides the run; a rerun reads them and trains nothing.

Variants are entries of ``VARIANTS`` (``workbench.training.variants``): init, scaling, optimizer and an
optional setup/finish (PiSSA), read by ``MultiTaskTrainer(variant=...)``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from safetensors.torch import save_file
from tqdm.auto import tqdm

from workbench.analysis.variance import between_share
from workbench.errors import WorkbenchError
from workbench.training.variants import VARIANTS


def sweep(lab, tasks, grid: Mapping[str, Sequence], *, cache_dir: str | os.PathLike, steps: int = 30,
          batch_size: int = 8, targets: str | list[str] = "attention", limit: int | None = None,
          progress: bool = True, **trainer_options) -> pd.DataFrame:
    """Train and score every point of ``grid`` (keys among ``lr, variant, r, seed``).

    Args:
        tasks: the Task (or Tasks) to train on and score (each with its own metric).
        grid: e.g. ``{"lr": [1e-3, 3e-3], "variant": ["lora", "rslora"], "r": [8], "seed": [0]}``;
            missing keys take ``lr=2e-3, variant="lora", r=8, seed=0``.
        cache_dir: where results live; a point already there is read, not retrained.
        limit: score on the first ``limit`` eval examples of each task.

    Returns:
        ``lr, variant, rank, seed, task, metric, value, final_loss, cached`` — one row per point and task.
    """
    from workbench.tasks import Task

    if isinstance(tasks, Task):
        task_list = [tasks]
    else:
        task_list = list(tasks.values() if isinstance(tasks, Mapping) else tasks)
    unknown = set(grid) - {"lr", "variant", "r", "seed"}
    if unknown:
        raise WorkbenchError(f"sweep grid keys are lr, variant, r, seed; got unknown {sorted(unknown)}")
    axes = {"lr": [2e-3], "variant": ["lora"], "r": [8], "seed": [0]} | {k: list(v) for k, v in grid.items()}
    for v in axes["variant"]:
        VARIANTS.get(v)  # unknown variants fail before any training
    if any(not lr > 0 for lr in axes["lr"]):
        raise WorkbenchError(f"every learning rate must be > 0; got {axes['lr']}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    points = list(itertools.product(axes["lr"], axes["variant"], axes["r"], axes["seed"]))
    rows = []
    for lr, variant, r, seed in tqdm(points, desc="sweep", disable=not progress):
        config = {"base": lab.fingerprint, "tasks": [(t.name, len(t.train), len(t.eval)) for t in task_list],
                  "lr": lr, "variant": variant, "r": r, "seed": seed, "steps": steps,
                  "batch_size": batch_size, "targets": targets, "limit": limit, "options": trainer_options}
        key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
        found = cache / f"{key}.json"
        if found.exists():
            result = json.loads(found.read_text())
            cached = True
        else:
            result = _run_point(lab, task_list, config, progress=False, **trainer_options)
            _write_atomic(cache, key, result.pop("tensors"), result)
            cached = False
        for s in result["scores"]:
            rows.append({"lr": lr, "variant": variant, "rank": r, "seed": seed, "task": s["task"],
                         "metric": s["metric"], "value": s["value"], "final_loss": result["final_loss"],
                         "cached": cached})
        tracker = getattr(lab, "tracker", None)
        if tracker is not None:  # the lab's run store keeps every sweep point (workbench.runs)
            final = result["final_loss"]
            scores = {f"{x['task']}/{x['metric']}": float(x["value"]) for x in result["scores"]}
            tracker.record(f"sweep {key}", "sweep", tags={"cached": str(cached)},
                           params={"lr": lr, "variant": variant, "rank": r, "seed": seed, "steps": steps},
                           metrics={**({"final_loss": float(final)} if final is not None else {}), **scores})
    return pd.DataFrame(rows)


def spread(frame: pd.DataFrame, factors: Sequence[str] = ("lr", "variant", "rank", "seed")) -> pd.DataFrame:
    """Share of the score variance explained by each factor alone (between-group variance / total).

    Returns:
        ``factor, value`` per task (``task`` column): LoRAFactory expects lr's share to be the largest.
    """
    rows = []
    for task, part in frame.groupby("task"):
        total = part["value"].var(ddof=0)
        for f in factors:
            if part[f].nunique() < 2:
                continue
            share = between_share(part["value"].to_numpy()[:, None], part[f].to_numpy()) if total else 0.0
            rows.append({"task": task, "factor": f, "value": share})
    return pd.DataFrame(rows)


def _run_point(lab, task_list, config, *, progress, **trainer_options) -> dict:
    from workbench.training.multitask import MultiTaskTrainer

    name = f"sweep_{config['variant']}"
    if name in lab.adapters:
        lab.remove_adapter(name)
    before = set(lab.adapters)
    try:
        trainer = MultiTaskTrainer(lab, name, task_list, r=config["r"], targets=config["targets"],
                                   steps=config["steps"], lr=config["lr"], batch_size=config["batch_size"],
                                   seed=config["seed"], progress=progress, variant=config["variant"],
                                   **trainer_options)
        adapter = trainer.run().adapter
        scores = lab.evaluate(adapter.name, task_list, limit=config["limit"], progress=False)
        tensors = {f"{m}.{k}": t.detach().contiguous().cpu() for m, f in adapter.modules.items()
                   for k, t in (("lora_A", f.A), ("lora_B", f.B))}
        return {"config": config, "final_loss": adapter.lineage.get("final_loss"),
                "scores": scores[["task", "metric", "value"]].to_dict("records"), "tensors": tensors}
    finally:
        for n in [n for n in lab.adapters if n not in before]:  # the run's adapter and a variant's helpers
            lab.unmerge(n)
            lab.remove_adapter(n)


def _write_atomic(cache: Path, key: str, tensors: dict, result: dict) -> None:
    """Factors, then the json (the json's presence marks a finished point); each by temp + rename."""
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".safetensors.tmp")
    os.close(fd)
    save_file(tensors, tmp)
    os.replace(tmp, cache / f"{key}.safetensors")
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, default=str)
    os.replace(tmp, cache / f"{key}.json")
