"""Leak alarms for a monitor: the slope of memory (RSS, GPU memory) after warm-up.

The slope is Theil-Sen's over the windows after the first `warmup_fraction` of them (at least
WARMUP_WINDOWS): allocators, caches and JIT code grow at the start and then level off, which is
not a leak. No judgement before MIN_SPAN_S after warm-up. An alarm needs both Sen's 95% interval of the slope to exclude zero and the slope to
exceed `limit_mib_per_h` (default LEAK_LIMIT_MIB_PER_H): a real but tiny growth (a few KiB an
hour) is not worth waking anyone for. Sen's interval assumes independent errors; memory samples
are smooth, so the interval is narrow and the size limit is what guards against false alarms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEAK_LIMIT_MIB_PER_H = 16.0
WARMUP_WINDOWS = 5
MIN_WINDOWS = 8  # after warm-up, before a slope is judged
# ... and this much time after warm-up: memory grows in allocator-sized steps (seen here: 0.4 MiB
# in the first minute of a flat monitor), which over a few seconds extrapolate to MiB an hour.
MIN_SPAN_S = 600.0


@dataclass(frozen=True)
class LeakCheck:
    figure: str
    slope_mib_per_h: float
    low: float
    high: float
    windows: int
    leaking: bool
    message: str


def leak_check(figure: str, at_s: list[float], values_bytes: list[float], limit_mib_per_h: float = LEAK_LIMIT_MIB_PER_H,
               warmup_fraction: float = 0.2, min_span_s: float = MIN_SPAN_S) -> LeakCheck | None:
    """The memory trend after warm-up; None until there are enough windows (and time) to judge.
    A shorter `min_span_s` gives the slope of a short run for the record (it raises no alarm)."""
    from bench import stats

    skip = max(WARMUP_WINDOWS, int(len(values_bytes) * warmup_fraction))
    x = np.asarray(at_s[skip:], dtype=np.float64) / 3600.0
    y = np.asarray(values_bytes[skip:], dtype=np.float64) / 2**20
    if x.size < MIN_WINDOWS or (x[-1] - x[0]) * 3600.0 < min_span_s:
        return None
    s = stats.theil_sen(x, y)
    leaking = s.low > 0 and s.value > limit_mib_per_h and (x[-1] - x[0]) * 3600.0 >= MIN_SPAN_S
    message = (f"{figure} grows {s.value:+.3g} MiB/h [{s.low:+.3g}, {s.high:+.3g}] over the last {x.size} windows "
               f"(Theil-Sen after warm-up; limit {limit_mib_per_h:g} MiB/h)")
    return LeakCheck(figure, s.value, s.low, s.high, int(x.size), leaking, message)
