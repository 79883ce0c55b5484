"""Sweeps read from a run: throughput and p99 against batch size and against concurrency, per
target, and the best batch size / concurrency for a latency budget (reads results only).

A cell with a concurrency (a scenario with a concurrency axis) belongs to a concurrency sweep at
its batch size; any other to its target's batch sweep. The budget is the benchmark's p99 SLO
unless one is given; the best setting is the one with the highest throughput whose p99 is within
it (the p99's upper confidence bound, when there is one, so a setting that only meets the budget
by luck is not chosen). A batch sweep that ran out of memory says where, and the largest batch
that fit.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.results.records import Cell, Run


@dataclass(frozen=True)
class SweepPoint:
    setting: int  # batch size or concurrency
    throughput: float
    p99_ms: float
    p99_high_ms: float


@dataclass(frozen=True)
class Sweep:
    benchmark: str
    target: str
    scenario: str
    axis: str  # "batch" or "concurrency"
    points: tuple[SweepPoint, ...]
    budget_ms: float | None
    best: SweepPoint | None
    out_of_memory_at: int | None = None  # the smallest batch that failed out of memory

    @property
    def memory_limit(self) -> str:
        """'out of memory at batch N; largest batch that fit: M', or '' when nothing ran out."""
        if self.out_of_memory_at is None:
            return ""
        fit = [p.setting for p in self.points if p.setting < self.out_of_memory_at]
        return (f"out of memory at batch {self.out_of_memory_at}; largest batch that fit: "
                + (str(max(fit)) if fit else "none"))


def _group(c: Cell) -> tuple[str, str, str, str]:
    shape = f" {c.key.dims_label}" if c.dims else ""  # a curve holds one shape: seq=128 and seq=512 apart
    if c.concurrency is not None:
        return c.benchmark, c.target.name, f"{c.scenario} b{c.batch_size}{shape}", "concurrency"
    return c.benchmark, c.target.name, c.scenario + shape, "batch"


def _budget(cell: Cell, override: float | None) -> float | None:
    if override is not None:
        return override
    if cell.slo is not None:
        p99 = [c.limit_ms for c in cell.slo.checks if c.metric == "p99_ms"]
        return p99[0] if p99 else None
    return None


def sweeps(run: Run, budget_ms: float | None = None) -> list[Sweep]:
    groups: dict[tuple[str, str, str, str], list[Cell]] = {}
    oom: dict[tuple[str, str, str, str], int] = {}
    for c in run.cells:
        key = _group(c)
        if c.status == "failed" and c.failure_kind == "out_of_memory" and key[3] == "batch":
            oom[key] = min(oom.get(key, c.batch_size), c.batch_size)
            groups.setdefault(key, [])
        elif c.status == "ok" and c.metrics is not None:
            groups.setdefault(key, []).append(c)
    out = []
    for key, cells in groups.items():
        bench, target, scenario, axis = key
        if len(cells) < 2 and key not in oom:
            continue
        points = []
        for c in sorted(cells, key=lambda c: c.concurrency if axis == "concurrency" else c.batch_size):
            p99 = c.metrics.latency_ms.p99
            points.append(SweepPoint(c.concurrency if axis == "concurrency" else c.batch_size,
                                     c.metrics.throughput.value, p99.value,
                                     p99.ci_high if p99.ci_high is not None else p99.value))
        budget = _budget(cells[0], budget_ms) if cells else budget_ms
        fitting = [p for p in points if budget is None or p.p99_high_ms <= budget]
        best = max(fitting, key=lambda p: p.throughput) if fitting else None
        out.append(Sweep(bench, target, scenario, axis, tuple(points), budget, best, oom.get(key)))
    return out
