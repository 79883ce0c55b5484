"""`bench monitor SUITE --benchmark NAME --target NAME`: drive one cell until stopped, with a
Prometheus endpoint, drift and leak alarms, and a run directory at the end.

A line per window on stderr; an alarm is a line of its own, on the endpoint (bench_monitor_alarm),
and with --fail-on-alarm the end of the monitor (exit 1). SIGINT or SIGTERM is how a monitor is
meant to end (it runs until stopped), not an interruption as in `bench run` (130/143): either
stops it at the end of the window in flight and writes the run directory, complete, as the end of
--duration-s does; exit 0, or 1 when an alarm was raised with --fail-on-alarm, or 3 when the cell
failed. Before the worker starts (the model being prepared) nothing is measured yet, and a signal
interrupts as for any command; SIGHUP (a closed terminal) interrupts at any time: the run is kept,
"interrupted", exit 129.
"""
from __future__ import annotations

import argparse
import difflib
import ipaddress
import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.commands.output import err
from bench.errors import EXIT_CELL_FAILED, EXIT_INTERRUPTED, EXIT_NO, EXIT_OK, UsageError

if TYPE_CHECKING:
    from bench.results.records import Alarm
    from bench.runner.monitor import MonitorResult

DEFAULT_PORT = 9400
MIN_WINDOW_REQUESTS = 100  # a window's p99 needs at least 100 requests


def add_parser(sub) -> None:
    p = sub.add_parser("monitor", help="drive one cell continuously: Prometheus endpoint, drift and leak alarms")
    p.add_argument("suite", nargs="?", default="benchmarks.toml", help="suite file (TOML)")
    p.add_argument("--benchmark", required=True, metavar="NAME", help="the [[benchmark]] to drive")
    p.add_argument("--target", required=True, metavar="NAME", help="the target to drive it on")
    p.add_argument("--batch", type=int, metavar="N", help="batch size of each request (default: the benchmark's first)")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--qps", type=float, metavar="R", help="open loop: Poisson arrivals at R requests/s")
    load.add_argument("--concurrency", type=int, metavar="N", help="closed loop: N clients (default 1)")
    p.add_argument("--window-s", type=float, default=5.0, metavar="S", help="window of each summary (default 5 s)")
    p.add_argument("--duration-s", type=float, default=0.0, metavar="D", help="stop after D seconds (default: run until "
                   "SIGINT or SIGTERM)")
    p.add_argument("--host", default="127.0.0.1", help="address of the Prometheus endpoint (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port of the Prometheus endpoint (default {DEFAULT_PORT})")
    p.add_argument("--baseline", metavar="RUN", help="drift baseline: a run directory or run.json holding this "
                   "benchmark and target (default: the first windows)")
    p.add_argument("--baseline-windows", type=int, default=60, metavar="K",
                   help="windows that set the baseline (and its noise) (default 60)")
    p.add_argument("--leak-mib-per-h", type=float, default=16.0, metavar="X",
                   help="RSS growth after warm-up that counts as a leak (default 16 MiB/h)")
    p.add_argument("--fail-on-alarm", action="store_true", help="end at the first alarm, exit 1")
    p.add_argument("--out", metavar="DIR", default="results", help="results root (default: results)")
    p.add_argument("--quiet", action="store_true", help="no line per window (alarms are still shown)")


def _pick(kind: str, name: str, names: list[str], where: str) -> str:
    if name in names:
        return name
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"--{kind} {name!r} is not a {kind} of {where} (it has: {', '.join(names)}){hint}")


