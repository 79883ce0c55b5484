"""The measured loop and the stopping rule, driven by a fake clock (no sleeping, no real time)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.config.records import StopSpec
from bench.scenarios.loops import measure, timed_chunk
from bench.scenarios.stopping import FixedStop


class FakeClock:
    """A clock the fake workload advances: each call costs its planned duration."""

    def __init__(self, durations_ns):
        self.now = 1_000_000
        self.durations = iter(durations_ns)
        self.calls = 0

    def __call__(self) -> int:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += next(self.durations)


def test_timed_chunk_records_each_call():
    clock = FakeClock([10, 20, 30])
    stamps = [0] * 4
    timed_chunk(clock.work, stamps, clock)
    assert np.diff(stamps).tolist() == [10, 20, 30]


def test_fixed_stop_rule():
    rule = FixedStop(min_seconds=1.0, max_seconds=5.0, min_iterations=100)
    few = [np.ones(10, dtype=np.int64)]
    many = [np.ones(100, dtype=np.int64)]
    assert rule.check(500_000_000, many) is None  # not long enough
    assert rule.check(2_000_000_000, few) is None  # long enough, too few
    assert "min_seconds (1 s) and min_iterations (100) met" == rule.check(1_000_000_000, many)
    assert rule.check(5_000_000_000, few).startswith("max_seconds (5 s) reached with 10 of 100")


def test_measure_stops_at_min_seconds_with_exact_samples():
    # 1 ms per call: warm-up of 3 calls, then min_seconds = 0.5 -> about 500 measured calls.
    clock = FakeClock([1_000_000] * 100_000)
    spec = StopSpec(min_seconds=0.5, max_seconds=2.0, min_iterations=10, warmup_iterations=3, warmup_seconds=0.0)
    result = measure(clock.work, spec, FixedStop.from_spec(spec), clock=clock)
    assert result.warmup_latencies_ns.tolist() == [1_000_000] * 3
    assert result.stop_reason.startswith("min_seconds")
    assert np.all(result.latencies_ns == 1_000_000)
    assert result.window_ns == result.latencies_ns.sum()
    assert 500 <= result.latencies_ns.size <= 560  # chunked: stops at the first check past 0.5 s
    assert clock.calls == 3 + result.latencies_ns.size


def test_measure_hits_max_seconds_when_calls_are_slow():
    # 0.4 s per call, min_iterations 100 can never be met inside max_seconds = 2.
    clock = FakeClock([400_000_000] * 1000)
    spec = StopSpec(min_seconds=0.1, max_seconds=2.0, min_iterations=100, warmup_iterations=1, warmup_seconds=0.0)
    result = measure(clock.work, spec, FixedStop.from_spec(spec), clock=clock)
    assert result.stop_reason.startswith("max_seconds (2 s) reached")
    assert result.latencies_ns.size == 5  # chunks of one call each, 5 x 0.4 s = 2 s
    assert result.window_ns == 2_000_000_000


def test_warmup_runs_for_its_seconds_too():
    clock = FakeClock([10_000_000] * 10_000)  # 10 ms per call
    spec = StopSpec(min_seconds=0.05, max_seconds=1.0, min_iterations=1, warmup_iterations=2, warmup_seconds=0.1)
    result = measure(clock.work, spec, FixedStop.from_spec(spec), clock=clock)
    assert result.warmup_latencies_ns.size == 10
    assert result.warmup_seconds == pytest.approx(0.1)


# --- adaptive (CI-based) stopping ------------------------------------------------------------

from bench.scenarios.stopping import CIStop, rule_for, running_precision  # noqa: E402


def ci_spec(**kw) -> StopSpec:
    base = dict(min_seconds=0.1, max_seconds=5.0, min_iterations=50, warmup_iterations=1,
                warmup_seconds=0.0, ci_rel_width=0.02, confidence=0.95, ci_figures=("throughput", "p99"))
    return StopSpec(**{**base, **kw})


def test_ci_stop_ends_as_soon_as_precision_is_reached():
    # 1 ms +- 1% noise: throughput and p99 are known to 2% within a few thousand calls.
    rng = np.random.default_rng(0)
    clock = FakeClock((1_000_000 * (1 + 0.01 * rng.standard_normal(200_000))).astype(np.int64))
    spec = ci_spec()
    result = measure(clock.work, spec, rule_for(spec), clock=clock)
    assert result.stop_reason.startswith("precision reached: throughput ±")
    assert "target ±2.0% at 95% confidence" in result.stop_reason
    assert result.window_ns < 2e9  # long before max_seconds
    precision = running_precision(result.latencies_ns, ("throughput", "p99"), 0.95)
    assert all(v <= 0.02 for v in precision.values())


def test_ci_stop_says_what_was_not_reached_at_max_seconds():
    # heavy-tailed: 5% of calls 20x slower; p99 cannot be pinned to 2% in 2 s of 1 ms calls.
    rng = np.random.default_rng(1)
    lat = np.where(rng.random(100_000) < 0.05, 20_000_000, 1_000_000) * (1 + 0.3 * rng.random(100_000))
    clock = FakeClock(lat.astype(np.int64))
    spec = ci_spec(max_seconds=2.0, ci_rel_width=0.005)
    result = measure(clock.work, spec, rule_for(spec), clock=clock)
    assert result.stop_reason.startswith("max_seconds (2 s) reached before the precision target: throughput ±")
    assert "p99 ±" in result.stop_reason and "target ±0.5%" in result.stop_reason
    assert result.window_ns >= 2e9


def test_ci_stop_respects_minimums():
    rule = CIStop(ci_spec(min_seconds=1.0, min_iterations=100))
    steady = [np.full(5000, 1_000_000, dtype=np.int64)]
    assert rule.check(500_000_000, steady) is None  # precise, but min_seconds not met
    assert rule.check(1_000_000_000, [np.full(50, 1_000_000, dtype=np.int64)]) is None  # too few
    assert rule.check(1_000_000_000, steady).startswith("precision reached")


def test_empty_ci_figures_stops_on_time_alone():
    assert type(rule_for(ci_spec(ci_figures=()))).__name__ == "FixedStop"


def test_running_precision_tracks_the_exact_kernel_bounds():
    from bench import stats

    x = np.sort(np.random.default_rng(2).lognormal(13, 0.4, 20_000)).astype(np.int64)
    approx = running_precision(x, ("p50", "p99"), 0.95)
    for fig, q in (("p50", 0.5), ("p99", 0.99)):
        value = float(np.quantile(x, q))
        exact = stats.percentile_interval(x, q, 0.95).rel_half_width(value)
        assert approx[fig] == pytest.approx(exact, rel=0.15)


def test_past_max_samples_the_loop_keeps_an_even_subsample_and_counts_every_call():
    # 10 µs per call, 0.5 s: 50,000 calls, at most 5,000 latencies kept. Each call's latency is its
    # own index (in µs-ish units), so what was kept says which calls were kept.
    durations = 10_000 + np.arange(200_000, dtype=np.int64)
    clock = FakeClock(durations)
    spec = StopSpec(min_seconds=0.5, max_seconds=2.0, min_iterations=10, warmup_iterations=0, warmup_seconds=0.0,
                    max_samples=5000)
    result = measure(clock.work, spec, FixedStop.from_spec(spec), clock=clock)
    assert result.calls == clock.calls  # no warm-up: every call was measured, and counted
    assert result.stride in (16, 32) and result.latencies_ns.size <= 5000
    assert result.latencies_ns.size == -(-result.calls // result.stride)  # ceil: every stride-th call, from the first
    index = result.latencies_ns - 10_000  # the kept calls' indices
    assert np.all(index % result.stride == 0) and np.all(np.diff(index) == result.stride)
    assert result.window_ns == int(durations[:result.calls].sum())  # the window still covers every call
    assert f"1 in {result.stride} kept" in result.stop_reason


def test_thinned_figures_count_every_call_in_throughput():
    from bench.analysis.figures import cell_metrics

    rng = np.random.default_rng(0)
    lat = rng.lognormal(np.log(1e6), 0.2, 4000).astype(np.int64)
    full, _ = cell_metrics(lat, int(lat.sum()), 2, 0.95, 0)
    thin, series = cell_metrics(lat[::8], int(lat.sum()), 2, 0.95, 0, stride=8)
    assert thin.throughput.value == pytest.approx(full.throughput.value, rel=0.02)  # every call counted
    assert thin.latency_ms.p50.value == pytest.approx(full.latency_ms.p50.value, rel=0.05)
    # the kept sample is an eighth: its intervals are wider, not falsely narrow
    width = lambda e: e.ci_high - e.ci_low  # noqa: E731
    assert width(thin.latency_ms.p50) > 2 * width(full.latency_ms.p50)
    assert sum(series.values) * series.window_s == pytest.approx(4000 * 2, rel=0.15)  # samples over the window


def test_max_samples_below_1000_is_refused():
    assert StopSpec(max_samples=999).validate()[0] == "max_samples"
    assert StopSpec(max_samples=1000).validate() is None
