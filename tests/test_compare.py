"""`bench compare` and `bench report`: verdicts that neither cry wolf nor miss a real slowdown."""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bench.analysis.ranking import rank_targets
from bench.analysis.compare import judge
from bench.results.files import read_run
from bench.results.records import SCHEMA_VERSION
from tests.helpers import FAST_STOP, SPIN_PLUGIN, run_cli, write_suite

def spin_suite(delay_us: int) -> str:
    stop = FAST_STOP.replace("min_seconds = 0.05", "min_seconds = 0.3")
    return textwrap.dedent(f"""
        [suite]
        name = "spin"

        [targets.spin]
        backend = "bench_spin:Spin"
        delay_us = {delay_us}

        [[benchmark]]
        name = "s"
        model = "zoo:mlp"
        model_args = {{ in_features = 4, width = 4, depth = 1, classes = 2 }}
        batch_sizes = [1]
        scenarios = ["single-stream", "offline"]
        targets = ["spin"]
        stop = {stop}
    """)


PLANTED_N = 2000  # samples per planted cell


@pytest.fixture(scope="module")
def spin_runs(tmp_path_factory):
    """Runs A, A again and B with a planted 10% delay, for `bench compare` to judge.

    One real run of the synthetic target is the template (run.json and its samples files, as a
    run writes them); A, A2 and B are copies of it whose samples files hold planted, seeded draws,
    so the verdicts are fixed instead of depending on this machine's noise: A2 is an independent
    draw from A's distribution, B one from A's distribution x 1.10. Their repetitions are removed,
    as in a run made before schema 6 (one process per cell): compare then judges single-stream and
    offline cells from their samples alone (run.json's figures stay the template's)."""
    import shutil
    import sys

    from bench import cli

    tmp = tmp_path_factory.mktemp("spin")
    (tmp / "bench_spin.py").write_text(SPIN_PLUGIN)
    sys.path.insert(0, str(tmp))
    try:
        suite = write_suite(tmp, spin_suite(300), "template.toml")
        assert cli.main(["run", str(suite), "--out", str(tmp / "template")]) == 0
    finally:
        sys.path.remove(str(tmp))
    template = next((tmp / "template").glob("*/run.json")).parent
    rng = np.random.default_rng(20240601)
    runs = {}
    for name, scale in (("a", 1.0), ("a2", 1.0), ("b", 1.10)):
        run_dir = tmp / name / f"{template.name}-{name}"
        shutil.copytree(template, run_dir)
        doc = json.loads((run_dir / "run.json").read_text())
        doc["run_id"] = run_dir.name
        for cell in doc["cells"]:
            # a one-process cell: no repetitions, hence no variance split and no unstable mark
            cell.update(repetitions=[], variance=[], unstable=None)
        (run_dir / "run.json").write_text(json.dumps(doc, indent=1))
        assert [c["scenario"] for c in doc["cells"]] == ["single-stream", "offline"]
        for cell in doc["cells"]:
            samples = run_dir / cell["samples_file"]
            assert cell["status"] == "ok" and np.load(samples).dtype == np.int64  # as a run writes them
            # a spin's latencies: tight about 0.3 ms with a right tail (p99 / p50 ~ 1.12)
            planted = rng.lognormal(np.log(300_000), 0.05, PLANTED_N) * scale
            np.save(samples, planted.astype(np.int64), allow_pickle=False)
        runs[name] = run_dir
    return runs


def test_a_a_reads_unchanged(spin_runs, capsys):
    code, out, err = run_cli(capsys, "compare", str(spin_runs["a"]), str(spin_runs["a2"]), "--json")
    assert code == 0, err
    cells = json.loads(out)["cells"]
    assert len(cells) == 2 and all(c["verdict"] == "unchanged" for c in cells), cells


