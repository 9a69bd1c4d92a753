"""The Runs view: what a run store holds (``lab.runs()``), as a table and as scores over time.

It only renders: the rows come from ``workbench.runs.read_runs`` (one per run: kind, name, event, method,
start, params, metrics).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

KIND_COLOURS = {"adapter": "#4c78a8", "evaluation": "#f58518", "candidate": "#54a24b"}


def runs_table(runs: pd.DataFrame, *, limit: int = 50) -> pd.DataFrame:
    """The newest ``limit`` runs as a plain table (for the dashboard): when, kind, name, event, method and
    the first three metrics."""
    head = runs.head(limit)
    return pd.DataFrame({"when": head.start.dt.strftime("%m-%d %H:%M:%S"), "kind": head.kind,
                         "name": head.name, "event": head.event, "method": head.method.fillna(""),
                         "metrics": [", ".join(f"{k}={v:.3g}" for k, v in list(m.items())[:3])
                                     for m in head.metrics]})


def runs_view(runs: pd.DataFrame, *, limit: int = 30, height: int = 520) -> go.Figure:
    """The newest ``limit`` runs as a table (above), and every recorded metric ending in a score name
    (``/accuracy``, ``/exact_match``, ``/loss``, ``objective``) against when it was recorded (below)."""
    fig = make_subplots(rows=2, cols=1, row_heights=[0.55, 0.45], vertical_spacing=0.08,
                        specs=[[{"type": "table"}], [{"type": "xy"}]])
    table = runs_table(runs, limit=limit)
    fig.add_trace(go.Table(header={"values": ["when", "kind", "name", "event", "method", "metrics (first 3)"],
                                   "align": "left"},
                           cells={"values": [table[c] for c in table.columns], "align": "left",
                                  "fill_color": [[_tint(k) for k in table.kind]]}), row=1, col=1)
    for kind, part in runs.groupby("kind"):
        xs, ys, text = [], [], []
        for row in part.itertuples():
            for k, v in row.metrics.items():
                if k == "objective" or k.rsplit("/", 1)[-1] in {"accuracy", "exact_match", "loss", "f1"}:
                    xs.append(row.start), ys.append(v), text.append(f"{row.name}: {k}")
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=str(kind), text=text,
                                     marker={"color": KIND_COLOURS.get(kind, "#777")}), row=2, col=1)
    fig.update_yaxes(title_text="score", row=2, col=1)
    fig.update_layout(height=height, margin={"l": 40, "r": 20, "t": 40, "b": 30},
                      title=f"run store: {len(runs)} runs "
                            f"({', '.join(f'{n} {k}' for k, n in runs.kind.value_counts().items())})")
    return fig


def _tint(kind: str) -> str:
    return {"adapter": "#eef3f9", "evaluation": "#fdf1e6", "candidate": "#eef7ec"}.get(kind, "white")
