"""The dashboard of ``lora-workbench serve``: a folder of adapters in a Panel app, fully offline.

The views are the notebook widgets themselves. ``twin(widget)`` wraps any anywidget of ``widgets/`` in
a ``panel.custom.AnyWidgetComponent`` that runs the same ES module in the page (the bundle of
``widgets/frontend``, whose ``host.ts`` adapts it to Panel's model); the widget object stays
the controller: a change from the page sets its trait, its observers compute in Python, and the traits
they set travel back. So the dashboard and the notebook share one front end and one Python side.

    from widgets.dashboard import Dashboard
    Dashboard.from_folder("adapters").servable()       # or: lora-workbench serve --adapters adapters

Tabs: angle matrix, interference map, merge builder (when ``widgets.merge_builder`` imports and the
adapters' base model loads), and evaluation (scores shipped beside the adapters, plus a live run).
"""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import anywidget
import pandas as pd
import panel as pn
import param
import traitlets as t
from tornado.web import RequestHandler

from workbench.adapters import read_peft
from workbench.adapters.config_checks import read_adapter_config
from workbench.adapters.files import visible_entries
from workbench.errors import WorkbenchError

# traitlets type -> param type for the twin's parameters (anything else: a plain Parameter)
PARAMS = {t.Unicode: param.String, t.Int: param.Integer, t.Float: param.Number, t.Bool: param.Boolean,
          t.List: param.List, t.Dict: param.Dict, t.Bytes: param.Bytes}
RESERVED = set(param.Parameterized.param) | set(pn.custom.AnyWidgetComponent.param)
# The two parameters through which a widget module (frontend/src/lib/host.ts) talks to a twin: Panel's
# model has no `send`, and a trait that clashes with a Panel parameter (``name``) is renamed.
MESSAGE = "lw_msg"  # the view's latest model.send(msg), as {"n": count, "msg": msg}
RENAME = "lw_rename"  # trait name -> parameter name, for the renamed traits only

_TWINS: dict[type, type] = {}


def _synced(cls: type) -> list[str]:
    """The public synced traits a widget class adds to ``anywidget.AnyWidget`` (not ``_esm``, ``_css``)."""
    base = set(anywidget.AnyWidget.class_trait_names())
    return [n for n in cls.class_trait_names(sync=True) if n not in base and not n.startswith("_")]


def _twin_class(widget: anywidget.AnyWidget) -> type:
    """A ``pn.custom.AnyWidgetComponent`` subclass: one parameter per synced trait of the widget's class.

    Its ``_esm`` is the widget's own module, as it is (the bundle adapts itself to Panel's model).
    """
    cls = type(widget)
    if cls in _TWINS:
        return _TWINS[cls]
    rename = {n: f"w_{n}" for n in _synced(cls) if n in RESERVED}
    body: dict = {}
    for n in _synced(cls):
        trait = cls.class_traits()[n]
        kind = next((p for tt, p in PARAMS.items() if isinstance(trait, tt)), param.Parameter)
        default = None if trait.default_value is t.Undefined else trait.default_value
        body[rename.get(n, n)] = kind(default=default, allow_None=default is None,
                                      doc=trait.help or f"the widget's trait {n}")
    body[MESSAGE] = param.Dict(default={}, doc="the latest model.send(...) of the view, numbered")
    body[RENAME] = param.Dict(default=rename, constant=True,
                              doc="trait -> parameter, for the traits whose names Panel reserves")
    body["_esm"] = str(widget._esm)  # the instance's: anywidget makes the class attribute a trait
    body["_stylesheets"] = [str(widget._css)] if getattr(widget, "_css", None) else []
    _TWINS[cls] = type(f"{cls.__name__}Panel", (pn.custom.AnyWidgetComponent,), body)
    return _TWINS[cls]


def deliver(widget: anywidget.AnyWidget, msg: dict) -> None:
    """Hand ``msg`` to the widget as a custom message from its front end (its ``on_msg`` callbacks run).

    It goes through the widget's comm, as a Jupyter widget message ``{"method": "custom"}`` from a
    kernel's front end would.
    """
    if widget.comm is None:
        raise WorkbenchError(f"{type(widget).__name__} is closed; it cannot receive the view's message {msg}")
    widget.comm.handle_msg({"content": {"data": {"method": "custom", "content": msg}}, "buffers": []})


