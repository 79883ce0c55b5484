"""server: open-loop Poisson arrivals at a target rate; each latency runs from the request's
*scheduled* arrival, so queueing is never hidden (the generator: bench.scenarios.open_loop).

Its table, `server = { qps = R, ... }` (ServerSpec), also serves loadgen-server. A cell records
target, offered and achieved rates, queue depth over time, the generator's issue error, and
validity: enough requests for a p99 bound (662), achieved within 1% of offered, the generator on
schedule, the SLO met. Dynamic batching (`max_batch`, `max_wait_ms`) merges waiting requests
into one call; a peak search (`search = true`, with an SLO) finds the highest rate meeting it.

Queueing latencies are strongly autocorrelated, so sample tests that assume independent calls
cry wolf on them (seen: 40% of simulated A/A pairs at rho = 0.8): server cells compare by
capacity, the peak search's max_qps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench.config.records import BenchmarkSpec, StopSpec, TargetSpec
from bench.errors import CellFailure
from bench.results.records import Cell, CellKey, Latency, Series, ServerInfo, Throughput
from bench.scenarios import net_requests, net_runs, open_loop
from bench.scenarios.base import Figures, Scenario, ScenarioRun, Session
from bench.scenarios.loops import warm_up

MAX_BATCHING = 1024  # inputs are built for every batch from 1 to max_batch up front
MIN_SERVER_REQUESTS = 662  # p99 bound at 99% confidence (bench.stats.min_samples_for_bound)


@dataclass(frozen=True)
class ServerSpec:
    """Open-loop Poisson load (the server scenario); each request is one batch."""

    qps: float = 0.0  # target arrival rate, requests/s
    duration_s: float = 0.0  # 0: long enough for a p99 bound at 99% confidence (662 requests), within max_seconds
    seed: int = 0
    max_batch: int = 1  # dynamic batching: merge up to this many waiting requests into one call
    max_wait_ms: float = 0.0  # dynamic batching: how long the oldest request may wait for company
    search: bool = False  # find the highest rate meeting the SLO, starting from qps
    resolution: float = 0.05  # search until bad / good rate - 1 <= resolution
    max_probes: int = 12

    def validate(self) -> tuple[str, str] | None:
        if not self.qps > 0:
            return "qps", f"{self.qps!r} is not allowed; the target rate must be > 0 requests/s"
        if self.qps > 1e8:
            return "qps", f"{self.qps!r} is not allowed; at most 1e8 requests/s"
        if self.duration_s != 0 and not 0.1 <= self.duration_s <= 86_400:
            return "duration_s", f"{self.duration_s!r} is not allowed; expected 0 (automatic) or 0.1 to 86400 seconds"
        if self.seed < 0:
            return "seed", f"{self.seed!r} is not allowed; expected an integer >= 0"
        if not 1 <= self.max_batch <= MAX_BATCHING:
            return "max_batch", f"{self.max_batch!r} is not allowed; expected an integer from 1 to {MAX_BATCHING}"
        if self.max_wait_ms < 0:
            return "max_wait_ms", f"{self.max_wait_ms!r} is not allowed; the batching wait must be >= 0 ms"
        if not 0 < self.resolution < 1:
            return "resolution", f"{self.resolution!r} is not allowed; expected a fraction between 0 and 1"
        if self.max_probes < 2:
            return "max_probes", f"{self.max_probes!r} is not allowed; expected an integer >= 2"
        return None

    def duration_for(self, stop: StopSpec) -> float:
        """The schedule's length: as given, or enough requests for a p99 bound within the stop rule."""
        if self.duration_s > 0:
            return self.duration_s
        return min(max(stop.min_seconds, 1.2 * MIN_SERVER_REQUESTS / self.qps), stop.max_seconds)


def parse_server_table(reader: Any, value: Any, path: str) -> ServerSpec:
    reader.expect(value, (dict,), path, "a table")
    if "qps" not in value:
        raise reader.fail(path, "missing key 'qps' (the target rate, requests/s)")
    return reader.record(ServerSpec, value, path)


