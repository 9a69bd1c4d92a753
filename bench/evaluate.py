"""``evaluate`` before and after batching (shared prefix, length grouping, KV-cached greedy decoding,
target-only loss logits, base score cache), interleaved in one process at one torch thread.

    .venv/bin/python bench/evaluate.py                 # SmolLM2 + the four ready adapters, limit 8
    .venv/bin/python bench/evaluate.py --quick         # two runs on two tasks, limit 2: a smoke test

Measures, with the load average before and after:

1. every (run, task) of ``lab.evaluate([None, *ready.NAMES], tasks.load(ready.NAMES), limit=8)`` with the
   old metrics (``legacy_metrics.py``, verbatim from before) and the new ones, alternating, and checks
   the scores agree (accuracy and exact match identical, loss to 1e-5 relative);
2. the same grid again with the base model's scores cached (what a second call costs);
3. the MergeBuilder's quick evaluation (``MergeModel.evaluate``, 8 examples per task): first press
   (merge and each task's solo adapter) and a second press after a weight change (merge only);
4. one run on the full eval split of ``--full-task``, before and after, to extrapolate tutorial 02's
   full-schedule evaluation from the per-example costs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import legacy_metrics  # noqa: E402
from common import publish, write_atomically  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "evaluate.md"
ROWS = OUT.with_suffix(".jsonl")  # every (run, task) measured so far: a loaded machine resumes here


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def grid(lab, runs, task_map, limit, rows, *, deadline: float, save=None):
    """(run, task) before and after, alternating; skips pairs already in ``rows``; stops at ``deadline``."""
    from workbench.evaluation import base_cache

    done = {(r["run"], r["task"]) for r in rows}
    for spec in runs:
        for task in task_map.values():
            if (spec or "base", task.name) in done or time.perf_counter() > deadline:
                continue

            def one(spec=spec, task=task, **kw):
                return lab.evaluate([spec], [task], limit=limit, progress=False, **kw).value[0]

            with legacy_metrics.swapped():
                old, t_old = timed(lambda: one(cache=False))
            base_cache.clear()
            new, t_new = timed(one)
            same = old == new if task.metric != "loss" else abs(old - new) <= 1e-5 * abs(old)
            rows.append({"run": spec or "base", "task": task.name, "metric": task.metric, "before_s": t_old,
                         "after_s": t_new, "before": float(old), "after": float(new), "same": bool(same),
                         "load": os.getloadavg()[0]})
            print(rows[-1], flush=True)
            if save:
                save(rows)
    return rows


def builder_times(lab, names, task_map, limit):
    """The MergeBuilder's quick evaluation: first press, then a press after a weight change."""
    from widgets.merge_model import MergeModel

    model = MergeModel(lab, names, tasks=task_map, method="svd", eval_limit=limit)
    _, first = timed(model.evaluate)
    model.update(weights={n: 0.5 if i == 0 else 1.0 for i, n in enumerate(names)})
    _, second = timed(model.evaluate)
    return first, second


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=8, help="examples per task in the grid and the builder")
    parser.add_argument("--full-task", default="topic", help="task whose full eval split is timed (one run)")
    parser.add_argument("--quick", action="store_true", help="two runs, two tasks, limit 2; prints only")
    parser.add_argument("--no-builder", action="store_true", help="skip the MergeBuilder timing")
    parser.add_argument("--no-full", action="store_true", help="skip the full-split timing")
    parser.add_argument("--resume", action="store_true", help=f"keep the (run, task) rows in {ROWS.name}")
    parser.add_argument("--budget-s", type=float, default=float("inf"),
                        help="start no new (run, task) pair after this many seconds (the table says so)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(1)
    from workbench import Workbench, ready, tasks
    from workbench.evaluation import base_cache

    load_before = os.getloadavg()
    lab = Workbench.from_zoo(ready.BASE)
    ready.load_all(lab)
    names = list(ready.NAMES)
    task_map = tasks.load(names)
    runs = [None, *names]
    limit = args.limit
    if args.quick:
        runs, task_map, limit = [None, "topic"], {k: task_map[k] for k in ("topic", "arithmetic")}, 2
    rows_path = None if args.quick else args.out.with_suffix(".jsonl")
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] \
        if args.resume and rows_path and rows_path.exists() else []

    def save(rows):
        write_atomically(rows_path, "".join(json.dumps(r) + "\n" for r in rows))

    rows = grid(lab, runs, task_map, limit, rows, deadline=start + args.budget_s, save=rows_path and save)
    warm = float("nan")
    if len(rows) == len(runs) * len(task_map):
        base_cache.clear()
        lab.evaluate(runs, task_map, limit=limit, progress=False)  # fills the base cache
        _, warm = timed(lambda: lab.evaluate(runs, task_map, limit=limit, progress=False))
    first = second = float("nan")
    if not args.no_builder and not args.quick:
        first, second = builder_times(lab, names, task_map, limit)
    full = task_map.get(args.full_task) or next(iter(task_map.values()))
    spec = full.name if full.name in lab.adapters else names[0]
    n_full = 4 if args.quick else len(full.eval)
    full_before = full_after = float("nan")
    if not args.no_full:
        def whole():
            return lab.evaluate([spec], [full], limit=n_full, progress=False, cache=False)

        with legacy_metrics.swapped():
            _, full_before = timed(whole)
        _, full_after = timed(whole)
    text = report(rows, len(runs) * len(task_map), warm, first, second, full, n_full, full_before, full_after,
                  limit, load_before, os.getloadavg())
    publish(text, None if args.quick else args.out)
    return 0 if all(r["same"] for r in rows) else 1


