"""Verdicts that say what they know (issue 27, items 1-3): three answers per compared figure
(slower/faster, unchanged within the threshold, inconclusive), every declared figure deciding with
Holm's correction over all of them, how two runs were made differently said before the table, and a
run whose cells are unstable or interfered never a plain green pass.

Every figure here is planted: run.json files built from tests/data/run_v12.json with known
per-process figures, so each verdict is fixed by construction, not by this machine's noise."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from bench.results.files import read_run
from tests.helpers import run_cli, tiny_suite, write_suite

SAMPLE = Path(__file__).parent / "data/run_v14.json"
SS, MS = "mlp/ort-cpu/b4/single-stream", "mlp/ort-cpu/b4/multi-stream/c2"
TORCH_SS, FP16_SS = "mlp/torch-cpu/b4/single-stream", "mlp/ort-fp16/b4/single-stream"
TORCH_MS, FP16_MS = "mlp/torch-cpu/b4/multi-stream/c2", "mlp/ort-fp16/b4/multi-stream/c2"

# Per-process jitter of a steady cell: ±1%, the same in BASE and NEW (an A/A pair reads alike).
STEADY = (1.00, 1.01, 0.99, 1.005, 0.995)
WIDE_TAIL = (0.9, 1.0, 4.0, 1.1, 8.0)  # a p99 whose processes disagree: about x2, interval [0.97, 4.1]


def _key(cell_id: str) -> str:
    """A cell id as compare keys it (BENCH|MODEL HASH|TARGET|bN|SCENARIO[|cC])."""
    bench, target, batch, *scenario = cell_id.split("/")
    return "|".join([bench, "3482821d3b5a", target, batch, *scenario])


def planted(tmp_path: Path, name: str, figures: dict[str, dict[str, tuple[float, ...]]] | None = None,
            edit=None) -> Path:
    """A run directory from the sample: every ok cell measured in 5 processes
    whose p50, p99 and time per sample are `figures[cell id][figure]` times the sample's first
    repetition's (STEADY where not given); `edit(doc)` changes the document last."""
    doc = json.loads(SAMPLE.read_text())
    doc["run_id"] = name
    for cell in doc["cells"]:
        if cell["status"] != "ok":
            continue
        given = (figures or {}).get(cell["id"], {})
        first = cell["repetitions"][0]
        reps = []
        for i in range(5):
            rep = copy.deepcopy(first)
            rep.update(index=i, used=True, interfered=False)
            time, p50, p99 = (given.get(f, STEADY)[i] for f in ("time", "p50", "p99"))
            rep["throughput"] = first["throughput"] / time
            rep["mean_ms"] = first["mean_ms"] * time
            rep["p50_ms"], rep["p90_ms"] = first["p50_ms"] * p50, first["p90_ms"] * p50
            rep["p95_ms"], rep["p99_ms"], rep["p999_ms"] = first["p95_ms"] * p99, first["p99_ms"] * p99, first["p999_ms"] * p99
            reps.append(rep)
        cell["repetitions"] = reps
    if edit is not None:
        edit(doc)
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps(doc))
    return run_dir


def _cells(doc: dict) -> dict[str, dict]:
    return {c["key"]: c for c in doc["cells"]}


def _compare_json(capsys, base: Path, new: Path, *flags: str) -> tuple[int, dict]:
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--json", *flags)
    assert "Traceback" not in err
    return code, json.loads(out)


# --- item 1: three answers per figure, every declared figure deciding -----------------------------


