"""Helpers for the tests: tiny suites written into tmp_path, the CLI run in-process."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from bench import cli

# Small zoo shapes: the tests check behaviour, not speed.
TINY_MLP = '{ in_features = 16, width = 32, depth = 2, classes = 4 }'
FAST_STOP = "{ min_seconds = 0.05, max_seconds = 1, min_iterations = 5, warmup_iterations = 2, warmup_seconds = 0.0, ci_figures = [] }"


def write_suite(tmp_path: Path, body: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def tiny_suite(model: str = "zoo:mlp", targets: str = '["ort", "torch"]', extra_targets: str = "",
               bench_extra: str = "", batch_sizes: str = "[1, 4]", scenarios: str = '["single-stream"]') -> str:
    model_args = f"model_args = {TINY_MLP}" if model == "zoo:mlp" else ""
    return f"""
        [suite]
        name = "tiny"

        [targets.ort]
        backend = "onnxruntime"
        providers = ["CPUExecutionProvider"]
        intra_op_threads = 1

        [targets.torch]
        backend = "torch"
        threads = 1
        {extra_targets}

        [[benchmark]]
        name = "m"
        model = "{model}"
        {model_args}
        batch_sizes = {batch_sizes}
        scenarios = {scenarios}
        targets = {targets}
        stop = {FAST_STOP}
        {bench_extra}
    """


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def load_run_json(out_dir: Path) -> dict:
    runs = sorted(out_dir.glob("*/run.json"))
    assert len(runs) == 1, runs
    return json.loads(runs[0].read_text())


# Synthetic targets of known service time, read from the knob delay_us: Spin busy-waits (holds the
# GIL, deterministic), Sleep sleeps (releases the GIL, like a runtime computing in C).
SPIN_PLUGIN = """
import time
import numpy as np
from bench.backends import Backend, BackendInfo


class _Synthetic(Backend):
    def load(self, model, target):
        self.ns = int(dict(target.options.items)["delay_us"] * 1000)

    def outputs(self, feeds):
        return [np.zeros(1)]

    def info(self):
        return BackendInfo(runtime=type(self).__name__.lower())


class Spin(_Synthetic):
    def bind(self, feeds):
        ns, clock = self.ns, time.perf_counter_ns

        def call():
            end = clock() + ns
            while clock() < end:
                pass
        return call


class Sleep(_Synthetic):
    def bind(self, feeds):
        seconds = self.ns / 1e9
        return lambda: time.sleep(seconds)
"""


def stderr_until(proc, marker: str) -> list[str]:
    """The stderr lines of a running `bench` process up to the first holding `marker` (which
    must come: the assertion shows what came instead)."""
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} never came:\n" + "".join(lines))
