"""The serving view: the frame of a serving run (hand-checked counts), ``lab.serve_run`` on a tiny model
with adapters of two ranks, a router and base rows, and the figure that renders it."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import tiny_lab
from workbench.analysis.serving import BatchRecord, per_batch, rank_mix, serving_frame
from workbench.errors import WorkbenchError

KINDS = {"a": ("adapter", 8), "b": ("adapter", 16), "c": ("adapter", 8), "sm": ("router", None)}


def test_frame_counts_by_hand():
    batches = [BatchRecord(("a", "b", None, "a"), prompt_tokens=20, new_tokens=8, seconds=0.5),
               BatchRecord(("sm", "c", "a"), prompt_tokens=9, new_tokens=6, seconds=2.0)]
    f = serving_frame(batches, KINDS)
    assert list(f.batch) == [0, 0, 0, 1, 1, 1]
    first = f[f.batch == 0].set_index("adapter")
    assert first.rows.to_dict() == {"a": 2, "b": 1, "(base)": 1}
    assert first["rank"].to_dict() == {"a": 8, "b": 16, "(base)": 0}
    assert set(first.n_adapters) == {2} and set(first.batch_rows) == {4}
    assert set(first.tokens_per_s) == {16.0}
    pb = per_batch(f)
    assert pb.n_adapters.tolist() == [2, 3] and pb.tokens_per_s.tolist() == [16.0, 3.0]
    assert pd.isna(f[f.adapter == "sm"]["rank"].iloc[0])
    mix = rank_mix(f)
    assert mix[mix.batch == 0][["label", "rows"]].values.tolist() == [["base", 1], ["r8", 2], ["r16", 1]]
    assert mix[mix.batch == 1][["label", "rows"]].values.tolist() == [["r8", 2], ["router", 1]]


def test_serve_run_and_its_figure():
    lab = tiny_lab()
    lab.new_adapter("a", r=2, targets="all-linear", init="random", seed=0)
    lab.new_adapter("b", r=8, targets="all-linear", init="random", seed=1)
    lab.add_router("sm", "smora", targets="all-linear", r=8, k=2, init="random")
    names = ["a", None, "b", "sm", "a", "b", None]
    requests = [(n, [5 + i, 7, 9 + i][: 1 + i % 3]) for i, n in enumerate(names)]
    f = lab.serve_run(requests, batch_size=3, max_new_tokens=2, progress=False)
    pb = per_batch(f)
    assert pb.batch_rows.tolist() == [3, 3, 1] and pb.n_adapters.tolist() == [2, 3, 0]
    assert pb.new_tokens.tolist() == [6, 6, 2] and (pb.tokens_per_s > 0).all()
    assert pb.prompt_tokens.tolist() == [1 + 2 + 3, 1 + 2 + 3, 1]
    assert f[f.adapter == "b"]["rank"].tolist() == [8, 8]
    assert lab.active.names == set()  # what was used comes back

    from widgets import serving_figure

    fig = serving_figure(f)
    assert [t.type for t in fig.data] == ["scatter", "bar", "bar", "bar", "bar"]
    assert {t.name for t in fig.data[1:]} == {"base", "r2", "r8", "router"}

    with pytest.raises(WorkbenchError, match="does not have"):
        lab.serve_run([("nope", [1, 2])])
