"""Angles between task vectors ΔW = s·B·A, computed from the factors (never a dense ΔW).

The Frobenius inner product of two low-rank updates is
``<B1 A1, B2 A2>_F = sum((B1ᵀ B2) ∘ (A1 A2ᵀ))``: two (r1, r2) Gram matrices, O(r² d) instead of O(d²).
It depends on the update only, never on how it is split into A and B (see ``reparametrize``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from workbench.adapters.adapter import Adapter
from workbench.analysis._inputs import as_named, module_paths
from workbench.errors import WorkbenchError
from workbench.naming import split_module_name
from workbench.ops.frames import tidy

BY = ("total", "layer", "module")


def module_inner_products(named: Mapping[str, Adapter], path: str) -> tuple[list[str], np.ndarray]:
    """Inner products <ΔW_i, ΔW_j>_F of one module among the adapters that have it.

    All adapters' factors are stacked, so one pair of Gram matrices serves every pair:
    G = (Bᵀ B) ∘ (A Aᵀ) over the stacked ranks (B scaled by s), then summed block by block. The
    Grams are float64 numpy products of a matrix with its own transpose, which numpy hands to BLAS
    ``syrk`` (half the work of a general product). ``bench/geometry.py`` times it against dense ΔW.

    Args:
        named: name -> Adapter (already checked by ``as_named``).
        path: the module path.

    Returns:
        The names of the adapters that have ``path`` and their (K, K) inner-product matrix
        (the diagonal holds the squared Frobenius norms).
    """
    names = [n for n, a in named.items() if path in a.modules]
    A = np.concatenate([_numpy(named[n].modules[path].A) for n in names], dtype=np.float64)  # (Σr, in)
    B = np.concatenate([_scaled_B(named[n], path) for n in names], axis=1, dtype=np.float64)  # (out, Σr)
    G = (B.T @ B) * (A @ A.T)  # (Σr, Σr)
    E = np.repeat(np.eye(len(names)), [named[n].modules[path].r for n in names], axis=0)  # (Σr, K) owner
    return names, E.T @ G @ E  # (K, K)


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A factor as a CPU array, without a copy when it is float32/64 (numpy has no bfloat16)."""
    t = t.detach().cpu()
    return t.numpy() if t.dtype in (torch.float32, torch.float64) else t.float().numpy()


def _scaled_B(adapter: Adapter, path: str) -> np.ndarray:
    """s·B in B's own precision, rounded as ``Adapter.factors`` rounds it."""
    B = _numpy(adapter.modules[path].B)
    return B * B.dtype.type(adapter.scale(path))


def _cosine(ip: float, n2a: float, n2b: float) -> float:
    denom = math.sqrt(n2a * n2b)
    if denom == 0.0:
        return float("nan")
    return max(-1.0, min(1.0, ip / denom))


def angles(adapters: Mapping[str, Adapter] | Iterable[Adapter], by: str = "total") -> pd.DataFrame:
    """Cosine and angle between the adapters' task vectors ΔW = s·B·A, from the factors.

    What counts: an adapter's update on a module it does not target is 0. So an inner product sums
    over the modules both adapters of the pair have, while each adapter's norm sums over *all* of
    its modules in the group (the whole adapter for ``"total"``, the layer for ``"layer"``). The
    total cosine is therefore exactly the cosine between the concatenated full task vectors, and
    not an average of per-module cosines. ``shared_modules`` says how many modules a pair has in
    common in each group; 0 means the targets are disjoint there (cosine 0 by this convention).

    Args:
        adapters: a mapping name -> Adapter, or a list of Adapters (keyed by their names).
        by: ``"total"`` (one row per pair), ``"layer"`` (per pair and layer, summing the modules of
            the layer) or ``"module"`` (per pair and module path, only modules both have).

    Returns:
        A tidy frame with every ordered pair, the diagonal included (cosine 1), so that
        ``frame.pivot(index="adapter_a", columns="adapter_b", values="cosine")`` is the full matrix.
        Columns: ``adapter_a, adapter_b, [layer, module,] cosine, angle_deg[, shared_modules]``
        (``layer`` only for ``"layer"``; ``layer, module`` for ``"module"``; ``shared_modules`` for
        ``"total"`` and ``"layer"``). ``cosine`` is NaN where an update is zero (e.g. B = 0 at init).

    Raises:
        WorkbenchError: for an unknown ``by``, adapters of different base models, or a shared module
            with different shapes.

    Reference: Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023 (task vectors).
    """
    if by not in BY:
        raise WorkbenchError(f"angles(by={by!r}) is not a view; choose one of {', '.join(BY)}")
    named = as_named(adapters)
    names = list(named)
    index = {n: i for i, n in enumerate(names)}
    K = len(names)

    # group key -> (K, K) summed inner products and (K, K) shared-module counts
    groups: dict[object, tuple[np.ndarray, np.ndarray]] = {}
    for path in module_paths(named):
        present, M = module_inner_products(named, path)
        layer, module = split_module_name(path)
        key = {"total": None, "layer": layer, "module": path}[by]
        ip, count = groups.setdefault(key, (np.zeros((K, K)), np.zeros((K, K), dtype=int)))
        idx = np.array([index[n] for n in present])
        ip[np.ix_(idx, idx)] += M
        count[np.ix_(idx, idx)] += 1

    rows = []
    for key, (ip, count) in groups.items():
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if by != "total" and (count[i, i] == 0 or count[j, j] == 0):
                    continue  # one of the pair has nothing in this layer / module
                cos = _cosine(ip[i, j], ip[i, i], ip[j, j])
                row = {"adapter_a": a, "adapter_b": b}
                if by == "layer":
                    row["layer"] = key
                elif by == "module":
                    row["layer"], row["module"] = split_module_name(key)
                row["cosine"] = cos
                row["angle_deg"] = math.degrees(math.acos(cos)) if not math.isnan(cos) else float("nan")
                if by != "module":
                    row["shared_modules"] = int(count[i, j])
                rows.append(row)
    return tidy(rows)


def flattened_factor_cosine(a: Adapter, b: Adapter) -> float:
    """The naive "LoRA cosine": cosine of the concatenated, flattened [A; B] factors.

    Shown for contrast only: it is NOT a property of the update. Replacing (A, B) by (R⁻¹A, BR)
    leaves ΔW unchanged but changes this number (see ``reparametrize``); use ``angles`` instead.
    Uses the stored factors (unscaled) of the modules both adapters have, in sorted path order.

    Raises:
        WorkbenchError: when the adapters share no module, or a shared module has different ranks or
            shapes (the flattened vectors would not even have the same length).
    """
    shared = sorted(set(a.modules) & set(b.modules))
    if not shared:
        raise WorkbenchError(f"adapters {a.name!r} and {b.name!r} share no module to compare")
    va, vb = [], []
    for path in shared:
        fa, fb = a.modules[path], b.modules[path]
        if fa.A.shape != fb.A.shape or fa.B.shape != fb.B.shape:
            raise WorkbenchError(
                f"module {path!r}: {a.name!r} has A {tuple(fa.A.shape)}, B {tuple(fa.B.shape)} but "
                f"{b.name!r} has A {tuple(fb.A.shape)}, B {tuple(fb.B.shape)}; flattened factors "
                "only compare at equal ranks (angles() has no such limit)"
            )
        va += [fa.A.flatten(), fa.B.flatten()]
        vb += [fb.A.flatten(), fb.B.flatten()]
    x, y = torch.cat(va).double(), torch.cat(vb).double()  # (P,)
    return float(torch.nn.functional.cosine_similarity(x, y, dim=0))
