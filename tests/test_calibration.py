"""The calibration record (issue 27): built from planted runs, stored per machine kind, read
strictly, and printed beside compare's and the gate's verdicts; another kind's record is ignored
and said so, a corrupt one is one line and exit 2. Planted streams and fake runs, nothing timed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.analysis.calibration import (CellFigures, PairVerdicts, build_calibration, calibration_lines,
                                        calibration_lines_for_runs, gate_detectable)
from bench.analysis.gate_sim import _alarms, resampled_false_alarms
from bench.codec import to_json
from bench.errors import ResultFileError
from bench.results.calibration import (Calibration, calibration_file, find_calibration, read_calibration,
                                       write_calibration)
from bench.results.files import read_run
from bench.results.records import machine_kind
from bench.results.stores import open_store
from tests.helpers import run_cli

SAMPLE = Path(__file__).parent / "data/run_v14.json"
KIND = machine_kind(read_run(SAMPLE).environment)  # "vm|AMD EPYC|2|"


def planted_runs(n: int, cvs: dict[str, float], cells: int = 12, shift: float = 0.0, seed: int = 0):
    """n runs of `cells` cells split over the kinds of `cvs`, each cell's figures lognormal around
    its own level with its kind's run-to-run CV, and a machine-wide `shift` (log sd) per run."""
    rng = np.random.default_rng(seed)
    kinds = list(cvs)
    levels = rng.uniform(100, 1000, cells)
    runs = []
    for _ in range(n):
        common = rng.normal(0, shift) if shift else 0.0
        run = {}
        for i in range(cells):
            kind = kinds[i % len(kinds)]
            f = np.exp(rng.normal(0, cvs[kind]) + common)
            run[f"cell{i}"] = CellFigures(kind, {"throughput": levels[i] * f, "p50": 1 / (levels[i] * f),
                                                 "p99": 2 / (levels[i] * f)})
        runs.append(run)
    return runs


def calibration(runs, pairs=(), nights: int = 40, **kw) -> Calibration:
    return build_calibration(machine_kind=kw.pop("kind", KIND), created_at="2026-12-08T00:00:00Z", suite="sample",
                             suite_sha256="0" * 64, repeats=5, harness_commit=None, runs=runs, pairs=list(pairs),
                             nights=nights, **kw)


# --- what the record measures --------------------------------------------------------------------


@pytest.mark.parametrize("cv", [0.01, 0.03])  # the threshold decides at 1%, the noise at 3%
def test_gate_detectable_step_is_found_with_80_percent_power_on_simulated_nights(cv):
    """One series alone of 24 steps down by the stated detectable effect on the latest of 30 runs:
    the gate raises its alarm on about 80% of such nights, and on few at half the step."""
    series, runs, nights = 24, 30, 250
    d = gate_detectable(cv, series, 0.05, 0.05, baseline=runs - 1)
    assert d >= 0.05  # never below the threshold an alarm needs
    rng = np.random.default_rng(7)
    found = {}
    for step in (d, d / 2):
        hits = 0
        for _ in range(nights):
            values = 1000 * np.exp(rng.normal(0, cv, (series, runs)))
            values[0, -1] *= 1 - step
            hits += bool(_alarms(values, 0.05, 0.05)[0])
        found[step] = hits / nights
    assert 0.7 <= found[d] <= 0.92, found  # 0.80 and 0.83 with these seeds
    assert found[d / 2] <= 0.3, found


