"""`bench self-check`: what the harness itself costs and how its figures hold, measured, not
assumed. One module per check; CHECKS lists them in the order they run and print."""
from __future__ import annotations

from bench.selfcheck import (
    bootstrap, driver_rate, executor_cost, fidelity, generator, jit, kernel_speed, loadgen, overhead, reproducibility, timer,
    worker_start,
)
from bench.selfcheck.check import Check

CHECKS: dict[str, Check] = {c.name: c for c in (
    overhead.CHECK,
    timer.CHECK,
    worker_start.CHECK,
    kernel_speed.CHECK,
    bootstrap.CHECK,
    jit.CHECK,
    loadgen.CHECK,
    generator.CHECK,
    fidelity.CHECK,
    reproducibility.CHECK,
    executor_cost.CHECK,
    driver_rate.CHECK,
)}
DEFAULT_CHECKS = tuple(name for name, c in CHECKS.items() if c.default)
