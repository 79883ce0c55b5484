"""Typed wrappers over kernels/: the only caller of the numba kernels.

Validates what the kernels assume (non-empty, finite, positive durations, confidence in (0, 1))
so bad input gives a clear ValueError instead of a numba crash, a hang or a silent NaN.
Methods and citations are in each kernel module's docstring.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import kernels
from bench.errors import ForeignPackageError

if getattr(kernels, "__bench_kernels__", None) != 1:
    raise ForeignPackageError(
        f"the 'kernels' package at {getattr(kernels, '__file__', '?')} is not this project's "
        "(another PyPI package named 'kernels' is installed in this environment); "
        "use a separate virtual environment for the bench harness"
    )

from kernels import bootstrap as _boot  # noqa: E402
from kernels import histogram as _hist  # noqa: E402
from kernels import moments as _mom  # noqa: E402
from kernels import order_stats as _os  # noqa: E402
from kernels import steady as _steady  # noqa: E402
from kernels import tests as _tests  # noqa: E402
from kernels.summary import summarize_sorted  # noqa: E402

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
_QS = np.array([p / 100 for p in PERCENTILES], dtype=np.float64)
DEFAULT_RESAMPLES = 1000
BCA_MIN_N = 30  # below this the jackknife acceleration is too noisy to trust


@dataclass(frozen=True)
class LatencySummary:
    """Latency figures in milliseconds over n samples."""

    n: int
    mean_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None
    method: str  # how it was computed, or why there is none

    def rel_half_width(self, value: float) -> float:
        if self.low is None or self.high is None or value == 0:
            return math.inf
        return max(value - self.low, self.high - value) / abs(value)


# --- validation ------------------------------------------------------------------------------


def _check_values(values: np.ndarray, what: str, positive: bool) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what}: no samples")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{what}: expected numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: contains NaN or infinity")
    if positive and arr.min() <= 0:
        raise ValueError(f"{what}: durations must be > 0, got {arr.min()}")
    # One dtype into the kernels: one compiled specialisation each (ns up to 2^53 are exact).
    return arr.astype(np.float64)


def _check_durations(values: np.ndarray, what: str) -> np.ndarray:
    return _check_values(values, what, positive=True)


def normal_quantile(p: float) -> float:
    """Inverse standard normal CDF."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability {p!r}: must be strictly between 0 and 1")
    return float(_boot.norm_ppf(p))


