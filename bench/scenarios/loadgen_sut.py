"""MLPerf LoadGen adapter: run one bound call under LoadGen's Server or Offline scenario
(the loadgen-server and loadgen-offline scenarios: bench.scenarios.loadgen).

LoadGen (PyPI mlcommons-loadgen, import mlperf_loadgen) schedules the queries itself and measures
from its own issue time; our SUT hands each query to one serving thread, which runs the call and
reports completion. What LoadGen measured is read back from its summary log, so the figures are
LoadGen's, not ours; bench self-check --checks loadgen prints them beside our server scenario's.

The per-sample latencies the adapter also keeps run from LoadGen's issue callback to completion:
the callback needs the GIL, which a busy serving thread may hold, so this view starts late and can
read lower than LoadGen's own (measured from its schedule). The cell keeps both; trust LoadGen's.
"""
from __future__ import annotations

import contextlib
import queue
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.measure.timing import as_call
from bench.scenarios.loops import Window


@dataclass(frozen=True)
class LoadGenResult:
    scenario: str
    valid: bool
    samples_per_s: float  # LoadGen's completed (Server) or processed (Offline) samples per second
    scheduled_per_s: float | None
    mean_ms: float | None
    p50_ms: float | None
    p99_ms: float | None
    latencies_ns: Any = None  # our SUT's view: LoadGen's issue callback to completion, per sample


def available() -> bool:
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        return False
    return True


def _number(text: str, label: str) -> float | None:
    m = re.search(rf"^{re.escape(label)}\s*:\s*([0-9.eE+-]+)", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def parse_summary(text: str, scenario: str) -> LoadGenResult:
    rate = _number(text, "Completed samples per second") or _number(text, "Samples per second")
    ns = {k: _number(text, label) for k, label in (("mean", "Mean latency (ns)"),
                                                    ("p50", "50.00 percentile latency (ns)"),
                                                    ("p99", "99.00 percentile latency (ns)"))}
    return LoadGenResult(
        scenario=scenario,
        valid=bool(re.search(r"^Result is : VALID", text, re.MULTILINE)),
        samples_per_s=rate or 0.0,
        scheduled_per_s=_number(text, "Scheduled samples per second"),
        mean_ms=None if ns["mean"] is None else ns["mean"] / 1e6,
        p50_ms=None if ns["p50"] is None else ns["p50"] / 1e6,
        p99_ms=None if ns["p99"] is None else ns["p99"] / 1e6,
    )


def run_loadgen(call: Any, scenario: str, qps: float, duration_s: float, latency_ms: float = 100.0,
                min_queries: int = 100, context: Callable[[], Any] = contextlib.nullcontext,
                window_marks: Any = None) -> LoadGenResult:
    """Run `call` under LoadGen's "server" or "offline" scenario at `qps` for at least `duration_s`.

    The SUT serves on its own thread, inside `context` (torch.inference_mode is per thread),
    after a few warm-up calls there (per-thread state is built before LoadGen starts)."""
    import mlperf_loadgen as lg

    import time

    import numpy as np

    fn, args = as_call(call)
    clock = time.perf_counter_ns
    work: queue.Queue = queue.Queue()
    latencies: list[int] = []

    ready = threading.Event()
    failed: list[BaseException] = []

    def serve() -> None:
        with context():
            try:
                for _ in range(3):
                    fn(*args)
            except BaseException as exc:  # raised on the caller's thread below
                failed.append(exc)
                return
            finally:
                ready.set()
            while True:
                item = work.get()
                if item is None:
                    return
                issued, batch = item
                for sample in batch:
                    fn(*args)
                    latencies.append(clock() - issued)
                    lg.QuerySamplesComplete([lg.QuerySampleResponse(sample.id, 0, 0)])

    server = threading.Thread(target=serve, name="bench-loadgen-sut", daemon=True)
    server.start()
    ready.wait()
    if failed:
        raise failed[0]
    sut = lg.ConstructSUT(lambda samples: work.put((clock(), list(samples))), lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda s: None, lambda s: None)
    settings = lg.TestSettings()
    settings.mode = lg.TestMode.PerformanceOnly
    if scenario == "server":
        settings.scenario = lg.TestScenario.Server
        settings.server_target_qps = qps
        settings.server_target_latency_ns = int(latency_ms * 1e6)
    elif scenario == "offline":
        settings.scenario = lg.TestScenario.Offline
        settings.offline_expected_qps = qps
    else:
        raise ValueError(f"scenario {scenario!r}: allowed server, offline")
    settings.min_duration_ms = int(duration_s * 1000)
    settings.min_query_count = min_queries
    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as out:
        log = lg.LogSettings()
        log.log_output.outdir = out
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        marks = window_marks if window_marks is not None else Window()
        try:
            marks.start()
            lg.StartTestWithLogSettings(sut, qsl, settings, log)
            marks.end()
        finally:
            work.put(None)
            server.join(60)
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
        result = parse_summary((Path(out) / "mlperf_log_summary.txt").read_text(), scenario)
    from dataclasses import replace

    return replace(result, latencies_ns=np.asarray(latencies, dtype=np.int64))
