"""A served target's requests as the parent records and reports them (the worker's RequestTally ->
the cell's RequestStats; bench.scenarios.net_runs runs the loads).

with_requests adds a cell's RequestStats to its figures (and a server cell's validity says what
failed, or that the driver lagged), merge_requests sums them over the cell's processes, and
request_rows is what the reports show. Imports no scenario module: the scenarios' base and the
registry use it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench.errors import REQUEST_ERROR_KINDS
from bench.results.records import RequestStats
from bench.served import driver


@dataclass(frozen=True)
class RequestTally:
    """What one worker's requests did in its measured window (sent to the parent as is)."""

    load: str  # "open loop, Poisson at 200/s" or "closed loop, 4 in flight"
    sent: int
    ok: int
    errors: dict[str, int]  # by kind, kinds seen only
    examples: tuple[tuple[str, str], ...]  # (kind, reason), a few per kind
    lag_ns: np.ndarray  # int64: the driver's lag samples (see lag_measure)
    lag_measure: str
    cut_at_end: int = 0  # closed loop: in flight when the window ended, cancelled, not counted
    server_metrics: Any = None  # bench.results.records.ServerMetrics where the target names a metrics_url

    @classmethod
    def of(cls, net: driver.NetRun, load: str) -> "RequestTally":
        n = int(net.error_code.size)
        return cls(load, n, int(net.ok.sum()), net.error_counts(), net.examples, net.lag_ns, net.lag_measure,
                   net.cut_at_end)

    def describe_errors(self) -> str:
        """"http_status 10.0% (HTTP 500 ...), timeout 1.0% (...)" over the requests sent."""
        first = dict(reversed(self.examples))  # the first example of each kind
        return ", ".join(f"{k} {c / max(self.sent, 1):.1%} ({first.get(k, '')})" for k, c in self.errors.items())


def stats_of(tally: RequestTally, latencies_ns: np.ndarray | None = None) -> RequestStats:
    """The record of what the requests did; `latencies_ns`, the ok requests' latencies, let the
    driver's lag be judged against the tail it would have to explain."""
    lag = tally.lag_ns
    tail = float(np.percentile(latencies_ns, 99)) if latencies_ns is not None and latencies_ns.size else None
    why = driver.lag_limited(lag, latency_p99_ns=tail)
    failed = tally.sent - tally.ok
    first: dict[str, str] = {}
    for kind, reason in tally.examples:
        first.setdefault(kind, reason)
    return RequestStats(
        load=tally.load, sent=tally.sent, ok=tally.ok, failed=failed,
        error_rate=failed / tally.sent if tally.sent else 0.0,
        errors={k: tally.errors[k] for k in REQUEST_ERROR_KINDS if tally.errors.get(k)},
        error_examples={k: first[k] for k in REQUEST_ERROR_KINDS if k in first and tally.errors.get(k)},
        send_lag_p50_us=float(np.percentile(lag, 50)) / 1e3 if lag.size else None,
        send_lag_p99_us=float(np.percentile(lag, 99)) / 1e3 if lag.size else None,
        lag_measure=tally.lag_measure, driver_limited=bool(why), driver_limited_why=why,
        cut_at_end=tally.cut_at_end)


def server_validity(info: Any, stats: RequestStats) -> Any:
    """A server cell's validity with its requests': failed requests and a lagging driver make it invalid."""
    reasons = []
    if stats.failed:
        reasons.append(f"{stats.failed:,} of {stats.sent:,} requests failed ({error_text(stats)}): the latencies are "
                       "the ok requests'")
    if stats.driver_limited:
        reasons.append(f"driver-limited: {stats.driver_limited_why}")
    if not reasons:
        return info
    return replace(info, valid=False, validity=(*info.validity, *reasons))


def with_requests(figures: Any, run: Any) -> Any:
    """The cell's figures (bench.scenarios.base.Figures) with its RequestStats where `run` (a
    ScenarioRun) was a served target's, and a server cell's validity saying what the requests did;
    unchanged for an in-process run."""
    tally = getattr(run, "requests", None)
    if tally is None:
        return figures
    stats = stats_of(tally, figures.kept_ns)
    records = {**figures.records, "requests": stats}
    if tally.server_metrics is not None:
        records["server_metrics"] = tally.server_metrics
    if records.get("server") is not None:
        records["server"] = server_validity(records["server"], stats)
    return replace(figures, records=records)