def report(rows, total, warm, first, second, full, n_full, full_before, full_after, limit, load_before,
           load_after) -> str:
    before = sum(r["before_s"] for r in rows)
    after = sum(r["after_s"] for r in rows)
    per = {}
    for r in rows:
        p = per.setdefault(r["task"], [0.0, 0.0, 0])
        p[0], p[1], p[2] = p[0] + r["before_s"], p[1] + r["after_s"], p[2] + 1
    lines = [
        "# evaluate: batched scoring against the previous metrics (SmolLM2-135M, ready adapters)",
        "",
        f"1 torch thread, one process, before/after alternating per (run, task). Load average (1, 5, 15 min) "
        f"before {tuple(round(x, 2) for x in load_before)}, after {tuple(round(x, 2) for x in load_after)} "
        "(the machine is shared: absolute seconds scale with the load, the ratios much less).",
        "",
        f"## The grid `lab.evaluate([None, *ready.NAMES], tasks.load(ready.NAMES), limit={limit})`",
        "",
        f"{len(rows)} of its {total} (run, task) pairs measured"
        + ("." if len(rows) == total else " (the machine was too loaded for the rest within the budget)."),
        "",
        "| task | metric | before (s, all runs) | after (s) | before/after |",
        "|---|---|---|---|---|",
    ]
    metric = {r["task"]: r["metric"] for r in rows}
    for task, (b, a, _) in per.items():
        lines.append(f"| {task} | {metric[task]} | {b:.1f} | {a:.1f} | {b / a:.2f}× |")
    lines += [
        f"| **all** | | **{before:.1f}** | **{after:.1f}** | **{before / after:.2f}×** |",
        f"| all, base cached (a second call) | | {before:.1f} | {warm:.1f} | {before / warm:.2f}× |",
        "",
        f"Scores agree on all {len(rows)} (run, task) pairs: {all(r['same'] for r in rows)} (accuracy "
        "and exact match identical, loss within 1e-5 relative; largest loss difference "
        f"{max([abs(r['before'] - r['after']) for r in rows if r['metric'] == 'loss'] or [0]):.1e}).",
        "",
        f"## MergeBuilder quick evaluation ({limit} examples per task, `svd` merge of the four)",
        "",
        f"- first press (merge and each task's solo adapter, 8 runs): {first:.1f} s",
        f"- after a weight change (the merge only, solo scores cached): {second:.1f} s",
        "",
        f"## Full eval split of `{full.name}` ({n_full} examples, one adapter)",
        "",
        f"before {full_before:.1f} s, after {full_after:.1f} s ({full_before / full_after:.2f}×); "
        f"per example {full_before / n_full:.2f} s → {full_after / n_full:.2f} s.",
        "",
        "| run | task | before (s) | after (s) | before score | after score |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['run']} | {r['task']} | {r['before_s']:.2f} | {r['after_s']:.2f} | {r['before']:.4f} | "
              f"{r['after']:.4f} |" for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
