"""README promises that had no test of their own, one cheap test each.

Runs use tiny one- or two-cell suites (a second or two each); everything else works on planted
result files (tests/data/run_v4.json and its samples written here) and planted history stores, so
no assertion depends on how fast this machine is.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.results.stores import open_store
from tests.helpers import FAST_STOP, load_run_json, run_cli, tiny_suite, write_suite
from tests.test_history import nightly

DATA = Path(__file__).parent / "data"
ONE_CELL = tiny_suite(targets='["ort"]', batch_sizes="[1]")


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- bench run ----------------------------------------------------------------------------------


def test_run_without_a_suite_runs_benchmarks_toml_of_the_working_directory(tmp_path, capsys, monkeypatch):
    text = textwrap.dedent(ONE_CELL)
    (tmp_path / "benchmarks.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "run")
    assert code == 0, err
    doc = load_run_json(tmp_path / "results")  # ./results of the working directory
    assert doc["suite"] == {"name": "tiny", "path": "benchmarks.toml", "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert [c["id"] for c in doc["cells"]] == ["m/ort/b1/single-stream"]
    assert f"results: {Path('results') / doc['run_id']}" in err


def test_run_json_prints_the_run_json_it_writes(tmp_path, capsys):
    suite = write_suite(tmp_path, ONE_CELL)
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--json")
    assert code == 0, err
    printed = json.loads(out)  # stdout is run.json alone: no table around it
    (run_dir,) = (tmp_path / "r").iterdir()
    written = json.loads((run_dir / "run.json").read_text())
    assert printed["run_id"] == written["run_id"] == run_dir.name
    assert printed == written and printed["status"] == "complete"


def test_quick_on_the_command_line_shortens_the_stop_rule(tmp_path, capsys):
    # Without --quick this cell measures for at least 30 s after at least 3 s of warm-up.
    long_stop = ("{ min_seconds = 30, max_seconds = 60, min_iterations = 5, warmup_iterations = 40, "
                 "warmup_seconds = 3, ci_figures = [] }")
    body = ONE_CELL.replace(FAST_STOP, long_stop)
    assert long_stop in body
    suite = write_suite(tmp_path, body)
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--quick")
    assert code == 0, err
    (cell,) = load_run_json(tmp_path / "r")["cells"]
    assert cell["status"] == "ok"
    # --quick: min_seconds 30 -> 0.2 (a tenth, capped at 0.2 s), warm-up 40 calls / 3 s -> 2 calls / 0.05 s
    # and two repetitions (worker processes), each stopped by the shortened rule
    assert cell["stop_reason"].startswith("2 of 2 repetitions in the figures")
    assert "per process: min_seconds (0.2 s) and min_iterations (5) met" in cell["stop_reason"]
    assert [r["status"] for r in cell["repetitions"]] == ["ok", "ok"]
    assert cell["warmup"]["rule"].startswith("fixed minimum of 2 iterations and 0.05 s, then MSER-5")
    assert cell["duration_s"] < 30  # the 30 s minimum did not apply (a contract bound, not a timing)


def test_run_record_without_db_records_to_results_history_sqlite(tmp_path, capsys, monkeypatch):
    write_suite(tmp_path, ONE_CELL, "benchmarks.toml")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "run", "--record")
    assert code == 0, err
    assert "history: recorded in results/history.sqlite" in err
    assert (tmp_path / "results" / "history.sqlite").is_file()
    run_id = load_run_json(tmp_path / "results")["run_id"]
    code, out, err = run_cli(capsys, "history", "--json")  # the same default store, read back
    assert code == 4, err  # one run: too few for the gate to test (no data)
    (series,) = json.loads(out)
    assert series["run_ids"] == [run_id] and series["metric"] == "throughput"
    assert "|ort|b1|single-stream" in series["cell_key"] and series["values"][0] > 0


# --- reference = "NAME" -------------------------------------------------------------------------


def test_reference_names_the_target_others_are_compared_to(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite(batch_sizes="[1]", bench_extra='reference = "torch"'))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, err
    agreement = {c["target"]["name"]: c["agreement"] for c in load_run_json(tmp_path / "r")["cells"]}
    assert agreement["torch"]["verdict"] == "reference" and agreement["torch"]["reference"] == "torch"
    assert agreement["ort"]["verdict"] == "pass" and agreement["ort"]["reference"] == "torch"
    assert agreement["ort"]["max_rel_error"] is not None  # really compared, not merely labelled


@pytest.mark.parametrize("reference", ["other", "nope"])
def test_a_reference_outside_the_benchmarks_targets_is_a_config_error(tmp_path, capsys, reference):
    # "other" is a target of the suite, but not of this benchmark; "nope" is no target at all.
    extra = '[targets.other]\nbackend = "onnxruntime"\nintra_op_threads = 1\n'
    body = tiny_suite(batch_sizes="[1]", extra_targets=extra, bench_extra=f'reference = "{reference}"')
    suite = write_suite(tmp_path, body)
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 2
    line = one_line(err)
    assert str(suite) in line and "reference" in line and f"'{reference}' is not allowed" in line
    assert "ort" in line and "torch" in line  # the allowed values: the benchmark's own targets
    assert not (tmp_path / "r").exists()


# --- planted runs for compare and report --------------------------------------------------------


def plant_run(run_dir: Path, run_id: str, samples: np.ndarray | None = None, env: dict | None = None,
              cells: list[dict] | None = None) -> Path:
    """A run directory from tests/data/run_v4.json: its run_id, environment changes, cells, and
    `samples` as the raw latencies of every single-stream cell that has a samples file."""
    doc = json.loads((DATA / "run_v4.json").read_text())
    doc["run_id"] = run_id
    doc["environment"].update(env or {})
    if cells is not None:
        doc["cells"] = cells
    (run_dir / "samples").mkdir(parents=True)
    for c in doc["cells"]:
        if samples is not None and c.get("samples_file") and c["scenario"] == "single-stream":
            np.save(run_dir / c["samples_file"], samples, allow_pickle=False)
    (run_dir / "run.json").write_text(json.dumps(doc))
    return run_dir


def planted_latencies(shift: float, n: int = 40) -> np.ndarray:
    """n latencies (ns) at the normal quantiles of a lognormal (sigma 0.25) around 1 ms, times shift."""
    from bench import stats

    z = np.array([stats.normal_quantile((i + 0.5) / n) for i in range(n)])
    return np.round(1e6 * shift * np.exp(0.25 * z)).astype(np.int64)


@pytest.fixture
def slower_pair(tmp_path):
    """BASE and NEW where NEW's p50 is 15% higher on 40 samples each: Mann-Whitney p = 0.018, the
    p50 ratio's interval [1.01, 1.32] excludes 1, so the verdict turns on alpha."""
    base = plant_run(tmp_path / "base", "planted-base", planted_latencies(1.0))
    new = plant_run(tmp_path / "new", "planted-new", planted_latencies(1.15))
    return base, new


