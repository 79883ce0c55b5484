"""A process's memory figures (the worker's own: its peak is a cell's peak RSS)."""
from __future__ import annotations

import resource
import sys


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
