"""Benchmark: the MergeBuilder's full preview (angles, interference, merge, error map) on the ready adapters.

What a gesture in the MergeBuilder costs: ``MergeModel._compute`` for the four ready adapters on SmolLM2
(120 modules, rank 8), the same call the background worker runs, timed step by step through its
cancellation checks (angles | interference | merge | error map and summary). Two cases per method:

- **cold**: nothing cached (the first preview of a set of sources);
- **weight moved**: a weight slider moved, so the interference frame and the merge are recomputed while
  the angles (cached by sources) are not. A setting seen before is answered from the preview cache (0 ms).

Methods: the factored ones (task_arithmetic, svd, cat; target ≤ 150 ms) and the elementwise ones (ties,
dare_ties, della, breadcrumbs; target ≤ 1 s), interleaved rep by rep in one process, torch at 1 thread
(``--threads``), medians over ``--reps``.

``--busy`` adds the thread-setting comparison of issue 23: the full cold preview of ``--busy-methods``
(default task_arithmetic: its preview is dominated by the dense interference map) through the background
worker (``widgets._latest.Latest``) with 1 and with 2 torch threads, without and with a busy process
beside it (a 1-thread torch matmul loop, as a training run would be), interleaved.

    python bench/merge_preview.py            # writes bench/results/merge_preview.md
    python bench/merge_preview.py --busy     # and the busy-process comparison
    python bench/merge_preview.py --quick    # task_arithmetic and ties, 1 rep; prints only

The load average (other processes on the machine) is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from common import publish  # noqa: E402

from widgets._latest import Latest  # noqa: E402
from widgets.merge_model import MergeModel  # noqa: E402
from workbench import Workbench, ready  # noqa: E402

OUT = Path(__file__).parent / "results" / "merge_preview.md"
FACTORED = ("task_arithmetic", "svd", "cat")
ELEMENTWISE = ("ties", "dare_ties", "della", "breadcrumbs")
TARGET = {"factored": 0.150, "elementwise": 1.0}
STEPS = ("angles", "interference", "merge", "error map")
BUSY = ("import torch; torch.set_num_threads(1); a = torch.randn(384, 384)\n"
        "while True: a = torch.tanh(a @ a)")


def key(model: MergeModel, method: str, weights: list[float]) -> tuple:
    """The settings key of ``method`` with its default parameters on all sources."""
    params = model.check_params({}, method)
    return (tuple(model.names), tuple(weights), method, tuple(sorted(params.items())), 0)


def timed(model: MergeModel, k: tuple, *, cold: bool) -> dict[str, float]:
    """One full preview of ``k`` (caches cleared when ``cold``): seconds per step and in all."""
    if cold:
        model._cache.clear()
    stamps = [time.perf_counter()]
    model._compute(k, lambda: stamps.append(time.perf_counter()))
    stamps.append(time.perf_counter())
    out = {step: b - a for step, a, b in zip(STEPS, stamps[:-1], stamps[1:], strict=True)}
    out["full"] = stamps[-1] - stamps[0]
    return out


def previews(model: MergeModel, methods: list[str], reps: int) -> dict:
    """``{(method, case): [timings per rep]}``, methods interleaved within each rep."""
    runs: dict = {}
    for rep in range(reps):
        for method in methods:
            cold = timed(model, key(model, method, [1.0] * 4), cold=True)
            moved = timed(model, key(model, method, [1.0, 0.8 + 0.05 * rep, 1.0, 1.0]), cold=False)
            runs.setdefault((method, "cold"), []).append(cold)
            runs.setdefault((method, "moved"), []).append(moved)
            print(f"rep {rep} {method}: cold {runs[method, 'cold'][-1]['full']:.3f} s, "
                  f"weight moved {runs[method, 'moved'][-1]['full']:.3f} s", flush=True)
    return runs


def through_worker(model: MergeModel, worker: Latest, k: tuple) -> float:
    """The cold preview of ``k`` as the MergeBuilder runs it: on the worker, until its outcome is in."""
    model._cache.clear()
    got = []
    start = time.perf_counter()
    worker.submit(lambda check: model._compute(k, check), got.append)
    worker.wait(lambda outcome: None)
    if got[0].error is not None:
        raise got[0].error
    return time.perf_counter() - start


def busy_comparison(model: MergeModel, methods: list[str], reps: int) -> dict:
    """``{(method, busy, threads): [seconds]}``: 1 and 2 worker threads, with and without a busy process."""
    workers = {n: Latest(threads=n) for n in (1, 2)}
    runs: dict = {}
    for rep in range(reps):
        for busy in (False, True):
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            proc = subprocess.Popen([sys.executable, "-c", BUSY], env=env) if busy else None
            try:
                if proc is not None:
                    time.sleep(2.0)  # let it reach its loop
                for method in methods:
                    for n, worker in workers.items():
                        t = through_worker(model, worker, key(model, method, [1.0] * 4))
                        runs.setdefault((method, busy, n), []).append(t)
                        print(f"rep {rep} busy={busy} {method} threads={n}: {t:.3f} s", flush=True)
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(20)
    for worker in workers.values():
        worker.close()
    return runs


def report(args, runs: dict, busy: dict | None, load: tuple[float, float]) -> str:
    med = {k: {s: statistics.median(r[s] for r in v) for s in (*STEPS, "full")} for k, v in runs.items()}
    lines = [
        "# MergeBuilder preview timings (issue 23)", "",
        f"`python bench/merge_preview.py{' --busy' if args.busy else ''}` ({date.today()}).", "",
        "- What is timed: `MergeModel._compute`, the call the MergeBuilder's background worker runs for a "
        "gesture: angles, interference (at the method's density, TIES' 0.2 without one), the merge, the "
        "error-map payload and summary; steps timed at the worker's cancellation checks.",
        f"- Four ready adapters on `{ready.BASE}` (arithmetic, topic, language, code; 120 modules, rank 8).",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
        f"**{args.threads} thread(s)**; median of {args.reps} interleaved rep(s); load average "
        f"{load[0]:.1f} before, {load[1]:.1f} after (other processes share the machine).",
        "- *cold*: nothing cached; *weight moved*: a weight slider moved (angles cached, interference and "
        "merge recomputed). Settings seen before are answered from the preview cache without computing.", "",
        "| method | kind | angles (s) | interference (s) | merge (s) | error map (s) | **cold (s)** | "
        "**weight moved (s)** | target | met (cold) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for method in args.methods:
        kind = "factored" if method in FACTORED else "elementwise"
        c, m = med[method, "cold"], med[method, "moved"]
        target = TARGET[kind]
        steps = " | ".join(f"{c[s]:.3f}" for s in STEPS)
        lines.append(f"| `{method}` | {kind} | {steps} | **{c['full']:.3f}** | **{m['full']:.3f}** | "
                     f"≤ {target:g} | {'yes' if c['full'] <= target else 'no'} |")
    if busy:
        lines += ["", "## Worker threads with a busy process beside", "",
                  "Cold full preview through the background worker (`widgets._latest.Latest`), 1 and 2 torch "
                  "threads in the worker, interleaved; *busy*: a 1-thread torch matmul loop runs in another "
                  "process meanwhile (as a training run would); *without*: no process added by this script, "
                  "the machine's other load as stated above. Median seconds.", "",
                  "| method | threads | without (s) | busy beside (s) | busy ÷ without |",
                  "|---|---:|---:|---:|---:|"]
        for method in args.busy_methods:
            for n in (1, 2):
                idle, loaded = (statistics.median(busy[method, b, n]) for b in (False, True))
                lines.append(f"| `{method}` | {n} | {idle:.3f} | {loaded:.3f} | {loaded / idle:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--busy", action="store_true", help="also compare 1 and 2 worker threads with a busy "
                        "process beside")
    parser.add_argument("--busy-methods", nargs="+", default=["task_arithmetic"])
    parser.add_argument("--only", nargs="+", help="these methods only (default: the seven)")
    parser.add_argument("--quick", action="store_true", help="task_arithmetic and ties, 1 rep; prints only")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.methods = ["task_arithmetic", "ties"] if args.quick else args.only or [*FACTORED, *ELEMENTWISE]
    args.reps = 1 if args.quick else args.reps
    torch.set_num_threads(args.threads)
    lab = Workbench.from_zoo(ready.BASE)
    ready.load_all(lab)
    model = MergeModel(lab, list(ready.NAMES))  # computes the first preview (also a warm-up)
    load_before = os.getloadavg()[0]
    runs = previews(model, args.methods, args.reps)
    busy = busy_comparison(model, args.busy_methods, args.reps) if args.busy else None
    text = report(args, runs, busy, (load_before, os.getloadavg()[0]))
    publish(text, None if args.quick else args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
