"""How much of the machine other processes used while a worker measured (psutil).

Over the measured window(s) of one worker: the CPU time every core spent busy (user, nice,
system, irq, softirq; guest time is inside user on Linux) minus the worker's own CPU time (its
threads and any children), and the time the hypervisor stole, each as a share of the window's
capacity (wall time x logical cores). A share of 0.1 means other work took a tenth of the machine.
Thread pools sized to the cores (torch's OpenMP, ONNX Runtime's intra-op pool) slow down far more
than that share when a core is taken (seen: 300x), so the figure flags a repetition; it does not
correct it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class CpuShares:
    others_share: float  # CPU time of other processes / capacity
    steal_share: float | None  # hypervisor steal / capacity; None where the kernel does not report it
    window_s: float
    cores: int

    @property
    def total(self) -> float:
        return self.others_share + (self.steal_share or 0.0)


def _busy_and_steal() -> tuple[float, float | None]:
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    steal = getattr(t, "steal", None)
    return busy, steal


def _own(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMeter:
    """Marks around measured windows (several allowed: a server's probes); shares over their sum."""

    def __init__(self, clock=time.perf_counter) -> None:
        self._clock = clock
        self._proc = psutil.Process()
        self._open: tuple[float, float, float | None, float] | None = None
        self._wall = self._busy = self._own = 0.0
        self._steal: float | None = 0.0

    def mark_start(self) -> None:
        if self._open is None:
            busy, steal = _busy_and_steal()
            self._open = (self._clock(), busy, steal, _own(self._proc))

    def mark_end(self) -> None:
        if self._open is None:
            return
        t0, busy0, steal0, own0 = self._open
        busy, steal = _busy_and_steal()
        self._wall += self._clock() - t0
        self._busy += busy - busy0
        self._own += _own(self._proc) - own0
        self._steal = None if steal is None or steal0 is None or self._steal is None else self._steal + steal - steal0
        self._open = None

    def shares(self) -> CpuShares | None:
        """None when no window was marked, or it was too short for the kernel's tick (10 ms)."""
        self.mark_end()
        if self._wall < 0.05:
            return None
        cores = psutil.cpu_count() or 1
        capacity = self._wall * cores
        others = max(0.0, self._busy - self._own) / capacity
        steal = None if self._steal is None else max(0.0, self._steal) / capacity
        return CpuShares(min(others, 1.0), None if steal is None else min(steal, 1.0), self._wall, cores)