def test_resampled_nights_keep_a_whole_machine_slow_run_in_every_series_at_once():
    """Quiet runs: the gate's measured false-alarm rate stays under its alpha. A machine where one
    run in ten is twice as slow for every cell: the nightly gate alarms about whenever the night's
    latest run is that one (1 in 10), twice its 5% promise, and the resampled nights show it; had
    they drawn each series' runs apart, losing the shared slow run, they would read about 50%."""
    rng = np.random.default_rng(3)
    n, m = 10, 24
    logs = rng.normal(0, 0.03, (n, m)) + rng.normal(0, 0.02, (n, 1))

    def dev(x):
        return (x - x.mean(axis=0)) * np.sqrt(n / (n - 1))

    assert resampled_false_alarms(dev(logs), 200, seed=1) / 200 <= 0.05
    slow = logs.copy()
    slow[0] += np.log(0.5)
    rate = resampled_false_alarms(dev(slow), 400, seed=0) / 400
    assert 0.06 <= rate <= 0.16, rate
    # the same slow run in a latency metric is a fast run: no alarm in the worse direction
    assert resampled_false_alarms(dev(slow), 100, higher_is_better=False, seed=0) == 0


def test_build_calibration_measures_each_cell_kinds_spread_and_compares_false_alarms():
    runs = planted_runs(8, {"single-stream": 0.02, "offline": 0.08}, cells=24, seed=1)
    pairs = [PairVerdicts(24, 0, 0, (("single-stream", 0.03), ("single-stream", 0.05), ("offline", 0.12)))
             for _ in range(6)] + [PairVerdicts(24, 1, 2, (("offline", 0.2),))]
    c = calibration(runs, pairs, planted=(0.2, 30, 28))
    assert c.machine_kind == KIND and c.runs == 8
    assert (c.compare.pairs, c.compare.false_alarm_pairs, c.compare.cells, c.compare.flagged_cells) == (7, 1, 168, 2)
    kinds = {k.kind: k for k in c.kinds}
    assert set(kinds) == {"single-stream", "offline"} and kinds["offline"].cells == 12
    # the pooled run-to-run spread of each kind is its planted one (8 runs x 12 cells)
    assert kinds["single-stream"].run_cv["throughput"] == pytest.approx(0.02, rel=0.2)
    assert kinds["offline"].run_cv["throughput"] == pytest.approx(0.08, rel=0.2)
    assert kinds["offline"].gate_detectable["throughput"] > kinds["single-stream"].gate_detectable["throughput"]
    assert kinds["single-stream"].compare_detectable == pytest.approx(0.04)  # the median of 0.03, 0.05 (x6)
    assert kinds["offline"].compare_detectable == pytest.approx(0.12) and kinds["offline"].compare_detectable_max == 0.2
    assert [g.metric for g in c.gate] == ["throughput", "p50", "p99"]
    assert all(g.method == "resampled from 8 measured runs" and g.series == 24 and g.nights == 40 for g in c.gate)
    # too few runs to resample: the gate's nights come from the model, and the record says so
    few = calibration(runs[:3], nights=20)
    assert all(g.method.startswith("modelled (3 runs are too few to resample") for g in few.gate)


# --- stored, read back, refused ------------------------------------------------------------------


def test_record_round_trips_one_file_per_machine_kind(tmp_path):
    c = calibration(planted_runs(5, {"single-stream": 0.02}), nights=10)
    path = write_calibration(c, tmp_path)
    assert path == calibration_file(tmp_path, KIND) and path.parent == tmp_path
    assert read_calibration(path) == c
    # kinds whose readable stems agree ("a b" and "a/b" both read "a-b") still get files of their own
    assert calibration_file(tmp_path, "a b|x") != calibration_file(tmp_path, "a/b|x")
    look = find_calibration(KIND, tmp_path)
    assert look.record == c and look.path == path


