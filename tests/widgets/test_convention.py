"""Every widget follows one convention: ``from_*`` constructors, a traits-only ``__init__``, and a
``help=`` text on every synced trait (what the dashboard's twins and the docs read)."""

from __future__ import annotations

import anywidget
import ipywidgets
import pytest

import widgets
from widgets._view import View, constructors, synced
from workbench.errors import WorkbenchError

CLASSES = {n: getattr(widgets, n) for n in widgets.__all__ if isinstance(getattr(widgets, n), type)}
LIVE = {n: c for n, c in CLASSES.items() if issubclass(c, anywidget.AnyWidget)}
BOXES = {n: c for n, c in CLASSES.items() if issubclass(c, ipywidgets.Box)}


def test_every_widget_is_found():
    assert {"AngleMatrix", "MergeBuilder", "TokenRouting", "TrainingMonitor"} <= set(LIVE)
    assert {"PromptWhatIf", "PromptScaleExplorer"} <= set(BOXES)


@pytest.mark.parametrize("name", sorted(LIVE))
def test_every_synced_trait_has_help(name):
    cls = LIVE[name]
    traits = cls.class_traits()
    missing = [t for t in synced(cls) if not (traits[t].help or "").strip()]
    assert synced(cls) and not missing, f"{name}: synced traits without help=: {missing}"
    assert list(cls.trait_docs()) == synced(cls) and all(cls.trait_docs().values())


@pytest.mark.parametrize("name", sorted(LIVE) + sorted(BOXES))
def test_every_widget_has_a_from_constructor(name):
    assert constructors(CLASSES[name]), f"{name} has no from_* constructor"


@pytest.mark.parametrize("name", sorted(LIVE))
def test_init_takes_traits_only(name):
    cls = LIVE[name]
    assert issubclass(cls, View)
    with pytest.raises(WorkbenchError, match=r"keywords only.*\.from_"):
        cls(object())
