"""Bootstrap speed and agreement: our 95% percentile intervals of the mean and p99 against
scipy.stats.bootstrap on the same data (scipy comes with the `test` extra)."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from bench.codec import to_json
from bench.selfcheck.check import Check, met


@dataclass(frozen=True)
class BootstrapCheck:
    n: int
    resamples: int
    ours_s: float
    scipy_s: float | None
    ours_mean_ci: tuple[float, float]
    ours_p99_ci: tuple[float, float]
    scipy_mean_ci: tuple[float, float] | None
    scipy_p99_ci: tuple[float, float] | None
    note: str = ""

    @property
    def speedup(self) -> float | None:
        return None if self.scipy_s is None else self.scipy_s / self.ours_s


def check_bootstrap(n: int = 100_000, resamples: int = 1000, repeats: int = 3) -> BootstrapCheck:
    """95% percentile-bootstrap intervals of the mean and p99: ours against scipy.stats.bootstrap."""
    from bench import stats

    x = np.random.default_rng(0).lognormal(13, 0.5, n)
    stats.warm_kernels()
    ours = []
    for r in range(repeats):
        t0 = time.perf_counter()
        m = stats.bootstrap_mean(x, 0.95, resamples, seed=r, method="percentile")
        q = stats.bootstrap_quantile(x, 0.99, 0.95, resamples, seed=r, method="percentile")
        ours.append(time.perf_counter() - t0)
    try:
        from scipy import stats as sps
    except ImportError:
        return BootstrapCheck(n, resamples, statistics.median(ours), None, (m.low, m.high), (q.low, q.high),
                              None, None, "scipy is not installed (pip install scipy) for the comparison")

    def p99(a, axis=-1):
        return np.percentile(a, 99, axis=axis)

    theirs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        sm = sps.bootstrap((x,), np.mean, n_resamples=resamples, method="percentile", rng=np.random.default_rng(r))
        sq = sps.bootstrap((x,), p99, n_resamples=resamples, method="percentile", rng=np.random.default_rng(r))
        theirs.append(time.perf_counter() - t0)
    return BootstrapCheck(
        n, resamples, statistics.median(ours), statistics.median(theirs),
        (m.low, m.high), (q.low, q.high),
        (float(sm.confidence_interval.low), float(sm.confidence_interval.high)),
        (float(sq.confidence_interval.low), float(sq.confidence_interval.high)),
    )


def lines(b: BootstrapCheck) -> list[str]:
    out = [f"bootstrap (95% percentile intervals of the mean and p99, n = {b.n:,}, {b.resamples} resamples; medians of 3)",
           f"  ours  {b.ours_s * 1e3:8.1f} ms   mean [{b.ours_mean_ci[0]:.1f}, {b.ours_mean_ci[1]:.1f}]   "
           f"p99 [{b.ours_p99_ci[0]:.1f}, {b.ours_p99_ci[1]:.1f}]"]
    if b.scipy_s is None:
        return out + [f"  scipy: {b.note}"]
    return out + [f"  scipy {b.scipy_s * 1e3:8.1f} ms   mean [{b.scipy_mean_ci[0]:.1f}, {b.scipy_mean_ci[1]:.1f}]   "
                  f"p99 [{b.scipy_p99_ci[0]:.1f}, {b.scipy_p99_ci[1]:.1f}]",
                  f"  speed-up {b.speedup:.1f}x   (target >= 10x: {met(b.speedup >= 10)})"]


CHECK = Check("bootstrap", True, lambda o: check_bootstrap(), lines,
              as_json=lambda b: {**to_json(b), "speedup": b.speedup},
              missing=lambda b: b.note if b.scipy_s is None else None)  # the goal is a speed-up over scipy
