"""The measured loop and the stopping rule, driven by a fake clock (no sleeping, no real time)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.config import StopSpec
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
