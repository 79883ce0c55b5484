"""The timer: time.perf_counter_ns's stated resolution, the smallest step seen, a read's cost."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from bench.selfcheck.check import Check


@dataclass(frozen=True)
class TimerCheck:
    stated_resolution_ns: float
    min_step_ns: int
    median_read_ns: float


def check_timer(reads: int = 100_000) -> TimerCheck:
    clock = time.perf_counter_ns
    stamps = [0] * reads
    for i in range(reads):
        stamps[i] = clock()
    steps = np.diff(np.asarray(stamps, dtype=np.int64))
    positive = steps[steps > 0]
    return TimerCheck(
        stated_resolution_ns=time.get_clock_info("perf_counter").resolution * 1e9,
        min_step_ns=int(positive.min()) if positive.size else 0,
        median_read_ns=float(np.median(steps)),
    )


def lines(t: TimerCheck) -> list[str]:
    return ["timer (time.perf_counter_ns)",
            f"  stated resolution {t.stated_resolution_ns:.0f} ns; smallest step seen {t.min_step_ns} ns; "
            f"median cost of one read {t.median_read_ns:.0f} ns"]


CHECK = Check("timer", True, lambda o: check_timer(), lines)
