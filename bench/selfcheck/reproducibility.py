"""Do the figures hold on a re-run? The suite run several times on this machine, as a user would:

  - re-run coverage: the share of cells whose next run's throughput (and p50) falls inside this
    run's 95% interval (goal: 90%);
  - A/A: `bench compare` of each run against the next, nothing changed: the pairs that exit 0
    (goal: 19 of 20);
  - power: the same suite with every ONNX Runtime CPU target made exactly 20% (--slowdown) slower
    (bench.selfcheck.slowed), compared against a normal run: the share of those cells called
    slower (goal: 90%);
  - the nightly gate on simulated nights with this machine's noise (bench.analysis.gate_sim) at
    the suite's repeats: false-alarm nights (goal: at most 5%) and a 15% step found within 2
    runs (goal: 90%);
  - how each run's time splits between the repetitions' measured windows and the rest.

What it measured is this machine kind's calibration (bench.analysis.calibration): written to
results/calibration/ (bench.results.calibration), replacing an older record of the same kind,
for `bench compare` and `bench history` to print beside their verdicts. The record's gate
figures come from the runs themselves (resampled nights) where there are at least 5 of them.
"""
from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench.results.calibration import DEFAULT_CALIBRATION_DIR
from bench.selfcheck.check import Check, Options, met

SLOWED_BACKEND = "bench.selfcheck.slowed:SlowedOrt"


@dataclass(frozen=True)
class RunTime:
    wall_s: float
    units: int  # repetitions measured (worker processes)
    windows_s: float  # their measured windows, summed


@dataclass(frozen=True)
class PairResult:
    cells: int
    throughput_inside: int
    p50_inside: int
    exit_zero: bool  # compare found no cell slower
    flagged: tuple[str, ...]  # cells compare called slower or faster
    token_figures: int = 0  # generate cells' TTFT p50 and TPOT p50 compared
    token_inside: int = 0  # of those, inside this run's interval
    compared: int = 0  # cells compare judged (both ok)
    slower: int = 0  # of those, called slower
    detectable: tuple[tuple[str, float], ...] = ()  # (cell kind, compare's detectable change) per process-tested cell
    verdicts: tuple[tuple[str, int], ...] = ()  # (verdict, cells that read it) of the cells compare judged
    # throughput and p50 of each cell: this run's relative half-width, and |log(next / this)|
    half_widths: tuple[float, ...] = ()
    moves: tuple[float, ...] = ()


@dataclass(frozen=True)
class ReproducibilityCheck:
    suite: str
    runs: int
    repeats: int
    times: tuple[RunTime, ...]
    pairs: tuple[PairResult, ...]
    slowed_cells: int
    slowed_found: int
    slowed_pairs: int
    gate_false_alarm_nights: float
    gate_found_all: float  # a 15% step in all 24 series
    gate_found_one: float  # in one series alone
    gate_nights: int
    slowdown: float = 0.2  # the planted slowdown
    slowed_verdicts: tuple[tuple[str, int], ...] = ()  # (verdict, cells) of the slowed cells compared
    calibration: str = ""  # where the calibration record was written
    calibration_replaced: str = ""  # the record it replaced, in words ("" when none)
    calibration_summary: tuple[str, ...] = ()  # its lines as compare and history print them
    calibration_error: str = ""  # why it could not be written (the check's figures still print)


def _inside(est, value: float) -> bool:
    return est.ci_low is not None and est.ci_low <= value <= est.ci_high


