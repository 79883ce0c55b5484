"""From a cell's raw latencies to its reported figures, each with its interval and method.

Percentiles: distribution-free binomial order-statistic intervals (no resampling). Mean: seeded
bootstrap, BCa where n allows. Throughput = batch / mean latency over the measured window, so
its interval is the mean's, inverted. Intervals treat the calls as independent; latencies in a
back-to-back loop can be autocorrelated, which would make true intervals wider.
"""
from __future__ import annotations

import numpy as np

from bench import stats
from bench.results.records import Estimate, Histogram, Latency, Metrics, Series, Throughput

HISTOGRAM_REL_ERROR = 0.01
SERIES_WINDOWS = 20  # about this many throughput windows per cell, each at least 10 ms
MIN_SERIES_WINDOW_NS = 10_000_000


def _ms_estimate(sorted_ns: np.ndarray, q: float, value_ms: float, confidence: float) -> Estimate:
    iv = stats.percentile_interval(sorted_ns, q, confidence)
    if iv.low is None:
        return Estimate(value_ms, None, None, iv.method)
    return Estimate(value_ms, iv.low / 1e6, iv.high / 1e6, iv.method)


def histogram_record(latencies_ns: np.ndarray) -> Histogram:
    h = stats.LatencyHistogram(rel_error=HISTOGRAM_REL_ERROR)
    h.record(latencies_ns)
    first, counts = h.sparse()
    return Histogram(h.base_ns, h.growth, h.rel_error, counts, first)


def cell_metrics(latencies_ns: np.ndarray, window_ns: int, batch_size: int, confidence: float,
                 seed: int, stride: int = 1) -> tuple[Metrics, Series]:
    """`stride`: each latency stands for that many calls (the loop kept 1 in `stride`), so
    throughput counts them all while the other figures and every interval come from the sample."""
    c = confidence
    summary = stats.latency_summary(latencies_ns)
    s = np.sort(latencies_ns)
    mean_iv = stats.bootstrap_mean(latencies_ns.astype(np.float64), c, seed=seed)
    mean = Estimate(summary.mean_ms, mean_iv.low / 1e6, mean_iv.high / 1e6, mean_iv.method)
    latency = Latency(
        n=summary.n,
        mean=mean,
        p50=_ms_estimate(s, 0.5, summary.p50_ms, c),
        p90=_ms_estimate(s, 0.9, summary.p90_ms, c),
        p95=_ms_estimate(s, 0.95, summary.p95_ms, c),
        p99=_ms_estimate(s, 0.99, summary.p99_ms, c),
        p999=_ms_estimate(s, 0.999, summary.p999_ms, c),
        min=Estimate(summary.min_ms),
        max=Estimate(summary.max_ms),
        histogram=histogram_record(latencies_ns),
        confidence=c,
    )
    value = summary.n * stride * batch_size / (window_ns / 1e9)
    # throughput = batch / mean latency (x clients): its relative interval is the mean's, inverted
    mean_ns = summary.mean_ms * 1e6
    tp = Throughput(value, value * mean_ns / mean_iv.high, value * mean_ns / mean_iv.low,
                    method=f"samples / window; relative interval of the mean latency by {mean_iv.method}, inverted",
                    confidence=c)
    # Kept latencies laid end to end span window_ns / stride: a series window there is `stride`
    # times as long in measured time, and its rate (kept calls / kept time) is the true one.
    window = series_window_ns(window_ns // stride)
    series = Series(window * stride / 1e9,
                    tuple(float(v) for v in stats.throughput_series(latencies_ns, batch_size, window)))
    return Metrics(tp, latency), series


def series_window_ns(span_ns: int) -> int:
    """The window of a per-window series over a span: about SERIES_WINDOWS of them, >= 10 ms each."""
    return max(MIN_SERIES_WINDOW_NS, int(span_ns // SERIES_WINDOWS))


def steady_state_cut(latencies_ns: np.ndarray) -> int:
    """How many leading measured calls were still warm-up (MSER-5, guarded: bench.stats)."""
    return stats.steady_state_cut(latencies_ns) if latencies_ns.size >= 20 else 0
