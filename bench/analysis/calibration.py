"""What a verdict is worth on this machine kind, measured: the calibration record built, and said.

Built (`build_calibration`) from what `bench self-check --checks reproducibility` measured: N runs
of a suite made back to back, each compared with the next (A/A), and a target made 20% slower.

- compare's false-alarm rate: the share of A/A pairs in which compare would exit 1 (some cell
  "slower"), with n the pairs (adjacent pairs share a run, so n overstates the independent
  evidence a little); its detectable change per cell kind: the median (and worst) over the A/A
  pairs' cells of that kind of the change compare's process test detects at its alpha with 80%
  power (bench.stats.LogRatio.detectable), the same figure compare prints per cell.
- the gate's false-alarm rate per night, per metric: A/A nights of the suite's cells as series,
  each run of a night drawn from the measured runs (bench.analysis.gate_sim.resampled_false_alarms),
  so the nights carry this machine's noise, its whole-machine shifts included. With fewer than
  MIN_RESAMPLED_RUNS runs there is too little to resample, and the nights come from gate_sim's
  model of this kind of machine instead; the record says which (`method`).
- the gate's detectable step per cell kind and metric (`gate_detectable`): from the run-to-run
  spread pooled over the kind's cells, the step that one series alone shows on the night it
  starts with 80% power: its observed step must pass both the Benjamini-Hochberg bound for a lone
  series (alpha / m over m series, doubled for the gate's two windows; Student's t at the gate's
  capped df) and the threshold, so detectable = max(t_crit * se, threshold) + t_0.8 * se, with
  se = cv * sqrt(1 + 1 / baseline). tests/test_calibration.py holds it against simulated nights.

Runs made minutes apart share a day: nights days apart may spread more (a driver or a neighbour
changes), so the gate's measured rate is a floor for a real fleet's, and a calibration is worth
re-measuring when the machine changes.

Said (`calibration_lines`, `gate_calibration_text`): "false alarms measured X% (n = ...);
detectable ±Y%", from the record of the machine kind the runs were measured on, or a line saying
there is none, or that the record found is another kind's and ignored.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from bench.analysis.history import BASELINE_RUNS, GATE_ALPHA, GATE_MAX_DF, METRICS
from bench.results.calibration import (CALIBRATION_VERSION, Calibration, CompareCalibration, GateCalibration,
                                       KindCalibration, Lookup, find_calibration, short_kind)

POWER = 0.8  # the power at which a detectable effect is stated (compare's own)
MIN_RESAMPLED_RUNS = 5  # fewer measured runs than this: the gate's nights are modelled, not resampled
GATE_NIGHTS = 400
GATE_RUNS = 30  # runs in each simulated series: a full baseline and the night tested
GATE_METRICS = ("throughput", "p50", "p99")


@dataclass(frozen=True)
class CellFigures:
    """One cell of one run, as calibration needs it."""

    kind: str  # cell_kind
    figures: Mapping[str, float]  # metric (GATE_METRICS) -> value


@dataclass(frozen=True)
class PairVerdicts:
    """bench compare on one A/A pair."""

    cells: int  # cells compared
    slower: int  # called slower
    flagged: int  # called slower or faster
    detectable: tuple[tuple[str, float], ...] = ()  # (cell kind, detectable change) of each process-tested cell
    verdicts: Mapping[str, int] = field(default_factory=dict)  # verdict -> cells that read it


def cell_kind(scenario: str) -> str:
    """A cell's kind, as calibration groups cells: its scenario (a single-stream cell's p50 and an
    offline cell's time per sample spread differently). History rows know a cell's scenario and
    not its backend, so the kind is one both compare and history can name."""
    return scenario


def _percent(x: float) -> str:
    """A rate or effect in words: one decimal below 10% (1.5%, where 0% and 2% differ in kind)."""
    if x == 0:
        return "0%"
    return f"{x:.1%}" if abs(x) < 0.1 else f"{x:.0%}"


def gate_detectable(cv: float, series: int, alpha: float = GATE_ALPHA, threshold: float = 0.05,
                    baseline: int = BASELINE_RUNS) -> float:
    """The relative step one series alone shows on the night it starts with 80% power (see the
    module docstring): `cv` its run-to-run spread, `series` the series gated together."""
    from bench import stats

    if cv <= 0:
        return threshold
    series, baseline = max(series, 1), max(baseline, 2)
    df = min(baseline - 1, GATE_MAX_DF)
    se = cv * math.sqrt(1 + 1 / baseline)
    crit = stats.t_quantile(1 - alpha / (2 * series), df) * se
    return max(crit, threshold) + stats.t_quantile(POWER, df) * se


def _log_matrix(runs: list[Mapping[str, CellFigures]], metric: str) -> tuple[list[str], np.ndarray]:
    """(cell ids, runs x cells log figures) of the cells every run measured with `metric`."""
    common = sorted(set.intersection(*(
        {k for k, c in r.items() if c.figures.get(metric) is not None and c.figures[metric] > 0} for r in runs)))
    return common, np.log(np.array([[r[k].figures[metric] for k in common] for r in runs], dtype=np.float64))


def build_calibration(*, machine_kind: str, created_at: str, suite: str, suite_sha256: str, repeats: int,
                      harness_commit: str | None, runs: list[Mapping[str, CellFigures]], pairs: list[PairVerdicts],
                      alpha: float = 0.05, threshold: float = 0.05, planted: tuple[float, int, int] = (0.0, 0, 0),
                      nights: int = GATE_NIGHTS, seed: int = 0) -> Calibration:
    """The record from `runs` (each: cell id -> its figures, the runs in the order they ran),
    the A/A `pairs` compare judged, and `planted` (step, cells compared, cells called slower)."""
    from bench.analysis.gate_sim import modelled_false_alarms, resampled_false_alarms

    if len(runs) < 2:
        raise ValueError("a calibration needs at least 2 runs")
    n = len(runs)
    kinds_of = {k: c.kind for r in runs for k, c in r.items()}
    gates, run_cv = [], {}
    modelled: int | None = None
    for metric in GATE_METRICS:
        ids, logs = _log_matrix(runs, metric)
        if not ids:
            continue
        # each cell's deviations from its own mean, widened by n / (n - 1): deviations from a
        # mean of n spread less than the draws themselves
        dev = (logs - logs.mean(axis=0)) * math.sqrt(n / (n - 1))
        for kind in sorted({kinds_of[k] for k in ids}):
            cols = [i for i, k in enumerate(ids) if kinds_of[k] == kind]
            run_cv.setdefault(kind, {})[metric] = float(math.sqrt(np.mean(logs[:, cols].var(axis=0, ddof=1))))
        if n >= MIN_RESAMPLED_RUNS:
            alarms = resampled_false_alarms(dev, nights, GATE_RUNS, threshold, alpha, METRICS[metric][1], seed)
            method = f"resampled from {n} measured runs"
        else:
            if modelled is None:  # the model's noise is one for every metric: simulate it once
                modelled = modelled_false_alarms(nights, len(ids), GATE_RUNS, max(repeats, 1), threshold, alpha, seed)
            alarms = modelled
            method = (f"modelled ({n} runs are too few to resample, {MIN_RESAMPLED_RUNS} needed): a third of "
                      f"processes 25% slow, 3% jitter, {repeats} processes a run")
        gates.append(GateCalibration(metric, nights, alarms, len(ids), GATE_RUNS, method, alpha, threshold))
    detect: dict[str, list[float]] = {}
    for p in pairs:
        for kind, d in p.detectable:
            if d is not None and math.isfinite(d):
                detect.setdefault(kind, []).append(d)
    series = max((g.series for g in gates), default=len(kinds_of))
    kinds = []
    for kind in sorted(set(kinds_of.values())):
        d = detect.get(kind, [])
        cv = run_cv.get(kind, {})
        kinds.append(KindCalibration(
            kind, sum(v == kind for v in kinds_of.values()),
            float(np.median(d)) if d else None, float(max(d)) if d else None, cv,
            {m: gate_detectable(v, series, alpha, threshold) for m, v in cv.items()}))
    step, planted_cells, found = planted
    verdicts = sum((Counter(p.verdicts) for p in pairs), Counter())
    compare = CompareCalibration(len(pairs), sum(p.slower > 0 for p in pairs), sum(p.cells for p in pairs),
                                 sum(p.flagged for p in pairs), alpha, threshold, step, planted_cells, found,
                                 dict(sorted(verdicts.items())))
    return Calibration(CALIBRATION_VERSION, machine_kind, created_at, suite, suite_sha256, n, repeats, harness_commit,
                       compare, tuple(gates), tuple(kinds))


def _provenance(c: Calibration) -> str:
    return f"calibrated on {short_kind(c.machine_kind)} {c.created_at[:10]} from {c.runs} runs of {c.suite}"


def _settings_differ(what: str, c_alpha: float, c_threshold: float, alpha: float | None,
                     threshold: float | None) -> str:
    """Why a measured rate does not carry over to a verdict made at other settings ("" when it does)."""
    diff = []
    if alpha is not None and not math.isclose(alpha, c_alpha):
        diff.append(f"alpha {alpha:g}")
    if threshold is not None and not math.isclose(threshold, c_threshold):
        diff.append(f"threshold {threshold:.0%}")
    if not diff:
        return ""
    return (f"; measured at alpha {c_alpha:g} and threshold {c_threshold:.0%}, while this {what} uses "
            f"{' and '.join(diff)}: the measured rate is not this one's")


def compare_text(c: Calibration, cell_kinds: Iterable[str] | None = None, alpha: float | None = None,
                 threshold: float | None = None) -> str:
    """'false alarms measured X% (n = ...); detectable ±Y% (kind), ...' for bench compare."""
    cc = c.compare
    rate = cc.false_alarm_pairs / cc.pairs if cc.pairs else 0.0
    text = (f"false alarms measured {_percent(rate)} (n = {cc.pairs} A/A pair{'s' if cc.pairs != 1 else ''}, "
            f"{cc.flagged_cells} of {cc.cells} cells flagged); detectable ")
    by_kind = {k.kind: k for k in c.kinds}
    wanted = sorted(set(cell_kinds)) if cell_kinds is not None else sorted(by_kind)
    parts = []
    for kind in wanted:
        k = by_kind.get(kind)
        if k is None or k.compare_detectable is None:
            parts.append(f"not calibrated ({kind})")
        else:
            parts.append(f"±{_percent(k.compare_detectable)} ({kind}; worst cell ±{_percent(k.compare_detectable_max)})")
    text += ", ".join(parts) if parts else "not calibrated"
    if cc.planted_cells:
        text += (f"; a planted {cc.planted_step:.0%} slowdown called slower in "
                 f"{_percent(cc.planted_found / cc.planted_cells)} (n = {cc.planted_cells} cells)")
    return f"{text} [{_provenance(c)}]{_settings_differ('comparison', cc.alpha, cc.threshold, alpha, threshold)}"


def gate_text(c: Calibration, metric: str, series: int, cell_kinds: Iterable[str] | None = None,
              alpha: float = GATE_ALPHA, threshold: float = 0.05, baseline: int = BASELINE_RUNS) -> str:
    """'false alarms measured X% (n = ... nights); detectable ±Y%' for the nightly gate of
    `series` series whose baselines hold `baseline` runs."""
    g = c.gate_for(metric)
    if g is None:
        return f"false alarms not measured for {metric} [{_provenance(c)}]"
    text = (f"false alarms measured {_percent(g.false_alarm_nights / g.nights if g.nights else 0.0)} of nights "
            f"(n = {g.nights} A/A nights of {g.series} series, {g.method}); detectable ")
    by_kind = {k.kind: k for k in c.kinds}
    parts = []
    for kind in sorted(set(cell_kinds)) if cell_kinds is not None else sorted(by_kind):
        k = by_kind.get(kind)
        cv = None if k is None else k.run_cv.get(metric)
        parts.append(f"not calibrated ({kind})" if cv is None else
                     f"±{_percent(gate_detectable(cv, series, alpha, threshold, baseline))} ({kind})")
    text += ", ".join(parts) if parts else "not calibrated"
    text += f" when one series of {series} steps alone, found on the night it starts"
    return f"{text} [{_provenance(c)}]{_settings_differ('gate', g.alpha, g.threshold, alpha, threshold)}"


def _lookups(machine_kinds: Iterable[str], location) -> list[Lookup]:
    return [find_calibration(kind, location) for kind in sorted(set(machine_kinds))]


def calibration_lines(machine_kinds: Iterable[str], location=None, *, cell_kinds: Iterable[str] | None = None,
                      alpha: float | None = None, threshold: float | None = None) -> list[str]:
    """For bench compare: one line per machine kind the compared cells were measured on, from its
    stored calibration, or saying there is none (or that the record found is another kind's).

    `machine_kinds`: bench.results.records.Run.machine_of of the compared cells (or
    machine_kind(run.environment)); `location`: a directory of records or one record's file
    (default results/calibration); `cell_kinds`: the scenarios of the compared cells (default:
    every kind the record holds); `alpha`, `threshold`: compare's, to say when the record was
    measured at others. A corrupt record raises ResultFileError (one line, exit 2)."""
    kinds = None if cell_kinds is None else sorted({cell_kind(k) for k in cell_kinds})
    out = []
    for look in _lookups(machine_kinds, location):
        head = f"calibration on {short_kind(look.machine_kind)}: "
        out.append(head + (compare_text(look.record, kinds, alpha, threshold) if look.record is not None else look.note))
    return out


def calibration_lines_for_runs(runs, location=None, *, alpha: float | None = None,
                               threshold: float | None = None) -> list[str]:
    """calibration_lines for the ok cells of `runs` (bench.results.records.Run): their machine
    kinds and cell kinds."""
    cells = [(run, c) for run in runs for c in run.cells if c.status == "ok"]
    return calibration_lines({run.machine_of(c) for run, c in cells}, location,
                             cell_kinds={c.scenario for _, c in cells}, alpha=alpha, threshold=threshold)


def gate_calibration_text(machine_kind: str, location=None, *, metric: str = "throughput", series: int,
                          cell_kinds: Iterable[str] | None = None, alpha: float = GATE_ALPHA, threshold: float = 0.05,
                          baseline: int = BASELINE_RUNS) -> str:
    """For bench history: the gate's calibration on `machine_kind`, or why there is none."""
    look = find_calibration(machine_kind, location)
    if look.record is None:
        return look.note
    kinds = None if cell_kinds is None else {cell_kind(k) for k in cell_kinds}
    return gate_text(look.record, metric, series, kinds, alpha, threshold, baseline)