def twin(widget: anywidget.AnyWidget, **layout) -> pn.custom.AnyWidgetComponent:
    """A Panel component that shows ``widget`` with its own ES module and stays in sync with it.

    Page -> widget: each parameter change sets the trait (validators and observers run as in a
    notebook); ``model.send(msg)`` from the view reaches the widget's ``on_msg`` callbacks.
    Widget -> page: each trait change sets the parameter. Equal values stop there, so nothing loops.
    Python-to-view custom messages (``widget.send``) are not carried (no view here uses them).
    """
    cls = _twin_class(widget)
    names = _synced(type(widget))
    rename = getattr(cls, RENAME)
    comp = cls(**{rename.get(n, n): getattr(widget, n) for n in names}, **layout)
    back = {v: k for k, v in rename.items()}

    def to_page(change) -> None:
        setattr(comp, rename.get(change["name"], change["name"]), change["new"])

    def to_widget(*events) -> None:
        for e in events:
            if e.name == MESSAGE:
                deliver(widget, e.new.get("msg", {}))
                continue
            try:
                setattr(widget, back.get(e.name, e.name), e.new)
            except t.TraitError as err:  # a refused value: put the page back, say why
                setattr(comp, e.name, getattr(widget, back.get(e.name, e.name)))
                if pn.state.notifications is not None:
                    pn.state.notifications.error(str(err))

    widget.observe(to_page, names=names)
    comp.param.watch(to_widget, [rename.get(n, n) for n in names] + [MESSAGE])
    comp._lw_widget = widget  # keep the controller alive as long as its view
    return comp


def adapter_dirs(folder: Path) -> list[Path]:
    """The adapter folders directly under ``folder``: hidden entries and leftovers of saves skipped."""
    return [p for p in visible_entries(folder) if (p / "adapter_config.json").is_file()]


