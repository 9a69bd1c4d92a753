"""``bench/merge.py --ready``: every registered merge method on the four ready adapters, and interference.

The four ready SmolLM2 adapters (120 attention modules, 60 of 576x576 and 60 of 192x576, rank 8),
merged by every registered method with its default parameters and weights 1 each, plus
``analysis.interference(density=0.2)``, at each ``--threads`` setting (1 and 2 by default), in one
process, contenders interleaved per setting. Per method two times:

- ``first``: the first merge with these sources (the engine's cache of dense updates emptied before);
- ``reweight``: the same merge again with other weights (what the merge lab does while a slider moves).

Each is the median of ``--repeat`` runs (one run where the first already took over 3 s). The load
average (1-minute) is recorded before and after each thread setting: other processes on the machine
skew the times. ``cat_learned`` trains on data with a lab (not a function of the updates alone) and
is not timed here.

    python bench/merge.py --ready                       # writes bench/results/merge_ready.md
    python bench/merge.py --ready --threads 1 --out /tmp/x.md
    python bench/merge.py --ready --compare-with /tmp/before   # before/after, interleaved

``--compare-with DIR`` times another checkout of the repository (``git archive <commit> | tar -x -C
DIR``) against this one: two worker processes, one importing each tree's ``workbench``, answer one
method at a time in turn (the order alternating per method), so both see the same load. The other
tree is timed like this one when it has the cache of pruned updates, else once per method (its
reweight then costs what its first merge costs).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

OUT = Path(__file__).parent / "results" / "merge_ready.md"
SLOW = 3.0  # seconds: a method whose first run took longer is run once
REWEIGHT = [0.9, 1.1, 0.7, 1.3]


def _clear_cache() -> None:
    try:
        from workbench.adapters.update_cache import DENSE_CACHE
    except ImportError:  # before the cache existed
        return
    DENSE_CACHE.clear()


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_method(adapters, method: str, repeat: int) -> tuple[float, float]:
    """(first, reweight) medians in seconds for one method."""
    from workbench.merging import merge

    firsts, reweights = [], []
    for i in range(max(repeat, 1)):
        _clear_cache()
        firsts.append(_time(lambda: merge(adapters, method, [1.0] * len(adapters))))
        if repeat == 0:  # the first merge only (code without a cache: a reweight costs the same)
            return firsts[0], firsts[0]
        reweights.append(_time(lambda: merge(adapters, method, REWEIGHT[: len(adapters)])))
        if i == 0 and firsts[0] > SLOW:
            break
    return statistics.median(firsts), statistics.median(reweights)


def run_interference(adapters, repeat: int) -> tuple[float, float]:
    from workbench import analysis

    named = {a.name: a for a in adapters}
    firsts, again = [], []
    for i in range(max(repeat, 1)):
        _clear_cache()
        firsts.append(_time(lambda: analysis.interference(named, density=0.2)))
        if repeat == 0:
            return firsts[0], firsts[0]
        again.append(_time(lambda: analysis.interference(named, REWEIGHT[: len(adapters)], density=0.2)))
        if i == 0 and firsts[0] > SLOW:
            break
    return statistics.median(firsts), statistics.median(again)


def measure_all(adapters, methods: list[str], threads: list[int], repeat: int) -> dict:
    """{threads: {"rows": {name: (first, reweight)}, "load": (before, after)}}."""
    out = {}
    for n in threads:
        torch.set_num_threads(n)
        load = os.getloadavg()[0]
        rows = {}
        with threadpool_limits(limits=n):
            for m in methods:
                rows[m] = run_method(adapters, m, repeat)
                print(f"{n} thread(s) {m}: first {rows[m][0]:.3f} s, reweight {rows[m][1]:.3f} s", flush=True)
            rows["interference(density=0.2)"] = run_interference(adapters, repeat)
            print(f"{n} thread(s) interference: {rows['interference(density=0.2)']}", flush=True)
        out[n] = {"rows": rows, "load": (load, os.getloadavg()[0])}
    return out


def report(results: dict, adapters, label: str, repeat: int) -> str:
    threads = list(results)
    names = list(results[threads[0]]["rows"])
    head = "| method | " + " | ".join(f"{n} thr first (s) | {n} thr reweight (s)" for n in threads) + " |"
    rule = "|---|" + "---:|---:|" * len(threads)
    lines = []
    for name in names:
        cells = []
        for n in threads:
            first, re = results[n]["rows"][name]
            cells += [f"{first:.3f}", f"{re:.3f}"]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    f0 = adapters[0].modules[next(iter(adapters[0].modules))]
    loads = "; ".join(f"{n} thread(s): {results[n]['load'][0]:.2f} before, {results[n]['load'][1]:.2f} after"
                      for n in threads)
    return "\n".join([
        f"# Merge methods on the ready adapters ({label})",
        "",
        f"`python bench/merge.py --ready` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        f"- Sources: the {len(adapters)} ready adapters ({', '.join(a.name for a in adapters)}), "
        f"{len(adapters[0].modules)} modules each, rank {f0.r}, {f0.A.dtype}; default parameters; "
        "weights 1 each (first), then "
        f"{REWEIGHT[: len(adapters)]} (reweight).",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
        f"median of up to {repeat} runs (one run when the first took over {SLOW:g} s).",
        f"- **Load average (1 min)**: {loads}. Other processes share these cores: times are upper "
        "bounds of an idle machine's.",
        "- `first`: cache of dense updates emptied before the call; `reweight`: the same sources again "
        "with other weights. `cat_learned` trains on data and is not timed.",
        "",
        head,
        rule,
        *lines,
        "",
    ])


def main(args) -> str:
    """Run the ``--ready`` benchmark; returns the Markdown table."""
    from workbench import Workbench, ready
    from workbench.merging import MERGES

    lab = Workbench.from_zoo(ready.BASE)
    adapters = ready.load_all(lab)
    methods = [m for m in MERGES.names()  # all four ready adapters at once: no pair method
               if not MERGES.has(m, "needs_data") and not MERGES.has(m, "pair")]
    if args.methods:
        methods = [m for m in methods if m in args.methods]
    results = measure_all(adapters, methods, args.threads, args.repeat)
    return report(results, adapters, args.label, args.repeat)


# -- before/after in two worker processes -------------------------------------------------------
def serve() -> None:
    """Worker: load the ready adapters (without the model), answer ``threads method repeat`` lines."""
    from workbench import ready
    from workbench.adapters.peft_format import read_peft

    adapters = [read_peft(ready.path(n), n) for n in ready.NAMES]
    print(json.dumps({"ready": [a.name for a in adapters]}), flush=True)
    for line in sys.stdin:
        threads, method, repeat = line.split()
        torch.set_num_threads(int(threads))
        with threadpool_limits(limits=int(threads)):
            if method == "interference":
                first, re = run_interference(adapters, int(repeat))
            else:
                first, re = run_method(adapters, method, int(repeat))
        print(json.dumps({"first": first, "reweight": re, "load": os.getloadavg()[0]}), flush=True)


def _worker(tree: Path):
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "merge.py"), "--serve"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    json.loads(proc.stdout.readline())
    return proc


def _ask(proc, threads: int, method: str, repeat: int) -> dict:
    proc.stdin.write(f"{threads} {method} {repeat}\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def compare(args, write) -> None:
    """Before (``args.compare_with``) and after (this tree), interleaved; ``write(text)`` after each row."""
    from workbench.merging import MERGES

    here = Path(__file__).resolve().parent.parent
    methods = [m for m in MERGES.names()
               if not MERGES.has(m, "needs_data") and not MERGES.has(m, "pair")] + ["interference"]
    if args.methods:  # in the order given
        methods = [m for m in args.methods if m in methods]
    cached = (Path(args.compare_with) / "workbench" / "adapters" / "update_cache.py").exists()
    before, after = _worker(args.compare_with), _worker(here)
    rows: dict[int, dict[str, tuple[dict, dict]]] = {}
    loads: dict[int, list[float]] = {}
    try:
        for n in args.threads:
            rows[n], loads[n] = {}, [os.getloadavg()[0]]
            before_repeat = args.repeat if cached else 0  # a tree without the cache: reweight = first
            for j, m in enumerate(methods):
                pair = [(before, before_repeat), (after, args.repeat)]
                order = pair if j % 2 == 0 else pair[::-1]
                got = {id(p): _ask(p, n, m, r) for p, r in order}
                rows[n][m] = (got[id(before)], got[id(after)])
                loads[n].append(os.getloadavg()[0])
                print(n, m, rows[n][m], flush=True)
                write(compare_report(rows, loads, args))
    finally:
        for p in (before, after):
            p.stdin.close()
            p.wait()


def compare_report(rows: dict, loads: dict, args) -> str:
    lines = []
    for n, table in rows.items():
        lines += ["", f"### {n} thread(s): load average (1 min) {min(loads[n]):.1f} to {max(loads[n]):.1f} "
                  "during the run", "",
                  "| method | before: first (s) | before: reweight (s) | after: first (s) "
                  "| after: reweight (s) | before ÷ after, first | before ÷ after, reweight |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for m, (b, a) in table.items():
            name = "interference(density=0.2)" if m == "interference" else m
            lines.append(f"| `{name}` | {b['first']:.2f} | {b['reweight']:.2f} | {a['first']:.3f} | "
                         f"{a['reweight']:.3f} | {b['first'] / a['first']:.1f}x | "
                         f"{b['reweight'] / a['reweight']:.1f}x |")
    return "\n".join([
        "# Merge methods on the ready adapters: before and after (issue 23)",
        "",
        f"`python bench/merge.py --ready --compare-with {args.compare_with}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); before = that tree ({args.label}), "
        "after = this one.",
        "",
        "- Sources: the 4 ready SmolLM2 adapters (120 attention modules: 60 of 576x576, 60 of 192x576; "
        "rank 8, float32), default parameters, weights 1 each (first) then "
        f"{REWEIGHT} (reweight).",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; two worker "
        "processes answer one method at a time in turn (order alternating), so both see the same load. "
        f"Each: median of up to {args.repeat} runs (one run where the first took over {SLOW:g} s); a "
        "before tree without the cache of pruned updates runs once (its reweight costs its first).",
        "- **The machine was shared** (load averages below, on 2 cores): absolute times are far above an "
        "idle machine's; the ratios are the comparison.",
        "- after, first: the cache of pruned updates emptied before the call; reweight: the same sources "
        "with other weights (only the combination, truncation and error run). `cat_learned` trains on data "
        "and is not timed.",
        *lines,
        "",
    ])
