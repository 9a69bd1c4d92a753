"""gap_over_steps: the equivalent-gradient gap per step, tidy, from a reproduction's measure table.

The LoRA-Pro experiment (``workbench.experiments.lora_pro``) records, per arm and step, the mean over
modules of ``‖g̃ − G‖_F / ‖G‖_F`` (measures ``gap_lora``, ``gap_lorapro``) and of the scale-free
``sin∠(g̃, G)`` (``sine_lora``, ``sine_lorapro``), with the step in the ``task`` cell (``step 07``).
``workbench.experiments.summary.measure_table`` turns them into mean and 95% interval over seeds;
this frame is what the gradient-gap view (``widgets.gradient_gap``) draws.

Reference: Wang et al., "LoRA-Pro: Are Low-Rank Adapters Properly Optimized?", ICLR 2025 (the gap to
full fine-tuning along training).
"""

from __future__ import annotations

import pandas as pd

from workbench.errors import WorkbenchError

COLUMNS = ["arm", "kind", "quantity", "step", "mean", "low", "high", "n"]


def gap_over_steps(measures: pd.DataFrame, *, own: bool = False) -> pd.DataFrame:
    """Tidy rows ``arm, kind, quantity, step, mean, low, high, n`` of the per-step gap measures.

    Args:
        measures: a measure table (``arm, measure, task, mean, low, high, n``, as
            ``summary.measure_table`` or ``full_results(name)[1]``), with rows ``gap_<kind>`` /
            ``sine_<kind>`` whose task is ``step NN``.
        own: keep only each arm's own kind (the g̃ the arm steps with: ``lora`` on the ``lora`` arm,
            ``lorapro`` on the ``lorapro`` arm).

    Returns:
        Sorted by arm, kind, quantity and step; ``quantity`` is ``gap`` or ``sine``.
    """
    need = {"arm", "measure", "task", "mean", "low", "high", "n"}
    if not need <= set(measures.columns):
        raise WorkbenchError(f"gap_over_steps takes a measure table with columns {sorted(need)}; got "
                             f"{sorted(measures.columns)} (use summary.measure_table on the per-seed table)")
    part = measures[measures.measure.str.match(r"^(gap|sine)_") & measures.task.str.startswith("step ")]
    if part.empty:
        return pd.DataFrame(columns=COLUMNS)
    split = part.measure.str.split("_", n=1)
    out = pd.DataFrame({"arm": part.arm.to_numpy(), "kind": split.str[1].to_numpy(),
                        "quantity": split.str[0].to_numpy(),
                        "step": part.task.str.removeprefix("step ").astype(int).to_numpy(),
                        "mean": part["mean"].to_numpy(), "low": part.low.to_numpy(),
                        "high": part.high.to_numpy(), "n": part.n.to_numpy()})
    if own:
        out = out[out.arm == out.kind]
    return out.sort_values(["arm", "kind", "quantity", "step"]).reset_index(drop=True)[COLUMNS]
