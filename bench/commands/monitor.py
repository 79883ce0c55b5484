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

A served target (a suite target whose backend has a requester, e.g. kserve-v2) is driven by the
served driver with the same windows, and each window's line says its errors by kind and, where
the target names a metrics_url, the server's own figures beside ours; a window whose failed share
of requests is over --max-error-rate alarms. `bench monitor --url URL --model NAME` watches a
deployed model without a suite: a one-target suite is built (as `bench run MODEL` builds one), its
inputs read from the server's v2 model metadata. Either way the endpoint is asked once before the
worker starts: an unreachable one is one line, exit 2.
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
DEFAULT_MAX_ERROR_RATE = 0.01  # as bench.scenarios.monitor.DEFAULT_MAX_ERROR_RATE (not imported: this module stays light)
MIN_WINDOW_REQUESTS = 100  # a window's p99 needs at least 100 requests


def add_parser(sub) -> None:
    p = sub.add_parser("monitor", help="drive one cell continuously: Prometheus endpoint, drift and leak alarms")
    p.add_argument("suite", nargs="?", default="benchmarks.toml", help="suite file (TOML)")
    p.add_argument("--benchmark", metavar="NAME", help="the [[benchmark]] to drive (required with a suite)")
    p.add_argument("--target", metavar="NAME", help="the target to drive it on (required with a suite)")
    served = p.add_argument_group("a deployed model without a suite (Open Inference Protocol v2)")
    served.add_argument("--url", metavar="URL", help="the server, http(s)://HOST:PORT (its gRPC port with --protocol grpc)")
    served.add_argument("--model", metavar="NAME", help="the model's name on the server (with --url)")
    served.add_argument("--protocol", choices=("rest", "grpc"), default="rest", help="v2 over REST (default) or gRPC")
    served.add_argument("--metrics-url", metavar="URL", help="the server's Prometheus endpoint, scraped around each "
                        "window (Triton :8002/metrics, MLServer :8082/metrics, KServe /metrics)")
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
    p.add_argument("--max-error-rate", type=float, default=DEFAULT_MAX_ERROR_RATE, metavar="F",
                   help=f"a window whose failed share of requests is over F alarms (default {DEFAULT_MAX_ERROR_RATE:g})")
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
    if not (0 <= args.max_error_rate < 1 and math.isfinite(args.max_error_rate)):
        raise UsageError(f"--max-error-rate {args.max_error_rate:g}: expected a share from 0 to below 1 (e.g. 0.01)")
    if args.url is not None:
        if not args.model:
            raise UsageError("--url needs --model NAME (the model's name on the server)")
        if args.benchmark or args.target:
            raise UsageError("--url watches a deployed model without a suite: leave out --benchmark and --target")
    else:
        for flag in ("model", "metrics_url"):
            if getattr(args, flag):
                raise UsageError(f"--{flag.replace('_', '-')} goes with --url (in a suite, set it on the target)")
        if args.protocol != "rest":
            raise UsageError("--protocol goes with --url (in a suite, set it on the target)")
        if not args.benchmark or not args.target:
            raise UsageError("name --benchmark NAME and --target NAME of the suite (or watch a deployed model "
                             "with --url URL --model NAME)")
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
    from bench.config.suite import load_suite

    _check_args(args)
    if args.url is not None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="bench-monitor-model-") as tmp:
            suite = served_suite(args, Path(tmp))
            return _run(args, suite, suite.benchmarks[0], suite.targets["served"])
    suite = load_suite(args.suite)
    benches = {b.name: b for b in suite.benchmarks}
    bench = benches[_pick("benchmark", args.benchmark, list(benches), args.suite)]
    target = suite.targets[_pick("target", args.target, list(suite.targets), args.suite)]
    _preflight(target)
    return _run(args, suite, bench, target)


