"""Distribution-free confidence intervals for quantiles from order statistics (no resampling).

For n iid samples and the q-quantile xi_q, the number B of samples <= xi_q is Binomial(n, q), so
P(x_(l) <= xi_q <= x_(u)) >= P(l <= B <= u - 1) = F(u - 1) - F(l - 1), with F the binomial CDF
(exact for continuous distributions, conservative with ties). The equal-tailed interval takes the
largest l with F(l - 1) <= alpha / 2 and the smallest u with F(u - 1) >= 1 - alpha / 2.
Reference: H. A. David and H. N. Nagaraja, "Order Statistics", 3rd ed., Wiley 2003, section 7.1;
the same binomial argument drives MLPerf LoadGen's early stopping (loadgen/early_stopping.cc).

Convention (LoadGen's): a bound is never the sample extreme itself: l >= 2 and u <= n - 1, so one
unbounded outlier cannot set a bound. With it, the minimum sample count for an upper bound of the
q-quantile at confidence c is the smallest n with P(Binomial(n, 1 - q) <= 1) <= 1 - c: 662 for
p99 at 99% and 64 for p90 at 99%, the figures LoadGen's settings use.

Indices returned are 0-based into the ascending sample; -1 means no bound exists at this n.
"""
import math

import numba
import numpy as np


@numba.njit(cache=True)
def binom_cdf(n, p):
    """F[k] = P(Binomial(n, p) <= k) for k = 0..n, summed from log-pmf terms (lgamma)."""
    out = np.empty(n + 1, dtype=np.float64)
    # Loops, not slice assignment or ufuncs: those cost seconds of compile time for nothing.
    if p <= 0.0 or p >= 1.0:
        for k in range(n + 1):
            out[k] = 1.0 if (p <= 0.0 or k == n) else 0.0
        return out
    lp = math.log(p)
    lq = math.log1p(-p)
    lnf = math.lgamma(n + 1.0)
    acc = 0.0
    for k in range(n + 1):
        acc += math.exp(lnf - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0) + k * lp + (n - k) * lq)
        out[k] = acc if acc < 1.0 else 1.0
    return out


@numba.njit(cache=True)
def quantile_ci_indices(n, q, confidence):
    """(lo, hi): 0-based order-statistic indices of the two-sided interval of the q-quantile."""
    alpha = 1.0 - confidence
    cdf = binom_cdf(n, q)
    lo = -1
    # x_(l) with 1-based l in [2, n]: P(x_(l) > xi_q) = F(l - 1) <= alpha / 2
    for l in range(2, n + 1):
        if cdf[l - 1] <= alpha / 2:
            lo = l - 1
        else:
            break
    hi = -1
    for u in range(1, n):  # u <= n - 1
        if cdf[u - 1] >= 1.0 - alpha / 2:
            hi = u - 1
            break
    return lo, hi


@numba.njit(cache=True)
def quantile_upper_index(n, q, confidence):
    """0-based index of the one-sided upper bound of the q-quantile at `confidence`, or -1."""
    cdf = binom_cdf(n, q)
    for u in range(1, n):
        if cdf[u - 1] >= confidence:
            return u - 1
    return -1


@numba.njit(cache=True)
def min_samples_upper_bound(q, confidence):
    """Smallest n for which an upper bound (below the sample maximum) of the q-quantile exists."""
    # P(Binomial(n, 1 - q) <= 1) = q^n + n (1 - q) q^(n - 1) decreases in n: double, then bisect
    # (a linear search would take ~1e13 steps for q = 1 - 1e-12).
    target = 1.0 - confidence
    lq = math.log(q)
    hi = 2
    while math.exp(hi * lq) * (1.0 + hi * (1.0 - q) / q) > target:
        hi *= 2
    lo = max(hi // 2, 2)
    if math.exp(lo * lq) * (1.0 + lo * (1.0 - q) / q) <= target:
        return lo
    while hi - lo > 1:  # invariant: lo fails, hi passes
        mid = (lo + hi) // 2
        if math.exp(mid * lq) * (1.0 + mid * (1.0 - q) / q) <= target:
            hi = mid
        else:
            lo = mid
    return hi
