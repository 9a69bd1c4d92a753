"""adamerging: merge coefficients learned by entropy minimization on unlabeled inputs (gradient-based).

Each ``ask`` takes ``steps`` Adam steps on the coefficients λ of the exact weighted sum (task-wise: one per
adapter; layer-wise: one per adapter and layer) against ``workbench.search.adamerging.EntropyLoss`` on the
objective's task prompts (their inputs only: no labels), clips λ to the space's weight box and proposes the
result; the driver scores it with the objective, which the searcher does not use (``tell`` is ignored: the
entropy is its only guide, as in the paper). ``history`` keeps ``step, entropy`` of every step.

Reference: Yang et al., "AdaMerging: Adaptive Model Merging for Multi-Task Learning", ICLR 2024. Deviations
(CPU scale): a learning rate of 0.05 and a few steps per evaluation instead of 1e-3 for 500 steps;
the unlabeled inputs are the objective's own examples (the paper's test inputs, used transductively too).
"""

from __future__ import annotations

import pandas as pd
import torch

from workbench.errors import WorkbenchError
from workbench.search.adamerging import EntropyLoss
from workbench.search.searcher import SEARCHERS, Searcher
from workbench.search.space import LINEAR, Candidate
from workbench.tasks.encoding import prompt_ids

GRANULARITIES = ("task", "layer")


@SEARCHERS.register("adamerging", flags=("gradient",), choices={"granularity": GRANULARITIES},
                    bounds={"lr": (0.0, None), "steps": (1, 1000), "init": (-10.0, 10.0),
                            "batch_size": (1, 256)})
class AdaMergingSearch(Searcher):
    """AdaMerging: Adam on the weighted sum's coefficients to minimize the predictions' entropy.

    Args:
        granularity: ``"task"`` (one coefficient per adapter) or ``"layer"`` (per adapter and layer).
        lr: Adam's learning rate.
        steps: Adam steps between two proposals.
        init: every coefficient's starting value (the paper's 0.3).
        batch_size: prompts per forward pass.
    """

    def __init__(self, granularity: str = "task", lr: float = 0.05, steps: int = 5, init: float = 0.3,
                 batch_size: int = 8):
        self.granularity, self.lr, self.steps, self.init = granularity, float(lr), int(steps), float(init)
        self.batch_size = int(batch_size)

    def setup(self, space, objective, *, budget, seed, start=None) -> None:
        super().setup(space, objective, budget=budget, seed=seed, start=start)
        if not hasattr(objective, "task_objs"):
            raise WorkbenchError("adamerging differentiates the lab's model: give it a LabObjective "
                                 "(workbench.search.LabObjective(lab, adapters, tasks))")
        if LINEAR not in space.methods:
            raise WorkbenchError(f"adamerging learns the coefficients of {LINEAR!r} (the one merge linear in "
                                 f"them); add it to the space's methods (now {list(space.methods)})")
        lab = objective.lab
        prompts = {t: [prompt_ids(lab.tokenizer, task, e) for e in task.eval]
                   for t, task in objective.task_objs.items()}
        self.loss = EntropyLoss(lab, list(space.adapters), prompts, layerwise=self.granularity == "layer",
                                batch_size=self.batch_size)
        torch.manual_seed(seed)
        self.lam = self.loss.initial(self.init)
        self.adam = torch.optim.Adam([self.lam], lr=self.lr)
        self.rows: list[dict] = []

    @property
    def history(self) -> pd.DataFrame:
        """``step, entropy`` (the entropy before each step)."""
        return pd.DataFrame(self.rows, columns=["step", "entropy"])

    def ask(self) -> Candidate | None:
        lo, hi = self.space.weights
        for _ in range(self.steps):
            value, grad = self.loss.value_and_grad(self.lam)
            self.rows.append({"step": len(self.rows), "entropy": value})
            self.adam.zero_grad()
            self.lam.grad = grad
            self.adam.step()
            with torch.no_grad():
                self.lam.clamp_(lo, hi)
        weights, layers = self.loss.weights(self.lam)
        return Candidate(weights, LINEAR, None, layer_weights=layers,
                         note=f"adamerging {self.granularity}-wise, step {len(self.rows)}")
