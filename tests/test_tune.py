"""bench tune on real parts: a tiny MLP on real ONNX Runtime sessions in real worker processes,
the space read from a real suite file, the journal resumed, the pick written as a suite that
bench run takes. The race's statistics are tested on planted streams in tests/test_race.py."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from bench.config.suite import load_suite, parse_suite
from bench.errors import ConfigError
from bench.tune.space import parse_space_arg, read_tune
from tests.helpers import TINY_MLP, run_cli, write_suite

# Short windows: the search's decisions, not the figures' precision, are what these tests check.
TUNE_STOP = "{ min_seconds = 0.02, max_seconds = 0.1, min_iterations = 5, warmup_iterations = 2, warmup_seconds = 0.0, ci_figures = [] }"

SUITE = f"""
[suite]
name = "tiny"

[targets.ort]
backend = "onnxruntime"
providers = ["CPUExecutionProvider"]
intra_op_threads = 1
graph_optimization_level = "all"

[targets.torch]
backend = "torch"
threads = 1

[[benchmark]]
name = "m"
model = "zoo:mlp"
model_args = {TINY_MLP}
batch_sizes = [1]
scenarios = ["single-stream"]
targets = ["ort", "torch"]
stop = {TUNE_STOP}

[tune]
objective = "throughput"
max_rounds = 3
confirm_rounds = 2
{{extra}}

