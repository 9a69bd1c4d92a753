"""k-means (k-means++ seeding, Lloyd iterations, best of ``n_init``), seeded, for LoRA-LEGO.

Deviation from the first version (issue 23), the same labels bit for bit
(tests/merging/reference_impl.py ``kmeans``): the ``n_init`` restarts run their Lloyd iterations
together (one batched distance per step), and a step sums each cluster's members with one
``index_add_`` (in point order, as ``members.mean(0)`` sums them) and divides by the count, instead
of one restart at a time and one cluster at a time.

Reference: Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
"""

from __future__ import annotations

import torch


def kmeans(points: torch.Tensor, k: int, *, generator: torch.Generator, n_init: int = 10,
           max_iter: int = 100) -> torch.Tensor:
    """Cluster labels (n,) of ``points`` (n, d) into ``k`` clusters (k < n), lowest inertia of ``n_init``.

    Deterministic for a generator state; distances are plain squared Euclidean distances, so a
    reflection of every point (x -> -x on some coordinates) gives the same labels.

    The ``n_init`` seedings draw from ``generator`` one after the other (Lloyd's iterations draw
    nothing), then the restarts iterate together, each stopping when its labels stop changing.
    """
    n = points.shape[0]
    centers = torch.stack([_plus_plus(points, k, generator) for _ in range(n_init)])  # (R, k, d)
    labels = torch.full((n_init, n), -1, dtype=torch.long)  # (R, n); -1: none yet
    active = torch.ones(n_init, dtype=torch.bool)  # (R,) restarts still iterating
    offsets = torch.arange(n_init)[:, None] * k  # (R, 1): restart r's clusters at r·k ...
    sums = torch.empty(n_init * k, points.shape[1], dtype=points.dtype)  # (R·k, d)
    for _ in range(max_iter):
        d = torch.cdist(points.expand(n_init, -1, -1), centers,
                        compute_mode="donot_use_mm_for_euclid_dist") ** 2  # (R, n, k)
        new = d.argmin(dim=2)  # (R, n)
        active &= ~(new == labels).all(dim=1)  # a restart whose labels repeat has converged
        if not bool(active.any()):
            break
        labels[active] = new[active]
        # every center of every restart at once: its members' sum in point order, ÷ their count
        # (an empty cluster, or a converged restart, keeps its centers)
        flat = (labels + offsets).view(-1)  # (R·n,)
        sums.zero_().index_add_(0, flat, points.repeat(n_init, 1))
        counts = torch.bincount(flat, minlength=n_init * k).view(n_init, k)  # (R, k)
        update = (counts > 0) & active[:, None]  # (R, k)
        centers[update] = sums.view(n_init, k, -1)[update] / counts[update][:, None].to(points.dtype)
    best, best_inertia = None, float("inf")
    for r in range(n_init):  # the first restart of the lowest inertia, as one after the other
        inertia = float(((points - centers[r][labels[r]]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels[r].clone(), inertia
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
