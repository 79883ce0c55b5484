"""Each cell over time, and where it changed: the nightly regression gate.

A series is one cell identity (benchmark, model hash, target, batch, scenario) on one machine,
ordered by run time. Change points come from the statistics kernels (PELT, L2 cost, penalty
4 sigma^2 ln n; bench.stats.change_points) with a minimum segment of one run, so a step that
starts at the latest run can be flagged by that run. A change is reported at its first run,
with that run's commit and date and the step's size (mean after / mean before - 1); it is a
regression when the figure got worse by at least the threshold. Fewer than MIN_RUNS runs give
no change points, and the output says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.results.stores import CellRow

MIN_RUNS = 4
METRICS = {"throughput": ("throughput", True), "p50": ("p50_ms", False), "p99": ("p99_ms", False)}


@dataclass(frozen=True)
class ChangePoint:
    index: int
    run_id: str
    created_at: str
    commit_sha: str | None
    before: float
    after: float
    step: float  # after / before - 1
    regression: bool


@dataclass(frozen=True)
class SeriesReport:
    cell_key: str
    machine: str
    metric: str
    run_ids: tuple[str, ...]
    dates: tuple[str, ...]
    commits: tuple[str | None, ...]
    values: tuple[float, ...]
    changes: tuple[ChangePoint, ...]
    note: str

    @property
    def latest_starts_regression(self) -> bool:
        return any(c.regression and c.index == len(self.values) - 1 for c in self.changes)


def analyse(rows: list[CellRow], metric: str = "throughput", threshold: float = 0.05) -> list[SeriesReport]:
    from bench import stats  # numba: loaded when a history is analysed, not to build the CLI

    column, higher_is_better = METRICS[metric]
    series: dict[tuple[str, str], list[CellRow]] = {}
    for r in rows:
        series.setdefault((r.cell_key, r.machine), []).append(r)
    out = []
    for (key, machine), points in series.items():
        values = np.array([getattr(p, column) for p in points], dtype=np.float64)
        changes: list[ChangePoint] = []
        if values.size < MIN_RUNS:
            note = (f"{values.size} run{'s' if values.size != 1 else ''}: too few for change points "
                    f"(need {MIN_RUNS})")
        else:
            cps = stats.change_points(values, min_size=1).tolist()
            bounds = [0, *cps, values.size]
            for i, cp in enumerate(cps):
                before = float(values[bounds[i]:cp].mean())
                after = float(values[cp:bounds[i + 2]].mean())
                step = after / before - 1
                worse = step < 0 if higher_is_better else step > 0
                p = points[cp]
                changes.append(ChangePoint(cp, p.run_id, p.created_at, p.commit_sha, before, after, step,
                                           worse and abs(step) >= threshold))
            note = f"{values.size} runs, {len(changes)} change point{'s' if len(changes) != 1 else ''}"
        out.append(SeriesReport(key, machine, metric, tuple(p.run_id for p in points),
                                tuple(p.created_at for p in points), tuple(p.commit_sha for p in points),
                                tuple(float(v) for v in values), tuple(changes), note))
    return out
