"""The widgets load their front ends from the built bundles, and take their label tables from Python."""

from __future__ import annotations

import inspect
import re

import anywidget
import pytest
import traitlets as t

import widgets
from tests.analysis.helpers import random_adapter
from widgets import InterferenceMap, _frontend
from widgets.interference_map import METRICS
from workbench.errors import WorkbenchError


def _views() -> list[type]:
    """Every anywidget class that ``widgets`` exports, and their bases in ``widgets``."""
    found = {c for c in vars(widgets).values() if inspect.isclass(c) and issubclass(c, anywidget.AnyWidget)}
    return sorted({b for c in found for b in c.__mro__ if issubclass(b, anywidget.AnyWidget)
                   and b.__module__.startswith("widgets.") and "_esm" in vars(b)}, key=lambda c: c.__name__)


def test_every_view_runs_its_own_bundle_with_its_stylesheet():
    views = _views()
    assert len(views) >= 8, [v.__name__ for v in views]
    bundles = {p.read_text(): p.stem for p in _frontend.DIST.glob("*.js")}
    for view in views:
        esm, css = str(vars(view)["_esm"]), str(vars(view)["_css"])
        assert esm in bundles, f"{view.__name__}._esm is not one of the bundles in {_frontend.DIST}"
        assert css == (_frontend.DIST / f"{bundles[esm]}.css").read_text()
        assert "export {" in esm and ".lw-heatmap" in css  # an ES module; the shared styles imported


def test_the_metric_labels_are_one_table_sent_from_python():
    m = InterferenceMap({n: random_adapter(n, s) for s, n in enumerate(["a", "b"])})
    assert m.metric_labels == METRICS and m.get_state()["metric_labels"] == METRICS
    assert METRICS[m.metric] in m.heatmap["title"]
    for label in METRICS.values():  # no copy of the table in the views' source
        assert not any(label in p.read_text() for p in (_frontend.FRONTEND / "src").rglob("*.ts"))


def test_a_missing_bundle_names_the_build(monkeypatch, tmp_path):
    monkeypatch.setattr(_frontend, "DIST", tmp_path)
    with pytest.raises(WorkbenchError, match=r"is not built; run `make`.*npm ci && npm run build"):
        _frontend.bundle("angle_matrix")


# -- each view's TypeScript interface mirrors its widget's synced traits (names and kinds) --------------

SRC = _frontend.FRONTEND / "src"
KINDS = {t.Unicode: "string", t.Int: "number", t.Float: "number", t.Bool: "boolean", t.List: "array",
         t.Dict: "object"}
INTERFACE = re.compile(r"^export interface (\w+)(?: extends ([\w, ]+))? \{\n(.*?)^\}", re.M | re.S)
FIELD = re.compile(r"^  (\w+)\??: (.+?);$", re.M)


def _interfaces() -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (bases, field -> TypeScript type) of every exported interface in the front-end sources."""
    found = {}
    for path in SRC.rglob("*.ts"):
        for name, bases, body in INTERFACE.findall(path.read_text()):
            found[name] = ([b.strip() for b in bases.split(",") if b.strip()], dict(FIELD.findall(body)))
    return found


def _fields(name: str, interfaces: dict) -> dict[str, str]:
    bases, fields = interfaces[name]
    return {k: v for b in bases for k, v in _fields(b, interfaces).items()} | fields


def _kind(ts: str) -> str:
    ts = ts.strip()
    for prefix, kind in (("string", "string"), ("number", "number"), ("boolean", "boolean")):
        if ts == prefix:
            return kind
    return "array" if ts.endswith("[]") else "object"


@pytest.mark.parametrize("view", _views(), ids=lambda v: v.__name__)
def test_the_views_interface_mirrors_its_traits(view):
    interfaces = _interfaces()
    name = f"{view.__name__}Traits"
    assert name in interfaces, f"no `export interface {name}` in {SRC} for {view.__module__}.{view.__name__}"
    base = set(anywidget.AnyWidget.class_trait_names())
    traits = {n: view.class_traits()[n] for n in view.class_trait_names(sync=True)
              if n not in base and not n.startswith("_")}
    fields = _fields(name, interfaces)
    assert set(fields) == set(traits), f"{name} differs from {view.__name__}'s synced traits"
    for n, trait in traits.items():
        kind = next(k for tt, k in KINDS.items() if isinstance(trait, tt))
        assert _kind(fields[n]) == kind, f"{name}.{n}: {fields[n]} for a {type(trait).__name__} trait"
