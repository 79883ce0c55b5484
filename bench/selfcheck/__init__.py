"""`bench self-check`: what the harness itself costs and how its figures hold, measured, not
assumed. One module per check; CHECKS lists them in the order they run and print."""
from __future__ import annotations

from bench.selfcheck import bootstrap, fidelity, generator, jit, kernel_speed, loadgen, overhead, timer
from bench.selfcheck.check import Check

CHECKS: dict[str, Check] = {c.name: c for c in (
    overhead.CHECK,
    timer.CHECK,
    kernel_speed.CHECK,
    bootstrap.CHECK,
    jit.CHECK,
    loadgen.CHECK,
    generator.CHECK,
    fidelity.CHECK,
)}
DEFAULT_CHECKS = tuple(name for name, c in CHECKS.items() if c.default)
