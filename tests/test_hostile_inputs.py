"""Hostile inputs that raised (issue 26): suites nested thousands of levels deep, names whose cell
ids collide, result files claiming impossible figures, an ASCII-only or C-locale terminal, stdout
on a full device, a model path that is a FIFO or a device. Each is one line on stderr with its
exit code (2 bad input, 3 output that could not be written), never a traceback. Real processes
where the process boundary matters (the interpreter's stack, its stdout and locale), real FIFOs
and /dev/full."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from bench.results.files import read_run
from tests.helpers import FAST_STOP, TINY_MLP, load_run_json, run_cli, tiny_suite, write_suite

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "tests/data/run_v14.json"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHONIO", "PYTHONUTF8", "PYTHONCOERCE"))}
    env.pop("LANG", None)
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _bench(*argv: str, stdout=subprocess.PIPE, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], stdout=stdout, stderr=subprocess.PIPE,
                          env=env or _env(), cwd=cwd, timeout=240)


def _one_line(code: int, stderr: str | bytes, expected: int = 2) -> str:
    stderr = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert code == expected, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench: "), stderr
    return lines[0]


# --- a suite nested thousands of levels deep ----------------------------------------------------


@pytest.mark.parametrize("value, where", [
    ("[" * 5000 + "]" * 5000, "line {n}: arrays or tables nested too deep for the TOML parser"),
    ("{ a = " * 5000 + "1" + " }" * 5000, "line {n}: arrays or tables nested too deep for the TOML parser"),
    # deep enough to refuse, shallow enough for the parser: the walk over it must not recurse either
    ("[" * 40 + "]" * 40, "benchmark[0].model_args.deep[0][0]"),
], ids=["arrays", "tables", "40 levels"])
def test_a_deeply_nested_suite_is_one_line_exit_2(tmp_path, value, where):
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]").replace(
        "model_args = {", f"model_args = {{ deep = {value}, ", 1))
    n = next(i for i, line in enumerate(suite.read_text().splitlines(), 1) if "deep" in line)
    got = _bench("run", str(suite), "--out", str(tmp_path / "r"))
    line = _one_line(got.returncode, got.stderr)
    assert where.format(n=n) in line and "at most 32" in line, line
    assert not (tmp_path / "r").exists()


def test_a_deep_table_header_is_refused_before_any_knob_is_read(tmp_path, capsys):
    # [targets.ort.a.a.a...]: tomllib builds it without recursing; a user backend would pass
    # such knobs on to its workers as they are
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]") +
                        "\n[targets.ort." + ".".join(["a"] * 3000) + "]\nx = 1\n")
    line = _one_line(*run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))[::2])
    assert "targets.ort.a.a.a" in line and "nested more than 32 levels deep" in line


def test_a_suite_nested_a_few_levels_still_loads(tmp_path):
    from bench.config.suite import load_suite

    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]", bench_extra=(
        'inputs = { x = { shape = ["batch", 16] } }')))
    assert load_suite(suite).benchmarks[0].inputs[0][0] == "x"


# --- names whose cell ids collide -------------------------------------------------------------


def _two_benchmarks(first: tuple[str, str], second: tuple[str, str], targets: tuple[str, ...]) -> str:
    target_tables = "\n".join(f'[targets."{t}"]\nbackend = "onnxruntime"\nintra_op_threads = 1\n' for t in targets)
    benches = "\n".join(f"""
