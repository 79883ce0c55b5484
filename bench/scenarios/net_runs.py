"""The scenarios' glue to the asyncio driver (bench.served.driver) for a backend that has a Requester.

A scenario branches on the capability alone (`session.backend.requester()` is not None), never on
a backend's name, and calls one function here: closed_run (single-stream and offline at one
request in flight, multi-stream at N) or server_run (open-loop Poisson at the cell's rate, and the
peak search with the same probe function as in-process). The worker side returns a ScenarioRun
whose latencies are the ok requests' and whose `requests` is a RequestTally; the parent turns the
tallies into the cell's RequestStats (bench.scenarios.net_requests). The agreement check still
uses backend.outputs(feeds).
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bench.errors import CellFailure
from bench.scenarios import open_loop
from bench.scenarios.base import ScenarioRun
from bench.scenarios.net_requests import RequestTally
from bench.scenarios.stopping import rule_for
from bench.served import driver

if TYPE_CHECKING:
    from bench.config.records import StopSpec
    from bench.scenarios.base import Session

# Later probes of a peak search open fresh connections (a fresh event loop each): a few requests
# warm them before the probe's window.
PROBE_WARMUP = driver.WarmupRule(min_requests=5, min_seconds=0.0, max_seconds=2.0)


def warmup_rule(stop: StopSpec) -> driver.WarmupRule:
    """The benchmark's warm-up, in requests: at least warmup_iterations and warmup_seconds, capped
    at max_seconds (as the in-process loops warm up)."""
    return driver.WarmupRule(stop.warmup_iterations, stop.warmup_seconds, max(stop.max_seconds, stop.warmup_seconds))


def _timeout_s(requester: Any) -> float | None:
    """The driver's own limit on one request: the requester's timeout_s where it states one (its
    endpoint's), else the requester alone enforces one."""
    t = getattr(requester, "timeout_s", None)
    return float(t) if isinstance(t, (int, float)) and t > 0 else None


def stop_rule(stop: StopSpec) -> Callable[[int, list[np.ndarray]], str | None]:
    """The benchmark's stop rule over the ok requests; while none has succeeded it waits for
    max_seconds (the rules' intervals need at least one latency), then stops saying so."""
    rule = rule_for(stop)

    def check(elapsed_ns: int, chunks: list[np.ndarray]) -> str | None:
        kept = [c for c in chunks if c.size]
        if kept:
            return rule.check(elapsed_ns, kept)
        if elapsed_ns >= stop.max_seconds * 1e9:
            return f"max_seconds ({stop.max_seconds:g} s) reached with no successful request"
        return None

    return check


def _window_marks(session: Session) -> tuple[Callable[[], None], Callable[[], None], Any]:
    """The window's start and end marks, with the server's metrics scraped just before the start and
    just after the end where the target names a metrics_url (outside the driver's timed loop: the
    driver calls these before its t0 and after its last request); (start, end, scraper or None)."""
    from bench.served.server_metrics import Scraper, endpoint_options

    scraper = Scraper.for_options(endpoint_options(session.backend))
    if scraper is None:
        return session.window.start, session.window.end, None

    def start() -> None:
        scraper.before()
        session.window.start()

    def end() -> None:
        session.window.end()
        scraper.after()

    return start, end, scraper


def _with_server(tally: RequestTally, scraper: Any, net: driver.NetRun) -> RequestTally:
    """The tally with the window's server metrics (our mean latency split against them)."""
    if scraper is None:
        return tally
    lat = net.latencies_ns
    ours = float(lat.mean()) / 1e6 if lat.size else None
    return replace(tally, server_metrics=scraper.window(ours, tally.sent))


def _no_success(tally: RequestTally) -> CellFailure:
    if tally.sent == 0:
        return CellFailure("no request completed in the measured window (the server stalled past it?)", kind="error")
    return CellFailure(f"all {tally.sent} requests failed: {tally.describe_errors()}", kind="error")


def closed_run(session: Session, requester: Any, concurrency: int,
               should_stop: Callable[[int, list[np.ndarray]], str | None] | None = None,
               per_client: bool = False) -> ScenarioRun:
    """`concurrency` requests in flight, each worker sending its next when its last returns, until
    the benchmark's stop rule (or `should_stop`) says stop. `per_client`: the detail is each
    worker's latencies (multi-stream's per-client figures)."""
    stop = session.stop
    prepared = requester.prepare(session.feeds)  # encoded once, outside any timing
    start, end, scraper = _window_marks(session)
    net = driver.closed_loop(requester, prepared, concurrency, should_stop or stop_rule(stop),
                             _timeout_s(requester), warmup_rule(stop), on_window_start=start,
                             on_window_end=end)
    tally = _with_server(RequestTally.of(net, f"closed loop, {concurrency} in flight"), scraper, net)
    lat = net.latencies_ns
    if lat.size == 0:
        raise _no_success(tally)
    detail = None
    if per_client:
        ok = net.ok
        detail = tuple(lat[net.client[ok] == k] for k in range(concurrency))
    reason = (f"{net.stop_reason or 'stopped'}; served target, {concurrency} request(s) in flight (closed loop), "
              f"{tally.sent} sent, {tally.sent - tally.ok} failed")
    return ScenarioRun(lat, net.window_ns, net.warmup_latencies_ns, reason, detail=detail, requests=tally)


def _server_run(net: driver.NetRun) -> Any:
    """Every request of an open loop as the server scenario's ServerRun (rates and queue depth
    count failed answers too; the latencies the figures use are the ok ones). Issue errors are
    left empty: the driver's lag is judged by its own criterion (driver.DRIVER_LAG_LIMIT_NS)."""
    return open_loop.ServerRun(net.scheduled_ns, net.sent_ns, net.end_ns, issue_errors_ns=np.zeros(0, dtype=np.int64))


def probe_of(net: driver.NetRun, limits_ms: dict[str, float]) -> Any:
    """A peak-search probe: the in-process probe function on the ok requests; a probe with a
    failed request, or whose driver lagged, is not good (the rate is past what was measured)."""
    ok = net.ok
    none = np.zeros(0, dtype=np.int64)  # the driver's lag is judged below, not by the in-process issuer's rule
    probe = open_loop.probe_result(open_loop.ServerRun(net.scheduled_ns[ok], net.sent_ns[ok], net.end_ns[ok], issue_errors_ns=none), limits_ms)
    clean = bool(ok.all()) and not driver.lag_limited(net.lag_ns)
    return replace(probe, achieved_qps=_server_run(net).achieved_qps(), requests=int(ok.size),
                   good=probe.good and clean)


def server_run(session: Session, requester: Any, spec: Any, served: type) -> ScenarioRun:
    """The server scenario on a served target: open-loop Poisson at spec.qps (or a peak search
    from it), every latency from its scheduled send. `served`: the scenario's detail record
    (bench.scenarios.server.Served, passed in: server.py imports this module)."""
    stop = session.stop
    prepared = [requester.prepare(session.feeds)]
    timeout = _timeout_s(requester)
    batching = "" if spec.max_batch <= 1 else (
        f"; dynamic batching (max_batch {spec.max_batch}) not applied: a served target's server batches requests "
        f"itself, and each request here is one batch of {session.batch_size}")

    start, end, scraper = _window_marks(session)

    def serve(rate: float, warm: driver.WarmupRule, marks: bool) -> driver.NetRun:
        schedule = open_loop.poisson_schedule(rate, replace(spec, qps=rate).duration_for(stop), spec.seed)
        return driver.open_loop(requester, prepared, schedule, timeout, warm,
                                on_window_start=start if marks else lambda: None,
                                on_window_end=end if marks else lambda: None)

    probes = None
    window_calls = None
    if spec.search:
        limits = session.bench.slo_limits()
        tried_nets: list[driver.NetRun] = []

        def try_rate(rate: float):
            net = serve(rate, warmup_rule(stop) if not tried_nets else PROBE_WARMUP, False)
            tried_nets.append(net)
            return probe_of(net, limits), net

        start()  # every probe is measured load: the telemetry window (and the server's scrapes) span the search
        peak, tried, net = open_loop.find_peak(try_rate, spec.qps, spec.resolution, spec.max_probes)
        probes = tuple(tried)
        rate = peak
        window_calls = sum(p.requests for p in tried)
        if net is None:  # no rate met the SLO: report the lowest one tried
            rate = min(p.offered_qps for p in tried) or spec.qps
            net = serve(rate, PROBE_WARMUP, False)
            window_calls += int(net.error_code.size)
        end()
        warm = tried_nets[0].warmup_latencies_ns
        reason = (f"peak search on a served target: {len(tried)} rates tried, highest meeting the SLO with no failed "
                  "request " + (f"{peak:,.1f}/s" if peak else "none"))
    else:
        rate = spec.qps
        net = serve(rate, warmup_rule(stop), True)
        warm = net.warmup_latencies_ns
        reason = f"served target: {net.error_code.size} Poisson arrivals at {rate:g}/s sent open-loop"
    tally = RequestTally.of(net, f"open loop, Poisson at {rate:g}/s")
    if not spec.search:  # a search's scrapes span every probe: its requests, not the reported rate's alone
        tally = _with_server(tally, scraper, net)
    elif scraper is not None:
        tally = replace(tally, server_metrics=scraper.window(None, None))
    lat = net.latencies_ns
    if lat.size == 0:
        if tally.sent == 0:
            raise CellFailure(f"no Poisson arrival fell within the run at {rate:g}/s: raise duration_s or qps")
        raise _no_success(tally)
    return ScenarioRun(lat, int(net.end_ns.max()), warm, reason + batching, window_calls,
                       served(_server_run(net), rate, probes), requests=tally)
