"""The face of the engine: ``Workbench``, one base model with its adapters, routers and what it applies.

Its methods are thin: each checks its inputs (``checks``), calls the labs below (adapters, routing,
merging, training, evaluation) and undoes what it installed when a call fails (``checks.rollback``).
"""

from workbench.lab.workbench import Workbench

__all__ = ["Workbench"]
