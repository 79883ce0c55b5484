"""`bench run` end to end: real workers, real runtimes, result files, failures that stay contained."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import numpy as np
import psutil
import pytest

from bench.measure.nvml_devices import visible_device_count
from bench.results.files import read_run
from bench.results.records import SCHEMA_VERSION
from tests.helpers import load_run_json, run_cli, stderr_until, tiny_suite, write_suite

SCHEMA = json.loads((Path(__file__).parents[1] / "bench/results/run.schema.json").read_text())

PLUGINS = '''
import ctypes, os, sys
from bench.backends.options import TorchOptions
from bench.backends.torch.backend import TorchBackend
from bench.config.records import TargetSpec


class WrongBackend(TorchBackend):
    """Runs the model, but its outputs are off by 0.25, as a broken fused kernel's might be."""

    def load(self, model, target):
        super().load(model, TargetSpec(target.name, "torch", target.device, target.precision, TorchOptions()))

    def outputs(self, feeds):
        return [o + 0.25 for o in super().outputs(feeds)]


class CrashBackend(TorchBackend):
    def load(self, model, target):
        print("native library says: about to crash", file=sys.stderr, flush=True)
        ctypes.string_at(0)  # SIGSEGV in native code, as a broken runtime would


class RaisingBackend(TorchBackend):
    def load(self, model, target):
        raise RuntimeError("device lost")


class FlakyBackend(TorchBackend):
    """Crashes the first time it loads (a marker file in $BENCH_TEST_FLAKY_DIR says it did)."""

    def load(self, model, target):
        marker = os.path.join(os.environ["BENCH_TEST_FLAKY_DIR"], "crashed-once")
        if not os.path.exists(marker):
            open(marker, "w").close()
            ctypes.string_at(0)
        super().load(model, TargetSpec(target.name, "torch", target.device, target.precision, TorchOptions()))
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    (tmp_path / "bench_test_plugins.py").write_text(textwrap.dedent(PLUGINS))
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path


def test_run_end_to_end_writes_valid_comparable_results(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite(scenarios='["single-stream", "offline"]', bench_extra="slo = { p99_ms = 10000 }"))
    out = tmp_path / "results"
    code, stdout, stderr = run_cli(capsys, "run", str(suite), "--out", str(out))
    assert code == 0, stderr
    doc = load_run_json(out)
    jsonschema.validate(doc, SCHEMA)
    run = read_run(next(out.glob("*/run.json")))
    assert run.status == "complete" and run.schema_version == SCHEMA_VERSION
    assert [c.id for c in run.cells] == [
        "m/ort/b1/single-stream", "m/ort/b1/offline", "m/ort/b4/single-stream", "m/ort/b4/offline",
        "m/torch/b1/single-stream", "m/torch/b1/offline", "m/torch/b4/single-stream", "m/torch/b4/offline",
    ]
    for cell in run.cells:
        assert cell.status == "ok", cell.reason
        lat = cell.metrics.latency_ms
        assert lat.min.value <= lat.p50.value <= lat.p90.value <= lat.p99.value <= lat.max.value
        assert lat.n >= 5 and cell.metrics.throughput.value > 0
        assert cell.stop_reason and cell.warmup.iterations >= 2
        assert cell.memory.peak_rss_bytes > 10 * 2**20 and cell.memory.gpu_peak_bytes is None
        assert cell.timing_boundary == "end_to_end" and cell.slo.passed
        samples = np.load(out / run.run_id / cell.samples_file, allow_pickle=False)
        assert samples.dtype == np.int64 and samples.size == lat.n
        # each repetition (worker process): throughput is its samples over its measured window;
        # the cell's figure is their mean, its interval t over the processes
        assert [r.index for r in cell.repetitions] == [0, 1, 2]
        # a repetition that other processes interfered with (a busy CI machine) is left out while
        # two clean ones remain: which ones, this machine decides; the rule does not change
        clean = [r for r in cell.repetitions if not r.interfered]
        assert all(r.used == (not r.interfered or len(clean) < 2) for r in cell.repetitions)
        reps = cell.used_repetitions
        assert len(reps) >= 2
        assert all(r.throughput == pytest.approx(r.n * cell.batch_size / r.window_s) for r in reps)
        tp = cell.metrics.throughput
        assert tp.value == pytest.approx(np.mean([r.throughput for r in reps]))
        assert tp.ci_low < tp.value < tp.ci_high and tp.confidence == 0.95
        assert f"t over {len(reps)} processes" in tp.method
        assert lat.mean.ci_low < lat.mean.value < lat.mean.ci_high
        assert lat.p50.value == pytest.approx(np.mean([r.p50_ms for r in reps]))
        assert lat.p50.ci_low <= lat.p50.value <= lat.p50.ci_high and f"t over {len(reps)} processes" in lat.p50.method
        assert all(r.others_cpu_share is not None and 0 <= r.others_cpu_share <= 1 for r in reps)
        assert sum(lat.histogram.counts) == lat.n and lat.histogram.relative_error == 0.01
        assert cell.throughput_series.values and cell.throughput_series.window_s > 0
        assert "MSER-5" in cell.warmup.rule and cell.warmup.steady_state_cut >= 0
    ort_cells = [c for c in run.cells if c.target.name == "ort"]
    torch_cells = [c for c in run.cells if c.target.name == "torch"]
    assert all(c.agreement.verdict == "reference" for c in ort_cells)
    assert all(c.agreement.verdict == "pass" and c.agreement.max_rel_error < 1e-4 for c in torch_cells)
    assert ort_cells[0].target.providers == ("CPUExecutionProvider",)
    assert ort_cells[0].target.knobs["intra_op_threads"] == 1
    # every target got the same inputs at the same batch size
    by_batch = {}
    for c in run.cells:
        by_batch.setdefault(c.batch_size, set()).add(c.inputs_sha256)
    assert all(len(hashes) == 1 for hashes in by_batch.values())
    assert len({c.model.sha256 for c in run.cells}) == 1
    assert run.environment.packages["onnxruntime"] and run.environment.cpu_cores_logical
    # people: a progress line per cell and a table
    assert "[8/8] m/torch/b4/offline: " in stderr and "samples/s" in stderr
    assert "m/torch/b4/offline" not in stdout and "reference" in stdout and "pass" in stdout


