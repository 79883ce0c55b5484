"""Who runs the work units: this machine, one unit at a time (LocalExecutor), or a Ray cluster
(bench.runner.ray_executor). The runner (bench.runner.suite) decides which unit comes next and
what its result means; an executor only places units and hands back what their workers returned.

Every executor keeps the isolation rule: each unit runs in a fresh worker process
(bench.runner.isolation), so a unit's memory figure and its crash are its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.config.records import TargetSpec
from bench.models.loader import PreparedModel
from bench.results.records import Node
from bench.runner.isolation import WorkerFailure, WorkerHosts
from bench.runner.plan import PlannedCell
from bench.runner.probes import PeakProbes
from bench.runner.unit import UnitJob, UnitOutcome, run_unit


@dataclass(frozen=True)
class UnitTask:
    planned: PlannedCell
    repetition: int
    job: UnitJob
    stderr_path: Path
    timeout_s: float
    node: str | None = None  # Node.id the cell's earlier repetitions ran on: keep it there


@dataclass(frozen=True)
class UnitDone:
    task: UnitTask
    outcome: UnitOutcome | WorkerFailure
    node: str | None = None  # Node.id that ran it (None: this machine)


@dataclass(frozen=True)
class Refusal:
    """Why no worker of the executor can run a target: a skipped cell, or a failed one."""

    status: str  # "skipped" (the machine or cluster lacks the part) | "failed" (the target asks for what cannot be)
    reason: str


class Executor(Protocol):
    name: str

    def has_cuda(self) -> bool:
        """Whether any worker can get a CUDA device (models are prepared for CUDA targets then)."""

    def refusal(self, target: TargetSpec) -> Refusal | None:
        """Why no worker can run `target`, checked before its first unit."""

    def prepare(self, models: dict[str, PreparedModel]) -> None:
        """Make the prepared models' files reachable from every worker."""

    def peaks(self, scratch: Path) -> Any:
        """The GPU peak probes for rooflines (bench.runner.probes.PeakProbes's interface)."""

    def has_room(self) -> bool:
        """Whether another unit may be submitted now."""

    def submit(self, task: UnitTask) -> None: ...

    def wait(self) -> list[UnitDone]:
        """At least one finished unit (blocks until there is one; raises KeyboardInterrupt on Ctrl-C)."""

    def nodes(self) -> tuple[Node, ...]:
        """The machines that ran units, for run.json (none for this machine alone)."""

    def close(self) -> bool:
        """Stop every worker still running; True when a Ctrl-C arrived meanwhile."""


class LocalExecutor:
    """One unit at a time on this machine, each in a worker forked from its runtime's host
    (bench.runner.isolation.WorkerHosts): units never overlap, so none disturbs another's figures."""

    name = "local"

    def __init__(self, scratch: Path):
        from bench.measure.nvml_devices import visible_device_count

        self._hosts = WorkerHosts(scratch)
        self._task: UnitTask | None = None
        self._gpus: tuple[int, str] | None = None
        self._count = visible_device_count

    def _gpu_count(self) -> tuple[int, str]:
        if self._gpus is None:
            self._gpus = self._count()
        return self._gpus

    def has_cuda(self) -> bool:
        return self._gpu_count()[0] > 0

    def refusal(self, target: TargetSpec) -> Refusal | None:
        from bench.backends.devices import check_index
        from bench.errors import CellFailure

        if target.is_cuda:
            count, note = self._gpu_count()
            try:
                check_index(target.device, count)
            except CellFailure as exc:
                reason = str(exc)
                if count == 0:
                    return Refusal("skipped", reason + (f" ({note})" if note else "") if reason else "no CUDA device")
                return Refusal("failed", f"target {target.name!r}: {reason}")
        unavailable = getattr(target.options, "unavailable", None)
        why = unavailable(target.device) if callable(unavailable) else None
        if why:  # its runtime or provider is not installed here: skipped with what brings it
            return Refusal("skipped", why)
        return None

    def prepare(self, models: dict[str, PreparedModel]) -> None:
        return None  # the workers read the model cache of this machine

    def peaks(self, scratch: Path) -> PeakProbes:
        return PeakProbes(scratch)

    def has_room(self) -> bool:
        return self._task is None

    def submit(self, task: UnitTask) -> None:
        self._task = task

    def wait(self) -> list[UnitDone]:
        from bench.backends.registry import worker_family

        task, self._task = self._task, None
        assert task is not None, "wait() without a submitted unit"
        p = task.planned
        family, preload = worker_family(p.target.backend)
        outcome = self._hosts.run(family, preload, run_unit, task.job, task.stderr_path, task.timeout_s,
                                  f"bench-cell-{p.index}")
        return [UnitDone(task, outcome)]

    def nodes(self) -> tuple[Node, ...]:
        return ()

    def close(self) -> bool:
        self._hosts.close()
        return self._hosts.interrupted