def _pair(a_path: Path, b_path: Path) -> PairResult:
    from collections import Counter

    from bench.analysis.calibration import cell_kind
    from bench.analysis.compare import compare_runs
    from bench.results.files import read_run
    from bench.scenarios.registry import compare_policy

    a, b = read_run(a_path), read_run(b_path)
    nxt = {c.key.stable_id: c for c in b.cells if c.status == "ok"}
    tp = p50 = n = tokens = tokens_inside = 0
    halves: list[float] = []
    moves: list[float] = []
    for c in a.cells:
        d = nxt.get(c.key.stable_id)
        if c.status != "ok" or d is None:
            continue
        n += 1
        tp += _inside(c.metrics.throughput, d.metrics.throughput.value)
        p50 += _inside(c.metrics.latency_ms.p50, d.metrics.latency_ms.p50.value)
        for mine, theirs in ((c.metrics.throughput, d.metrics.throughput), (c.metrics.latency_ms.p50,
                                                                            d.metrics.latency_ms.p50)):
            if mine.ci_low is not None and mine.value > 0 and theirs.value > 0:
                halves.append((mine.ci_high - mine.ci_low) / 2 / mine.value)
                moves.append(abs(math.log(theirs.value / mine.value)))
        if c.generate is not None and d.generate is not None:  # a generate cell's token figures too
            for mine, theirs in ((c.generate.ttft_ms, d.generate.ttft_ms), (c.generate.tpot_ms, d.generate.tpot_ms)):
                if mine is not None and theirs is not None:
                    tokens += 1
                    tokens_inside += _inside(mine.p50, theirs.p50.value)
    cmp = compare_runs(a_path, b_path, compare_policy)
    flagged = tuple(f"{c.key} {c.verdict}" for c in cmp.cells if c.verdict in ("slower", "faster"))
    scenario = {c.key.stable_id: c.scenario for c in a.cells}
    judged = [c for c in cmp.cells if c.verdict != "not comparable"]
    slower = sum(c.verdict == "slower" for c in judged)
    detectable = tuple((cell_kind(scenario[c.key]), c.detectable) for c in judged
                       if c.detectable is not None and c.key in scenario)
    verdicts = tuple(sorted(Counter(c.verdict for c in judged).items()))
    return PairResult(n, tp, p50, not slower, flagged, tokens, tokens_inside, len(judged), slower, detectable, verdicts,
                      tuple(halves), tuple(moves))


def _slowed(suite, slowdown: float = 0.2):
    """The suite with its ONNX Runtime CPU targets `slowdown` slower, and only their cells."""
    from bench.selfcheck.slowed import backend_name

    targets = {name: replace(t, backend=backend_name(slowdown)) for name, t in suite.targets.items()
               if t.backend == "onnxruntime" and not t.is_cuda}
    benches = []
    for b in suite.benchmarks:
        keep = tuple(t for t in b.targets if t in targets)
        if keep:
            benches.append(replace(b, targets=keep, reference=b.reference if b.reference in keep else keep[0]))
    return replace(suite, targets={**suite.targets, **targets}, benchmarks=tuple(benches)), len(targets)


def _run(suite, out: Path) -> tuple[Path, RunTime]:
    from bench.runner.suite import run_suite

    t0 = time.perf_counter()
    result = run_suite(suite, out)
    wall = time.perf_counter() - t0
    reps = [r for c in result.run.cells for r in c.repetitions if r.status == "ok"]
    return result.path.parent, RunTime(wall, len(reps), sum(r.window_s or 0.0 for r in reps))


def check_reproducibility(o: Options) -> ReproducibilityCheck:
    from collections import Counter

    from bench.analysis.compare import compare_runs
    from bench.analysis.gate_sim import simulate
    from bench.config.suite import load_suite
    from bench.scenarios.registry import compare_policy

    suite = load_suite(o.suite)
    repeats = max((b.stop.repeats for b in suite.benchmarks), default=1)
    slowed, n_slowed_targets = _slowed(suite, o.slowdown)
    with tempfile.TemporaryDirectory(prefix="bench-repro-") as tmp:
        runs, times = [], []
        for i in range(o.runs):
            path, t = _run(suite, Path(tmp) / f"a{i}")
            runs.append(path)
            times.append(t)
        pairs = tuple(_pair(runs[i], runs[i + 1]) for i in range(o.runs - 1))
        cells = found = slowed_pairs = 0
        slowed_verdicts: Counter = Counter()
        if n_slowed_targets:
            for i in range(o.runs - 1):
                path, t = _run(slowed, Path(tmp) / f"b{i}")
                times.append(t)
                cmp = compare_runs(runs[i], path, compare_policy)
                matched = [c for c in cmp.cells if c.reason != "missing in NEW"]
                cells += len(matched)
                found += sum(c.verdict == "slower" for c in matched)
                slowed_verdicts.update(c.verdict for c in matched)
                slowed_pairs += 1
        # read while the runs exist: the calibration is made of them
        written = _record_or_error(runs, pairs, (o.slowdown, cells, found) if slowed_pairs else None, repeats,
                                   DEFAULT_CALIBRATION_DIR)
    nights = 400
    aa = simulate(nights=nights, processes=repeats, stepped=24, seed=1)
    one = simulate(nights=nights, processes=repeats, stepped=1, seed=2)
    return ReproducibilityCheck(o.suite, o.runs, repeats, tuple(times), pairs, cells, found, slowed_pairs,
                                aa.false_alarm_nights, aa.found_within_2, one.found_within_2, nights,
                                o.slowdown, tuple(sorted(slowed_verdicts.items())), *written)


