"""Steady-state (warm-up) detection: MSER-5.

Marginal Standard Error Rule on batch means of 5 (White, "An effective truncation heuristic for
bias reduction in simulation output", Simulation 69(6), 1997; White, Cobb and Spratt, WSC 2000):
for truncation d (in batches), MSER(d) = sum_{j>=d} (b_j - mean_{>=d})^2 / (m - d)^2, and the
warm-up ends at the d minimising it, searched over the first half of the series only: near the
end few batches are left and the statistic is noise (the usual restriction, as in White 1997).
One change to the textbook rule: of the truncations whose statistic is within two standard errors
of the minimum, the earliest is taken (see the code), so noise does not cut steady samples.
Returns the number of samples to drop (a multiple of 5).
"""
import numba
import numpy as np

BATCH = 5


@numba.njit(cache=True)
def mser5_cut(x):
    m = x.shape[0] // BATCH
    if m < 4:
        return 0
    b = np.empty(m, dtype=np.float64)
    for j in range(m):
        s = 0.0
        for k in range(BATCH):
            s += x[j * BATCH + k]
        b[j] = s / BATCH
    # Suffix statistics by Welford's update from the end: stable where sums of squares cancel.
    ss_from = np.zeros(m, dtype=np.float64)
    mean = 0.0
    m2 = 0.0
    for j in range(m - 1, -1, -1):
        k = m - j
        d = b[j] - mean
        mean += d / k
        m2 += d * (b[j] - mean)
        ss_from[j] = m2
    top = m // 2 + 1
    stat = np.empty(top, dtype=np.float64)
    best_d = 0
    for d in range(top):
        k = m - d
        stat[d] = ss_from[d] / (k * k)
        if stat[d] < stat[best_d]:
            best_d = d
    # Past the transient, MSER(d) ~ var_b / k with relative noise sqrt(2 / k): later minima are
    # often noise. Take the earliest d whose statistic is within that noise (two standard
    # errors) of the minimum, so a steady series loses no more than it must.
    limit = stat[best_d] * (1.0 + 2.0 * np.sqrt(2.0 / (m - best_d)))
    for d in range(best_d + 1):
        if stat[d] <= limit:
            return d * BATCH
    return best_d * BATCH
