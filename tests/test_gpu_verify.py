"""scripts/gpu_verify.sh in its dry mode, so that the script a lent GPU runs cannot rot here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.config.suite import load_suite

ROOT = Path(__file__).parents[1]
GPU_STEPS = ("nvidia-smi", "pytest-gpu", "default-gpu-cells", "big-models", "generate-gpt2", "fidelity", "telemetry",
             "out-of-memory")


def test_the_dry_run_writes_and_checks_every_suite_and_skips_each_gpu_step_with_its_reason(tmp_path):
    out = tmp_path / "verify"
    env = {**os.environ, "PYTHON": sys.executable, "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    got = subprocess.run(["bash", "scripts/gpu_verify.sh", "--dry-run", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stdout + got.stderr
    summary = (out / "summary.md").read_text()
    assert summary == got.stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
            for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| step")}
    assert rows["suites"][0] == "passed" and rows["env"][0] == "passed"
    for step in GPU_STEPS:
        assert rows[step][0] == "skipped" and rows[step][2] == "dry run: GPU steps are not run", step
    # the suites the GPU steps would run exist and parse, with the cells the issue asks for
    suites = {p.stem: load_suite(p) for p in (out / "suites").glob("*.toml")}
    assert set(suites) == {"default-gpu", "big-models", "telemetry", "out-of-memory", "generate-gpt2"}
    gen = suites["generate-gpt2"].benchmarks[0]
    assert gen.model == "zoo:gpt2-like" and gen.scenarios == ("generate",) and gen.batch_sizes == (1, 32)
    assert gen.reference == "torch-cuda" and {"torch-cuda-fp16", "torch-cuda-graph", "ort-cuda-fp16"} <= set(gen.targets)
    assert "decoder" in {b.name for b in suites["default-gpu"].benchmarks}
    big = suites["big-models"]
    assert {b.model for b in big.benchmarks} == {"zoo:resnet50-like", "zoo:bert-base-like"}
    assert all(b.batch_sizes == (1, 64) for b in big.benchmarks)
    assert {"torch-cuda-fp16", "torch-cuda-graph", "torch-cuda-compile"} <= set(big.benchmarks[0].targets)
    assert suites["telemetry"].benchmarks[0].stop.min_seconds >= 2
    assert max(suites["out-of-memory"].benchmarks[0].batch_sizes) >= 1 << 20
    assert all(t.is_cuda for name, s in suites.items() if name != "default-gpu" for t in s.targets.values())
    assert all(b.targets[0] == b.reference for b in suites["default-gpu"].benchmarks)  # fp32, as in the default suite
    import json

    assert json.loads((out / "env.json").read_text())["python"]  # the fingerprint, as bench env prints it


def test_a_failing_step_is_listed_with_its_first_error_line(tmp_path):
    # The summary half alone, on a steps file as the script writes it.
    out = tmp_path
    (out / "steps.tsv").write_text("env\tpassed\t1\t\nbig-models\tfailed\t170\ttimed out after 170 s\n"
                                   "pytest-gpu\tfailed\t3\texit 1: FAILED tests/test_gpu.py::test_x - assert 0\n")
    got = subprocess.run([sys.executable, "scripts/gpu_verify.py", "summary", str(out), "200", ""], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert got.returncode == 0, got.stderr
    assert "| big-models | failed | 170 | timed out after 170 s |" in got.stdout
    assert "| pytest-gpu | failed | 3 | exit 1: FAILED tests/test_gpu.py::test_x - assert 0 |" in got.stdout


def test_a_real_run_without_a_usable_gpu_is_not_a_pass(tmp_path):
    import shutil

    if shutil.which("nvidia-smi"):
        import pytest

        pytest.skip("this machine has an NVIDIA driver: the real run would measure")
    env = {**os.environ, "PYTHON": sys.executable, "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    got = subprocess.run(["bash", "scripts/gpu_verify.sh", str(tmp_path / "v")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 2, got.stdout + got.stderr
    assert "no GPU step ran: no nvidia-smi on PATH" in got.stderr
    assert "| big-models | skipped | 0 | no nvidia-smi on PATH: no NVIDIA driver here |" in got.stdout
