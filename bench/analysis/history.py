"""Each cell over time, and where it changed: the nightly regression gate.

A series is one cell identity (benchmark, model hash, target, batch, scenario) on one machine,
ordered by run time. Change points come from the statistics kernels (PELT, L2 cost, penalty
4 sigma^2 ln n; bench.stats.change_points) with a minimum segment of one run, so a step that
starts at the latest run can be flagged by that run. A change is reported at its first run,
with that run's commit and date and the step's size (mean after / mean before - 1); it is a
regression when the figure got worse by at least the threshold. Fewer than MIN_RUNS runs give
no change points, and the output says so.

The gate (does the latest run start a regression?) is a test, not a change point: per series,
the latest run (and the latest two) against the runs before them, Welch-style on a robust scale
(the baseline's mean and standard deviation, Student's t with its size - 1 df capped at
GATE_MAX_DF, one-sided in the worse direction; the smaller of the two p-values, doubled). Across all series of the night
on one machine kind (a fleet run gates each kind apart; see Run.machine_of), the Benjamini-Hochberg procedure at GATE_ALPHA: on a night where nothing changed it raises an alarm
with probability at most GATE_ALPHA whatever the number of series (under the null, BH's false
discovery rate is its family-wise error), and on a night where a change hits many series at
once, as a real regression does, it keeps its power where Bonferroni or Holm would lose it. An
alarm also needs the step to reach the threshold. bench self-check --checks reproducibility
simulates both (bench.analysis.gate_sim).

Accuracy (issue 29) is a series too: `metric="accuracy"` follows each cell's accuracy loss against
its reference (Agreement.accuracy.loss: 1 - top-1 agreement, 1 - cosine, the mean relative error,
1 - token agreement), read from the stored run documents (`accuracy_losses`); cells without
accuracy figures (reference targets, runs before schema 14) have no such series. A loss is already
a difference from the reference, often 0, so its steps are absolute (after - before, in the
loss's units: 0.05 is five points of top-1) and the threshold reads in those units.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from bench.results.stores import CellRow

MIN_RUNS = 4
ACCURACY_LOSS = "accuracy_loss"  # not a store column: from the stored runs (accuracy_losses)
GATE_ALPHA = 0.05
BASELINE_RUNS = 30  # the runs before the tested window that make its baseline
WINDOWS = (1, 2)  # the latest run alone, and the latest two
# The baseline's spread counts as at most this many degrees of freedom: run-to-run noise here is a
# mixture of per-process modes, heavier-tailed than normal, and with the baseline's full df the
# gate raised a false alarm on 7.3% of simulated A/A nights (5 processes a run; 1.7% with this cap,
# while a 15% step in every series was still found within 2 runs in 96%).
GATE_MAX_DF = 10
# metric -> (CellRow column, higher is better); ttft and tpot exist for generate cells only
METRICS = {"throughput": ("throughput", True), "p50": ("p50_ms", False), "p99": ("p99_ms", False),
           "ttft": ("ttft_p50_ms", False), "tpot": ("tpot_p50_ms", False), "accuracy": (ACCURACY_LOSS, False)}
# Metrics whose steps are differences (after - before), not ratios: a loss of 0 steps to 0.03.
ABSOLUTE = frozenset({"accuracy"})


@dataclass(frozen=True)
class ChangePoint:
    index: int
    run_id: str
    created_at: str
    commit_sha: str | None
    before: float
    after: float
    step: float  # after / before - 1; after - before for an ABSOLUTE metric (accuracy loss)
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
    p_value: float | None = None  # the gate's test of the latest run(s), before the correction
    latest_step: float | None = None  # the latest window's mean / baseline mean - 1 (ABSOLUTE: - the baseline mean)
    alarm: bool = False  # the gate: significant after Benjamini-Hochberg, and past the threshold

    @property
    def latest_starts_regression(self) -> bool:
        return self.alarm


def latest_test(values: np.ndarray, higher_is_better: bool, absolute: bool = False) -> tuple[float, float] | None:
    """(one-sided p-value that the latest run(s) got worse, their step) or None with too few runs;
    `absolute`: the step as a difference, not a ratio."""
    from bench import stats

    best: tuple[float, float] | None = None
    tried = 0
    for w in WINDOWS:
        base = values[max(0, values.size - w - BASELINE_RUNS): values.size - w]
        if base.size < MIN_RUNS - 1:
            continue
        tried += 1
        med = float(base.mean())
        scale = max(float(base.std(ddof=1)), abs(med) * 1e-9, 1e-300)
        window = float(values[-w:].mean())
        worse = (med - window) if higher_is_better else (window - med)
        t = worse / (scale * np.sqrt(1 / w + 1 / base.size))
        df = min(base.size - 1, GATE_MAX_DF)
        p = stats.t_two_sided_p(t, df) / 2 if t > 0 else 1 - stats.t_two_sided_p(t, df) / 2
        if best is None or p < best[0]:
            best = (p, window - med if absolute else window / med - 1 if med else 0.0)
    if best is None:
        return None
    return min(1.0, best[0] * tried), best[1]


def gate(reports: list[SeriesReport], threshold: float, alpha: float = GATE_ALPHA) -> list[SeriesReport]:
    """Each series' alarm: its latest test rejected by Benjamini-Hochberg across the series of its
    machine kind, with a step of at least `threshold` in the worse direction. One gate per kind:
    a fleet's nightly run feeds several kinds, and each kind's night keeps its own false-alarm
    rate of at most `alpha`, as if it had been run and gated alone."""
    from dataclasses import replace

    from bench import stats

    out = list(reports)
    for machine in sorted({r.machine for r in reports}):
        tested = [i for i, r in enumerate(reports) if r.p_value is not None and r.machine == machine]
        reject = stats.benjamini_hochberg([reports[i].p_value for i in tested], alpha)
        for i, rejected in zip(tested, reject):
            r = reports[i]
            worse = r.latest_step is not None and (-r.latest_step if METRICS[r.metric][1] else r.latest_step) >= threshold
            out[i] = replace(r, alarm=bool(rejected and worse))
    return out


def accuracy_losses(run_documents: Iterable[str]) -> dict[tuple[str, str], float]:
    """(run_id, cell key) -> the cell's accuracy loss, from stored run.json documents (a store's
    `runs.run_json`); cells without accuracy figures, and documents that do not read as a run,
    give none."""
    from bench.codec import from_json
    from bench.results.records import Cell

    out: dict[tuple[str, str], float] = {}
    for text in run_documents:
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("schema_version"), int) or doc["schema_version"] < 14:
            continue  # accuracy figures begin with schema 14
        for c in doc.get("cells") or ():
            acc = ((c or {}).get("agreement") or {}).get("accuracy") if isinstance(c, dict) else None
            if not isinstance(acc, dict) or not isinstance(acc.get("loss"), (int, float)):
                continue
            try:
                cell = from_json(Cell, c, "cell")
            except (ValueError, TypeError, KeyError, OverflowError):  # DecodeError is a ValueError
                continue  # a cell shaped otherwise (a later schema): no point in the series, not a failure
            out[(str(doc.get("run_id")), cell.key.stable_id)] = float(acc["loss"])
    return out


def analyse(rows: list[CellRow], metric: str = "throughput", threshold: float = 0.05,
            alpha: float = GATE_ALPHA, accuracy: Mapping[tuple[str, str], float] | None = None) -> list[SeriesReport]:
    """Each series of `metric`, its change points, and the gate; `accuracy`: (run_id, cell key) ->
    accuracy loss (accuracy_losses), for metric "accuracy"."""
    from bench import stats  # numba: loaded when a history is analysed, not to build the CLI

    column, higher_is_better = METRICS[metric]
    absolute = metric in ABSOLUTE

    def value(r: CellRow) -> float | None:
        if column == ACCURACY_LOSS:
            return (accuracy or {}).get((r.run_id, r.cell_key))
        return getattr(r, column)

    series: dict[tuple[str, str], list[tuple[CellRow, float]]] = {}
    for r in rows:
        v = value(r)
        if v is None:  # a figure this cell does not have (ttft of a non-generate cell, accuracy of a reference)
            continue
        series.setdefault((r.cell_key, r.machine), []).append((r, v))
    out = []
    for (key, machine), pairs in series.items():
        points = [p for p, _ in pairs]
        values = np.array([v for _, v in pairs], dtype=np.float64)
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
                step = after - before if absolute else after / before - 1 if before else 0.0
                worse = step < 0 if higher_is_better else step > 0
                p = points[cp]
                changes.append(ChangePoint(cp, p.run_id, p.created_at, p.commit_sha, before, after, step,
                                           worse and abs(step) >= threshold))
            note = f"{values.size} runs, {len(changes)} change point{'s' if len(changes) != 1 else ''}"
        tested = latest_test(values, higher_is_better, absolute) if values.size >= MIN_RUNS else None
        out.append(SeriesReport(key, machine, metric, tuple(p.run_id for p in points),
                                tuple(p.created_at for p in points), tuple(p.commit_sha for p in points),
                                tuple(float(v) for v in values), tuple(changes), note,
                                None if tested is None else tested[0], None if tested is None else tested[1]))
    return gate(out, threshold, alpha)
