"""monitor: one cell driven continuously (`bench monitor`), summarised window by window.

The load is open loop (Poisson arrivals at `qps`, each latency from the request's scheduled
arrival, as the server scenario does, so a backlog is never hidden) or `concurrency` closed-loop
clients on threads. Every `window_s` seconds the worker summarises the window's completions and
drops their raw latencies: memory stays flat however long it runs. A summary is one JSON line
appended to the stream file the parent tails (bench.runner.monitor); the parent keeps the
summaries' figures and merges their histograms. The worker stops at the end of a window once
the stop file exists or the duration is reached.

A window's summary: completions and errors, the latency sum, p50/p90/p99/max of the window (exact,
from its own latencies), cumulative counts at the Prometheus buckets (PROM_BUCKETS_S), the
window's log histogram (the bucket scheme of kernels/histogram.py, relative error 1%, so windows
merge into the cell's histogram), the worker's RSS at the window's end, and on a GPU target the
window's NVML figures (GpuWindows).

On a served target (a backend with a requester: kserve-v2) the load is the served driver's
(bench.served.driver): open loop at `qps` (each latency from its scheduled send) or `concurrency`
requests in flight, one driver run per window (run_served): a fresh event loop and connection
pool each window, warm-up before the first only; the gap between two windows (the last requests'
drain, the scrapes) is not measured load, a few milliseconds. Each window's line also holds its
requests sent, errors by kind with an example each, the driver's lag, and, where the target names
a metrics_url, the server's own figures scraped just before and just after the window
(bench.served.server_metrics). error_alarm() is the error-rate alarm the parent runs on the lines.

A monitor runs only through `bench monitor` (its settings are the command's flags, not a table):
a suite that lists the scenario is refused.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bench.config.records import BenchmarkSpec, TargetSpec
from bench.measure.timing import as_call
from bench.results.records import Cell, CellKey, Estimate, Latency, Metrics, Throughput
from bench.scenarios.base import Figures, Scenario, ScenarioRun, Session
from bench.scenarios.loops import warm_up
from bench.scenarios.open_loop import wait_for

# The latency histogram's buckets on the Prometheus endpoint, in seconds (100 µs to 10 s, about
# 2.5x apart): inference latencies from a tiny model on a CPU to a large batch on a busy GPU.
PROM_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                  5.0, 10.0)
HIST_REL_ERROR = 0.01  # as bench.analysis.figures.HISTOGRAM_REL_ERROR: windows merge into the cell's histogram
HIST_BASE_NS = 1.0
HIST_GROWTH = (1 + HIST_REL_ERROR) / (1 - HIST_REL_ERROR)
MIN_WINDOW_S = 0.2
DEFAULT_MAX_ERROR_RATE = 0.01  # a window whose failed share of requests is over this alarms


@dataclass(frozen=True)
class MonitorSpec:
    """How `bench monitor` drives its cell (set by the command, carried in the benchmark's tables)."""

    qps: float = 0.0  # open loop at this rate (requests/s); 0: closed loop
    concurrency: int = 0  # closed-loop clients
    window_s: float = 5.0
    duration_s: float = 0.0  # 0: until stopped
    seed: int = 0
    stream_path: str = ""  # where the worker appends one JSON line per window
    stop_path: str = ""  # the worker ends at the end of a window once this file exists

    @property
    def load(self) -> str:
        if self.qps > 0:
            return f"open loop, Poisson arrivals at {self.qps:g} requests/s"
        return f"{self.concurrency} closed-loop client{'s' if self.concurrency != 1 else ''}"


def rss_bytes() -> int:
    """This process's resident set, from /proc (no allocation worth counting); psutil elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import psutil

        return int(psutil.Process().memory_info().rss)


def summarize(index: int, end_s: float, span_ns: int, latencies_ns: list[int], errors: int, batch: int) -> dict:
    """One window's summary (what the stream file holds per line)."""
    lat = np.asarray(latencies_ns, dtype=np.int64)
    n = int(lat.size)
    out: dict[str, Any] = {"index": index, "end_s": round(end_s, 6), "span_s": span_ns / 1e9, "requests": n,
                           "errors": errors, "samples": n * batch, "sum_s": float(lat.sum()) / 1e9,
                           "rss_bytes": rss_bytes()}
    if n:
        p50, p90, p99 = np.percentile(lat, (50, 90, 99))
        out.update(p50_ms=float(p50) / 1e6, p90_ms=float(p90) / 1e6, p99_ms=float(p99) / 1e6,
                   max_ms=float(lat.max()) / 1e6)
        bounds = np.asarray(PROM_BUCKETS_S) * 1e9
        out["buckets"] = [int(c) for c in np.searchsorted(np.sort(lat), bounds, side="right")]
        safe = np.maximum(lat.astype(np.float64), HIST_BASE_NS)
        idx = np.where(lat < HIST_BASE_NS, 0, np.floor(np.log(safe / HIST_BASE_NS) / math.log(HIST_GROWTH)) + 1)
        idx = idx.astype(np.int64)
        first = int(idx.min())
        out["hist_first"] = first
        out["hist_counts"] = [int(c) for c in np.bincount(idx - first)]
    else:
        out.update(p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None, buckets=[0] * len(PROM_BUCKETS_S),
                   hist_first=0, hist_counts=[])
    return out


class GpuWindows:
    """NVML figures per window for a GPU target (bench.measure.nvml_sampler, its own sampler
    thread at 10 Hz): each window's mean utilization, SM clock and power, maximum temperature and
    device memory used (this process's, where NVML lists it, else the device's)."""

    def __init__(self, sampler: Any):
        self.sampler = sampler

    @classmethod
    def for_backend(cls, backend: Any) -> GpuWindows | None:
        index = backend.cuda_index()
        if index is None:
            return None
        from bench.measure.nvml_sampler import NvmlSampler

        sampler = NvmlSampler.for_cuda_device(index)
        return cls(sampler) if sampler.start() else None

    def start(self) -> None:
        self.sampler.mark_start()

    def window(self, samples: int) -> dict:
        """The window just ended, as summary fields; the next window starts at once."""
        self.sampler.mark_end()
        t = self.sampler.telemetry(samples)
        self.sampler.mark_start()
        if t is None:
            return {}
        memory = t.process_memory_max_bytes if t.process_memory_max_bytes is not None else t.memory_used_max_bytes
        return {"gpu_utilization_pct": t.utilization_mean_pct, "gpu_sm_clock_mhz": t.sm_clock_mean_mhz,
                "gpu_power_w": t.power_mean_w, "gpu_temperature_c": t.temperature_max_c, "gpu_memory_bytes": memory,
                "gpu_throttled": t.throttled}

    def stop(self) -> None:
        self.sampler.stop()


class _Stream:
    """The worker's side of the stream: a summary per line, flushed as written."""

    def __init__(self, spec: MonitorSpec, gpu: GpuWindows | None = None):
        self.spec = spec
        self.gpu = gpu
        self.fh = open(spec.stream_path, "a", encoding="utf-8") if spec.stream_path else None

    def emit(self, summary: dict) -> None:
        if self.gpu is not None:
            summary.update(self.gpu.window(summary["samples"]))
        if self.fh is not None:
            self.fh.write(json.dumps(summary, allow_nan=False) + "\n")
            self.fh.flush()

    def should_stop(self, measured_s: float) -> str | None:
        if self.spec.stop_path and os.path.exists(self.spec.stop_path):
            return "stopped by the parent"
        if self.spec.duration_s > 0 and measured_s >= self.spec.duration_s - 1e-9:
            return f"duration {self.spec.duration_s:g} s reached"
        return None

    def close(self) -> None:
        if self.gpu is not None:
            self.gpu.stop()
        if self.fh is not None:
            self.fh.close()


def run_open_loop(call: Any, spec: MonitorSpec, batch: int, stream: _Stream,
                  clock: Callable[[], int] = time.perf_counter_ns, sleep: Callable[[float], None] = time.sleep) -> tuple[int, int, str]:
    """Poisson arrivals at spec.qps served FIFO, latency from the scheduled arrival; a window
    holds the requests that completed in it. Returns (windows, requests, why it stopped)."""
    fn, args = as_call(call)
    rng = np.random.default_rng(spec.seed)
    gap_ns = 1e9 / spec.qps
    gaps: list[float] = []
    window_ns = int(spec.window_s * 1e9)
    t0 = clock() + 1_000_000
    due = t0 + int(rng.exponential(gap_ns))
    w_start, w_end = t0, t0 + window_ns
    lat: list[int] = []
    errors = index = total = 0
    while True:
        if due >= w_end or clock() >= w_end:
            # the window's end comes before the next arrival (or has passed while serving a backlog)
            if due >= w_end:
                wait_for(w_end, clock, sleep)
            end = max(clock(), w_end)
            stream.emit(summarize(index, (end - t0) / 1e9, end - w_start, lat, errors, batch))
            total += len(lat)
            index += 1
            lat, errors = [], 0
            why = stream.should_stop((end - t0) / 1e9)
            if why:
                return index, total, why
            w_start, w_end = end, end + window_ns
            continue
        wait_for(due, clock, sleep)
        try:
            fn(*args)
            lat.append(clock() - due)
        except Exception:
            errors += 1
        if not gaps:
            gaps = rng.exponential(gap_ns, 4096).tolist()
        due += int(gaps.pop())


def run_closed_loop(call: Any, spec: MonitorSpec, batch: int, stream: _Stream, context: Callable[[], Any],
                    clock: Callable[[], int] = time.perf_counter_ns) -> tuple[int, int, str]:
    """spec.concurrency clients, each issuing its next request when its last returns; the main
    thread closes a window every window_s and takes each client's completions under its lock."""
    calls = call if isinstance(call, list) else [call] * spec.concurrency
    n = spec.concurrency
    locks = [threading.Lock() for _ in range(n)]
    bufs: list[list[int]] = [[] for _ in range(n)]
    errs = [0] * n
    stop = threading.Event()
    started = threading.Barrier(n + 1)

    def client(k: int) -> None:
        fn, args = as_call(calls[k])
        lock = locks[k]
        with context():
            started.wait()
            while not stop.is_set():
                t = clock()
                try:
                    fn(*args)
                    e = clock()
                    with lock:
                        bufs[k].append(e - t)
                except Exception:
                    with lock:
                        errs[k] += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True, name=f"monitor-client-{k}") for k in range(n)]
    for t in threads:
        t.start()
    started.wait()
    t0 = w_start = clock()
    window_ns = int(spec.window_s * 1e9)
    index = total = 0
    try:
        while True:
            wait_for(w_start + window_ns, clock, time.sleep)
            end = clock()
            lat: list[int] = []
            errors = 0
            for k in range(n):
                with locks[k]:
                    lat += bufs[k]
                    bufs[k] = []
                    errors += errs[k]
                    errs[k] = 0
            stream.emit(summarize(index, (end - t0) / 1e9, end - w_start, lat, errors, batch))
            total += len(lat)
            index += 1
            why = stream.should_stop((end - t0) / 1e9)
            if why:
                return index, total, why
            w_start = end
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)


