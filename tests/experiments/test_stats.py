"""The seed statistics every reproduced number is reported with: mean and a 95% t interval."""

from __future__ import annotations

import math

import pytest

from workbench.errors import WorkbenchError
from workbench.experiments.stats import T975, mean_interval, t_quantile


def test_the_interval_is_mean_plus_minus_t_times_the_standard_error_by_hand():
    iv = mean_interval([1.0, 2.0, 3.0])  # mean 2, s = 1, se = 1/√3, t(2) = 4.303
    assert iv.mean == pytest.approx(2.0)
    assert iv.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert (iv.low, iv.high, iv.n) == (pytest.approx(2 - iv.half_width), pytest.approx(2 + iv.half_width), 3)


def test_the_table_agrees_with_scipy_where_scipy_is_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 31):
        assert T975[df - 1] == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4)
        assert t_quantile(df, use_scipy=False) == pytest.approx(t_quantile(df), abs=6e-4)
    assert t_quantile(1000, use_scipy=False) == pytest.approx(t_quantile(1000), abs=0.01)  # normal beyond 30


def test_one_value_has_no_interval_and_identical_values_a_zero_width_one():
    one = mean_interval([0.7])
    assert (one.low, one.high, one.n) == (0.7, 0.7, 1) and not one.excludes(0.0)
    same = mean_interval([0.5, 0.5, 0.5])
    assert same.half_width == 0 and same.excludes(0.0) and not same.excludes(0.5)


def test_bad_inputs_are_refused_with_the_fix():
    with pytest.raises(WorkbenchError, match="at least one value"):
        mean_interval([])
    with pytest.raises(WorkbenchError, match="NaN"):
        mean_interval([1.0, float("nan")])
    with pytest.raises(WorkbenchError, match="at least two values"):
        t_quantile(0)
    with pytest.raises(WorkbenchError, match="only 95%"):
        t_quantile(3, 0.9, use_scipy=False)
