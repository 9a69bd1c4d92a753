"""RoutingRecord: what one router decided in one forward pass, the common telemetry of every mechanism.

A router hands its record to its ``hook_route`` HookPoint; ``Workbench.run(..., record="*.hook_route")``
(or ``workbench.hooks.record``) collects them like any other hook value. Every view of the route lab
(rank activations, expert load, token routing) is computed from records plus a per-sample task id.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd
import torch


@dataclass(frozen=True)
class RoutingRecord:
    """One router's decision for a batch. E is the number of experts (ranks, adapters, branches).

    Attributes:
        scores: (B, T, E) what the router computed before selection (logits, sigmoid scores,
            rank activations), without any balancing bias.
        weights: (B, T, E) the gate actually applied; zero for experts not selected.
        selected: (B, T, k) indices of the selected experts (top-k routers), or None (dense routing).
        bias: (E,) the balancing bias at the time of the forward (bias-update routers), or None.
    """

    scores: torch.Tensor
    weights: torch.Tensor
    selected: torch.Tensor | None = None
    bias: torch.Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        """(B, T, E), like a tensor's (so caches can show it)."""
        return self.weights.shape

    @property
    def n_experts(self) -> int:
        return self.weights.shape[-1]

    @property
    def active(self) -> torch.Tensor:
        """(B, T, E) bool: which experts each token used (selected, or non-zero weight when dense)."""
        if self.selected is None:
            return self.weights != 0
        mask = torch.zeros(self.weights.shape, dtype=torch.bool, device=self.weights.device)
        return mask.scatter_(-1, self.selected, True)

    def counts(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(E,) how many tokens used each expert; ``mask`` (B, T) keeps only real tokens."""
        active = self.active
        if mask is not None:
            active = active & mask.bool()[..., None]
        return active.reshape(-1, self.n_experts).sum(0)

    def detach(self) -> RoutingRecord:
        return replace(self, **{f.name: _map(getattr(self, f.name), lambda t: t.detach().cpu())
                                for f in fields(self)})

    @staticmethod
    def concat(parts: list[RoutingRecord]) -> RoutingRecord:
        """Join the records of successive forwards (incremental decoding) along the token axis."""
        first = parts[0]
        return replace(first, scores=torch.cat([p.scores for p in parts], 1),
                       weights=torch.cat([p.weights for p in parts], 1),
                       selected=None if first.selected is None else torch.cat([p.selected for p in parts], 1),
                       bias=parts[-1].bias)

    def to_frame(self) -> pd.DataFrame:
        """Long frame: ``batch, token, expert, score, weight, active`` (one row per token and expert)."""
        b, t, e = self.weights.shape
        index = np.indices((b, t, e)).reshape(3, -1)
        return pd.DataFrame({
            "batch": index[0], "token": index[1], "expert": index[2],
            "score": self.scores.detach().float().cpu().reshape(-1).numpy(),
            "weight": self.weights.detach().float().cpu().reshape(-1).numpy(),
            "active": self.active.cpu().reshape(-1).numpy(),
        })


def _map(value, fn):
    return None if value is None else fn(value)