[[benchmark]]
name = "{name}"
model = "zoo:mlp"
model_args = {TINY_MLP}
batch_sizes = [1]
scenarios = ["single-stream"]
targets = ["{target}"]
stop = {FAST_STOP}
""" for name, target in (first, second))
    return f'[suite]\nname = "s"\n{target_tables}\n{benches}'


def test_two_cells_whose_ids_collide_are_refused_naming_both(tmp_path, capsys):
    # benchmark "a/b" on target "c" and benchmark "a" on target "b/c": both a/b/c/b1/single-stream,
    # which the run wrote twice into run.json and `history add` recorded
    suite = write_suite(tmp_path, _two_benchmarks(("a/b", "c"), ("a", "b/c"), ("c", "b/c")))
    line = _one_line(*run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))[::2])
    assert ("benchmark[1] (a): on target 'b/c' its cell id 'a/b/c/b1/single-stream' is that of benchmark[0] (a/b) "
            "on target 'c'") in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("first, second, targets, where, sep", [
    (("a/b", "c"), ("x", "c"), ("c",), "benchmark[0].name: 'a/b' holds '/'", "e.g. 'a-b'"),
    (("a", "b/c"), ("x", "b/c"), ("b/c",), "targets.b/c: 'b/c' holds '/'", "e.g. 'b-c'"),
    (("a|b", "c"), ("x", "c"), ("c",), "benchmark[0].name: 'a|b' holds '|'", "compare and the history"),
])
def test_a_name_holding_a_separator_of_the_cell_id_is_refused(tmp_path, capsys, first, second, targets, where, sep):
    suite = write_suite(tmp_path, _two_benchmarks(first, second, targets))
    line = _one_line(*run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))[::2])
    assert where in line and sep in line, line


def test_names_differing_in_case_or_punctuation_keep_their_own_ids(tmp_path):
    # Nothing sanitises a name: ids compare exactly (dicts, SQL TEXT) and no file is named after one.
    from bench.config.suite import load_suite
    from bench.runner.plan import plan

    suite = write_suite(tmp_path, _two_benchmarks(("ResNet", "t.1"), ("resnet", "t-1"), ("t.1", "t-1")))
    ids = [c.id for c in plan(load_suite(suite))]
    assert ids == ["ResNet/t.1/b1/single-stream", "resnet/t-1/b1/single-stream"]


@pytest.mark.parametrize("model", ["zoo:mlp", "my|model v2.onnx", "my_pkg.models:build_net", "hf:gpt2"])
def test_bench_run_model_still_builds_a_suite_whose_names_are_allowed(tmp_path, capsys, model):
    code, out, err = run_cli(capsys, "run", model, "--print-suite")
    assert code == 0, err
    (tmp_path / "built.toml").write_text(out)
    from bench.config.suite import load_suite

    suite = load_suite(tmp_path / "built.toml")
    assert not any(sep in suite.benchmarks[0].name for sep in "/|")


def test_a_run_file_with_two_cells_of_one_id_is_refused_naming_both(tmp_path, capsys):
    doc = json.loads(SAMPLE.read_text())
    doc["cells"][2]["id"] = doc["cells"][0]["id"]
    (tmp_path / "run.json").write_text(json.dumps(doc))
    line = _one_line(*run_cli(capsys, "history", "add", str(tmp_path), "--db", str(tmp_path / "h.sqlite"))[::2])
    assert "run.cells[2].id: 'mlp/ort-cpu/b4/single-stream' is also the id of cells[0]" in line, line
    assert not (tmp_path / "h.sqlite").exists()  # read before the store is opened: nothing recorded


# --- result files claiming figures outside their domain -----------------------------------------


def _first_ok(doc: dict) -> dict:
    return next(c for c in doc["cells"] if c["status"] == "ok")


@pytest.mark.parametrize("change, field", [
    (lambda c: c["repetitions"][0].update(n=-5), "run.cells[0].repetitions[0].n: -5 is not allowed; expected an integer >= 0"),
    (lambda c: c["repetitions"][1].update(index=-1), "repetitions[1].index: -1 is not allowed"),
    (lambda c: c.update(duration_s=-1.0), "run.cells[0].duration_s: -1.0 is not allowed; expected a number >= 0"),
    (lambda c: c.update(batch_size=-4), "run.cells[0].batch_size: -4 is not allowed; expected an integer >= 1"),
    (lambda c: c.update(batch_size=0), "run.cells[0].batch_size: 0 is not allowed; expected an integer >= 1"),
    (lambda c: c["metrics"]["latency_ms"]["p50"].update(value=0.0),
     "run.cells[0].metrics.latency_ms.p50.value: 0.0 is not allowed; expected a number > 0"),
    (lambda c: c["metrics"]["latency_ms"].update(n=-1), "metrics.latency_ms.n: -1 is not allowed"),
    # one repetition's zero p50 raised "a process-level ratio needs at least 2 processes"
    (lambda c: c["repetitions"][0].update(p50_ms=0.0), "run.cells[0].repetitions[0].p50_ms: 0.0 is not allowed; expected a number > 0"),
    (lambda c: c["repetitions"][0].update(p99_ms=-2.0), "repetitions[0].p99_ms: -2.0 is not allowed"),
    (lambda c: c["metrics"]["latency_ms"]["histogram"]["counts"].__setitem__(3, -7),
     "metrics.latency_ms.histogram.counts[3]: -7 is not allowed"),
    (lambda c: c["warmup"].update(iterations=-3), "warmup.iterations: -3 is not allowed"),
    (lambda c: c["memory"].update(peak_rss_bytes=-1), "memory.peak_rss_bytes: -1 is not allowed"),
])
def test_a_result_file_claiming_an_impossible_figure_is_one_line_naming_file_and_field(tmp_path, capsys, change, field):
    doc = json.loads(SAMPLE.read_text())
    change(_first_ok(doc))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text(json.dumps(doc))
    line = _one_line(*run_cli(capsys, "compare", str(SAMPLE), str(bad))[::2])
    assert line.startswith(f"bench: {bad / 'run.json'}: malformed result file: ") and field in line, line
    assert line.endswith("(cell mlp/ort-cpu/b4/single-stream)"), line
    # and the same line for the other readers
    assert _one_line(*run_cli(capsys, "report", str(bad))[::2]) == line


def test_the_committed_schema_states_the_minimums_and_the_samples_meet_them():
    schema = json.loads((ROOT / "bench/results/run.schema.json").read_text())
    doc = json.loads(SAMPLE.read_text())
    jsonschema.validate(doc, schema)
    _first_ok(doc)["repetitions"][0]["n"] = -5
    with pytest.raises(jsonschema.ValidationError, match="less than the minimum of 0"):
        jsonschema.validate(doc, schema)
    for path in sorted((ROOT / "tests/data").glob("run_v*.json")):
        if not path.name.endswith(".schema.json"):
            assert read_run(path).cells, path  # every committed file, of every version, still loads


# --- an ASCII-only or C-locale terminal ---------------------------------------------------------


ASCII_ENVS = {
    "PYTHONIOENCODING=ascii": {"PYTHONIOENCODING": "ascii"},
    "LC_ALL=C": {"LC_ALL": "C"},
    "LANG=C": {"LANG": "C"},
    # a C locale where Python neither coerces it nor turns on UTF-8 mode: stdout is ASCII
    "LC_ALL=C, PYTHONUTF8=0, PYTHONCOERCECLOCALE=0": {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},
}


@pytest.mark.parametrize("name", ASCII_ENVS)
@pytest.mark.parametrize("command", ["report", "compare"])
def test_report_and_compare_degrade_to_ascii_on_a_terminal_that_cannot_take_more(name, command):
    argv = [command, str(SAMPLE)] + ([str(SAMPLE)] if command == "compare" else [])
    got = _bench(*argv, env=_env(**ASCII_ENVS[name]))
    assert got.returncode == 0 and got.stderr == b"", got.stderr.decode()
    assert b"mlp/ort-cpu" in got.stdout or b"mlp|" in got.stdout
    # What this Python makes of the environment: in a C locale it coerces the locale or turns on
    # its UTF-8 mode (PEP 538, 540) unless told not to; otherwise stdout is ASCII.
    encoding = subprocess.run([sys.executable, "-c", "import codecs, sys; print(codecs.lookup(sys.stdout.encoding).name)"],
                              env=_env(**ASCII_ENVS[name]), capture_output=True, text=True).stdout.strip()
    if encoding == "utf-8":
        assert "±" in got.stdout.decode("utf-8")
        return
    assert encoding == "ascii"
    text = got.stdout.decode("ascii")  # every byte ASCII
    assert "+/-" in text and " - " in text  # '±' and '·', as ASCII
    if command == "compare":  # one table, laid out after the substitution: its rows keep one width
        rows = [line for line in text.splitlines() if line.startswith(("|", "+"))]
        assert len(rows) > 3 and len({len(r) for r in rows}) == 1, rows


def test_error_lines_degrade_to_ascii_too(tmp_path):
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]").replace('name = "m"', 'name = "m±"'))
    suite.write_text(suite.read_text() + '\n[targets."x/é"]\nbackend = "onnxruntime"\n')
    got = _bench("run", str(suite), "--out", str(tmp_path / "r"), env=_env(PYTHONIOENCODING="ascii"))
    line = _one_line(got.returncode, got.stderr)
    assert "targets.x/\\xe9: 'x/\\xe9' holds '/'" in line, line


# --- stdout on a full device --------------------------------------------------------------------


needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
FULL_LINE = "bench: stdout: cannot write the output: No space left on device"


@needs_dev_full
@pytest.mark.parametrize("argv", [
    ["env"], ["report", str(SAMPLE)], ["compare", str(SAMPLE), str(SAMPLE)], ["compare", str(SAMPLE), str(SAMPLE), "--json"],
], ids=["env", "report", "compare", "compare --json"])
def test_stdout_on_a_full_device_is_one_line_exit_3(argv):
    with open("/dev/full", "w") as full:
        got = _bench(*argv, stdout=full)
    assert _one_line(got.returncode, got.stderr, expected=3).startswith(FULL_LINE)


@needs_dev_full
def test_run_json_on_a_full_device_keeps_the_run_whole(tmp_path):
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]"))
    with open("/dev/full", "w") as full:
        got = _bench("run", str(suite), "--json", "--quiet", "--out", str(tmp_path / "r"), "--md", str(tmp_path / "s.md"),
                     stdout=full)
    stderr = got.stderr.decode()
    assert got.returncode == 3 and "Traceback" not in stderr, stderr
    assert [line for line in stderr.splitlines() if line.startswith("bench: ")] == [
        FULL_LINE + "; the rest of it is dropped (the command's files are written as usual)"], stderr
    doc = load_run_json(tmp_path / "r")
    assert doc["status"] == "complete" and [c["status"] for c in doc["cells"]] == ["ok"]
    run_dir = next((tmp_path / "r").iterdir())
    assert f"results: {run_dir / 'run.json'}" in stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.json", "samples"]  # no temporary file, no reserve
    assert read_run(run_dir).cells[0].status == "ok"
    assert "m" in (tmp_path / "s.md").read_text()  # the steps after the output still ran


def test_a_reader_that_leaves_early_is_not_an_error():
    # `bench report RUN | head`: the pipe's reader is gone before bench writes; it had what it wanted
    r, w = os.pipe()
    os.close(r)
    try:
        got = _bench("report", str(SAMPLE), stdout=w)
    finally:
        os.close(w)
    assert got.returncode == 0 and got.stderr == b"", got.stderr.decode()


# --- a model or suite path that is a FIFO or a device -----------------------------------------


def test_a_model_path_that_is_a_fifo_a_device_or_a_directory_says_what_it_is(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.onnx")
    (tmp_path / "zero.onnx").symlink_to("/dev/zero")
    (tmp_path / "dir.onnx").mkdir()
    for name, what in (("fifo.onnx", "a FIFO (named pipe)"), ("zero.onnx", "a character device"),
                       ("dir.onnx", "a directory")):
        path = tmp_path / name
        line = _one_line(*run_cli(capsys, "run", str(path), "--out", str(tmp_path / "r"))[::2])
        assert line == (f"bench: model {str(path)!r}: {what}, not a regular file; a model is read from a regular "
                        "file (.onnx or .pt2)"), line
        # from a suite, the same words (relative paths resolve against the suite's directory)
        suite = write_suite(tmp_path, tiny_suite(model=name, targets='["ort"]', batch_sizes="[1]"))
        line = _one_line(*run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))[::2])
        assert f"model {name!r}: {path}: {what}, not a regular file" in line, line
    line = _one_line(*run_cli(capsys, "run", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "r"))[::2])
    assert "no such file" in line
    assert not (tmp_path / "r").exists()


def test_a_suite_or_result_path_that_is_a_fifo_says_so_alike(tmp_path, capsys):
    os.mkfifo(tmp_path / "suite.toml")
    line = _one_line(*run_cli(capsys, "run", str(tmp_path / "suite.toml"), "--out", str(tmp_path / "r"))[::2])
    assert line == f"bench: {tmp_path / 'suite.toml'}: a FIFO (named pipe), not a regular file; a suite is a TOML file, read whole"
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run/run.json")
    line = _one_line(*run_cli(capsys, "report", str(tmp_path / "run"))[::2])
    assert line == f"bench: {tmp_path / 'run/run.json'}: a FIFO (named pipe), not a regular file; a result file must be one"
