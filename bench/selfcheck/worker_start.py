"""What one worker start costs: a spawned interpreter that imports its runtime (how every unit
started before the worker hosts), against a fork from that runtime's warm host (how units start
now). Repetitions make a suite start several workers per cell, so this is paid many times."""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.selfcheck.check import Check, met

TARGET_MS = 100.0
STARTS = 5


def import_runtime(module: str) -> str:
    """The unit of work: what a worker must have before it can load a model."""
    import importlib

    importlib.import_module(module)
    return module


@dataclass(frozen=True)
class FamilyStart:
    family: str
    module: str
    spawn_ms: float  # median over STARTS spawned workers, start to answer
    fork_ms: float  # median over STARTS workers forked from the warm host
    host_start_s: float  # the host's own start (once per run and family)

    @property
    def speedup(self) -> float:
        return self.spawn_ms / self.fork_ms if self.fork_ms else float("inf")


@dataclass(frozen=True)
class WorkerStartCheck:
    families: tuple[FamilyStart, ...]
    target_ms: float = TARGET_MS


def check_worker_start(starts: int = STARTS) -> WorkerStartCheck:
    from bench.backends.registry import BACKENDS, worker_family
    from bench.runner.isolation import WorkerHosts, run_in_worker

    out = []
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp, WorkerHosts(Path(tmp)) as hosts:
        err = Path(tmp) / "stderr"
        for name in BACKENDS:
            family, preload = worker_family(name)
            module = preload[0]
            spawned = []
            for _ in range(starts):
                t0 = time.perf_counter()
                run_in_worker(import_runtime, module, err, 300)
                spawned.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            hosts.start(family, preload)
            host_s = time.perf_counter() - t0
            forked = []
            for _ in range(starts):
                t0 = time.perf_counter()
                hosts.run(family, preload, import_runtime, module, err, 300)
                forked.append((time.perf_counter() - t0) * 1e3)
            out.append(FamilyStart(family, module, statistics.median(spawned), statistics.median(forked), host_s))
    return WorkerStartCheck(tuple(out))


def lines(c: WorkerStartCheck) -> list[str]:
    out = [f"worker start (median of {STARTS}; goal: a forked start within {c.target_ms:.0f} ms)"]
    for f in c.families:
        out.append(f"  {f.family:<12} spawn + import {f.module}: {f.spawn_ms:7.1f} ms   fork from its host: "
                   f"{f.fork_ms:6.1f} ms   x{f.speedup:.0f} faster (host start, once a run: {f.host_start_s:.2f} s)  "
                   f"{met(f.fork_ms <= c.target_ms)}")
    return out


CHECK = Check("worker-start", True, lambda o: check_worker_start(), lines)
