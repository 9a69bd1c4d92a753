"""Search with evaluation in the loop: which weights, density and merge method to use for a set of adapters.

    from workbench.search import LabObjective, SearchSpace, search
    space = SearchSpace(["arithmetic", "topic"], methods=["task_arithmetic", "ties"], density=(0.1, 1.0))
    objective = LabObjective(lab, space.adapters, tasks, limit=8)        # mean normalized score over tasks
    run = search(objective, space, "nevergrad", budget=30, patience=10, seed=0, start=space.uniform())
    run.frame, run.best, pareto_front(run.frame, "arithmetic", "topic")

Searchers (``SEARCHERS``, one file each): ``grid`` and ``random`` (baselines), ``nevergrad`` (LoRAHub's
gradient-free search: NGOpt, OnePlusOne, CMA ...), ``adamerging`` (AdaMerging's entropy minimization on
unlabeled inputs, task- or layer-wise, for the exact weighted sum). A layer of its own above evaluation:
it merges (``workbench.merging``) and scores (``workbench.evaluation``).
"""

from workbench.search.adamerging import EntropyLoss
from workbench.search.frames import best, pareto_front, wide
from workbench.search.merged import build
from workbench.search.objective import KINDS, FunctionObjective, LabObjective, Objective
from workbench.search.run import SearchRun, search
from workbench.search.searcher import SEARCHERS, Searcher
from workbench.search.space import LINEAR, Candidate, SearchSpace
from workbench.search.workers import Workers

__all__ = [
    "Workers",
    "KINDS",
    "LINEAR",
    "SEARCHERS",
    "Candidate",
    "EntropyLoss",
    "FunctionObjective",
    "LabObjective",
    "Objective",
    "SearchRun",
    "SearchSpace",
    "Searcher",
    "best",
    "build",
    "pareto_front",
    "search",
    "wide",
]
