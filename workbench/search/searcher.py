"""The registry of searchers and the ask/tell interface they share.

A searcher proposes candidates (``ask``) and learns from their scores (``tell``); the driver
(``workbench.search.run``) evaluates, keeps every candidate and stops at the budget or when the objective
stops improving. ``setup`` hands a searcher the space, the objective, the budget and the seed before the
first ``ask``; ``start`` (when given) is the first candidate a searcher proposes (the uniform sum, say),
as LoRAHub's search starts from a given point.

    SEARCHERS.names()                      # grid, random, nevergrad, adamerging
    SEARCHERS.get("nevergrad")(optimizer="CMA")
"""

from __future__ import annotations

from workbench.registry import Registry
from workbench.search.objective import Objective
from workbench.search.space import Candidate, SearchSpace


class Searcher:
    """Proposes merge settings and learns from their scores (``ask`` / ``tell``)."""

    def setup(self, space: SearchSpace, objective: Objective, *, budget: int, seed: int,
              start: Candidate | None = None) -> None:
        """Called once before the first ``ask``."""
        self.space, self.objective, self.budget, self.seed, self.start = space, objective, budget, seed, start

    def ask(self) -> Candidate | None:
        """The next candidate to evaluate (None: nothing left to propose)."""
        raise NotImplementedError

    def tell(self, candidate: Candidate, value: float) -> None:
        """``value``: the number to maximize (``Objective.scalar``) of the last candidate asked."""


SEARCHERS: Registry[type[Searcher]] = Registry(
    "searcher", base=Searcher, flags=("gradient_free", "gradient", "model_based"),
    package="workbench.search.searchers")  # one searcher per file of this package, found by scan
"""``gradient_free``: uses only the objective's values; ``gradient``: follows a differentiable surrogate
(AdaMerging's entropy), not the objective; ``model_based``: adapts its proposals to the values told."""
