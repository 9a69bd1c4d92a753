"""The markdown summary of a reproduction: claims, verdicts, mean ± 95% interval of every measure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.experiments.files import results_root
from workbench.experiments.stats import mean_interval

VERDICT = {True: "holds", False: "refuted", None: "not shown (the interval straddles the threshold)"}
ONE_SEED = "not decided (one seed: no interval)"


def measure_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, measure, task): mean, 95% interval bounds and n over seeds."""
    out = []
    for (arm, measure, task), part in table.groupby(["arm", "measure", "task"], sort=False):
        iv = mean_interval(part["value"].tolist())
        out.append({"arm": arm, "measure": measure, "task": task, "mean": iv.mean, "low": iv.low,
                    "high": iv.high, "n": iv.n})
    return pd.DataFrame(out)


def full_results(name: str, root=None) -> tuple[str, pd.DataFrame] | None:
    """The claims part of ``results/<name>.md`` and the measure table of ``<name>.csv``, or None.

    What the tutorials show under "The full run": the command that wrote the files is in the text.
    """
    folder = Path(root) if root is not None else results_root()
    md, csv = folder / f"{name}.md", folder / f"{name}.csv"
    if not csv.exists() or not md.exists():
        return None
    return md.read_text().split("## Every measure")[0], measure_table(pd.read_csv(csv, keep_default_na=False))


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3f}"


def summary_markdown(experiment, name: str, table: pd.DataFrame, verdicts: list, info: dict) -> str:
    """The whole ``<name>.md``: header, claims with verdicts, the measure table, settings, machine."""
    arms = set(table.arm)  # a seed is finished when every arm of the table has run in it
    seeds = sorted(s for s in table.seed.unique().tolist() if set(table[table.seed == s].arm) == arms)
    schedule, m = info["schedule"], info["machine"]
    lines = [f"# {name}: {experiment.title}", "",
             ("Command: " if len(info["commands"]) == 1 else "Commands (the arms of each, in turn): ")
             + " then ".join(f"`{c}`" for c in info["commands"]) + "  ",
             f"Date: {info['started']} → {info['finished']}  ",
             f"Seeds finished: {seeds} of {info['seeds_asked']}"
             + ("" if len(seeds) == len(info["seeds_asked"]) else " (**partial run**)") + "  ",
             f"Schedule: {schedule.steps} steps, lr {schedule.lr}, batch {schedule.batch_size}, "
             f"eval limit {schedule.eval_limit or 'all'} per task"
             + (" (**quick mode**: a smoke test, not a result)" if info["quick"] else "") + "  ",
             f"Machine: {m['processor']}, {m['cpus']} CPUs, torch {m['torch']} with {m['torch_threads']} "
             f"thread(s), {m['platform']}; load average {info['load_start']} at start, "
             f"{info['load_end']} at the last seed (other jobs shared the CPUs)", "",
             "## Claims", ""]
    lines += ["| claim | measure | mean ± 95% CI (n) | verdict |", "|---|---|---|---|"]
    for v in verdicts:
        iv = v.interval
        ci = f"{iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] (n={iv.n})" if iv.n > 1 else \
            f"{iv.mean:+.3f} (n=1)"
        verdict = ONE_SEED if iv.n < 2 else VERDICT[v.holds]
        lines.append(f"| {v.claim} | {v.measure} | {ci} | {verdict}"
                     + (f"; {v.note}" if v.note else "") + " |")
    lines += ["", "## Every measure (mean and 95% t interval over seeds)", "",
              "| arm | measure | task | mean | 95% CI | n |", "|---|---|---|---|---|---|"]
    for r in measure_table(table).itertuples():
        ci = f"[{_fmt(r.low)}, {_fmt(r.high)}]" if r.n > 1 else "—"
        lines.append(f"| {r.arm} | {r.measure} | {r.task or '—'} | {_fmt(r.mean)} | {ci} | {r.n} |")
    if experiment.notes:
        lines += ["", "## Settings and deviations", ""] + [f"- {n}" for n in experiment.notes]
    lines += ["", f"Per-seed table: `{name}.csv` (tidy: experiment, seed, arm, measure, task, value).", ""]
    return "\n".join(lines)
