"""Input checks shared by the statistics wrappers, and their small records.

The kernels assume non-empty, finite, (for durations) positive float64 arrays and probabilities
in range; these checks give a clear ValueError instead of a numba crash, a hang or a silent NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench_kernels import bootstrap as _boot


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


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None
    method: str  # how it was computed, or why there is none

    def rel_half_width(self, value: float) -> float:
        if self.low is None or self.high is None or value == 0:
            return math.inf
        return max(value - self.low, self.high - value) / abs(value)


def _check_values(values: np.ndarray, what: str, positive: bool) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what}: no samples")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{what}: expected numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: contains NaN or infinity")
    if positive and arr.min() <= 0:
        raise ValueError(f"{what}: durations must be > 0, got {arr.min()}")
    # One dtype into the kernels: one compiled specialisation each (ns up to 2^53 are exact).
    return arr.astype(np.float64)


def _check_durations(values: np.ndarray, what: str) -> np.ndarray:
    return _check_values(values, what, positive=True)


def normal_quantile(p: float) -> float:
    """Inverse standard normal CDF."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability {p!r}: must be strictly between 0 and 1")
    return float(_boot.norm_ppf(p))


def check_confidence(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence {confidence!r}: must be strictly between 0 and 1")
    return float(confidence)


def _check_q(q: float) -> float:
    if not (isinstance(q, (int, float)) and 0.0 <= q <= 1.0):
        raise ValueError(f"quantile {q!r}: must be in [0, 1]")
    return float(q)


def _check_resamples(n_resamples: int) -> int:
    if not isinstance(n_resamples, int) or n_resamples < 10:
        raise ValueError(f"n_resamples {n_resamples!r}: must be an integer >= 10")
    return n_resamples
