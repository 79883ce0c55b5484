"""One cell, run inside its worker process: load, check outputs, warm up, measure.

Returns raw samples; statistics, agreement verdicts and the result record are made by the
parent, so a worker imports only its own runtime (not numba).
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import backends
from bench.config import ServerSpec, StopSpec, TargetSpec
from bench.models.inputs import inputs_sha256, make_inputs
from bench.models.loader import PreparedModel
from bench.scenarios.loops import Window, measure, synchronized
from bench.scenarios.stopping import rule_for


@dataclass(frozen=True)
class CellJob:
    index: int
    cell_id: str
    benchmark: str
    model: PreparedModel
    target: TargetSpec
    batch_size: int
    scenario: str
    stop: StopSpec
    seed: int
    outputs_path: str  # .npz the worker writes its outputs to, for the agreement check
    server: ServerSpec | None = None
    concurrency: int = 1
    slo_limits: tuple[tuple[str, float], ...] = ()  # what the server peak search must meet


@dataclass(frozen=True)
class CellOutcome:
    latencies_ns: np.ndarray
    window_ns: int
    warmup_latencies_ns: np.ndarray
    warmup_seconds: float
    stop_reason: str
    load_seconds: float
    peak_rss_bytes: int
    backend_info: dict[str, Any]
    inputs_sha256: str
    server: Any = None  # bench.scenarios.server.ServerRun for the server scenario
    clients: tuple | None = None  # multi-stream: each client's latencies (ns)
    probes: tuple | None = None  # server peak search: every rate tried (bench.scenarios.server.Probe)
    rate_qps: float | None = None  # the nominal rate of the served schedule (the peak, for a search)
    loadgen: Any = None  # bench.scenarios.loadgen.LoadGenResult
    timing_boundary: str = "end_to_end"
    gpu: Any = None  # bench.results.schema.GpuTelemetry, NVML over the measured window
    gpu_telemetry_note: str = ""  # why there is no telemetry on a GPU cell
    gpu_peak: tuple[int, str] | None = None  # (bytes, where the figure comes from)
    window_calls: int | None = None  # calls inside the telemetry window, where not latencies_ns.size


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    On Linux, VmHWM (the high-water mark of this process image), not getrusage's ru_maxrss:
    a spawned worker is fork+exec'd, and ru_maxrss keeps the pre-exec fork's RSS, i.e. the
    parent's (seen: 506 MiB for a 50 MiB worker whose parent had imported torch).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return int(peak if sys.platform == "darwin" else peak * 1024)


def run_cell(job: CellJob) -> CellOutcome:
    t0 = time.perf_counter()
    backend = backends.create(job.target.backend)
    backend.load(job.model, job.target)
    feeds = make_inputs(job.model.inputs, job.batch_size, job.seed)
    outputs = backend.outputs(feeds)
    np.savez(job.outputs_path, *outputs)
    load_seconds = time.perf_counter() - t0
    fn = backend.bind(feeds)
    boundary = getattr(backend, "timing_boundary", lambda _: "end_to_end")(job.scenario)
    if job.scenario != "offline" and not (job.scenario == "single-stream" and boundary == "device"):
        fn = completing(backend, fn, boundary)  # (device single-stream waits in its own loop)
    sampler = _gpu_sampler(backend)
    try:
        outcome = _run_scenario(job, backend, fn, feeds, t0, load_seconds, boundary, sampler)
    finally:
        if sampler is not None:
            sampler.stop()
    return _with_gpu_figures(outcome, job, backend, boundary, sampler)


def _run_scenario(job: CellJob, backend: Any, fn: Any, feeds: dict, t0: float, load_seconds: float,
                  boundary: str, sampler: Any) -> CellOutcome:
    # No numba here: the worker's memory is a reported figure; the parent finds the steady state.
    # The telemetry window is the measured part alone: each scenario marks it after warm-up.
    marks = Window(sampler.mark_start, sampler.mark_end) if sampler is not None else Window()
    if job.scenario == "server":
        return _run_server_cell(job, backend, fn, feeds, t0, load_seconds, boundary, marks)
    if job.scenario == "multi-stream":
        return _run_clients_cell(job, backend, fn, feeds, load_seconds, boundary, marks)
    if job.scenario.startswith("loadgen-"):
        return _run_loadgen_cell(job, backend, fn, feeds, load_seconds, marks)
    events = backend.events() if boundary == "device" else None
    with backend.context():
        result = measure(fn, job.stop, rule_for(job.stop), events=events, window_marks=marks,
                         wait_each_call=job.scenario == "single-stream")
    return CellOutcome(
        latencies_ns=result.latencies_ns,
        window_ns=result.window_ns,
        warmup_latencies_ns=result.warmup_latencies_ns,
        warmup_seconds=result.warmup_seconds,
        stop_reason=result.stop_reason,
        load_seconds=load_seconds,
        peak_rss_bytes=peak_rss_bytes(),
        backend_info=backend.info(),
        inputs_sha256=inputs_sha256(feeds),
    )


def completing(backend: Any, fn: Any, boundary: str) -> Any:
    """The call, waiting for the device where it would otherwise return early.

    Every scenario but offline issues a request after the previous one completed, or times each
    request on the host: there a call must include the device's work. (end_to_end calls copy
    their outputs back, which waits already.)
    """
    synchronize = getattr(backend, "synchronize", None)
    if synchronize is None or boundary == "end_to_end":
        return fn
    return synchronized(fn, synchronize)


def _gpu_sampler(backend: Any) -> Any:
    """An NVML sampler on the backend's GPU, started; None on CPU targets."""
    index = getattr(backend, "cuda_index", lambda: None)()
    if index is None:
        return None
    from bench.measure.nvml import NvmlSampler

    # The worker sets CUDA_DEVICE_ORDER=PCI_BUS_ID, so cuda:N (through CUDA_VISIBLE_DEVICES) is
    # NVML's device N. A sampler that cannot start says why and the cell runs without telemetry.
    sampler = NvmlSampler.for_cuda_device(index)
    sampler.start()
    return sampler


