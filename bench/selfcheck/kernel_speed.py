"""Kernel speed: the latency summary over 1,000,000 samples, numba kernel against numpy."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from bench.selfcheck.check import Check


@dataclass(frozen=True)
class KernelCheck:
    n: int
    kernel_ms: float
    numpy_ms: float


def check_kernels(n: int = 1_000_000, repeats: int = 5) -> KernelCheck:
    from bench import stats

    x = np.random.default_rng(0).lognormal(13, 0.5, n).astype(np.int64) + 1
    stats.latency_summary(x[:100])  # JIT or cache load outside the timing
    kernel, ref = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stats.latency_summary(x)
        kernel.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.percentile(x, [50, 90, 95, 99, 99.9])
        x.mean(), x.min(), x.max()
        ref.append(time.perf_counter() - t0)
    return KernelCheck(n, statistics.median(kernel) * 1e3, statistics.median(ref) * 1e3)


def lines(k: KernelCheck) -> list[str]:
    return [f"kernels (latency summary of {k.n:,} samples: p50/p90/p95/p99/p99.9, mean, min, max)",
            f"  numba {k.kernel_ms:.1f} ms; numpy {k.numpy_ms:.1f} ms; ratio {k.numpy_ms / k.kernel_ms:.2f}x"]


CHECK = Check("kernels", True, lambda o: check_kernels(), lines)
