"""The open-loop load generator of the server scenario: Poisson arrivals at a target rate, latency
from the scheduled arrival, dynamic batching, and the peak-rate search.

Arrivals are scheduled up front from a seeded exponential inter-arrival law (rate lambda). One
thread both issues and serves, first come first served: when a request's scheduled time is in the
future it waits for it (sleeping until 1 ms before, then spinning), otherwise it starts at once.
Every latency runs from the *scheduled* arrival to the end of the call, so a late issuer or a busy
server cannot hide queueing (no coordinated omission: a request that waited in the queue carries
its wait). For a single FIFO server this accounting is exact: it is the Lindley recursion.

Issue error is measured only for requests that found the server idle (start - scheduled), which is
the generator's own lateness. A run is invalid when the generator cannot keep its schedule: its
median issue error over ISSUE_ERROR_LIMIT_NS (the p99 is reported; on a shared VM a few
preemptions put it over 50 µs even when the rate is delivered, and validity also checks that the
achieved rate matches the offered one). The generator's limit (bench self-check --checks generator)
uses the strict p99 criterion with a null backend.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bench.analysis import slo as slos
from bench.measure.timing import BoundCall, as_call
from bench.results.records import LoadPoint

ISSUE_ERROR_LIMIT_NS = 50_000  # 50 µs at p99
SPIN_BELOW_NS = 1_000_000  # sleep until 1 ms before the due time, then spin (sleep overshoots by 100s of µs on a VM)


def wait_for(due_ns: int, clock: Callable[[], int], sleep: Callable[[float], None]) -> None:
    """Return at `due_ns` on `clock`: sleep until SPIN_BELOW_NS before it, then spin."""
    now = clock()
    if due_ns - now > SPIN_BELOW_NS:
        sleep((due_ns - now - SPIN_BELOW_NS) / 1e9)
    while clock() < due_ns:
        pass


def poisson_schedule(rate_qps: float, duration_s: float, seed: int) -> np.ndarray:
    """Arrival offsets (ns, int64, from 0) of a Poisson process of `rate_qps` over `duration_s`."""
    if not rate_qps > 0:
        raise ValueError(f"rate {rate_qps!r}: must be > 0 requests/s")
    rng = np.random.default_rng(seed)
    expected = rate_qps * duration_s
    gaps = rng.exponential(1e9 / rate_qps, int(expected + 10 * np.sqrt(expected) + 10))
    arrivals = np.cumsum(gaps)
    return arrivals[arrivals <= duration_s * 1e9].astype(np.int64)


@dataclass(frozen=True)
class ServerRun:
    scheduled_ns: np.ndarray  # arrival offsets asked for (from t0)
    start_ns: np.ndarray  # when each request's call started (from t0)
    end_ns: np.ndarray  # when each request's call ended (from t0)
    batch_sizes: np.ndarray | None = None  # dynamic batching: requests merged into each call
    issue_errors_ns: np.ndarray | None = None  # dynamic batching: the issuer's own lateness, measured directly

    def mean_batch(self) -> float:
        return float(self.batch_sizes.mean()) if self.batch_sizes is not None and self.batch_sizes.size else 1.0

    @property
    def latencies_ns(self) -> np.ndarray:
        return self.end_ns - self.scheduled_ns

    @property
    def idle_issue_error_ns(self) -> np.ndarray:
        """start - scheduled for the requests that found the server idle: the issuer's lateness.
        (With dynamic batching a batch starts late on purpose, so the issuer's lateness is taken
        where it noticed each batch's first arrival instead.)"""
        if self.issue_errors_ns is not None:
            return self.issue_errors_ns
        prev_end = np.concatenate([[np.iinfo(np.int64).min], self.end_ns[:-1]])
        idle = prev_end <= self.scheduled_ns
        return (self.start_ns - self.scheduled_ns)[idle]

    def queue_depth(self, window_ns: int) -> np.ndarray:
        """Requests arrived but not finished, sampled at the end of each window."""
        if self.end_ns.size == 0:
            return np.zeros(0, dtype=np.int64)
        times = np.arange(window_ns, int(self.end_ns.max()) + window_ns, window_ns)
        arrived = np.searchsorted(self.scheduled_ns, times, side="right")
        done = np.searchsorted(np.sort(self.end_ns), times, side="right")
        return (arrived - done).astype(np.int64)

    def achieved_qps(self) -> float:
        """Completed requests over the span from the first arrival to the last completion (served
        requests complete out of order: the latest, not the last one's)."""
        span = float(self.end_ns.max()) if self.end_ns.size else 0.0
        return self.end_ns.size / (span / 1e9) if span > 0 else 0.0


def run_server(call: BoundCall | Callable[[], Any], schedule_ns: np.ndarray,
               clock: Callable[[], int] = time.perf_counter_ns,
               sleep: Callable[[float], None] = time.sleep,
               before_issue: Callable[[], None] | None = None) -> ServerRun:
    """Serve every scheduled arrival once, FIFO. `before_issue` runs before each call (tests use
    it to slow the issuer down: its delay must show up in the latencies)."""
    fn, args = as_call(call)
    n = schedule_ns.size
    starts = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    sched = schedule_ns.tolist()  # Python ints: no numpy scalar arithmetic inside the loop
    t0 = clock() + 1_000_000  # start 1 ms from now, so the first arrival is not already late
    for k in range(n):
        due = t0 + sched[k]
        now = clock()
        if due - now > SPIN_BELOW_NS:
            sleep((due - now - SPIN_BELOW_NS) / 1e9)
        while clock() < due:
            pass
        if before_issue is not None:
            before_issue()
        start = clock()
        fn(*args)
        end = clock()
        starts[k] = start - t0
        ends[k] = end - t0
    return ServerRun(schedule_ns.astype(np.int64), starts, ends)


def run_batching_server(calls: list, schedule_ns: np.ndarray, max_wait_ns: int,
                        clock: Callable[[], int] = time.perf_counter_ns,
                        sleep: Callable[[float], None] = time.sleep) -> ServerRun:
    """FIFO with dynamic batching, as inference servers do: when the server frees up, it takes the
    oldest waiting request and waits up to max_wait_ns after that request's arrival for more, then
    runs them as one call of up to len(calls) requests (calls[m - 1] serves m requests). Latencies
    still run from each request's scheduled arrival."""
    bound = [as_call(c) for c in calls]
    max_batch = len(bound)
    n = schedule_ns.size
    starts = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    sizes: list[int] = []
    sched = schedule_ns.tolist()
    t0 = clock() + 1_000_000

    def wait_until(due: int) -> None:
        wait_for(due, clock, sleep)

    errors: list[int] = []
    k = 0
    while k < n:
        due0 = t0 + sched[k]
        idle = clock() < due0
        wait_until(due0)
        if idle:  # the server was free: how late did the issuer notice the arrival?
            errors.append(clock() - due0)
        deadline = t0 + sched[k] + max_wait_ns
        m = 1
        while m < max_batch and k + m < n:
            due = t0 + sched[k + m]
            if due <= clock():
                m += 1
            elif due <= deadline:
                wait_until(due)
                m += 1
            else:
                break
        if m < max_batch and k + m < n and max_wait_ns > 0:
            wait_until(min(deadline, t0 + sched[k + m]))  # hold the batch open for the full wait
            while m < max_batch and k + m < n and t0 + sched[k + m] <= clock():
                m += 1
        fn, args = bound[m - 1]
        start = clock()
        fn(*args)
        end = clock()
        starts[k:k + m] = start - t0
        ends[k:k + m] = end - t0
        sizes.append(m)
        k += m
    return ServerRun(schedule_ns.astype(np.int64), starts, ends, np.asarray(sizes, dtype=np.int64),
                     np.asarray(errors, dtype=np.int64))


def md1_mean_latency_s(service_s: float, rate_qps: float) -> float:
    """Mean sojourn time of an M/D/1 queue (Pollaczek-Khinchine): S + rho S / (2 (1 - rho))."""
    rho = rate_qps * service_s
    if rho >= 1:
        raise ValueError(f"utilisation {rho:.2f} >= 1: the queue grows without bound")
    return service_s + rho * service_s / (2 * (1 - rho))


# One rate tried by the peak search is recorded as it will be stored.
Probe = LoadPoint


def probe_result(run: ServerRun, limits_ms: dict[str, float]) -> Probe:
    lat_ms = run.latencies_ns / 1e6
    n = int(lat_ms.size)
    offered = n / (float(run.scheduled_ns[-1]) / 1e9) if n and run.scheduled_ns[-1] > 0 else 0.0
    achieved = run.achieved_qps()
    slo = slos.of_samples_ms(limits_ms, lat_ms) if n else None
    meets = bool(n) and (slo is None or slo.passed)
    errors = run.idle_issue_error_ns
    issuer_ok = not errors.size or float(np.median(errors)) <= ISSUE_ERROR_LIMIT_NS
    return Probe(offered, achieved, float(np.percentile(lat_ms, 50)) if n else 0.0,
                 float(np.percentile(lat_ms, 99)) if n else 0.0, n,
                 bool(n and achieved >= 0.99 * offered and issuer_ok and meets))


def find_peak(try_rate: Callable[[float], tuple[Probe, ServerRun]], start_qps: float, resolution: float,
              max_probes: int) -> tuple[float | None, list[Probe], ServerRun | None]:
    """The highest rate whose probe is good (MLPerf's FindPeakPerformance idea): double or halve
    from start_qps until a good and a bad rate bracket the peak, then bisect (geometrically) until
    bad / good - 1 <= resolution or max_probes are spent. Returns (peak, every probe, the peak's run)."""
    probes: list[Probe] = []
    good_rate: float | None = None
    bad_rate: float | None = None
    best_run = None
    rate = start_qps
    while len(probes) < max_probes:
        probe, run = try_rate(rate)
        probes.append(probe)
        if probe.good:
            good_rate, best_run = rate, run
            if bad_rate is None:
                rate *= 2
                continue
        else:
            bad_rate = rate
            if good_rate is None:
                rate /= 2
                continue
        if bad_rate / good_rate - 1 <= resolution:
            break
        rate = (good_rate * bad_rate) ** 0.5
    return good_rate, probes, best_run
