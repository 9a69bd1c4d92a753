"""Benchmark: how far the static export of each shipped (trained) router is from the router itself.

The ready routers (``workbench.ready_routers``: SMoRA, FlyLoRA, MeteoRA, trained on SmolLM2-135M) are
exported with ``lab.export_router`` averaged over 8 evaluation prompts of each of three real tasks;
the distance to the router's logits is measured on those prompts and on 8 other prompts per task
(held out). ``rel_logit_error`` = ‖ℓ_export − ℓ_router‖ / ‖ℓ_router‖ over real tokens; ``kl`` the mean
KL(p_router ‖ p_export); ``top1`` the share of tokens whose argmax agrees.

    python bench/router_export.py            # writes bench/results/router_export.md
    python bench/router_export.py --quick    # 2 prompts per task, prints only
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from common import publish  # bench/common.py (this script's folder is on sys.path)

import workbench as wb
from workbench import ready, ready_routers
from workbench.routing.export import distance
from workbench.routing.freeze import _batches

OUT = Path(__file__).parent / "results" / "router_export.md"
ROUTERS = ["smora", "flylora", "meteora"]
TASKS = ["arithmetic", "topic", "language"]


def measure(n: int) -> list[dict]:
    lab = wb.Workbench.from_zoo("smollm2-135m")
    ready.load_all(lab)
    ready_routers.load_all(lab)
    tasks = wb.tasks.load(TASKS)
    fit = [e.prompt for t in tasks.values() for e in t.eval[:n]]
    held = [e.prompt for t in tasks.values() for e in t.eval[n:2 * n]]
    rows = []
    for name in ROUTERS:
        adapter = lab.export_router(name, fit)
        rep = lab.last_export
        with lab.session(train=False):
            h = distance(lab, name, adapter.name, _batches(lab, held, 8))
        rows.append({"router": name, "exact": rep["exact"], "ranks": sorted(set(adapter.ranks.values())),
                     "rel": rep["rel_logit_error"], "kl": rep["kl"], "top1": rep["top1_agreement"],
                     "tokens": rep["tokens"], "held_rel": h["rel_logit_error"], "held_kl": h["kl"],
                     "held_top1": h["top1_agreement"], "held_tokens": h["tokens"]})
    return rows


def table(rows: list[dict], n: int) -> str:
    lines = [f"# Router export distance (SmolLM2-135M, ready routers; {n} prompts per task of "
             f"{', '.join(TASKS)}; load average {os.getloadavg()[0]:.1f})", "",
             "Command: `python bench/router_export.py`.", "",
             "| router | exact | export ranks | rel. logit error | KL | top-1 agree | held-out rel. error | "
             "held-out KL | held-out top-1 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ranks = f"{r['ranks'][0]}..{r['ranks'][-1]}" if len(r["ranks"]) > 1 else str(r["ranks"][0])
        lines.append(f"| {r['router']} | {r['exact']} | {ranks} | {r['rel']:.3f} | {r['kl']:.3f} | "
                     f"{r['top1']:.3f} | {r['held_rel']:.3f} | {r['held_kl']:.3f} | {r['held_top1']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = 2 if args.quick else 8
    publish(table(measure(n), n), None if args.quick else OUT)


if __name__ == "__main__":
    main()