def _preflight(target) -> None:
    """A served target's endpoint reachable before the worker starts (one line, exit 2), as `bench run` asks."""
    from bench.errors import ConfigError

    check = getattr(target.options, "preflight", None)
    if callable(check):
        reason = check()
        if reason:
            raise ConfigError(f"target {target.name}: {reason}")


def _run(args: argparse.Namespace, suite, bench, target) -> int:
    from dataclasses import replace

    from bench.analysis.drift import Drift, describe
    from bench.analysis.leak import leak_check
    from bench.report.prometheus import MonitorMetrics
    from bench.results.records import Alarm, MonitorInfo, Series
    from bench.results.stores import redact
    from bench.runner.monitor import StopSignals, run_monitor
    from bench.scenarios.monitor import PROM_BUCKETS_S, ErrorRateAlarm, MonitorSpec

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
    error_alarm = ErrorRateAlarm(args.max_error_rate)
    served_windows = [False]

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
            err(f"window {w['index']}: {tput:,.0f} samples/s, {p}, {w['requests']} requests, {w['errors']} errors"
                f"{_kinds(w)}, RSS {w['rss_bytes'] / 2**20:.0f} MiB{gpu}{_server_text(w)}")
        raised = []
        for figure, value in (("p99", w["p99_ms"]), ("throughput", tput if w["requests"] else None)):
            d = drifts[figure]
            found = d.update(value)
            metrics.set_alarm("drift", figure, d.active)
            if found is not None:
                raised.append(Alarm("drift", figure, w["index"], w["end_s"], found[0], found[1]))
        served_windows[0] |= "sent" in w
        found_errors = error_alarm.update(w)
        metrics.set_alarm("error_rate", "errors", error_alarm.active)
        if found_errors is not None:
            raised.append(Alarm("error_rate", "errors", w["index"], w["end_s"], found_errors[0], found_errors[1]))
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
        served = served_windows[0] or any("sent" in w for w in windows)
        per_window = _server_windows(windows)
        extra = {"server_metrics": _server_overall(per_window)} if per_window else {}
        if served:
            extra["requests"] = _requests_overall(windows, spec.load)
        return {**extra, "monitor": MonitorInfo(
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
            if any(w.get("gpu_memory_bytes") is not None for w in windows) else None,
            error_rate_limit=args.max_error_rate,
            errors_by_kind=tuple(dict(w.get("errors_by_kind") or {}) for w in windows) if served else (),
            server_per_window=tuple(per_window))}

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


# --- served targets -------------------------------------------------------------------------

def _kinds(w: dict) -> str:
    """" (http_status 3, timeout 1)": a served window's errors by kind."""
    kinds = w.get("errors_by_kind") or {}
    return " (" + ", ".join(f"{k} {c:,}" for k, c in kinds.items()) + ")" if kinds else ""


def _server_text(w: dict) -> str:
    """The server's figures beside ours, in a window's line."""
    s = w.get("server")
    if not s:
        return ""
    if not s.get("server"):
        return f"; server: {s.get('note') or 'no metrics'}"
    ms = lambda v: "n/e" if v is None else f"{v:.3g} ms"  # noqa: E731  (n/e: not exposed)
    n = "n/e" if s.get("requests") is None else f"{s['requests']:,} req"
    failed = f", {s['failed']:,} failed" if s.get("failed") else ""
    split = "" if s.get("network_client_mean_ms") is None else f", network+client {s['network_client_mean_ms']:.3g} ms"
    ours = "" if s.get("client_mean_ms") is None else f"ours mean {s['client_mean_ms']:.3g} ms; "
    return (f"; {ours}{s['server']}: {n}{failed}, request {ms(s.get('request_mean_ms'))}, "
            f"queue {ms(s.get('queue_mean_ms'))}, compute {ms(s.get('compute_mean_ms'))}{split}")