def _check_args(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected a port from 1 to 65535")
    if args.qps is not None and not (args.qps > 0 and math.isfinite(args.qps)):
        raise UsageError(f"--qps {args.qps:g}: expected a rate > 0 requests/s")
    if args.concurrency is not None and not 1 <= args.concurrency <= 256:
        raise UsageError(f"--concurrency {args.concurrency}: expected 1 to 256 clients")
    if not (args.window_s >= 0.2 and math.isfinite(args.window_s)):
        raise UsageError(f"--window-s {args.window_s:g}: expected at least 0.2 s")
    if args.duration_s < 0 or not math.isfinite(args.duration_s):
        raise UsageError(f"--duration-s {args.duration_s:g}: expected 0 (until stopped) or a number of seconds")
    if 0 < args.duration_s < args.window_s:
        raise UsageError(f"--duration-s {args.duration_s:g} is shorter than one window (--window-s {args.window_s:g})")
    if args.qps is not None and args.qps * args.window_s < MIN_WINDOW_REQUESTS:
        need = MIN_WINDOW_REQUESTS / args.qps
        raise UsageError(f"--window-s {args.window_s:g} at --qps {args.qps:g} holds about {args.qps * args.window_s:.0f} "
                         f"requests; a window's p99 needs at least {MIN_WINDOW_REQUESTS}: use --window-s {need:.3g} or more")
    if args.baseline_windows < 3:
        raise UsageError(f"--baseline-windows {args.baseline_windows}: expected 3 or more")
    if not args.leak_mib_per_h > 0:
        raise UsageError(f"--leak-mib-per-h {args.leak_mib_per_h:g}: expected a rate > 0")
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch {args.batch}: expected an integer >= 1")
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        err(f"warning: the Prometheus endpoint listens on {args.host}, not loopback: anyone who can reach this "
            "machine can read it")


def _baseline(path: str, benchmark: str, target: str, batch: int) -> tuple[float, float, str]:
    """(p99 ms, throughput, description) of the baseline run's cell of this benchmark, target and batch."""
    from bench.results.files import read_run

    run = read_run(Path(path))
    cells = [c for c in run.cells if c.benchmark == benchmark and c.target.name == target and c.batch_size == batch
             and c.status == "ok" and c.metrics is not None]
    if not cells:
        have = sorted({f"{c.benchmark}/{c.target.name}/b{c.batch_size}" for c in run.cells if c.status == "ok"})
        raise UsageError(f"--baseline {path}: no measured cell of benchmark {benchmark!r}, target {target!r}, batch "
                         f"{batch} (it has: {', '.join(have) or 'none'})")
    cell = next((c for c in cells if c.scenario == "monitor"), cells[0])
    m = cell.metrics
    return m.latency_ms.p99.value, m.throughput.value, f"{cell.id} of run {run.run_id}"


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bench.analysis.drift import Drift, describe
    from bench.analysis.leak import leak_check
    from bench.config.suite import load_suite
    from bench.report.prometheus import MonitorMetrics
    from bench.results.records import Alarm, MonitorInfo, Series
    from bench.results.stores import redact
    from bench.runner.monitor import StopSignals, run_monitor
    from bench.scenarios.monitor import PROM_BUCKETS_S, MonitorSpec

    _check_args(args)
    suite = load_suite(args.suite)
    benches = {b.name: b for b in suite.benchmarks}
    bench = benches[_pick("benchmark", args.benchmark, list(benches), args.suite)]
    target = suite.targets[_pick("target", args.target, list(suite.targets), args.suite)]
    batch = args.batch or bench.batch_sizes[0]
    bench = replace(bench, batch_sizes=(batch,))
    centres: dict[str, float | None] = {"p99": None, "throughput": None}
    baseline = f"the first {args.baseline_windows} windows"
    if args.baseline:
        p99, tput, what = _baseline(args.baseline, bench.name, target.name, batch)
        centres = {"p99": math.log(p99), "throughput": math.log(tput)}
        baseline = f"{what} (its p99 and throughput; the noise from the first {args.baseline_windows} windows)"
    spec = MonitorSpec(qps=args.qps or 0.0, concurrency=0 if args.qps else (args.concurrency or 1),
                       window_s=args.window_s, duration_s=args.duration_s, seed=bench.seed)

    metrics = MonitorMetrics(bench.name, target.name, batch, PROM_BUCKETS_S)
    try:
        server = metrics.serve(args.host, args.port)
    except OSError as exc:
        raise UsageError(f"--port {args.port}: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    drifts = {"p99": Drift("p99", True, args.baseline_windows, centres["p99"]),
              "throughput": Drift("throughput", False, args.baseline_windows, centres["throughput"])}
    alarms: list[Alarm] = []
    at_s: list[float] = []
    rss: list[float] = []
    gpu_at_s: list[float] = []
    gpu_mem: list[float] = []
    leak_raised: set[str] = set()

    def on_window(w: dict, stopper) -> None:
        metrics.update(w)
        tput = w["samples"] / w["span_s"] if w["span_s"] > 0 else 0.0
        at_s.append(w["end_s"])
        rss.append(float(w["rss_bytes"]))
        if not args.quiet:
            p = "-" if w["p99_ms"] is None else f"p50 {w['p50_ms']:.3g} ms, p99 {w['p99_ms']:.3g} ms"
            gpu = "" if w.get("gpu_utilization_pct") is None else (
                f", GPU {w['gpu_utilization_pct']:.0f}% at {w.get('gpu_sm_clock_mhz') or 0:.0f} MHz, "
                f"{w.get('gpu_power_w') or 0:.0f} W, {(w.get('gpu_memory_bytes') or 0) / 2**20:.0f} MiB")
            err(f"window {w['index']}: {tput:,.0f} samples/s, {p}, {w['requests']} requests, {w['errors']} errors, "
                f"RSS {w['rss_bytes'] / 2**20:.0f} MiB{gpu}")
        raised = []
        for figure, value in (("p99", w["p99_ms"]), ("throughput", tput if w["requests"] else None)):
            d = drifts[figure]
            found = d.update(value)
            metrics.set_alarm("drift", figure, d.active)
            if found is not None:
                raised.append(Alarm("drift", figure, w["index"], w["end_s"], found[0], found[1]))
        if w.get("gpu_memory_bytes") is not None:
            gpu_at_s.append(w["end_s"])
            gpu_mem.append(float(w["gpu_memory_bytes"]))
        if len(rss) < 200 or len(rss) % 10 == 0:
            for figure, name, xs, ys in (("rss", "RSS", at_s, rss), ("gpu_memory", "GPU memory", gpu_at_s, gpu_mem)):
                leak = leak_check(name, xs, ys, args.leak_mib_per_h) if ys else None
                if leak is not None and leak.leaking and figure not in leak_raised:
                    leak_raised.add(figure)
                    raised.append(Alarm("leak", figure, w["index"], w["end_s"], leak.slope_mib_per_h, leak.message))
                metrics.set_alarm("leak", figure, figure in leak_raised)
        for a in raised:
            alarms.append(a)
            err(f"ALARM ({a.kind}) at window {a.window}, {a.at_s:.0f} s: {a.message}")
            if args.fail_on_alarm:
                stopper.request(f"alarm with --fail-on-alarm: {a.message}")

    def finish(windows: list[dict], end_reason: str) -> dict:
        leak = leak_check("RSS", [w["end_s"] for w in windows], [float(w["rss_bytes"]) for w in windows],
                          args.leak_mib_per_h, min_span_s=60.0)  # the record's slope: a minute after warm-up will do
        series = lambda values: Series(args.window_s, tuple(float(v) for v in values))  # noqa: E731
        return {"monitor": MonitorInfo(
            load=spec.load, qps=spec.qps or None, concurrency=spec.concurrency or None, window_s=args.window_s,
            windows=len(windows), requests=sum(w["requests"] for w in windows),
            errors=sum(w["errors"] for w in windows),
            throughput=series(w["samples"] / w["span_s"] if w["span_s"] > 0 else 0.0 for w in windows),
            p50_ms=series(w["p50_ms"] or 0.0 for w in windows), p99_ms=series(w["p99_ms"] or 0.0 for w in windows),
            rss_bytes=series(w["rss_bytes"] for w in windows), errors_per_window=tuple(w["errors"] for w in windows),
            baseline=baseline, detector=describe(args.baseline_windows), alarms=tuple(alarms),
            leak_slope_mib_per_h=leak.slope_mib_per_h if leak else None, leak_slope_low=leak.low if leak else None,
            leak_slope_high=leak.high if leak else None, end_reason=end_reason,
            gpu_memory_bytes=series(w["gpu_memory_bytes"] or 0 for w in windows)
            if any(w.get("gpu_memory_bytes") is not None for w in windows) else None)}

    err(f"monitor: {bench.name} on {target.name}, batch {batch}, {spec.load}, windows of {args.window_s:g} s"
        f"{f', for {args.duration_s:g} s' if args.duration_s else ', until SIGINT or SIGTERM'}; "
        f"metrics at http://{args.host}:{server.server_port}/metrics")
    argv = tuple(redact(a) for a in sys.argv)
    # SIGINT and SIGTERM are how a monitor ends: from the worker's start to this command's return
    # they stop it as --duration-s would (exit 0), not as bench.cli's interruption (130/143).
    with StopSignals((signal.SIGINT, signal.SIGTERM)) as stops:
        try:
            result = run_monitor(suite, bench, target, spec, Path(args.out), argv, on_window, finish,
                                 on_started=lambda path: err(f"results will be in {path}"), stop_signals=stops)
        finally:
            server.shutdown()
            server.server_close()
        return _summary(result, alarms, args.fail_on_alarm)


def _summary(result: MonitorResult, alarms: list[Alarm], fail_on_alarm: bool) -> int:
    """The run's table and closing lines; the exit code: 3 a failed cell, 1 an alarm with
    --fail-on-alarm, else 0 however the monitor ended (its duration, a stop signal, an alarm)."""
    from bench.report import terminal
    from bench.report.run_tables import summary_table

    terminal.console().print(terminal.render(summary_table(result.run)))
    cell = result.run.cells[0]
    if cell.monitor is not None and cell.monitor.leak_slope_mib_per_h is not None:
        m = cell.monitor
        err(f"RSS slope after warm-up: {m.leak_slope_mib_per_h:+.3g} MiB/h [{m.leak_slope_low:+.3g}, "
            f"{m.leak_slope_high:+.3g}] over {m.windows} windows")
    err(f"{result.run.end_reason or 'ended'}; {len(alarms)} alarm(s); results: {result.path}")
    if cell.status == "failed":
        err(f"{cell.id} failed ({cell.failure_kind}): {cell.reason}")
    if result.interrupted:  # SIGHUP: bench.cli makes it 129
        return EXIT_INTERRUPTED
    if cell.status == "failed":
        return EXIT_CELL_FAILED
    return EXIT_NO if alarms and fail_on_alarm else EXIT_OK