def served_window(index: int, end_s: float, span_ns: int, net: Any, batch: int, server: Any = None) -> dict:
    """One served window's summary: summarize()'s fields over the ok requests, and what the
    requests did (sent, errors by kind with a reason each, the driver's lag), and the server's
    figures (a ServerMetrics, as a dict) where they were scraped."""
    import dataclasses

    from bench.served import driver

    out = summarize(index, end_s, span_ns, net.latencies_ns.tolist(), int((~net.ok).sum()), batch)
    lag = net.lag_ns
    first: dict[str, str] = {}
    for kind, reason in net.examples:
        first.setdefault(kind, reason)
    out.update(sent=int(net.error_code.size), errors_by_kind=net.error_counts(), error_examples=first,
               lag_p50_us=float(np.percentile(lag, 50)) / 1e3 if lag.size else None,
               lag_p99_us=float(np.percentile(lag, 99)) / 1e3 if lag.size else None,
               driver_limited=driver.lag_limited(lag) or None, cut_at_end=int(net.cut_at_end))
    if server is not None:
        out["server"] = dataclasses.asdict(server)
    return out


def run_served(session: Session, requester: Any, spec: MonitorSpec, stream: _Stream) -> tuple[int, int, str, np.ndarray]:
    """Windows of the served driver until the stream says stop: each window one driver run (open
    loop: a Poisson schedule of window_s at spec.qps, seeded per window; closed loop: until
    window_s has passed), the server's metrics scraped around it where the target names a
    metrics_url. Returns (windows, ok requests, why it stopped, the warm-up's latencies)."""
    from bench.scenarios import net_runs
    from bench.scenarios.open_loop import poisson_schedule
    from bench.served import driver
    from bench.served.server_metrics import Scraper, endpoint_options

    prepared = requester.prepare(session.feeds)  # encoded once, outside any timing
    timeout = net_runs._timeout_s(requester)
    warm_rule: driver.WarmupRule | None = net_runs.warmup_rule(session.stop)
    scraper = Scraper.for_options(endpoint_options(session.backend))
    window_ns = int(spec.window_s * 1e9)

    def window_over(elapsed_ns: int, chunks: list[np.ndarray]) -> str | None:
        return "window" if elapsed_ns >= window_ns else None

    warm = np.zeros(0, dtype=np.int64)
    index = total = 0
    measured_ns = 0  # the windows' own spans: the duration counts measured time, not the warm-up or the gaps
    session.window.start()
    # the scrapes at the driver's window marks: after the first window's warm-up, outside its timed loop
    before = scraper.before if scraper is not None else (lambda: None)
    after = scraper.after if scraper is not None else (lambda: None)
    while True:
        if spec.qps > 0:
            schedule = poisson_schedule(spec.qps, spec.window_s, spec.seed + index)
            net = driver.open_loop(requester, [prepared], schedule, timeout, warm_rule, on_window_start=before,
                                   on_window_end=after)
        else:
            net = driver.closed_loop(requester, prepared, spec.concurrency, window_over, timeout, warm_rule,
                                     on_window_start=before, on_window_end=after)
        if warm_rule is not None:
            warm, warm_rule = net.warmup_latencies_ns, None
        # an open loop's schedule spans window_s (its last request may end later); a closed loop
        # stops once window_s has passed
        span_ns = max(int(net.window_ns), window_ns)
        measured_ns += span_ns
        end_s = measured_ns / 1e9
        lat = net.latencies_ns
        server = None
        if scraper is not None:
            server = scraper.window(float(lat.mean()) / 1e6 if lat.size else None, int(net.error_code.size))
        stream.emit(served_window(index, end_s, span_ns, net, session.batch_size, server))
        total += int(lat.size)
        index += 1
        why = stream.should_stop(end_s)
        if why:
            session.window.end()
            return index, total, why, warm