def test_a_tail_that_cannot_tell_is_inconclusive_not_unchanged(tmp_path, capsys):
    """The issue's case: p50 steady, p99 about x2 with an interval from below 1 to 4. It was
    "unchanged" because single-stream decided on p50 alone; now p99 decides too, and cannot tell."""
    base = planted(tmp_path, "base")
    new = planted(tmp_path, "new", {SS: {"p99": WIDE_TAIL}})
    code, doc = _compare_json(capsys, base, new)
    assert code == 0 and doc["outcome"] == "inconclusive"
    cell = _cells(doc)[_key(SS)]
    assert cell["verdict"] == "inconclusive" and cell["method"] == "processes"
    p50, p99 = cell["figures"]
    assert (p50["figure"], p50["answer"]) == ("p50", "unchanged")
    assert p99["figure"] == "p99" and p99["answer"] == "inconclusive"
    assert p99["ratio"]["ci_low"] < 1 < 1.5 < p99["ratio"]["value"] < 3 < p99["ratio"]["ci_high"]
    assert 0.05 < p99["p_value"] < 0.1 and p99["equivalence_p"] > 0.05  # neither test rejects
    assert p99["detectable"] > 1 and cell["detectable"] == p99["detectable"]  # the cell states its weakest figure's
    # the other cells are steady on both sides: unchanged within ±5%, each figure shown so
    for key in map(_key, (TORCH_SS, FP16_SS, MS, TORCH_MS, FP16_MS)):
        c = _cells(doc)[key]
        assert c["verdict"] == "unchanged" and {f["answer"] for f in c["figures"]} == {"unchanged"}, c["reason"]
        assert c["figures"][0]["equivalence_p"] < 0.05


def test_a_slower_tail_alone_makes_the_cell_slower(tmp_path, capsys):
    base = planted(tmp_path, "base")
    new = planted(tmp_path, "new", {SS: {"p99": tuple(1.5 * f for f in STEADY)}})
    code, out, err = run_cli(capsys, "compare", str(base), str(new))
    assert code == 1 and f"1 cell(s) slower: {_key(SS)}" in err
    code, doc = _compare_json(capsys, base, new)
    cell = _cells(doc)[_key(SS)]
    assert cell["verdict"] == "slower" and [f["answer"] for f in cell["figures"]] == ["unchanged", "slower"]
    assert doc["outcome"] == "slower"


def test_a_planted_20_percent_slowdown_reads_slower_and_a_speedup_faster(tmp_path, capsys):
    slow = tuple(1.2 * f for f in STEADY)
    base = planted(tmp_path, "base")
    new = planted(tmp_path, "new", {key: {"time": slow, "p50": slow, "p99": slow} for key in (SS, MS)})
    code, doc = _compare_json(capsys, base, new)
    assert code == 1
    for key in (SS, MS):
        c = _cells(doc)[_key(key)]
        assert c["verdict"] == "slower" and all(f["answer"] == "slower" for f in c["figures"]), c["reason"]
    code, doc = _compare_json(capsys, new, base)  # the other way round
    assert code == 0 and doc["outcome"] == "pass"
    assert {_cells(doc)[_key(k)]["verdict"] for k in (SS, MS)} == {"faster"}


def test_the_figures_an_slo_limits_decide_too(tmp_path, capsys):
    def slo_on_p90(doc):
        cell = next(c for c in doc["cells"] if c["id"] == TORCH_SS)
        cell["slo"] = {"passed": True, "checks": [{"metric": "p90_ms", "limit_ms": 1.0, "value_ms": 0.02,
                                                   "passed": True}]}

    base = planted(tmp_path, "base", edit=slo_on_p90)
    new = planted(tmp_path, "new", edit=slo_on_p90)
    code, doc = _compare_json(capsys, base, new)
    assert code == 0
    assert [f["figure"] for f in _cells(doc)[_key(TORCH_SS)]["figures"]] == ["p50", "p99", "p90"]
    assert [f["figure"] for f in _cells(doc)[_key(FP16_SS)]["figures"]] == ["p50", "p99"]
    assert [f["figure"] for f in _cells(doc)[_key(MS)]["figures"]] == ["time", "p99"]


