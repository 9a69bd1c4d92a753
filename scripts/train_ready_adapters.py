"""Retrain the four ready adapters on SmolLM2 (r=8, attention) and write adapters/ + their scores.

    python scripts/train_ready_adapters.py            # about 15 minutes on 2 CPU cores

Deterministic for the seeds in workbench.ready (same machine, same torch). Writes, atomically:
adapters/<name>/ (PEFT directories), adapters/scores.csv and adapters/SCORES.md (the README table).
"""

from __future__ import annotations

import argparse
import time

import torch

from workbench import Workbench, ready, tasks
from workbench.evaluation import relative_to_base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="retrain only these (others are loaded)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    lab = Workbench.from_zoo(ready.BASE)
    all_tasks = tasks.load(ready.NAMES)
    out = ready.root()
    for name, recipe in ready.RECIPES.items():
        if args.only is not None and name not in args.only:
            lab.load_adapter(ready.path(name), name=name)
            continue
        t0 = time.perf_counter()
        adapter, history = lab.train_lora(name, all_tasks[name], **ready.COMMON, **recipe)
        adapter.metadata["ready"] = True
        lab.save_adapter(name, out / name, overwrite=True)
        print(f"{name}: {len(history)} steps in {time.perf_counter() - t0:.0f} s, "
              f"loss {history.loss.head(5).mean():.3f} -> {history.loss.tail(5).mean():.3f}")
    scores = lab.evaluate([None, *ready.NAMES], all_tasks)
    scores.to_csv(out / "scores.csv", index=False)
    (out / "SCORES.md").write_text(markdown_table(scores))
    print(markdown_table(scores))


def markdown_table(scores) -> str:
    """Adapters as rows, tasks as columns, own-task cells in bold, and each own-task gain."""
    wide = scores.pivot(index="adapter", columns="task", values="value")
    metric = scores.drop_duplicates("task").set_index("task")["metric"]
    cols = list(metric.index)
    lines = ["| adapter | " + " | ".join(f"{t} ({metric[t]})" for t in cols) + " | own-task gain |",
             "|---" * (len(cols) + 2) + "|"]
    gains = relative_to_base(scores)
    for adapter in ["base", *[a for a in wide.index if a != "base"]]:
        cells = [f"**{wide.loc[adapter, t]:.3f}**" if t == adapter else f"{wide.loc[adapter, t]:.3f}"
                 for t in cols]
        own = gains[(gains.adapter == adapter) & (gains.task == adapter)]
        gain = f"{own.gain.iloc[0]:+.3f}" if len(own) else ""
        lines.append(f"| {adapter} | " + " | ".join(cells) + f" | {gain} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
