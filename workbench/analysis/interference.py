"""Merge interference in weight space: what a TIES-style trim keeps, and where the kept signs fight.

Elementwise work, so one dense ΔW_i = s·B·A per adapter is built, one module at a time.

Reference: Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023
(trim to the top-k magnitudes, then sign conflicts between the kept entries).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch

from workbench.adapters.adapter import Adapter
from workbench.analysis._inputs import as_named, module_paths
from workbench.errors import WorkbenchError
from workbench.naming import split_module_name
from workbench.ops.frames import tidy
from workbench.ops.sparsify import top_magnitude_mask


def trim_mask(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``int(density · numel)`` largest magnitudes, as the merge's own trim does.

    The same selection as ``magnitude_prune_`` (and peft's ``magnitude_based_pruning`` unless
    magnitudes tie at the cut). Exact zeros are never "kept": they carry no sign and no mass.
    """
    return top_magnitude_mask(delta, density) & (delta != 0)


def interference(
    adapters: Mapping[str, Adapter] | Iterable[Adapter],
    weights: Sequence[float] | None = None,
    density: float = 0.2,
) -> pd.DataFrame:
    """Per module: sign conflicts among trimmed entries, mass lost to trimming, and overlap.

    Each adapter's weighted update w_i·ΔW_i is trimmed to its top ``density`` fraction of entries by
    magnitude (as TIES does before electing signs). Then, per module:

    - ``conflict_rate``: of the entries kept by two or more adapters, the share whose kept values do
      not all have the same sign (NaN when no entry is kept twice);
    - ``overlap``: entries kept by two or more adapters ÷ entries kept by at least one;
    - ``mass_lost``: 1 − Σ_i ‖trim(w_i ΔW_i)‖₁ ÷ Σ_i ‖w_i ΔW_i‖₁, the L1 mass the trim throws away.

    Modules only some adapters target are compared among those that have them (``adapters`` says
    how many).

    Args:
        adapters: name -> Adapter, or a list of Adapters (at least two).
        weights: one merge weight per adapter (default 1 each); negative weights flip signs.
        density: the kept fraction, in (0, 1].

    Returns:
        DataFrame ``layer, module, adapters, conflict_rate, overlap, mass_lost, density``.
    """
    named = as_named(adapters)  # also checks one base and matching shapes
    if len(named) < 2:
        raise WorkbenchError(f"interference compares adapters; give at least two, got {list(named)}")
    if not 0 < density <= 1:
        raise WorkbenchError(f"density is the kept fraction and must be in (0, 1]; got {density}")
    w = [1.0] * len(named) if weights is None else [float(x) for x in weights]
    if len(w) != len(named):
        raise WorkbenchError(f"{len(w)} weights for {len(named)} adapters; give one weight per adapter")
    weight_of = dict(zip(named, w, strict=True))
    rows = []
    for path in module_paths(named):
        have = [n for n in named if path in named[n].modules]
        if len(have) < 2:
            continue
        deltas = torch.stack([weight_of[n] * named[n].delta(path).detach().double() for n in have])
        masks = torch.stack([trim_mask(d, density) for d in deltas])  # (K, out, in)
        kept = deltas * masks
        count = masks.sum(0)  # (out, in)
        shared = count >= 2
        positive = (kept > 0).sum(0)  # trimmed and zero entries are 0 in kept
        negative = (kept < 0).sum(0)
        conflicts = shared & (positive > 0) & (negative > 0)
        n_shared, n_any = int(shared.sum()), int((count >= 1).sum())
        total = float(deltas.abs().sum())
        layer, module = split_module_name(path)
        rows.append({
            "layer": layer, "module": module, "adapters": len(have),
            "conflict_rate": int(conflicts.sum()) / n_shared if n_shared else float("nan"),
            "overlap": n_shared / n_any if n_any else float("nan"),
            "mass_lost": 1.0 - float(kept.abs().sum()) / total if total else float("nan"),
            "density": density,
        })
    return tidy(rows)
