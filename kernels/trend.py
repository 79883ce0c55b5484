"""Theil-Sen slope with Sen's distribution-free confidence interval.

The slope is the median of the pairwise slopes (y_j - y_i) / (x_j - x_i) over i < j with x_i != x_j
(Theil 1950, Sen 1968): robust to outliers (breakdown 29%), unlike least squares. Sen's interval
takes the sorted pairwise slopes at the 1-based ranks round((N - C) / 2) and round((N + C) / 2) + 1
(as scipy.stats.theilslopes does),
C = z sqrt(n (n - 1) (2n + 5) / 18) (Kendall's S variance without ties, normal approximation);
it holds for independent errors. O(n^2) memory and time: callers thin long series first.
"""
import math

import numba
import numpy as np


@numba.njit(cache=True)
def pairwise_slopes(x, y):
    n = x.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    m = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = x[j] - x[i]
            if dx != 0.0:
                out[m] = (y[j] - y[i]) / dx
                m += 1
    return out[:m]


@numba.njit(cache=True)
def theil_sen(x, y, z):
    """(slope, low, high) for the normal quantile z of the interval's confidence."""
    s = np.sort(pairwise_slopes(x, y))
    big_n = s.shape[0]
    if big_n == 0:
        return math.nan, math.nan, math.nan
    if big_n % 2 == 1:
        slope = s[big_n // 2]
    else:
        slope = 0.5 * (s[big_n // 2 - 1] + s[big_n // 2])
    n = x.shape[0]
    c = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    lo = min(max(int(round((big_n - c) / 2.0)) - 1, 0), big_n - 1)
    hi = min(max(int(round((big_n + c) / 2.0)), 0), big_n - 1)
    return slope, s[lo], s[hi]
