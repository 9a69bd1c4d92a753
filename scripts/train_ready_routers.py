"""Train the ready routers (and the plain LoRA baseline) on SmolLM2 and write routers/ + results.

    python scripts/train_ready_routers.py                 # the missing ones (about 40 min on 2 cores)
    python scripts/train_ready_routers.py --only smora    # retrain one

Deterministic for the seeds in workbench.ready_routers. Writes, atomically: routers/<name>/,
routers/<name>.history.csv, routers/scores.csv (full eval splits) and routers/SCORES.md.
"""

from __future__ import annotations

import argparse
import time

import torch

from workbench import Workbench, ready, ready_routers, tasks


def train(lab, name: str, kind: str, build: dict, training: dict):
    t = tasks.load(training["tasks"])
    args = {k: v for k, v in training.items() if k != "tasks"}
    if kind == "adapter":
        adapter, history = lab.train_lora(name, list(t.values()), **build, **args)
        adapter.metadata["ready"] = True
        lab.save_adapter(name, ready_routers.root() / name, overwrite=True)
    else:
        build = dict(build)
        lab.add_router(name, build.pop("mechanism"), seed=args["seed"], **build)
        _, history = lab.train_router(name, list(t.values()), **args)
        lab.save_router(name, ready_routers.root() / name, overwrite=True)
    history.to_csv(ready_routers.root() / f"{name}.history.csv", index=False)
    return history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="retrain these even if they exist")
    ap.add_argument("--no-eval", action="store_true", help="skip the full evaluation")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (two 1-thread runs beat one 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lab = Workbench.from_zoo(ready.BASE)
    ready.load_all(lab)
    for name, (kind, build, training) in ready_routers.RECIPES.items():
        if args.only is not None and name not in args.only:
            continue
        if (ready_routers.root() / name).exists() and not args.only:
            ready_routers.load(lab, name)
            continue
        t0 = time.perf_counter()
        history = train(lab, name, kind, build, training)
        print(f"{name}: {len(history)} steps in {time.perf_counter() - t0:.0f} s, "
              f"loss {history.loss.head(5).mean():.3f} -> {history.loss.tail(5).mean():.3f}", flush=True)
    if args.no_eval:
        return
    names = [n for n in ready_routers.NAMES if n in lab.adapters or n in lab.routers]
    scores = lab.evaluate([None, *names], tasks.load(ready.NAMES))  # ready adapters: adapters/scores.csv
    scores.to_csv(ready_routers.root() / "scores.csv", index=False)
    wide = scores.pivot(index="adapter", columns="task", values="value").round(3)
    lines = ["| model | " + " | ".join(wide.columns) + " |", "|---" * (len(wide.columns) + 1) + "|"]
    lines += [f"| {i} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for i, row in wide.iterrows()]
    (ready_routers.root() / "SCORES.md").write_text("\n".join(lines) + "\n")
    print(wide)


if __name__ == "__main__":
    main()