def error_share(window: dict) -> float | None:
    """A window's failed share of its requests (None: no request ended in it)."""
    n = window["requests"] + window["errors"]
    return window["errors"] / n if n else None


class ErrorRateAlarm:
    """Raised by a window whose failed share of requests is over `limit`: one alarm per episode
    (the first window over the limit after one at or under it), `active` while it lasts."""

    def __init__(self, limit: float = DEFAULT_MAX_ERROR_RATE):
        self.limit = limit
        self.active = False

    def update(self, window: dict) -> tuple[float, str] | None:
        """(share, message) when this window raises the alarm, else None."""
        share = error_share(window)
        over = share is not None and share > self.limit
        raised = over and not self.active
        self.active = over
        if not raised:
            return None
        kinds = window.get("errors_by_kind") or {}
        examples = window.get("error_examples") or {}
        detail = "; ".join(f"{k} {c:,}" + (f" ({examples[k]})" if k in examples else "") for k, c in kinds.items())
        return share, (f"error rate {share:.1%} over the limit {self.limit:.1%} in window {window['index']}: "
                       f"{window['errors']:,} of {window['requests'] + window['errors']:,} requests failed"
                       + (f" ({detail})" if detail else ""))


def window_figures(windows: list[dict], batch: int, confidence: float) -> tuple[Metrics, list[float]]:
    """A monitor cell's figures from its window summaries: percentiles from the merged histogram
    (within 1%), throughput over all windows; each interval by batch means over the windows (a
    window is a batch: its mean carries the autocorrelation within it)."""
    from bench import stats
    from bench.analysis.figures import HISTOGRAM_REL_ERROR

    counts: dict[int, int] = {}
    for w in windows:
        for i, c in enumerate(w.get("hist_counts") or ()):
            if c:
                counts[w["hist_first"] + i] = counts.get(w["hist_first"] + i, 0) + c
    requests = sum(w["requests"] for w in windows)
    span_s = sum(w["span_s"] for w in windows)
    tputs = [w["samples"] / w["span_s"] if w["span_s"] > 0 else 0.0 for w in windows]
    value = requests * batch / span_s if span_s > 0 else 0.0

    def batch_means(values: list[float]) -> tuple[float | None, float | None, str]:
        if len(values) < 3:
            return None, None, "fewer than 3 windows: no interval"
        v = np.asarray(values, dtype=np.float64)
        half = stats.t_quantile(0.5 + confidence / 2, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
        return float(v.mean() - half), float(v.mean() + half), f"batch means over {v.size} windows (t)"

    lo, hi, method = batch_means(tputs)
    tp = Throughput(value, None if lo is None else lo * value / np.mean(tputs),
                    None if hi is None else hi * value / np.mean(tputs), method=method, confidence=confidence)
    hist = None
    if counts:
        first, last = min(counts), max(counts)
        dense = np.zeros(last + 1, dtype=np.int64)
        for i, c in counts.items():
            dense[i] = c
        h = stats.LatencyHistogram.from_counts(dense, HIST_BASE_NS, HIST_GROWTH, HISTOGRAM_REL_ERROR)
        q = h.quantiles([0.5, 0.9, 0.95, 0.99, 0.999]) / 1e6
        from bench.results.records import Histogram

        hist = Histogram(HIST_BASE_NS, HIST_GROWTH, HISTOGRAM_REL_ERROR, tuple(int(c) for c in dense[first:]), first)
    else:
        q = np.zeros(5)

    def est(value_ms: float, key: str) -> Estimate:
        per = [w[key] for w in windows if w.get(key) is not None]
        lo, hi, method = batch_means(per)
        if lo is None:
            return Estimate(float(value_ms), None, None, method)
        shift = float(value_ms) - float(np.mean(per))  # centre the window means' interval on the merged figure
        return Estimate(float(value_ms), lo + shift, hi + shift, method)

    mean_ms = sum(w["sum_s"] for w in windows) / requests * 1e3 if requests else 0.0
    maxes = [w["max_ms"] for w in windows if w.get("max_ms") is not None]
    latency = Latency(n=requests, mean=Estimate(mean_ms, None, None, "exact: latency sum / requests"),
                      p50=est(q[0], "p50_ms"), p90=est(q[1], "p90_ms"), p95=Estimate(float(q[2])),
                      p99=est(q[3], "p99_ms"), p999=Estimate(float(q[4])), min=Estimate(float(h.quantiles([0])[0] / 1e6))
                      if counts else Estimate(0.0), max=Estimate(max(maxes) if maxes else 0.0), histogram=hist,
                      confidence=confidence)
    return Metrics(tp, latency), tputs


class Monitor(Scenario):
    name = "monitor"
    table_key = None

    def check(self, reader: Any, bench: BenchmarkSpec, targets: dict[str, TargetSpec], path: str) -> None:
        raise reader.fail(path, "'monitor' runs through `bench monitor SUITE --benchmark NAME --target NAME`, "
                                "not as a scenario of a suite")

    def busy_s(self, bench: BenchmarkSpec) -> float:
        spec = monitor_spec(bench)
        return spec.duration_s if spec.duration_s > 0 else 10 * 365 * 86_400.0

    def run(self, session: Session) -> ScenarioRun:
        spec = monitor_spec(session.bench)
        requester = session.backend.requester()
        if requester is not None:  # a served target: the served driver, window by window
            stream = _Stream(spec)
            try:
                with session.context():
                    windows, requests, why, warm = run_served(session, requester, spec, stream)
            finally:
                stream.close()
            return ScenarioRun(np.zeros(0, dtype=np.int64), int(windows * spec.window_s * 1e9), warm,
                               f"{why} after {windows} windows", window_calls=requests)
        stream = _Stream(spec, GpuWindows.for_backend(session.backend))
        try:
            with session.context():
                warm = warm_up(session.call, session.stop, time.perf_counter_ns)
                session.window.start()
                if stream.gpu is not None:
                    stream.gpu.start()
                if spec.qps > 0:
                    windows, requests, why = run_open_loop(session.call, spec, session.batch_size, stream)
                else:
                    calls = [session.bind(session.inputs(session.batch_size)) for _ in range(spec.concurrency)]
                    windows, requests, why = run_closed_loop(calls, spec, session.batch_size, stream, session.context)
                session.window.end()
        finally:
            stream.close()
        return ScenarioRun(np.zeros(0, dtype=np.int64), int(windows * spec.window_s * 1e9), warm,
                           f"{why} after {windows} windows", window_calls=requests)

    def figures(self, run: ScenarioRun, bench: BenchmarkSpec, key: CellKey) -> Figures:
        """From the stream file's windows (the worker keeps none in memory)."""
        spec = monitor_spec(bench)
        windows = read_windows(spec.stream_path)
        metrics, _ = window_figures(windows, key.batch_size, bench.stop.confidence)
        return Figures(metrics, np.zeros(0, dtype=np.int64), run.window_ns, 0, None, None)

    def compare_policy(self):
        from bench.analysis.compare import NotComparable

        return NotComparable("monitor cells compare by their windows' course, not as a sample: see the report")

    def detail_rows(self, cell: Cell) -> tuple[tuple[str, str], ...]:
        m = cell.monitor
        if m is None:
            return ()
        rows = [("load", f"{m.load}; {m.windows} windows of {m.window_s:g} s; {m.requests:,} requests, "
                         f"{m.errors:,} errors; {m.end_reason}"),
                ("drift", f"{m.detector}; baseline: {m.baseline}")]
        if m.leak_slope_mib_per_h is not None:
            rows.append(("RSS slope", f"{m.leak_slope_mib_per_h:+.3g} MiB/h [{m.leak_slope_low:+.3g}, "
                                      f"{m.leak_slope_high:+.3g}] (Theil-Sen, after warm-up)"))
        rows += [("ALARM", a.message) for a in m.alarms]
        return tuple(rows)


def monitor_spec(bench: BenchmarkSpec) -> MonitorSpec:
    spec = bench.table("monitor")
    return spec if isinstance(spec, MonitorSpec) else MonitorSpec()


def read_windows(path: str, offset: int = 0) -> list[dict]:
    """The complete lines of a stream file from `offset` (a line being written is left for later)."""
    windows, _ = read_new_windows(path, offset)
    return windows


def read_new_windows(path: str, offset: int) -> tuple[list[dict], int]:
    """(complete window lines after `offset`, the offset after them)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    lines = data[: end + 1].splitlines()
    return [json.loads(line) for line in lines if line.strip()], offset + end + 1
