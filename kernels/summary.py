"""Order statistics and moments of a latency sample.

Quantiles follow numpy's default definition (Hyndman & Fan 1996, type 7, "linear"): for sorted
x[0..n-1] and probability q, h = (n - 1) q, and the quantile is
x[floor(h)] + (h - floor(h)) (x[floor(h) + 1] - x[floor(h)]).
Hyndman, R. J. and Fan, Y. (1996), "Sample quantiles in statistical packages",
The American Statistician 50(4), 361-365.

The mean is a plain sum in float64 (samples here are at most ~1e8, each < 2^53 ns, so the
sum's relative rounding error stays far below the figures' own noise).
Callers validate input (bench.stats); kernels assume a non-empty, finite array.
"""
import numba
import numpy as np


@numba.njit(cache=True)
def quantiles_sorted(sorted_x, qs):
    """Type-7 quantiles of an ascending array at each probability in qs (each in [0, 1])."""
    n = sorted_x.shape[0]
    out = np.empty(qs.shape[0], dtype=np.float64)
    for j in range(qs.shape[0]):
        h = (n - 1) * qs[j]
        lo = int(np.floor(h))
        if lo >= n - 1:
            out[j] = sorted_x[n - 1]
        else:
            frac = h - lo
            a = float(sorted_x[lo])
            b = float(sorted_x[lo + 1])
            out[j] = a + frac * (b - a)
    return out


@numba.njit(cache=True)
def mean_min_max(x):
    """(mean, min, max) in one pass."""
    total = 0.0
    lo = x[0]
    hi = x[0]
    for i in range(x.shape[0]):
        v = x[i]
        total += v
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    return total / x.shape[0], float(lo), float(hi)


@numba.njit(cache=True)
def summarize_sorted(s, qs):
    """Quantiles at qs followed by mean, min and max of an ascending array; float64 array out.

    The caller sorts: numpy's sort (radix/SIMD for integers) is ~8x faster than numba's
    quicksort on 1e6 int64 here, and the sort dominates the cost.
    """
    q = quantiles_sorted(s, qs)
    out = np.empty(q.shape[0] + 3, dtype=np.float64)
    for j in range(q.shape[0]):  # a loop: slice assignment costs ~1.5 s more to compile
        out[j] = q[j]
    m, lo, hi = mean_min_max(s)
    out[q.shape[0]] = m
    out[q.shape[0] + 1] = lo
    out[q.shape[0] + 2] = hi
    return out
