"""Where a series changes: the end of warm-up (MSER-5, guarded), a two-sample test
(Mann-Whitney U), and change points over a history (PELT) (kernels/steady.py, kernels/tests.py)."""
from __future__ import annotations

import math

import numpy as np

from bench.stats.checks import _check_durations, _check_values
from bench_kernels import steady as _steady
from bench_kernels import tests as _tests


STEADY_FREE_CUT = 0.01  # a cut of at most 1% of the series stands on MSER-5 alone
STEADY_ALPHA = 0.01
NOISE_MIN_SAMPLES = 200  # below this the stretches are too small to say; the rank test alone judges


def steady_state_cut(latencies_ns: np.ndarray) -> int:
    """How many leading samples are warm-up: MSER-5, guarded against single spikes.

    MSER-5 alone can cut right after one rare spike anywhere in the first half of a steady
    series (the spike dominates the variance of what it keeps), dropping up to half of the
    samples, and the spike with them; and on a long steady loop whose speed drifts with the
    machine (a 1 s window here spreads 15-25%), it cuts wherever the drift happens to be slow
    (seen: 19.6 s of a 60 s cell). So a cut of more than 1% of the series stands only if the
    dropped part is stochastically slower than the rest (Mann-Whitney, p < 0.01), as a real
    warm-up is; and then only the leading stretches (1/200 of the series each) that are slower
    than the kept part's typical stretch by more than twice the between-stretch noise (1.4826
    MAD of the kept part's stretch means) are cut: a warm-up is slower than anything the
    machine's drift does later. A slow first call (a cut of one batch) stands as is.
    """
    x = _check_durations(latencies_ns, "latencies")
    cut = int(_steady.mser5_cut(x))
    if cut == 0 or cut <= STEADY_FREE_CUT * x.size:
        return cut
    dropped, kept = x[:cut], x[cut:]
    both = np.concatenate([dropped, kept])
    u, p_two_sided = _tests.mann_whitney_u(both, np.argsort(both, kind="stable"), dropped.size)
    slower = u > dropped.size * kept.size / 2  # U of the dropped part above its mean: it ranks higher
    if not (slower and p_two_sided / 2 < STEADY_ALPHA):
        return 0
    if kept.size < NOISE_MIN_SAMPLES:
        return cut
    # The machine's noise at the scale of a stretch (1/200 of the series): the robust spread of
    # the kept part's stretch means. The warm-up is the leading run of stretches slower than the
    # kept part's typical stretch by more than twice that; MSER's own cut point can sit deep in
    # a slow phase of the drift, and what lies between the warm-up and it is steady.
    size = max(5, x.size // 200)
    means = np.array([b.mean() for b in np.array_split(kept, max(1, kept.size // size))])
    centre = float(np.median(means))
    limit = centre + 2.0 * 1.4826 * float(np.median(np.abs(means - centre)))
    for i, start in enumerate(range(0, cut, size)):
        if float(dropped[start:start + size].mean()) <= limit:
            return i * size
    return cut


def mann_whitney(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(U of a, two-sided p-value), tie-corrected normal approximation with continuity correction."""
    x = _check_values(a, "a", positive=False).astype(np.float64)
    y = _check_values(b, "b", positive=False).astype(np.float64)
    both = np.concatenate([x, y])
    u, p = _tests.mann_whitney_u(both, np.argsort(both, kind="stable"), x.size)
    return float(u), float(p)


def noise_sigma(series: np.ndarray) -> float:
    """Robust noise level: MAD of first differences / (0.6745 sqrt 2), immune to a few steps."""
    d = np.diff(series)
    if d.size == 0:
        return 0.0
    return float(np.median(np.abs(d - np.median(d))) / (0.6745 * math.sqrt(2.0)))


def change_points(series: np.ndarray, penalty: float | None = None, min_size: int = 2) -> np.ndarray:
    """Indices where a new level starts (PELT, L2 cost).

    The penalty defaults to 4 sigma^2 ln n, twice the BIC-like 2 sigma^2 ln n: on 200 seeded
    pure-noise series of 95 points BIC flagged a false change in 15%, this in 0.5%, while both
    found 6-10 sigma steps at the exact run (tests/test_statistics.py).
    """
    x = _check_values(series, "series", positive=False).astype(np.float64)
    if min_size < 1:
        raise ValueError("min_size must be >= 1")
    if x.size < 2 * min_size:
        return np.empty(0, dtype=np.int64)
    if penalty is None:
        sigma = noise_sigma(x)
        if sigma == 0.0:
            sigma = max(float(np.std(x)) * 1e-3, 1e-12)
        penalty = 4.0 * sigma**2 * math.log(x.size)
    if not (penalty > 0 and math.isfinite(penalty)):
        raise ValueError(f"penalty {penalty!r}: must be a finite number > 0")
    return _tests.pelt(x, float(penalty), int(min_size))
