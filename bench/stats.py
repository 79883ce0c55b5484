"""Typed wrappers over kernels/: the only caller of the numba kernels.

Validates what the kernels assume (non-empty, finite, positive durations) so bad input gives a
clear ValueError instead of a numba crash or a silent NaN.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import kernels
from bench.errors import ForeignPackageError

if getattr(kernels, "__bench_kernels__", None) != 1:
    raise ForeignPackageError(
        f"the 'kernels' package at {getattr(kernels, '__file__', '?')} is not this project's "
        "(another PyPI package named 'kernels' is installed in this environment); "
        "use a separate virtual environment for the bench harness"
    )

from kernels.summary import summarize_sorted  # noqa: E402

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
_QS = np.array([p / 100 for p in PERCENTILES], dtype=np.float64)


@dataclass(frozen=True)
class LatencySummary:
    """Latency figures in milliseconds over n samples."""

    n: int
    mean_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float


def _check_durations(values: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what}: no samples")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: contains NaN or infinity")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{what}: expected numbers, got dtype {arr.dtype}")
    if arr.min() <= 0:
        raise ValueError(f"{what}: durations must be > 0, got {arr.min()}")
    return arr.astype(np.int64) if arr.dtype.kind in "iu" else arr.astype(np.float64)


def latency_summary(latencies_ns: np.ndarray) -> LatencySummary:
    arr = _check_durations(latencies_ns, "latencies")
    out = summarize_sorted(np.sort(arr), _QS) / 1e6
    p50, p90, p95, p99, p999, mean, lo, hi = (float(v) for v in out)
    return LatencySummary(int(arr.size), mean, lo, hi, p50, p90, p95, p99, p999)


def quantiles(values: np.ndarray, qs: np.ndarray | list[float]) -> np.ndarray:
    """Type-7 (numpy default) quantiles of positive durations; qs in [0, 1]."""
    arr = _check_durations(values, "values")
    q = np.asarray(qs, dtype=np.float64)
    if q.ndim != 1 or np.any((q < 0) | (q > 1)) or not np.all(np.isfinite(q)):
        raise ValueError(f"quantile probabilities must be in [0, 1], got {qs!r}")
    return summarize_sorted(np.sort(arr), q)[: q.size]
