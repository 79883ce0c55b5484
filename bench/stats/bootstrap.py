"""Seeded bootstrap intervals of the mean, a quantile and a ratio (kernels/bootstrap.py: BCa where
n allows, percentile otherwise)."""
from __future__ import annotations

import math

import numpy as np

from bench.stats.checks import Interval, _check_q, _check_resamples, _check_values, check_confidence
from bench_kernels import bootstrap as _boot
from bench_kernels.summary import summarize_sorted

DEFAULT_RESAMPLES = 1000
BCA_MIN_N = 30  # below this the jackknife acceleration is too noisy to trust


def _finish(stats: np.ndarray, estimate: float, jackknife: np.ndarray | None, confidence: float,
            n: int, method: str, label: str) -> Interval:
    stats = np.sort(stats)
    if method == "bca" and jackknife is not None and n >= BCA_MIN_N:
        lo, hi, ok = _boot.bca_interval(stats, estimate, jackknife, confidence)
        if ok:
            return Interval(float(lo), float(hi), f"bootstrap BCa ({label})")
        fallback = "percentile (BCa undefined here)"
    else:
        fallback = "percentile" if method == "percentile" else f"percentile (BCa needs n >= {BCA_MIN_N})"
    lo, hi = _boot.percentile_interval(stats, confidence)
    return Interval(float(lo), float(hi), f"bootstrap {fallback} ({label})")


def resample_quantiles(sorted_x: np.ndarray, q: float, n_resamples: int, seed: int) -> np.ndarray:
    """Bootstrap q-quantiles from Beta-distributed uniform order statistics (kernels/bootstrap.py)."""
    n = sorted_x.size
    k = int(math.floor((n - 1) * q)) + 1
    rng = np.random.default_rng(seed)
    u_k = rng.beta(k, n - k + 1, n_resamples)
    nxt = rng.beta(1.0, n - k, n_resamples) if k < n else np.zeros(n_resamples)
    return _boot.bootstrap_quantiles(sorted_x, q, u_k, nxt)


def bootstrap_mean(values: np.ndarray, confidence: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES,
                   seed: int = 0, method: str = "bca") -> Interval:
    x = _check_values(values, "values", positive=False).astype(np.float64)
    confidence, n_resamples = check_confidence(confidence), _check_resamples(n_resamples)
    if x.size == 1 or np.all(x == x[0]):
        return Interval(float(x[0]), float(x[0]), "constant sample: no spread")
    stats = _boot.bootstrap_means(x, n_resamples, seed)
    jack = _boot.jackknife_means(x) if method == "bca" and x.size >= BCA_MIN_N else None
    return _finish(stats, float(x.mean()), jack, confidence, x.size, method,
                   f"{n_resamples} resamples, seed {seed}")


def bootstrap_quantile(values: np.ndarray, q: float, confidence: float = 0.95,
                       n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, method: str = "bca") -> Interval:
    s = np.sort(_check_values(values, "values", positive=False).astype(np.float64))
    q, confidence, n_resamples = _check_q(q), check_confidence(confidence), _check_resamples(n_resamples)
    if s.size == 1 or s[0] == s[-1]:
        return Interval(float(s[0]), float(s[0]), "constant sample: no spread")
    stats = resample_quantiles(s, q, n_resamples, seed)
    estimate = float(summarize_sorted(s, np.array([q]))[0])
    jack = _boot.jackknife_quantiles(s, q) if method == "bca" and s.size >= BCA_MIN_N else None
    return _finish(stats, estimate, jack, confidence, s.size, method, f"{n_resamples} resamples, seed {seed}")


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, statistic: str | float = "mean", confidence: float = 0.95,
                    n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[float, Interval]:
    """stat(a) / stat(b) and its percentile interval; a and b resampled independently.

    statistic: "mean", "median", or a quantile probability in (0, 1) (0.99 for p99).
    """
    x = _check_values(a, "a", positive=True).astype(np.float64)
    y = _check_values(b, "b", positive=True).astype(np.float64)
    confidence, n_resamples = check_confidence(confidence), _check_resamples(n_resamples)
    if statistic == "mean":
        ra, rb = _boot.bootstrap_means(x, n_resamples, seed), _boot.bootstrap_means(y, n_resamples, seed + 1)
        est = x.mean() / y.mean()
    elif statistic == "median" or (isinstance(statistic, float) and 0.0 < statistic < 1.0):
        q = 0.5 if statistic == "median" else float(statistic)
        xs, ys = np.sort(x), np.sort(y)
        ra = resample_quantiles(xs, q, n_resamples, seed)
        rb = resample_quantiles(ys, q, n_resamples, seed + 1)
        est = float(np.quantile(xs, q) / np.quantile(ys, q))
    else:
        raise ValueError(f"statistic {statistic!r}: allowed mean, median, or a quantile in (0, 1)")
    lo, hi = _boot.percentile_interval(np.sort(ra / rb), confidence)
    return float(est), Interval(float(lo), float(hi), f"bootstrap percentile ratio of {statistic}s "
                                                      f"({n_resamples} resamples, seed {seed})")
