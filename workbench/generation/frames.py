"""Tidy frames of the generation lab, for views: proximity, the experts' map, histograms, fusion PCA.

    proximity_frame(sg, "classify a quote as being about computers or sports")   # expert, cosine, weight
    expert_map(sg, "classify ...")          # name, kind (expert | query), x, y: a 2-D PCA of embeddings
    tensor_histograms(trained, generated)   # tensor, which, left, right, count: per-tensor value histograms
    fusion_pca(fusion)                      # space, name, kind, x, y: task vectors before and after fusion

The frames hold numbers only; widgets (``widgets.generation_figures``, ``widgets.generator_panel``)
draw them. The PCA is the centred SVD (``torch.linalg.svd``): the first two right singular vectors of
the centred points, signs fixed so that each axis's largest loading is positive.

Reference: the views merging.md §3-5 names (ICM-LoRA: per-tensor histograms, original vs generated;
SG-LoRA: similarity bars and a 2-D map of the experts with the query; ICM-Fusion: a PCA of the task
vectors and the fused one).
"""

from __future__ import annotations

import pandas as pd
import torch

from workbench.adapters import Adapter
from workbench.errors import WorkbenchError


def pca_2d(points: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, 2): the points on their first two principal axes (zeros where N or rank < 2)."""
    x = points.double() - points.double().mean(0)
    out = torch.zeros(points.shape[0], 2, dtype=torch.float64)
    if points.shape[0] < 2:
        return out
    _, _, vh = torch.linalg.svd(x, full_matrices=False)  # vh (k, D)
    k = min(2, vh.shape[0])
    axes = vh[:k]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))  # (k, 1)
    out[:, :k] = x @ (axes * signs).T
    return out


def proximity_frame(sg, description) -> pd.DataFrame:
    """One row per expert of a fitted ``SGLoRA``: ``expert, cosine, weight, rank`` (rank 1 = nearest)."""
    cos, w = sg.cosines(description), sg.proximity(description)
    frame = pd.DataFrame({"expert": list(cos.index), "cosine": cos.to_numpy(), "weight": w.to_numpy()})
    frame["rank"] = frame["cosine"].rank(ascending=False, method="first").astype(int)
    return frame


def expert_map(sg, description=None) -> pd.DataFrame:
    """The experts' description embeddings (and the query's) on a 2-D PCA of the experts.

    Returns:
        ``name, kind, x, y, weight``: kind "expert" per expert (weight its proximity) and, with a
        description, one "query" row (weight 1) projected on the experts' axes.
    """
    experts = sg.conditions.double()  # (N, D)
    centre = experts.mean(0)
    x = experts - centre
    xy = pca_2d(experts)
    names, kinds, weights = list(sg.tasks), ["expert"] * len(sg.tasks), [0.0] * len(sg.tasks)
    if description is not None:
        e = sg.condition(description).double()
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        axes = vh[:2]
        if axes.shape[0] == 2:
            signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
            q = (e - centre) @ (axes * signs).T
        else:
            q = torch.zeros(2, dtype=torch.float64)
        xy = torch.cat([xy, q.reshape(1, 2)])
        names.append("query")
        kinds.append("query")
        weights = [float(v) for v in sg.proximity(description).to_numpy()] + [1.0]
    return pd.DataFrame({"name": names, "kind": kinds, "x": xy[:, 0].numpy(), "y": xy[:, 1].numpy(),
                         "weight": weights})


def tensor_histograms(original: Adapter, generated: Adapter, *, bins: int = 30,
                      modules: list[str] | None = None) -> pd.DataFrame:
    """Histograms of each tensor's values, original beside generated, on shared bin edges per tensor.

    Args:
        original, generated: adapters on the same modules and shapes.
        bins: bins per tensor; modules: the modules to include (default: all, sorted).

    Returns:
        ``tensor, which, left, right, count`` (tensor = ``<module>.A`` or ``.B``; which = "original"
        or "generated").
    """
    if bins < 1:
        raise WorkbenchError(f"bins must be ≥ 1; got {bins}")
    chosen = modules or sorted(original.modules)
    missing = [m for m in chosen if m not in original.modules or m not in generated.modules]
    if missing:
        raise WorkbenchError(f"modules {missing[:3]} are not in both adapters; compare adapters of one "
                             "layout")
    rows = []
    for m in chosen:
        for part in ("A", "B"):
            a = getattr(original.modules[m], part).detach().double().reshape(-1)
            b = getattr(generated.modules[m], part).detach().double().reshape(-1)
            if a.shape != b.shape:
                raise WorkbenchError(f"{m}.{part} has {a.numel()} values in one adapter, {b.numel()} in "
                                     "the other")
            lo, hi = float(torch.minimum(a.min(), b.min())), float(torch.maximum(a.max(), b.max()))
            hi = hi if hi > lo else lo + 1e-12
            edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
            for which, values in (("original", a), ("generated", b)):
                counts = torch.histc(values, bins=bins, min=lo, max=hi)
                rows += [{"tensor": f"{m}.{part}", "which": which, "left": float(edges[i]),
                          "right": float(edges[i + 1]), "count": int(counts[i])} for i in range(bins)]
    return pd.DataFrame(rows)


def fusion_pca(fusion, weights=None) -> pd.DataFrame:
    """A fitted ``ICMFusion``'s task vectors before and after fusion, each set on its own 2-D PCA.

    Returns:
        ``space, name, kind, x, y, weight``: space "task vectors" (standardized v_t, and the fused
        ``Σ w_t v_t`` for comparison, kind "fused") and "fused latent" (P(v_t) and p_f = Σ w_t P(v_t)).
    """
    w = fusion._weights(weights).double()  # (T,)
    v = fusion.standardize(fusion.conditions).double()  # (T, H)
    p = fusion.projected().double()  # (T, d)
    rows = []
    for space, pts in (("task vectors", v), ("fused latent", p)):
        both = torch.cat([pts, (w @ pts)[None]])  # (T + 1, ·)
        xy = pca_2d(both)
        for i, name in enumerate([*fusion.tasks, "fused"]):
            rows.append({"space": space, "name": name, "kind": "fused" if i == len(fusion.tasks) else "task",
                         "x": float(xy[i, 0]), "y": float(xy[i, 1]),
                         "weight": 1.0 if i == len(fusion.tasks) else float(w[i])})
    return pd.DataFrame(rows)