def test_holm_counts_every_deciding_figure_of_every_cell(tmp_path, capsys):
    """A 6% move of a cell whose processes spread ±5%: p = 0.007, past the threshold. Holm over
    cells alone (6 tests: 0.05 / 6 = 0.0083) would call it slower; over every deciding figure of
    every cell (12 tests: p50 or time, and p99, each; 0.05 / 12 = 0.0042) it cannot be told from
    noise, and reads inconclusive."""
    spread = (1.0, 1.05, 0.95, 1.03, 0.97)
    base = planted(tmp_path, "base", {SS: {"p50": spread}})
    new = planted(tmp_path, "new", {SS: {"p50": tuple(1.06 * f for f in spread)}})
    code, doc = _compare_json(capsys, base, new)
    cell = _cells(doc)[_key(SS)]
    p50 = cell["figures"][0]
    assert 0.05 / 12 < p50["p_value"] < 0.05 / 6 and p50["ratio"]["value"] == pytest.approx(1.06)
    assert p50["answer"] == "inconclusive" and cell["verdict"] == "inconclusive"
    assert p50["note"] == "past the threshold, but not significant after Holm's correction over 12 tests in 6 cells at 0.05"
    assert "p50 latency x1.060 [" in cell["reason"] and " slower " not in cell["reason"]
    assert code == 0 and doc["outcome"] == "inconclusive"


def test_inconclusive_is_its_own_outcome_listed_first_and_fail_on_inconclusive_exits_1(tmp_path, capsys):
    base = planted(tmp_path, "base")
    new = planted(tmp_path, "new", {FP16_SS: {"p99": WIDE_TAIL}})
    code, out, err = run_cli(capsys, "compare", str(base), str(new))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("INCONCLUSIVE: 1 cell(s) could not tell a ±5% change from none")
    assert "0 slower · 1 inconclusive · 0 faster · 5 unchanged within ±5%" in lines[0]
    # listed before the table, with the change it could have detected
    assert re.match(rf"  inconclusive: {re.escape(_key(FP16_SS))}: p99 latency x\d+\.\d+ \[.*\], detectable ±\d+%",
                    lines[1]), lines[1]
    assert out.index("inconclusive: mlp|") < out.index("compare base -> new")
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--fail-on-inconclusive")
    assert code == 1
    assert err.strip() == f"bench: 1 cell(s) inconclusive: {_key(FP16_SS)} (--fail-on-inconclusive)"


def test_fail_on_inconclusive_passes_when_every_cell_is_unchanged(tmp_path, capsys):
    base, new = planted(tmp_path, "base"), planted(tmp_path, "new")
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--fail-on-inconclusive")
    assert code == 0 and err == ""
    assert out.splitlines()[0].startswith("pass: every compared cell unchanged within ±5% or faster")
    code, doc = _compare_json(capsys, base, new, "--fail-on-inconclusive")
    assert code == 0 and doc["outcome"] == "pass"


def test_fail_on_inconclusive_fails_when_no_cell_could_be_compared(tmp_path, capsys):
    base = planted(tmp_path, "base")
    new = planted(tmp_path, "new", edit=lambda doc: doc["environment"].update(cpu_model="Another CPU"))
    code, out, err = run_cli(capsys, "compare", str(base), str(new))
    assert code == 0 and "INCONCLUSIVE: no cell could be compared" in out
    code, _, err = run_cli(capsys, "compare", str(base), str(new), "--fail-on-inconclusive")
    assert code == 1 and err.strip() == "bench: no cell could be compared (--fail-on-inconclusive)"


def test_capacity_figures_inside_the_threshold_are_inconclusive():
    from bench.analysis.compare import point_verdict

    assert point_verdict("peak", 100.0, 102.0, True, 0.05)[0] == "inconclusive"  # one point shows no band
    assert point_verdict("peak", 100.0, 80.0, True, 0.05)[0] == "slower"
    assert point_verdict("peak", 100.0, 120.0, True, 0.05)[0] == "faster"


# --- item 2: how the runs differ, said before the table; cells skipped in both folded --------------


def test_different_stop_rules_and_repetitions_are_one_line_before_the_table(tmp_path, capsys):
    base = planted(tmp_path, "base")

    def quick(doc):
        doc["argv"] = doc["argv"] + ["--quick"]
        for cell in doc["cells"]:
            cell["repetitions"] = cell["repetitions"][:2]

    new = planted(tmp_path, "new", edit=quick)
    code, out, _ = run_cli(capsys, "compare", str(base), str(new))
    (line,) = [x for x in out.splitlines() if x.startswith("runs differ:")]
    assert line == ("runs differ: stop rules differ: NEW ran with --quick (a tenth of the stop times, at most 2 "
                    "processes a cell); processes per cell: BASE 5, NEW 2")
    assert out.index(line) < out.index("compare base -> new") and code in (0, 1)


