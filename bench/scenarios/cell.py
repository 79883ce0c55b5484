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
from bench.config import StopSpec, TargetSpec
from bench.models.inputs import inputs_sha256, make_inputs
from bench.models.loader import PreparedModel
from bench.scenarios.loops import measure
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
    # No numba here: the worker's memory is a reported figure; the parent finds the steady state.
    with backend.context():
        result = measure(fn, job.stop, rule_for(job.stop))
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