def test_adaptive_stopping_in_a_real_run(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]").replace(
        "ci_figures = []", 'ci_figures = ["throughput", "p50"], ci_rel_width = 0.05'))
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, stderr
    cell = load_run_json(tmp_path / "r")["cells"][0]
    assert ("per process: precision reached: throughput ±" in cell["stop_reason"]
            or "per process: max_seconds (1 s) reached before" in cell["stop_reason"])
    assert "precision across 3 processes: throughput ±" in cell["stop_reason"]
    assert "p50 ±" in cell["stop_reason"] and "(target ±5.0% at 95% confidence)" in cell["stop_reason"]
    assert "stop: " in stderr and "±" in stderr


def test_wrong_outputs_and_crashes_are_contained(tmp_path, capsys, plugins):
    extra = """
        [targets.wrong]
        backend = "bench_test_plugins:WrongBackend"

        [targets.crash]
        backend = "bench_test_plugins:CrashBackend"

        [targets.raising]
        backend = "bench_test_plugins:RaisingBackend"
    """
    suite = write_suite(tmp_path, tiny_suite(targets='["ort", "crash", "wrong", "raising", "torch"]',
                                             extra_targets=textwrap.dedent(extra), batch_sizes="[2]"))
    out = tmp_path / "results"
    code, stdout, stderr = run_cli(capsys, "run", str(suite), "--out", str(out))
    assert code == 3
    cells = {c["target"]["name"]: c for c in load_run_json(out)["cells"]}
    assert cells["ort"]["status"] == cells["torch"]["status"] == cells["wrong"]["status"] == "ok"
    assert cells["torch"]["agreement"]["verdict"] == "pass"
    wrong = cells["wrong"]["agreement"]
    assert wrong["verdict"] == "fail" and "exceeds tolerance" in wrong["reason"]
    assert cells["crash"]["status"] == "failed"
    # both repetitions crashed (a second failure ends a cell's repetitions), each said
    assert cells["crash"]["reason"] == "2 of 2 repetitions failed (first: worker killed by SIGSEGV); fewer than 2 finished"
    assert [r["reason"] for r in cells["crash"]["repetitions"]] == ["worker killed by SIGSEGV"] * 2
    assert "about to crash" in cells["crash"]["stderr_tail"]
    assert cells["raising"]["status"] == "failed"
    assert cells["raising"]["reason"] == "2 of 2 repetitions failed (first: RuntimeError: device lost); fewer than 2 finished"
    assert "Traceback" in cells["raising"]["stderr_tail"] and "Traceback" not in stderr
    assert "2 cell(s) failed" in stderr and "outputs disagree with the reference in 1 cell(s)" in stderr


def test_disagreement_alone_exits_1(tmp_path, capsys, plugins):
    extra = '\n[targets.wrong]\nbackend = "bench_test_plugins:WrongBackend"\n'
    suite = write_suite(tmp_path, tiny_suite(targets='["ort", "wrong"]', extra_targets=extra, batch_sizes="[2]"))
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 1 and "outputs disagree" in stderr


def test_slo_failure_exits_1(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]", bench_extra="slo = { p50_ms = 0.000001 }"))
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 1 and "SLO failed in 1 cell(s)" in stderr
    slo = load_run_json(tmp_path / "r")["cells"][0]["slo"]
    assert slo["passed"] is False and slo["checks"][0]["metric"] == "p50_ms"


# The harness decides whether cuda targets can run by NVML's device count (as its workers will see it).
GPUS_VISIBLE, NO_GPU_NOTE = visible_device_count()


@pytest.mark.skipif(GPUS_VISIBLE > 0, reason=f"needs a machine where NVML sees no GPU ({GPUS_VISIBLE} visible): "
                                               "there the cuda target runs instead of being skipped")
