"""Faults and hostile files (issue: a full disk, signals, orphaned workers, post-run failures, a
mistyped store, an unusable cache, result files built to crash the reader). Real processes,
real filesystems (a tmpfs where root may mount one), real signals."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from bench.results.files import read_run
from tests.helpers import SPIN_PLUGIN, load_run_json, run_cli, stderr_until, tiny_suite, write_suite

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "tests/data/run_v14.json"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal's shell would leave it


def _start(argv: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=kw.pop("env", ENV), start_new_session=True,
                            preexec_fn=_default_sigint, **kw)


def _one_line_error(code: int, stderr: str, expected_code: int = 2) -> str:
    assert code == expected_code, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench: "), stderr
    return lines[0]


def _copy_run(tmp_path: Path, doc: dict | str, name: str = "r") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "run.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return d


# --- 1. a full disk --------------------------------------------------------------------------


def _mount_tmpfs(mnt: Path, size_bytes: int) -> None:
    mnt.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if got.returncode != 0:
        pytest.skip(f"a full-disk test needs a small tmpfs, which needs root: {got.stderr.strip()}")


def test_a_full_disk_ends_the_run_with_one_line_exit_3_and_a_valid_run_json(tmp_path, capsys, monkeypatch):
    from bench.results.files import RESERVE_MIN_BYTES

    # A target of known service time (1 ms a call, sleeping): about 100 samples a repetition, so
    # that run.json is what fills the disk. Three benchmarks of 4 cells settle in rounds 1, 2 and 3
    # (repeats 1, 2, 3); the disk is sized from a first run of one benchmark so that round 1's
    # run.json fits and round 2's does not.
    (tmp_path / "bench_sleep_faults.py").write_text(SPIN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    stop = ("min_seconds = 0.05, max_seconds = 0.1, min_iterations = 5, warmup_iterations = 1, "
            "warmup_seconds = 0.0, ci_figures = []")
    benches = "".join(f"""
        [[benchmark]]
        name = "b{r}"
        model = "zoo:mlp"
        model_args = {{ in_features = 4, width = 4, depth = 1, classes = 2 }}
        batch_sizes = [1, 2]
        scenarios = ["single-stream", "offline"]
        targets = ["sleep"]
        stop = {{ {stop}, repeats = {r} }}
    """ for r in (1, 2, 3))
    suite = write_suite(tmp_path, """
        [targets.sleep]
        backend = "bench_sleep_faults:Sleep"
        delay_us = 1000
    """ + benches)
    code, _, stderr = run_cli(capsys, "run", str(suite), "--only", "b1", "--out", str(tmp_path / "probe"))
    assert code == 0, stderr
    (probe,) = (tmp_path / "probe").glob("*/run.json")
    one_round = probe.stat().st_size + sum(f.stat().st_size for f in probe.parent.glob("samples/*"))
    reserve = max(RESERVE_MIN_BYTES, probe.stat().st_size * 5 // 4)
    mnt = tmp_path / "full"
    _mount_tmpfs(mnt, reserve + int(2.5 * one_round))
    try:
        code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(mnt / "r"))
        assert code == 3, stderr
        assert "Traceback" not in stderr
        assert "No space left on device" in stderr
        (run_json,) = (mnt / "r").glob("*/run.json")
        run = read_run(run_json)  # valid, and says why it ended
        assert run.status == "failed" and "No space left on device" in run.end_reason
        assert 4 <= len(run.cells) < 12, "the disk filled after some rounds and before all"
        for cell in run.cells:  # every kept cell's samples are whole
            assert (run_json.parent / cell.samples_file).is_file()
        leftovers = [p.name for p in run_json.parent.rglob("*") if p.name.startswith(".") or "tmp" in p.name]
        assert leftovers == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_failed_samples_write_leaves_no_temporary_file(tmp_path):
    from bench.errors import ResultWriteError
    from bench.results.files import RunDir

    run_dir = RunDir(tmp_path, "x")
    shutil.rmtree(run_dir.path / "samples")
    (run_dir.path / "samples").write_text("not a directory")  # every write below fails
    with pytest.raises(ResultWriteError, match="cannot write the samples"):
        run_dir.write_samples(0, np.arange(10))
    assert sorted(p.name for p in run_dir.path.iterdir()) == [".space-reserve", "samples"]
    run_dir.release_reserve()
    assert sorted(p.name for p in run_dir.path.iterdir()) == ["samples"]


# --- 2, 3. signals and orphans ---------------------------------------------------------------


def _run_until_second_round(tmp_path: Path) -> tuple[subprocess.Popen, list[str], list[psutil.Process]]:
    suite = write_suite(tmp_path, tiny_suite(batch_sizes="[1, 2, 3]").replace("min_seconds = 0.05", "min_seconds = 0.3"))
    proc = _start(["run", str(suite), "--out", str(tmp_path / "r")])
    lines = stderr_until(proc, "repetition 2 ...")
    return proc, lines, psutil.Process(proc.pid).children(recursive=True)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_end_a_run_as_ctrl_c_does(tmp_path, sig, code):
    proc, lines, children = _run_until_second_round(tmp_path)
    assert children, "a worker host runs"
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=60)
    stderr = "".join(lines) + rest
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert "interrupted:" in stderr and f"ended by {sig.name} (exit {code})" in stderr
    doc = load_run_json(tmp_path / "r")
    assert doc["status"] == "interrupted" and doc["cells"]
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "no worker or host outlives the run"


def test_a_sigkilled_run_takes_its_workers_and_hosts_with_it(tmp_path):
    suite = write_suite(tmp_path, tiny_suite(batch_sizes="[1]").replace(
        "min_seconds = 0.05, max_seconds = 1", "min_seconds = 60, max_seconds = 60"))
    proc = _start(["run", str(suite), "--out", str(tmp_path / "r")])
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline:  # wait for a worker forked by a host: measuring for a minute
        tree = psutil.Process(proc.pid).children(recursive=True)
        workers = [p for p in tree if p.ppid() != proc.pid]
        if workers:
            break
        time.sleep(0.2)
    assert workers, "a worker started"
    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.communicate(timeout=30)
    _, alive = psutil.wait_procs(tree, timeout=15)
    assert not alive, f"left running after the parent's SIGKILL: {[p.pid for p in alive]}"


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.3, 1.0])
def test_ctrl_c_to_the_process_group_is_reported_by_the_parent_alone(tmp_path, delay_s):
    # A terminal sends SIGINT to every process of the foreground group, workers and hosts
    # included, whenever it comes: here while the first worker host and worker start.
    suite = write_suite(tmp_path, tiny_suite(batch_sizes="[1, 2]"))
    proc = _start(["run", str(suite), "--out", str(tmp_path / "r")])
    lines = stderr_until(proc, "repetition 1 ...")
    time.sleep(delay_s)
    tree = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    stderr = "".join(lines) + rest
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr
    assert "KeyboardInterrupt" not in stderr
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive


def test_a_stale_scratch_directory_of_a_killed_run_is_removed_and_a_live_ones_kept(tmp_path, capsys):
    # A killed run's directory: its lock file, locked by nobody. A live run's: locked by a
    # process that holds it (as a run in another container sharing /tmp would).
    stale = Path(tempfile.mkdtemp(prefix="bench-outputs-"))
    (stale / ".lock").write_text("")
    (stale / "ref.npz").write_bytes(b"x")
    live = Path(tempfile.mkdtemp(prefix="bench-outputs-"))
    (live / ".lock").write_text("")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)"), str(live / ".lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]"))
        code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
        assert code == 0, stderr
        assert not stale.exists()
        assert live.exists() and (live / ".lock").exists()
    finally:
        holder.kill()
        holder.wait()
        shutil.rmtree(live, ignore_errors=True)


# --- 4. failures after the run ---------------------------------------------------------------


PLUGIN = '''
from bench.backends.ort import OrtBackend


class SecretLeakingBackend(OrtBackend):
    def load(self, model, target):
        raise RuntimeError("login failed for postgresql://svc:hunter2@db/x with api_key=sk-123 token=abc")
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "bench_fault_plugins.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))


def _failing_suite(tmp_path: Path) -> Path:
    extra = '\n[targets.leaky]\nbackend = "bench_fault_plugins:SecretLeakingBackend"\n'
    return write_suite(tmp_path, tiny_suite(targets='["ort", "leaky"]', extra_targets=extra, batch_sizes="[1]"))


def test_a_failure_after_the_run_hides_neither_the_failed_cell_nor_the_record(tmp_path, capsys, plugin):
    db = tmp_path / "h.sqlite"
    code, _, stderr = run_cli(capsys, "run", str(_failing_suite(tmp_path)), "--out", str(tmp_path / "r"),
                              "--md", "/nonexistent/x.md", "--record", "--db", str(db))
    assert code == 3, stderr  # the failed cell, not the Markdown path (2)
    assert "cannot write the Markdown summary" in stderr and "cell(s) failed" in stderr
    assert "history: recorded in" in stderr
    code, out, _ = run_cli(capsys, "history", "--db", str(db), "--json")
    assert code == 4 and json.loads(out)  # recorded; one run is too few for the gate to test: no data (4)


def test_a_user_backends_error_text_is_redacted_like_argv(tmp_path, capsys, plugin):
    code, _, stderr = run_cli(capsys, "run", str(_failing_suite(tmp_path)), "--out", str(tmp_path / "r"))
    assert code == 3
    text = json.dumps(load_run_json(tmp_path / "r")) + stderr
    assert "hunter2" not in text and "sk-123" not in text and "token=abc" not in text
    assert "svc:***@db" in text and "api_key=***" in text


# --- 5. a mistyped store -----------------------------------------------------------------------


def test_a_reader_never_creates_a_store_that_does_not_exist(tmp_path, capsys):
    db = tmp_path / "typo" / "h.sqlite"
    line = _one_line_error(*run_cli(capsys, "history", "--db", str(db))[::2])
    assert "does not exist" in line and "readers never create one" in line
    assert not db.parent.exists()


def test_a_libpq_key_value_string_is_a_postgres_store_never_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conninfo = "host=127.0.0.1 port=1 dbname=x user=u password=Sekr3t connect_timeout=2"
    code, _, stderr = run_cli(capsys, "history", "--db", conninfo)
    line = _one_line_error(code, stderr)
    assert "cannot connect to PostgreSQL" in line and "Sekr3t" not in stderr
    assert list(tmp_path.iterdir()) == []


# --- 6. the model cache ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["a file", "read-only"])
def test_an_unusable_cache_directory_is_one_line_exit_2(tmp_path, capsys, monkeypatch, where):
    if where == "a file":
        cache = tmp_path / "cache"
        cache.write_text("")
    else:
        cache = Path("/proc/self/bench-cache")  # a filesystem nobody may create in
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]"))
    line = _one_line_error(*run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))[::2])
    assert "BENCH_CACHE_DIR" in line and "model cache" in line
    assert not (tmp_path / "r").exists()


def test_a_truncated_cache_entry_is_rebuilt_and_said(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]"))
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r1"))
    assert code == 0, stderr
    (entry,) = (tmp_path / "cache/models").glob("*.onnx")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # a disk that filled mid-export
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r2"))
    assert code == 0, stderr
    assert f"{entry.name} failed its content check" in stderr and "rebuilt" in stderr
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r3"))
    assert code == 0 and "content check" not in stderr  # whole again, and trusted


# --- 7, 8. result files and suites built to crash the reader -----------------------------------


def _sample() -> dict:
    return json.loads(SAMPLE.read_text())


def _huge_int(doc: dict) -> dict:
    doc["cells"][0]["duration_s"] = int("9" * 400)
    return doc


def _nan(doc: dict) -> str:
    ok = next(c for c in doc["cells"] if c["status"] == "ok")
    ok["metrics"]["throughput"]["value"] = "NAN_HERE"
    return json.dumps(doc).replace('"NAN_HERE"', "NaN")


def _negative(doc: dict) -> dict:
    ok = next(c for c in doc["cells"] if c["status"] == "ok")
    ok["metrics"]["throughput"]["value"] = -5.0
    return doc


def _zero(doc: dict) -> dict:
    ok = next(c for c in doc["cells"] if c["status"] == "ok")
    ok["metrics"]["throughput"]["value"] = 0.0
    return doc


@pytest.mark.parametrize("build, words", [
    (_huge_int, "integer of 400 digits"),
    (lambda d: "[" * 200_000 + "]" * 200_000, "nested too deep"),
    (_nan, "NaN is not a number"),
    (_negative, "throughput -5.0"),
    (_zero, "throughput 0.0"),
])
def test_a_hostile_result_file_is_one_line_exit_2(tmp_path, capsys, build, words):
    run = _copy_run(tmp_path, build(_sample()))
    line = _one_line_error(*run_cli(capsys, "report", str(run))[::2])
    assert words in line


def test_a_result_file_that_is_a_fifo_or_a_device_is_refused_without_reading(tmp_path, capsys):
    d = tmp_path / "r"
    d.mkdir()
    os.mkfifo(d / "run.json")
    line = _one_line_error(*run_cli(capsys, "report", str(d))[::2])
    assert "not a regular file" in line
    line = _one_line_error(*run_cli(capsys, "report", "/dev/zero")[::2])
    assert "not a regular file" in line


@pytest.mark.parametrize("suite", ["/dev/zero", "fifo"])
def test_a_suite_that_never_ends_is_refused_without_reading(tmp_path, capsys, suite):
    if suite == "fifo":
        suite = str(tmp_path / "suite.toml")
        os.mkfifo(suite)
    line = _one_line_error(*run_cli(capsys, "run", suite, "--out", str(tmp_path / "r"))[::2])
    assert "not a regular file" in line


def _with_samples(tmp_path: Path, name: str, samples_file: str) -> Path:
    doc = _sample()
    for c in doc["cells"]:
        if c["status"] == "ok":
            c["samples_file"] = samples_file
    d = _copy_run(tmp_path, doc, name)
    (d / "samples").mkdir()
    return d


def test_samples_files_are_confined_checked_against_their_size_and_never_block(tmp_path, capsys):
    base = _with_samples(tmp_path, "base", "samples/0000.npy")
    np.save(base / "samples/0000.npy", np.full(1000, 1_000_000, dtype=np.int64))
    # a header that claims 10^10 elements in a file of a few bytes
    liar = _with_samples(tmp_path, "liar", "samples/0000.npy")
    header = {"descr": "<i8", "fortran_order": False, "shape": (10 ** 10,)}
    with open(liar / "samples/0000.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 64)
    fifo = _with_samples(tmp_path, "fifo", "samples/0000.npy")
    os.mkfifo(fifo / "samples/0000.npy")
    outside = _with_samples(tmp_path, "outside", str(base / "samples/0000.npy"))
    dotdot = _with_samples(tmp_path, "dotdot", "../base/samples/0000.npy")
    from bench.analysis.compare import load_samples

    for d in (liar, fifo, outside, dotdot):
        cell = next(c for c in read_run(d).cells if c.status == "ok")
        assert load_samples(d, cell) is None, d.name
    cell = next(c for c in read_run(base).cells if c.status == "ok")
    assert load_samples(base, cell).size == 1000
    for d in (liar, fifo, outside):
        code, _, stderr = run_cli(capsys, "compare", str(base), str(d))
        assert code in (0, 1) and "Traceback" not in stderr


def test_nan_or_negative_figures_are_refused_by_both_stores_alike(tmp_path, capsys):
    run = _copy_run(tmp_path, _negative(_sample()))
    line = _one_line_error(*run_cli(capsys, "history", "add", str(run), "--db", str(tmp_path / "h.sqlite"))[::2])
    assert "outside the figure's domain" in line
    from bench.errors import ResultFileError
    from bench.results.safe_read import check_domain

    good = read_run(SAMPLE)
    from dataclasses import replace

    cell = next(c for c in good.cells if c.status == "ok")
    bad = replace(cell, metrics=replace(cell.metrics, throughput=replace(cell.metrics.throughput, value=float("nan"))))
    with pytest.raises(ResultFileError, match="throughput nan"):
        check_domain(replace(good, cells=(bad,)), "run x")  # what add_run checks in SQLite and PostgreSQL


# --- 9. the smaller ones -----------------------------------------------------------------------


def test_out_naming_a_file_says_so(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]"))
    line = _one_line_error(*run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "f"))[::2])
    assert "is a file, not a directory" in line


def test_a_corrupt_pt2_is_one_line_without_torchs_traceback(tmp_path, capfd):
    (tmp_path / "bad.pt2").write_bytes(b"PK\x03\x04 not really a zip archive")
    suite = write_suite(tmp_path, tiny_suite(model=str(tmp_path / "bad.pt2"), targets='["torch"]',
                                             batch_sizes="[1]", bench_extra="trust_model = true"))
    from bench import cli

    code = cli.main(["run", str(suite), "--out", str(tmp_path / "r")])
    _, stderr = capfd.readouterr()
    line = _one_line_error(code, stderr)
    assert "not a torch.export program" in line


def test_names_with_control_characters_are_refused_and_never_printed_raw(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]").replace(
        'name = "m"', 'name = "m\\u001b[2J"'))
    line = _one_line_error(*run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))[::2])
    assert "control character" in line and "\x1b" not in line
    doc = _sample()
    for c in doc["cells"]:
        c["id"] = c["id"] + "\x1b]0;owned\x07"
        c["reason"] = "\x1b[31mred"
    code, out, stderr = run_cli(capsys, "report", str(_copy_run(tmp_path, doc)))
    assert code == 0, stderr
    assert "\x1b]0;owned" not in out + stderr and "\x07" not in out + stderr


def test_a_degenerate_zoo_model_is_refused(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]").replace("depth = 2", "depth = -1"))
    line = _one_line_error(*run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))[::2])
    assert "model_args.depth = -1: expected an integer >= 1" in line


def test_a_hanging_model_factory_is_cut_short(tmp_path, capsys, monkeypatch):
    (tmp_path / "bench_hang_factory.py").write_text("import time\n\ndef build():\n    while True:\n        time.sleep(0.1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BENCH_PREPARE_TIMEOUT_S", "2")
    suite = write_suite(tmp_path, tiny_suite(model="bench_hang_factory:build", targets='["torch"]', batch_sizes="[1]"))
    # pytest-timeout ends a hang; the message says the time box, not the hang, ended it
    line = _one_line_error(*run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))[::2])
    assert "took over 2 s" in line


def test_run_json_and_samples_get_the_same_mode(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]"))
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, stderr
    (run_json,) = (tmp_path / "r").glob("*/run.json")
    (samples,) = run_json.parent.glob("samples/*.npy")
    assert run_json.stat().st_mode & 0o777 == samples.stat().st_mode & 0o777
    assert not (run_json.parent / ".space-reserve").exists()
