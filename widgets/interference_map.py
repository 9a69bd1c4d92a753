"""InterferenceMap: where a TIES-trimmed merge of the chosen adapters fights, per module and layer, live."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import anywidget
import traitlets as t

from widgets._frontend import bundle, stylesheet
from widgets._heatmap import module_by_layer, payload
from widgets._traits import known_names
from workbench import analysis
from workbench.adapters.adapter import Adapter
from workbench.errors import WorkbenchError

METRICS = {"conflict_rate": "sign-conflict rate", "overlap": "overlap of kept entries",
           "mass_lost": "L1 mass lost to the trim"}


class InterferenceMap(anywidget.AnyWidget):
    """Module × layer heatmap of one column of ``analysis.interference``, with controls.

    Checkboxes choose the adapters to merge, sliders their weights and the trim density, a menu the
    metric. A change recomputes ``analysis.interference`` in Python (``metric`` only re-reads the
    last frame) and re-sends the map as a float32 buffer. ``status`` is ``"computing…"`` from the
    moment a control moves until the new map is sent, then ``"current"``; the view dims the map
    meanwhile, so a stale map never passes for the current one.

    Example::

        from widgets import InterferenceMap
        m = InterferenceMap(lab.adapters, density=0.2)      # sign-conflict rate by default
        m                                                   # display; use the controls
        m.active = ["topic", "language"]; m.weights = {"topic": 0.5}  # or from Python
        m.frame                                             # the frame behind the map
    """

    _esm = bundle("interference_map")
    _css = stylesheet("interference_map")

    names = t.List(t.Unicode()).tag(sync=True)
    """Every adapter on offer, in order (read-only)."""
    active = t.List(t.Unicode()).tag(sync=True)
    """The adapters in the merge (at least two for a map)."""
    weights = t.Dict(value_trait=t.Float()).tag(sync=True)
    """name -> merge weight (1 when absent)."""
    density = t.Float(0.2).tag(sync=True)
    """The fraction of entries the trim keeps, in (0, 1]."""
    metric = t.Unicode("conflict_rate").tag(sync=True)
    """The column shown: ``conflict_rate``, ``overlap`` or ``mass_lost``."""
    metric_labels = t.Dict(METRICS).tag(sync=True)
    """metric -> the label the view's menu and the map's title show (read-only; ``METRICS``)."""
    status = t.Unicode("computing…").tag(sync=True)
    """``"current"`` when ``heatmap`` matches the settings; otherwise what is going on."""
    heatmap = t.Dict().tag(sync=True)
    """The module × layer payload (see ``widgets._heatmap``); ``{}`` when fewer than two are active."""

    def __init__(
        self,
        adapters: Mapping[str, Adapter] | Iterable[Adapter],
        *,
        weights: Mapping[str, float] | Sequence[float] | None = None,
        density: float = 0.2,
        metric: str = "conflict_rate",
        active: Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        """Args:
            adapters: a mapping name -> Adapter, or a list of Adapters (at least two).
            weights: merge weights, by name or in the adapters' order (default 1 each).
            density: the kept fraction of each weighted ΔW.
            metric: one of ``conflict_rate``, ``overlap``, ``mass_lost``.
            active: the adapters checked at first (default all).
        """
        named = dict(adapters) if isinstance(adapters, Mapping) else {a.name: a for a in adapters}
        if len(named) < 2:
            raise WorkbenchError(f"InterferenceMap compares adapters; give at least two, got {list(named)}")
        if weights is not None and not isinstance(weights, Mapping):
            if len(weights) != len(named):
                raise WorkbenchError(f"{len(weights)} weights for {len(named)} adapters; "
                                     "give one per adapter or a mapping name -> weight")
            weights = dict(zip(named, weights, strict=True))
        self.adapters = named
        self.frame = None  # the last analysis.interference frame
        self._key = None  # the settings it was computed for
        self._ready = False
        super().__init__(names=list(named), weights={n: 1.0 for n in named} | dict(weights or {}),
                         active=list(named if active is None else active), density=density,
                         metric=metric, **kwargs)
        self._ready = True
        self._update()

    @t.validate("metric")
    def _check_metric(self, proposal):
        if proposal["value"] not in METRICS:
            raise t.TraitError(f"unknown metric {proposal['value']!r}; choose one of {', '.join(METRICS)}")
        return proposal["value"]

    @t.validate("density")
    def _check_density(self, proposal):
        if not 0 < proposal["value"] <= 1:
            raise t.TraitError(f"density is the kept fraction, in (0, 1]; got {proposal['value']}")
        return proposal["value"]

    @t.validate("active", "weights")
    def _check_names(self, proposal):
        return known_names(proposal, self.names)

    @t.observe("active", "weights", "density", "metric")
    def _on_change(self, change) -> None:
        if self._ready:
            self._update()

    def _update(self) -> None:
        """Recompute when the merge set, weights or density changed since the last frame; then show."""
        chosen = [n for n in self.names if n in self.active]
        w = [float(self.weights.get(n, 1.0)) for n in chosen]
        key = (tuple(chosen), tuple(w), self.density)
        if key != self._key:
            self._key, self.frame = key, None
            if len(chosen) >= 2:
                self.status = "computing…"  # sent now, before the work
                self.frame = analysis.interference({n: self.adapters[n] for n in chosen}, weights=w,
                                                   density=self.density)
        with self.hold_sync():
            if self.frame is None:
                self.heatmap, self.status = {}, "choose at least two adapters"
                return
            mix = ", ".join(f"{n}×{x:g}" for n, x in zip(chosen, w, strict=True))
            title = f"{METRICS[self.metric]} · density {self.density:g} · {mix}"
            self.heatmap = payload(module_by_layer(self.frame, self.metric), title, 0.0, 1.0, "sequential")
            self.status = "current"
