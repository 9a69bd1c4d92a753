"""Singular values of each module's ΔW from the factors: QR of s·B and Aᵀ, then an (r, r) SVD.

ΔW = (s·B)·A = Q_B R_B R_Aᵀ Q_Aᵀ with s·B = Q_B R_B (QR, (out, r)) and Aᵀ = Q_A R_A (QR, (in, r)),
so the singular values of ΔW are those of the small core R_B R_Aᵀ (r, r): O(r² d), no dense ΔW.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from workbench.adapters.adapter import Adapter
from workbench.analysis._inputs import factors64
from workbench.naming import split_module_name
from workbench.ops.frames import tidy


def module_svd(adapter: Adapter, path: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of one module's ΔW in factored form, float64.

    Returns:
        (U (out, r), S (r,), V (in, r)) with ΔW = U·diag(S)·Vᵀ, S descending.
    """
    A, sB = factors64(adapter, path)  # (r, in), (out, r)
    Q_B, R_B = torch.linalg.qr(sB)  # (out, r), (r, r)
    Q_A, R_A = torch.linalg.qr(A.T)  # (in, r), (r, r)
    u, S, vh = torch.linalg.svd(R_B @ R_A.T)  # (r, r), (r,), (r, r)
    return Q_B @ u, S, Q_A @ vh.T


def numerical_rank(S: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype) -> int:
    """How many singular values exceed max(S)·max(shape)·eps(dtype) (numpy's matrix_rank rule)."""
    if S.numel() == 0 or float(S[0]) == 0.0:
        return 0
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float32).eps
    return int((S > S[0] * max(shape) * eps).sum())


def spectrum(adapter: Adapter) -> pd.DataFrame:
    """Singular values of ΔW = s·B·A per module, computed from the factors.

    Args:
        adapter: the adapter.

    Returns:
        A tidy frame, one row per module and singular value: ``adapter, layer, module, rank, value,
        energy`` where ``rank`` is the 0-based index of the singular value (descending), ``value``
        the singular value and ``energy`` its share σ²/Σσ² of the module's ||ΔW||_F² (NaN for a zero
        update). A module of rank r has r rows (trailing zeros included).
    """
    rows = []
    for path in adapter.modules:
        _, S, _ = module_svd(adapter, path)  # (r,)
        layer, module = split_module_name(path)
        total = float((S**2).sum())
        for k, s in enumerate(S.tolist()):
            rows.append(
                {
                    "adapter": adapter.name,
                    "layer": layer,
                    "module": module,
                    "rank": k,
                    "value": s,
                    "energy": s * s / total if total > 0 else float("nan"),
                }
            )
    return tidy(rows)


def effective_rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Entropy-based effective rank per module of a ``spectrum`` frame.

    Definition (Roy & Vetterli 2007): with p_k = σ_k / Σ_j σ_j (singular values normalized to sum
    1), erank = exp(-Σ_k p_k log p_k). It lies in [1, r]: 1 for a rank-1 update, r for r equal
    singular values. A zero update gets 0.

    Args:
        frame: the output of ``spectrum`` (columns ``layer, module, rank, value``; ``adapter`` is
            kept when present, so frames of several adapters may be concatenated).

    Returns:
        One row per module: ``[adapter,] layer, module, effective_rank, energy_top1`` where
        ``energy_top1`` = σ₁² / Σσ² is the share of ||ΔW||_F² in the top singular direction.

    Reference: Roy & Vetterli, "The effective rank: a measure of effective dimensionality", EUSIPCO 2007.
    """
    keys = [c for c in ("adapter", "layer", "module") if c in frame.columns]
    rows = []
    for key, g in frame.groupby(keys, sort=False, dropna=False):
        s = np.sort(g["value"].to_numpy(dtype=float))[::-1]  # (r,)
        total = s.sum()
        if total <= 0:
            erank, top1 = 0.0, float("nan")
        else:
            p = s[s > 0] / total
            erank = math.exp(-float((p * np.log(p)).sum()))
            top1 = float(s[0] ** 2 / (s**2).sum())
        row = dict(zip(keys, key, strict=True))
        if "layer" in row and pd.isna(row["layer"]):
            row["layer"] = None
        row.update(effective_rank=erank, energy_top1=top1)
        rows.append(row)
    return tidy(rows)
