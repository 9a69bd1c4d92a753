"""The index of the full runs: every claim tried, with its interval and verdict, in one table.

``results/README.md`` is written from the per-seed tables (``results/<name>.csv``), not copied from the
summaries: each verdict is recomputed by the registered experiment's ``verdicts``, so the index cannot
drift from the data. ``lora-workbench reproduce --index`` rewrites it; a full run rewrites it too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from workbench.experiments.base import COLUMNS, EXPERIMENTS
from workbench.experiments.files import results_root, write_text
from workbench.experiments.summary import ONE_SEED, VERDICT

HEADER = """# Results: the papers' claims tried on SmolLM2

Written by `lora-workbench reproduce --index` from the per-seed tables in this folder (each verdict
recomputed from `<name>.csv`). A claim *holds* when the 95% t interval of its measure over seeds lies on
the claim's side of the threshold, is *refuted* when it lies on the other side, and is *not shown* when it
straddles it (not a refutation). Every schedule is CPU scale, far below the papers': see each summary's
"Settings and deviations". The command that wrote each table is the first line of its summary.
"""


def claims_frame(root: str | Path | None = None) -> pd.DataFrame:
    """One row per claim of every experiment with a full run in ``root`` (default ``results/``).

    Columns: experiment, claim, measure, mean, low, high, n, verdict, schedule (the summary's line).
    """
    folder = Path(root) if root is not None else results_root()
    out = []
    for name in EXPERIMENTS.names():
        csv = folder / f"{name}.csv"
        if not csv.exists():
            continue
        table = pd.read_csv(csv, keep_default_na=False)[COLUMNS]
        md = folder / f"{name}.md"
        found = re.search(r"^Schedule: (.*?)\s*$", md.read_text(), re.M) if md.exists() else None
        for v in EXPERIMENTS.get(name)().verdicts(table):
            iv = v.interval
            out.append({"experiment": name, "claim": v.claim, "measure": v.measure, "mean": iv.mean,
                        "low": iv.low, "high": iv.high, "n": iv.n,
                        "verdict": ONE_SEED if iv.n < 2 else VERDICT[v.holds],
                        "schedule": found.group(1) if found else ""})
    return pd.DataFrame(out, columns=["experiment", "claim", "measure", "mean", "low", "high", "n", "verdict",
                                      "schedule"])


def index_markdown(root: str | Path | None = None) -> str:
    """The text of ``results/README.md``: a section per experiment, a row per claim."""
    frame = claims_frame(root)
    lines = [HEADER]
    if frame.empty:
        return "\n".join(lines + ["No full run yet: `make reproduce NAME=...`.", ""])
    short = frame.verdict.map(lambda v: v.split(" (")[0])
    counts = ", ".join(f"{k}: {n}" for k, n in short.value_counts().items())
    lines += [f"{len(frame)} claims in {frame.experiment.nunique()} experiments ({counts}).", ""]
    for name, part in frame.groupby("experiment", sort=False):
        info = EXPERIMENTS.info(name)
        lines += [f"## [{name}]({name}.md): {info.summary}", "", f"Reference: {info.reference}  ",
                  f"Schedule: {part.schedule.iloc[0]}", "",
                  "| claim | measure | mean [95% CI] (n) | verdict |", "|---|---|---|---|"]
        for r in part.itertuples():
            ci = f"{r.mean:+.3f} [{r.low:+.3f}, {r.high:+.3f}] (n={r.n})"
            ci = ci if r.n > 1 else f"{r.mean:+.3f} (n=1)"
            lines.append(f"| {r.claim} | {r.measure} | {ci} | {r.verdict} |")
        lines.append("")
    return "\n".join(lines)


def write_index(root: str | Path | None = None) -> Path:
    """Write ``<root>/README.md`` (default ``results/``) atomically; return its path."""
    folder = Path(root) if root is not None else results_root()
    path = folder / "README.md"
    write_text(path, index_markdown(folder))
    return path
