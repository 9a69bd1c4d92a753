"""Mean and a 95% Student-t interval over seeds: what every reproduced number is reported with.

    >>> mean_interval([0.5, 0.6, 0.7])
    Interval(mean=0.6, low=0.35..., high=0.84..., n=3)

The t quantile comes from scipy when it is installed, else from the table below (two-sided 95%,
df = 1..30; beyond 30 the normal 1.96 is within 2% of the true quantile).
Reference: Student (W. S. Gosset), "The probable error of a mean", Biometrika 6(1), 1908; the table
values are scipy.stats.t.ppf(0.975, df) rounded to 3 decimals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from workbench.errors import WorkbenchError

# two-sided 95% t quantiles, t_{0.975, df} for df = 1..30
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval over ``n`` values (low = high = mean when n = 1)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval (n ≥ 2): the difference is "significant"."""
        return self.n >= 2 and not self.low <= value <= self.high

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:.3f} (n=1, no interval)"
        return (f"{self.mean:.3f} ± {self.half_width:.3f} (95% CI [{self.low:.3f}, {self.high:.3f}], "
                f"n={self.n})")


def t_quantile(df: int, level: float = 0.95, *, use_scipy: bool = True) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom.

    Uses scipy when installed (any level); otherwise the 95% table (df > 30: the normal 1.96).
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise WorkbenchError(f"degrees of freedom must be a whole number ≥ 1, got {df!r}; "
                             "an interval needs at least two values")
    if not 0 < level < 1:
        raise WorkbenchError(f"level={level!r} must be between 0 and 1 (e.g. 0.95)")
    if use_scipy:
        try:
            from scipy import stats
        except ImportError:
            pass
        else:
            return float(stats.t.ppf(0.5 + level / 2, df))
    if level != 0.95:
        raise WorkbenchError(f"without scipy only 95% intervals are available (got level={level}); "
                             "install scipy or use level=0.95")
    return T975[df - 1] if df <= len(T975) else 1.96


def mean_interval(values: Iterable[float], level: float = 0.95, *, use_scipy: bool = True) -> Interval:
    """Mean and the t interval mean ± t·s/√n of ``values`` (NaNs are refused, not dropped)."""
    xs = [float(v) for v in values]
    if not xs:
        raise WorkbenchError("mean_interval needs at least one value (no seeds finished?)")
    if any(math.isnan(x) for x in xs):
        raise WorkbenchError(f"mean_interval got NaN among {xs}; drop or fix the failed runs first")
    n = len(xs)
    mean = sum(xs) / n
    if n == 1:
        return Interval(mean, mean, mean, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))  # sample standard deviation
    half = t_quantile(n - 1, level, use_scipy=use_scipy) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)
