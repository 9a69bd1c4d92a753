"""MergeModel: the merge builder's state and logic in plain Python (no traitlets, no browser).

Settings in, previews out. A view (``widgets.MergeBuilder``) or a test sets the settings with
``update(...)`` and presses the buttons with ``evaluate()``, ``commit()``, ``export()``; the model calls
the engine and announces every field it changes to its listeners as one dict per moment::

    m = MergeModel(lab, ["arith", "topic"], tasks=tasks)
    m.subscribe(print)                       # {"status": "computing…"}, then the previews in one dict
    m.update(method="ties", params={"density": 0.4}, request=1)
    m.error_map, m.status, m.answered        # the same values, as attributes
    m.evaluate(); m.commit("mine"); m.export("out/mine")

What the engine computes: ``workbench.merging.merge`` (the merge and its per-module error against the
exact Σ wᵢΔWᵢ), ``analysis.angles`` and ``analysis.interference`` (the weighted sources at the method's
density, or at ``TRIM`` for a method without one), ``workbench.evaluation.against_solo`` (the quick
evaluation: scores, solo adapters, normalized), ``Workbench.merge`` and ``save_adapter``.

Request numbers: a view numbers the settings it sends (``request``); the answer carries ``answered`` =
the request it belongs to, so a view can dim what is behind. The slow interference frame is cached by
sources, weights and density; the angles by sources; whole previews by settings (the last ``KEPT``, so a
slider moved back is answered at once); solo scores by (adapter, task, limit). Scores carry the settings
they were computed for: ``eval_status`` turns ``"stale: …"`` when the settings move.

In the background (``background=True``, what ``MergeBuilder`` uses in a notebook): the previews are
computed on one worker thread (``widgets._latest.Latest``), off the kernel's main thread, so the notebook
answers while they compute. A newer request cancels the one computing between its steps (angles,
interference, merge, error map) and runs next. Meanwhile ``status`` is ``"computing…"``, ``computing`` the
request being computed and ``stale`` True while the previews shown belong to earlier settings; the answer
comes back on the kernel's event loop. ``wait()`` blocks until it is in (``current()``, ``evaluate``,
``commit`` and ``export`` wait themselves). ``background=False`` (the default) computes in ``update``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from widgets._interference import METRICS, check_metric
from widgets._latest import Latest, Outcome
from widgets.merge_controls import about, coerce, controls, declared, needs
from widgets.merge_previews import angles_payload, error_payload, sources_interference, summary_line
from workbench import analysis, merging
from workbench.errors import WorkbenchError
from workbench.evaluation import against_solo

SETTINGS = ("active", "weights", "method", "params", "seed")  # what the merge depends on
VIEW = ("metric", "request", "eval_limit", "name", "export_path")  # what else a view sets
OFFER = ("names", "methods", "controls", "about")  # fixed at construction
OUTPUTS = ("answered", "computing", "stale", "status", "error_map", "interference", "angles", "summary",
           "progress", "scores", "eval_status", "exported", "committed", "notice")
TRIM = 0.2  # the interference map's trim density for a method without its own (TIES' default)
KEPT = 32  # whole previews kept by settings (a merge of the ready adapters is ~1 MB)


class MergeModel:
    """An interactive merge of a lab's adapters: settings, previews, quick evaluation, commit, export.

    Args:
        lab: the ``Workbench`` whose adapters are merged (commit adds the merge to it).
        names: the adapters on offer (default: all of the lab's); all are active at first.
        tasks: ``{name: Task}`` (or a list of Tasks) for the quick evaluation.
        method: the first method; ``params`` its parameters (defaults for the rest).
        weights: merge weights, by name or in ``names``' order (default 1 each).
        seed: the seed of random methods.
        eval_limit: held-out examples per task in the quick evaluation.
        name: the name to commit under (default: ``merged``, or ``merged_2`` ... when taken).
        metric: the interference column shown (``METRICS``).
        background: compute the previews on a worker thread (see the module docstring); False: in
            ``update``, before it returns.
        threads: torch's threads in the worker (None: torch's setting); 1 keeps a preview's time steady
            when another process is busy on the machine (bench/results/merge_preview.md).
    """

    def __init__(self, lab, names: Sequence[str] | None = None, *, tasks=None, method="task_arithmetic",
                 weights: Mapping[str, float] | Sequence[float] | None = None, seed: int = 0,
                 eval_limit: int = 8, name: str | None = None, params: Mapping | None = None,
                 metric: str = "conflict_rate", background: bool = False, threads: int | None = 1) -> None:
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
        self.lab = lab
        self.tasks = dict(tasks) if isinstance(tasks, Mapping) else {x.name: x for x in (tasks or [])}
        plugins = {m: merging.MERGES.info(m) for m in merging.MERGES.names()}
        needed = {m: needs(p) for m, p in plugins.items()}
        self.names, self.methods = offered, [m for m in plugins if not needed[m]]
        if method not in self.methods:
            why = f" ({method} needs {', '.join(needed[method])}: call lab.merge for it)" \
                if needed.get(method) else ""
            raise WorkbenchError(f"MergeBuilder(method={method!r}): choose one of "
                                 f"{', '.join(self.methods)}{why}")
        self.controls = {m: controls(declared(m)) for m in self.methods}
        self.about = {m: about(plugins[m]) for m in self.methods}
        # the settings
        self.active, self.method, self.seed = list(offered), method, int(seed)
        self.weights = self.check_weights({n: 1.0 for n in offered} | dict(weights or {}))
        self.params = self.check_params(dict(params or {}), method)
        self.metric, self.request, self.eval_limit = check_metric(metric), 0, int(eval_limit)
        self.name, self.export_path = name or self._free_name("merged"), ""
        # the outputs
        self.answered, self.status, self.summary = -1, "computing…", ""
        self.computing, self.stale = 0, False  # the request being computed (-1: none); previews behind
        self.error_map, self.interference, self.angles, self.scores = {}, {}, {}, {}
        self.progress = {"done": 0, "total": 0, "label": ""}
        self.eval_status, self.exported, self.committed, self.notice = "not run", "", [], ""
        self.result = None  # the MergeResult of the current settings
        self.scores_frame = None  # the last quick evaluation (DataFrame)
        self._key = self._scores_key = self._error = self._frame = None
        self._cache: dict = {}  # angles by sources, interference by (sources, weights, density)
        self._previews: dict = {}  # settings key -> (result, frame, error, outputs), the last KEPT
        self._worker = Latest(threads, name="merge-preview") if background else None
        self._applied = 0  # the worker generation whose answer is shown
        self._lock = threading.RLock()  # a worker without an event loop delivers on its own thread
        self._solo: dict = {}  # (adapter, task, limit) -> score
        self._committed_keys: dict = {}  # settings key -> name of the committed adapter
        self._listeners: list[Callable[[dict], None]] = []
        self._refresh()

    # -- observing -----------------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[dict], None]) -> None:
        """Call ``listener({field: value, ...})`` with the fields that change together, as they change."""
        self._listeners.append(listener)

    def state(self) -> dict:
        """Every field a view mirrors: the offer, the settings and the outputs."""
        return {k: getattr(self, k) for k in (*OFFER, *SETTINGS, *VIEW, *OUTPUTS)}

    def _emit(self, **fields) -> None:
        for k, v in fields.items():
            setattr(self, k, v)
        for listener in self._listeners:
            listener(fields)

    # -- checks (a view calls them to refuse a value before it is set) --------------------------------
    def check_method(self, method: str) -> str:
        if method not in self.methods:
            raise WorkbenchError(f"unknown method {method!r}; choose one of {', '.join(self.methods)}")
        return method

    def check_params(self, values: Mapping, method: str | None = None, *, strict: bool = True) -> dict:
        """``values`` typed and completed for ``method`` (default the current one); unknown keys refused
        (``strict``) or dropped (a method change keeps the parameters the new method shares)."""
        specs = self.controls[self.check_method(method or self.method)]
        unknown = sorted(set(values) - {s["name"] for s in specs})
        if unknown and strict:
            raise WorkbenchError(f"{method or self.method} takes no parameter {unknown}; it takes "
                                 f"{[s['name'] for s in specs] or 'none'}")
        return coerce(specs, values)

    def check_names(self, names) -> list | dict:
        """``names`` (a list, or a dict's keys) must all be on offer."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise WorkbenchError(f"unknown adapters {unknown}; known: {self.names}")
        return names

    def check_weights(self, weights: Mapping) -> dict:
        return {n: float(x) for n, x in self.check_names(dict(weights)).items()}

    # -- settings -> previews --------------------------------------------------------------------------
    @property
    def chosen(self) -> list[str]:
        """The active sources in offer order."""
        return [n for n in self.names if n in self.active]

    def key(self) -> tuple:
        """What the merge depends on: (sources, weights, method, params, seed)."""
        chosen = self.chosen
        w = tuple(float(self.weights.get(n, 1.0)) for n in chosen)
        return (tuple(chosen), w, self.method, tuple(sorted(self.params.items())), self.seed)

    def update(self, **changes) -> None:
        """Set any of ``SETTINGS`` and ``VIEW``; recompute what they change and answer ``request``.

        A method change keeps the parameters the new method shares and fills its defaults for the rest.

        Raises:
            WorkbenchError: an unknown field, method, adapter, metric or parameter (nothing changes then).
        """
        unknown = sorted(set(changes) - {*SETTINGS, *VIEW})
        if unknown:
            raise WorkbenchError(f"MergeModel.update: no setting {unknown}; settings: {[*SETTINGS, *VIEW]}")
        new = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if not new:
            return
        method = self.check_method(new.get("method", self.method))
        if "active" in new:
            new["active"] = list(self.check_names(new["active"]))
        if "weights" in new:
            new["weights"] = self.check_weights(new["weights"])
        if "metric" in new:
            check_metric(new["metric"])
        if "params" in new or "method" in new:
            new["params"] = self.check_params(new.get("params", self.params), method, strict="params" in new)
        for k, v in new.items():
            setattr(self, k, v)
        if {*SETTINGS, "metric", "request"} & set(new):
            self._refresh()

    def _refresh(self) -> None:
        """Recompute what the settings changed (nothing when they did not), then answer the request."""
        with self._lock:
            key = self.key()
            if key == self._key:  # a metric or a request number: answered now, or with the pending answer
                if not self.busy:
                    self._answer({})
                return
            self._key = key
            if key in self._previews:  # seen before: answered at once, whatever computes is dropped
                if self._worker is not None:
                    self._worker.cancel()
                    self._applied = self._worker.generation
                self._show(key, self._previews[key])
            elif self._worker is None:
                self._emit(status="computing…")  # on its own, before the work
                self._show(*self._outcome(key, None))
            else:
                self._emit(status="computing…", computing=self.request, stale=self.answered >= 0)
                self._worker.submit(lambda check: self._outcome(key, check), self._deliver)

    @property
    def busy(self) -> bool:
        """A preview is computing in the background (the previews shown are for earlier settings)."""
        return self._worker is not None and self._applied != self._worker.generation

    def wait(self, timeout: float | None = None) -> None:
        """Block until the previews of the current settings are in (nothing to do without a worker).

        Raises:
            Exception: what the computation raised that is not a ``WorkbenchError`` (a bug: its traceback).
        """
        if self._worker is not None and self.busy:
            self._worker.wait(self._deliver, timeout)

    def close(self) -> None:
        """Stop the background worker (pending previews are dropped)."""
        if self._worker is not None:
            self._worker.close()

    def _deliver(self, outcome: Outcome) -> None:
        """The worker's answer, on the kernel's loop (or in ``wait``): shown if still the latest, once."""
        with self._lock:
            if outcome.generation != self._worker.generation or outcome.generation == self._applied:
                return
            self._applied = outcome.generation
            if outcome.error is not None:  # a bug, not a refusal: said in the view, raised by wait()
                self._emit(status=f"error: {outcome.error!r}", computing=-1, answered=self.request)
                raise outcome.error
            self._show(*outcome.value)

    def _outcome(self, key: tuple, check) -> tuple:
        """``(key, (result, frame, error, outputs))`` of the settings ``key``; stops at ``check()``."""
        try:
            result, frame, out = self._compute(key, check or (lambda: None))
            return key, (result, frame, None, out)
        except WorkbenchError as e:  # an unknown name is one too (UnknownNameError)
            return key, (None, None, str(e), {"error_map": {}, "summary": ""})

    def _show(self, key: tuple, shown: tuple) -> None:
        """Show the previews ``shown`` of ``key`` (the current settings) and keep them for a return."""
        self._previews.pop(key, None)
        self._previews[key] = shown  # the most recent last
        while len(self._previews) > KEPT:
            self._previews.pop(next(iter(self._previews)))
        self.result, self._frame, self._error, out = shown
        self._answer(dict(out))

    def _answer(self, out: dict) -> None:
        key = self._key
        out["interference"] = self._draw_interference()
        if self._error is not None:
            out.update(error_map={}, summary="", status=f"error: {self._error}")
        else:
            out["status"] = "current" if key[0] else "choose at least one adapter"
        if self._scores_key is not None:
            out["eval_status"] = ("current" if self._scores_key == key
                                  else "stale: the settings changed since; evaluate again")
        self._emit(**out, params=self.params, answered=self.request, computing=-1, stale=False)

    def _compute(self, key: tuple, check) -> tuple:
        """The previews of ``key``: ``(MergeResult, (interference frame, density), outputs)``; ``check()``
        between the steps raises ``Cancelled`` when newer settings came (nothing of this is kept then)."""
        chosen, w, method, params, seed = key
        if not chosen:
            return None, None, {"error_map": {}, "angles": {}, "summary": ""}
        sources = {n: self.lab.adapters[n] for n in chosen}
        out = {"angles": self._angles(chosen, sources)}
        check()
        density = float(dict(params).get("density") or TRIM)
        frame = None
        if len(chosen) >= 2:
            k = ("interference", chosen, w, density)
            if k not in self._cache:
                self._cache[k] = analysis.interference(sources, weights=list(w), density=density)
            frame = (self._cache[k], density)
        check()
        result = merging.merge(list(sources.values()), method, list(w), name=self._preview_name(),
                               seed=seed, **dict(params))
        check()
        out["error_map"] = error_payload(result, method, params)
        out["summary"] = summary_line(result, method, chosen, w)
        return result, frame, out

    def _angles(self, chosen: tuple, sources: dict) -> dict:
        if len(chosen) < 2:
            return {}
        if ("angles", chosen) not in self._cache:
            self._cache["angles", chosen] = angles_payload(analysis.angles(sources), chosen)
        return self._cache["angles", chosen]

    def _draw_interference(self) -> dict:
        if self._frame is None:
            return {}
        frame, density = self._frame
        return sources_interference(frame, self.metric, density)

    def _preview_name(self) -> str:
        return self.name if self.name.isidentifier() else "merged"

    def _free_name(self, stem: str) -> str:
        taken = set(self.lab.adapters) | {"base"}
        if stem not in taken:
            return stem
        return next(f"{stem}_{i}" for i in range(2, 10_000) if f"{stem}_{i}" not in taken)

    def current(self):
        """The MergeResult of the current settings, or the error that they do not merge."""
        if self._key != self.key():
            self._refresh()
        self.wait()
        if self.result is None:
            raise WorkbenchError(f"the current settings give no merge ({self.status}); change them first")
        return self.result

    # -- actions -----------------------------------------------------------------------------------------
    def evaluate(self):
        """Score the merge and each task's own adapter on ``eval_limit`` held-out examples per task.

        Returns:
            ``workbench.evaluation.against_solo``'s frame: ``task, metric, higher_is_better, merged,
            solo_adapter, solo, normalized`` (merged ÷ solo, solo ÷ merged for a loss). Also in
            ``scores`` (for a view) and ``scores_frame``.
        """
        if not self.tasks:
            raise WorkbenchError("this builder has no tasks to evaluate on; pass "
                                 "tasks=wb.tasks.load([...]) to MergeBuilder")
        result, key = self.current(), self._key
        self._emit(eval_status="evaluating…")
        try:
            frame = against_solo(self.lab, result.adapter, self.chosen, self.tasks, limit=self.eval_limit,
                                 cache=self._solo, progress=self._progress)
        except Exception:
            self._emit(eval_status="failed (see the error in the notebook)")
            raise
        self.scores_frame, self._scores_key = frame, key
        clean = frame.astype(object).where(frame.notna(), None)  # NaN is not JSON
        self._emit(scores={"rows": clean.to_dict("records"), "request": self.answered,
                           "limit": self.eval_limit}, eval_status="current")
        return frame

    def _progress(self, done: int, total: int, label: str) -> None:
        self._emit(progress={"done": done, "total": total, "label": label})

    def commit(self, name: str | None = None):
        """Add the merge with the current settings to the lab (``lab.merge``); returns the new adapter."""
        name = name or self.name
        self.current()
        chosen, w, method, params, seed = self._key
        adapter = self.lab.merge(list(chosen), method=method, weights=list(w), name=name, seed=seed,
                                 **dict(params))
        self._committed_keys[self._key] = adapter.name
        self._emit(committed=[*self.committed, adapter.name],
                   notice=f"added {adapter.name!r} to the lab: {self.summary}",
                   name=self._free_name(name.rstrip("0123456789_") or "merged"))
        return adapter

    def export(self, path: str | Path | None = None, *, overwrite: bool = False) -> Path:
        """Write the merge with the current settings as a PEFT directory (lineage inside); returns where.

        The adapter committed with these settings is written if there is one, else the preview under
        ``name`` (it is not added to the lab). Default path: ``merged_adapters/<name>``.
        """
        result = self.current()
        name = self._committed_keys.get(self._key)
        adapter = name if name is not None else result.adapter.copy(name=self._preview_name())
        label = name or self._preview_name()
        target = Path(path or self.export_path or Path("merged_adapters") / label)
        written = Path(self.lab.save_adapter(adapter, target, overwrite=overwrite)).resolve()
        self._emit(exported=str(written),
                   notice=f"wrote {label!r} ({self.method}) as a PEFT directory to {written}")
        return written

    ACTIONS = ("evaluate", "commit", "export")

    def act(self, action: str) -> None:
        """A button of the view: run ``action``; a refusal (WorkbenchError) becomes the ``notice``."""
        if action not in self.ACTIONS:
            return
        try:
            getattr(self, action)()
        except WorkbenchError as e:
            self._emit(notice=f"{action} failed: {e}")


__all__ = ["METRICS", "OFFER", "OUTPUTS", "SETTINGS", "TRIM", "VIEW", "MergeModel"]
