"""95% intervals for the figures the package reports.

- `wilson_interval`: an accuracy measured once on n images is a binomial proportion; its Wilson
  score interval stays inside [0, 1] and keeps its coverage near 0% and 100%, where the normal
  ("Wald") interval does not.
- `t_interval`: a figure measured over several seeds (independent runs) is a sample mean; its
  interval uses Student's t with n - 1 degrees of freedom (n is small: 3 seeds, not 30).

Wilson's is closed-form (the standard library's normal quantile); the t quantile comes from scipy
(`t.ppf`, the `[tune]` extra), imported when called so that importing this module costs nothing.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


def wilson_interval(correct: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """The Wilson score interval of `correct` successes out of `n` (n ≥ 1), without continuity
    correction (scipy's `binomtest(...).proportion_ci(method="wilson")`). Closed form with the
    normal quantile from the standard library, so every `validate`/`test` can print it."""
    if n < 1 or not 0 <= correct <= n:
        raise ValueError(f"wilson_interval needs 0 <= correct <= n and n >= 1, got correct={correct}, n={n}")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p, z2 = correct / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(max(0.0, center - half), min(1.0, center + half))


def accuracy_interval(accuracy: float, n: int, confidence: float = CONFIDENCE) -> Interval:
    """`wilson_interval` for an accuracy reported as a fraction of `n` images (the count of
    correct images is `accuracy * n`, rounded: a logged mean of 0/1 values over n images)."""
    return wilson_interval(round(accuracy * n), n, confidence)


@dataclass(frozen=True)
class SampleSummary:
    """Mean, sample standard deviation and the t-interval of the mean of `n` values."""

    n: int
    mean: float
    std: float | None  # None for n = 1 (no spread to measure)
    interval: Interval | None  # None for n = 1

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "ci95_low": None if self.interval is None else self.interval.low,
            "ci95_high": None if self.interval is None else self.interval.high,
        }


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> SampleSummary:
    """Summarise independent measurements: mean ± t_{(1+c)/2, n-1} · s / √n."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("t_interval needs at least one value")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return SampleSummary(1, mean, None, None)
    from scipy.stats import t

    std = statistics.stdev(values)
    half = float(t.ppf((1 + confidence) / 2, len(values) - 1)) * std / math.sqrt(len(values))
    return SampleSummary(len(values), mean, std, Interval(mean - half, mean + half))