def require_server_table(reader: Any, bench: BenchmarkSpec, scenario: str, path: str) -> ServerSpec:
    spec = bench.table("server")
    if spec is None:
        raise reader.fail(path, f"the {scenario} scenario needs server = {{ qps = RATE }} (requests/s)")
    return spec


def server_figures(run: open_loop.ServerRun, batch_size: int, target_qps: float, confidence: float,
                   slo_limits: dict[str, float], latency: Latency) -> tuple[Throughput, ServerInfo]:
    """Throughput and validity of a server-scenario cell."""
    from bench import stats
    from bench.analysis import slo as slos
    from bench.analysis.figures import series_window_ns

    n = int(run.end_ns.size)
    span_s = float(run.end_ns.max()) / 1e9 if n else 0.0
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
    limit_ns = open_loop.ISSUE_ERROR_LIMIT_NS
    if issue_p50 is not None and issue_p50 > limit_ns:
        reasons.append(f"the generator cannot keep its schedule (issue error median {issue_p50 / 1e3:.0f} µs > "
                       f"{limit_ns / 1e3:.0f} µs): the rate offered was lower than asked")
    reasons += slos.broken(slos.of_latency(slo_limits, latency))
    window = series_window_ns(int(run.end_ns.max())) if n else series_window_ns(0)
    depth = run.queue_depth(window)
    info = ServerInfo(target_qps, offered, achieved, n, not reasons, tuple(reasons),
                      None if issue_p99 is None else issue_p99 / 1e3,
                      Series(window / 1e9, tuple(float(d) for d in depth)), mean_batch=run.mean_batch())
    return tp, info


@dataclass(frozen=True)
class Served:
    """The worker's detail: the schedule served, the rate it was drawn at, and a search's probes."""

    run: open_loop.ServerRun
    rate_qps: float
    probes: tuple[open_loop.Probe, ...] | None = None


