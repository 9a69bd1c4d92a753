"""Evaluation: scores of adapters on tasks, and what they mean next to the solo adapters.

    lab.evaluate(["arith", merged, None], tasks)     # tidy scores; `merged` need not be in the lab
    owner("arithmetic", lab.adapters)                 # the adapter whose lineage says it trained on it
    tasks_of(lab.adapters["m"], lab.adapters)         # what an adapter (or a merge's sources) trained on
    against_solo(lab, merged, sources, tasks, limit=8)  # merged vs each task's solo adapter, normalized
    with installed(lab, adapter) as name: ...         # an adapter in the lab privately, always removed
    base_cache.clear(); base_cache.stats()            # the base model's kept scores (evaluate reuses them)

Views (``widgets.MergeBuilder``, the dashboard) and the JupyterLab sidebar read these; none of them
decides ownership or normalizes on its own.
"""

from workbench.adapters.lineage import own_tasks, tasks_of
from workbench.evaluation import base_cache
from workbench.evaluation.ownership import owner, owners
from workbench.evaluation.private import installed
from workbench.evaluation.scores import BASE, evaluate, relative_to_base
from workbench.evaluation.solo import COLUMNS, against_solo, normalize, normalized

__all__ = [
    "BASE",
    "base_cache",
    "COLUMNS",
    "against_solo",
    "evaluate",
    "installed",
    "normalize",
    "normalized",
    "own_tasks",
    "owner",
    "owners",
    "relative_to_base",
    "tasks_of",
]
