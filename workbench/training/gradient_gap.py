"""GradientGap: per step, how far a LoRA's equivalent gradient is from the full fine-tuning gradient.

With G = ∂L/∂W of an adapted weight, an update (g_A, g_B) of its factors moves W like the equivalent
gradient ``g̃ = s (B g_A + g_B A)`` (LoRA-Pro's identity, ``workbench.training.lorapro``). The probe
records, at every optimizer step of a run that trains adapter ``name``, the relative gap
``‖g̃ − G‖_F / ‖G‖_F`` of each adapted weight for two g̃ taken at the same point (A, B, G):

- ``lora``: vanilla LoRA's raw gradients ``g_A = G_A = s BᵀG``, ``g_B = G_B = s G Aᵀ``;
- ``lorapro``: LoRA-Pro's adjusted gradients (``adjusted_gradients``: the g̃ closest to G,
  ``P_B G + (I − P_B) G P_A``), before any optimizer state.

and the scale-free gap ``sin∠(g̃, G) = √(1 − cos²)`` (what is left once a learning rate absorbs the
scale). G is never formed by the LoRA itself: the probe builds it from the layer's input x and the
gradient of its output (``G = Σ_tokens ∂L/∂y ⊗ x``) with forward hooks, so it costs one (out, in)
product per module and step. It reads gradients in a global optimizer step pre-hook
(``torch.optim.optimizer.register_optimizer_step_pre_hook``), so any trainer can run under it::

    with GradientGap(lab, "pro") as gap:
        lab.train_lora("pro", task, optimizer="lorapro", ...)
    gap.frame()          # tidy: step, module, kind, gap, sine

Reference: Wang et al., "LoRA-Pro: Are Low-Rank Adapters Properly Optimized?", ICLR 2025 (the gap the
paper plots is ‖g̃ − G‖_F for LoRA and LoRA-Pro along training).
"""

from __future__ import annotations

import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.training.lorapro import adjusted_gradients, equivalent_gradient

KINDS = ("lora", "lorapro")


def relative_gap(g: torch.Tensor, G: torch.Tensor) -> tuple[float, float]:
    """(‖g − G‖_F / ‖G‖_F, √(1 − cos²∠(g, G))) of two (out, in) matrices (fp64)."""
    g, G = g.detach().double(), G.detach().double()
    nG, ng = G.norm(), g.norm()
    if nG == 0:
        return float("nan"), float("nan")
    cos = float((g * G).sum() / (ng * nG)) if ng > 0 else 0.0
    return float((g - G).norm() / nG), max(0.0, 1.0 - cos * cos) ** 0.5


class GradientGap:
    """Records the equivalent-gradient gap of adapter ``name`` at every optimizer step (see module doc).

    Args:
        lab: the Workbench; name: the adapter being trained (its LoRA layers are probed; dropout
            on that adapter must be 0, so that the factors see the layer's input x as G does).
    """

    def __init__(self, lab, name: str):
        self.layers = {path: layer for path, layer in lab.layers.items() if name in layer.names}
        if not self.layers:
            raise WorkbenchError(f"GradientGap: no layer holds adapter {name!r}; add or train it first")
        self.name = name
        self.rows: list[dict] = []
        self.step = 0
        self._G: dict[str, torch.Tensor] = {}
        self.last: dict[str, torch.Tensor] = {}
        self._handles: list = []

    # -- hooks -----------------------------------------------------------------------------------
    def _forward(self, path: str):
        def hook(module, args, out):
            if not (torch.is_grad_enabled() and out.requires_grad):
                return
            if module.training and module.dropout.get(self.name, 0.0):
                raise WorkbenchError(f"GradientGap: adapter {self.name!r} trains with dropout on {path}; "
                                     "G is taken on the undropped input x, so train it with dropout=0")
            x = args[0].detach()  # (B, T, in)

            def grad_hook(g):  # g: (B, T, out)
                G = torch.einsum("...o,...i->oi", g.float(), x.float())  # (out, in), fp32 sums over tokens
                self._G[path] = self._G[path] + G if path in self._G else G

            out.register_hook(grad_hook)

        return hook

    def _pre_step(self, optimizer, args, kwargs) -> None:
        pairs = [(p, layer.lora_A[self.name], layer.lora_B[self.name], layer.scaling[self.name])
                 for p, layer in self.layers.items()]
        mine = {id(A) for _, A, _, _ in pairs}
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        pro_pairs = {id(A) for A, _, _ in getattr(optimizer, "pairs", ())}
        if not (mine & (owned | pro_pairs)):
            return  # another optimizer (e.g. NOLA's inner Adam over coefficients)
        for path, A, B, s in pairs:
            G = self._G.get(path)
            if G is None or A.grad is None or B.grad is None:
                continue
            first = not bool((B != 0).any())
            vanilla = equivalent_gradient(A, B, s, A.grad, B.grad)
            g_A, g_B = adjusted_gradients(A, B, s, A.grad, B.grad, first=first)
            pro = equivalent_gradient(A, B, s, g_A, g_B)
            for kind, g in (("lora", vanilla), ("lorapro", pro)):
                gap, sine = relative_gap(g, G)
                self.rows.append({"step": self.step, "module": path, "kind": kind, "gap": gap, "sine": sine})
        self.last, self._G = self._G, {}  # last: the G of the step just measured, per module
        self.step += 1

    def __enter__(self) -> GradientGap:
        for path, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._forward(path)))
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        self._handles.append(register_optimizer_step_pre_hook(self._pre_step))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._G = {}

    # -- results ---------------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """Tidy: one row per step, module and kind: ``step, module, kind, gap, sine``."""
        return pd.DataFrame(self.rows, columns=["step", "module", "kind", "gap", "sine"])

    def per_step(self) -> pd.DataFrame:
        """The mean over modules per step and kind: ``step, kind, gap, sine``."""
        return self.frame().groupby(["step", "kind"], as_index=False)[["gap", "sine"]].mean()
