"""The kernels' compile time into an empty numba cache, and their load time from it."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.selfcheck.check import Check, met


@dataclass(frozen=True)
class JitCheck:
    cold_s: float
    warm_s: float


def check_jit() -> JitCheck:
    """Compile every kernel into an empty cache (a fresh process), then load them from it."""
    import os
    import subprocess
    import sys

    code = ("import time; t = time.perf_counter(); from bench import stats; stats.warm_kernels(); "
            "print(time.perf_counter() - t)")
    root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        times = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"kernel warm-up failed: {done.stderr.strip().splitlines()[-1:]}")
            times.append(float(done.stdout.strip().splitlines()[-1]))
    return JitCheck(times[0], times[1])


def lines(j: JitCheck) -> list[str]:
    return ["kernel JIT (every kernel, fresh process)",
            f"  compile into an empty cache {j.cold_s:.2f} s (target < 5 s: {met(j.cold_s < 5)}); "
            f"load from the cache {j.warm_s:.2f} s"]


CHECK = Check("jit", True, lambda o: check_jit(), lines)
