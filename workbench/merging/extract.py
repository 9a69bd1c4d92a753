"""LoRA extraction: the best low-rank adapter of any dense update ΔW, or of a full fine-tune against its base.

    result = extract({path: dW, ...}, name="ft", rank=16)            # any dense ΔW (out, in)
    result = extract_from_models(finetuned, lab.model, name="ft", energy=0.9, targets="attention")
    result.adapter, result.error, result.total_error                  # error: layer, module, rank, value

Per module, the truncated SVD ΔW ≈ U_r·S_r·V_rᵀ (float64), split as peft's ``svd`` merge does:
B = U_r·S_r (out, r), A = V_rᵀ (r, in), alpha = r (scale 1). The rank is ``rank`` (capped at
min(out, in)) or, with ``energy``, the smallest r whose singular values keep that fraction of
‖ΔW‖²_F. By Eckart–Young this is the best rank-r approximation and its error is the tail:
‖ΔW − BA‖_F / ‖ΔW‖_F = √(Σ_{j>r} σⱼ²) / √(Σ σⱼ²), reported per module and in total. A planted
rank-r ΔW comes back exactly at rank r. The adapter's lineage says where it came from.

Deviations from mergekit's ``mergekit-extract-lora``: it splits S as U·S and Vᵀ too, but takes one
rank for every module and also extracts embeddings and biases (``modules_to_save``); here linear
modules only, with a per-module energy threshold as an alternative to the rank.

Reference: Eckart & Young, Psychometrika 1936; mergekit ``scripts/extract_lora.py``
(``mergekit-extract-lora``); Kohya-ss ``networks/extract_lora_from_models.py`` (the SVD recipe).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from workbench.adapters.adapter import Adapter, LoraFactors
from workbench.adapters.layer import out_in
from workbench.adapters.targets import linear_modules, resolve_targets
from workbench.errors import WorkbenchError
from workbench.naming import split_module_name
from workbench.ops.frames import tidy


@dataclass
class ExtractResult:
    """What ``extract`` returns: the adapter, the per-module error frame and the total error.

    Attributes:
        adapter: the extracted adapter (scale 1 in every module; lineage ``method="extract"``).
        error: ``layer, module, rank, value``: value = ‖ΔW − B·A‖_F / ‖ΔW‖_F (0 where ΔW = 0).
        total_error: the same over all modules together.
    """

    adapter: Adapter
    error: pd.DataFrame
    total_error: float


def energy_rank(S: torch.Tensor, energy: float) -> int:
    """The smallest r ≥ 1 with Σ_{j≤r} σⱼ² ≥ energy·Σ σⱼ² (1 for a zero matrix)."""
    sq = S.double() ** 2
    total = float(sq.sum())
    if total == 0:
        return 1
    kept = torch.cumsum(sq, 0) / total
    return int((kept < energy - 1e-12).sum()) + 1


def extract(deltas: Mapping[str, torch.Tensor], *, name: str, rank: int | None = None,
            energy: float | None = None, base_fingerprint: str | None = None,
            source: dict | None = None) -> ExtractResult:
    """A LoRA adapter approximating each dense update ``deltas[path]`` (out, in) by truncated SVD.

    Args:
        deltas: module path -> dense ΔW (out, in).
        name: the adapter's name (a Python identifier).
        rank: the rank of every module (capped at min(out, in)); or
        energy: in (0, 1]: per module, the smallest rank keeping this fraction of ‖ΔW‖²_F.
        base_fingerprint: the base model's fingerprint (a lab's ``fingerprint``).
        source: what the lineage records as the origin (``extract_from_models`` fills it).

    Raises:
        WorkbenchError: neither or both of rank and energy, a bad rank or energy, a bad name, a
            ΔW that is not a finite 2-D tensor.
    """
    if (rank is None) == (energy is None):
        raise WorkbenchError("extract takes rank=... (one rank for every module) or energy=... (the fraction "
                             "of ‖ΔW‖² kept, per module), exactly one of them")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise WorkbenchError(f"extract: rank={rank!r} must be a positive int")
    if energy is not None and (isinstance(energy, bool) or not isinstance(energy, int | float)
                               or not 0 < energy <= 1):
        raise WorkbenchError(f"extract: energy={energy!r} must be a number in (0, 1], e.g. 0.9")
    if not isinstance(name, str) or not name.isidentifier():
        raise WorkbenchError(f"extracted adapter name {name!r} is not a Python identifier; pass name=...")
    if not deltas:
        raise WorkbenchError("extract got no modules; give {path: ΔW (out, in)}")
    modules, rows, num, den = {}, [], 0.0, 0.0
    for path, D in deltas.items():
        if not isinstance(D, torch.Tensor) or D.dim() != 2 or not torch.isfinite(D).all():
            raise WorkbenchError(f"extract: ΔW of {path!r} must be a finite 2-D tensor (out, in)")
        U, S, Vh = torch.linalg.svd(D.detach().double().cpu(), full_matrices=False)  # (out, k), (k,), (k, in)
        r = min(rank, S.shape[0]) if rank is not None else energy_rank(S, energy)
        A, B = Vh[:r], U[:, :r] * S[:r]  # (r, in), (out, r)
        modules[path] = LoraFactors(A.float().contiguous(), B.float().contiguous(), float(r))
        tail, total = float((S[r:] ** 2).sum()), float((S**2).sum())
        num, den = num + tail, den + total
        layer, module = split_module_name(path)
        rows.append({"layer": layer, "module": module, "rank": r,
                     "value": math.sqrt(tail / total) if total > 0 else 0.0})
    total_error = math.sqrt(num / den) if den > 0 else 0.0
    adapter = Adapter(name=name, modules=modules, scaling="standard", base_fingerprint=base_fingerprint,
                      lineage={"method": "extract", "extract": {
                          "rank": rank, "energy": energy, "error": total_error,
                          "ranks": {p: f.r for p, f in modules.items()},
                          **({"source": source} if source else {})}})
    return ExtractResult(adapter, tidy(rows), total_error)


def weight_of(module: nn.Module) -> torch.Tensor:
    """A linear module's weight as (out, in) (Conv1D stores it transposed); a LoraLayer's base weight."""
    base = getattr(module, "base_layer", module)
    out_f, in_f = out_in(base)
    W = base.weight.detach()
    return W if tuple(W.shape) == (out_f, in_f) else W.T


def extract_from_models(finetuned: nn.Module, base: nn.Module, *, name: str, rank: int | None = None,
                        energy: float | None = None, targets: str | list[str] = "all-linear",
                        base_fingerprint: str | None = None) -> ExtractResult:
    """Extract ΔW = W_finetuned − W_base of every targeted linear module of a full fine-tune.

    Args:
        finetuned: the fine-tuned model (same architecture and module paths as ``base``).
        base: the base model (a lab's ``model``: wrapped modules count by their base weight).
        targets: which modules (``workbench.adapters.resolve_targets``: a preset, suffixes, regexes).
        name, rank, energy, base_fingerprint: as ``extract``.
    """
    paths = resolve_targets(base, targets)
    tuned = linear_modules(finetuned)
    base_mods = linear_modules(base)
    missing = [p for p in paths if p not in tuned]
    if missing:
        raise WorkbenchError(f"the fine-tuned model has no module {missing[0]!r} ({len(missing)} missing); "
                             "extract from a model of the base's architecture")
    deltas = {}
    for p in paths:
        Wt, Wb = weight_of(tuned[p]), weight_of(base_mods[p])
        if Wt.shape != Wb.shape:
            raise WorkbenchError(f"module {p!r}: fine-tuned weight {tuple(Wt.shape)} vs base "
                                 f"{tuple(Wb.shape)}; extract from a model of the base's architecture")
        deltas[p] = Wt.double().cpu() - Wb.double().cpu()
    return extract(deltas, name=name, rank=rank, energy=energy, base_fingerprint=base_fingerprint,
                   source={"kind": "full fine-tune", "targets": targets,
                           "model": getattr(getattr(finetuned, "config", None), "name_or_path", None)
                           or type(finetuned).__name__})
