"""Benchmark: SMoRA's sparse top-k path against its dense path, and routed against plain LoRA forwards.

Two comparisons, each measured side by side in one run and reported as ratios (timings on shared
machines are noisy; ratios measured together are what to compare):

1. one SMoRA module (r=64, k=8, the authors' defaults) on a 4096 x 4096 projection, 2,048 tokens:
   the dense path (all r rank-1 products, gated) against the sparse path (only the k selected rows
   of A and columns of B per token): forward, and forward + backward;
2. SmolLM2-135M forward on a batch of prompts: base, a plain LoRA (r=26 on attention), SMoRA (r=16,
   k=4 on attention, same trainable budget) dense and sparse, and FlyLoRA (r=64, k=16).

    python bench/routing.py                  # writes bench/results/routing.md
    python bench/routing.py --quick          # smaller, prints only
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import publish  # bench/common.py (this script's folder is on sys.path)

from workbench import Workbench
from workbench.routing import ROUTERS

OUT = Path(__file__).parent / "results" / "routing.md"


def median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def module_rows(tokens: int, dim: int, repeat: int) -> list[tuple[str, float]]:
    g = torch.Generator().manual_seed(0)
    router = ROUTERS.get("smora")(dim, dim, generator=g, r=64, k=8, alpha=16, init="random")
    x = torch.randn(1, tokens, dim, generator=g)

    def forward(sparse: bool, backward: bool):
        def run():
            router.sparse = sparse
            router.zero_grad(set_to_none=True)
            with torch.set_grad_enabled(backward):
                out = router(x, None)
                if backward:
                    out.square().mean().backward()
        return run

    rows = []
    for backward in (False, True):
        label = "forward + backward" if backward else "forward"
        dense = median_time(forward(False, backward), repeat)
        sparse = median_time(forward(True, backward), repeat)
        rows += [(f"SMoRA module {label}, dense", dense), (f"SMoRA module {label}, sparse", sparse),
                 (f"SMoRA module {label}: dense / sparse", dense / sparse)]
    router.eval()
    return rows


def model_rows(batch: int, repeat: int) -> list[tuple[str, float]]:
    lab = Workbench.from_zoo("smollm2-135m")
    lab.new_adapter("lora", r=26, alpha=52, targets="attention", init="random")
    lab.add_router("smora", "smora", r=16, k=4, alpha=8, targets="attention", init="random")
    lab.add_router("flylora", "flylora", r=64, k=16, alpha=128, targets="attention", init="random")
    prompts = [f"Question {i}: what is {i} times {i + 3}? Answer with a number, then explain." * 2
               for i in range(batch)]
    inputs = lab.encode(prompts)

    def run(spec, sparse=False):
        def go():
            for r in lab.routers["smora"].modules.values():
                r.sparse = sparse
            with torch.no_grad(), lab.using(spec):
                lab.model(**inputs)
        return go

    t = {"base": median_time(run(None), repeat), "lora r=26": median_time(run("lora"), repeat),
         "smora dense": median_time(run("smora"), repeat),
         "smora sparse": median_time(run("smora", sparse=True), repeat),
         "flylora": median_time(run("flylora"), repeat)}
    tokens = int(inputs["attention_mask"].sum())
    rows = [(f"SmolLM2 forward, {name} ({tokens} tokens)", v) for name, v in t.items()]
    rows += [(f"SmolLM2 forward: {name} / lora r=26", t[name] / t["lora r=26"])
             for name in ("smora dense", "smora sparse", "flylora")]
    rows.append(("SmolLM2 forward: lora r=26 / base", t["lora r=26"] / t["base"]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: ratios, not speed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tokens, dim, batch, repeat = (256, 1024, 2, 3) if args.quick else (2048, 4096, 8, 7)
    rows = module_rows(tokens, dim, repeat) + model_rows(batch, repeat)
    lines = [f"# Routing benchmark ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {repeat}; "
             f"load average {os.getloadavg()[0]:.1f} at the end)", "",
             "Command: `python bench/routing.py`. Timings on a shared machine are noisy; the ratios were "
             "measured side by side in this one run.", "",
             "| measurement | seconds or ratio |", "|---|---|"]
    lines += [f"| {name} | {v:.4f} |" for name, v in rows]
    text = "\n".join(lines) + "\n"
    publish(text, None if args.quick else args.out)


if __name__ == "__main__":
    main()