def _server_windows(windows: list[dict]) -> list:
    from bench.results.records import ServerMetrics

    return [ServerMetrics(**{**w["server"], "sources": tuple(w["server"].get("sources") or ()),
                             "not_exposed": tuple(w["server"].get("not_exposed") or ())})
            for w in windows if w.get("server")]


def _server_overall(per_window: list):
    from bench.served.server_metrics import combine

    return combine(per_window, "windows")


# v2 datatypes -> the benchmark's input dtype (the served target converts within a kind on the wire)
_DTYPE_OF_V2 = {"FP32": "float32", "FP64": "float32", "FP16": "float16", "BF16": "float32", "BOOL": "bool",
                "INT64": "int64", "INT32": "int32", "INT16": "int32", "INT8": "int32",
                "UINT8": "int32", "UINT16": "int32", "UINT32": "int64", "UINT64": "int64"}


def served_suite(args: argparse.Namespace, tmp: Path):
    """A one-target suite for `--url URL --model NAME`: the endpoint asked first (one line, exit 2,
    when it cannot be reached or has no such model), the model's inputs read from its v2 metadata
    and written as a stand-in ONNX graph (Identity per input) that gives the benchmark its inputs;
    the served target is its own reference (its outputs checked finite, nothing to agree with)."""
    import re

    import tomli_w

    from bench.config.suite import parse_suite
    from bench.errors import ConfigError
    from bench.served.endpoint import shown_url
    from bench.served.kserve_options import KServeV2Options

    opts = KServeV2Options(url=args.url, model=args.model, protocol=args.protocol, metrics_url=args.metrics_url or "")
    problem = opts.validate()
    if problem:
        raise UsageError(f"--{problem[0].replace('_', '-')}: {problem[1]}")
    reason = opts.preflight()
    if reason:
        raise ConfigError(reason)
    inputs = _served_inputs(opts)
    name = re.sub(r"[^\w.-]+", "-", args.model) or "model"
    model_path = _stand_in(inputs, tmp / f"{name}.onnx")
    fixed = {d[0] for _, _, d in inputs if d and d[0] > 0}
    batch = args.batch or (fixed.pop() if len(fixed) == 1 else 1)
    target: dict = {"backend": "kserve-v2", "url": args.url, "model": args.model, "protocol": args.protocol}
    if args.metrics_url:
        target["metrics_url"] = args.metrics_url
    from bench.commands.model_suite import STOP

    doc = {"suite": {"name": name}, "defaults": {"seed": 0, "stop": dict(STOP)}, "targets": {"served": target},
           "benchmark": [{"name": name, "model": str(model_path), "batch_sizes": [batch],
                          "scenarios": ["single-stream"], "targets": ["served"]}]}
    try:
        return parse_suite(tomli_w.dumps(doc), "<command line>", base_dir=str(tmp))
    except ConfigError as exc:
        raise ConfigError(f"{shown_url(args.url)} model {args.model!r}: {exc}") from None


