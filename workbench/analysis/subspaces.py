"""Principal angles between the column spaces and the row spaces of the adapters' ΔW, per module."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import pandas as pd
import torch

from workbench.adapters.adapter import Adapter
from workbench.analysis._inputs import as_named, module_paths
from workbench.analysis.spectrum import module_svd, numerical_rank
from workbench.naming import split_module_name
from workbench.ops.frames import tidy


def _bases(adapter: Adapter, path: str) -> dict[str, torch.Tensor]:
    """Orthonormal bases of the column space (out, k) and row space (in, k) of ΔW, k = its rank."""
    f = adapter.modules[path]
    U, S, V = module_svd(adapter, path)  # (out, r), (r,), (in, r)
    k = numerical_rank(S, (f.out_features, f.in_features), f.A.dtype)
    return {"column": U[:, :k], "row": V[:, :k]}


def principal_cosines(Q1: torch.Tensor, Q2: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between span(Q1) and span(Q2) (orthonormal columns), descending."""
    return torch.linalg.svdvals(Q1.T @ Q2).clamp(max=1.0)  # (min(k1, k2),)


def subspaces(adapters: Mapping[str, Adapter] | Iterable[Adapter]) -> pd.DataFrame:
    """Principal angles between the adapters' column spaces and row spaces, per pair and module.

    The bases come from the factors (QR of s·B and Aᵀ and an (r, r) SVD, as in ``spectrum``),
    truncated to the numerical rank of ΔW, so they describe the update itself, not its split into
    A and B. The cosines of the principal angles are the singular values of Q1ᵀQ2, and

        overlap = ||Q1ᵀ Q2||_F² / min(k1, k2)  (the mean squared cosine of the principal angles),

    1 when one subspace contains the other, 0 when they are orthogonal.

    Only modules present in both adapters of a pair give rows. Every ordered pair is listed, the
    diagonal included (overlap 1), so a pivot gives a full matrix. A zero update (rank 0) gives NaN.

    Args:
        adapters: a mapping name -> Adapter, or a list of Adapters (keyed by their names).

    Returns:
        Columns ``adapter_a, adapter_b, layer, module, side, overlap, min_angle_deg``, with ``side``
        ``"column"`` (output space, from B) or ``"row"`` (input space, from A).

    Raises:
        WorkbenchError: for adapters of different base models or a shared module with different shapes.

    Reference: Björck & Golub, "Numerical methods for computing angles between linear subspaces", 1973.
    """
    named = as_named(adapters)
    rows = []
    for path in module_paths(named):
        present = [n for n, a in named.items() if path in a.modules]
        bases = {n: _bases(named[n], path) for n in present}
        layer, module = split_module_name(path)
        for a in present:
            for b in present:
                for side in ("column", "row"):
                    Q1, Q2 = bases[a][side], bases[b][side]
                    k = min(Q1.shape[1], Q2.shape[1])
                    if k == 0:
                        overlap = angle = float("nan")
                    else:
                        cos = principal_cosines(Q1, Q2)  # (k,)
                        overlap = float((cos**2).sum()) / k
                        angle = math.degrees(math.acos(float(cos[0])))
                    rows.append(
                        {
                            "adapter_a": a,
                            "adapter_b": b,
                            "layer": layer,
                            "module": module,
                            "side": side,
                            "overlap": overlap,
                            "min_angle_deg": angle,
                        }
                    )
    return tidy(rows)