def test_different_suite_files_and_harnesses_are_said_and_different_suites_refused(tmp_path, capsys):
    base = planted(tmp_path, "base")

    def other(doc):
        doc["suite"]["sha256"] = "ab" * 32
        doc["harness_version"] = "0.2.0"
        doc["environment"]["harness_commit"] = "0123456789abcdef"

    new = planted(tmp_path, "new", edit=other)
    code, doc = _compare_json(capsys, base, new)
    assert doc["run_differences"] == [
        "suite file changed (sha256 b5f03d46b923 -> abababababab): its stop rules, targets or SLOs may differ",
        "harness 0.1.0 (commit 779e346a7e, uncommitted changes) -> 0.2.0 (commit 0123456789, uncommitted changes)"]
    assert code == 0
    renamed = planted(tmp_path, "renamed", edit=lambda doc: doc["suite"].update(name="another"))
    code, out, err = run_cli(capsys, "compare", str(base), str(renamed))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "suite 'another' differs from the base's 'sample'; compare runs of the same suite" in err


def test_an_interrupted_run_leaves_its_missing_and_cut_short_cells_inconclusive(tmp_path, capsys):
    base = planted(tmp_path, "base")

    def interrupted(doc):
        doc["status"], doc["end_reason"] = "interrupted", "SIGINT"
        doc["cells"] = [c for c in doc["cells"] if c["id"] != TORCH_MS]  # never started
        cut = next(c for c in doc["cells"] if c["id"] == FP16_SS)  # one process, then Ctrl-C
        cut["repetitions"] = cut["repetitions"][:1]

    new = planted(tmp_path, "new", edit=interrupted)
    code, doc = _compare_json(capsys, base, new)
    cells = _cells(doc)
    assert cells[_key(TORCH_MS)]["verdict"] == "inconclusive"
    assert cells[_key(TORCH_MS)]["reason"] == "not measured: NEW was interrupted before this cell (SIGINT)"
    assert cells[_key(FP16_SS)]["verdict"] == "inconclusive"
    assert cells[_key(FP16_SS)]["reason"].startswith("NEW was not completed and kept 1 process of this cell: no spread")
    assert "NEW interrupted (SIGINT): its missing and cut-short cells are inconclusive" in doc["run_differences"]
    assert code == 0 and doc["outcome"] == "inconclusive"
    code, _, err = run_cli(capsys, "compare", str(base), str(new), "--fail-on-inconclusive")
    assert code == 1 and "2 cell(s) inconclusive" in err


def test_cells_skipped_in_both_runs_fold_into_one_line(tmp_path, capsys):
    base, new = planted(tmp_path, "base"), planted(tmp_path, "new")
    code, out, _ = run_cli(capsys, "compare", str(base), str(new))
    assert "torch-cuda|b4" not in out  # no row of their own
    assert "2 cells skipped in both runs (target torch-cuda): no CUDA device" in " ".join(out.split())
    md = tmp_path / "cmp.md"
    run_cli(capsys, "compare", str(base), str(new), "--md", str(md))
    text = md.read_text()
    assert "torch-cuda\\|b4" not in text and "2 cells skipped in both runs (target torch-cuda)" in text


# --- item 3: unstable or interfered cells make an amber pass ----------------------------------------


def _passing(doc: dict) -> None:
    """The sample without its failed cells (its answer would be FAIL otherwise)."""
    doc["cells"] = [c for c in doc["cells"] if c["status"] != "failed"]


def _stable(doc: dict) -> None:
    _passing(doc)
    for c in doc["cells"]:
        c["unstable"] = None


