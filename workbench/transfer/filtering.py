"""Filtering: keep the synthetic inputs the discriminator takes for real (Trans-LoRA's rejection step).

Two rules, on ``p(real)`` of each input (``discriminator.real_probability``):

- ``threshold``: keep every input with ``p(real) ≥ threshold`` (rejection sampling; 0.5 is "the
  discriminator says real");
- ``top``: keep the ``ceil(top · N)`` inputs of highest ``p(real)`` (ties broken by input order), for
  when the discriminator is confident about nothing and a threshold would keep none.

The scores come back as a tidy frame, one row per input: ``sample`` (its index), ``text``, ``value``
(``p(real)``), ``rank`` (0 = most real-like) and ``kept``.

Reference: Wang et al., "Trans-LoRA: towards data-free Transferable Parameter Efficient Finetuning",
NeurIPS 2024 (arXiv 2405.17258): synthetic samples the discriminator rejects are dropped. Deviations:
one filtering round over a fixed pool (the paper keeps generating until enough samples pass); the
``top`` rule is ours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.tasks import Example, Task
from workbench.transfer.discriminator import CHOICES, real_probability


@dataclass
class Filtered:
    """What ``filter_inputs`` returns: the kept inputs (in their original order) and the score frame."""

    kept: list[Example]
    scores: pd.DataFrame  # sample, text, value, rank, kept

    def __iter__(self):  # allows ``kept, scores = filter_inputs(...)``
        return iter((self.kept, self.scores))


def keep_mask(p_real: torch.Tensor, *, threshold: float | None = 0.5,
              top: float | None = None) -> torch.Tensor:
    """Which inputs stay: ``p_real ≥ threshold``, or (when ``top`` is given) the top ``ceil(top·N)``.

    Args:
        p_real: (N,) probabilities of "real".
        threshold: in [0, 1]; ignored when ``top`` is given.
        top: a fraction in (0, 1].

    Returns:
        (N,) bool.
    """
    p = torch.as_tensor(p_real, dtype=torch.float32).flatten()  # (N,)
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int | float) or not 0 < top <= 1:
            raise WorkbenchError(f"top={top!r} must be a fraction in (0, 1] (top=0.5 keeps the better half)")
        order = sorted(range(len(p)), key=lambda i: (-float(p[i]), i))
        mask = torch.zeros(len(p), dtype=torch.bool)
        mask[order[:math.ceil(top * len(p))]] = True
        return mask
    if threshold is None or isinstance(threshold, bool) or not isinstance(threshold, int | float) \
            or not 0 <= threshold <= 1:
        raise WorkbenchError(f"threshold={threshold!r} must be a probability in [0, 1] (e.g. 0.5), "
                             "or give top=... instead")
    return p >= threshold


def score_frame(inputs: Sequence[Example], p_real: torch.Tensor, mask: torch.Tensor) -> pd.DataFrame:
    """The tidy frame ``sample, text, value, rank, kept`` of scored inputs."""
    p = [float(v) for v in p_real]
    order = sorted(range(len(p)), key=lambda i: (-p[i], i))
    rank = {i: r for r, i in enumerate(order)}
    return pd.DataFrame({"sample": range(len(p)), "text": [e.prompt for e in inputs], "value": p,
                         "rank": [rank[i] for i in range(len(p))], "kept": [bool(m) for m in mask]})


def select(inputs: Sequence[Example], p_real: torch.Tensor, *, threshold: float | None = 0.5,
           top: float | None = None) -> Filtered:
    """Keep ``inputs`` by their given ``p_real`` (see ``keep_mask``)."""
    inputs = list(inputs)
    if len(inputs) != len(p_real):
        raise WorkbenchError(f"{len(inputs)} inputs but {len(p_real)} scores; give one p(real) per input")
    mask = keep_mask(p_real, threshold=threshold, top=top)
    return Filtered([e for e, m in zip(inputs, mask, strict=True) if m], score_frame(inputs, p_real, mask))


def filter_inputs(lab, discriminator: str, task: Task, inputs: Sequence[Example], *,
                  threshold: float | None = 0.5, top: float | None = None,
                  choices: tuple[str, str] = CHOICES, batch_size: int = 16) -> Filtered:
    """Score ``inputs`` with the discriminator LoRA of ``lab`` and keep the real-looking ones."""
    keep_mask(torch.zeros(0), threshold=threshold, top=top)  # bad rules are refused before any forward
    p = real_probability(lab, discriminator, task, inputs, choices=choices, batch_size=batch_size)
    return select(inputs, p, threshold=threshold, top=top)
