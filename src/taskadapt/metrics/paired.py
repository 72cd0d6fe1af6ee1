"""Statistics over seeds: mean ± sample standard deviation, and paired differences with a t interval.

A comparison run on several seeds gives one value per (method, seed). :func:`summarize` reduces one
method's values to mean ± sample std (n - 1 in the denominator). :func:`paired_difference` compares
two methods seed by seed: the differences d_s = ours_s - other_s over the seeds where both have a
value, their mean and a two-sided Student-t confidence interval

    mean(d) ± t_{1 - alpha/2, n-1} * sd(d) / sqrt(n)

which needs n >= 2. :func:`verdict` reads the interval: ``better`` or ``worse`` when it excludes 0
(higher differences are better, as for Delta_m), else ``within noise``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats

NEEDS_TWO = "needs >= 2 seeds"


@dataclass(frozen=True)
class Summary:
    """Mean and sample std of ``n`` values; ``std`` is None below two values, ``mean`` None for none."""

    n: int
    mean: float | None
    std: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """``ours - other`` seed by seed, over the ``seeds`` where both have a finite value.

    ``low``/``high``/``half_width`` are the confidence interval (None when n < 2); ``verdict`` is
    ``better``, ``worse``, ``within noise`` or ``needs >= 2 seeds``.
    """

    seeds: list[int]
    differences: list[float]
    mean: float | None
    sd: float | None
    half_width: float | None
    low: float | None
    high: float | None
    confidence: float
    verdict: str

    @property
    def n(self) -> int:
        return len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, **asdict(self)}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def summarize(values: list[float | None]) -> Summary:
    """Mean ± sample std of the finite values of ``values`` (None and non-finite ones are skipped)."""
    kept = [float(v) for v in values if _finite(v)]
    if not kept:
        return Summary(0, None, None)
    std = statistics.stdev(kept) if len(kept) >= 2 else None
    return Summary(len(kept), statistics.fmean(kept), std)


def t_half_width(differences: list[float], confidence: float = 0.95) -> float | None:
    """Half-width of the two-sided Student-t interval of the mean of ``differences`` (None if n < 2)."""
    n = len(differences)
    if n < 2:
        return None
    t = float(stats.t.ppf(1.0 - (1.0 - confidence) / 2.0, n - 1))
    return t * statistics.stdev(differences) / math.sqrt(n)


def verdict(low: float | None, high: float | None) -> str:
    """``better`` (interval above 0), ``worse`` (below 0), ``within noise`` (contains 0) or
    ``needs >= 2 seeds`` (no interval)."""
    if low is None or high is None:
        return NEEDS_TWO
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "within noise"


def paired_difference(ours: Mapping[int, float | None], other: Mapping[int, float | None],
                      confidence: float = 0.95) -> PairedDifference:
    """Seed-by-seed ``ours - other`` (seed -> value maps), its mean and t confidence interval.

    Only seeds where both values are finite count; their number is the ``n`` of the interval.
    """
    seeds = [s for s in ours if s in other and _finite(ours[s]) and _finite(other[s])]
    diffs = [float(ours[s]) - float(other[s]) for s in seeds]
    mean = statistics.fmean(diffs) if diffs else None
    sd = statistics.stdev(diffs) if len(diffs) >= 2 else None
    half = t_half_width(diffs, confidence)
    low = high = None
    if mean is not None and half is not None:
        low, high = mean - half, mean + half
    return PairedDifference(seeds, diffs, mean, sd, half, low, high, confidence, verdict(low, high))


__all__ = ["NEEDS_TWO", "PairedDifference", "Summary", "paired_difference", "summarize", "t_half_width",
           "verdict"]
