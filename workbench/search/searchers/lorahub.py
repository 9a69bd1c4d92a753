"""nevergrad: gradient-free search with a nevergrad optimizer, as LoRAHub searches its composition weights.

LoRAHub (Huang et al., 2023; ``lorahub/algorithm.py``) runs ``ng.optimizers.NGOpt`` on the K composition
weights in [-1.5, 1.5] from 0, minimizing the few-shot loss plus 0.05·Σ|wᵢ|, for a budget of evaluations.
Here the same optimizers (``NGOpt``, ``OnePlusOne``, ``CMA``, ``TwoPointsDE``, ``PSO``) search the
space's unit cube (weights, density, method) and maximize the objective (nevergrad minimizes −value).

Deviations: the box is the space's (default weights in [0, 1.5], not [-1.5, 1.5]), the optimizer starts
from the ``start`` candidate (the uniform sum in ``search``; LoRAHub starts from 0), and the L1 penalty is
left out (``l1`` adds it back: value − l1·Σ|wᵢ|). The method coordinate is a continuous one cut into bins
(``SearchSpace.decode``), not a nevergrad ``Choice``.

Reference: Huang et al., "LoraHub: Efficient Cross-Task Generalization via Dynamic LoRA Composition",
COLM 2024 (arXiv 2307.13269); Rapin & Teytaud, Nevergrad (2018).
"""

from __future__ import annotations

import warnings

import numpy as np

from workbench.errors import MissingPackageError
from workbench.search.searcher import SEARCHERS, Searcher
from workbench.search.space import Candidate

OPTIMIZERS = ("NGOpt", "OnePlusOne", "CMA", "TwoPointsDE", "PSO")


@SEARCHERS.register("nevergrad", flags=("gradient_free", "model_based"), choices={"optimizer": OPTIMIZERS},
                    bounds={"l1": (0.0, None)})
class NevergradSearch(Searcher):
    """A nevergrad optimizer (LoRAHub's NGOpt by default) on the space's unit cube.

    Args:
        optimizer: the nevergrad optimizer's name (``ng.optimizers.registry``).
        l1: LoRAHub's penalty on the weights' absolute sum (0: none).
    """

    def __init__(self, optimizer: str = "NGOpt", l1: float = 0.0):
        self.optimizer, self.l1 = optimizer, float(l1)

    def setup(self, space, objective, *, budget, seed, start=None) -> None:
        super().setup(space, objective, budget=budget, seed=seed, start=start)
        try:
            import nevergrad as ng
        except ImportError as e:
            raise MissingPackageError("the nevergrad searcher needs nevergrad: pip install nevergrad==1.0.12"
                                      ) from e
        # NGOpt's COBYLA warns from whatever thread asks: filtered for good, not only around ask/tell
        warnings.filterwarnings("ignore", message="COBYLA: Invalid RHOEND")
        init = space.encode(start) if start is not None else np.full(space.dims, 0.5)
        with warnings.catch_warnings():  # set_bounds warns before set_mutation narrows σ
            warnings.simplefilter("ignore")
            param = ng.p.Array(init=init).set_bounds(0.0, 1.0).set_mutation(sigma=0.25)  # 4σ across the box
            param.random_state = np.random.RandomState(seed)  # same seed, same candidates
            self.opt = ng.optimizers.registry[self.optimizer](parametrization=param, budget=max(budget, 1),
                                                              num_workers=1)
        self._asked: dict[tuple, object] = {}

    def ask(self) -> Candidate | None:
        with warnings.catch_warnings():  # nevergrad's sub-optimizers warn about their own settings
            warnings.simplefilter("ignore")
            point = self.opt.ask()
        c = self.space.decode(point.value, note=self.optimizer)
        self._asked[c.key()] = point
        return c

    def tell(self, candidate: Candidate, value: float) -> None:
        point = self._asked.pop(candidate.key(), None)
        if point is None:
            return
        penalty = self.l1 * sum(abs(w) for w in candidate.weights.values())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.opt.tell(point, -(float(value) - penalty))