def test_cuda_target_is_skipped_without_a_gpu(tmp_path, capsys):
    extra = '\n[targets.gpu]\nbackend = "torch"\ndevice = "cuda"\n'
    suite = write_suite(tmp_path, tiny_suite(targets='["ort", "gpu"]', extra_targets=extra, batch_sizes="[1]"))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    cells = {c["target"]["name"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    assert code == 0, err
    assert cells["ort"]["status"] == "ok"
    assert cells["gpu"]["status"] == "skipped"
    # the reason says why, in NVML's own words (no driver here: "NVML unavailable: ...")
    assert NO_GPU_NOTE and cells["gpu"]["reason"] == f"no CUDA device ({NO_GPU_NOTE})"


def test_only_filters_cells_and_rejects_no_match(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite())
    code, _, _ = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--only", "m/ort/b4/*")
    assert code == 0
    assert [c["id"] for c in load_run_json(tmp_path / "r")["cells"]] == ["m/ort/b4/single-stream"]
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r2"), "--only", "zzz*")
    assert code == 2 and "matches no cell" in err


def test_provider_not_installed_is_a_skipped_cell_with_the_reason(tmp_path, capsys):
    """A provider this onnxruntime build lacks cannot run here, as a cuda target cannot on a machine
    without a GPU: the cell is skipped before any worker starts, saying which provider is missing."""
    extra = '\n[targets.dnnl]\nbackend = "onnxruntime"\nproviders = ["DnnlExecutionProvider"]\n'
    suite = write_suite(tmp_path, tiny_suite(targets='["ort", "dnnl"]', extra_targets=extra, batch_sizes="[1]"))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, err
    cells = {c["target"]["name"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    assert cells["ort"]["status"] == "ok" and cells["dnnl"]["status"] == "skipped"
    assert cells["dnnl"]["reason"].startswith("provider DnnlExecutionProvider is not installed")


def test_a_crashing_repetition_leaves_the_cell_on_the_ones_that_finished(tmp_path, capsys, plugins, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_FLAKY_DIR", str(tmp_path))
    extra = """
        [targets.flaky]
        backend = "bench_test_plugins:FlakyBackend"
    """
    suite = write_suite(tmp_path, tiny_suite(targets='["ort", "flaky"]', extra_targets=textwrap.dedent(extra),
                                             batch_sizes="[2]").replace("ci_figures = []", "ci_figures = [], repeats = 3"))
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, stderr  # two of three finished: the cell stands, on those two
    cell = next(c for c in load_run_json(tmp_path / "r")["cells"] if c["target"]["name"] == "flaky")
    assert cell["status"] == "ok"
    reps = cell["repetitions"]
    assert [(r["status"], r["used"]) for r in reps] == [("failed", False), ("ok", True), ("ok", True)]
    assert reps[0]["failure_kind"] == "crash" and reps[0]["reason"] == "worker killed by SIGSEGV"
    assert "1 of 3 repetitions failed (first: worker killed by SIGSEGV)" in cell["stop_reason"]
    assert cell["stop_reason"].startswith("2 of 3 repetitions in the figures")
    assert cell["metrics"]["latency_ms"]["n"] == reps[1]["n"] + reps[2]["n"]


def _default_sigint() -> None:
    # A process started with SIGINT ignored (anything launched in the background by a shell, as CI
    # runners may be) keeps ignoring it and Python installs no KeyboardInterrupt: the harness must
    # see the Ctrl-C a terminal would send.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_completed_cells_and_leaves_no_worker(tmp_path):
    suite = write_suite(tmp_path, tiny_suite(batch_sizes="[1, 2, 3, 4, 5, 6]").replace("min_seconds = 0.05", "min_seconds = 0.3"))
    out = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", str(suite), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, preexec_fn=_default_sigint)
    # Interrupt in the second round: every cell has one repetition measured, none is complete.
    lines = stderr_until(proc, "repetition 2 ...")
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    stderr = "".join(lines) + rest
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted:" in stderr
    doc = load_run_json(out)
    assert doc["status"] == "interrupted"
    # the repetitions measured before Ctrl-C are kept, and say they were cut short
    assert len(doc["cells"]) == 12 and all(c["status"] == "ok" for c in doc["cells"])
    assert all("interrupted after" in c["stop_reason"] for c in doc["cells"])
    # fewer processes than the rule's 3, said so; one process gives no re-run interval, never a tight ±
    assert all("fewer than the 3 its rule asks for (interrupted" in c["stop_reason"] for c in doc["cells"])
    single = [c for c in doc["cells"] if sum(r["used"] for r in c["repetitions"]) == 1]
    assert single and all(c["metrics"]["throughput"]["ci_low"] is None and c["metrics"]["latency_ms"]["p50"]["ci_low"]
                          is None and "one process gives no re-run interval" in c["stop_reason"] for c in single)
    jsonschema.validate(doc, SCHEMA)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
