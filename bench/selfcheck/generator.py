"""The load generator's limit: the highest Poisson rate our issuer sustains with a null backend
with its issue error under 50 µs at p99, beside LoadGen's null-SUT Offline rate."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.selfcheck.check import Check


@dataclass(frozen=True)
class GeneratorCheck:
    limit_error_us: float
    rates: tuple[float, ...]
    issue_error_p99_us: tuple[float, ...]
    highest_sustained_qps: float | None
    loadgen_null_offline_qps: float | None


def check_generator(rates=(1_000, 10_000, 100_000, 400_000, 800_000, 1_600_000, 3_200_000), seconds: float = 0.5) -> GeneratorCheck:
    """The highest Poisson rate our issuer sustains with a null backend while its issue error stays
    under 50 µs at p99, beside LoadGen's Offline throughput with a null SUT (its own ceiling)."""
    from bench.scenarios import loadgen_sut as loadgen
    from bench.scenarios.open_loop import ISSUE_ERROR_LIMIT_NS, poisson_schedule, run_server

    p99s = []
    best = None
    for rate in rates:
        run = run_server(lambda: None, poisson_schedule(rate, seconds, seed=1))
        err = run.start_ns - run.scheduled_ns  # null backend: every start is the issuer's own lateness
        p99 = float(np.percentile(err, 99))
        p99s.append(p99 / 1e3)
        if p99 <= ISSUE_ERROR_LIMIT_NS:
            best = rate
    lg_null = None
    if loadgen.available():
        lg_null = loadgen.run_loadgen(lambda: None, "offline", 1e6, seconds, min_queries=100_000).samples_per_s
    return GeneratorCheck(ISSUE_ERROR_LIMIT_NS / 1e3, tuple(float(r) for r in rates), tuple(p99s), best, lg_null)


def lines(g: GeneratorCheck) -> list[str]:
    out = [f"load generator limit (null backend; issue error p99 must stay under {g.limit_error_us:g} µs)"]
    for rate, err in zip(g.rates, g.issue_error_p99_us):
        out.append(f"  {rate:>9,.0f}/s   issue error p99 {err:8.1f} µs   {'ok' if err <= g.limit_error_us else 'over'}")
    best = f"{g.highest_sustained_qps:,.0f}/s" if g.highest_sustained_qps else "none of the rates tried"
    lgn = f"{g.loadgen_null_offline_qps:,.0f}/s" if g.loadgen_null_offline_qps else "n/a"
    return out + [f"  highest sustained: {best}; LoadGen with a null SUT (Offline): {lgn}"]


CHECK = Check("generator", False, lambda o: check_generator(), lines, needs_loadgen=True)
