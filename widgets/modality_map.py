"""ModalityMap: each token's modality, and per layer the size of the vision vs language LoRA update."""

from __future__ import annotations

import anywidget
import numpy as np
import traitlets as t

from widgets._frontend import bundle, stylesheet
from workbench.errors import WorkbenchError


class ModalityMap(anywidget.AnyWidget):
    """A strip of the sequence's tokens coloured by modality, and per layer a pair of bars: Σ‖Δ_V‖ and
    Σ‖Δ_L‖ (each branch's update norm summed over its tokens and the layer's modules).

    Build it from ``workbench.multimodal.analysis.modality_map(vlm, "mm", task, example)``::

        ModalityMap.from_run(modality_map(vlm, "mm", task, task.eval[0]))
    """

    _esm = bundle("modality_map")
    _css = stylesheet("modality_map")

    tokens = t.List(t.Unicode()).tag(sync=True)
    """A label per position, in sequence order."""
    types = t.List(t.Int()).tag(sync=True)
    """The modality of each position: 1 visual (media), 0 text."""
    norms = t.Dict().tag(sync=True)
    """{"values": float32 bytes (layers, branches), "shape", "layers": [...], "branches": [...]}."""
    title = t.Unicode("").tag(sync=True)
    """A caption above the view."""

    @classmethod
    def from_run(cls, run, title: str = "") -> ModalityMap:
        """From a ``ModalityRun`` (tokens, types, tidy ``layer, module, adapter, value`` norms)."""
        if len(run.tokens) != len(run.types):
            raise WorkbenchError(f"ModalityMap: {len(run.tokens)} tokens but {len(run.types)} types")
        table = run.norms.pivot_table(index="layer", columns="adapter", values="value", aggfunc="sum")
        values = np.ascontiguousarray(table.to_numpy(dtype=np.float32))  # (L, K)
        return cls(tokens=list(run.tokens), types=[int(x) for x in run.types], title=title,
                   norms={"values": values.tobytes(), "shape": list(values.shape),
                          "layers": [int(x) for x in table.index],
                          "branches": [str(c) for c in table.columns]})

    def layer_norms(self) -> np.ndarray:
        """(layers, branches) what the bars show."""
        return np.frombuffer(self.norms["values"], dtype=np.float32).reshape(self.norms["shape"])
