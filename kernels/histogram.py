"""Mergeable log-bucketed latency histogram (HDR-style), constant memory.

Bucket i (i >= 1) holds values in [base * g^(i-1), base * g^i), with g = (1 + e) / (1 - e) for a
stated relative error e; bucket 0 holds values below base. A bucket is represented by the value
that is within e of every value in it, v_i = 2 base g^(i-1) g / (g + 1) (the harmonic midpoint),
so |v_i - x| <= e x for any x in the bucket. Two histograms with the same (base, g, size) merge by
adding counts. Quantiles use numpy's type-7 definition on the represented values of the order
statistics x_(lo) and x_(lo+1) (found by walking cumulative counts), so each is within e of the
exact type-7 quantile: (1 - f) a' + f b' differs from (1 - f) a + f b by at most e times it.
Cf. G. Tene, HdrHistogram (hdrhistogram.org), and Masson et al., "DDSketch", VLDB 2019.
"""
import math

import numba
import numpy as np


@numba.njit(cache=True)
def growth_for(rel_error):
    return (1.0 + rel_error) / (1.0 - rel_error)


@numba.njit(cache=True)
def bucket_count(base, growth, max_value):
    return int(math.ceil(math.log(max_value / base) / math.log(growth))) + 2


@numba.njit(cache=True)
def record(counts, values, base, growth):
    """Add values (> 0) to counts in place; values past the last bucket land in it."""
    lg = math.log(growth)
    last = counts.shape[0] - 1
    for v in values:
        if v < base:
            i = 0
        else:
            i = int(math.floor(math.log(v / base) / lg)) + 1
            if i > last:
                i = last
        counts[i] += 1


@numba.njit(cache=True)
def bucket_value(i, base, growth):
    if i == 0:
        return base
    lower = base * growth ** (i - 1)
    return 2.0 * lower * growth / (growth + 1.0)


@numba.njit(cache=True)
def _value_at_rank(counts, rank, base, growth):
    """Represented value of the order statistic of 0-based rank."""
    seen = 0
    for i in range(counts.shape[0]):
        seen += counts[i]
        if seen > rank:
            return bucket_value(i, base, growth)
    return bucket_value(counts.shape[0] - 1, base, growth)


@numba.njit(cache=True)
def hist_quantiles(counts, qs, base, growth):
    n = 0
    for c in counts:
        n += c
    out = np.empty(qs.shape[0], dtype=np.float64)
    for j in range(qs.shape[0]):
        h = (n - 1) * qs[j]
        lo = int(math.floor(h))
        a = _value_at_rank(counts, lo, base, growth)
        if lo + 1 <= n - 1 and h > lo:
            b = _value_at_rank(counts, lo + 1, base, growth)
            out[j] = a + (h - lo) * (b - a)
        else:
            out[j] = a
    return out
