"""SearchProgress: a merge-weight search as it runs: the objective over evaluations, the best weights so
far, the Pareto front across two tasks, and any candidate opened in the MergeBuilder.

The view only renders a search's frame (``workbench.search.SearchRun.frame``: one row per candidate ×
task); the figures are pure functions of it (``progress_figure``, ``weights_figure``, ``pareto_figure``).
On a running search (``from_run``) the view redraws after every evaluation: the search calls it from its
own thread (``search(..., background=True)``), as the TrainingMonitor's trainer does, so the notebook keeps
answering while candidates are scored.

    run = search(objective, space, "nevergrad", budget=30, background=True)
    SearchProgress.from_run(run, lab=lab, tasks=tasks)     # display; it fills in as the search runs
    view.open_candidate(7)                                 # candidate 7 in a MergeBuilder
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import nullcontext

import ipywidgets as ipw
import pandas as pd
import plotly.graph_objects as go

from workbench.errors import WorkbenchError
from workbench.search import pareto_front, wide


def progress_figure(frame: pd.DataFrame, fig: go.Figure | None = None) -> go.Figure:
    """Each candidate's objective (markers, one series per search) and the best so far (a step line)."""
    table = wide(frame)
    traces = []
    for name, part in table.groupby("search", sort=False) if len(table) else []:
        x = list(part.candidate + 1)
        traces += [dict(type="scatter", x=x, y=list(part.objective), mode="markers",
                        name=f"{name}: candidates", text=list(part.note),
                        hovertemplate="eval %{x}: %{y:.3f}<br>%{text}<extra></extra>"),
                   dict(type="scatter", x=x, y=list(part.objective.cummax()), mode="lines", line_shape="hv",
                        name=f"{name}: best so far")]
    return _draw(fig, traces, "objective over evaluations",
                 dict(xaxis_title="evaluation", yaxis_title="objective", height=300))


def weights_figure(frame: pd.DataFrame, fig: go.Figure | None = None) -> go.Figure:
    """The best candidate's weight per adapter (bars), its method and density in the title."""
    table = wide(frame)
    traces, title = [], "best weights: no candidate yet"
    if len(table):
        row = table.loc[table.objective.idxmax()]
        cols = [c for c in table.columns if c.startswith("weight.")]
        traces = [dict(type="bar", x=[c[7:] for c in cols], y=[float(row[c]) for c in cols], name="best")]
        density = "" if pd.isna(row.get("density")) else f", density {row['density']:.2f}"
        title = f"best weights: candidate {int(row.candidate)}, {row.method}{density}, " \
                f"objective {row.objective:.3f}"
    return _draw(fig, traces, title, dict(yaxis_title="weight", height=280))


def pareto_figure(frame: pd.DataFrame, x: str, y: str, fig: go.Figure | None = None) -> go.Figure:
    """Every candidate's normalized scores on tasks ``x`` and ``y``; the front joined by a line."""
    traces = []
    if len(frame):
        table = pareto_front(frame, x, y)
        for on, part in ((False, table[~table.front]), (True, table[table.front])):
            traces.append(dict(type="scatter", x=list(part[f"score.{x}"]), y=list(part[f"score.{y}"]),
                               mode="lines+markers" if on else "markers", name="front" if on else "dominated",
                               text=[f"candidate {int(c)}" for c in part.candidate],
                               hovertemplate="%{text}: (%{x:.3f}, %{y:.3f})<extra></extra>"))
    return _draw(fig, traces, f"Pareto front: {x} × {y} (normalized)", dict(height=320),
                 axes=dict(xaxis_title=x, yaxis_title=y))


def _draw(fig: go.Figure | None, traces: list[dict], title: str, layout: dict, axes: dict | None = None
          ) -> go.Figure:
    """Show ``traces`` on ``fig`` (a new Figure when None). A FigureWidget that already holds traces of the
    same kinds has their data replaced in one message, its layout (template included) set only once: a
    live view redraws cheaply many times a second."""
    fig = fig if fig is not None else go.Figure()
    same = len(fig.data) == len(traces) and all(t.type == d["type"]
                                                for t, d in zip(fig.data, traces, strict=False))
    with (fig.batch_update() if hasattr(fig, "batch_update") else nullcontext()):
        if same and traces:
            for t, d in zip(fig.data, traces, strict=True):
                t.update({k: v for k, v in d.items() if k != "type"})
        else:
            fig.data = []
            if traces:
                fig.add_traces(traces)
        if fig.layout.height is None:  # the first draw (it sets the height)
            fig.update_layout(template="plotly_white", margin=dict(t=40, b=40), **layout)
        fig.update_layout(title=title, **(axes or {}))
    return fig


