"""Merge interference in weight space: what a TIES-style trim keeps, and where the kept signs fight.

Elementwise work, so one dense ΔW_i = s·B·A per adapter is built, one module at a time. What the
trim keeps of each adapter (where, with which sign, and the L1 masses) does not depend on the weights
(a nonzero weight scales every entry alike) and is cached by the adapter's content fingerprint
(``workbench.adapters.update_cache``), so a change of weights only recounts. Deviation from
the first version (issue 23): the L1 masses are summed per adapter and then weighted, not summed over the
weighted stack: ``mass_lost`` agrees to ~1e-15 relative (summation order), the counts exactly.

Reference: Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023
(trim to the top-k magnitudes, then sign conflicts between the kept entries).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch

from workbench.adapters.adapter import Adapter
from workbench.adapters.update_cache import DENSE_CACHE, adapter_fingerprint
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
    prints = {n: adapter_fingerprint(a) for n, a in named.items()}
    rows = []
    for path in module_paths(named):
        have = [n for n in named if path in named[n].modules]
        if len(have) < 2:
            continue
        count = positive = negative = None
        total = kept_mass = 0.0
        for n in have:
            pos, neg, l1_all, l1_kept = DENSE_CACHE.get(
                (prints[n], path, density, "interference"),
                lambda n=n, path=path: _trimmed(named[n], path, density))
            wn = weight_of[n]
            if wn == 0:  # w·ΔW = 0: nothing kept, no mass
                continue
            up, down = (pos, neg) if wn > 0 else (neg, pos)  # the kept entries' signs in w·ΔW
            if count is None:
                count = (pos | neg).to(torch.uint8)  # (out, in)
                positive, negative = up.to(torch.uint8), down.to(torch.uint8)
            else:
                count += pos | neg
                positive += up
                negative += down
            total += abs(wn) * l1_all
            kept_mass += abs(wn) * l1_kept
        shared = count >= 2 if count is not None else torch.zeros((), dtype=torch.bool)
        conflicts = shared & (positive > 0) & (negative > 0) if count is not None else shared
        n_shared = int(shared.sum())
        n_any = int((count >= 1).sum()) if count is not None else 0
        layer, module = split_module_name(path)
        rows.append({
            "layer": layer, "module": module, "adapters": len(have),
            "conflict_rate": int(conflicts.sum()) / n_shared if n_shared else float("nan"),
            "overlap": n_shared / n_any if n_any else float("nan"),
            "mass_lost": 1.0 - kept_mass / total if total else float("nan"),
            "density": density,
        })
    return tidy(rows)


def _trimmed(adapter: Adapter, path: str, density: float) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(kept and positive, kept and negative (out, in) bool, ‖ΔW‖₁, ‖trim(ΔW)‖₁) of one module.

    The trim of w·ΔW keeps the same entries as the trim of ΔW for any w ≠ 0: multiplying by w keeps
    the magnitude order, and float32 entries that differ still differ after a float64 product.

    Deviation from the first version (issue 23): the mask is selected on the float32 ΔW itself (its
    magnitudes order exactly as their float64 copies: the same mask) and the magnitudes are taken
    once; the L1 masses are still float64 sums (``dtype=torch.float64``), equal to ~1e-15 relative.
    """
    delta = adapter.delta(path).detach()  # (out, in), the adapter's dtype
    mag = delta.abs()
    mask = top_magnitude_mask(delta, density, mag=mag) & (mag > 0)
    return (mask & (delta > 0), mask & (delta < 0), float(mag.sum(dtype=torch.float64)),
            float(torch.where(mask, mag, 0.0).sum(dtype=torch.float64)))