def test_a_run_of_unstable_cells_is_an_amber_pass_in_every_report(tmp_path, capsys):
    from bench.analysis.verdict import RunVerdict
    from bench.report import html, markdown, terminal

    run = read_run(planted(tmp_path, "shaky", edit=_passing))
    v = RunVerdict.of(run)
    assert v.passed and v.headline == "caution" and v.word == "pass with caveats" and len(v.unstable) == 7
    assert v.caveat().startswith("7 of 7 measured cells unstable (a figure varies over 10% between worker processes)")
    assert "compare against this run calls their changes smaller than that spread inconclusive" in v.caveat()
    md = markdown.run_summary(run)
    assert "**pass with caveats**" in md and "**pass**" not in md and "7 of 7 measured cells unstable" in md
    page = html.verdict_html(run)
    assert page.startswith('<div class="verdict warn"><b>pass with caveats</b>') and "7 of 7 measured" in page
    head = terminal.run_headline(run)
    assert head[0].text.startswith("pass with caveats: 9 cells: 7 measured, 0 failed, 2 skipped")
    assert head[0].style == "warn" and head[1].text.startswith("read with care: 7 of 7")
    # the same run with stable cells: a plain green pass
    clean = read_run(planted(tmp_path, "clean", edit=_stable))
    assert RunVerdict.of(clean).headline == "pass" and terminal.run_headline(clean)[0].style == "good"
    assert '<div class="verdict pass"><b>pass</b>' in html.verdict_html(clean)
    assert "**pass**" in markdown.run_summary(clean) and "Read with care" not in markdown.run_summary(clean)
    # bench report --md says it too
    code, _, _ = run_cli(capsys, "report", str(planted(tmp_path, "shaky2", edit=_passing)), "--md", str(tmp_path / "r.md"))
    assert code == 0 and "**pass with caveats**" in (tmp_path / "r.md").read_text()


def test_interfered_cells_are_counted_and_whether_they_reached_the_figures(tmp_path):
    from bench.analysis.verdict import RunVerdict

    def interfered(doc):
        _stable(doc)
        cells = {c["id"]: c for c in doc["cells"]}
        cells[SS]["repetitions"][0].update(interfered=True, used=False)  # left out: 4 clean remain
        for rep in cells[MS]["repetitions"][:4]:
            rep["interfered"] = True  # 4 of 5: fewer than 2 clean, so all were used
    v = RunVerdict.of(read_run(planted(tmp_path, "interfered", edit=interfered)))
    assert v.headline == "caution" and not v.unstable
    assert [c.id for c in v.interfered] == [SS, MS] and [c.id for c in v.interfered_used] == [MS]
    assert v.caveat().startswith("2 of 7 measured under interference from other processes, 1 with interfered "
                                 "processes in their figures")


@pytest.mark.parametrize("flags, expected", [((), 0), (("--fail-on-unstable",), 1)])
def test_bench_run_exits_0_on_an_amber_pass_unless_fail_on_unstable(tmp_path, capsys, monkeypatch, flags, expected):
    from bench.runner import suite as runner_suite

    run = read_run(planted(tmp_path, "shaky", edit=_passing))

    def fake_run_suite(suite, out_root, **kwargs):  # the planted run in place of a timed one
        return runner_suite.SuiteResult(run=run, path=tmp_path / "shaky", interrupted=False)

    monkeypatch.setattr(runner_suite, "run_suite", fake_run_suite)
    suite = write_suite(tmp_path, tiny_suite())
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--quiet", *flags)
    assert code == expected
    assert "pass with caveats: 9 cells: 7 measured" in out and "read with care: 7 of 7 measured cells unstable" in out
    if expected:
        assert "bench: 7 cell(s) unstable or measured under interference (--fail-on-unstable): mlp/ort-cpu" in err
    else:
        assert "--fail-on-unstable)" not in err
    clean = read_run(planted(tmp_path, "clean", edit=_stable))
    monkeypatch.setattr(runner_suite, "run_suite", lambda *a, **k: runner_suite.SuiteResult(clean, tmp_path, False))
    code, out, _ = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--quiet", *flags)
    assert code == 0 and "pass: 9 cells: 7 measured" in out
