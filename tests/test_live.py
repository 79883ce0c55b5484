"""What `bench run` shows while it runs: a live display on a terminal (a real pty), a line per
cell elsewhere, nothing with --quiet."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import run_cli, tiny_suite, write_suite

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
