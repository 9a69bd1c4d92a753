"""Gradient conflicts between tasks: per-task gradients reduced to Gram matrices, then to tidy frames.

A captured step keeps, for every adapter module m, the (T, T) Gram matrix ``G_m = g_m g_mᵀ`` of the
task gradients restricted to that module's parameters (A and B together). Everything shown is a
function of these small matrices: the cosine of tasks i and j in module m is
``G_m[i, j] / sqrt(G_m[i, i] G_m[j, j])``, per layer it is the same with the Grams of the layer's
modules summed, in total with all of them summed; the gradient norm of task i is ``sqrt(G[i, i])``.
No gradient is stored, so memory is O(steps · modules · T²), whatever the adapter's size.

Frames use the fixed vocabulary: ``step, layer, module, task, task_b, value`` (``task_b`` is the
second task of a pair).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.naming import split_module_name


def module_grams(grads: torch.Tensor, slices: Sequence[slice]) -> np.ndarray:
    """Gram matrices of task gradients per module.

    Args:
        grads: (T, D) task gradients over all adapter parameters, flattened in one order.
        slices: one slice of D per module (its A and B parameters are contiguous there).

    Returns:
        (M, T, T) float64 Gram matrices, ``out[m] = grads[:, s_m] @ grads[:, s_m]ᵀ``.
    """
    g = grads.detach().to(torch.float64)
    return np.stack([(g[:, s] @ g[:, s].T).cpu().numpy() for s in slices])  # (M, T, T)


def cosines(gram: np.ndarray) -> np.ndarray:
    """Cosine matrices from Gram matrices (..., T, T); NaN where a task's gradient is zero."""
    d = np.sqrt(np.clip(np.diagonal(gram, axis1=-2, axis2=-1), 0, None))  # (..., T)
    denom = d[..., :, None] * d[..., None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, gram / np.where(denom > 0, denom, 1), np.nan)


def conflict_fraction(cos: np.ndarray) -> np.ndarray:
    """Fraction of task pairs i < j with negative cosine, per matrix (..., T, T) -> (...)."""
    T = cos.shape[-1]
    iu = np.triu_indices(T, k=1)
    pairs = cos[..., iu[0], iu[1]]  # (..., T(T-1)/2)
    if pairs.shape[-1] == 0:
        return np.full(cos.shape[:-2], np.nan)
    return (pairs < 0).mean(axis=-1)


def cosine_frame(steps: Sequence[int], grams: Sequence[np.ndarray], modules: Sequence[str],
                 tasks: Sequence[str], by: str = "module") -> pd.DataFrame:
    """Task × task cosines per captured step, ``by`` module, layer or in total.

    Args:
        steps: the captured steps.
        grams: one (M, T, T) array per step (``module_grams``).
        modules: the M module paths.
        tasks: the T task names.
        by: ``"module"`` (rows per layer and module), ``"layer"`` (modules of a layer summed) or
            ``"total"`` (all modules summed).

    Returns:
        ``step, [layer, module,] task, task_b, value`` with every ordered pair (diagonal = 1).
    """
    groups = _groups(modules, by)
    rows = []
    for step, gram in zip(steps, grams, strict=True):
        for key, idx in groups:
            cos = cosines(gram[idx].sum(0))
            for i, a in enumerate(tasks):
                for j, b in enumerate(tasks):
                    rows.append({"step": step, **key, "task": a, "task_b": b, "value": float(cos[i, j])})
    return _tidy(rows)


def conflict_frame(steps: Sequence[int], grams: Sequence[np.ndarray], modules: Sequence[str],
                   by: str = "module") -> pd.DataFrame:
    """Fraction of conflicting task pairs (negative cosine) per captured step and group.

    Returns:
        ``step, [layer, module,] value`` (value in [0, 1]).
    """
    groups = _groups(modules, by)
    rows = []
    for step, gram in zip(steps, grams, strict=True):
        for key, idx in groups:
            rows.append({"step": step, **key, "value": float(conflict_fraction(cosines(gram[idx].sum(0))))})
    return _tidy(rows)


def norm_frame(steps: Sequence[int], grams: Sequence[np.ndarray], modules: Sequence[str],
               tasks: Sequence[str], by: str = "total") -> pd.DataFrame:
    """Gradient norm of each task per captured step and group: ``step, [layer, module,] task, value``."""
    groups = _groups(modules, by)
    rows = []
    for step, gram in zip(steps, grams, strict=True):
        for key, idx in groups:
            norms = np.sqrt(np.clip(np.diagonal(gram[idx].sum(0)), 0, None))
            rows += [{"step": step, **key, "task": t, "value": float(n)}
                     for t, n in zip(tasks, norms, strict=True)]
    return _tidy(rows)


def _groups(modules: Sequence[str], by: str) -> list[tuple[dict, list[int]]]:
    """(frame columns of the group, module indices) for each group of ``modules``."""
    if by not in ("module", "layer", "total"):
        raise WorkbenchError(f"by={by!r}: choose one of module, layer, total")
    out: dict[tuple, list[int]] = {}
    for m, path in enumerate(modules):
        layer, module = split_module_name(path)
        key = {"module": (("layer", layer), ("module", module)), "layer": (("layer", layer),),
               "total": ()}[by]
        out.setdefault(key, []).append(m)
    return [(dict(k), v) for k, v in out.items()]


def _tidy(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if "layer" in frame.columns:
        frame["layer"] = frame["layer"].astype("Int64")
    return frame
