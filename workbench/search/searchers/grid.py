"""grid: the full grid over the space (every weight, the density, every method), in order.

Reference: the exhaustive grid of hyper-parameter sweeps (mergekit users' weight grids; Bergstra & Bengio,
JMLR 2012, for why it loses to random search at equal budget in more than two dimensions).
"""

from __future__ import annotations

from workbench.search.searcher import SEARCHERS, Searcher
from workbench.search.space import Candidate


@SEARCHERS.register("grid", flags=("gradient_free",), bounds={"points": (0, 100)})
class GridSearch(Searcher):
    """Every point of a regular grid, ``points`` values per coordinate (0: the densest grid the budget holds).

    Args:
        points: values per continuous coordinate, ends included; 0 picks the largest number whose grid
            (× the methods) fits the budget (at least 2 when the budget allows the corners).
    """

    def __init__(self, points: int = 0):
        self.points = int(points)

    def setup(self, space, objective, *, budget, seed, start=None) -> None:
        super().setup(space, objective, budget=budget, seed=seed, start=start)
        points = self.points
        if points == 0:
            cont = len(space.adapters) + (space.density is not None)
            points = 1
            while (points + 1) ** cont * len(space.methods) <= budget:
                points += 1
        self.queue = space.grid(points)
        self.points_used = points

    def ask(self) -> Candidate | None:
        return self.queue.pop(0) if self.queue else None