class SearchProgress(ipw.VBox):
    """The live view of a search: objective over evaluations, best weights, a Pareto front, open a candidate.

    Example::

        run = search(objective, space, "nevergrad", budget=30, background=True)
        view = SearchProgress.from_run(run, lab=lab, tasks=tasks)
        view                       # redraws after every evaluation; pick two tasks for the front
        builder = view.open_candidate(3)     # candidate 3 in a MergeBuilder (needs the lab)
    """

    @classmethod
    def from_run(cls, run, *, lab=None, tasks: Mapping | None = None, every: float = 0.5) -> SearchProgress:
        """A view of ``run`` (a ``SearchRun``, running or done) that redraws as evaluations come in.

        Args:
            run: the search.
            lab: the lab holding the run's adapters (to open candidates in a MergeBuilder).
            tasks: ``{name: Task}`` for the builder's quick evaluation.
            every: redraw at most once per ``every`` seconds while it runs (cheap objectives score many
                candidates a second); the end of the search is always drawn.
        """
        view = cls(frame=run.frame, candidates=list(run.candidates), adapters=list(run.space.adapters),
                   lab=lab, tasks=tasks)
        view.run = run
        last = [0.0]

        def redraw(r) -> None:
            if r.done or time.monotonic() - last[0] >= every:
                view.show(r.frame, list(r.candidates), r.stopped_by)
                last[0] = time.monotonic()  # from the end of the redraw: the search gets `every` s

        run.subscribe(redraw)
        if run.done:  # finished before the subscription
            view.show(run.frame, list(run.candidates), run.stopped_by)
        return view

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> SearchProgress:
        """A view of a finished search's frame (no candidate can be opened: the lab is not known)."""
        return cls(frame=frame)

    def __init__(self, *, frame: pd.DataFrame, candidates: list | None = None, adapters: list | None = None,
                 lab=None, tasks: Mapping | None = None) -> None:
        """Keywords only (``from_run`` / ``from_frame`` are the constructors to call)."""
        self.run, self.lab, self.tasks, self.adapters = None, lab, tasks, adapters
        self.frame, self.candidates = frame, list(candidates or [])
        self.progress = go.FigureWidget()
        self.weights = go.FigureWidget()
        self.pareto = go.FigureWidget()
        names = list(dict.fromkeys(frame.task)) if len(frame) else []
        self.x_task = ipw.Dropdown(options=names, value=names[0] if names else None, description="x task")
        second = names[min(1, len(names) - 1)] if names else None
        self.y_task = ipw.Dropdown(options=names, value=second, description="y task")
        last = max(0, len(self.candidates) - 1)
        self.pick = ipw.BoundedIntText(0, min=0, max=last, description="candidate")
        self.open_button = ipw.Button(description="open in MergeBuilder", icon="external-link",
                                      disabled=lab is None)
        self.status = ipw.HTML()
        self.builder_box = ipw.VBox()
        self.x_task.observe(lambda _c: self._draw_front(), "value")
        self.y_task.observe(lambda _c: self._draw_front(), "value")
        self.open_button.on_click(lambda _b: self._open_clicked())
        super().__init__([self.status, self.progress, ipw.HBox([self.weights, self.pareto]),
                          ipw.HBox([self.x_task, self.y_task]), ipw.HBox([self.pick, self.open_button]),
                          self.builder_box])
        self.show(frame, self.candidates, "")

    # -- rendering -----------------------------------------------------------------------------
    def show(self, frame: pd.DataFrame, candidates: list | None = None, stopped_by: str = "") -> None:
        """Redraw from ``frame`` (called after each evaluation of a running search)."""
        self.frame = frame
        if candidates is not None:
            self.candidates = candidates
        progress_figure(frame, self.progress)
        weights_figure(frame, self.weights)
        names = list(dict.fromkeys(frame.task)) if len(frame) else []
        if list(self.x_task.options) != names:
            self.x_task.options, self.y_task.options = names, names
            if names:
                self.x_task.value, self.y_task.value = names[0], names[min(1, len(names) - 1)]
        self._draw_front()
        n = len(wide(frame))
        self.pick.max = max(0, n - 1)
        best = f", best {wide(frame).objective.max():.3f}" if n else ""
        state = f" · stopped: {stopped_by}" if stopped_by else (" · running…" if self.run else "")
        self.status.value = f"<b>{n}</b> evaluations{best}{state}"

    def _draw_front(self) -> None:
        if self.x_task.value and self.y_task.value:
            pareto_figure(self.frame, self.x_task.value, self.y_task.value, self.pareto)

    # -- opening a candidate -------------------------------------------------------------------------
    def open_candidate(self, candidate: int, **builder_options):
        """A ``MergeBuilder`` on the lab with candidate ``candidate``'s method, weights and density."""
        if self.lab is None:
            raise WorkbenchError("this view has no lab: build it with SearchProgress.from_run(run, lab=lab)")
        if not 0 <= candidate < len(self.candidates):
            raise WorkbenchError(f"no candidate {candidate}; this search has {len(self.candidates)} "
                                 f"(0 to {len(self.candidates) - 1})")
        c = self.candidates[candidate]
        if c.layer_weights is not None:
            raise WorkbenchError(f"candidate {candidate} has layer-wise weights, which the MergeBuilder "
                                 "cannot set; build it with workbench.search.build(lab, names, candidate)")
        from widgets.merge_builder import MergeBuilder

        params = dict(builder_options)
        if c.density is not None:
            params.setdefault("density", c.density)
        return MergeBuilder.from_lab(self.lab, list(self.adapters), tasks=self.tasks, method=c.method,
                                     weights=dict(c.weights), **params)

    def _open_clicked(self) -> None:
        try:
            self.builder_box.children = [self.open_candidate(int(self.pick.value))]
        except WorkbenchError as e:
            self.status.value = f"<span style='color:#b00'>{e}</span>"