class Server(Scenario):
    name = "server"
    table_key = "server"

    def parse_table(self, reader, value, path):
        return parse_server_table(reader, value, path)

    def check(self, reader, bench: BenchmarkSpec, targets: dict[str, TargetSpec], path: str) -> None:
        require_server_table(reader, bench, self.name, path)

    def check_table(self, reader, bench: BenchmarkSpec, path: str) -> None:
        if bench.table("server").search and bench.slo is None:
            raise reader.fail(f"{path}.server.search", "a peak search needs an SLO to meet, e.g. slo = { p99_ms = 20 }")

    def busy_s(self, bench: BenchmarkSpec) -> float:
        return bench.table("server").duration_s

    def run(self, session: Session) -> ScenarioRun:
        spec: ServerSpec = session.bench.table("server")
        if (requester := session.backend.requester()) is not None:  # open loop over the network
            return net_runs.server_run(session, requester, spec, Served)
        stop = session.stop
        probes = None
        window_calls = None
        fn = session.call
        with session.context():
            warm = warm_up(fn, stop, time.perf_counter_ns)
            if spec.search:
                limits = session.bench.slo_limits()

                def try_rate(rate: float):
                    # (the search runs unbatched)
                    run = open_loop.run_server(fn, open_loop.poisson_schedule(
                        rate, replace(spec, qps=rate).duration_for(stop), spec.seed))
                    return open_loop.probe_result(run, limits), run

                session.window.start()  # every probe is measured load: the telemetry window spans the search
                peak, tried, served = open_loop.find_peak(try_rate, spec.qps, spec.resolution, spec.max_probes)
                probes = tuple(tried)
                rate = peak
                window_calls = sum(p.requests for p in tried)
                if served is None:  # no rate met the SLO: report the lowest one tried
                    rate = min(p.offered_qps for p in tried) or spec.qps
                    _, served = try_rate(rate)
                    window_calls += int(served.end_ns.size)
                session.window.end()
                reason = (f"peak search: {len(tried)} rates tried, highest meeting the SLO "
                          + (f"{peak:,.1f}/s" if peak else "none"))
            elif spec.max_batch > 1:
                rate = spec.qps
                calls = [fn] + [session.bind(session.inputs(session.batch_size * m))
                                for m in range(2, spec.max_batch + 1)]
                schedule = open_loop.poisson_schedule(spec.qps, spec.duration_for(stop), spec.seed)
                session.window.start()
                served = open_loop.run_batching_server(calls, schedule, int(spec.max_wait_ms * 1e6))
                session.window.end()
                reason = (f"server schedule of {schedule.size} Poisson arrivals at {spec.qps:g}/s served with dynamic "
                          f"batching (up to {spec.max_batch}, wait {spec.max_wait_ms:g} ms; mean batch "
                          f"{served.mean_batch():.2f})")
            else:
                rate = spec.qps
                schedule = open_loop.poisson_schedule(spec.qps, spec.duration_for(stop), spec.seed)
                session.window.start()
                served = open_loop.run_server(fn, schedule)
                session.window.end()
                reason = f"server schedule of {schedule.size} Poisson arrivals at {spec.qps:g}/s served"
        if served.end_ns.size == 0:
            raise CellFailure(f"no Poisson arrival fell within the run at {rate:g}/s: raise duration_s or qps")
        return ScenarioRun(served.latencies_ns, int(served.end_ns[-1]), warm, reason, window_calls,
                           Served(served, rate, probes))

    def figures(self, run: ScenarioRun, bench: BenchmarkSpec, key: CellKey) -> Figures:
        from bench.analysis import slo as slos
        from bench.analysis.figures import cell_metrics
        from bench.results.records import Metrics

        served: Served = run.detail
        # Early latencies are real queueing, not warm-up (that ran before): nothing is cut.
        metrics, _ = cell_metrics(run.latencies_ns, run.window_ns, key.batch_size, bench.stop.confidence, bench.seed)
        tp, info = server_figures(served.run, key.batch_size, served.rate_qps, bench.stop.confidence,
                                  bench.slo_limits(), metrics.latency_ms)
        if served.probes is not None:
            peak = served.rate_qps if any(q.good for q in served.probes) else None
            info = replace(info, max_qps=peak, curve=served.probes)
        return net_requests.with_requests(Figures(Metrics(tp, metrics.latency_ms), run.latencies_ns, run.window_ns, 0, None,
                                              slos.of_latency(bench.slo_limits(), metrics.latency_ms), {"server": info}),
                                      run)

    def compare_policy(self):
        from bench.analysis.compare import CapacityRatio

        return CapacityRatio("peak rate meeting the SLO", lambda c: c.server.max_qps if c.server else None,
                             "queueing latencies are autocorrelated, so sample tests do not apply: compare server "
                             "cells by a peak search (server.search = true)")

    def detail_rows(self, cell: Cell) -> tuple[tuple[str, str], ...]:
        s = cell.server
        if s is None:
            return ()
        rows = [("rates", f"target {s.target_qps:,.1f}/s, offered {s.offered_qps:,.1f}/s, achieved {s.achieved_qps:,.1f}/s "
                          f"over {s.requests:,} requests" + (f", mean batch {s.mean_batch:.2f}" if s.mean_batch != 1 else "")),
                ("validity", "valid" if s.valid else "INVALID: " + "; ".join(s.validity))]
        if s.issue_error_p99_us is not None:
            rows.append(("generator", f"issue error p99 {s.issue_error_p99_us:,.1f} µs"))
        if s.curve:
            rows.append(("peak search", (f"max {s.max_qps:,.1f}/s meeting the SLO" if s.max_qps else "no rate met the SLO")
                         + "; " + ", ".join(f"{p.offered_qps:,.0f}/s p99 {p.p99_ms:.3g} ms {'ok' if p.good else 'no'}"
                                            for p in s.curve)))
        return tuple(rows)
