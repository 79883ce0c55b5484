"""From a cell's raw latencies to its reported figures, each with its interval and method.

Percentiles: distribution-free binomial order-statistic intervals (no resampling). Mean: seeded
bootstrap, BCa where n allows. Throughput = batch / mean latency over the measured window, so
its interval is the mean's, inverted. Intervals treat the calls as independent; latencies in a
back-to-back loop can be autocorrelated, which would make true intervals wider.
"""
from __future__ import annotations

import numpy as np

from bench import stats
from bench.config import StopSpec
from bench.results.schema import Estimate, Histogram, Latency, Metrics, Series, Throughput

HISTOGRAM_REL_ERROR = 0.01
SERIES_WINDOWS = 20  # about this many throughput windows per cell, each at least 10 ms


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


def cell_metrics(latencies_ns: np.ndarray, window_ns: int, batch_size: int, stop: StopSpec,
                 seed: int) -> tuple[Metrics, Series]:
    c = stop.confidence
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
    value = summary.n * batch_size / (window_ns / 1e9)
    # throughput = batch / mean latency (x clients): its relative interval is the mean's, inverted
    mean_ns = summary.mean_ms * 1e6
    tp = Throughput(value, value * mean_ns / mean_iv.high, value * mean_ns / mean_iv.low,
                    method=f"samples / window; relative interval of the mean latency by {mean_iv.method}, inverted",
                    confidence=c)
    window = max(10_000_000, int(window_ns // SERIES_WINDOWS))
    series = Series(window / 1e9, tuple(float(v) for v in stats.throughput_series(latencies_ns, batch_size, window)))
    return Metrics(tp, latency), series


def server_figures(run, batch_size: int, target_qps: float, confidence: float, slo_limits: dict[str, float],
                   latency: Latency) -> tuple[Throughput, "ServerInfo"]:
    """Throughput and validity of a server-scenario cell (run: bench.scenarios.server.ServerRun)."""
    import math

    from bench.results.schema import ServerInfo
    from bench.scenarios.server import ISSUE_ERROR_LIMIT_NS

    n = int(run.end_ns.size)
    span_s = float(run.end_ns[-1]) / 1e9 if n else 0.0
    achieved = run.achieved_qps()
    offered = n / (float(run.scheduled_ns[-1]) / 1e9) if n and run.scheduled_ns[-1] > 0 else 0.0
    z = stats.normal_quantile(0.5 + confidence / 2)
    # Completions in the span are a count: its interval by the normal approximation to Poisson.
    half = z * math.sqrt(n) / span_s if span_s > 0 else float("nan")
    tp = Throughput(achieved * batch_size, (achieved - half) * batch_size, (achieved + half) * batch_size,
                    method="completed requests x batch / span; Poisson count interval", confidence=confidence)
    reasons = []
    needed = stats.min_samples_for_bound(0.99, 0.99)
    if n < needed:
        reasons.append(f"only {n} requests: a p99 bound at 99% confidence needs {needed}")
    if achieved < 0.99 * offered:
        reasons.append(f"achieved {achieved:,.1f}/s is more than 1% below the offered {offered:,.1f}/s: "
                       "the target cannot keep up with this rate")
    errors = run.idle_issue_error_ns
    issue_p99 = float(np.percentile(errors, 99)) if errors.size else None
    issue_p50 = float(np.median(errors)) if errors.size else None
    if issue_p50 is not None and issue_p50 > ISSUE_ERROR_LIMIT_NS:
        reasons.append(f"the generator cannot keep its schedule (issue error median {issue_p50 / 1e3:.0f} µs > "
                       f"{ISSUE_ERROR_LIMIT_NS / 1e3:.0f} µs): the rate offered was lower than asked")
    for key, limit in slo_limits.items():
        value = getattr(latency, key.removesuffix("_ms")).value
        if value > limit:
            reasons.append(f"{key.removesuffix('_ms')} {value:.3g} ms is over the SLO of {limit:g} ms")
    window = max(10_000_000, int(run.end_ns[-1] // SERIES_WINDOWS)) if n else 10_000_000
    depth = run.queue_depth(window)
    info = ServerInfo(target_qps, offered, achieved, n, not reasons, tuple(reasons),
                      None if issue_p99 is None else issue_p99 / 1e3,
                      Series(window / 1e9, tuple(float(d) for d in depth)), mean_batch=run.mean_batch())
    return tp, info
