"""Task LoRA banks and plain LoRAs for the routed experiments, trained on encoded features.

    bank = task_bank(lab, {"topic": feats_t, "language": feats_l}, steps=12, lr=3e-3, batch_size=4, seed=0)
    adapter, history = train_plain(lab, "lora", features, r=24, targets="attention", ...)

``task_bank`` loads the shipped ready adapters (``workbench.ready``: SmolLM2 task LoRAs of rank 8 on
the attention, trained independently) when the lab is their base and all of them exist, and
otherwise trains one rank-8 LoRA per task here on that task's features (a tiny test model has no
ready adapters). Both take features (``input_ids``, ``labels``, ``task``), so they run on token-id
tasks too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from workbench import ready
from workbench.errors import WorkbenchError
from workbench.training import fit

BANK_RANK = ready.COMMON["r"]  # 8, as the ready adapters


def train_plain(lab, name: str, features: Sequence[dict], *, r: int, targets, steps: int, lr: float,
                batch_size: int, seed: int, dropout: float = 0.0) -> tuple:
    """A new plain LoRA ``name`` (α = 2r, B = 0) trained on ``features``; (Adapter, history).

    ``dropout`` is not applied (the lab's plain adapters have none); it is refused when nonzero.
    """
    if dropout:
        raise WorkbenchError("train_plain trains plain LoRAs without dropout; pass dropout=0")
    adapter = lab.new_adapter(name, r=r, alpha=2 * r, targets=targets, seed=seed)
    params = [p for f in adapter.modules.values() for p in (f.A, f.B)]
    history = fit(lab, params, features, use=name, label=name, steps=steps, lr=lr, batch_size=batch_size,
                  seed=seed, progress=False)
    return adapter, history


def n_trainable(adapter) -> int:
    """The factors' parameter count of a plain adapter."""
    return sum(f.A.numel() + f.B.numel() for f in adapter.modules.values())


def uses_ready(lab, names: Sequence[str]) -> bool:
    """Whether ``lab`` is the ready adapters' base and every one of ``names`` is shipped."""
    if lab.name != ready.BASE or any(n not in ready.RECIPES for n in names):
        return False
    try:
        [ready.path(n) for n in names]
    except WorkbenchError:
        return False
    return True


def task_bank(lab, features: Mapping[str, Sequence[dict]], *, steps: int, lr: float, batch_size: int,
              seed: int) -> list:
    """One LoRA per task, added to ``lab`` under the task's name: the ready ones, or trained here."""
    names = list(features)
    if uses_ready(lab, names):
        return ready.load_all(lab, names)
    return [train_plain(lab, n, features[n], r=BANK_RANK, targets="attention", steps=steps, lr=lr,
                        batch_size=batch_size, seed=seed + i)[0] for i, n in enumerate(names)]


def final_loss(history: pd.DataFrame) -> float:
    """The mean task loss over the last quarter of the steps."""
    loss = history["task_loss"] if "task_loss" in history else history["loss"]
    return float(loss.tail(max(1, len(loss) // 4)).mean())
