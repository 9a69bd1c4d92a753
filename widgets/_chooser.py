"""Chooser: the base of views that show one heatmap among several, picked with buttons in the view."""

from __future__ import annotations

import anywidget
import pandas as pd
import traitlets as t

from widgets._frontend import bundle, stylesheet
from widgets._heatmap import payload


class Chooser(anywidget.AnyWidget):
    """Subclasses set ``choices`` and implement ``table(choice) -> (frame, title, lo, hi, scale)``.

    A click on a button sets ``choice``; the observer answers with ``heatmap`` (tagged with the
    choice, so the view dims a map computed for an earlier click). A click on a cell sets
    ``selected`` ``[row, col]`` and ``describe`` fills ``detail``.
    """

    _esm = bundle("chooser")
    _css = stylesheet("chooser")

    choices = t.List(t.Unicode()).tag(sync=True)
    choice = t.Unicode().tag(sync=True)
    heatmap = t.Dict().tag(sync=True)
    aside = t.Dict().tag(sync=True)
    selected = t.List(t.Unicode()).tag(sync=True)
    detail = t.Unicode().tag(sync=True)
    cell = t.Int(10).tag(sync=True)
    curve = t.Dict().tag(sync=True)
    """An optional line chart under the map: {"title", "x": [...], "series": {name: [...]}} (empty: none)."""

    def table(self, choice: str) -> tuple[pd.DataFrame, str, float, float, str]:
        raise NotImplementedError

    def describe(self, row: str, col: str) -> str:
        return f"{row} · {col}"

    @t.validate("choice")
    def _check_choice(self, proposal):
        if proposal["value"] not in self.choices:
            raise t.TraitError(f"choice must be one of {self.choices}; got {proposal['value']!r}")
        return proposal["value"]

    @t.observe("choice")
    def _draw(self, _change=None) -> None:
        frame, title, lo, hi, scale = self.table(self.choice)
        self.selected = []
        self.heatmap = {**payload(frame, title, lo, hi, scale), "choice": self.choice}

    @t.observe("selected")
    def _describe(self, _change=None) -> None:
        self.detail = self.describe(*self.selected) if len(self.selected) == 2 else ""