def test_a_b_with_a_planted_10_percent_delay_reads_slower(spin_runs, capsys, tmp_path):
    md = tmp_path / "cmp.md"
    code, out, err = run_cli(capsys, "compare", str(spin_runs["a"]), str(spin_runs["b"]), "--md", str(md))
    assert code == 1
    assert "2 cell(s) slower" in err
    assert "slower" in out and md.read_text().count("**slower**") == 2
    code, out, _ = run_cli(capsys, "compare", str(spin_runs["a"]), str(spin_runs["b"]), "--json")
    assert code == 1
    for c in json.loads(out)["cells"]:
        assert c["verdict"] == "slower"
        assert c["throughput"]["ci_high"] < 1 < c["p50"]["ci_low"]  # throughput down, latency up
        assert c["p50"]["value"] == pytest.approx(1.10, abs=0.03)
    # and the other way round it is faster, exit 0
    code, out, _ = run_cli(capsys, "compare", str(spin_runs["b"]), str(spin_runs["a"]), "--json")
    assert code == 0 and {c["verdict"] for c in json.loads(out)["cells"]} == {"faster"}


def test_a_b_within_threshold_reads_unchanged(spin_runs, capsys):
    # a planted 10% is significant but under a 15% minimum effect, on single-stream's headline
    # (p50) and on offline's (time per sample, 1 / throughput) alike
    code, out, _ = run_cli(capsys, "compare", str(spin_runs["a"]), str(spin_runs["b"]), "--threshold", "15", "--json")
    assert code == 0
    cells = json.loads(out)["cells"]
    assert len(cells) == 2 and all(c["verdict"] == "unchanged" and "within ±15%" in c["reason"] for c in cells), cells
    assert all(c["p_value"] < 0.05 for c in cells)  # a real difference, below the minimum effect


