"""One work unit, run inside its worker process: load, bind, check outputs, measure.

Returns raw samples (the scenario's ScenarioRun) and what the backend and device report;
statistics, agreement verdicts and the result record are made by the parent (bench.runner.
assemble), so a worker imports only its runtime and its scenario's loop, not numba: the worker's
memory is a reported figure.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.backends import registry as backends
from bench.backends.base import Backend, BackendInfo
from bench.backends.devices import is_out_of_memory, out_of_memory_reason
from bench.config.records import BenchmarkSpec, TargetSpec
from bench.errors import CellFailure
from bench.measure.interference import CpuMeter, CpuShares
from bench.measure.memory import peak_rss_bytes
from bench.models.inputs import inputs_sha256
from bench.models.loader import PreparedModel
from bench.results.records import CellKey, GpuTelemetry, InputsInfo
from bench.scenarios.base import ScenarioRun, Session
from bench.scenarios.loops import Window
from bench.scenarios.registry import SCENARIOS


@dataclass(frozen=True)
class UnitJob:
    key: CellKey
    repetition: int
    benchmark: BenchmarkSpec
    target: TargetSpec
    model: PreparedModel
    outputs_path: str  # .npz the worker writes its outputs to, for the agreement check


@dataclass(frozen=True)
class UnitOutcome:
    run: ScenarioRun
    load_seconds: float
    peak_rss_bytes: int
    info: BackendInfo
    inputs_sha256: str
    timing_boundary: str
    setup_s: tuple[tuple[str, float], ...]  # ("compile", s) / ("capture", s): what bind() took
    inputs: InputsInfo | None = None  # where the feeds came from, their shapes with the batch
    gpu: GpuTelemetry | None = None  # NVML over the measured window
    gpu_telemetry_note: str = ""  # why a GPU cell has no telemetry
    gpu_peak: tuple[int, str] | None = None  # (bytes, where the figure comes from)
    cpu_shares: CpuShares | None = None  # what other processes took of the CPU in the measured window


def run_unit(job: UnitJob) -> UnitOutcome:
    try:
        return _run(job)
    except Exception as exc:
        # torch.OutOfMemoryError, ORT's allocation failures (also inside the CellFailure its loader
        # raises), MemoryError: one kind, which a batch sweep stops on
        if getattr(exc, "kind", None) != "out_of_memory" and is_out_of_memory(exc):
            raise CellFailure(out_of_memory_reason(exc, job.key.batch_size), kind="out_of_memory") from exc
        raise


ACCURACY_MAX_BYTES = 64 << 20  # the accuracy samples' outputs a worker keeps, at most (one batch at least)


def _accuracy_outputs(job: UnitJob, backend: Any, scenario: Any) -> np.ndarray | None:
    """The first output over the benchmark's accuracy samples, in batches of the cell's size
    (bench.models.calibration.accuracy_feeds); None where the cell has none to give: a generating
    scenario (its agreement is token by token) or a served target (its outputs are the server's)."""
    samples = job.benchmark.accuracy.samples
    if samples <= 0 or scenario.needs_decoder or backend.requester() is not None:
        return None
    from bench.models.calibration import accuracy_feeds

    chunks: list[np.ndarray] = []
    kept_bytes = 0
    for feeds in accuracy_feeds(job.model, job.key.dims, samples, job.key.batch_size):
        chunk = backend.outputs(feeds)[0]
        chunks.append(chunk)
        kept_bytes += chunk.size * 8  # as float64, whatever its dtype: an fp16 target stops where its reference does
        # A large output (a decoder's logits: 64 positions x 50,257 classes x 8 bytes = 26 MB a
        # sample) would make the samples' file gigabytes: stop at whole batches past the cap. The
        # reference stops at the same count, since its output has the same shape.
        if kept_bytes >= ACCURACY_MAX_BYTES:
            break
    return np.concatenate(chunks)[:samples] if chunks else None


def _run(job: UnitJob) -> UnitOutcome:
    t0 = time.perf_counter()
    scenario = SCENARIOS[job.key.scenario]
    backend = backends.create(job.target.backend)
    backend.load(job.model, job.target)
    source = job.model.input_source(job.key.dims, job.benchmark.seed)
    session = Session(job.benchmark, job.key, source, backend, scenario.device_timed)
    loaded: list[float] = []

    def keep_outputs(outputs: list[np.ndarray]) -> None:
        # Every repetition's outputs are the same arrays: the first repetition writes them with
        # the accuracy samples' (a one-off cost, kept out of the load time like this write);
        # another writes only where no file is yet (the first failed, or runs elsewhere).
        loaded.append(time.perf_counter() - t0)  # the load time ends here: what follows is the harness's
        if job.repetition == 0 or not os.path.exists(job.outputs_path):
            accuracy = _accuracy_outputs(job, backend, scenario)
            np.savez(job.outputs_path, *outputs, **({"acc_0": accuracy} if accuracy is not None else {}))

    scenario.start(session, keep_outputs)
    info = backend.info()
    if not isinstance(info, BackendInfo):
        raise CellFailure(f"backend {job.target.backend!r}: info() returned {type(info).__name__}, "
                          "not bench.backends.BackendInfo")
    sampler = _gpu_sampler(backend)
    meter = CpuMeter()
    # The telemetry window is the measured part alone: each scenario marks it after warm-up.
    if sampler is not None:
        session.window = Window(lambda: (sampler.mark_start(), meter.mark_start()),
                                lambda: (meter.mark_end(), sampler.mark_end()))
    else:
        session.window = Window(meter.mark_start, meter.mark_end)
    try:
        run = scenario.run(session)
    finally:
        if sampler is not None:
            sampler.stop()
    telemetry, note = None, ""
    if sampler is not None:
        calls = run.window_calls if run.window_calls is not None else int(run.latencies_ns.size)
        telemetry = sampler.telemetry(calls * job.key.batch_size)
        note = "" if telemetry is not None else (sampler.reason or "NVML telemetry unavailable")
    peak = backend.gpu_memory()
    if peak is None and telemetry is not None and telemetry.process_memory_max_bytes is not None:
        peak = (telemetry.process_memory_max_bytes,
                "NVML per-process used memory (the runtime's arena and the CUDA context included)")
    return UnitOutcome(run, loaded[0], peak_rss_bytes(), info, inputs_sha256(session.feeds),
                       session.boundary, tuple(session.setup_s.items()), source.describe(job.key.batch_size),
                       telemetry, note, peak, meter.shares())


def _gpu_sampler(backend: Backend) -> Any:
    """An NVML sampler on the backend's GPU, started; None on CPU targets."""
    index = backend.cuda_index()
    if index is None:
        return None
    from bench.measure.nvml_sampler import NvmlSampler

    # The worker sets CUDA_DEVICE_ORDER=PCI_BUS_ID, so cuda:N (through CUDA_VISIBLE_DEVICES) is
    # NVML's device N. A sampler that cannot start says why and the cell runs without telemetry.
    sampler = NvmlSampler.for_cuda_device(index)
    sampler.start()
    return sampler