def merge_requests(chosen: list[Any], records: dict[str, Any]) -> dict[str, Any]:
    """The cell's RequestStats over its used processes: counts summed, the driver's lag as its
    worst process's p99 and the median process's p50 (each process's samples stay in its worker),
    driver-limited when any process was."""
    stats = [f.records.get("requests") for f in chosen]
    stats = [s for s in stats if s is not None]
    if len(stats) < 2:
        return records
    servers = [f.records.get("server_metrics") for f in chosen if f.records.get("server_metrics") is not None]
    if len(servers) >= 2:  # summed as the requests are, so the server's count meets ours
        from bench.served.server_metrics import combine

        records = {**records, "server_metrics": combine(servers, "processes")}
    sent, ok = sum(s.sent for s in stats), sum(s.ok for s in stats)
    errors: dict[str, int] = {}
    examples: dict[str, str] = {}
    for s in stats:
        for k, c in s.errors.items():
            errors[k] = errors.get(k, 0) + c
        for k, r in s.error_examples.items():
            examples.setdefault(k, r)
    p50 = [s.send_lag_p50_us for s in stats if s.send_lag_p50_us is not None]
    p99 = [s.send_lag_p99_us for s in stats if s.send_lag_p99_us is not None]
    limited = [s for s in stats if s.driver_limited]
    merged = RequestStats(
        load=stats[0].load, sent=sent, ok=ok, failed=sent - ok, error_rate=(sent - ok) / sent if sent else 0.0,
        errors={k: errors[k] for k in REQUEST_ERROR_KINDS if k in errors},
        error_examples={k: examples[k] for k in REQUEST_ERROR_KINDS if k in examples},
        send_lag_p50_us=float(np.median(p50)) if p50 else None, send_lag_p99_us=max(p99) if p99 else None,
        lag_measure=stats[0].lag_measure + f"; over {len(stats)} processes: the median one's p50, the worst one's p99",
        driver_limited=bool(limited),
        driver_limited_why=(f"{len(limited)} of {len(stats)} processes: {limited[0].driver_limited_why}" if limited else ""),
        cut_at_end=sum(s.cut_at_end for s in stats))
    return {**records, "requests": merged}


def error_text(stats: RequestStats) -> str:
    """"http_status 10.0%, timeout 0.5%": each kind's share of the requests sent."""
    return ", ".join(f"{k} {c / max(stats.sent, 1):.1%}" for k, c in stats.errors.items())


def request_rows(cell: Any) -> tuple[tuple[str, str], ...]:
    """What a report shows of a served cell's requests (nothing for an in-process cell)."""
    s = getattr(cell, "requests", None)
    server = getattr(cell, "server_metrics", None)
    if s is None:
        if server is None:
            return ()
        from bench.served.server_metrics import rows as server_rows

        return server_rows(server)  # a monitor cell: its requests are in its windows
    text = f"{s.sent:,} sent ({s.load}), {s.ok:,} ok, {s.failed:,} failed"
    if s.failed:
        text += f": errors {s.error_rate:.1%} (" + "; ".join(
            f"{k} {c:,}" + (f", e.g. {s.error_examples[k]}" if k in s.error_examples else "")
            for k, c in s.errors.items()) + "); figures are from the ok requests"
    if s.cut_at_end:
        text += f"; {s.cut_at_end} in flight at the window's end, not counted"
    rows = [("requests", text)]
    if s.send_lag_p99_us is not None:
        lag = f"lag p50 {s.send_lag_p50_us:,.0f} µs, p99 {s.send_lag_p99_us:,.0f} µs ({s.lag_measure})"
        rows.append(("driver", f"DRIVER-LIMITED: {s.driver_limited_why}; {lag}" if s.driver_limited else lag))
    if server is not None:
        from bench.served.server_metrics import rows as server_rows

        rows += server_rows(server)
    return tuple(rows)
