"""The measures the experiments report, against hand computations."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from workbench.experiments.base import at_least, paired
from workbench.experiments.mixlora import mutual_information
from workbench.experiments.stats import mean_interval


def freq(rows):
    return pd.DataFrame(rows, columns=["group", "expert", "frequency"])


def test_mutual_information_of_task_and_expert_by_hand():
    disjoint = freq([("a", 0, 1.0), ("a", 1, 0.0), ("b", 0, 0.0), ("b", 1, 1.0)])
    assert mutual_information(disjoint, "group") == pytest.approx(1.0)  # the expert tells the task: 1 bit
    same = freq([("a", 0, 0.5), ("a", 1, 0.5), ("b", 0, 0.5), ("b", 1, 0.5)])
    assert mutual_information(same, "group") == pytest.approx(0.0)
    # p(e|a) = (3/4, 1/4), p(e|b) = (1/4, 3/4): I = 1 − H(3/4) bits; frequencies summing to k = 2 normalise
    skew = freq([("a", 0, 1.5), ("a", 1, 0.5), ("b", 0, 0.5), ("b", 1, 1.5)])
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert mutual_information(skew, "group") == pytest.approx(1 - h)


def test_paired_differences_use_the_seeds_both_arms_have():
    table = pd.DataFrame({"seed": [0, 1, 2, 0, 1], "arm": ["a"] * 3 + ["b"] * 2, "measure": "m", "task": "",
                          "value": [1.0, 2.0, 9.0, 0.5, 1.0]})
    d = paired(table, "m", "a", "b")
    assert d.n == 2 and d.mean == pytest.approx(0.75)  # seed 2 has no partner
    assert at_least(mean_interval([1.0, 1.1, 1.2])) is True
    assert at_least(mean_interval([-1.0, -1.1, -1.2])) is False
    assert at_least(mean_interval([-0.1, 0.2, 0.0])) is None and at_least(mean_interval([0.5])) is None
