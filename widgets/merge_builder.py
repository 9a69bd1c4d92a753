"""MergeBuilder: the view of a ``MergeModel``: pick adapters, a merge method and its parameters, watch
the merge's previews, evaluate, commit, export.

The view holds traits only. What the user sets (in the browser or from Python) goes to the model in
one call, ``model.update(...)`` with every setting; what the model announces is written to the traits
(one message per announcement). The logic, the engine calls and the caches live in
``widgets.merge_model`` (plain Python, tested without traitlets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import traitlets as t

from widgets._frontend import bundle, stylesheet
from widgets._interference import METRICS, check_metric
from widgets._view import View
from widgets.merge_model import SETTINGS, VIEW, MergeModel
from workbench.errors import WorkbenchError


class MergeBuilder(View):
    """An interactive merge of a lab's adapters with live previews, a quick evaluation, commit and export.

    Controls (sources with weights, method, the method's parameters built from the merge registry's
    parameter declarations, seed) set the traits below; every change recomputes the previews in Python:
    the reconstruction error of the merge per module and layer (``MergeResult.error``, the relative
    Frobenius error against the exact Σ wᵢΔWᵢ), the interference map of the weighted sources
    (``analysis.interference`` at the method's density, or at TIES' 0.2 for a method without one) and
    their angle matrix (``analysis.angles``). The interference map is the slow one; it is cached by
    sources, weights and density, so a method change that keeps them is answered at the merge's speed.

    Staleness: the view waits ~300 ms after a control moves, then sends the settings with a new
    ``request`` number, also while an earlier one computes. Python computes the previews of a gesture in
    the browser on a worker thread (``MergeModel(background=True)``): the kernel keeps answering, a newer
    request cancels the one computing, ``computing`` names the request being computed and ``stale`` says
    that the previews shown belong to earlier settings. The answer carries ``answered`` = the request it
    belongs to; the view dims and labels every preview whose ``answered`` is behind its latest settings.
    A setting assigned from Python (``b.method = "ties"``) waits for its previews, as any call in a cell
    does. Scores of the quick evaluation carry the settings they were computed for and turn ``"stale"``
    when the settings move on.

    Example::

        from widgets import MergeBuilder
        b = MergeBuilder.from_lab(lab, tasks=wb.tasks.load(ready.NAMES), method="ties", eval_limit=8)
        b                          # display; move the controls, press "evaluate", "commit", "export"
        b.method = "dare_ties"; b.params = {"density": 0.5}    # or from Python
        b.result.total_error, b.evaluate(), b.commit("my_merge"), b.export("out/my_merge")
    """

    _esm = bundle("merge_builder")
    _css = stylesheet("merge_builder")

    # -- on offer (read-only) ------------------------------------------------------------------
    names = t.List(t.Unicode(), help="The adapters that can be merged, in order.").tag(sync=True)
    methods = t.List(t.Unicode(), help="The merge methods on offer: the registry's, but those that need "
                     "more than the updates (a method that trains: call lab.merge for it).").tag(sync=True)
    controls = t.Dict(help="method -> its parameters' control specs (name, kind, default, min, max, step, "
                      "optional, choices, doc), from the registry's declarations.").tag(sync=True)
    about = t.Dict(help="method -> one line on what it does and the paper it follows.").tag(sync=True)
    # -- the settings ------------------------------------------------------------------------------
    active = t.List(t.Unicode(), help="The source adapters in the merge.").tag(sync=True)
    weights = t.Dict(value_trait=t.Float(), help="name -> merge weight (1 when absent).").tag(sync=True)
    method = t.Unicode("task_arithmetic", help="The merge method, one of `methods`.").tag(sync=True)
    params = t.Dict(help="The method's own parameters (all of them, defaults filled in; a method change "
                    "keeps the shared ones).").tag(sync=True)
    seed = t.Int(0, help="The seed of random methods (DARE's drops, k-means starts).").tag(sync=True)
    metric = t.Unicode("conflict_rate", help="The interference column shown: conflict_rate, overlap or "
                       "mass_lost.").tag(sync=True)
    metric_labels = t.Dict(METRICS, help="metric -> the label the view's menu and the map's title show "
                           "(read-only; widgets._interference.METRICS).").tag(sync=True)
    request = t.Int(0, help="The number of the latest settings; the view increments it with every change "
                    "it sends.").tag(sync=True)
    # -- the previews ----------------------------------------------------------------------------
    answered = t.Int(-1, help="The `request` the previews were computed for (behind `request`: they are "
                     "stale).").tag(sync=True)
    computing = t.Int(-1, help="The `request` whose previews are computing in the background (-1: "
                      "none).").tag(sync=True)
    stale = t.Bool(False, help="The previews shown belong to earlier settings: newer ones are "
                   "computing.").tag(sync=True)
    status = t.Unicode("computing…", help="'current' when the previews match the settings; 'computing…', "
                       "a hint or an error otherwise.").tag(sync=True)
    error_map = t.Dict(help="Module × layer heatmap payload of the merge's relative error per module "
                       "({} when no merge).").tag(sync=True)
    interference = t.Dict(help="Module × layer heatmap payload of analysis.interference ({} with fewer "
                          "than two sources).").tag(sync=True)
    angles = t.Dict(help="Sources × sources heatmap payload of the task-vector cosines ({} with fewer "
                    "than two sources).").tag(sync=True)
    summary = t.Unicode(help="One line on the merge: method, rank, parameters, total relative "
                        "error.").tag(sync=True)
    # -- quick evaluation --------------------------------------------------------------------------
    eval_limit = t.Int(8, help="Held-out examples per task in the quick evaluation.").tag(sync=True)
    progress = t.Dict({"done": 0, "total": 0, "label": ""},
                      help="{done, total, label} of the running (or last) evaluation.").tag(sync=True)
    scores = t.Dict(help="{'rows': [{task, metric, merged, solo_adapter, solo, normalized}], 'request', "
                    "'limit'} of the last quick evaluation.").tag(sync=True)
    eval_status = t.Unicode("not run", help="'not run', 'evaluating…', 'current' or 'stale: …' (the "
                            "settings moved since).").tag(sync=True)
    # -- commit and export -------------------------------------------------------------------------
    name = t.Unicode("merged", help="The name of the adapter that 'commit' adds to the lab (and 'export' "
                     "writes).").tag(sync=True)
    export_path = t.Unicode("", help="Where 'export' writes the PEFT directory (default "
                            "merged_adapters/<name>).").tag(sync=True)
    exported = t.Unicode("", help="The absolute path of the last export.").tag(sync=True)
    committed = t.List(t.Unicode(), help="The adapters this builder added to the lab.").tag(sync=True)
    notice = t.Unicode("", help="The outcome of the last action (or its error, with the fix).").tag(sync=True)

    model: MergeModel | None = None  # what the view shows (None until from_model binds one)

    @classmethod
    def from_model(cls, model: MergeModel) -> MergeBuilder:
        """The view of ``model``: every trait from its state, then one-way: the model announces, the view
        writes; what the user sets goes to ``model.update``, the buttons to ``model.act``."""
        if not isinstance(model, MergeModel):
            raise WorkbenchError(f"MergeBuilder.from_model takes a MergeModel, got {type(model).__name__}; "
                                 "or build one with MergeBuilder.from_lab(lab, names, tasks=...)")
        view = cls(**model.state())
        view.model = model
        model.subscribe(view._show)
        view.on_msg(lambda _w, content, _b: model.act(content.get("action", "")))
        return view

    @classmethod
    def from_lab(cls, lab, names: Sequence[str] | None = None, *, tasks=None, method: str = "task_arithmetic",
                 weights: Mapping[str, float] | Sequence[float] | None = None, seed: int = 0,
                 eval_limit: int = 8, name: str | None = None, background: bool = True,
                 threads: int | None = 1, **params) -> MergeBuilder:
        """A builder on ``lab``'s adapters.

        Args:
            lab: the ``Workbench`` whose adapters are merged (commit adds the merge to it).
            names: the adapters on offer (default: all of the lab's); all are active at first.
            tasks: ``{name: Task}`` (what ``tasks.load`` returns) for the quick evaluation; each task
                is scored with the merge and with its own adapter (the source trained on it).
            method: the first method; ``params`` its parameters (defaults for the rest).
            weights: merge weights, by name or in ``names``' order (default 1 each).
            seed: the seed of random methods.
            eval_limit: examples per task in the quick evaluation.
            name: the name to commit under (default: ``merged``, or ``merged_2`` ... when taken).
            background: compute the previews of a browser gesture on a worker thread (False: in the
                message handler, blocking the kernel meanwhile).
            threads: torch's threads in that worker (``MergeModel``).
        """
        model = MergeModel(lab, names, tasks=tasks, method=method, weights=weights, seed=seed,
                           eval_limit=eval_limit, name=name, params=params, background=background,
                           threads=threads)
        model.wait()  # the first previews: a call in a cell returns with them
        return cls.from_model(model)

    # -- model -> traits ---------------------------------------------------------------------------
    def _show(self, fields: dict) -> None:
        with self.hold_sync():  # what changed together travels in one message
            for k, v in fields.items():
                setattr(self, k, v)

    # -- traits -> model -------------------------------------------------------------------------------
    def _check(self, check: str, *args):
        """``model.<check>(*args)``, its refusal as a TraitError (unchecked while no model is bound)."""
        if self.model is None:  # being built from a model's state: valid by construction
            return args[0]
        try:
            return getattr(self.model, check)(*args)
        except WorkbenchError as e:
            raise t.TraitError(str(e)) from None

    @t.validate("method")
    def _check_method(self, proposal):
        return self._check("check_method", proposal["value"])

    @t.validate("params")
    def _check_params(self, proposal):
        return self._check("check_params", proposal["value"], self.method)

    @t.validate("active", "weights")
    def _check_names(self, proposal):
        return self._check("check_names", proposal["value"])

    @t.validate("metric")
    def _check_metric(self, proposal):
        try:
            return check_metric(proposal["value"])
        except ValueError as e:
            raise t.TraitError(str(e)) from None

    _from_front = False  # a state message from the browser is being applied

    def set_state(self, sync_data) -> None:
        """A message from the browser: its settings are computed in the background (no wait)."""
        self._from_front = True
        try:
            super().set_state(sync_data)
        finally:
            self._from_front = False

    @t.observe(*SETTINGS, *VIEW)
    def _forward(self, _change) -> None:
        if self.model is not None:
            self.model.update(**{k: getattr(self, k) for k in (*SETTINGS, *VIEW)})
            if not self._from_front:  # assigned in a cell: the cell sees the previews of its settings
                self.model.wait()

    # -- the model's reading and actions, here for convenience ------------------------------------------
    @property
    def lab(self):
        return self.model.lab

    @property
    def tasks(self) -> dict:
        return self.model.tasks

    @property
    def result(self):
        """The ``MergeResult`` of the current settings (None when they give no merge); waits for it."""
        self.model.wait()
        return self.model.result

    def wait(self, timeout: float | None = None) -> None:
        """``MergeModel.wait``: until the previews of the current settings are in."""
        self.model.wait(timeout)

    @property
    def scores_frame(self):
        """The last quick evaluation (a DataFrame), or None."""
        return self.model.scores_frame

    @property
    def chosen(self) -> list[str]:
        return self.model.chosen

    def evaluate(self):
        """``MergeModel.evaluate``: the quick evaluation's frame (also shown in the view)."""
        return self.model.evaluate()

    def commit(self, name: str | None = None):
        """``MergeModel.commit``: add the merge of the current settings to the lab; returns it."""
        return self.model.commit(name)

    def export(self, path: str | Path | None = None, *, overwrite: bool = False) -> Path:
        """``MergeModel.export``: write the merge of the current settings as a PEFT directory."""
        return self.model.export(path, overwrite=overwrite)