[tune.space]
{{space}}
"""

ORT_SPACE = 'target = ["ort"]\nbatch_size = [1, 16]\ngraph_optimization_level = ["basic", "all"]'


def _suite(tmp_path: Path, space: str = ORT_SPACE, extra: str = "") -> Path:
    return write_suite(tmp_path, SUITE.replace("{space}", space).replace("{extra}", extra))


def _spec(tmp_path: Path, space: str, extra: str = "", **kw):
    path = _suite(tmp_path, space, extra)
    return read_tune(load_suite(path), path.read_text(), str(path), **kw)


# -- the space ------------------------------------------------------------------------------------

def test_knobs_apply_to_the_backends_that_take_them_and_nothing_is_enumerated_by_hand(tmp_path):
    spec = _spec(tmp_path, 'target = ["ort", "torch"]\nbatch_size = [1, 4]\nthreads = [1, 2]\n'
                           'intra_op_threads = [1, 2]\ngraph_optimization_level = ["basic", "all"]')
    # ort: 2 intra x 2 levels x 2 batches; torch: 2 threads x 2 batches
    assert spec.grid_size == 12
    ids = {c.id for c in spec.candidates}
    assert "ort~graph_optimization_level=basic/b4" in ids and "torch~threads=2/b1" in ids
    assert not any("threads=" in c.id and c.base == "ort" and "intra" not in c.id for c in spec.candidates)
    assert spec.default.id == "ort/b1"  # the benchmark's first target at its first batch size, as declared


def test_ranges_expand_inclusively(tmp_path):
    spec = _spec(tmp_path, 'target = ["ort"]\nintra_op_threads = { from = 1, to = 3, step = 1 }\n'
                           'batch_size = { from = 1, to = 16, times = 4 }')
    assert sorted({c.batch_size for c in spec.candidates}) == [1, 4, 16]
    assert sorted({dict(c.settings)["intra_op_threads"] for c in spec.candidates}) == [1, 2, 3]


def test_combinations_a_target_refuses_are_left_out_with_the_reason(tmp_path):
    spec = _spec(tmp_path, 'target = ["torch"]\nmode = ["eager", "compile"]\nprecision = ["fp32", "int8-static"]',
                 extra='default = { target = "torch", batch_size = 1 }')
    assert any("int8-static" in name and "compile" in why for name, why in spec.excluded)
    assert not any(c.target.precision == "int8-static" and c.target.options.mode == "eager" for c in spec.candidates)


@pytest.mark.parametrize("space, fragment", [
    ("", "empty"),
    ('warp_factor = [1, 2]', "no target in the space takes 'warp_factor'"),
    ('target = ["ort"]\nthreads = [1, 2]', "no target in the space takes 'threads'"),
    ('intra_op_threads = { from = 1, to = 4, step = 0 }', "a step must be > 0"),
    ('intra_op_threads = []', "[] is not allowed"),
    ('target = ["nope"]', "'nope' is not allowed (allowed: ort, torch)"),
    ('batch_size = [0]', "batch sizes are integers >= 1"),
    ('backend = ["onnxruntime", "torch"]', "not a knob"),
    ('intra_op_threads = { from = 1, to = inf, step = 1 }', "expected a finite number"),
    ('intra_op_threads = { from = 1, to = 4, step = nan }', "a step must be > 0"),
])
def test_bad_spaces_are_one_line_naming_the_key(tmp_path, capsys, space, fragment):
    path = _suite(tmp_path, space)
    code, out, err = run_cli(capsys, "tune", str(path), "--out", str(tmp_path / "t"))
    assert code == 2, err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "tune.space" in err or "target" in err


def test_an_objective_the_scenario_does_not_produce_is_refused(tmp_path, capsys):
    path = write_suite(tmp_path, SUITE.replace('scenarios = ["single-stream"]', 'scenarios = ["loadgen-offline"]')
                       .replace("{space}", ORT_SPACE).replace("{extra}", ""))
    code, _, err = run_cli(capsys, "tune", str(path), "--objective", "p99", "--out", str(tmp_path / "t"))
    assert code == 2 and "does not produce it" in err and "throughput" in err
    code, _, err = run_cli(capsys, "tune", str(path), "--objective", "speed", "--out", str(tmp_path / "t"))
    assert code == 2 and "'speed' is not allowed" in err


def test_settings_of_the_wrong_type_are_one_line(tmp_path, capsys):
    path = _suite(tmp_path).read_text().replace('objective = "throughput"', 'objective = ["throughput"]')
    path = write_suite(tmp_path, path, "wrong.toml")
    code, _, err = run_cli(capsys, "tune", str(path), "--out", str(tmp_path / "t"))
    assert code == 2 and "tune.objective" in err and "expected a string" in err


def test_a_budget_too_small_for_one_round_is_refused_before_anything_runs(tmp_path, capsys):
    path = _suite(tmp_path)
    code, _, err = run_cli(capsys, "tune", str(path), "--budget-s", "0.01", "--out", str(tmp_path / "t"))
    assert code == 2 and "too small for one round" in err
    assert not list((tmp_path / "t").glob("*/run.json"))


def test_inline_space_and_slo_flags(tmp_path, capsys):
    assert parse_space_arg("batch_size = [1, 4], threads = { from = 1, to = 2, step = 1 }") == {
        "batch_size": [1, 4], "threads": {"from": 1, "to": 2, "step": 1}}
    with pytest.raises(ConfigError):
        parse_space_arg("batch_size = [1,")
    code, _, err = run_cli(capsys, "tune", str(_suite(tmp_path)), "--slo", "p99_ms", "--out", str(tmp_path / "t"))
    assert code == 2 and "KEY=MS" in err


# -- a real search ----------------------------------------------------------------------------------

def _events(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "tune.jsonl").read_text().splitlines()[1:]]


def test_a_search_picks_states_its_guarantee_confirms_and_writes_a_suite_bench_run_takes(tmp_path, capsys):
    path = _suite(tmp_path)
    out = tmp_path / "t"
    tuned = tmp_path / "tuned.toml"
    code, stdout, err = run_cli(capsys, "tune", str(path), "--out", str(out), "--write-suite", str(tuned),
                                "--seed", "3", "--quiet", "--html", str(tmp_path / "tune.html"))
    assert code == 0, err
    page = (tmp_path / "tune.html").read_text()
    assert '<section id="tune"' in page and "<svg" in page
    answer = json.loads((out / "tune.json").read_text())
    assert answer["pick"] and answer["mode"] == "race"
    ids = {c["id"] for c in answer["candidates"]}
    assert ids == {"ort~graph_optimization_level=basic/b1", "ort/b1", "ort~graph_optimization_level=basic/b16",
                   "ort/b16"}
    pick = next(c for c in answer["candidates"] if c["id"] == answer["pick"])
    assert pick["status"] == "pick" and pick["objective"]["low"] <= pick["objective"]["value"] <= pick["objective"]["high"]
    assert "With probability at least 95%" in answer["guarantee"]
    conf = answer["confirmation"]
    assert conf["default"] == "ort/b1"
    assert conf["verdict"] in ("same", "better", "worse", "unchanged", "inconclusive")
    cost = answer["cost"]
    assert cost["space"] == 4 and cost["processes"] == sum(1 for e in _events(out) if "obs" in e)
    # The grid at the pick's precision: its rounds in the race, before the confirmation's fresh ones.
    frozen = next(e for e in _events(out) if "pick" in e)
    assert frozen["pick"] == answer["pick"]
    race_rounds = [e["obs"]["round"] for e in _events(out) if "obs" in e and e["obs"]["candidate"] == answer["pick"]
                   and e["obs"]["round"] < frozen["confirm_from"]]
    assert cost["grid_processes"] == 4 * len(race_rounds)
    if conf["verdict"] != "same":
        assert conf["ratio"]["rounds"] >= 2 and "fresh rounds after the race" in conf["text"]
    assert f"pick: {answer['pick']}" in stdout and "guarantee:" in stdout and "cost:" in stdout
    # Each session's run.json holds the cells the race ran, as any run does.
    runs = list(out.glob("*/run.json"))
    assert len(runs) == 1
    assert {c["target"]["name"] for c in json.loads(runs[0].read_text())["cells"]} <= {c["target"] for c in answer["candidates"]}
    # The pick as a suite: bench run takes it unchanged.
    doc = tomllib.loads(tuned.read_text())
    assert doc["benchmark"][0]["batch_sizes"] == [pick["settings"]["batch_size"]]
    assert "tune" not in doc
    code, _, err = run_cli(capsys, "run", str(tuned), "--out", str(tmp_path / "r"), "--quick", "--quiet")
    assert code == 0, err


def test_an_interrupted_search_continues_where_it_stopped(tmp_path, capsys):
    """The journal keeps every process's figures: a search cut short after its second round (its
    last lines lost, as a kill mid-round loses them) runs only what is missing, and ends as the
    whole one would have."""
    path = _suite(tmp_path, extra="min_rounds = 2")
    out = tmp_path / "t"
    code, _, err = run_cli(capsys, "tune", str(path), "--out", str(out), "--quiet", "--json")
    assert code == 0, err
    lines = (out / "tune.jsonl").read_text().splitlines()
    header, events = lines[0], [json.loads(x) for x in lines[1:]]
    # Cut the journal inside round 1: its last two observations and everything after them.
    obs_r1 = [i for i, e in enumerate(events) if "obs" in e and e["obs"]["round"] == 1]
    keep = events[:obs_r1[-2]]
    # ...and a last line torn in half, as a kill mid-write leaves it.
    (out / "tune.jsonl").write_text("\n".join([header] + [json.dumps(e) for e in keep]) + '\n{"obs": {"cand')
    (out / "tune.json").unlink()
    code, stdout, err = run_cli(capsys, "tune", str(path), "--out", str(out), "--quiet", "--json")
    assert code == 0, err
    after = _events(out)
    new = after[len(keep):]
    resumed_r1 = [e["obs"]["candidate"] for e in new if "obs" in e and e["obs"]["round"] == 1]
    assert sorted(resumed_r1) == sorted(events[i]["obs"]["candidate"] for i in obs_r1[-2:])
    assert not any("enter" in e for e in new)  # the candidates were not entered again
    answer = json.loads(stdout)
    assert answer["pick"] and len(answer["runs"]) == 2  # two sessions, one run.json each


def test_the_same_directory_with_other_settings_is_refused(tmp_path, capsys):
    path = _suite(tmp_path)
    out = tmp_path / "t"
    (out).mkdir()
    (out / "tune.jsonl").write_text(json.dumps({"tune": {"benchmark": "other"}}) + "\n")
    code, _, err = run_cli(capsys, "tune", str(path), "--out", str(out), "--quiet")
    assert code == 2 and "other settings" in err


def test_an_slo_no_candidate_meets_says_so_names_the_closest_and_exits_1(tmp_path, capsys):
    path = _suite(tmp_path, 'target = ["ort"]\nbatch_size = [1, 4096]')
    out = tmp_path / "t"
    code, stdout, err = run_cli(capsys, "tune", str(path), "--out", str(out), "--slo", "p99_ms=0.000001", "--quiet")
    assert code == 1, err
    answer = json.loads((out / "tune.json").read_text())
    assert answer["outcome"] == "slo unmet" and answer["pick"] is None
    assert answer["closest"] == "ort/b1"  # the smaller batch has the lower p99
    assert "no configuration was shown to meet the SLO" in stdout and "closest" in err
    assert {c["status"] for c in answer["candidates"]} == {"slo"}


def test_the_candidate_suite_plans_one_cell_per_candidate(tmp_path):
    from bench.runner.plan import plan
    from bench.tune.search import candidate_suite

    path = _suite(tmp_path, 'target = ["ort", "torch"]\nbatch_size = [1, 4]\nthreads = [1, 2]')
    suite = load_suite(path)
    spec = read_tune(suite, path.read_text(), str(path))
    cells = plan(candidate_suite(suite, spec), None)
    keys = {(c.key.target, c.key.batch_size) for c in cells}
    assert {(c.target_name, c.batch_size) for c in spec.candidates} <= keys
    parse_suite(path.read_text(), str(path))  # [tune] does not disturb bench run


# -- spaces too large to race whole: TPE proposals ----------------------------------------------------

BIG_SPACE = 'target = ["ort"]\nbatch_size = [1, 4, 16, 64]\ngraph_optimization_level = ["disable", "basic", "extended", "all"]'


def test_proposals_are_deterministic_for_a_seed_and_never_repeat_a_tried_one(tmp_path):
    from bench.tune.propose import Proposer

    spec = _spec(tmp_path, BIG_SPACE, extra="max_enumerate = 4\nwidth = 3")
    assert spec.grid_size == 16  # the default (ort at level all, batch 1) is one of them

    def session(seed_spec):
        p = Proposer(seed_spec)
        first = p.propose(3, exclude=set())
        for i, cid in enumerate(first):
            p.entered(cid)
            p.tell(cid, 100.0 * (i + 1))
        return first, p.propose(2, exclude=set(first))

    a, b = session(spec), session(spec)
    assert a == b and len(a[0]) == 3 and len(a[1]) == 2
    assert not set(a[1]) & set(a[0])
    other = _spec(tmp_path, BIG_SPACE, extra="max_enumerate = 4\nwidth = 3\nseed = 9")
    assert session(other) != a  # another seed, another search


def test_a_space_past_max_enumerate_is_searched_by_proposals_and_says_what_it_covers(tmp_path, capsys):
    path = _suite(tmp_path, BIG_SPACE, extra="max_enumerate = 4\nwidth = 3")
    out = tmp_path / "t"
    code, stdout, err = run_cli(capsys, "tune", str(path), "--out", str(out), "--quiet", "--json")
    assert code == 0, err
    answer = json.loads(stdout)
    assert answer["mode"] == "proposed"
    entered = [e["enter"] for e in _events(out) if "enter" in e]
    assert entered[0] == "ort/b1" and len(entered) == len(set(entered)) >= 3
    assert answer["cost"]["tried"] == len(entered) <= answer["cost"]["space"] == 16
    assert "proposed by TPE" in answer["guarantee"] and "no guarantee covers them" in answer["guarantee"]
    untried = [c for c in answer["candidates"] if c["status"] == "untried"]
    assert len(untried) == 16 - len(entered)


# -- workload knobs: the server scenario's dynamic batching -------------------------------------------

def test_dynamic_batching_knobs_race_as_workload_settings_and_reach_the_written_suite(tmp_path, capsys):
    """server.max_batch and server.max_wait_ms are the server scenario's table, read by the scenario
    itself: each setting is a benchmark of its own in the search's run, and the pick's setting is
    written into the suite's [[benchmark]] server table."""
    body = (SUITE.replace('scenarios = ["single-stream"]', 'scenarios = ["server"]\nserver = { qps = 200, duration_s = 0.3 }')
            .replace("{space}", 'target = ["ort"]\nbatch_size = [1]\nserver.max_batch = [1, 8]\nserver.max_wait_ms = [0, 2]')
            .replace("{extra}", ""))
    path = write_suite(tmp_path, body)
    spec = read_tune(load_suite(path), path.read_text(), str(path))
    assert spec.grid_size == 4
    assert {c.id for c in spec.candidates} >= {"ort/b1/server.max_batch=8,server.max_wait_ms=2"}
    out, tuned = tmp_path / "t", tmp_path / "tuned.toml"
    code, stdout, err = run_cli(capsys, "tune", str(path), "--out", str(out), "--quiet", "--write-suite", str(tuned),
                                "--objective", "p99")
    assert code == 0, err
    answer = json.loads((out / "tune.json").read_text())
    assert answer["objective"] == "p99" and not answer["higher_is_better"]
    cells = json.loads(next(out.glob("*/run.json")).read_text())["cells"]
    assert {c["benchmark"] for c in cells} >= {"m", "m~server.max_batch=8,server.max_wait_ms=2"}
    pick = next(c for c in answer["candidates"] if c["id"] == answer["pick"])
    server = tomllib.loads(tuned.read_text())["benchmark"][0]["server"]
    assert server["max_batch"] == pick["settings"]["server.max_batch"]
    assert server["max_wait_ms"] == pick["settings"]["server.max_wait_ms"] and server["qps"] == 200