def judged(cells: list[dict]) -> list[dict]:
    """The cells compared by their samples (the others are not comparable: failed, skipped, server)."""
    return [c for c in cells if c["p_value"] is not None]


def test_compare_alpha_decides_a_verdict(slower_pair, capsys):
    base, new = slower_pair
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--alpha", "0.05", "--json")
    assert code == 1, err
    cmp = json.loads(out)
    cells = judged(cmp["cells"])
    assert len(cells) == 3 and cmp["alpha"] == 0.05  # ort-cpu, torch-cpu, ort-fp16
    for c in cells:
        assert 0.01 < c["p_value"] < 0.05 and c["p50"]["ci_low"] > 1 and c["p50"]["value"] > 1.05
        assert c["verdict"] == "slower"
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--alpha", "0.01", "--json")
    assert code == 0, err
    cells = judged(json.loads(out)["cells"])
    assert len(cells) == 3
    for c in cells:
        # x1.15 on 40 samples, not significant at 0.01 and not inside ±5%: it cannot tell (issue 27:
        # "no difference found" is not "unchanged")
        assert c["verdict"] == "inconclusive" and "p50 latency x1.1" in c["reason"] and "inconclusive" in c["reason"]


@pytest.mark.parametrize("alpha", ["0", "1.5", "1", "-0.1"])
def test_compare_bad_alpha_exits_2_naming_it(slower_pair, capsys, alpha):
    base, new = slower_pair
    code, out, err = run_cli(capsys, "compare", str(base), str(new), f"--alpha={alpha}")
    assert code == 2 and out == ""
    assert one_line(err) == f"bench: --alpha {float(alpha):g}: expected a number between 0 and 1"


