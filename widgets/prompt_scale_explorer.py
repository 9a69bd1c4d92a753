"""PromptScaleExplorer: WavLLM's σ vectors per prompt, projected to 2-D and coloured by task; edit a
prompt and watch its point move."""

from __future__ import annotations

import anywidget
import ipywidgets as ipw
import numpy as np
import traitlets as t

from widgets._frontend import bundle, stylesheet
from workbench.errors import WorkbenchError


class ScaleScatter(anywidget.AnyWidget):
    """A scatter of prompts in the 2-D PCA map of their σ vectors, coloured by task, one point highlighted.

    Build it from ``workbench.multimodal.analysis.prompt_scales(slm, "wav", prompts)``::

        ScaleScatter.from_scales(prompt_scales(slm, "wav", {"digits": [...], "voice": [...]}))
    """

    _esm = bundle("prompt_scale_explorer")
    _css = stylesheet("prompt_scale_explorer")

    points = t.Dict().tag(sync=True)
    """{"x": float32 bytes (N,), "y": float32 bytes (N,), "tasks": [...], "prompts": [...], "mean": [...]}."""
    highlight = t.Dict().tag(sync=True)
    """{"x", "y", "prompt", "mean"}: the edited prompt's point (empty: none)."""

    @classmethod
    def from_scales(cls, scales) -> ScaleScatter:
        """From a ``PromptScales`` (its tidy frame ``task, token, x, y, value``)."""
        f = scales.frame
        if f.empty:
            raise WorkbenchError("ScaleScatter needs at least one prompt")
        return cls(points={"x": np.ascontiguousarray(f.x.to_numpy(np.float32)).tobytes(),
                           "y": np.ascontiguousarray(f.y.to_numpy(np.float32)).tobytes(),
                           "tasks": [str(x) for x in f.task], "prompts": [str(x) for x in f.token],
                           "mean": [float(x) for x in f.value]})

    def show_point(self, xy, prompt: str, mean: float) -> None:
        """Highlight one (x, y) position (the edited prompt's)."""
        self.highlight = {"x": float(xy[0]), "y": float(xy[1]), "prompt": prompt, "mean": float(mean)}


class PromptScaleExplorer(ipw.VBox):
    """The scatter, and a prompt box: editing it asks the engine for the prompt's σ and moves its point.

    Example::

        PromptScaleExplorer(slm, "wav", {"digits": ["Which digit is spoken?"], "voice": ["Who is speaking?"]})
    """

    def __init__(self, slm, name: str, prompts: dict[str, list[str]], start: str | None = None):
        from workbench.multimodal.analysis import prompt_scales

        self.slm, self.name = slm, name
        self.scales = prompt_scales(slm, name, prompts)
        self.view = ScaleScatter.from_scales(self.scales)
        first = start or next(iter(prompts.values()))[0]
        self.prompt = ipw.Textarea(first, continuous_update=False, layout=ipw.Layout(width="100%"))
        self.status = ipw.HTML()
        self.prompt.observe(lambda _c: self.update(), "value")
        super().__init__([self.prompt, self.view, self.status])
        self.update()

    def update(self) -> None:
        """Place the prompt now in the box on the map."""
        from workbench.multimodal.analysis import sigma_of

        sigma = sigma_of(self.slm, self.name, [self.prompt.value], width=self.scales.sigma.shape[1])
        xy = self.scales.project(sigma)[0]
        self.view.show_point(xy, self.prompt.value, float(sigma.mean()))
        self.status.value = f"mean σ {sigma.mean():.3f} (α/r would be the constant of a plain LoRA)"
