"""MergeBuilder: pick adapters, a merge method and its parameters, watch the merge's previews, commit it.

The widget only renders and forwards the user's intent; this controller calls the engine:
``workbench.merging.merge`` for the merge and its per-module error, ``workbench.analysis`` for the
interference map and the angle matrix, ``Workbench.evaluate`` for the quick scores, ``Workbench.merge``
and ``Workbench.save_adapter`` for commit and export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import anywidget
import numpy as np
import pandas as pd
import traitlets as t

from widgets._frontend import bundle, stylesheet
from widgets._heatmap import module_by_layer, payload
from widgets._merge_controls import coerce, controls
from widgets._merge_eval import quick_scores
from widgets._traits import known_names
from widgets.interference_map import METRICS as INTERFERENCE_METRICS
from workbench import analysis, merging
from workbench.adapters.adapter import Adapter
from workbench.errors import WorkbenchError

SETTINGS = ("active", "weights", "method", "params", "seed")
TRIM = 0.2  # the interference map's trim density for a method without its own (TIES' default)


class MergeBuilder(anywidget.AnyWidget):
    """An interactive merge of a lab's adapters with live previews, a quick evaluation, commit and export.

    Controls (sources with weights, method, the method's parameters generated from
    ``merging.method_params``, seed) set the traits below; every change recomputes the previews in
    Python: the reconstruction error of the merge per module and layer (``MergeResult.error``, the
    relative Frobenius error against the exact Σ wᵢΔWᵢ), the interference map of the weighted sources
    (``analysis.interference`` at the method's density, or at TIES' 0.2 for a method without one) and
    their angle matrix (``analysis.angles``). The interference map is the slow one (dense, elementwise:
    ~10-25 s for four SmolLM2 adapters on 2 cores); it is cached by sources, weights and density, so
    a method change that keeps them is answered at the merge's own speed.

    Staleness: the view waits ~300 ms after a control moves, then sends the settings with a new
    ``request`` number (one request in flight at a time: later moves are sent when it is answered).
    Python answers with the previews and ``answered`` = the request they belong to. The view dims and
    labels every preview whose ``answered`` is behind its latest settings, so a late answer is never
    shown as current; ``status`` says ``"computing…"`` or ``"current"``. Scores of the quick evaluation
    carry the settings they were computed for and turn ``"stale"`` when the settings move on.

    Example::

        from widgets import MergeBuilder
        b = MergeBuilder(lab, tasks=wb.tasks.load(ready.NAMES), method="ties", eval_limit=8)
        b                          # display; move the controls, press "evaluate", "commit", "export"
        b.method = "dare_ties"; b.params = {"density": 0.5}    # or from Python
        b.result.total_error, b.evaluate(), b.commit("my_merge"), b.export("out/my_merge")
    """

    _esm = bundle("merge_builder")
    _css = stylesheet("merge_builder")

    # -- on offer (read-only) ------------------------------------------------------------------
    names = t.List(t.Unicode()).tag(sync=True)
    """The adapters that can be merged, in order."""
    methods = t.List(t.Unicode()).tag(sync=True)
    """The merge methods on offer: ``merging.MERGES`` but those that need more than the updates
    (``MergeMethod.needs``: ``cat_learned`` trains on data; call ``lab.merge`` for it)."""
    controls = t.Dict().tag(sync=True)
    """method -> its parameters' control specs (see ``widgets._merge_controls``)."""
    about = t.Dict().tag(sync=True)
    """method -> one line on what it does and the paper it follows."""
    # -- the settings ------------------------------------------------------------------------------
    active = t.List(t.Unicode()).tag(sync=True)
    """The source adapters in the merge."""
    weights = t.Dict(value_trait=t.Float()).tag(sync=True)
    """name -> merge weight (1 when absent)."""
    method = t.Unicode("task_arithmetic").tag(sync=True)
    """The merge method, one of ``methods``."""
    params = t.Dict().tag(sync=True)
    """The method's own parameters (all of them, defaults filled in; a method change keeps shared ones)."""
    seed = t.Int(0).tag(sync=True)
    """The seed of random methods (DARE's drops, k-means starts)."""
    metric = t.Unicode("conflict_rate").tag(sync=True)
    """The interference column shown: ``conflict_rate``, ``overlap`` or ``mass_lost``."""
    metric_labels = t.Dict(INTERFERENCE_METRICS).tag(sync=True)
    """metric -> the label the view's menu and the map's title show (read-only)."""
    request = t.Int(0).tag(sync=True)
    """The number of the latest settings; the view increments it with every change it sends."""
    # -- the previews ----------------------------------------------------------------------------
    answered = t.Int(-1).tag(sync=True)
    """The ``request`` the previews were computed for (behind ``request``: they are stale)."""
    status = t.Unicode("computing…").tag(sync=True)
    """``"current"`` when the previews match the settings; ``"computing…"``, a hint or an error otherwise."""
    error_map = t.Dict().tag(sync=True)
    """Module × layer payload of the merge's relative error per module (``{}`` when no merge)."""
    interference = t.Dict().tag(sync=True)
    """Module × layer payload of ``analysis.interference`` (``{}`` with fewer than two sources)."""
    angles = t.Dict().tag(sync=True)
    """Sources × sources payload of the task-vector cosines (``{}`` with fewer than two sources)."""
    summary = t.Unicode().tag(sync=True)
    """One line on the merge: method, rank, parameters, total relative error."""
    # -- quick evaluation --------------------------------------------------------------------------
    eval_limit = t.Int(8).tag(sync=True)
    """Held-out examples per task in the quick evaluation."""
    progress = t.Dict({"done": 0, "total": 0, "label": ""}).tag(sync=True)
    """``{done, total, label}`` of the running (or last) evaluation."""
    scores = t.Dict().tag(sync=True)
    """``{"rows": [{task, metric, merged, solo_adapter, solo, normalized}], "request", "limit"}``."""
    eval_status = t.Unicode("not run").tag(sync=True)
    """``"not run"``, ``"evaluating…"``, ``"current"`` or ``"stale: …"`` (settings moved since)."""
    # -- commit and export -------------------------------------------------------------------------
    name = t.Unicode("merged").tag(sync=True)
    """The name of the adapter that "commit" adds to the lab (and "export" writes)."""
    export_path = t.Unicode("").tag(sync=True)
    """Where "export" writes the PEFT directory (default ``merged_adapters/<name>``)."""
    exported = t.Unicode("").tag(sync=True)
    """The absolute path of the last export."""
    committed = t.List(t.Unicode()).tag(sync=True)
    """The adapters this builder added to the lab."""
    notice = t.Unicode("").tag(sync=True)
    """The outcome of the last action (or its error, with the fix)."""

    def __init__(self, lab, names: Sequence[str] | None = None, *, tasks=None,
                 method: str = "task_arithmetic",
                 weights: Mapping[str, float] | Sequence[float] | None = None,
                 seed: int = 0, eval_limit: int = 8, name: str | None = None, **params) -> None:
        """Args:
            lab: the ``Workbench`` whose adapters are merged (commit adds the merge to it).
            names: the adapters on offer (default: all of the lab's); all are active at first.
            tasks: ``{name: Task}`` (what ``tasks.load`` returns) for the quick evaluation; each task
                is scored with the merge and with its own adapter (the source trained on it).
            method: the first method; ``params`` its parameters (defaults for the rest).
            weights: merge weights, by name or in ``names``' order (default 1 each).
            seed: the seed of random methods.
            eval_limit: examples per task in the quick evaluation.
            name: the name to commit under (default: ``merged``, or ``merged_2`` ... when taken).
        """
        offered = list(lab.adapters) if names is None else list(names)
        missing = [n for n in offered if n not in lab.adapters]
        if missing or not offered:
            raise WorkbenchError(f"MergeBuilder merges adapters of the lab; {missing or 'none'} given "
                                 f"but the lab has {list(lab.adapters) or '(none)'}")
        if weights is not None and not isinstance(weights, Mapping):
            if len(weights) != len(offered):
                raise WorkbenchError(f"{len(weights)} weights for {len(offered)} adapters; "
                                     "give one per adapter or a mapping name -> weight")
            weights = dict(zip(offered, weights, strict=True))
        specs = {m: merging.MERGES.get(m) for m in merging.MERGES.names()}
        methods = [m for m, spec in specs.items() if not spec.needs]
        if method not in methods:
            needs = f" ({method} needs {', '.join(specs[method].needs)}: call lab.merge for it)" \
                if method in specs else ""
            raise WorkbenchError(f"MergeBuilder(method={method!r}): choose one of "
                                 f"{', '.join(methods)}{needs}")
        self.lab = lab
        self.tasks = dict(tasks) if isinstance(tasks, Mapping) else {x.name: x for x in (tasks or [])}
        self.result = None  # the MergeResult of the current settings
        self.scores_frame: pd.DataFrame | None = None  # the last quick evaluation
        self._key = self._scores_key = self._error = None
        self._cache: dict = {}  # angles by sources, interference by (sources, weights, density)
        self._solo: dict = {}  # (adapter, task, limit) -> score
        self._committed_keys: dict = {}  # settings key -> name of the committed adapter
        self._frame = None  # (interference frame, density) of the current sources
        self._ready = False
        self._quiet = False
        super().__init__(
            names=offered, methods=methods,
            controls={m: controls(merging.method_params(m), specs[m].choices) for m in methods},
            about={m: f"{specs[m].summary} Reference: {specs[m].reference}" for m in methods},
            active=offered, weights={n: 1.0 for n in offered} | dict(weights or {}), method=method,
            seed=seed, eval_limit=eval_limit, name=name or self._free_name("merged"))
        self.params = dict(params)  # validated against the method: unknown keys are an error here
        self._ready = True
        self._refresh()
        self.on_msg(self._on_message)

    # -- validation ------------------------------------------------------------------------------
    @t.validate("method")
    def _check_method(self, proposal):
        if proposal["value"] not in self.methods:
            raise t.TraitError(f"unknown method {proposal['value']!r}; "
                               f"choose one of {', '.join(self.methods)}")
        return proposal["value"]

    @t.validate("params")
    def _check_params(self, proposal):
        specs = self.controls.get(self.method, [])
        unknown = sorted(set(proposal["value"]) - {s["name"] for s in specs})
        if unknown and not self._quiet:
            raise t.TraitError(f"{self.method} takes no parameter {unknown}; it takes "
                               f"{[s['name'] for s in specs] or 'none'}")
        try:
            return coerce(specs, proposal["value"])
        except WorkbenchError as e:
            raise t.TraitError(str(e)) from None

    @t.validate("active", "weights")
    def _check_names(self, proposal):
        return known_names(proposal, self.names)

    @t.validate("metric")
    def _check_metric(self, proposal):
        if proposal["value"] not in INTERFERENCE_METRICS:
            raise t.TraitError(f"unknown metric {proposal['value']!r}; choose one of "
                               f"{', '.join(INTERFERENCE_METRICS)}")
        return proposal["value"]

    # -- settings -> previews ----------------------------------------------------------------------
    @property
    def chosen(self) -> list[str]:
        """The active sources in offer order."""
        return [n for n in self.names if n in self.active]

    def _settings(self) -> tuple:
        chosen = self.chosen
        w = tuple(float(self.weights.get(n, 1.0)) for n in chosen)
        return (tuple(chosen), w, self.method, tuple(sorted(self.params.items())), self.seed)

    @t.observe(*SETTINGS, "request", "metric")
    def _on_settings(self, change) -> None:
        if change["name"] == "method":  # the new method's parameters: shared ones kept, defaults filled
            self._quiet = True
            try:
                self.params = dict(self.params)
            finally:
                self._quiet = False
        if self._ready and not self._quiet:
            self._refresh()

    def _refresh(self) -> None:
        """Recompute what the settings changed (nothing when they did not), then answer the request."""
        key = self._settings()
        changed = key != self._key
        if changed:
            self.status = "computing…"  # sent now, before the work
        with self.hold_sync():  # the previews and the answer go out in one message
            if changed:
                self._key, self.result, self._error = key, None, None
                try:
                    self._compute(key)
                except WorkbenchError as e:  # an unknown name is one too (UnknownNameError)
                    self._error = str(e)
            self._draw_interference()
            if self._error is not None:
                self.error_map, self.summary, self.status = {}, "", f"error: {self._error}"
            elif not key[0]:
                self.status = "choose at least one adapter"
            else:
                self.status = "current"
            if self._scores_key is not None:
                self.eval_status = ("current" if self._scores_key == key
                                    else "stale: the settings changed since; evaluate again")
            self.answered = self.request

    def _compute(self, key: tuple) -> None:
        chosen, w, method, params, seed = key
        self._frame = None
        if not chosen:
            self.error_map = self.angles = self.interference = {}
            self.summary = ""
            return
        sources = {n: self.lab.adapters[n] for n in chosen}
        self.angles = self._angles(chosen, sources)
        density = float(dict(params).get("density") or TRIM)
        self._frame = self._interference(chosen, w, density, sources)
        self.result = merging.merge(list(sources.values()), method, list(w), name=self._preview_name(),
                                    seed=seed, **dict(params))
        err = self.result.error
        table = module_by_layer(err, "value")
        hi = float(np.nanmax(table.to_numpy(dtype=float))) if table.size else 1.0
        shown = ", ".join(f"{k}={v}" for k, v in params)
        self.error_map = payload(table, f"relative error vs Σ wᵢΔWᵢ per module · {method}"
                                 + (f" ({shown})" if shown else ""), 0.0, hi if hi > 0 else 1.0,
                                 "sequential")
        ranks = sorted(set(self.result.adapter.ranks.values()))
        rank = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}–{ranks[-1]}"
        self.summary = (f"{method} of {', '.join(f'{n}×{x:g}' for n, x in zip(chosen, w, strict=True))}: "
                        f"rank {rank}, {self.result.adapter.num_parameters():,} parameters, total relative "
                        f"error {self.result.total_error:.3g}")

    def _angles(self, chosen: tuple, sources: dict) -> dict:
        if len(chosen) < 2:
            return {}
        if ("angles", chosen) not in self._cache:
            frame = analysis.angles(sources)
            table = frame.pivot(index="adapter_a", columns="adapter_b", values="cosine").loc[chosen, chosen]
            off = table.to_numpy()[~np.eye(len(chosen), dtype=bool)]
            spread = float(np.abs(off).max()) if off.size and np.abs(off).max() > 0 else 1.0
            self._cache["angles", chosen] = payload(table, "cosine between the sources' ΔW", -spread, spread)
        return self._cache["angles", chosen]

    def _interference(self, chosen: tuple, w: tuple, density: float, sources: dict):
        if len(chosen) < 2:
            return None
        k = ("interference", chosen, w, density)
        if k not in self._cache:
            self._cache[k] = (analysis.interference(sources, weights=list(w), density=density), density)
        return self._cache[k]

    def _draw_interference(self) -> None:
        if self._frame is None:
            self.interference = {}
            return
        frame, density = self._frame
        title = f"{INTERFERENCE_METRICS[self.metric]} of the weighted sources · trim density {density:g}"
        self.interference = payload(module_by_layer(frame, self.metric), title, 0.0, 1.0, "sequential")

    def _preview_name(self) -> str:
        return self.name if self.name.isidentifier() else "merged"

    def _free_name(self, stem: str) -> str:
        taken = set(self.lab.adapters) | {"base"}
        if stem not in taken:
            return stem
        return next(f"{stem}_{i}" for i in range(2, 10_000) if f"{stem}_{i}" not in taken)

    def _current(self):
        """The MergeResult of the current settings, or the error that they do not merge."""
        if self._key != self._settings():
            self._refresh()
        if self.result is None:
            raise WorkbenchError(f"the current settings give no merge ({self.status}); change them first")
        return self.result

    # -- actions -----------------------------------------------------------------------------------
    def evaluate(self) -> pd.DataFrame:
        """Score the merge and each task's own adapter on ``eval_limit`` held-out examples per task.

        Returns:
            DataFrame ``task, metric, higher_is_better, merged, solo_adapter, solo, normalized`` where
            ``normalized`` is merged ÷ solo (solo ÷ merged for a loss): 1 means the merge keeps the
            solo adapter's score. Also in ``scores`` (for the view) and ``scores_frame``.
        """
        if not self.tasks:
            raise WorkbenchError("this builder has no tasks to evaluate on; pass "
                                 "tasks=wb.tasks.load([...]) to MergeBuilder")
        result, key = self._current(), self._key
        self.eval_status = "evaluating…"
        try:
            frame = quick_scores(self.lab, result.adapter, list(self.chosen), self.tasks, self.eval_limit,
                                 self._solo, self._set_progress)
        except Exception:
            self.eval_status = "failed (see the error in the notebook)"
            raise
        self.scores_frame, self._scores_key = frame, key
        clean = frame.astype(object).where(frame.notna(), None)  # NaN is not JSON
        with self.hold_sync():
            self.scores = {"rows": clean.to_dict("records"), "request": self.answered,
                           "limit": self.eval_limit}
            self.eval_status = "current"
        return frame

    def _set_progress(self, done: int, total: int, label: str) -> None:
        self.progress = {"done": done, "total": total, "label": label}

    def commit(self, name: str | None = None) -> Adapter:
        """Add the merge with the current settings to the lab (``lab.merge``); returns the new adapter."""
        name = name or self.name
        self._current()
        chosen, w, method, params, seed = self._key
        adapter = self.lab.merge(list(chosen), method=method, weights=list(w), name=name, seed=seed,
                                 **dict(params))
        self._committed_keys[self._key] = adapter.name
        with self.hold_sync():
            self.committed = [*self.committed, adapter.name]
            self.notice = f"added {adapter.name!r} to the lab: {self.summary}"
            self.name = self._free_name(name.rstrip("0123456789_") or "merged")
        return adapter

    def export(self, path: str | Path | None = None, *, overwrite: bool = False) -> Path:
        """Write the merge with the current settings as a PEFT directory (lineage inside); returns where.

        The adapter committed with these settings is written if there is one, else the preview under
        ``name`` (it is not added to the lab). Default path: ``merged_adapters/<name>``.
        """
        result = self._current()
        name = self._committed_keys.get(self._key)
        adapter = name if name is not None else result.adapter.copy(name=self._preview_name())
        label = name or self._preview_name()
        target = Path(path or self.export_path or Path("merged_adapters") / label)
        written = Path(self.lab.save_adapter(adapter, target, overwrite=overwrite)).resolve()
        with self.hold_sync():
            self.exported = str(written)
            self.notice = f"wrote {label!r} ({self.method}) as a PEFT directory to {written}"
        return written

    def _on_message(self, _widget, content, _buffers) -> None:
        """The view's buttons: ``{"action": "evaluate" | "commit" | "export"}``."""
        actions = {"evaluate": self.evaluate, "commit": self.commit, "export": self.export}
        action = actions.get(content.get("action"))
        if action is None:
            return
        try:
            action()
        except WorkbenchError as e:
            self.notice = f"{content['action']} failed: {e}"

