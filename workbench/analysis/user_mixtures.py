"""Per-user mixture weights over a bank of LoRAs (RecLoRA's user × LoRA map) -> tidy frames.

    frame = user_mixture({path: w (U, M)}, users=["u0", "u1"])     # layer, module, user, lora, weight
    user_distances(frame)                                           # user_a, user_b, distance
    alignment(user_distances(frame), profiles)                      # do the mixtures follow the users?

``weights`` holds, per routed module, one row of mixture weights per user (e.g. RecLoRA's
``mix_weights(u)[1]`` for each user's context vector u). The distance between two users is the total
variation ½ Σ_m |w_a,m − w_b,m| of their weights, averaged over modules (0: the same mixture, 1:
disjoint ones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.naming import split_module_name

COLUMNS = ["layer", "module", "user", "lora", "weight"]


def user_mixture(weights: Mapping[str, torch.Tensor], users: Sequence[str]) -> pd.DataFrame:
    """``layer, module, user, lora, weight``: one row per (module, user, bank LoRA).

    Args:
        weights: module path -> (U, M) mixture weights, row u for ``users[u]``.
        users: the users' labels, in row order.
    """
    rows = []
    for path, w in weights.items():
        w = torch.as_tensor(w).detach().float().cpu()
        if w.dim() != 2 or w.shape[0] != len(users):
            raise WorkbenchError(f"weights at {path!r} have shape {tuple(w.shape)}; expected (users="
                                 f"{len(users)}, M): one row of mixture weights per user")
        layer, module = split_module_name(path)
        for u, user in enumerate(users):
            rows += [(layer, module, user, m, float(w[u, m])) for m in range(w.shape[1])]
    return pd.DataFrame(rows, columns=COLUMNS)


def user_distances(frame: pd.DataFrame) -> pd.DataFrame:
    """``user_a, user_b, distance``: total variation between two users' weights, mean over modules."""
    rows = []
    users = list(dict.fromkeys(frame.user))
    for (_layer, _module), part in frame.groupby(["layer", "module"], dropna=False, sort=False):
        table = part.pivot_table(index="user", columns="lora", values="weight").reindex(users)
        for a, b in combinations(users, 2):
            rows.append((a, b, 0.5 * float(np.abs(table.loc[a] - table.loc[b]).sum())))
    out = pd.DataFrame(rows, columns=["user_a", "user_b", "distance"])
    return out.groupby(["user_a", "user_b"], as_index=False, sort=False)["distance"].mean()


def alignment(distances: pd.DataFrame, profiles: Mapping[str, Sequence[float]]) -> float:
    """Pearson correlation, over user pairs, of the mixture distance and the profiles' distance.

    ``profiles`` gives each user a distribution (e.g. its task mix); their distance is the total
    variation too. Positive: users with different profiles get different mixtures. NaN when either
    distance is the same for every pair (no spread to correlate).
    """
    prof = [0.5 * float(np.abs(np.asarray(profiles[a], float) - np.asarray(profiles[b], float)).sum())
            for a, b in zip(distances.user_a, distances.user_b, strict=True)]
    x, y = distances["distance"].to_numpy(float), np.asarray(prof)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