def _corrupt(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _good_doc() -> dict:
    return to_json(calibration(planted_runs(5, {"single-stream": 0.02}), nights=10))


CORRUPT = {
    "truncated": lambda: json.dumps(_good_doc())[:200],
    "not a record": lambda: json.dumps({"hello": 1}),
    "more false alarms than pairs": lambda: json.dumps(
        {**_good_doc(), "compare": {**_good_doc()["compare"], "false_alarm_pairs": 9, "pairs": 1}}),
    "a negative count": lambda: json.dumps({**_good_doc(), "runs": -1}),
    "an unknown key": lambda: json.dumps({**_good_doc(), "runz": 3}),
    "a newer version": lambda: json.dumps({**_good_doc(), "schema_version": 99}),
    "NaN": lambda: json.dumps(_good_doc()).replace('"repeats": 5', '"repeats": NaN'),
}


@pytest.mark.parametrize("what", list(CORRUPT))
def test_a_corrupt_record_is_one_resultfileerror_line(tmp_path, what):
    path = _corrupt(tmp_path, calibration_file(tmp_path, KIND).name, CORRUPT[what]())
    with pytest.raises(ResultFileError) as exc:
        find_calibration(KIND, tmp_path)
    text = str(exc.value)
    assert text.startswith(f"calibration record {path}") and "\n" not in text, text


def test_another_kinds_record_is_ignored_and_said_so(tmp_path):
    other = calibration(planted_runs(5, {"single-stream": 0.02}), nights=10, kind="gpu-box|Xeon|64|H100")
    path = write_calibration(other, tmp_path)
    # named as a file: read, found to be another kind's, ignored
    look = find_calibration(KIND, path)
    assert look.record is None
    assert look.note == f"calibration {path} was measured on machine kind gpu-box, not vm: ignored (its figures say nothing of this machine)"
    # in the directory: this kind has none; the other kind's is named, and ignored
    look = find_calibration(KIND, tmp_path)
    assert look.record is None and "no calibration for machine kind vm in" in look.note
    assert "holds records of other machine kinds only (gpu-box), ignored" in look.note
    # the same host name on other hardware: the whole kinds tell them apart
    clone = calibration(planted_runs(5, {"single-stream": 0.02}), nights=10, kind="vm|Intel Xeon|2|")
    clone_path = write_calibration(clone, tmp_path / "clone")
    assert "'vm|Intel Xeon|2|', not 'vm|AMD EPYC|2|'" in find_calibration(KIND, clone_path).note
    assert find_calibration(KIND, tmp_path / "clone").note.startswith(
        f"no calibration for machine kind 'vm|AMD EPYC|2|' in {tmp_path / 'clone'} (")
    assert find_calibration(KIND, tmp_path / "clone").note.endswith("other machine kinds only ('vm|Intel Xeon|2|'), ignored")
    # a named file that is not there is bad input
    with pytest.raises(ResultFileError, match="no such file"):
        find_calibration(KIND, tmp_path / "missing.json")


# --- what compare and history print --------------------------------------------------------------


def test_compare_lines_from_the_record_of_the_runs_machine_kind(tmp_path):
    """The function compare calls: from the run's machine kind and its cells' kinds."""
    runs = planted_runs(5, {"single-stream": 0.02, "multi-stream": 0.05, "server": 0.03})
    pairs = [PairVerdicts(7, int(i == 0), int(i == 0), (("single-stream", 0.04), ("multi-stream", 0.09)))
             for i in range(4)]
    write_calibration(calibration(runs, pairs, planted=(0.2, 12, 11), nights=10), tmp_path)
    run = read_run(SAMPLE)
    (line,) = calibration_lines_for_runs([run, run], tmp_path, alpha=0.05, threshold=0.05)
    assert line.startswith("calibration on vm: false alarms measured 25% (n = 4 A/A pairs, 1 of 28 cells flagged); "
                           "detectable ±9.0% (multi-stream; worst cell ±9.0%), not calibrated (server), "
                           "±4.0% (single-stream; worst cell ±4.0%); a planted 20% slowdown called slower in 92% "
                           "(n = 12 cells) [calibrated on vm 2026-12-08 from 5 runs of sample]"), line
    # compare at other settings than the record's: the rate is said not to be this comparison's
    (line,) = calibration_lines([KIND], tmp_path, cell_kinds=["single-stream"], alpha=0.01)
    assert "while this comparison uses alpha 0.01: the measured rate is not this one's" in line
    # none for this kind
    assert calibration_lines(["other|cpu|4|"], tmp_path) == [
        f"calibration on other: no calibration for machine kind other in {tmp_path} (bench self-check --checks "
        f"reproducibility --runs 10 writes one); {tmp_path} holds records of other machine kinds only (vm), ignored"]


def _store_with(tmp_path: Path, nights: int) -> str:
    from tests.test_history import nightly

    db = str(tmp_path / "h.sqlite")
    store = open_store(db)
    try:
        rng = np.random.default_rng(1)
        for i in range(nights):
            store.add_run(nightly(i, 1000.0 * (1 + 0.01 * rng.standard_normal()), host="vm"))
    finally:
        store.close()
    return db


def test_history_prints_the_gate_calibration_of_its_machine_kind(tmp_path, capsys):
    db = _store_with(tmp_path, 12)
    nightly_kind = open_store(db).rows()[0].machine
    runs = planted_runs(6, {"single-stream": 0.02})
    write_calibration(calibration(runs, nights=30, kind=nightly_kind), tmp_path / "cal")
    code, out, err = run_cli(capsys, "history", "--db", db, "--calibration", str(tmp_path / "cal"))
    assert code == 0, err
    gate = out.splitlines()[-2:]
    assert gate[0].startswith("gate: pass; 2 of 2 series tested, the latest run of each against the runs before it")
    assert "false alarm with probability at most 5% by design" in gate[0]
    assert gate[1].startswith("  gate calibration: false alarms measured 0% of nights (n = 30 A/A nights of 12 "
                              "series, resampled from 6 measured runs); detectable ±"), gate[1]
    assert "(single-stream) when one series of 2 steps alone, found on the night it starts" in gate[1]
    # without a record for this kind (the default directory is empty here): said, and the gate's answer stands
    code, out, _ = run_cli(capsys, "history", "--db", db, "--calibration", str(tmp_path))
    assert code == 0 and f"  gate calibration: no calibration for machine kind vm in {tmp_path}" in out


def test_history_ignores_another_machine_kinds_calibration_and_says_so(tmp_path, capsys):
    db = _store_with(tmp_path, 12)
    path = write_calibration(calibration(planted_runs(5, {"single-stream": 0.02}), nights=10,
                                         kind="gpu-box|Xeon|64|H100"), tmp_path / "cal")
    code, out, err = run_cli(capsys, "history", "--db", db, "--calibration", str(path))
    assert code == 0, err  # the gate's answer does not depend on its calibration
    assert (f"  gate calibration: calibration {path} was measured on machine kind gpu-box, not vm: ignored "
            "(its figures say nothing of this machine)") in out


def test_history_with_a_corrupt_calibration_is_one_line_exit_2(tmp_path, capsys):
    db = _store_with(tmp_path, 12)
    kind = open_store(db).rows()[0].machine
    path = calibration_file(tmp_path / "cal", kind)
    path.parent.mkdir()
    path.write_text('{"schema_version": 1, "machine_kind": "vm|')
    code, out, err = run_cli(capsys, "history", "--db", db, "--calibration", str(tmp_path / "cal"))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"bench: calibration record {path}: not JSON (truncated or corrupt?)"), err