def _served_inputs(opts) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, dtype, shape) of each input the server's model metadata lists (shape with -1 for a
    dynamic dimension, the first being the batch); one line, exit 2, when it cannot be read."""
    from bench.backends import kserve_v2
    from bench.errors import ConfigError, RequestFailed
    from bench.served.endpoint import shown_url

    shown = shown_url(opts.url)
    try:
        headers = opts.resolved_headers()
        wire = (kserve_v2._Rest if opts.protocol == "rest" else kserve_v2._Grpc)(opts, headers, kserve_v2.Scrubber(()))
        try:
            status, meta = wire.model_metadata()
            names = wire.model_names() if status != 200 or not isinstance(meta, dict) else None
        finally:
            wire.close()
    except (RequestFailed, LookupError, OSError) as exc:
        raise ConfigError(f"cannot read model {opts.model!r}'s metadata from {shown}: "
                          f"{getattr(exc, 'reason', None) or exc}") from None
    if status != 200 or not isinstance(meta, dict):
        has = f" (it has: {', '.join(names) or 'no models'})" if names is not None else ""
        raise ConfigError(f"model {opts.model!r} is not on the server at {shown}{has}")
    out = []
    for t in meta.get("inputs") or ():
        try:
            tname, datatype, shape = str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t.get("shape") or ())
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{shown}: model {opts.model!r}'s metadata lists an input without a name, datatype "
                              "or numeric shape") from None
        if datatype not in _DTYPE_OF_V2:
            raise ConfigError(f"{shown}: model {opts.model!r}'s input {tname!r} is {datatype}: only numeric tensors "
                              "can be generated; write a suite with the model's file instead")
        if any(d < 0 for d in shape[1:]):
            raise ConfigError(f"{shown}: model {opts.model!r}'s input {tname!r} has shape {list(shape)}: a dynamic "
                              "dimension past the batch needs a size; write a suite with the model's file and its dims")
        out.append((tname, _DTYPE_OF_V2[datatype], shape))
    if not out:
        raise ConfigError(f"{shown}: model {opts.model!r}'s metadata lists no inputs (a KServe model says them with "
                          "get_input_types); write a suite with the model's file instead")
    return out


def _stand_in(inputs: list[tuple[str, str, tuple[int, ...]]], path: Path) -> Path:
    """An ONNX graph with these inputs (the first dimension the batch) and an Identity output each."""
    import numpy as np
    import onnx
    from onnx import helper

    nodes, ins, outs = [], [], []
    for i, (name, dtype, shape) in enumerate(inputs):
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        dims = ["batch", *shape[1:]] if shape else ["batch"]
        ins.append(helper.make_tensor_value_info(name, elem, dims))
        outs.append(helper.make_tensor_value_info(f"out{i}", elem, dims))
        nodes.append(helper.make_node("Identity", [name], [f"out{i}"]))
    graph = helper.make_graph(nodes, "served_stand_in", ins, outs)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _requests_overall(windows: list[dict], load: str):
    """A served monitor's RequestStats over its windows: counts summed, the driver's lag as the
    worst window's p99 (the windows keep no lag samples)."""
    from bench.errors import REQUEST_ERROR_KINDS
    from bench.results.records import RequestStats
    from bench.served.driver import DRIVER_LAG_LIMIT_NS

    sent = sum(w.get("sent", w["requests"] + w["errors"]) for w in windows)
    ok = sum(w["requests"] for w in windows)
    errors: dict[str, int] = {}
    examples: dict[str, str] = {}
    for w in windows:
        for k, c in (w.get("errors_by_kind") or {}).items():
            errors[k] = errors.get(k, 0) + c
        for k, r in (w.get("error_examples") or {}).items():
            examples.setdefault(k, r)
    lags = [w["lag_p99_us"] for w in windows if w.get("lag_p99_us") is not None]
    p50s = sorted(w["lag_p50_us"] for w in windows if w.get("lag_p50_us") is not None)
    limited = [w for w in windows if w.get("driver_limited")]
    return RequestStats(
        load=load, sent=sent, ok=ok, failed=sent - ok, error_rate=(sent - ok) / sent if sent else 0.0,
        errors={k: errors[k] for k in REQUEST_ERROR_KINDS if errors.get(k)},
        error_examples={k: examples[k] for k in REQUEST_ERROR_KINDS if k in examples and errors.get(k)},
        send_lag_p50_us=p50s[len(p50s) // 2] if p50s else None, send_lag_p99_us=max(lags) if lags else None,
        lag_measure=f"the median window's p50, the worst window's p99, over {len(windows)} windows",
        driver_limited=bool(limited),
        driver_limited_why=(f"{len(limited)} of {len(windows)} windows over {DRIVER_LAG_LIMIT_NS / 1e3:,.0f} µs: "
                            f"{limited[0]['driver_limited']}" if limited else ""),
        cut_at_end=sum(w.get("cut_at_end", 0) for w in windows))