def test_compare_appends_its_summary_to_github_step_summary(slower_pair, capsys, tmp_path, monkeypatch):
    base, new = slower_pair
    summary = tmp_path / "step-summary.md"
    summary.write_text("## an earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, _, _ = run_cli(capsys, "compare", str(base), str(new))
    assert code == 1
    text = summary.read_text()
    assert text.startswith("## an earlier step\n## bench compare `planted-base` → `planted-new`\n")
    assert text.count("**slower**") == 3
    md = tmp_path / "cmp.md"
    code, _, _ = run_cli(capsys, "compare", str(base), str(new), "--md", str(md))  # --md as well: both get it
    assert code == 1 and md.read_text().startswith("## bench compare `planted-base`")
    assert summary.read_text() == text + md.read_text()


GPU = {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-00000000-1111-2222-3333-444444444444", "driver": "550.54.15",
       "memory_total_bytes": 85_520_809_984, "power_limit_w": 700.0, "cuda": "12.4"}


@pytest.mark.parametrize("change, field, base_value, new_value", [
    ({"gpus": [{**GPU, "name": "NVIDIA A100-SXM4-80GB"}]}, "gpus", "['NVIDIA H100 80GB HBM3']",
     "['NVIDIA A100-SXM4-80GB']"),
    ({"gpus": [{**GPU, "driver": "555.42.02"}]}, "gpu_driver", "['550.54.15']", "['555.42.02']"),
    ({"gpus": [GPU], "python": "CPython 3.12.3"}, "python", "CPython 3.11.7", "CPython 3.12.3"),
])
def test_environments_differing_in_gpu_driver_or_python_are_not_comparable(tmp_path, capsys, change, field,
                                                                          base_value, new_value):
    base = plant_run(tmp_path / "base", "planted-base", env={"gpus": [GPU]})
    new = plant_run(tmp_path / "new", "planted-new", env=change)
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--json")
    assert code == 0, err
    cmp = json.loads(out)
    assert [(d["field"], d["base"], d["new"]) for d in cmp["env_differences"] if d["matters"]] == [
        (field, base_value, new_value)]
    ok = [c for c in cmp["cells"] if c["reason"].startswith("environments differ")]
    assert len(ok) == 4  # every cell that ran in both: 3 single-stream, 1 server
    assert {c["verdict"] for c in ok} == {"not comparable"}
    assert {c["reason"] for c in ok} == {f"environments differ in {field} (--allow-env-diff to compare anyway)"}


def test_every_environment_difference_is_listed(tmp_path, capsys):
    base = plant_run(tmp_path / "base", "planted-base", env={"gpus": [GPU]})
    new = plant_run(tmp_path / "new", "planted-new", env={
        "gpus": [{**GPU, "name": "NVIDIA A100-SXM4-80GB", "driver": "555.42.02"}], "python": "CPython 3.12.3"})
    code, out, _ = run_cli(capsys, "compare", str(base), str(new), "--json")
    reasons = {c["reason"] for c in json.loads(out)["cells"] if c["reason"].startswith("environments differ")}
    assert code == 0 and reasons == {
        "environments differ in gpus, gpu_driver, python (--allow-env-diff to compare anyway)"}
    code, out, _ = run_cli(capsys, "compare", str(base), str(new))  # the table lists each difference too
    for line in ("environment: gpus: ['NVIDIA H100 80GB HBM3'] -> ['NVIDIA A100-SXM4-80GB'] (matters)",
                 "environment: gpu_driver: ['550.54.15'] -> ['555.42.02'] (matters)",
                 "environment: python: CPython 3.11.7 -> CPython 3.12.3 (matters)"):
        assert line in out


def sweep_cells(target: str, points: list[tuple[int, float, float, float]], slo_p99_ms: float) -> list[dict]:
    """Single-stream cells of one target at several batch sizes: (batch, samples/s, p99, p99 upper bound)."""
    doc = json.loads((DATA / "run_v4.json").read_text())
    template = next(c for c in doc["cells"] if c["status"] == "ok" and c["scenario"] == "single-stream")
    cells = []
    for batch, throughput, p99, p99_high in points:
        c = copy.deepcopy(template)
        c["id"] = f"mlp/{target}/b{batch}/single-stream"
        c["target"]["name"], c["batch_size"] = target, batch
        c["metrics"]["throughput"].update(value=throughput, ci_low=throughput * 0.99, ci_high=throughput * 1.01)
        c["metrics"]["latency_ms"]["p99"].update(value=p99, ci_low=p99 * 0.9, ci_high=p99_high)
        c["slo"] = {"passed": p99 <= slo_p99_ms, "checks": [
            {"metric": "p99_ms", "limit_ms": slo_p99_ms, "value_ms": p99, "passed": p99 <= slo_p99_ms}]}
        c["samples_file"] = None
        cells.append(c)
    return cells


def best_settings(out: str) -> dict[str, tuple[str, str]]:
    """target -> (budget, best) from the sweeps table's rows: ("5 ms", "batch 8"); "-" for no best."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"^│ mlp\s*│ (\S+)\s*│ single-stream\s*│ batch\s*│[^│]*│ (\S+ ms)\s*│ (batch \d+|-)\s*│$", line)
        if m:
            found[m.group(1)] = m.group(2), m.group(3)
    return found


def test_report_budget_picks_the_best_setting_in_each_run(tmp_path, capsys):
    # p99 upper bounds: ort-cpu 1.1, 4.5, 10.5 ms at batch 1, 8, 32; torch-cpu 2.2, 4.9, 33 ms at 2, 16, 64.
    a = plant_run(tmp_path / "a", "planted-a", cells=sweep_cells(
        "ort-cpu", [(1, 100.0, 1.0, 1.1), (8, 500.0, 4.0, 4.5), (32, 900.0, 9.0, 10.5)], slo_p99_ms=5.0))
    b = plant_run(tmp_path / "b", "planted-b", cells=sweep_cells(
        "torch-cpu", [(2, 50.0, 2.0, 2.2), (16, 400.0, 4.5, 4.9), (64, 1000.0, 30.0, 33.0)], slo_p99_ms=5.0))
    expected = {None: ("5", "batch 8", "batch 16"),  # no --budget-ms: the SLO's p99, 5 ms
                "12": ("12", "batch 32", "batch 16"),
                "10": ("10", "batch 8", "batch 16"),  # batch 32's p99 (9 ms) fits, its upper bound (10.5) does not
                "40": ("40", "batch 32", "batch 64"),
                "1.5": ("1.5", "batch 1", "-")}
    for budget, (shown, best_a, best_b) in expected.items():
        code, out, err = run_cli(capsys, "report", str(a), str(b), *(("--budget-ms", budget) if budget else ()))
        assert code == 0, err
        assert best_settings(out) == {"ort-cpu": (f"{shown} ms", best_a), "torch-cpu": (f"{shown} ms", best_b)}, out


@pytest.mark.parametrize("budget", ["0", "-1"])
def test_report_bad_budget_exits_2(tmp_path, capsys, budget):
    a = plant_run(tmp_path / "a", "planted-a")
    code, out, err = run_cli(capsys, "report", str(a), f"--budget-ms={budget}")
    assert code == 2 and out == ""
    assert one_line(err) == f"bench: --budget-ms {float(budget):g}: expected a number of ms > 0"


# --- bench history --metric --threshold --only --json --------------------------------------------


@pytest.fixture
def p99_history(tmp_path) -> tuple[str, list[float]]:
    """A store of 20 nightly runs of two cells (ort-cpu, torch-cpu), and ort-cpu's p99 values:
    throughput flat and p99 flat within 0.5%, except ort-cpu's p99, 8% higher in the latest run."""
    rng = np.random.default_rng(5)
    db = str(tmp_path / "h.sqlite")
    ort_p99: list[float] = []
    store = open_store(db)
    try:
        for i in range(20):
            run = nightly(i, 1000.0 * (1 + 0.005 * rng.standard_normal()))
            cells = []
            for c in run.cells:
                if c.metrics is not None:
                    step = 1.08 if i == 19 and c.target.name == "ort-cpu" else 1.0
                    value = 0.2 * step * (1 + 0.005 * rng.standard_normal())
                    lat = c.metrics.latency_ms
                    p99 = replace(lat.p99, value=value, ci_low=value * 0.99, ci_high=value * 1.01)
                    c = replace(c, metrics=replace(c.metrics, latency_ms=replace(lat, p99=p99)))
                    if c.target.name == "ort-cpu":
                        ort_p99.append(value)
                cells.append(c)
            assert store.add_run(replace(run, cells=tuple(cells)))
    finally:
        store.close()
    return db, ort_p99


def history(capsys, db: str, *args: str) -> tuple[int, dict[str, dict], str]:
    code, out, err = run_cli(capsys, "history", "--db", db, "--json", *args)
    series = json.loads(out)
    by_target = {s["cell_key"].split("|")[2]: s for s in series}
    assert len(by_target) == len(series)
    return code, by_target, err


def test_history_metric_threshold_only_and_json(p99_history, capsys):
    db, ort_p99 = p99_history
    # --metric picks the column: throughput is flat, so no gate; p99 stepped up 8% at the latest run
    code, series, _ = history(capsys, db)
    assert code == 0 and set(series) == {"ort-cpu", "torch-cpu"}
    assert all(s["metric"] == "throughput" and min(s["values"]) > 900 for s in series.values())
    assert not any(c["regression"] for s in series.values() for c in s["changes"])
    code, series, err = history(capsys, db, "--metric", "p99")
    assert code == 1 and "the latest run starts a regression in 1 series" in err
    ort = series["ort-cpu"]
    assert ort["metric"] == "p99" and max(ort["values"]) < 1  # milliseconds now, not samples/s
    assert ort["values"] == pytest.approx(ort_p99, rel=1e-12)
    step = ort_p99[19] / np.mean(ort_p99[:19]) - 1  # after / before - 1
    assert 0.05 <= step < 0.10
    (change,) = ort["changes"]
    assert change["index"] == 19 and change["regression"] and change["step"] == pytest.approx(step, rel=1e-9)
    assert series["torch-cpu"]["changes"] == []
    # --threshold: a step of 5-10% is a regression at 5% (the default) but not at 10%
    code, series, _ = history(capsys, db, "--metric", "p99", "--threshold", "10")
    assert code == 0
    (change,) = series["ort-cpu"]["changes"]
    assert change["index"] == 19 and not change["regression"]
    # --only filters series by their key
    code, series, _ = history(capsys, db, "--metric", "p99", "--only", "*|torch-cpu|*")
    assert code == 0 and set(series) == {"torch-cpu"}
    code, series, _ = history(capsys, db, "--metric", "p99", "--only", "*|ort-cpu|*")
    assert code == 1 and set(series) == {"ort-cpu"}


@pytest.mark.parametrize("threshold", ["150", "100", "-5"])
def test_history_bad_threshold_exits_2(p99_history, capsys, threshold):
    code, out, err = run_cli(capsys, "history", "--db", p99_history[0], f"--threshold={threshold}")
    assert code == 2 and out == ""
    assert one_line(err) == f"bench: --threshold {float(threshold):g}: expected a percentage in [0, 100)"


# --- server scenario validity -------------------------------------------------------------------


def server_run(n: int = 1000, gap_us: float = 1000.0, issue_us: float = 10.0, service_us: float = 100.0,
               last_extra_us: float = 0.0):
    """A hand-made FIFO server run: request k scheduled at (k + 1) * gap, started issue_us late (or
    when the server frees up), served in service_us; the last one finishing last_extra_us later."""
    from bench.scenarios.open_loop import ServerRun

    scheduled = np.arange(1, n + 1, dtype=np.int64) * int(gap_us * 1000)
    start = np.empty(n, dtype=np.int64)
    end = np.empty(n, dtype=np.int64)
    free = 0
    for k in range(n):
        start[k] = max(scheduled[k] + int(issue_us * 1000), free)
        end[k] = free = start[k] + int(service_us * 1000)
    end[-1] += int(last_extra_us * 1000)
    return ServerRun(scheduled, start, end)


def server_validity(run, slo: dict[str, float] | None = None):
    from bench.config.records import StopSpec
    from bench.analysis.figures import cell_metrics
    from bench.scenarios.server import server_figures

    metrics, _ = cell_metrics(run.latencies_ns, int(run.end_ns[-1]), 1, StopSpec().confidence, seed=0)
    _, info = server_figures(run, 1, 1000.0, 0.95, slo or {}, metrics.latency_ms)
    return info


def test_a_clean_server_run_is_valid():
    info = server_validity(server_run(), {"p99_ms": 1.0})
    assert info.valid and info.validity == ()
    assert info.requests == 1000 and info.offered_qps == 1000.0 and info.issue_error_p99_us == 10.0


def test_too_few_requests_for_a_p99_bound_is_invalid():
    assert server_validity(server_run(n=662)).valid  # 662 is enough
    info = server_validity(server_run(n=661))
    assert not info.valid
    assert info.validity == ("only 661 requests: a p99 bound at 99% confidence needs 662",)


def test_a_late_generator_is_invalid():
    assert server_validity(server_run(issue_us=50.0)).valid  # a median issue error of 50 µs is the limit
    info = server_validity(server_run(issue_us=60.0))
    assert not info.valid
    assert info.validity == (("the generator cannot keep its schedule (issue error median 60 µs > 50 µs): "
                              "the rate offered was lower than asked"),)


def test_a_broken_slo_is_invalid():
    info = server_validity(server_run(), {"p99_ms": 0.1})  # every latency is 0.11 ms
    assert not info.valid
    assert info.validity == ("p99 0.11 ms is over the SLO of 0.1 ms",)


def test_achieved_more_than_one_percent_below_offered_is_invalid():
    # offered: 1000 requests over 1 s; achieved: 1000 over the span to the last completion
    assert server_validity(server_run(last_extra_us=9_000.0)).valid  # 1000 / 1.00911 s: 0.90% below
    info = server_validity(server_run(last_extra_us=12_000.0))  # 1000 / 1.01211 s: 1.2% below
    assert not info.valid
    assert info.validity == (("achieved 988.0/s is more than 1% below the offered 1,000.0/s: "
                              "the target cannot keep up with this rate"),)
    overloaded = server_validity(server_run(service_us=2000.0))  # 2 ms a request at 1000/s: half the rate
    assert not overloaded.valid and len(overloaded.validity) == 1
    assert re.fullmatch(r"achieved 49\d\.\d/s is more than 1% below the offered 1,000\.0/s: .*", overloaded.validity[0])
