"""Chooser: the base of views that show one heatmap among several, picked with buttons in the view."""

from __future__ import annotations

import pandas as pd
import traitlets as t

from widgets._frontend import bundle, stylesheet
from widgets._heatmap import payload
from widgets._view import View


class Chooser(View):
    """Subclasses set ``choices`` and implement ``table(choice) -> (frame, title, lo, hi, scale)``.

    A click on a button sets ``choice``; the observer answers with ``heatmap`` (tagged with the
    choice, so the view dims a map computed for an earlier click). A click on a cell sets
    ``selected`` ``[row, col]`` and ``describe`` fills ``detail``. Subclasses that set ``options``
    get a select beside the buttons: it sets ``option`` (a second choice, e.g. the layer), which
    ``table`` reads as ``self.option``; the heatmap is redrawn (and tagged) for it too.
    """

    _esm = bundle("chooser")
    _css = stylesheet("chooser")

    choices = t.List(t.Unicode(), help="The buttons: what can be shown (tasks, modules ...).").tag(sync=True)
    choice = t.Unicode(help="The button pressed: the heatmap shown is this choice's.").tag(sync=True)
    options = t.List(t.Unicode(), help="The select's entries (a second choice such as the layer); [] "
                     "shows no select.").tag(sync=True)
    option = t.Unicode(help="The select's entry chosen (empty when there is no select).").tag(sync=True)
    heatmap = t.Dict(help="The heatmap payload of `choice` (see widgets._heatmap), tagged with its "
                     "'choice'.").tag(sync=True)
    aside = t.Dict(help="An optional second heatmap payload beside the main one ({}: none).").tag(sync=True)
    selected = t.List(t.Unicode(), help="The clicked cell [row, col], or [].").tag(sync=True)
    detail = t.Unicode(help="One line on the clicked cell (empty when none is).").tag(sync=True)
    cell = t.Int(10, help="The side of a heatmap cell, in pixels (from 40 on, cells print their "
                 "values).").tag(sync=True)
    curve = t.Dict(help="An optional line chart under the map: {'title', 'x': [...], 'series': "
                   "{name: [...]}} ({}: none).").tag(sync=True)

    def table(self, choice: str) -> tuple[pd.DataFrame, str, float, float, str]:
        raise NotImplementedError

    def describe(self, row: str, col: str) -> str:
        return f"{row} · {col}"

    @t.validate("choice")
    def _check_choice(self, proposal):
        if proposal["value"] not in self.choices:
            raise t.TraitError(f"choice must be one of {self.choices}; got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("option")
    def _check_option(self, proposal):
        if self.options and proposal["value"] not in self.options:
            raise t.TraitError(f"option must be one of {self.options}; got {proposal['value']!r}")
        return proposal["value"]

    @t.observe("choice", "option")
    def _draw(self, _change=None) -> None:
        if self.choice not in self.choices or (self.options and self.option not in self.options):
            return  # still being built (``_apply`` sets both)
        frame, title, lo, hi, scale = self.table(self.choice)
        with self.hold_sync():  # one message: the front end never shows a new map beside an old aside
            self.selected = []
            self.redrawn()
            self.heatmap = {**payload(frame, title, lo, hi, scale), "choice": self.choice,
                            "option": self.option}

    def redrawn(self) -> None:
        """Called with each new heatmap (same message): subclasses update ``aside``, ``curve`` or ``cell``
        for the new choice and option."""

    @t.observe("selected")
    def _describe(self, _change=None) -> None:
        self.detail = self.describe(*self.selected) if len(self.selected) == 2 else ""