@pytest.mark.parametrize("space, fragment", [
    ('server.max_batch = [1, 8]', "reads no 'server' table"),
])
def test_a_workload_knob_of_another_scenario_is_refused(tmp_path, capsys, space, fragment):
    code, _, err = run_cli(capsys, "tune", str(_suite(tmp_path, space)), "--out", str(tmp_path / "t"))
    assert code == 2 and fragment in err


def test_ctrl_c_keeps_every_measured_process_and_the_same_command_finishes_the_search(tmp_path):
    """A real interrupt: `bench tune` in its own process gets SIGINT once the journal holds a few
    processes' figures; it exits 130 keeping them; the same command again runs only what is left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = _suite(tmp_path)
    out = tmp_path / "t"
    cmd = [sys.executable, "-m", "bench.cli", "tune", str(path), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    # SIGINT at its default in the child, as a terminal's shell leaves it: a CI job run in the
    # background starts everything with SIGINT ignored, and the CLI keeps ignoring it then.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "tune.jsonl").exists() and sum('"obs"' in x for x in (out / "tune.jsonl").read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to continue" in err
    kept = [json.loads(x) for x in (out / "tune.jsonl").read_text().splitlines()[1:] if '"obs"' in x]
    assert len(kept) >= 3
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    after = [json.loads(x) for x in (out / "tune.jsonl").read_text().splitlines()[1:] if '"obs"' in x]
    assert after[: len(kept)] == kept  # nothing measured was lost or measured again in its place
    assert answer["pick"] and answer["cost"]["processes"] == len(after)


def test_html_without_its_plotting_extra_is_one_line_before_the_search(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    out = tmp_path / "t"
    code, _, err = run_cli(capsys, "tune", str(_suite(tmp_path)), "--out", str(out), "--html", str(tmp_path / "t.html"))
    assert code == 2 and "pip install 'bench-harness[report]'" in err and "Traceback" not in err
    assert not (out / "tune.jsonl").exists()