def check_confidence(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence {confidence!r}: must be strictly between 0 and 1")
    return float(confidence)


def _check_q(q: float) -> float:
    if not (isinstance(q, (int, float)) and 0.0 <= q <= 1.0):
        raise ValueError(f"quantile {q!r}: must be in [0, 1]")
    return float(q)


def _check_resamples(n_resamples: int) -> int:
    if not isinstance(n_resamples, int) or n_resamples < 10:
        raise ValueError(f"n_resamples {n_resamples!r}: must be an integer >= 10")
    return n_resamples


# --- summaries -------------------------------------------------------------------------------


def latency_summary(latencies_ns: np.ndarray) -> LatencySummary:
    arr = _check_durations(latencies_ns, "latencies")
    out = summarize_sorted(np.sort(arr), _QS) / 1e6
    p50, p90, p95, p99, p999, mean, lo, hi = (float(v) for v in out)
    return LatencySummary(int(arr.size), mean, lo, hi, p50, p90, p95, p99, p999)


def quantiles(values: np.ndarray, qs: np.ndarray | list[float]) -> np.ndarray:
    """Type-7 (numpy default) quantiles of positive durations; qs in [0, 1]."""
    arr = _check_durations(values, "values")
    q = np.asarray(qs, dtype=np.float64)
    if q.ndim != 1 or not np.all(np.isfinite(q)) or np.any((q < 0) | (q > 1)):
        raise ValueError(f"quantile probabilities must be in [0, 1], got {qs!r}")
    return summarize_sorted(np.sort(arr), q)[: q.size]


# --- intervals -------------------------------------------------------------------------------


def min_samples_for_bound(q: float, confidence: float) -> int:
    """Fewest samples for an upper bound of the q-quantile at `confidence` (662 for p99 at 99%)."""
    q = _check_q(q)
    if q <= 0 or q >= 1:
        raise ValueError(f"quantile {q!r}: must be strictly between 0 and 1 for a bound")
    return int(_os.min_samples_upper_bound(q, check_confidence(confidence)))  # bisection: no hang near q = 1


def percentile_interval(sorted_values: np.ndarray, q: float, confidence: float) -> Interval:
    """Distribution-free two-sided interval of the q-quantile from order statistics (ascending input)."""
    arr = _check_values(sorted_values, "values", positive=False)
    lo, hi = _os.quantile_ci_indices(arr.size, _check_q(q), check_confidence(confidence))
    if lo < 0 or hi < 0:
        return Interval(None, None, f"binomial order statistics: {arr.size} samples are too few at {confidence:g}")
    return Interval(float(arr[lo]), float(arr[hi]), "binomial order statistics")


def percentile_upper_bound(sorted_values: np.ndarray, q: float, confidence: float) -> float | None:
    arr = _check_values(sorted_values, "values", positive=False)
    i = _os.quantile_upper_index(arr.size, _check_q(q), check_confidence(confidence))
    return None if i < 0 else float(arr[i])


def _finish(stats: np.ndarray, estimate: float, jackknife: np.ndarray | None, confidence: float,
            n: int, method: str, label: str) -> Interval:
    stats = np.sort(stats)
    if method == "bca" and jackknife is not None and n >= BCA_MIN_N:
        lo, hi, ok = _boot.bca_interval(stats, estimate, jackknife, confidence)
        if ok:
            return Interval(float(lo), float(hi), f"bootstrap BCa ({label})")
        fallback = "percentile (BCa undefined here)"
    else:
        fallback = "percentile" if method == "percentile" else f"percentile (BCa needs n >= {BCA_MIN_N})"
    lo, hi = _boot.percentile_interval(stats, confidence)
    return Interval(float(lo), float(hi), f"bootstrap {fallback} ({label})")


def resample_quantiles(sorted_x: np.ndarray, q: float, n_resamples: int, seed: int) -> np.ndarray:
    """Bootstrap q-quantiles from Beta-distributed uniform order statistics (kernels/bootstrap.py)."""
    n = sorted_x.size
    k = int(math.floor((n - 1) * q)) + 1
    rng = np.random.default_rng(seed)
    u_k = rng.beta(k, n - k + 1, n_resamples)
    nxt = rng.beta(1.0, n - k, n_resamples) if k < n else np.zeros(n_resamples)
    return _boot.bootstrap_quantiles(sorted_x, q, u_k, nxt)


def bootstrap_mean(values: np.ndarray, confidence: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES,
                   seed: int = 0, method: str = "bca") -> Interval:
    x = _check_values(values, "values", positive=False).astype(np.float64)
    confidence, n_resamples = check_confidence(confidence), _check_resamples(n_resamples)
    if x.size == 1 or np.all(x == x[0]):
        return Interval(float(x[0]), float(x[0]), "constant sample: no spread")
    stats = _boot.bootstrap_means(x, n_resamples, seed)
    jack = _boot.jackknife_means(x) if method == "bca" and x.size >= BCA_MIN_N else None
    return _finish(stats, float(x.mean()), jack, confidence, x.size, method,
                   f"{n_resamples} resamples, seed {seed}")


def bootstrap_quantile(values: np.ndarray, q: float, confidence: float = 0.95,
                       n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, method: str = "bca") -> Interval:
    s = np.sort(_check_values(values, "values", positive=False).astype(np.float64))
    q, confidence, n_resamples = _check_q(q), check_confidence(confidence), _check_resamples(n_resamples)
    if s.size == 1 or s[0] == s[-1]:
        return Interval(float(s[0]), float(s[0]), "constant sample: no spread")
    stats = resample_quantiles(s, q, n_resamples, seed)
    estimate = float(summarize_sorted(s, np.array([q]))[0])
    jack = _boot.jackknife_quantiles(s, q) if method == "bca" and s.size >= BCA_MIN_N else None
    return _finish(stats, estimate, jack, confidence, s.size, method, f"{n_resamples} resamples, seed {seed}")


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, statistic: str | float = "mean", confidence: float = 0.95,
                    n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[float, Interval]:
    """stat(a) / stat(b) and its percentile interval; a and b resampled independently.

    statistic: "mean", "median", or a quantile probability in (0, 1) (0.99 for p99).
    """
    x = _check_values(a, "a", positive=True).astype(np.float64)
    y = _check_values(b, "b", positive=True).astype(np.float64)
    confidence, n_resamples = check_confidence(confidence), _check_resamples(n_resamples)
    if statistic == "mean":
        ra, rb = _boot.bootstrap_means(x, n_resamples, seed), _boot.bootstrap_means(y, n_resamples, seed + 1)
        est = x.mean() / y.mean()
    elif statistic == "median" or (isinstance(statistic, float) and 0.0 < statistic < 1.0):
        q = 0.5 if statistic == "median" else float(statistic)
        xs, ys = np.sort(x), np.sort(y)
        ra = resample_quantiles(xs, q, n_resamples, seed)
        rb = resample_quantiles(ys, q, n_resamples, seed + 1)
        est = float(np.quantile(xs, q) / np.quantile(ys, q))
    else:
        raise ValueError(f"statistic {statistic!r}: allowed mean, median, or a quantile in (0, 1)")
    lo, hi = _boot.percentile_interval(np.sort(ra / rb), confidence)
    return float(est), Interval(float(lo), float(hi), f"bootstrap percentile ratio of {statistic}s "
                                                      f"({n_resamples} resamples, seed {seed})")


# --- histogram, moments, series --------------------------------------------------------------


class LatencyHistogram:
    """Log-bucketed histogram with a stated relative error; constant memory; mergeable."""

    def __init__(self, rel_error: float = 0.01, base_ns: float = 1.0, max_ns: float = 1e13):
        if not 0 < rel_error < 0.5:
            raise ValueError(f"rel_error {rel_error!r}: must be in (0, 0.5)")
        if not 0 < base_ns < max_ns:
            raise ValueError("histogram range: need 0 < base_ns < max_ns")
        self.rel_error = float(rel_error)
        self.base_ns = float(base_ns)
        self.growth = float(_hist.growth_for(rel_error))
        self.counts = np.zeros(_hist.bucket_count(self.base_ns, self.growth, float(max_ns)), dtype=np.int64)

    @classmethod
    def from_counts(cls, counts, base_ns: float, growth: float, rel_error: float) -> "LatencyHistogram":
        h = cls.__new__(cls)
        h.rel_error, h.base_ns, h.growth = rel_error, base_ns, growth
        h.counts = np.asarray(counts, dtype=np.int64).copy()
        return h

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def record(self, latencies_ns: np.ndarray) -> None:
        _hist.record(self.counts, _check_durations(latencies_ns, "latencies").astype(np.float64),
                     self.base_ns, self.growth)

    def merge(self, other: "LatencyHistogram") -> "LatencyHistogram":
        if (other.base_ns, other.growth, other.counts.size) != (self.base_ns, self.growth, self.counts.size):
            raise ValueError("histograms with different buckets cannot merge")
        return LatencyHistogram.from_counts(self.counts + other.counts, self.base_ns, self.growth, self.rel_error)

    def quantiles(self, qs) -> np.ndarray:
        if self.n == 0:
            raise ValueError("histogram: no samples")
        q = np.asarray(qs, dtype=np.float64)
        if q.ndim != 1 or np.any((q < 0) | (q > 1)) or not np.all(np.isfinite(q)):
            raise ValueError(f"quantile probabilities must be in [0, 1], got {qs!r}")
        return _hist.hist_quantiles(self.counts, q, self.base_ns, self.growth)

    def sparse(self) -> tuple[int, tuple[int, ...]]:
        """(first non-empty bucket, counts from it to the last non-empty one): what a result stores."""
        nz = np.nonzero(self.counts)[0]
        if nz.size == 0:
            return 0, ()
        return int(nz[0]), tuple(int(c) for c in self.counts[nz[0]: nz[-1] + 1])


class Welford:
    """Streaming mean and variance; states from several workers merge exactly."""

    def __init__(self) -> None:
        self.state = _mom.welford_new()

    def update(self, values: np.ndarray) -> None:
        _mom.welford_update(self.state, _check_values(values, "values", positive=False).astype(np.float64))

    def merge(self, other: "Welford") -> "Welford":
        out = Welford()
        out.state = _mom.welford_merge(self.state, other.state)
        return out

    @property
    def n(self) -> int:
        return int(self.state[0])

    @property
    def mean(self) -> float:
        if self.n == 0:
            raise ValueError("no samples")
        return float(self.state[1])

    @property
    def variance(self) -> float:
        if self.n < 2:
            raise ValueError("variance needs at least 2 samples")
        return float(self.state[2] / (self.state[0] - 1))


MAX_SERIES_WINDOWS = 1_000_000  # 8 MB of figures; the harness's windows (>= 10 ms) give ~20 a cell


def throughput_series(latencies_ns: np.ndarray, batch_size: int, window_ns: int) -> np.ndarray:
    """Samples/s in consecutive windows of measured time.

    Refuses (ValueError) a window so narrow that the series would have more than
    MAX_SERIES_WINDOWS windows: the array is allocated up front, one float per window.
    """
    arr = _check_durations(latencies_ns, "latencies")
    if int(window_ns) < 1 or int(batch_size) < 1:
        raise ValueError("window_ns and batch_size must be integers >= 1")
    total_ns = float(arr.sum())
    windows = total_ns // int(window_ns)
    if windows > MAX_SERIES_WINDOWS:
        raise ValueError(f"window_ns {int(window_ns)}: {total_ns:.0f} ns of latencies would make {windows:.0f} "
                         f"windows, more than the {MAX_SERIES_WINDOWS:,} allowed; use a wider window")
    return _mom.window_throughput(arr, int(batch_size), int(window_ns))


STEADY_FREE_CUT = 0.01  # a cut of at most 1% of the series stands on MSER-5 alone
STEADY_ALPHA = 0.01


def steady_state_cut(latencies_ns: np.ndarray) -> int:
    """How many leading samples are warm-up: MSER-5, guarded against single spikes.

    MSER-5 alone can cut right after one rare spike anywhere in the first half of a steady
    series (the spike dominates the variance of what it keeps), dropping up to half of the
    samples, and the spike with them. So a cut of more than 1% of the series stands only if the
    dropped part is stochastically slower than the rest (Mann-Whitney, p < 0.01), as a real
    warm-up is; otherwise nothing is cut. A slow first call (a cut of one batch) stands as is.
    """
    x = _check_durations(latencies_ns, "latencies")
    cut = int(_steady.mser5_cut(x))
    if cut == 0 or cut <= STEADY_FREE_CUT * x.size:
        return cut
    dropped, kept = x[:cut], x[cut:]
    both = np.concatenate([dropped, kept])
    u, p_two_sided = _tests.mann_whitney_u(both, np.argsort(both, kind="stable"), dropped.size)
    slower = u > dropped.size * kept.size / 2  # U of the dropped part above its mean: it ranks higher
    return cut if slower and p_two_sided / 2 < STEADY_ALPHA else 0


# --- tests and change points -----------------------------------------------------------------


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


def _warm_group(group: str) -> None:
    """Call each kernel of one half of the set once on tiny inputs (compiles, or loads the cache)."""
    ns = np.arange(1, 41, dtype=np.int64) * 1000
    x = ns.astype(np.float64)
    if group == "a":
        latency_summary(ns)
        percentile_interval(np.sort(ns), 0.5, 0.95)
        percentile_upper_bound(np.sort(ns), 0.9, 0.9)
        min_samples_for_bound(0.9, 0.9)
        normal_quantile(0.975)
        h = LatencyHistogram()
        h.record(ns)
        h.quantiles([0.5])
        w = Welford()
        w.update(x)
        w.merge(w)
        throughput_series(ns, 1, 10_000)
    else:
        bootstrap_mean(x, 0.95, 20)
        bootstrap_mean(x, 0.95, 20, method="percentile")
        bootstrap_quantile(x, 0.9, 0.95, 20)
        steady_state_cut(ns)
        mann_whitney(x, x + 1)
        change_points(x)
        change_points(x, min_size=1)


def _kernel_dispatchers() -> list:
    import numba.core.registry

    from kernels import summary as _summary

    # Public kernels only: private helpers are compiled into their callers, never cached alone.
    return [f for mod in (_boot, _hist, _mom, _os, _steady, _tests, _summary)
            for name, f in vars(mod).items()
            if isinstance(f, numba.core.registry.CPUDispatcher) and not name.startswith("_")]


def kernels_cached() -> bool:
    """Whether every kernel has an entry in numba's on-disk cache (so nothing will compile)."""
    import os

    try:
        return all(os.path.exists(d._cache._cache_file._index_path) for d in _kernel_dispatchers())
    except AttributeError:  # numba's cache internals moved: assume warm, compile in-process
        return True


def warm_kernels() -> None:
    """Compile every kernel once (first run) or load it from the cache (~0.3 s).

    Into an empty cache the two halves of the set compile in two processes at once (numba
    compiles one function at a time per process), halving the first run's wait on 2 cores.
    """
    if not kernels_cached():
        import multiprocessing as mp

        helper = mp.get_context("spawn").Process(target=_warm_group, args=("b",), name="bench-kernel-jit")
        helper.start()
        _warm_group("a")
        helper.join()
    _warm_group("a")
    _warm_group("b")
