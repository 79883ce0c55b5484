"""CLI: each bad input of the core issue gives one line on stderr and its exit code; env and self-check."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import run_cli, tiny_suite, write_suite
from tests.test_models import FACTORY, symbolic_onnx

ROOT = Path(__file__).parents[1]


def assert_one_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


def run_model(tmp_path, capsys, model: str, targets='["ort"]', extra="") -> tuple[int, str]:
    suite = write_suite(tmp_path, tiny_suite(model=model, targets=targets, bench_extra=extra, batch_sizes="[1]"))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    return code, err


def test_model_path_that_does_not_exist(tmp_path, capsys):
    code, err = run_model(tmp_path, capsys, str(tmp_path / "missing.onnx"))
    assert code == 2
    assert_one_line(err, "missing.onnx", "no such file")
    assert not (tmp_path / "r").exists()  # refused before any run directory is made


def test_file_that_is_not_valid_onnx(tmp_path, capsys):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(os.urandom(64))
    code, err = run_model(tmp_path, capsys, str(bad))
    assert code == 2
    assert_one_line(err, "garbage.onnx", "not a valid ONNX file")


def test_onnx_inputs_the_config_cannot_bind(tmp_path, capsys):
    path = symbolic_onnx(tmp_path / "sym.onnx")
    code, err = run_model(tmp_path, capsys, str(path))
    assert code == 2
    assert_one_line(err, "input 'x' has symbolic dimension 'seq'", "dims = { seq = N }")


def test_onnx_file_runs_once_dims_are_bound(tmp_path, capsys):
    path = symbolic_onnx(tmp_path / "sym.onnx")
    code, err = run_model(tmp_path, capsys, str(path), extra="dims = { seq = 3 }")
    assert code == 0, err


def test_torch_factory_that_raises(tmp_path, capsys, monkeypatch):
    (tmp_path / "cli_models.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    code, err = run_model(tmp_path, capsys, "cli_models:broken", targets='["torch"]')
    assert code == 2
    assert_one_line(err, "cli_models:broken", "the factory raised RuntimeError: weights went missing")


def test_factory_model_runs_on_both_backends(tmp_path, capsys, monkeypatch):
    (tmp_path / "cli_models2.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    code, err = run_model(tmp_path, capsys, "cli_models2:make", targets='["torch", "ort"]')
    assert code == 0, err
    doc = json.loads(next((tmp_path / "r").glob("*/run.json")).read_text())
    assert [c["agreement"]["verdict"] for c in doc["cells"]] == ["reference", "pass"]


def test_env_prints_json_without_secrets(capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    code, out, _ = run_cli(capsys, "env")
    assert code == 0
    env = json.loads(out)
    assert "hunter2-secret" not in out
    assert env["env_vars"] == {"OMP_NUM_THREADS": "2"} or env["env_vars"].get("OMP_NUM_THREADS") == "2"
    assert env["cpu_cores_logical"] >= 1 and env["packages"]["numpy"]
    if not env["gpus"]:
        assert env["gpu_note"]  # says why: e.g. NVML's library is absent here


def test_self_check_measures_both_loops(capsys):
    code, out, _ = run_cli(capsys, "self-check", "--rounds", "1", "--checks", "overhead,kernels", "--json")
    assert code == 0
    figures = json.loads(out)
    overhead = figures["overhead"]
    assert overhead["bare_ns_per_call"] > 0 and overhead["harness_ns_per_call"] > 0
    assert overhead["throughput_ratio"] == pytest.approx(overhead["bare_ns_per_call"] / overhead["harness_ns_per_call"])
    assert figures["kernels"]["n"] == 1_000_000
    assert set(figures) == {"overhead", "kernels"}


def test_self_check_rejects_unknown_sections(capsys):
    code, _, err = run_cli(capsys, "self-check", "--checks", "overhead,speed")
    assert code == 2
    assert_one_line(err, "--checks 'overhead,speed': allowed: overhead, timer, worker-start, kernels, bootstrap, jit")


def test_reproducibility_check_refuses_one_run_and_a_missing_suite(capsys, tmp_path):
    code, _, err = run_cli(capsys, "self-check", "--checks", "reproducibility", "--runs", "1")
    assert code == 2
    assert_one_line(err, "--runs 1: expected an integer >= 2 (runs are compared in pairs)")
    code, _, err = run_cli(capsys, "self-check", "--checks", "reproducibility", "--suite", str(tmp_path / "none.toml"))
    assert code == 2
    assert_one_line(err, "none.toml")


@pytest.mark.parametrize("old, new, fragment", [
    ("max_seconds = 1", "max_seconds = inf", "stop.max_seconds: inf is not allowed; expected a finite number"),
    ("max_seconds = 1", "max_seconds = nan", "expected a finite number"),
    ("max_seconds = 1", "max_seconds = 1e300", "expected at most 86400 s"),
    ("stop = {", 'slo = { p99_ms = nan }\nstop = {', "slo.p99_ms: nan is not allowed"),
    ("stop = {", "tolerance = inf\nstop = {", "tolerance: inf is not allowed"),
    ("stop = {", "seed = -1\nstop = {", "seed: -1 is not allowed; expected an integer >= 0"),
    ('threads = 1', 'threads = 1\n[targets.plug]\nbackend = "nosuchmod_xyz:Cls"', "cannot import 'nosuchmod_xyz'"),
    ("width = 32", "width = -3", "model_args.width = -3: expected an integer >= 1"),
])
def test_more_bad_values_exit_2_before_measuring(tmp_path, capsys, old, new, fragment):
    text = tiny_suite(batch_sizes="[1]")
    assert old in text
    suite = write_suite(tmp_path, text.replace(old, new, 1))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 2
    assert_one_line(err, fragment)
    assert not (tmp_path / "r").exists()


def test_stop_that_is_not_a_table(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite().replace("stop = {", "stop = 5\n_unused = {", 1).replace("_unused = {", "# {", 1))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 2 and "stop: 5 is not allowed; expected a table" in err
