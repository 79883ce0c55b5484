"""Streaming moments and throughput over time.

Welford's update (B. P. Welford, Technometrics 4(3), 1962) keeps (n, mean, M2) in one pass;
two states merge with Chan, Golub and LeVeque's formula ("Algorithms for computing the sample
variance", The American Statistician 37(3), 1983), so workers' moments combine exactly.
State: float64 array [n, mean, M2]; variance = M2 / (n - 1).
"""
import numba
import numpy as np


@numba.njit(cache=True)
def welford_new():
    return np.zeros(3, dtype=np.float64)


@numba.njit(cache=True)
def welford_update(state, values):
    n = state[0]
    mean = state[1]
    m2 = state[2]
    for v in values:
        n += 1.0
        d = v - mean
        mean += d / n
        m2 += d * (v - mean)
    state[0] = n
    state[1] = mean
    state[2] = m2
    return state


@numba.njit(cache=True)
def welford_merge(a, b):
    out = np.zeros(3, dtype=np.float64)
    n = a[0] + b[0]
    if n == 0:
        return out
    d = b[1] - a[1]
    out[0] = n
    out[1] = a[1] + d * b[0] / n
    out[2] = a[2] + b[2] + d * d * a[0] * b[0] / n
    return out


@numba.njit(cache=True)
def window_throughput(latencies_ns, batch_size, window_ns):
    """Samples/s in consecutive windows of measured time (completions by each call's end time).

    The measured time is the running sum of latencies (the loop's calls are back to back); the
    last, partial window is dropped unless it is the only one.
    """
    total = 0
    for v in latencies_ns:
        total += v
    n_windows = max(int(total // window_ns), 1)
    counts = np.zeros(n_windows, dtype=np.float64)
    t = 0
    for v in latencies_ns:
        t += v
        w = int((t - 1) // window_ns)
        if w < n_windows:
            counts[w] += batch_size
    span_s = (window_ns if total >= window_ns else total) / 1e9
    for w in range(n_windows):
        counts[w] /= span_s
    return counts
