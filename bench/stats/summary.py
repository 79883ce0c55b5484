"""Latency summaries and the distribution-free intervals of percentiles (kernels/summary.py,
kernels/order_stats.py). Quantiles are type 7, numpy's default."""
from __future__ import annotations

import numpy as np

from bench.stats.checks import (
    Interval, LatencySummary, _check_durations, _check_q, _check_values, check_confidence,
)
from bench_kernels import order_stats as _os
from bench_kernels.summary import summarize_sorted

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
_QS = np.array([p / 100 for p in PERCENTILES], dtype=np.float64)


def latency_summary(latencies_ns: np.ndarray) -> LatencySummary:
    arr = _check_durations(latencies_ns, "latencies")
    out = summarize_sorted(np.sort(arr), _QS) / 1e6
    p50, p90, p95, p99, p999, mean, lo, hi = (float(v) for v in out)
    return LatencySummary(int(arr.size), mean, lo, hi, p50, p90, p95, p99, p999)


def quantiles(values: np.ndarray, qs: np.ndarray | list[float]) -> np.ndarray:
    """Type-7 (numpy default) quantiles of positive durations; qs in [0, 1]."""
    arr = _check_durations(values, "values")
    q = np.asarray(qs, dtype=np.float64)
    if q.ndim != 1 or not np.all(np.isfinite(q)) or np.any((q < 0) | (q > 1)):
        raise ValueError(f"quantile probabilities must be in [0, 1], got {qs!r}")
    return summarize_sorted(np.sort(arr), q)[: q.size]


def min_samples_for_bound(q: float, confidence: float) -> int:
    """Fewest samples for an upper bound of the q-quantile at `confidence` (662 for p99 at 99%)."""
    q = _check_q(q)
    if q <= 0 or q >= 1:
        raise ValueError(f"quantile {q!r}: must be strictly between 0 and 1 for a bound")
    return int(_os.min_samples_upper_bound(q, check_confidence(confidence)))  # bisection: no hang near q = 1


def percentile_interval(sorted_values: np.ndarray, q: float, confidence: float) -> Interval:
    """Distribution-free two-sided interval of the q-quantile from order statistics (ascending input)."""
    arr = _check_values(sorted_values, "values", positive=False)
    lo, hi = _os.quantile_ci_indices(arr.size, _check_q(q), check_confidence(confidence))
    if lo < 0 or hi < 0:
        return Interval(None, None, f"binomial order statistics: {arr.size} samples are too few at {confidence:g}")
    return Interval(float(arr[lo]), float(arr[hi]), "binomial order statistics")


def percentile_upper_bound(sorted_values: np.ndarray, q: float, confidence: float) -> float | None:
    arr = _check_values(sorted_values, "values", positive=False)
    i = _os.quantile_upper_index(arr.size, _check_q(q), check_confidence(confidence))
    return None if i < 0 else float(arr[i])
