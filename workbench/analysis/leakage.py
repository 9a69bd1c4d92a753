"""Token leakage between composed adapters (TARA's leakage map) -> a tidy frame.

    frame = leakage(full, {"topic": without_topic, "language": without_language},
                    {"topic": at_topic_answers, "language": at_language_answers}, condition="masked")

``full`` holds the logits (N, V) of N token positions with every adapter of a composition on;
``without[s]`` the logits of the same positions with adapter ``s`` taken out; ``targets[d]`` (N,) marks
the positions where adapter ``d``'s tokens are predicted. The leakage of source ``s`` into target
``d`` is the mean over ``d``'s positions of KL(p_full ‖ p_without s), in nats: how much removing
``s`` changes ``d``'s predictions. The diagonal (s = d) is the adapter's effect on its own tokens;
off the diagonal it is leakage. Without masks every adapter acts on every token, so the off-diagonal
is large; TARA's token masks confine each adapter to its own tokens, so what is left is what flows
through attention from its tokens to later ones.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch

from workbench.errors import WorkbenchError

COLUMNS = ["condition", "source", "target", "leakage", "tokens"]


def kl_rows(full: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """KL(softmax(full) ‖ softmax(other)) per row (N,), in nats, computed in float32."""
    lp, lq = full.float().log_softmax(-1), other.float().log_softmax(-1)
    return (lp.exp() * (lp - lq)).sum(-1)


def leakage(full: torch.Tensor, without: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor], *,
            condition: str = "") -> pd.DataFrame:
    """``condition, source, target, leakage, tokens``: one row per (source adapter, target adapter).

    Args:
        full: (N, V) logits with every adapter on.
        without: source -> (N, V) logits with that adapter taken out.
        targets: target -> (N,) bool, the positions that predict that adapter's tokens.
        condition: a label for the composition (e.g. "masked", "plain sum").
    """
    rows = []
    for source, other in without.items():
        if other.shape != full.shape:
            raise WorkbenchError(f"logits without {source!r} are {tuple(other.shape)} but the full ones are "
                                 f"{tuple(full.shape)}; score the same positions in every run")
        kl = kl_rows(full, other)  # (N,)
        for target, where in targets.items():
            where = torch.as_tensor(where, dtype=torch.bool, device=kl.device)
            if where.shape != kl.shape:
                raise WorkbenchError(f"targets[{target!r}] has shape {tuple(where.shape)}; expected "
                                     f"({kl.shape[0]},), one flag per scored position")
            n = int(where.sum())
            rows.append((condition, source, target, float(kl[where].mean()) if n else float("nan"), n))
    return pd.DataFrame(rows, columns=COLUMNS)


def cross_and_own(frame: pd.DataFrame) -> tuple[float, float]:
    """(mean off-diagonal leakage, mean diagonal own effect) of one condition's frame."""
    cross = frame[frame.source != frame.target]["leakage"]
    own = frame[frame.source == frame.target]["leakage"]
    return float(cross.mean()), float(own.mean())
