"""k-means (k-means++ seeding, Lloyd iterations, best of ``n_init``), seeded, for LoRA-LEGO.

The Lloyd update sums each cluster's members with one ``index_add_`` (in point order, as
``members.mean(0)`` sums them) and divides by the count: the same centers bit for bit as the
per-cluster loop it replaced (issue 23; tests/merging/reference_impl.py ``kmeans``), in 4 operations
instead of 4k.

Reference: Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
"""

from __future__ import annotations

import torch


def kmeans(points: torch.Tensor, k: int, *, generator: torch.Generator, n_init: int = 10,
           max_iter: int = 100) -> torch.Tensor:
    """Cluster labels (n,) of ``points`` (n, d) into ``k`` clusters (k < n), lowest inertia of ``n_init``.

    Deterministic for a generator state; distances are plain squared Euclidean distances, so a
    reflection of every point (x -> -x on some coordinates) gives the same labels.
    """
    best, best_inertia = None, float("inf")
    for _ in range(n_init):
        centers = _plus_plus(points, k, generator)
        labels = None
        sums = torch.empty_like(centers)  # (k, d)
        for _ in range(max_iter):
            d = torch.cdist(points, centers, compute_mode="donot_use_mm_for_euclid_dist") ** 2  # (n, k)
            new = d.argmin(dim=1)
            if labels is not None and torch.equal(new, labels):
                break
            labels = new
            # every center at once: its members' sum in point order, ÷ their count (an empty
            # cluster keeps its center)
            sums.zero_().index_add_(0, labels, points)
            counts = torch.bincount(labels, minlength=k)  # (k,)
            filled = counts > 0
            centers[filled] = sums[filled] / counts[filled, None].to(points.dtype)
        inertia = float(((points - centers[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def _plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    n = points.shape[0]
    centers = [points[int(torch.randint(n, (1,), generator=generator))]]
    d2 = ((points - centers[0]) ** 2).sum(1)  # (n,)
    for _ in range(1, k):
        total = float(d2.sum())
        probs = d2 / total if total > 0 else torch.full_like(d2, 1.0 / n)
        i = int(torch.multinomial(probs, 1, generator=generator))
        centers.append(points[i])
        d2 = torch.minimum(d2, ((points - points[i]) ** 2).sum(1))
    return torch.stack(centers).clone()  # (k, d)
