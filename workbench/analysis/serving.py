"""The serving view's data: what each batch of a serving run held (adapters, ranks) and how fast it ran.

A serving run (``lab.serve_run``) sends requests, each naming an adapter, a router or None (the base),
through the model in mixed batches (``lab.use(rows=...)``) and times each batch. ``serving_frame``
turns its per-batch records into one tidy frame, one row per (batch, adapter present)::

    batch adapter kind    rank rows batch_rows n_adapters prompt_tokens new_tokens seconds tokens_per_s
    0     a0      adapter 8    3    8          3          412           128        0.41    312.2
    0     (base)  base    0    2    8          3          ...
    0     smora   router  <NA> 3    8          3          ...

Batch columns (``batch_rows`` .. ``tokens_per_s``) repeat on each row of a batch. ``n_adapters`` counts
the adapters and routers present (not the base); ``tokens_per_s`` is generated tokens (every row's
new positions, as the hardware computed them) per second of the batch's wall time, prefill included.
``per_batch`` keeps one row per batch; ``rank_mix`` counts rows per rank label ("r8", "base",
"router") and batch.

Reference: S-LoRA (Sheng et al., MLSys 2024), §7 (throughput against the number of adapters, rank
mixes of 8/16/32/64); Punica (Chen et al., MLSys 2024).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

BASE = "(base)"
COLUMNS = ["batch", "adapter", "kind", "rank", "rows", "batch_rows", "n_adapters", "prompt_tokens",
           "new_tokens", "seconds", "tokens_per_s"]


@dataclass(frozen=True)
class BatchRecord:
    """One served batch: the name (or None) of each row, its real prompt tokens, the new tokens
    generated (rows × new positions) and its wall time in seconds."""

    rows: tuple[str | None, ...]
    prompt_tokens: int
    new_tokens: int
    seconds: float


def serving_frame(batches: Sequence[BatchRecord],
                  kinds: Mapping[str, tuple[str, int | None]]) -> pd.DataFrame:
    """One row per (batch, adapter present); see the module doc for the columns.

    Args:
        batches: the run's batches, in order.
        kinds: name -> ("adapter", rank) or ("router", None) for every name a row uses.
    """
    out = []
    for b, rec in enumerate(batches):
        counts = Counter(BASE if r is None else r for r in rec.rows)
        n_adapters = sum(1 for n in counts if n != BASE)
        speed = rec.new_tokens / rec.seconds if rec.seconds > 0 else float("nan")
        for name, n in counts.items():
            kind, rank = ("base", 0) if name == BASE else kinds[name]
            out.append({"batch": b, "adapter": name, "kind": kind, "rank": rank, "rows": n,
                        "batch_rows": len(rec.rows), "n_adapters": n_adapters,
                        "prompt_tokens": rec.prompt_tokens, "new_tokens": rec.new_tokens,
                        "seconds": rec.seconds, "tokens_per_s": speed})
    frame = pd.DataFrame(out, columns=COLUMNS)
    frame["rank"] = frame["rank"].astype("Int64")
    return frame


def per_batch(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per batch: batch, batch_rows, n_adapters, prompt_tokens, new_tokens, seconds, tokens_per_s."""
    cols = ["batch", "batch_rows", "n_adapters", "prompt_tokens", "new_tokens", "seconds", "tokens_per_s"]
    return frame[cols].drop_duplicates("batch").reset_index(drop=True)


def rank_mix(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows per (batch, rank label): "r8", "r16", ... for adapters, "base", "router"; columns batch,
    label, rows (labels ordered: base, ranks ascending, router)."""
    label = frame["kind"].where(frame["kind"] != "adapter", "r" + frame["rank"].astype(str))
    mix = frame.assign(label=label).groupby(["batch", "label"], as_index=False)["rows"].sum()
    order = {lab: (0 if lab == "base" else 2 if lab == "router" else 1,
                   int(lab[1:]) if lab[1:].isdigit() else 0) for lab in mix["label"].unique()}
    return mix.sort_values(["batch", "label"], key=lambda s: s.map(order) if s.name == "label" else s,
                           ignore_index=True)
