"""HookPoint: an identity module that marks a place whose value can be recorded or edited.

Recording never touches module logic: a layer we own writes ``y = self.hook_delta(y)``; everything
else happens in forward hooks that a recorder adds and removes.

Reference: TransformerLens ``hook_points.py`` (the same idea, much smaller).
"""

from __future__ import annotations

import torch
from torch import nn


class HookPoint(nn.Module):
    """Identity. ``register_forward_hook`` on it sees (and may replace) the value passing through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