def load_folder(folder: str | Path, skipped: dict[str, str] | None = None) -> dict:
    """name -> Adapter for every PEFT adapter directory directly under ``folder`` (sorted by name).

    A folder name that is not an identifier (``my-adapter``) becomes one (``my_adapter``). An entry
    that cannot be read is skipped and recorded in ``skipped`` (folder name -> why), when given;
    without ``skipped`` it is an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WorkbenchError(f"adapter folder {folder} does not exist; pass --adapters DIR, a folder of "
                             "PEFT adapter directories (e.g. the repository's adapters/)")
    dirs = adapter_dirs(folder)
    if not dirs:
        raise WorkbenchError(f"{folder} holds no adapter (no */adapter_config.json); pass --adapters DIR, "
                             "a folder of PEFT adapter directories")
    adapters = {}
    for p in dirs:
        name = re.sub(r"\W", "_", p.name)
        name = name if name.isidentifier() else f"adapter_{name}"
        try:
            if name in adapters:
                raise WorkbenchError(f"its name reads as {name!r}, like another folder's")
            adapters[name] = read_peft(p, name=name)
        except (WorkbenchError, OSError) as e:
            if skipped is None:
                raise
            skipped[p.name] = str(e)
    return adapters


def _base_of(folder: Path) -> str | None:
    """The base model the adapters name (``base_model_name_or_path``), if they agree on one."""
    names = set()
    for p in adapter_dirs(folder):
        try:
            names.add(read_adapter_config(p / "adapter_config.json").get("base_model_name_or_path"))
        except WorkbenchError:
            continue  # unreadable: skipped by load_folder too
    return names.pop() if len(names) == 1 else None


class Dashboard(param.Parameterized):
    """The served app: one set of adapters (and, when it loads, their base model in a Workbench)."""

    folder = param.String(doc="the folder the adapters were read from")

    def __init__(self, adapters: dict, *, lab=None, scores: pd.DataFrame | None = None, **params):
        """Args:
            adapters: name -> Adapter (at least two).
            lab: a ``Workbench`` holding them (for the merge builder and live evaluation), or None.
            scores: a frame ``adapter, task, metric, value`` shipped with them (``scores.csv``), or None.
        """
        if len(adapters) < 2:
            raise WorkbenchError(f"the dashboard compares adapters; give at least two, got {list(adapters)}")
        super().__init__(**params)
        self.adapters, self.lab, self.scores = adapters, lab, scores
        self.skipped: dict[str, str] = {}  # folder name -> why it was not loaded (shown on the page)
        self._loaded_tasks: dict = {}  # name -> Task, loaded once (every page and Evaluate click reuses them)

    @classmethod
    def from_folder(cls, folder: str | Path, *, load_base: bool = True) -> Dashboard:
        """Read the adapters of ``folder``; load their base (a zoo name) into a Workbench if possible."""
        folder = Path(folder)
        skipped: dict[str, str] = {}
        adapters = load_folder(folder, skipped)
        scores = None
        if (folder / "scores.csv").exists():
            try:
                scores = pd.read_csv(folder / "scores.csv")
                missing = {"adapter", "task", "value"} - set(scores.columns)
                if missing:
                    raise ValueError(f"it lacks the column(s) {sorted(missing)}")
            except (ValueError, OSError, UnicodeDecodeError) as e:  # pandas' parser errors are ValueErrors
                scores, skipped["scores.csv"] = None, f"not a readable table of scores ({e})"
        lab, base = None, _base_of(folder)
        if load_base and base:
            from workbench import Workbench, zoo

            if base in zoo.ZOO.names():
                lab = Workbench.from_zoo(base)
                for adapter in adapters.values():
                    lab.add_adapter(adapter)
                adapters = dict(lab.adapters)
        board = cls(adapters, lab=lab, scores=scores, folder=str(folder))
        board.skipped = skipped
        return board

    def views(self) -> dict:
        """Tab title -> Panel object."""
        from widgets import AngleMatrix, InterferenceMap

        tabs = {"Angle matrix": twin(AngleMatrix.from_adapters(self.adapters)),
                "Interference map": twin(InterferenceMap.from_adapters(self.adapters))}
        merge = self._merge_builder()
        if merge is not None:
            tabs["Merge builder"] = merge
        tabs["Evaluation"] = self._evaluation()
        tabs["Runs"] = self._runs()
        return tabs

    def _runs(self):
        """The lab's run store (``workbench.runs``): what it recorded, newest first, with a Refresh button."""
        tracker = None if self.lab is None else self.lab.tracker
        if tracker is None:
            return pn.pane.Markdown("No run store: the base model did not load, or tracking is off "
                                    "(`LORA_WORKBENCH_TRACKING=0`). Serve with tracking on to see what this "
                                    "dashboard's evaluations and merges recorded.", css_classes=["lw-runs"])
        from widgets.runs_view import runs_table

        table = pn.pane.DataFrame(None, sizing_mode="stretch_width", index=False,
                                  css_classes=["lw-runs-table"])
        status = pn.pane.Markdown(f"Store: `{tracker.uri}` (experiment `{tracker.experiment}`)",
                                  css_classes=["lw-runs"])
        refresh = pn.widgets.Button(name="Refresh", css_classes=["lw-runs-refresh"])

        def load(_event=None) -> None:
            runs = self.lab.runs()
            table.object = runs_table(runs)
            status.object = f"Store: `{tracker.uri}`: {len(runs)} runs (experiment `{tracker.experiment}`)"

        refresh.on_click(load)
        return pn.Column(status, refresh, table)

    def _merge_builder(self):
        if self.lab is None:
            return pn.pane.Markdown("The merge builder needs the adapters' base model, which did not load.")
        try:
            from widgets.merge_builder import MergeBuilder
        except ImportError as e:  # written by another issue; the dashboard works without it
            return pn.pane.Markdown(f"The merge builder is not available here ({e}).")
        names = list(self.adapters)
        return twin(MergeBuilder.from_lab(self.lab, names, tasks=self._tasks_of(names), eval_limit=4))

    def _tasks_of(self, names: list[str]) -> dict:
        """``{name: Task}`` of the registered tasks that the adapters' lineage names (in order, once)."""
        from workbench import tasks as task_registry
        from workbench.evaluation import tasks_of

        known = set(task_registry.TASKS.names())
        wanted = list(dict.fromkeys(x for n in names for x in tasks_of(self.adapters[n], self.adapters)
                                    if x in known))
        missing = [x for x in wanted if x not in self._loaded_tasks]
        if missing:
            self._loaded_tasks.update(task_registry.load(missing))
        return {x: self._loaded_tasks[x] for x in wanted}

    def _evaluation(self):
        parts = []
        if self.scores is not None:
            table = self.scores.pivot_table(index="adapter", columns="task", values="value")
            parts += [pn.pane.Markdown("**Scores shipped with the adapters** (full eval splits)"),
                      pn.pane.DataFrame(table.round(3), sizing_mode="stretch_width")]
        if self.lab is None:
            return pn.Column(*parts, pn.pane.Markdown("Live evaluation needs the base model."))
        chosen = pn.widgets.CheckButtonGroup(name="adapters", options=list(self.adapters),
                                             value=list(self.adapters)[:1])
        limit = pn.widgets.IntSlider(name="examples per task", start=4, end=64, step=4, value=8)
        run = pn.widgets.Button(name="Evaluate", button_type="primary", css_classes=["lw-evaluate"])
        status = pn.pane.Markdown("Choose adapters and press Evaluate: each is scored with the base on the "
                                  "tasks it was trained on.", css_classes=["lw-eval-status"])
        result = pn.pane.DataFrame(None, sizing_mode="stretch_width", css_classes=["lw-eval-result"])

        def evaluate(_event=None) -> None:
            names = list(chosen.value)
            tasks = self._tasks_of(names)
            if not names or not tasks:
                status.object = "Choose at least one adapter whose lineage names a known task."
                return
            status.object = f"evaluating {', '.join(names)} and the base on {', '.join(tasks)}…"
            frame = self.lab.evaluate([*names, None], tasks, limit=limit.value, progress=False)
            result.object = frame.pivot_table(index="adapter", columns="task", values="value").round(3)
            status.object = f"done: {limit.value} examples per task"

        run.on_click(evaluate)
        return pn.Column(*parts, pn.pane.Markdown("**Evaluate now**"), chosen, limit, run, status, result)

    def app(self):
        """The page: a title line and one tab per view."""
        n = len(self.adapters)
        base = f" on {self.lab.name}" if self.lab is not None else ""
        title = pn.pane.Markdown(f"# LoRA Workbench\n{n} adapters from `{self.folder}`{base}: "
                                 f"{', '.join(self.adapters)}" + skipped_note(self.skipped),
                                 css_classes=["lw-title"])
        return pn.Column(title, pn.Tabs(*self.views().items(), dynamic=False), sizing_mode="stretch_width")


