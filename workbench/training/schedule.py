"""The one learning-rate schedule of every training run: linear warm-up, then linear decay to zero.

With ``n_warm = max(1, ⌊warmup · steps⌋)`` the factor on the peak learning rate at step s is::

    min((s + 1) / n_warm,  max(0, (steps − s) / max(1, steps − n_warm)))
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def warmup_linear(steps: int, warmup: float) -> Callable[[int], float]:
    """The factor on the peak learning rate at step s (0-based) of a ``steps``-step run."""
    n_warm = max(1, int(warmup * steps))
    return lambda s: min((s + 1) / n_warm, max(0.0, (steps - s) / max(1, steps - n_warm)))


def schedule(optimizer: torch.optim.Optimizer, steps: int,
             warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler that moves ``optimizer``'s learning rates by ``warmup_linear`` (one ``step()`` a step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(steps, warmup))