def run_figures(path: Path) -> dict:
    """cell id -> bench.analysis.calibration.CellFigures of a run's ok cells."""
    from bench.analysis.calibration import CellFigures, cell_kind
    from bench.results.files import read_run

    out = {}
    for c in read_run(path).cells:
        if c.status == "ok" and c.metrics is not None:
            lat = c.metrics.latency_ms
            out[c.key.stable_id] = CellFigures(cell_kind(c.scenario), {
                "throughput": c.metrics.throughput.value, "p50": lat.p50.value,
                "p99": lat.p99.value if lat.p99 is not None else None})
    return out


def record_calibration(runs: list[Path], pairs: tuple[PairResult, ...], planted: tuple[float, int, int] | None,
                       repeats: int, directory, nights: int | None = None, seed: int = 0):
    """Build this machine kind's calibration from the check's runs and write it to `directory`:
    (where, what it replaced in words, the record)."""
    from bench.analysis.calibration import GATE_NIGHTS, PairVerdicts, build_calibration
    from bench.errors import ResultFileError
    from bench.results.calibration import calibration_file, read_calibration, write_calibration
    from bench.results.files import read_run, utc_now_iso
    from bench.results.records import machine_kind

    first = read_run(runs[0])
    record = build_calibration(
        machine_kind=machine_kind(first.environment), created_at=utc_now_iso(), suite=first.suite.name,
        suite_sha256=first.suite.sha256, repeats=repeats, harness_commit=first.environment.harness_commit,
        runs=[run_figures(r) for r in runs],
        pairs=[PairVerdicts(p.compared, p.slower, len(p.flagged), p.detectable, dict(p.verdicts)) for p in pairs],
        planted=planted or (0.0, 0, 0), nights=GATE_NIGHTS if nights is None else nights, seed=seed)
    old = calibration_file(directory, record.machine_kind)
    replaced = ""
    if old.exists():
        try:
            before = read_calibration(old)
            replaced = f"the record of {before.created_at} ({before.runs} runs of {before.suite})"
        except ResultFileError as exc:  # the check measured anew: an unreadable old record is only replaced
            replaced = f"an unreadable record ({exc})"
    return write_calibration(record, directory), replaced, record


def _record_or_error(*args) -> tuple[str, str, tuple[str, ...], str]:
    """(where, replaced, summary, error): a disk that refuses the record costs the record alone,
    not the figures of a check that ran the suite for minutes."""
    from bench.errors import ResultWriteError

    try:
        where, replaced, record = record_calibration(*args)
    except ResultWriteError as exc:
        return "", "", (), str(exc)
    return str(where), replaced, calibration_summary(record), ""


def calibration_summary(record) -> tuple[str, ...]:
    """The record as compare and the gate print it."""
    from bench.analysis.calibration import compare_text, gate_text

    g = record.gate_for("throughput")
    return (f"compare: {compare_text(record)}",
            *((f"gate (throughput): {gate_text(record, 'throughput', g.series)}",) if g is not None else ()))


