"""Which cells a suite runs, in what order, with what time limit, and when a sweep stops early.

A cell is one CellKey: (benchmark, model, target, batch size, scenario, concurrency), the
concurrency from the scenario's axis. Per benchmark the reference target's cells come first, so
its outputs exist when the other targets' are checked against them.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace

from bench.config.records import BenchmarkSpec, SuiteSpec, TargetSpec
from bench.errors import UsageError
from bench.results.records import CellKey, Slo
from bench.scenarios.base import Scenario
from bench.scenarios.registry import SCENARIOS

LOAD_ALLOWANCE_S = 300.0  # time a worker may take to start, load and check outputs


@dataclass(frozen=True)
class PlannedCell:
    index: int
    key: CellKey  # its model_sha256 is "" until the models are prepared (with_models)
    benchmark: BenchmarkSpec
    target: TargetSpec

    @property
    def id(self) -> str:
        return self.key.id

    @property
    def scenario(self) -> Scenario:
        return SCENARIOS[self.key.scenario]

    def timeout_s(self) -> float:
        """Twice the longest the cell may measure, its warm-up, and the time to load."""
        stop = self.benchmark.stop
        busy = max(stop.max_seconds, self.scenario.busy_s(self.benchmark))
        return busy * 2 + stop.warmup_seconds + LOAD_ALLOWANCE_S


def plan(suite: SuiteSpec, only: str | None = None) -> list[PlannedCell]:
    """Cells in run order: per benchmark the reference target first, so its outputs exist; per
    target each dims combination's batch sweep in turn (smallest shapes first, so a sweep that
    outgrows the model or the memory stops early)."""
    cells: list[PlannedCell] = []
    for bench in suite.benchmarks:
        order = [bench.reference] + [t for t in bench.targets if t != bench.reference]
        for tname in order:
            for dims in bench.dims_grid():
                for bs in bench.batch_sizes:
                    for name in bench.scenarios:
                        for concurrency in SCENARIOS[name].axis(bench):
                            key = CellKey(bench.name, "", tname, bs, name, concurrency, dims)
                            if only and not (fnmatch.fnmatch(key.id, only) or fnmatch.fnmatch(bench.name, only)):
                                continue
                            cells.append(PlannedCell(len(cells), key, bench, suite.targets[tname]))
    if not cells:
        raise UsageError(f"--only {only!r} matches no cell (cell ids look like BENCHMARK/TARGET/bN/SCENARIO)")
    return cells


def model_forms(cells: list[PlannedCell], cuda: bool) -> dict[str, tuple[BenchmarkSpec, frozenset[str], frozenset[str]]]:
    """Each benchmark's prepared model forms its runnable cells' targets load (none for a cuda
    target on a machine without CUDA: those cells are skipped): (benchmark, forms of a forward,
    forms of a decoder, for the cells whose scenario generates)."""
    needs: dict[str, tuple[BenchmarkSpec, frozenset[str], frozenset[str]]] = {}
    for c in cells:
        if c.target.is_cuda and not cuda:
            continue
        bench, forms, decoder = needs.get(c.benchmark.name, (c.benchmark, frozenset(), frozenset()))
        if c.scenario.needs_decoder:
            decoder |= {c.target.model_form}
        else:
            forms |= {c.target.model_form}
        needs[c.benchmark.name] = (bench, forms, decoder)
    return needs


def with_models(cells: list[PlannedCell], model_sha256: dict[str, str]) -> list[PlannedCell]:
    """The cells with their model's hash in their key (a benchmark without a prepared model keeps "")."""
    return [replace(c, key=replace(c.key, model_sha256=model_sha256.get(c.benchmark.name, ""))) for c in cells]


class SweepGates:
    """Sweeps that stop early: a target's batch sweep once a batch ran out of memory (larger ones
    would too); a dims sweep once a shape failed (a sequence past the model's position table, or
    memory: larger shapes fail the same way); a concurrency sweep once the SLO broke (more
    clients only wait longer)."""

    def __init__(self) -> None:
        self._oom_at: dict[tuple, int] = {}
        self._shape_failed: dict[tuple[str, str, str, int], list[tuple[tuple[str, int], ...]]] = {}
        self._slo_broke_at: dict[tuple, int] = {}

    def skip_reason(self, c: PlannedCell) -> str | None:
        k = c.key
        oom = self._oom_at.get((k.benchmark, k.target, k.scenario, k.dims))
        if oom is not None and k.batch_size > oom:
            return f"sweep stopped: out of memory at batch {oom}"
        for failed in self._shape_failed.get((k.benchmark, k.target, k.scenario, k.batch_size), []):
            if _larger(k.dims, failed):
                label = ",".join(f"{n}={v}" for n, v in failed)
                return f"sweep stopped: the cell at {label} failed (larger shapes would too)"
        broke = self._slo_broke_at.get((k.benchmark, k.target, k.batch_size, k.scenario, k.dims))
        if k.concurrency is not None and broke is not None and k.concurrency > broke:
            return f"sweep stopped: the SLO broke at concurrency {broke}"
        return None

    def record(self, c: PlannedCell, failure_kind: str | None, slo: Slo | None) -> None:
        """One repetition's outcome: its failure kind, or the SLO of its figures."""
        k = c.key
        if failure_kind in ("out_of_memory", "error") and k.dims:
            self._shape_failed.setdefault((k.benchmark, k.target, k.scenario, k.batch_size), []).append(k.dims)
        if failure_kind == "out_of_memory":
            at = (k.benchmark, k.target, k.scenario, k.dims)
            self._oom_at[at] = min(self._oom_at.get(at, k.batch_size), k.batch_size)
        if k.concurrency is not None and slo is not None and not slo.passed:
            at5 = (k.benchmark, k.target, k.batch_size, k.scenario, k.dims)
            self._slo_broke_at[at5] = min(self._slo_broke_at.get(at5, k.concurrency), k.concurrency)


def _larger(dims: tuple[tuple[str, int], ...], than: tuple[tuple[str, int], ...]) -> bool:
    """Every named size at least `than`'s and one larger (the same names: one benchmark's grid)."""
    pairs = list(zip((v for _, v in dims), (v for _, v in than)))
    return bool(pairs) and all(a >= b for a, b in pairs) and any(a > b for a, b in pairs)
