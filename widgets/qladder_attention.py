"""QLadderAttention: where the QLadder queries look, rung by rung, over the image."""

from __future__ import annotations

import anywidget
import numpy as np
import traitlets as t

from widgets._frontend import bundle, stylesheet
from workbench.errors import WorkbenchError


class QLadderAttention(anywidget.AnyWidget):
    """The image beside one rung's cross-attention map (a query, or all queries averaged), upsampled.

    Build it from ``workbench.multimodal.analysis.ladder_attention(vlm, image)``::

        QLadderAttention.from_arrays(image, ladder_attention(vlm, image))

    The view's selects set ``stage`` and ``query``; Python answers with that rung's map.
    """

    _esm = bundle("qladder_attention")
    _css = stylesheet("qladder_attention")

    image = t.Dict().tag(sync=True)
    """{"values": uint8 bytes (S, S) grayscale, "shape": [S, S]}."""
    stages = t.List(t.Unicode()).tag(sync=True)
    """One label per rung, e.g. ``"rung 0 · 48×48"``."""
    stage = t.Int(0).tag(sync=True)
    """The rung shown."""
    query = t.Int(-1).tag(sync=True)
    """The query shown; -1 averages the queries."""
    n_queries = t.Int(0).tag(sync=True)
    """Number of ladder queries."""
    attention = t.Dict().tag(sync=True)
    """{"values": float32 bytes (h, w) of the shown rung and query, "shape": [h, w], "stage", "query"}."""

    @classmethod
    def from_arrays(cls, image, attention: list[np.ndarray]) -> QLadderAttention:
        """From an (H, W) image in [0, 1] and the per-rung (n, h, w) attention maps."""
        img = np.asarray(image, dtype=np.float32)
        if img.ndim == 3:
            img = img.mean(0 if img.shape[0] in (1, 3) else -1)
        if img.ndim != 2 or not attention:
            raise WorkbenchError("QLadderAttention needs a 2-d image and at least one rung's attention")
        w = cls()
        w._maps = [np.asarray(a, dtype=np.float32) for a in attention]
        pixels = np.ascontiguousarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
        with w.hold_sync():
            w.image = {"values": pixels.tobytes(), "shape": list(pixels.shape)}
            w.stages = [f"rung {i} · {a.shape[1]}×{a.shape[2]}" for i, a in enumerate(w._maps)]
            w.n_queries = int(w._maps[0].shape[0])
            w._send_map()
        return w

    @t.validate("stage")
    def _check_stage(self, proposal):
        if not 0 <= proposal["value"] < len(getattr(self, "_maps", [])):
            raise t.TraitError(f"stage must be in 0..{len(self._maps) - 1}")
        return proposal["value"]

    @t.validate("query")
    def _check_query(self, proposal):
        if not -1 <= proposal["value"] < self.n_queries:
            raise t.TraitError(f"query must be -1 (mean) or in 0..{self.n_queries - 1}")
        return proposal["value"]

    @t.observe("stage", "query")
    def _send_map(self, _change=None) -> None:
        if not hasattr(self, "_maps"):
            return
        a = self._maps[self.stage]
        shown = a.mean(0) if self.query < 0 else a[self.query]  # (h, w)
        shown = np.ascontiguousarray(shown, dtype=np.float32)
        self.attention = {"values": shown.tobytes(), "shape": list(shown.shape), "stage": self.stage,
                          "query": self.query}

    def shown(self) -> np.ndarray:
        """(h, w) the map on screen."""
        return np.frombuffer(self.attention["values"], dtype=np.float32).reshape(self.attention["shape"])
