"""PiSSA: start the adapter on the principal singular directions of W, train it on the residual base.

Reference: Meng, Wang & Zhang, "PiSSA: Principal Singular Values and Singular Vectors Adaptation of
Large Language Models", NeurIPS 2024.

With W = U S Vᵀ: ``B = U_r √(S_r/s)``, ``A = √(S_r/s) V_rᵀ`` (so ``s·B·A = U_r S_r V_rᵀ``, the top-r part
of W) and the base becomes ``W_res = W − s·B·A``; at the start ``W_res + s·B·A = W``, so the model is
unchanged, but the adapter trains the directions that matter most.

The workbench never edits a base irreversibly, so the residual is made with the lab's own merge:
a frozen copy of the initial factors, ``<name>_pissa_init``, is merged into the base with weight −1
(``unmerge`` restores W bit for bit). ``pissa_finish`` unmerges it and converts the trained adapter
into a plain rank-2r LoRA of the original base, ``ΔW = s(B A − B0 A0) = s [B, −B0] [A; A0]`` (the
conversion peft documents for PiSSA).
"""

from __future__ import annotations

import torch

from workbench.adapters import Adapter, LoraFactors
from workbench.adapters.layer import LoraLayer
from workbench.errors import WorkbenchError


def pissa_factors(W: torch.Tensor, r: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (r, in), B (out, r)) with ``scale·B·A`` = the rank-r truncated SVD of W (out, in)."""
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    root = (S[:r] / scale).sqrt()  # (r,)
    return (root[:, None] * Vh[:r]).to(W.dtype), (U[:, :r] * root[None, :]).to(W.dtype)


def base_weight(lab, path: str) -> torch.Tensor:
    """The base weight of module ``path`` as (out, in), whatever its layer type."""
    m = lab.model.get_submodule(path)
    if isinstance(m, LoraLayer):
        w = m.base_layer.weight
        return (w.T if m.fan_in_fan_out else w).detach()
    from transformers.pytorch_utils import Conv1D

    return (m.weight.T if isinstance(m, Conv1D) else m.weight).detach()


def pissa_start(lab, name: str, *, r: int = 8, alpha: float | None = None,
                targets: str | list[str] = "attention", scaling: str = "standard") -> Adapter:
    """Add adapter ``name`` initialised by PiSSA and put the lab's base on the residual W_res.

    Train it like any adapter (``MultiTaskTrainer`` trains an adapter the lab already holds), then
    call ``pissa_finish``.
    """
    if f"{name}_pissa_init" in lab.adapters:
        raise WorkbenchError(f"adapter {name!r} already has a PiSSA residual; call pissa_finish first")
    shapes = lab.shapes(targets)
    modules, init = {}, {}
    probe = Adapter(name, {p: LoraFactors(torch.zeros(r, i), torch.zeros(o, r), float(alpha or 2 * r))
                           for p, (o, i) in shapes.items()}, scaling=scaling)
    for path in shapes:
        A, B = pissa_factors(base_weight(lab, path).float(), r, probe.scale(path))
        modules[path] = LoraFactors(A.clone(), B.clone(), probe.modules[path].alpha)
        init[path] = LoraFactors(A.clone(), B.clone(), probe.modules[path].alpha)
    lineage = {"method": "new", "init": "pissa", "targets": targets, "r": r}
    adapter = lab.add_adapter(Adapter(name, modules, scaling=scaling, base_fingerprint=lab.fingerprint,
                                      lineage=lineage))
    frozen = lab.add_adapter(Adapter(f"{name}_pissa_init", init, scaling=scaling,
                                     base_fingerprint=lab.fingerprint, lineage={**lineage, "frozen": True}))
    lab.merge_into_base(frozen.name, weight=-1.0)  # the base is now W_res = W − s·B0·A0
    return adapter


def pissa_finish(lab, name: str) -> Adapter:
    """Restore the original base and replace ``name`` by the equivalent rank-2r plain LoRA."""
    init_name = f"{name}_pissa_init"
    if init_name not in lab.adapters:
        raise WorkbenchError(f"adapter {name!r} has no PiSSA residual in this lab (pissa_start makes one)")
    lab.unmerge(init_name)
    init = lab.remove_adapter(init_name)
    trained = lab.remove_adapter(name)
    modules = {}
    for path, f in trained.modules.items():
        f0 = init.modules[path]
        A = torch.cat([f.A.detach(), f0.A.detach()])  # (2r, in)
        B = torch.cat([f.B.detach(), -f0.B.detach()], dim=1)  # (out, 2r)
        # keep s: the 2r factors carry the same update only if the scale stays that of rank r
        alpha = _alpha_for(trained.scaling, trained.scale(path), 2 * f.r)
        modules[path] = LoraFactors(A, B, alpha)
    out = Adapter(name, modules, scaling=trained.scaling, base_fingerprint=lab.fingerprint,
                  lineage={**trained.lineage, "pissa": "converted to a rank-2r LoRA of the original base"},
                  metadata=trained.metadata)
    return lab.add_adapter(out)


def _alpha_for(scaling: str, s: float, r: int) -> float:
    """The alpha that gives scale ``s`` at rank ``r`` under ``scaling``."""
    from workbench.adapters.adapter import SCALINGS

    return s / SCALINGS.get(scaling)(1.0, r)
