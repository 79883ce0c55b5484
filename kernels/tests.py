"""Two-sample tests and change points, for compare and history.

Mann-Whitney U with the tie-corrected normal approximation and continuity correction
(Mann and Whitney, Ann. Math. Statist. 18(1), 1947; tie correction as in Lehmann, "Nonparametrics",
1975, and scipy.stats.mannwhitneyu(method="asymptotic")). Returns U of the first sample and the
two-sided p-value.

Change points: PELT (Killick, Fearnhead and Eckley, "Optimal detection of changepoints with a linear
computational cost", JASA 107, 2012) with the L2 cost (sum of squared deviations from the segment
mean, i.e. Gaussian mean shifts with a common variance) and a penalty per change point supplied by
the caller (bench.stats uses 4 sigma^2 ln n, twice the BIC-like choice, with sigma from the median
absolute deviation of first differences). Returns the sorted indices where new segments start.
"""
import math

import numba
import numpy as np


@numba.njit(cache=True)
def _ranks(values, order):
    """Average ranks (1-based) given an ascending `order` of values, and the tie term sum(t^3 - t)."""
    n = values.shape[0]
    ranks = np.empty(n, dtype=np.float64)
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        t = j - i + 1
        ties += t * t * t - t
        i = j + 1
    return ranks, ties


@numba.njit(cache=True)
def mann_whitney_u(both, order, n1):
    """U of the first n1 values of `both` (x then y) and the two-sided p-value; `order` is an
    ascending argsort of `both` (numpy's, done by the caller: sorting in numba is slow to compile)."""
    n2 = both.shape[0] - n1
    ranks, ties = _ranks(both, order)
    r1 = 0.0
    for i in range(n1):
        r1 += ranks[i]
    u1 = r1 - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    mu = n1 * n2 / 2.0
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0.0:
        return u1, 1.0
    u = max(u1, n1 * n2 - u1)
    z = (u - mu - 0.5) / math.sqrt(var)
    p = math.erfc(z / math.sqrt(2.0))
    return u1, min(p, 1.0)


@numba.njit(cache=True)
def _seg_cost(c1, c2, s, t):
    k = t - s
    return c2[t] - c2[s] - (c1[t] - c1[s]) ** 2 / k


@numba.njit(cache=True)
def pelt(x, penalty, min_size):
    """Start indices of segments after the first, for the L2 cost plus `penalty` per change."""
    n = x.shape[0]
    # Centre first: raw sums of x^2 at a level of 1e9 lose the variance to rounding.
    centre = 0.0
    for i in range(n):
        centre += x[i]
    centre /= n
    c1 = np.zeros(n + 1, dtype=np.float64)
    c2 = np.zeros(n + 1, dtype=np.float64)
    for i in range(n):
        v = x[i] - centre
        c1[i + 1] = c1[i] + v
        c2[i + 1] = c2[i] + v * v
    f = np.empty(n + 1, dtype=np.float64)
    for i in range(n + 1):
        f[i] = np.inf
    f[0] = -penalty
    last = np.zeros(n + 1, dtype=np.int64)
    cand = np.empty(n + 1, dtype=np.int64)
    n_cand = 0
    for t in range(min_size, n + 1):
        s_new = t - min_size  # becomes admissible now: its segment to t has min_size points
        if f[s_new] < np.inf:
            cand[n_cand] = s_new
            n_cand += 1
        best = np.inf
        best_s = 0
        for ci in range(n_cand):
            s = cand[ci]
            val = f[s] + _seg_cost(c1, c2, s, t) + penalty
            if val < best:
                best = val
                best_s = s
        f[t] = best
        last[t] = best_s
        if min_size == 1:
            # PELT pruning (K = 0 holds for the L2 cost). Its proof needs every later segment
            # (t, T] to be admissible, which a minimum length > 1 breaks: then the full
            # optimal-partitioning programme runs (O(n^2), fine for histories of runs).
            kept = 0
            for ci in range(n_cand):
                s = cand[ci]
                if f[s] + _seg_cost(c1, c2, s, t) <= f[t]:
                    cand[kept] = s
                    kept += 1
            n_cand = kept
    count = 0
    t = n
    while t > 0:
        t = last[t]
        if t > 0:
            count += 1
    out = np.empty(count, dtype=np.int64)
    t = n
    i = count - 1
    while t > 0:
        t = last[t]
        if t > 0:
            out[i] = t
            i -= 1
    return out