def _with_gpu_figures(out: CellOutcome, job: CellJob, backend: Any, boundary: str, sampler: Any) -> CellOutcome:
    from dataclasses import replace

    telemetry = None
    note = ""
    if sampler is not None:
        calls = out.window_calls if out.window_calls is not None else int(out.latencies_ns.size)
        telemetry = sampler.telemetry(calls * job.batch_size)
        note = "" if telemetry is not None else getattr(sampler, "reason", "NVML telemetry unavailable")
    peak = getattr(backend, "gpu_memory", lambda: None)()
    if peak is None and telemetry is not None and telemetry.process_memory_max_bytes is not None:
        peak = (telemetry.process_memory_max_bytes,
                "NVML per-process used memory (the runtime's arena and the CUDA context included)")
    return replace(out, timing_boundary=boundary, gpu=telemetry, gpu_telemetry_note=note, gpu_peak=peak,
                   backend_info=backend.info())


MIN_SERVER_REQUESTS = 662  # p99 bound at 99% confidence (bench.stats.min_samples_for_bound)


def server_duration_s(spec: ServerSpec, stop: StopSpec) -> float:
    if spec.duration_s > 0:
        return spec.duration_s
    return min(max(stop.min_seconds, 1.2 * MIN_SERVER_REQUESTS / spec.qps), stop.max_seconds)


def _run_server_cell(job: CellJob, backend: Any, fn: Any, feeds: dict, t0: float, load_seconds: float,
                     boundary: str, marks: Window) -> CellOutcome:
    from bench.scenarios.loops import warm_up
    from bench.scenarios.server import poisson_schedule, run_server

    assert job.server is not None
    from bench.errors import CellFailure

    probes = None
    window_calls = None
    with backend.context():
        warm = warm_up(fn, job.stop, time.perf_counter_ns)
        if job.server.search:
            from bench.scenarios.server import find_peak, probe_result

            def try_rate(rate: float):
                spec = ServerSpec(rate, job.server.duration_s, job.server.seed)  # (the search runs unbatched)
                run = run_server(fn, poisson_schedule(rate, server_duration_s(spec, job.stop), job.server.seed))
                return probe_result(run, dict(job.slo_limits)), run

            marks.start()  # every probe is measured load: the telemetry window spans the search
            peak, tried, served = find_peak(try_rate, job.server.qps, job.server.resolution, job.server.max_probes)
            probes = tuple(tried)
            rate = peak
            window_calls = sum(p.requests for p in tried)
            if served is None:  # no rate met the SLO: report the lowest one tried
                rate = min(p.offered_qps for p in tried) or job.server.qps
                _, served = try_rate(rate)
                window_calls += int(served.end_ns.size)
            marks.end()
            schedule = served.scheduled_ns
            reason = (f"peak search: {len(tried)} rates tried, highest meeting the SLO "
                      + (f"{peak:,.1f}/s" if peak else "none"))
        elif job.server.max_batch > 1:
            rate = job.server.qps
            from bench.scenarios.server import run_batching_server

            calls = [fn] + [completing(backend, backend.bind(make_inputs(job.model.inputs, job.batch_size * m, job.seed)),
                                       boundary) for m in range(2, job.server.max_batch + 1)]
            schedule = poisson_schedule(job.server.qps, server_duration_s(job.server, job.stop), job.server.seed)
            marks.start()
            served = run_batching_server(calls, schedule, int(job.server.max_wait_ms * 1e6))
            marks.end()
            reason = (f"server schedule of {schedule.size} Poisson arrivals at {job.server.qps:g}/s served with dynamic "
                      f"batching (up to {job.server.max_batch}, wait {job.server.max_wait_ms:g} ms; mean batch "
                      f"{served.mean_batch():.2f})")
        else:
            rate = job.server.qps
            schedule = poisson_schedule(job.server.qps, server_duration_s(job.server, job.stop), job.server.seed)
            marks.start()
            served = run_server(fn, schedule)
            marks.end()
            reason = f"server schedule of {schedule.size} Poisson arrivals at {job.server.qps:g}/s served"
    if served.end_ns.size == 0:
        raise CellFailure(f"no Poisson arrival fell within the run at {rate:g}/s: raise duration_s or qps")
    return CellOutcome(
        latencies_ns=served.latencies_ns,
        window_ns=int(served.end_ns[-1]) if served.end_ns.size else 0,
        warmup_latencies_ns=warm,
        warmup_seconds=float(warm.sum()) / 1e9,
        stop_reason=reason,
        load_seconds=load_seconds,
        peak_rss_bytes=peak_rss_bytes(),
        backend_info=backend.info(),
        inputs_sha256=inputs_sha256(feeds),
        server=served,
        probes=probes,
        rate_qps=rate,
        window_calls=window_calls,
    )


