"""Reproductions of papers' claims on the real model: one registered experiment per file.

    from workbench.experiments import EXPERIMENTS, reproduce
    reproduce("mixlora", quick=True)          # results/quick/mixlora.{csv,md}

``lora-workbench reproduce NAME`` and ``make reproduce NAME=...`` run the same. This is the top layer
of the engine: it drives the lab (``workbench.lab``) and nothing below imports it.
"""

from workbench.experiments.base import EXPERIMENTS, Experiment, Schedule, Verdict
from workbench.experiments.files import results_root
from workbench.experiments.runner import Reproduction, reproduce
from workbench.experiments.stats import Interval, mean_interval, t_quantile

__all__ = ["EXPERIMENTS", "Experiment", "Interval", "Reproduction", "Schedule", "Verdict", "mean_interval",
           "reproduce", "results_root", "t_quantile"]