def lines(c: ReproducibilityCheck) -> list[str]:
    cells = sum(p.cells for p in c.pairs)
    tp = sum(p.throughput_inside for p in c.pairs)
    p50 = sum(p.p50_inside for p in c.pairs)
    ok_pairs = sum(p.exit_zero for p in c.pairs)
    out = [f"reproducibility: {c.runs} runs of {c.suite} ({c.repeats} worker processes per cell), each against the next"]
    if cells:
        out.append(f"  re-run coverage: next run inside this run's 95% interval: throughput {tp}/{cells} = {tp / cells:.0%}, "
                   f"p50 {p50}/{cells} = {p50 / cells:.0%}  (goal 90%) {met(min(tp, p50) >= 0.9 * cells)}")
    tokens = sum(p.token_figures for p in c.pairs)
    if tokens:
        inside = sum(p.token_inside for p in c.pairs)
        out.append(f"  re-run coverage of the generate cells' TTFT p50 and TPOT p50: {inside}/{tokens} = "
                   f"{inside / tokens:.0%}  (goal 90%) {met(inside >= 0.9 * tokens)}")
    halves = [h for p in c.pairs for h in p.half_widths]
    moves = [m for p in c.pairs for m in p.moves]
    if halves and moves and statistics.median(moves) > 0:
        ratio = statistics.median(halves) / statistics.median(moves)
        # A calibrated 95% interval for where a re-run lands is about 2.9x the median move (the
        # difference of two draws: 1.96 sqrt(2) sd against 0.674 sqrt(2) sd); wider is blind to
        # changes it could see, narrower does not hold.
        out.append(f"  interval width: median half-width {statistics.median(halves):.1%} of the figure against a median "
                   f"re-run move of {statistics.median(moves):.1%} (largest {max(moves):.1%}): {ratio:.1f}x "
                   f"(goal at most 3.5x; 2.9x is calibrated) {met(ratio <= 3.5)}")
    detect = sorted(d for p in c.pairs for _, d in p.detectable)
    if detect:
        out.append(f"  detectable: compare's median smallest detectable change {statistics.median(detect):.1%} per cell "
                   f"(goal at most 5%) {met(statistics.median(detect) <= 0.05)}")
    tally: dict[str, int] = {}
    for p in c.pairs:
        for v, k in p.verdicts:
            tally[v] = tally.get(v, 0) + k
    if tally:
        out.append("  A/A verdicts over all pairs: " + ", ".join(f"{v} {k}" for v, k in sorted(tally.items())))
    out.append(f"  A/A: bench compare exits 0 in {ok_pairs} of {len(c.pairs)} pairs (goal 19 of 20) "
               f"{met(ok_pairs >= 0.95 * len(c.pairs))}")
    for p in c.pairs:
        if p.flagged:
            out.append(f"    flagged: {'; '.join(p.flagged)}")
    if c.slowed_cells:
        out.append(f"  power: a {c.slowdown:.0%} slower ONNX Runtime target called slower in {c.slowed_found} of "
                   f"{c.slowed_cells} cells over {c.slowed_pairs} pair(s) = {c.slowed_found / c.slowed_cells:.0%} "
                   f"(goal 90%) {met(c.slowed_found >= 0.9 * c.slowed_cells)}")
        if c.slowed_verdicts:
            out.append("    its cells read: " + ", ".join(f"{v} {n}" for v, n in c.slowed_verdicts))
    else:
        out.append("  power: the suite has no ONNX Runtime CPU target to slow down")
    out.append(f"  nightly gate, simulated ({c.gate_nights} nights of 24 series x 30 runs, {c.repeats} processes a run, "
               "a third of processes 25% slow, 3% jitter):")
    out.append(f"    A/A nights with a false alarm: {c.gate_false_alarm_nights:.1%} (goal at most 5%) "
               f"{met(c.gate_false_alarm_nights <= 0.05)}")
    out.append(f"    a 15% step in every series found within 2 runs: {c.gate_found_all:.1%} (goal 90%) "
               f"{met(c.gate_found_all >= 0.9)}; in one series alone: {c.gate_found_one:.1%}")
    if c.calibration:
        out.append(f"  calibration of this machine kind written to {c.calibration}"
                   + (f" (replaces {c.calibration_replaced})" if c.calibration_replaced else "")
                   + "; compare and history print it beside their verdicts:")
        out.extend(f"    {line}" for line in c.calibration_summary)
    elif c.calibration_error:
        out.append(f"  calibration NOT written: {c.calibration_error}")
    for i, t in enumerate(c.times):
        kind = "A/A" if i < c.runs else "slowed"
        out.append(f"  run {i + 1} ({kind}): {t.wall_s:.1f} s wall; {t.units} repetitions, measured windows "
                   f"{t.windows_s:.1f} s ({t.windows_s / max(t.units, 1):.2f} s each); the rest ({t.wall_s - t.windows_s:.1f} s) "
                   "is warm-up, model loads, worker starts and the figures")
    return out


CHECK = Check("reproducibility", False, check_reproducibility, lines)
