"""What `bench run` shows while it runs: a live display on a terminal (a real pty), a line per
cell elsewhere, nothing with --quiet."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bench.measure.nvml_devices import visible_device_count
from bench.report import terminal
from bench.report.model import LINE_WIDTH
from bench.results.files import read_run
from tests.helpers import load_run_json, run_cli, tiny_suite, write_suite

ROOT = Path(__file__).parents[1]


def _suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1, 2]").replace(
        "ci_figures = []", 'ci_figures = ["throughput"], ci_rel_width = 0.5, repeats = 2'))


def test_quiet_prints_no_progress_and_a_pipe_gets_a_line_per_cell(tmp_path, capsys):
    suite = _suite(tmp_path)
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "q"), "--quiet")
    assert code == 0, stderr
    assert "[1/" not in stderr and "repetition" not in stderr
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "p"))
    assert code == 0, stderr
    done = [line for line in stderr.splitlines() if line.startswith("[") and "samples/s" in line]
    assert len(done) == 2  # one line per finished cell (not a terminal: no live display)


def test_a_terminal_gets_a_live_display_with_eta_throughput_and_precision(tmp_path):
    suite = _suite(tmp_path)
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "240", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", str(suite), "--out", str(tmp_path / "r")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(master)
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, shown
    assert "cells" in shown and "ETA" in shown  # the live bar: cells done / total, elapsed, time left
    assert "/2" in shown  # cells done out of 2
    assert "last:" in shown and "samples/s" in shown  # the last repetition's throughput
    assert "precision across" in shown and "target ±50.0%" in shown  # against the cell's target
    assert "m/ort/b1/single-stream" in shown  # finished cells printed above the bar


GPUS_VISIBLE, _ = visible_device_count()
CUDA_TARGETS = """
[targets.torch-cuda]
backend = "torch"
device = "cuda"

[targets.torch-cuda-fp16-with-a-rather-long-name-for-a-target]
backend = "torch"
device = "cuda"
precision = "fp16"

[targets.ort-cuda-fp16]
backend = "onnxruntime"
device = "cuda"
precision = "fp16"
providers = ["CUDAExecutionProvider"]
"""


@pytest.mark.skipif(GPUS_VISIBLE > 0, reason="needs a machine where NVML sees no GPU: there the CUDA targets run")
def test_a_cpu_machine_tells_its_skipped_cells_once_per_reason_in_lines_that_fit(tmp_path, capsys):
    targets = '["ort", "torch-cuda", "torch-cuda-fp16-with-a-rather-long-name-for-a-target", "ort-cuda-fp16"]'
    suite = write_suite(tmp_path, tiny_suite(targets=targets, extra_targets=CUDA_TARGETS,
                                             scenarios='["single-stream", "offline"]'))
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, stderr
    cells = load_run_json(tmp_path / "r")["cells"]
    skipped = [c for c in cells if c["status"] == "skipped"]
    assert len(skipped) == 12 and all(c["reason"].startswith("no CUDA device") for c in skipped)
    lines = stderr.splitlines()
    told = [line for line in lines if "skipped" in line]
    assert len(told) == 1, stderr  # one line for the one reason, none per cell
    assert told[0].startswith(f"skipped 12 cells: {skipped[0]['reason']} (targets ort-cuda-fp16, torch-cuda, ")
    assert not any(c["id"] in stderr for c in skipped)  # not even as a repetition starting
    assert sum(line.startswith("[") and "samples/s" in line for line in lines) == 4  # the ort cells, one line each
    assert max(len(line) for line in lines) <= LINE_WIDTH == 160, max(lines, key=len)


def test_long_reasons_and_many_targets_are_cut_to_the_line_width():
    run = read_run(ROOT / "tests" / "data" / "run_v12.json")
    failed = next(c for c in run.cells if c.status == "failed")
    long = replace(failed, reason="provider X is not installed; " * 40 + "the end")
    line = terminal.progress_line(6, 11, long)
    assert len(line) <= LINE_WIDTH and line.endswith("…") and line.startswith(f"[7/11] {failed.id}: failed (")
    skipped = next(c for c in run.cells if c.status == "skipped")
    many = [replace(skipped, target=replace(skipped.target, name=f"cuda-target-number-{i}"), reason=r)
            for i in range(30) for r in ("no CUDA device\n(NVML unavailable)", "x " * 200)]
    lines = terminal.skipped_lines(many)
    assert len(lines) == 2 and all(len(line) <= LINE_WIDTH for line in lines)
    assert lines[0].startswith("skipped 30 cells: no CUDA device (NVML unavailable) (targets cuda-target-number-0, ")
    assert lines[0].endswith(" more)")  # the names past the room counted, not listed
    assert lines[1].startswith("skipped 30 cells: x x x") and "…" in lines[1]
