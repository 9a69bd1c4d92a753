"""random: candidates drawn uniformly from the search space (the baseline every search must beat).

Reference: Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 2012.
"""

from __future__ import annotations

import numpy as np

from workbench.search.searcher import SEARCHERS, Searcher
from workbench.search.space import Candidate


@SEARCHERS.register("random", flags=("gradient_free",))
class RandomSearch(Searcher):
    """Uniform random candidates from the box (seeded), after the ``start`` candidate when one is given."""

    def setup(self, space, objective, *, budget, seed, start=None) -> None:
        super().setup(space, objective, budget=budget, seed=seed, start=start)
        self.rng = np.random.default_rng(seed)
        self._started = start is None

    def ask(self) -> Candidate | None:
        if not self._started:
            self._started = True
            return self.start
        return self.space.sample(self.rng)