def skipped_note(skipped: dict[str, str]) -> str:
    """Markdown naming the entries of the folder that were not loaded, and why ("" when none)."""
    if not skipped:
        return ""
    lines = "".join(f"\n- `{name}`: {why}" for name, why in sorted(skipped.items()))
    return f"\n\n**Skipped {len(skipped)} unreadable entr{'y' if len(skipped) == 1 else 'ies'}:**{lines}"


HEALTH = "/health"  # answers 200 once the adapters (and base) are loaded, without building a page


class _Health(RequestHandler):
    def get(self) -> None:
        self.write({"status": "ok"})


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = 5006, *, show: bool = False,
          load_base: bool = True, token: str | None = None) -> None:
    """Serve the dashboard of ``folder`` until interrupted; every page gets its own views.

    ``GET /health`` answers ``{"status": "ok"}`` cheaply (a page builds all views, which takes a while:
    probe this instead).
    """
    board = Dashboard.from_folder(folder, load_base=load_base)
    for name, why in board.skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr, flush=True)
    auth = {"basic_auth": token, "cookie_secret": secrets.token_hex(32)} if token else {}
    pn.config.inline = True  # bokeh and panel JS from this server, never from a CDN: works offline
    print(f"LoRA Workbench dashboard: http://{host}:{port}/  (Ctrl-C stops it)", flush=True)
    pn.serve({"/": board.app}, address=host, port=port, show=show, title="LoRA Workbench",
             websocket_origin=[f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"],
             threaded=False, print_url=False, extra_patterns=[(HEALTH, _Health)], **auth)
