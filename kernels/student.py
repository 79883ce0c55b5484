"""Student's t distribution: CDF and quantile, for intervals and tests over a few processes.

CDF: for t >= 0, P(T <= t) = 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t^2), I the regularized
incomplete beta function, evaluated by its continued fraction with the modified Lentz method
(Press et al., "Numerical Recipes", 3rd ed., section 6.4; Lentz, Applied Optics 15, 1976).
Quantile: bisection on the CDF to 1e-12 (monotone, so it always converges; a few hundred CDF
calls at most, which is nothing next to a bootstrap). df is a real number > 0 (Welch's df is not
an integer).
"""
import math

import numba


@numba.njit(cache=True, inline="always")
def _lentz(aa, c, d):
    """One modified-Lentz update of the continued fraction by the term aa: (c, d, factor)."""
    tiny = 1e-300
    d = 1.0 + aa * d
    if abs(d) < tiny:
        d = tiny
    c = 1.0 + aa / c
    if abs(c) < tiny:
        c = tiny
    d = 1.0 / d
    return c, d, d * c


@numba.njit(cache=True)
def _betacf(a, b, x):
    tiny = 1e-300
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < tiny:
        d = tiny
    d = 1.0 / d
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        c, d, f = _lentz(m * (b - m) * x / ((qam + m2) * (a + m2)), c, d)  # even step
        h *= f
        c, d, f = _lentz(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)), c, d)  # odd step
        h *= f
        if abs(f - 1.0) < 1e-15:
            break
    return h


@numba.njit(cache=True)
def betainc(a, b, x):
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


@numba.njit(cache=True)
def t_cdf(t, df):
    """P(T <= t) for Student's t with df > 0 degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@numba.njit(cache=True)
def t_ppf(p, df):
    """The p-quantile of Student's t with df > 0 degrees of freedom (p in (0, 1))."""
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo = 0.0
    hi = 1.0
    while t_cdf(hi, df) < p and hi < 1e12:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)