# --- the reproducibility check writes it ---------------------------------------------------------


def _scaled(doc: dict, f: float) -> dict:
    """A run whose every ok cell is f times as fast: throughputs times f, latencies over f, in its
    figures and in each repetition's (compare decides on the repetitions)."""
    doc = json.loads(json.dumps(doc))
    for c in doc["cells"]:
        if c["status"] != "ok":
            continue
        tp = c["metrics"]["throughput"]
        for k in ("value", "ci_low", "ci_high"):
            tp[k] *= f
        for name, est in c["metrics"]["latency_ms"].items():
            if isinstance(est, dict) and "value" in est:
                for k in ("value", "ci_low", "ci_high"):
                    if est[k] is not None:
                        est[k] /= f
        for r in c["repetitions"]:
            if r["throughput"] is not None:
                r["throughput"] *= f
            for k in ("mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms"):
                if r[k] is not None:
                    r[k] /= f
    return doc


def test_reproducibility_check_writes_this_machine_kinds_record_and_replaces_an_older_one(tmp_path):
    from bench.selfcheck.reproducibility import _pair, calibration_summary, record_calibration

    doc = json.loads(SAMPLE.read_text())
    rng = np.random.default_rng(4)
    paths = []
    for i in range(5):
        d = tmp_path / f"a{i}"
        d.mkdir()
        shutil.copy(SAMPLE, d / "run.json")
        (d / "run.json").write_text(json.dumps(_scaled(doc, float(np.exp(rng.normal(0, 0.02))))))
        paths.append(d)
    pairs = tuple(_pair(paths[i], paths[i + 1]) for i in range(4))
    assert all(p.compared == 6 and p.slower == 0 for p in pairs)  # the server cell is not comparable
    out = tmp_path / "results" / "calibration"
    where, replaced, record = record_calibration(paths, pairs, (0.2, 6, 6), 2, out, nights=20)
    assert where == calibration_file(out, KIND) and replaced == ""
    assert read_calibration(where) == record
    assert record.runs == 5 and record.compare.pairs == 4 and record.compare.planted_found == 6
    assert sum(record.compare.verdicts.values()) == 24 and "slower" not in record.compare.verdicts
    assert {k.kind for k in record.kinds} == {"single-stream", "multi-stream", "server"}
    assert all(g.method == "resampled from 5 measured runs" for g in record.gate)
    summary = calibration_summary(record)
    assert summary[0].startswith("compare: false alarms measured 0% (n = 4 A/A pairs, 0 of 24 cells flagged)")
    assert summary[1].startswith("gate (throughput): false alarms measured")
    where2, replaced, _ = record_calibration(paths, pairs, None, 2, out, nights=20)
    assert where2 == where and replaced == f"the record of {record.created_at} (5 runs of sample)"


