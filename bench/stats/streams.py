"""Mergeable summaries of a latency stream: a log-bucketed histogram, Welford moments, and
throughput per window of measured time (kernels/histogram.py, kernels/moments.py)."""
from __future__ import annotations

import numpy as np

from bench.stats.checks import _check_durations, _check_values
from bench_kernels import histogram as _hist
from bench_kernels import moments as _mom


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
