"""Seeded, reproducible bootstrap distributions for the mean and for type-7 quantiles.

Mean: ordinary nonparametric bootstrap (Efron 1979). Each resample draws n indices uniformly
with replacement from its own splitmix64 stream (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014), seeded from (seed, resample index), so the
result is the same for any thread count; resamples run in parallel (prange).

Quantiles: the same bootstrap distribution, sampled without drawing n indices (the caller draws
the Beta variates with numpy's seeded Generator). A resample's
values are x_(ceil(n U_i)) for iid uniforms U_i, and u -> x_(ceil(n u)) is non-decreasing, so
its k-th order statistic is x_(ceil(n U_(k))) with U_(k) ~ Beta(k, n - k + 1); the next one is
U_(k+1) = U_(k) + (1 - U_(k)) Beta(1, n - k) (David and Nagaraja, "Order Statistics", 2003,
section 2.5). Two Beta draws per resample give the resampled type-7 quantile exactly in
distribution, at a cost independent of n.

BCa: Efron, "Better bootstrap confidence intervals", JASA 82 (1987) 171-185; bias correction
z0 from the share of resamples below the estimate, acceleration from the jackknife (closed forms
for the mean and for type-7 quantiles of sorted data, O(n)).
Callers validate input (bench.stats); kernels assume finite, non-empty arrays.
"""
import math

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@numba.njit(cache=True, inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, parallel=True)
def bootstrap_means(x, n_resamples, seed):
    """Means of n_resamples resamples of x (float64 array out)."""
    n = x.shape[0]
    out = np.empty(n_resamples, dtype=np.float64)
    base = _mix(np.uint64(seed) + _GOLDEN)
    for r in numba.prange(n_resamples):
        state = _mix(base ^ (np.uint64(r + 1) * _GOLDEN))
        total = 0.0
        for _ in range(n):
            state += _GOLDEN
            idx = int(((_mix(state) >> np.uint64(11)) * _TO_UNIT) * n)
            total += x[idx]
        out[r] = total / n
    return out


@numba.njit(cache=True)
def bootstrap_quantiles(sorted_x, q, u_k, beta_next):
    """Type-7 q-quantiles of resamples of an ascending array, one per entry of u_k.

    u_k: draws of U_(k) ~ Beta(k, n - k + 1) with k = floor((n - 1) q) + 1; beta_next: draws of
    Beta(1, n - k) (ignored when k = n). The caller draws them (numpy's seeded Generator), which
    keeps this kernel free of numba's RNG and cheap to compile.
    """
    n = sorted_x.shape[0]
    out = np.empty(u_k.shape[0], dtype=np.float64)
    h = (n - 1) * q
    lo = int(math.floor(h))
    frac = h - lo
    k = lo + 1  # 1-based rank of the lower order statistic
    for r in range(u_k.shape[0]):
        u = u_k[r]
        j = min(max(int(math.ceil(n * u)), 1), n)
        a = sorted_x[j - 1]
        if k >= n or frac == 0.0:
            out[r] = a
            continue
        u2 = u + (1.0 - u) * beta_next[r]
        j2 = min(max(int(math.ceil(n * u2)), 1), n)
        out[r] = a + frac * (sorted_x[j2 - 1] - a)
    return out


@numba.njit(cache=True)
def jackknife_means(x):
    n = x.shape[0]
    total = 0.0
    for i in range(n):
        total += x[i]
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        out[i] = (total - x[i]) / (n - 1)
    return out


@numba.njit(cache=True)
def jackknife_quantiles(sorted_x, q):
    """Leave-one-out type-7 q-quantiles of an ascending array (n >= 3), O(n)."""
    n = sorted_x.shape[0]
    m = n - 1
    h = (m - 1) * q
    lo = int(math.floor(h))
    frac = h - lo
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        a = float(sorted_x[lo] if lo < i else sorted_x[lo + 1])
        if lo + 1 < m:
            b = float(sorted_x[lo + 1] if lo + 1 < i else sorted_x[lo + 2])
        else:
            b = a
        out[i] = a + frac * (b - a)
    return out