def test_a_calibration_the_disk_refuses_costs_the_record_not_the_checks_figures(tmp_path):
    from bench.selfcheck.reproducibility import _pair, _record_or_error

    paths = []
    for i in range(2):
        (tmp_path / f"a{i}").mkdir()
        shutil.copy(SAMPLE, tmp_path / f"a{i}" / "run.json")
        paths.append(tmp_path / f"a{i}")
    (tmp_path / "results").write_text("a file where the directory would go")
    where, replaced, summary, error = _record_or_error(paths, (_pair(*paths),), None, 2, tmp_path / "results" / "cal", 10)
    assert (where, replaced, summary) == ("", "", ())
    assert error.startswith(f"{calibration_file(tmp_path / 'results' / 'cal', KIND)}: cannot write the calibration record")


def test_compare_prints_the_calibration_beside_its_verdict_and_refuses_a_corrupt_one(tmp_path, capsys):
    """bench compare: the record of the runs' machine kind under the outcome line (and in --json);
    none for this kind is said; a corrupt record is one line, exit 2."""
    runs = planted_runs(5, {"single-stream": 0.02})
    pairs = [PairVerdicts(7, 0, 0, (("single-stream", 0.04),)) for _ in range(4)]
    write_calibration(calibration(runs, pairs, nights=10), tmp_path / "cal")
    code, out, err = run_cli(capsys, "compare", str(SAMPLE), str(SAMPLE), "--calibration", str(tmp_path / "cal"))
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.startswith("  calibration on vm: false alarms measured 0% (n = 4 A/A pairs") for line in lines), out
    (tmp_path / "none").mkdir()
    code, out, _ = run_cli(capsys, "compare", str(SAMPLE), str(SAMPLE), "--calibration", str(tmp_path / "none"),
                           "--json")
    assert code == 0 and json.loads(out)["calibration"][0].startswith("calibration on vm: no calibration for machine kind vm")
    path = calibration_file(tmp_path / "bad", KIND)
    path.parent.mkdir()
    path.write_text("{")
    code, out, err = run_cli(capsys, "compare", str(SAMPLE), str(SAMPLE), "--calibration", str(tmp_path / "bad"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"bench: calibration record {path}: not JSON"), err
