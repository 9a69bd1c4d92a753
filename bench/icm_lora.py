"""ICM-LoRA on SmolLM2: train task LoRAs with checkpoints, fit the CVAE, generate, evaluate.

    PYTHONPATH=$PWD /work/wt/realrun.sh python bench/icm_lora.py --out results/icm_lora   # ~15 min, 1 thread
    python bench/icm_lora.py --quick                                                     # a smoke run

Steps: (1) one LoRA per task (r=4 on q_proj/v_proj, α=8) through ``lab.train_multitask`` with a
checkpoint every step; (2) ``ICMLoRA(lab).fit`` on the later half of each run's checkpoints, each
task conditioned on the task vector of its first 8 training examples (base model); (3) for each task,
``generate`` from the same examples (samples 0 and 1 of seed 0) and ``reconstruct`` the trained LoRA;
(4) score base, trained, generated and reconstructed adapters on every task (first ``eval_limit``
held-out examples). Recovered fraction = (generated − base) / (trained − base) on the task the
condition came from; "swap" reads the generated adapter on the other task.

Reference: Shao et al., "In-Context Meta LoRA Generation" (ICM-LoRA), IJCAI 2025, arXiv 2501.17635.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from bench.common import write_atomically

TASKS = ("topic", "language")


def markdown(frame: pd.DataFrame, index: bool = True) -> str:
    """A pipe table of ``frame`` (floats to 4 places), without the optional ``tabulate`` package."""
    frame = frame.reset_index() if index else frame
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    head = [str(c) for c in frame.columns]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 steps, 2 eval examples (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.md and OUT.csv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import workbench as wb

    steps, eval_limit, cvae_steps = (2, 2, 4) if args.quick else (16, 16, 150)
    lab = wb.Workbench.from_zoo("smollm2-135m")
    text, scores = experiment(lab, wb.tasks.load(list(TASKS)), steps=steps, eval_limit=eval_limit,
                              cvae_steps=cvae_steps)
    print(text)
    if args.out is not None:
        write_atomically(args.out.with_suffix(".md"), text)
        write_atomically(args.out.with_suffix(".csv"), scores.to_csv(index=False))


def experiment(lab, tasks: dict, *, steps: int, eval_limit: int, cvae_steps: int,
               channels=None, latent: int = 32) -> tuple[str, pd.DataFrame]:
    """Train, fit, generate and score on ``lab`` and two ``tasks``; returns (markdown, scores)."""
    from workbench.generation import ICMLoRA
    from workbench.generation.icm_lora import SCALED_CHANNELS

    start, load0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()
    t0 = time.perf_counter()
    runs = {name: lab.train_multitask(name, [task], r=4, alpha=8, targets=["q_proj", "v_proj"], steps=steps,
                                      lr=3e-3, batch_size=4, seed=0, checkpoint_every=1, progress=False)
            for name, task in tasks.items()}
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen = ICMLoRA(lab, channels=channels or SCALED_CHANNELS, latent=latent)
    history = gen.fit({n: r.checkpoints for n, r in runs.items()}, tasks, late=0.5, steps=cvae_steps,
                      lr=2e-3, batch_size=2, seed=2024, progress=False)
    fit_s = time.perf_counter() - t0
    made = {}
    for name, task in tasks.items():
        for i, a in enumerate(gen.generate(task, n=2, seed=0, name=f"gen_{name}")):
            made[f"gen_{name}_{i}"] = a
        made[f"recon_{name}"] = gen.reconstruct(lab.adapters[name], name=f"recon_{name}")
    t0 = time.perf_counter()
    specs = [None, *tasks, *made.values()]
    scores = lab.evaluate(specs, tasks, limit=eval_limit, progress=False)
    eval_s = time.perf_counter() - t0
    table = scores.pivot_table(index="adapter", columns="task", values="value")
    lora_params = sum(lab.adapters[n].num_parameters() for n in tasks)
    rows = []
    for name in tasks:
        base, trained = table.loc["base", name], table.loc[name, name]
        for label in (f"gen_{name}_0", f"gen_{name}_1", f"recon_{name}"):
            got = table.loc[label, name]
            other = [t for t in tasks if t != name][0]
            rows.append({"task": name, "adapter": label, "base": base, "trained": trained, "score": got,
                         "recovered": (got - base) / (trained - base) if trained != base else float("nan"),
                         "swap_task": other, "score_on_swap_task": table.loc[label, other],
                         "trained_other_on_swap_task": table.loc[other, other]})
    frame = pd.DataFrame(rows)
    note = (f"{steps} LoRA steps per task (lr 3e-3, batch 4, r=4 α=8 on q_proj/v_proj, a checkpoint each "
            f"step, the later half used: {gen.fit_options['checkpoints']}); CVAE {gen.vae.config()} "
            f"fitted {cvae_steps} steps (lr 2e-3, batch 2, seed 2024); eval limit {eval_limit} per task; "
            f"seed 0 only")
    md = [f"# icm_lora: ICM-LoRA on {lab.name} ({', '.join(tasks)})", "",
          "Command: `PYTHONPATH=$PWD /work/wt/realrun.sh python bench/icm_lora.py --out results/icm_lora`  ",
          f"Date: {start} → {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
          f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread; load "
          f"average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at the end (other jobs shared the "
          "CPUs)  ",
          f"Settings: {note}  ",
          f"Time: LoRA training {train_s:.0f} s, CVAE fit {fit_s:.0f} s, evaluation {eval_s:.0f} s", "",
          "## Scores (rows: adapter, columns: task)", "", markdown(table), "",
          "## Generated and reconstructed against the trained LoRA", "",
          "recovered = (score − base) / (trained − base) on the task the condition came from; "
          "score_on_swap_task: the same adapter on the other task.", "",
          markdown(frame, index=False), "",
          f"CVAE final loss (mean of the last 20 steps): recon {history['recon'].tail(20).mean():.4f}, "
          f"KL {history['kl'].tail(20).mean():.3f}  ",
          f"Storage: generator {gen.num_parameters():,} parameters against {lora_params:,} in the "
          f"{len(tasks)} LoRAs it was fitted on (one layout of {gen.data.layout.length:,} values).", ""]
    return "\n".join(md), scores


if __name__ == "__main__":
    main()