def test_mismatched_environments_are_not_comparable(spin_runs, capsys, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(spin_runs["b"], other)
    doc = json.loads((other / "run.json").read_text())
    doc["environment"]["cpu_model"] = "Some Other CPU @ 9.9GHz"
    doc["environment"]["packages"]["onnxruntime"] = "0.0.1"
    (other / "run.json").write_text(json.dumps(doc))
    code, out, _ = run_cli(capsys, "compare", str(spin_runs["a"]), str(other), "--json")
    cmp = json.loads(out)
    assert code == 0
    assert {c["verdict"] for c in cmp["cells"]} == {"not comparable"}
    assert "cpu_model" in cmp["cells"][0]["reason"] and "packages.onnxruntime" in cmp["cells"][0]["reason"]
    assert {d["field"] for d in cmp["env_differences"] if d["matters"]} >= {"cpu_model", "packages.onnxruntime"}
    code, out, _ = run_cli(capsys, "compare", str(spin_runs["a"]), str(other), "--allow-env-diff", "--json")
    assert code == 1 and {c["verdict"] for c in json.loads(out)["cells"]} == {"slower"}


@pytest.mark.parametrize("mutate, message", [
    (lambda text: text[: len(text) // 3], "not JSON (truncated or corrupt?)"),
    (lambda text: "not json at all", "not JSON"),
    (lambda text: text.replace(f'"schema_version": {SCHEMA_VERSION}', '"schema_version": 99', 1), "newer than this harness reads"),
    (lambda text: text.replace('"name": "spin"', '"name": "other-suite"', 1), "differs from the base's 'spin'"),
])
def test_bad_result_files_exit_2(spin_runs, capsys, tmp_path, mutate, message):
    bad = tmp_path / "run.json"
    bad.write_text(mutate((spin_runs["b"] / "run.json").read_text()))
    code, _, err = run_cli(capsys, "compare", str(spin_runs["a"]), str(bad))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_a_a_false_positive_rate_stays_under_alpha():
    """Many synthetic A/A pairs from one distribution: slower or faster at most alpha of the time
    (the headline alone, and with p99 deciding too: Bonferroni within the cell keeps it so)."""
    rng = np.random.default_rng(11)
    alpha, pairs = 0.05, 300
    false_no_threshold = false_default = false_with_p99 = 0
    for i in range(pairs):
        a = rng.lognormal(13, 0.3, 400)
        b = rng.lognormal(13, 0.3, 400)
        false_no_threshold += judge(a, b, "p50", 0.0, alpha, seed=i, deciding=())[0] in ("slower", "faster")
        false_default += judge(a, b, "p50", 0.05, alpha, seed=i, deciding=())[0] in ("slower", "faster")
        false_with_p99 += judge(a, b, "p50", 0.0, alpha, seed=i)[0] in ("slower", "faster")
    # the test alone is calibrated (rate ~ alpha, within 3 standard errors); the 5% minimum effect
    # only removes verdicts, so the default can only be lower
    bound = alpha + 3 * np.sqrt(alpha * (1 - alpha) / pairs)
    assert false_no_threshold / pairs <= bound and false_with_p99 / pairs <= bound
    assert false_default <= false_no_threshold and false_default / pairs <= alpha


def test_judge_sees_a_10_percent_slowdown_and_speedup_and_says_when_p99_cannot_tell():
    rng = np.random.default_rng(12)
    a = rng.lognormal(13, 0.2, 2000)
    assert judge(a, rng.lognormal(13, 0.2, 2000) * 1.10, "p50", 0.05, 0.05)[0] == "slower"
    assert judge(a, rng.lognormal(13, 0.2, 2000) * 0.90, "time", 0.05, 0.05)[0] == "faster"
    two = rng.lognormal(13, 0.2, 2000) * 1.02
    assert judge(a, two, "p50", 0.05, 0.05, deciding=())[0] == "unchanged"  # the p50 alone: inside ±5%
    # ... but 2000 samples place a p99 within about ±4% (90%): around x1.02 that is not inside ±5%
    got = judge(a, two, "p50", 0.05, 0.05)
    assert got.verdict == "inconclusive" and [f.answer for f in got.figures] == ["unchanged", "inconclusive"]
    assert got.figures[1].ratio.ci_high > 1.05


def test_targets_ranked_with_pareto_front_and_disagreement(tmp_path):
    from dataclasses import replace

    run = read_run(Path(__file__).parent / "data/run_v2.json")
    ok = [c for c in run.cells if c.status == "ok"]
    fast, slow = sorted(ok, key=lambda c: -c.metrics.throughput.value)
    tail = replace(slow.metrics.latency_ms, p99=replace(slow.metrics.latency_ms.p99, value=0.001))
    wrong = replace(fast, target=replace(fast.target, name="wrong"),
                    agreement=replace(fast.agreement, verdict="fail"),
                    metrics=replace(fast.metrics, throughput=replace(fast.metrics.throughput,
                                                                     value=fast.metrics.throughput.value * 10)))
    slow_low_tail = replace(slow, metrics=replace(slow.metrics, latency_ms=tail))
    ranked = rank_targets(replace(run, cells=(fast, slow_low_tail, wrong)))
    by_name = {r.cell.target.name: r for r in ranked}
    assert [r.cell.target.name for r in sorted(ranked, key=lambda r: r.rank)] == ["wrong", fast.target.name, slow.target.name]
    assert by_name["wrong"].disagrees and not by_name["wrong"].pareto  # a fast wrong answer is not a choice
    assert by_name[fast.target.name].pareto and by_name[slow.target.name].pareto  # a trade-off: both on the front


def test_report_and_run_markdown(spin_runs, capsys, tmp_path, monkeypatch):
    md = tmp_path / "report.md"
    code, out, _ = run_cli(capsys, "report", str(spin_runs["a"]), "--md", str(md))
    assert code == 0 and "targets ranked by throughput" in out
    text = md.read_text()
    # the terminal's row model, rendered as Markdown: the same columns, the same figures
    assert "| benchmark | target | batch | scenario | status | samples/s |" in text
    assert "| s | spin | 1 | single-stream | ok |" in text and "### targets ranked by throughput" in text
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    suite = write_suite(tmp_path, spin_suite(100).replace('"bench_spin:Spin"', '"onnxruntime"').replace(
        "delay_us = 100", ""))
    code, _, _ = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--md", str(tmp_path / "run.md"))
    assert code == 0
    assert (tmp_path / "run.md").read_text().startswith("## bench run")
    # a timed run on a shared machine: its cells may be unstable, which the headline then says
    assert re.search(r"\*\*pass( with caveats)?\*\*", summary.read_text())


def test_sweeps_pick_the_best_setting_within_the_budget():
    from dataclasses import replace

    from bench.analysis.sweeps import sweeps

    run = read_run(Path(__file__).parent / "data/run_v3.json")
    base = next(c for c in run.cells if c.status == "ok" and c.scenario == "single-stream")

    def at(batch, tp, p99, p99_high):
        lat = replace(base.metrics.latency_ms, p99=replace(base.metrics.latency_ms.p99, value=p99, ci_high=p99_high))
        return replace(base, batch_size=batch, slo=None,
                       metrics=replace(base.metrics, latency_ms=lat,
                                       throughput=replace(base.metrics.throughput, value=tp)))

    cells = (at(1, 100.0, 1.0, 1.1), at(8, 500.0, 4.0, 4.5), at(32, 900.0, 9.0, 10.5))
    (sweep,) = sweeps(replace(run, cells=cells), budget_ms=10.0)
    assert sweep.axis == "batch" and [p.setting for p in sweep.points] == [1, 8, 32]
    assert sweep.best.setting == 8  # 32 meets 10 ms by its estimate, but not by its upper bound
    (sweep,) = sweeps(replace(run, cells=cells), budget_ms=0.5)
    assert sweep.best is None


def test_server_cells_compare_by_capacity_and_bad_samples_are_not_comparable(tmp_path, capsys):
    import shutil

    sample = Path(__file__).parent / "data/run_v3.json"
    for name in ("base", "new"):
        (tmp_path / name / "samples").mkdir(parents=True)
        shutil.copy(sample, tmp_path / name / "run.json")
    code, out, _ = run_cli(capsys, "compare", str(tmp_path / "base"), str(tmp_path / "new"), "--json")
    assert code == 0
    cells = {c["key"].split("|")[4]: c for c in json.loads(out)["cells"] if "|ort-cpu|" in c["key"]}
    assert cells["server"]["verdict"] == "not comparable" and "autocorrelated" in cells["server"]["reason"]
    assert cells["single-stream"]["verdict"] == "not comparable" and "missing, empty or corrupt" in cells["single-stream"]["reason"]
    # empty or zero-latency sample files are refused the same way, not a traceback
    doc = json.loads(sample.read_text())
    ok = next(c for c in doc["cells"] if c["scenario"] == "single-stream" and c["status"] == "ok")
    np.save(tmp_path / "base" / ok["samples_file"], np.array([], dtype=np.int64))
    np.save(tmp_path / "new" / ok["samples_file"], np.array([5, 0, 7], dtype=np.int64))
    code, out, _ = run_cli(capsys, "compare", str(tmp_path / "base"), str(tmp_path / "new"), "--json")
    assert code == 0 and all(c["verdict"] == "not comparable" for c in json.loads(out)["cells"])


def test_cells_timed_at_different_boundaries_are_not_comparable(spin_runs, capsys, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(spin_runs["a2"], other)
    doc = json.loads((other / "run.json").read_text())
    for cell in doc["cells"]:
        cell["timing_boundary"] = "device"  # e.g. the target moved from io = "host" to io = "device"
    (other / "run.json").write_text(json.dumps(doc))
    code, out, _ = run_cli(capsys, "compare", str(spin_runs["a"]), str(other), "--json")
    cells = json.loads(out)["cells"]
    assert code == 0 and {c["verdict"] for c in cells} == {"not comparable"}
    assert cells[0]["reason"].startswith("timing boundaries differ: base end_to_end, new device")


# --- the process test: per-process figures planted with this machine's between-process noise


def _noisy_processes(rng, r: int, scale: float, cv_jitter: float = 0.03) -> np.ndarray:
    """Per-process time factors as measured here: a third of processes in a mode 25% slower, plus
    jitter (pyperf's per-process means: 19 vs 26 us)."""
    return scale * (1 + 0.25 * (rng.random(r) < 1 / 3)) * rng.lognormal(0.0, cv_jitter, r)


def _planted_process_run(template: Path, dest: Path, factors_by_cell: list[np.ndarray]) -> Path:
    import shutil

    shutil.copytree(template, dest)
    doc = json.loads((dest / "run.json").read_text())
    doc["run_id"] = dest.name
    for cell, factors in zip(doc["cells"], factors_by_cell):
        base = cell["repetitions"][0]
        reps = []
        for i, f in enumerate(factors):
            rep = dict(base, index=i, used=True, status="ok", reason="")
            rep["throughput"] = base["throughput"] / f
            for k in ("mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms"):
                rep[k] = base[k] * f
            reps.append(rep)
        cell["repetitions"] = reps
    (dest / "run.json").write_text(json.dumps(doc, indent=1))
    return dest


@pytest.fixture(scope="module")
def process_template(spin_runs):
    """The real template run (with its repetitions), as the run wrote it."""
    return next(spin_runs["a"].parent.parent.glob("template/*/run.json")).parent


def test_process_test_a_a_on_bimodal_processes_mostly_reads_unchanged(process_template, tmp_path):
    from bench.analysis.compare import compare_runs
    from bench.scenarios.registry import compare_policy

    rng = np.random.default_rng(7)
    alarms = 0
    pairs = 40
    for i in range(pairs):
        a = _planted_process_run(process_template, tmp_path / f"a{i}", [_noisy_processes(rng, 3, 1.0) for _ in range(2)])
        b = _planted_process_run(process_template, tmp_path / f"b{i}", [_noisy_processes(rng, 3, 1.0) for _ in range(2)])
        cmp = compare_runs(a, b, compare_policy)
        assert all(c.method == "processes" and c.detectable is not None for c in cmp.cells)
        alarms += bool(cmp.slower or [c for c in cmp.cells if c.verdict == "faster"])
    assert alarms <= 4  # alpha 0.05 per comparison (Holm over its cells), with sampling slack


def test_process_test_finds_a_planted_40_percent_slowdown_and_states_what_it_could_detect(process_template, tmp_path):
    from bench.analysis.compare import compare_runs
    from bench.scenarios.registry import compare_policy

    rng = np.random.default_rng(8)
    found = 0
    for i in range(20):
        a = _planted_process_run(process_template, tmp_path / f"a{i}", [_noisy_processes(rng, 5, 1.0) for _ in range(2)])
        b = _planted_process_run(process_template, tmp_path / f"b{i}", [_noisy_processes(rng, 5, 1.4) for _ in range(2)])
        cmp = compare_runs(a, b, compare_policy)
        found += sum(c.verdict == "slower" for c in cmp.cells)
        assert all("over 5 -> 5 processes" in c.reason and "detectable ±" in c.reason for c in cmp.cells)
    assert found >= 0.8 * 40


def test_holm_turns_a_lone_marginal_figure_inconclusive():
    from bench.analysis.compare import CellComparison, FigureVerdict, Ratio, cell_verdict, holm_corrected

    def cell(key: str, p50: tuple[str, float], p99: tuple[str, float]) -> CellComparison:
        figures = tuple(FigureVerdict(name, name, answer, Ratio(1.2, 1.1, 1.3), p_value=p, test="Welch")
                        for name, (answer, p) in (("p50", p50), ("p99", p99)))
        return CellComparison(key, cell_verdict(figures), "", method="processes", figures=figures)

    cells = [cell(f"c{i}", ("unchanged", 0.5), ("inconclusive", 0.6)) for i in range(23)]
    # 0.002 < 0.05 / 24 (Holm over cells alone) but > 0.05 / 48 (over every figure of every cell)
    cells.append(cell("c23", ("slower", 0.002), ("unchanged", 0.7)))
    out = holm_corrected(cells, 0.05)
    assert out[-1].verdict == "inconclusive" and [f.answer for f in out[-1].figures] == ["inconclusive", "unchanged"]
    assert "Holm's correction over 48 tests in 24 cells" in out[-1].reason
    strong = cells[:-1] + [cell("c23", ("slower", 0.0005), ("unchanged", 0.7))]
    assert holm_corrected(strong, 0.05)[-1].verdict == "slower"  # 0.0005 < 0.05 / 48
    # a p99 that got slower decides the cell even when its p50 did not move
    tail = cells[:-1] + [cell("c23", ("unchanged", 0.9), ("slower", 0.0005))]
    assert holm_corrected(tail, 0.05)[-1].verdict == "slower"


def test_new_against_old_run_says_which_method_each_side_allows(spin_runs, process_template, capsys):
    code, out, _ = run_cli(capsys, "compare", str(spin_runs["a"]), str(process_template), "--json")
    doc = json.loads(out)
    assert code in (0, 1)
    for c in doc["cells"]:
        assert c["method"] == "samples"
        assert c["reason"].startswith("base: one process per cell (a run before repetitions")
        assert "within-process sample test, blind to between-process noise" in c["reason"]


def test_targets_rank_by_per_round_paired_ratios_which_cancel_drift():
    from dataclasses import replace

    from bench.analysis.ranking import paired_ratio
    from bench.report.run_tables import targets_table

    run = read_run(Path(__file__).parent / "data/run_v6.json")
    a = next(c for c in run.cells if c.id == "mlp/ort-cpu/b4/single-stream")
    b = next(c for c in run.cells if c.id == "mlp/torch-cpu/b4/single-stream")
    # the machine drifts 40% over five rounds; a is 10% faster than b in every round
    drift = [1.0, 1.4, 0.9, 1.2, 0.8]
    a = replace(a, repetitions=tuple(replace(a.repetitions[0], index=i, used=True, throughput=1100.0 * d)
                                     for i, d in enumerate(drift)))
    b = replace(b, repetitions=tuple(replace(b.repetitions[0], index=i, used=True, throughput=1000.0 * d * k)
                                     for i, (d, k) in enumerate(zip(drift, [1.0, 0.99, 1.01, 1.0, 1.0]))))
    paired = paired_ratio(a, b)
    assert paired.rounds == 5 and paired.ratio == pytest.approx(1.1, rel=0.01)
    assert paired.resolved and paired.high < 1.13  # the drift cancels: a tight interval above 1
    # unpaired, the two cells' spreads overlap almost entirely
    ta, tb = [r.throughput for r in a.repetitions], [r.throughput for r in b.repetitions]
    assert min(ta) < max(tb)
    # a round that only one of them measured is left out of the pairing
    b_gap = replace(b, repetitions=tuple(replace(r, used=r.index != 2) for r in b.repetitions))
    assert paired_ratio(a, b_gap).rounds == 4
    table = targets_table(replace(run, cells=(a, b)))
    assert "paired by round" in table.title
    assert any("over 5 rounds" in str(cell) for row in table.rows for cell in row)


def test_a_shift_of_every_cell_at_once_is_called_out_as_the_machine(capsys):
    from bench.analysis.compare import CellComparison, Ratio, common_shift

    def cell(r, method="processes"):
        return CellComparison("k", "unchanged", "", throughput=Ratio(r, r, r), method=method)

    together = tuple(cell(0.86 + 0.01 * i) for i in range(8))  # all eight 5-14% slower
    note = common_shift(together, 0.05)
    assert note.startswith("8 of 8 cells moved slower together (median throughput x0.895)")
    mixed = tuple(cell(r) for r in (0.8, 0.85, 1.2, 1.15, 1.0, 0.99, 0.9, 1.1))
    assert common_shift(mixed, 0.05) == ""
    few = tuple(cell(0.8) for _ in range(5))  # too few cells to tell the machine from the code
    assert common_shift(few, 0.05) == ""
    samples_only = tuple(cell(0.8, "samples") for _ in range(8))  # one-process runs: not judged
    assert common_shift(samples_only, 0.05) == ""