def _run_clients_cell(job: CellJob, backend: Any, fn: Any, feeds: dict, load_seconds: float, boundary: str,
                      marks: Window) -> CellOutcome:
    from bench.scenarios.loops import warm_up
    from bench.scenarios.multistream import run_clients

    with backend.context():
        warm = warm_up(fn, job.stop, time.perf_counter_ns)
    duration = min(max(job.stop.min_seconds, 0.2), job.stop.max_seconds)
    # Each client its own bound call (its own input buffers and, for ONNX Runtime, its own
    # IOBinding: one binding shared by threads would have them write the same outputs).
    calls = [fn] + [completing(backend, backend.bind(feeds), boundary) for _ in range(job.concurrency - 1)]
    ran = run_clients(calls, job.concurrency, duration, backend.context, window_marks=marks)
    return CellOutcome(
        latencies_ns=np.concatenate(ran.latencies_ns),
        window_ns=ran.window_ns,
        warmup_latencies_ns=warm,
        warmup_seconds=float(warm.sum()) / 1e9,
        stop_reason=f"{job.concurrency} closed-loop clients for {duration:g} s (min_seconds, capped at max_seconds)",
        load_seconds=load_seconds,
        peak_rss_bytes=peak_rss_bytes(),
        backend_info=backend.info(),
        inputs_sha256=inputs_sha256(feeds),
        clients=ran.latencies_ns,
    )


def _run_loadgen_cell(job: CellJob, backend: Any, fn: Any, feeds: dict, load_seconds: float,
                      marks: Window) -> CellOutcome:
    from dataclasses import replace

    from bench.errors import CellFailure
    from bench.scenarios import loadgen
    from bench.scenarios.loops import warm_up

    if not loadgen.available():
        raise CellFailure("MLPerf LoadGen is not installed: pip install mlcommons-loadgen")
    scenario = job.scenario.removeprefix("loadgen-")
    with backend.context():
        warm = warm_up(fn, job.stop, time.perf_counter_ns)
        if scenario == "server":
            assert job.server is not None
            qps = job.server.qps
            duration = server_duration_s(job.server, job.stop)
        else:  # Offline: expect what the warm-up suggests; LoadGen sizes its one query from it
            qps = 1e9 / max(float(np.median(warm)), 1.0)
            duration = max(job.stop.min_seconds, 1.0)
        limits = dict(job.slo_limits)
        result = loadgen.run_loadgen(fn, scenario, qps, duration, latency_ms=limits.get("p99_ms", 100.0),
                                     context=backend.context, window_marks=marks)
    lat = result.latencies_ns
    return CellOutcome(
        latencies_ns=lat,
        window_ns=int(lat.size / max(result.samples_per_s, 1e-9) * 1e9),
        warmup_latencies_ns=warm,
        warmup_seconds=float(warm.sum()) / 1e9,
        stop_reason=f"MLPerf LoadGen {scenario} at {qps:,.1f}/s for at least {duration:g} s: "
                    f"{'VALID' if result.valid else 'INVALID'}",
        load_seconds=load_seconds,
        peak_rss_bytes=peak_rss_bytes(),
        backend_info=backend.info(),
        inputs_sha256=inputs_sha256(feeds),
        loadgen=replace(result, latencies_ns=None),
    )