@numba.njit(cache=True)
def norm_cdf(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@numba.njit(cache=True)
def norm_ppf(p):
    """Inverse standard normal CDF: Acklam's rational approximation plus one Halley step."""
    if p <= 0.0:
        return -np.inf
    if p >= 1.0:
        return np.inf
    if p > 0.5:
        # 1 - p is exact for p in [0.5, 1] (Sterbenz), and the lower tail refines accurately.
        return -norm_ppf(1.0 - p)
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    plow = 0.02425
    if p < plow:
        s = math.sqrt(-2.0 * math.log(p))
        x = (((((c[0] * s + c[1]) * s + c[2]) * s + c[3]) * s + c[4]) * s + c[5]) / \
            ((((d[0] * s + d[1]) * s + d[2]) * s + d[3]) * s + 1.0)
    elif p <= 1.0 - plow:
        s = p - 0.5
        t = s * s
        x = (((((a[0] * t + a[1]) * t + a[2]) * t + a[3]) * t + a[4]) * t + a[5]) * s / \
            (((((b[0] * t + b[1]) * t + b[2]) * t + b[3]) * t + b[4]) * t + 1.0)
    else:
        s = math.sqrt(-2.0 * math.log1p(-p))
        x = -(((((c[0] * s + c[1]) * s + c[2]) * s + c[3]) * s + c[4]) * s + c[5]) / \
            ((((d[0] * s + d[1]) * s + d[2]) * s + d[3]) * s + 1.0)
    e = norm_cdf(x) - p
    u = e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


@numba.njit(cache=True)
def _at(s, p):
    """Type-7 quantile p of an ascending array."""
    n = s.shape[0]
    h = (n - 1) * p
    lo = min(max(int(math.floor(h)), 0), n - 1)
    hi = min(lo + 1, n - 1)
    return s[lo] + (h - lo) * (s[hi] - s[lo])


@numba.njit(cache=True)
def percentile_interval(sorted_stats, confidence):
    """(low, high): type-7 quantiles alpha/2 and 1 - alpha/2 of the (sorted) bootstrap statistics."""
    alpha = 1.0 - confidence
    return _at(sorted_stats, alpha / 2.0), _at(sorted_stats, 1.0 - alpha / 2.0)


@numba.njit(cache=True)
def bca_interval(sorted_stats, estimate, jackknife, confidence):
    """(low, high, ok): the BCa interval; ok is False when z0 or the acceleration is undefined
    (every resample on one side of the estimate, or a constant jackknife), and the caller falls
    back to the percentile interval."""
    b = sorted_stats.shape[0]
    below = 0.0
    for i in range(b):
        if sorted_stats[i] < estimate:
            below += 1.0
        elif sorted_stats[i] == estimate:
            below += 0.5
    share = below / b
    if share <= 0.0 or share >= 1.0:
        return np.nan, np.nan, False
    z0 = norm_ppf(share)
    mean_j = 0.0
    for v in jackknife:
        mean_j += v
    mean_j /= jackknife.shape[0]
    num = 0.0
    den = 0.0
    for v in jackknife:
        d = mean_j - v
        num += d * d * d
        den += d * d
    if den <= 0.0:
        return np.nan, np.nan, False
    acc = num / (6.0 * den ** 1.5)
    alpha = 1.0 - confidence
    z_lo = norm_ppf(alpha / 2.0)
    z_hi = -z_lo
    p_lo = norm_cdf(z0 + (z0 + z_lo) / (1.0 - acc * (z0 + z_lo)))
    p_hi = norm_cdf(z0 + (z0 + z_hi) / (1.0 - acc * (z0 + z_hi)))
    return _at(sorted_stats, p_lo), _at(sorted_stats, p_hi), True
