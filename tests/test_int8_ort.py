"""int8 on ONNX Runtime (dynamic and static QDQ, quantized once in the parent and cached by
content), accuracy as a figure with an interval over samples, and the bad inputs of issue 29."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.analysis import accuracy
from tests.helpers import FAST_STOP, load_run_json, run_cli, tiny_suite, write_suite

INT8_TARGETS = """
        [targets.ort-dyn]
        backend = "onnxruntime"
        precision = "int8-dynamic"
        intra_op_threads = 1

        [targets.ort-static]
        backend = "onnxruntime"
        precision = "int8-static"
        intra_op_threads = 1
        quantize = { method = "percentile", samples = 16, per_channel = false }
"""


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory):
    """One run of an MLP on ORT fp32 (the reference), int8 dynamic and int8 static, twice: the
    second run reads the quantized models from the cache."""
    import contextlib
    import io

    from bench import cli

    tmp = tmp_path_factory.mktemp("int8")
    suite = write_suite(tmp, tiny_suite(targets='["ort", "ort-dyn", "ort-static", "torch"]', extra_targets=INT8_TARGETS,
                                        batch_sizes="[4]", bench_extra="accuracy = { samples = 48 }"))
    runs = []
    for i in range(2):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert cli.main(["run", str(suite), "--out", str(tmp / f"r{i}"), "--quiet"]) == 0
        runs.append(load_run_json(tmp / f"r{i}"))
    return runs


def _cell(run: dict, target: str) -> dict:
    return next(c for c in run["cells"] if c["target"]["name"] == target)


def test_int8_targets_run_quantized_models_and_say_what_was_quantized(int8_run):
    first, second = int8_run
    for name, precision in (("ort-dyn", "int8-dynamic"), ("ort-static", "int8-static")):
        cell = _cell(first, name)
        assert cell["status"] == "ok", cell["reason"]
        described = cell["target"]["details"]["model_precision"]
        assert described.startswith(precision) and "ops int8" in described, described
        assert cell["model"]["quantize_s"] > 0  # quantized in this run, a one-off cost
        assert _cell(second, name)["model"]["quantize_s"] == 0.0  # read from the cache
    static = _cell(first, "ort-static")
    assert static["target"]["knobs"]["quantize"] == {"method": "percentile", "per_channel": False, "samples": 16,
                                                    "calibration_file": ""}
    assert "percentile-pt-n16" in static["target"]["details"]["model_precision"]
    assert "quantize" not in _cell(first, "ort")["target"]["knobs"]


def test_every_target_gets_accuracy_figures_with_intervals_over_samples(int8_run):
    run = int8_run[0]
    assert _cell(run, "ort")["agreement"]["verdict"] == "reference"
    assert _cell(run, "ort")["agreement"]["accuracy"] is None
    for name in ("torch", "ort-dyn", "ort-static"):
        agreement = _cell(run, name)["agreement"]
        acc = agreement["accuracy"]
        assert acc["metric"] == "top1" and acc["samples"] == 48  # the zoo MLP is a classifier
        top1 = acc["figures"][0]
        assert top1["name"] == "top1_agreement" and top1["ci_low"] <= top1["value"] <= top1["ci_high"] <= 1
        assert acc["loss"] == pytest.approx(1 - top1["value"])
        assert acc["loss_ci_low"] <= acc["loss"] <= acc["loss_ci_high"]
    torch_cell = _cell(run, "torch")["agreement"]
    assert torch_cell["verdict"] == "pass" and torch_cell["accuracy"]["loss"] == 0  # fp32 against fp32
    assert torch_cell["tolerance"] == 1e-4  # fp32 keeps the element-wise check
    for name in ("ort-dyn", "ort-static"):
        agreement = _cell(run, name)["agreement"]
        assert agreement["tolerance"] == 0.05 and agreement["metric"].startswith("accuracy loss")
        assert (agreement["verdict"] == "pass") == (agreement["accuracy"]["loss"] <= 0.05)


def test_a_graph_with_nothing_to_quantize_runs_and_says_so(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])],
                              "elementwise", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, tmp_path / "elementwise.onnx")
    suite = write_suite(tmp_path, f"""
        [targets.ort]
        backend = "onnxruntime"
        intra_op_threads = 1
        {INT8_TARGETS}
        [[benchmark]]
        name = "ew"
        model = "elementwise.onnx"
        batch_sizes = [2]
        scenarios = ["single-stream"]
        targets = ["ort", "ort-dyn", "ort-static"]
        stop = {FAST_STOP}
    """)
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0, err
    run = load_run_json(tmp_path / "r")
    for name in ("ort-dyn", "ort-static"):
        cell = _cell(run, name)
        assert cell["status"] == "ok"
        assert "nothing was quantized" in cell["target"]["details"]["model_precision"]
        assert cell["agreement"]["verdict"] == "pass"
        assert cell["agreement"]["accuracy"]["metric"] == "abs-error"  # a float output of a model that declares nothing


@pytest.mark.parametrize("edit,fragment", [
    ('quantize = { method = "minmax", samples = 4, calibration_file = "cal.npz" }',
     "quantize.calibration_file"),
])
def test_calibration_data_of_the_wrong_shape_is_one_line_before_anything_runs(tmp_path, capsys, edit, fragment):
    np.savez(tmp_path / "cal.npz", x=np.zeros((4, 5), dtype=np.float32))  # the MLP takes 16 features
    targets = INT8_TARGETS.replace('quantize = { method = "percentile", samples = 16, per_channel = false }', edit)
    suite = write_suite(tmp_path, tiny_suite(targets='["ort", "ort-static"]', extra_targets=targets, batch_sizes="[2]"))
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--quiet")
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "axis 1" in lines[0] and "Traceback" not in err, err
    assert not list((tmp_path / "r").glob("*/run.json")) if (tmp_path / "r").exists() else True


def test_a_calibration_file_that_fits_is_used_and_keys_the_cache(tmp_path, capsys):
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32))
    targets = INT8_TARGETS.replace('quantize = { method = "percentile", samples = 16, per_channel = false }',
                                   'quantize = { samples = 8, calibration_file = "cal.npz" }')
    suite = write_suite(tmp_path, tiny_suite(targets='["ort", "ort-static"]', extra_targets=targets, batch_sizes="[2]"))
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0, err
    cell = _cell(load_run_json(tmp_path / "r"), "ort-static")
    assert cell["status"] == "ok" and cell["target"]["knobs"]["quantize"]["calibration_file"] == str(tmp_path / "cal.npz")
    assert "-n8-f" in cell["target"]["details"]["model_precision"]


@pytest.mark.parametrize("target_extra,bench_extra,fragment", [
    ('precision = "int8-static"\nquantize = { method = "kl" }', "", "quantize.method: 'kl' is not allowed"),
    ('precision = "int8-static"\nquantize = { samples = 0 }', "", "quantize.samples: 0 is not allowed"),
    ('quantize = { method = "minmax" }', "", "quantize: applies to int8 targets only"),
    ('precision = "int8-dynamic"\ndevice = "cuda"\nproviders = ["CUDAExecutionProvider"]', "",
     "'int8-dynamic' runs on CPU providers only"),
    ('precision = "int4"', "", "precision: 'int4' is not allowed"),
    ("", "tolerance = -0.1", "tolerance: -0.1 is not allowed; expected a number > 0"),
    ("", 'tolerance = "loose"', "tolerance: 'loose' is not allowed; expected a number > 0, or a table"),
    ("", "tolerance = { int8-static = -1 }", "tolerance.int8-static: -1 is not allowed"),
    ("", "tolerance = { int9 = 0.1 }", "tolerance.int9: 'int9' is not allowed"),
    ("", "tolerance = { int8-static = nan }", "tolerance.int8-static: nan is not allowed"),
    ("", 'accuracy = { metric = "top-1" }', "accuracy.metric: 'top-1' is not allowed"),
])
def test_bad_int8_and_tolerance_inputs_are_one_line_with_exit_2(tmp_path, capsys, target_extra, bench_extra, fragment):
    extra = "[targets.bad]\nbackend = \"onnxruntime\"\n" + target_extra
    suite = write_suite(tmp_path, tiny_suite(targets='["ort", "bad"]', extra_targets=extra, bench_extra=bench_extra))
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--quiet")
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], err


def test_a_tolerance_table_overrides_one_precision_and_keeps_the_others(tmp_path):
    from bench.config.suite import load_suite

    extra = INT8_TARGETS
    suite = write_suite(tmp_path, tiny_suite(targets='["ort", "ort-dyn", "ort-static"]', extra_targets=extra,
                                             bench_extra="tolerance = { int8-static = 0.2 }"))
    bench = load_suite(suite).benchmarks[0]
    assert bench.tolerance_for("int8-static") == 0.2
    assert bench.tolerance_for("int8-dynamic") == 0.05 and bench.tolerance_for("fp32") == 1e-4


# --- the metrics on planted outputs ----------------------------------------------------------------


def test_top1_agreement_counts_flipped_answers_with_a_wilson_interval():
    ref = np.eye(10)[np.arange(100) % 10] * 5.0  # 100 samples, a clear class each
    out = ref.copy()
    out[:7] = np.roll(out[:7], 1, axis=1)  # 7 answers changed
    acc = accuracy.measure(out, ref, "top1")
    top1 = acc.figures[0]
    assert top1.value == pytest.approx(0.93) and acc.loss == pytest.approx(0.07)
    assert top1.ci_low == pytest.approx(0.8626, abs=2e-3) and top1.ci_high == pytest.approx(0.9657, abs=2e-3)
    assert acc.figures[1].name == "max_prob_diff" and acc.figures[1].value > 0
    same = accuracy.measure(ref, ref, "top1")
    assert same.loss == 0 and same.figures[0].ci_low == pytest.approx(0.963, abs=1e-3)  # 100/100 is not "100% sure"


def test_cosine_mean_relative_error_and_token_metrics():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((32, 64))
    noisy = ref + 0.05 * rng.standard_normal((32, 64))
    cos = accuracy.measure(noisy, ref, "cosine")
    assert 0.99 < cos.figures[0].value < 1 and cos.loss == pytest.approx(1 - cos.figures[0].value)
    assert cos.loss_ci_low <= cos.loss <= cos.loss_ci_high
    err = accuracy.measure(noisy, ref, "abs-error")
    scale = np.abs(ref).max()
    assert err.loss == pytest.approx(np.mean(np.abs(noisy - ref).max(axis=1) / scale))
    assert [f.name for f in err.figures] == ["mean_rel_error", "max_rel_error", "max_abs_error"]
    ids = rng.integers(0, 100, (8, 20))
    flipped = ids.copy()
    flipped[0, :10] += 1
    tok = accuracy.measure(flipped, ids, "token")
    assert tok.figures[0].value == pytest.approx(1 - 10 / 160)
    assert accuracy.resolve_metric("auto", "", ids) == "token"
    assert accuracy.resolve_metric("auto", "", ref) == "abs-error"
    assert accuracy.resolve_metric("auto", "cosine", ref) == "cosine"
    assert accuracy.resolve_metric("top1", "cosine", ref) == "top1"
    ref10 = np.eye(10)[np.arange(100) % 10]
    out10 = np.concatenate([np.roll(ref10[:7], 1, axis=1), ref10[7:]])
    assert accuracy.describe(accuracy.measure(out10, ref10, "top1")) == "top-1 agreement 93.0% [86.3, 96.6] over 100 samples"


def test_bench_env_names_the_cpu_extensions_int8_speed_rests_on(capsys):
    import platform

    from bench.measure.environment import ISA_FLAGS

    code, out, err = run_cli(capsys, "env")
    assert code == 0
    isa = json.loads(out)["cpu_isa"]
    assert isa and set(isa) <= set(ISA_FLAGS) and isa == [f for f in ISA_FLAGS if f in isa]
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(("flags", "Features")))
    assert ("avx512_vnni" in isa) == ("avx512_vnni" in flags.split())
    assert platform.machine() != "x86_64" or "sse4_2" in isa


def test_accuracy_samples_of_a_large_output_stop_at_the_byte_cap(monkeypatch):
    """A decoder's logits (positions x vocabulary) for 64 samples would be gigabytes: the worker
    keeps whole batches until ACCURACY_MAX_BYTES, the reference stopping at the same count."""
    from types import SimpleNamespace

    from bench.config.records import AccuracySpec
    from bench.models.inputs import InputSpec
    from bench.runner import unit

    model = SimpleNamespace(input_file=None, inputs=(InputSpec("x", (4,)),), source=SimpleNamespace(seed=0))

    class Wide:
        calls = 0

        def requester(self):
            return None

        def outputs(self, feeds):
            Wide.calls += 1
            return [np.zeros((len(feeds["x"]), 1000), dtype=np.float64)]  # 8 kB a sample

    job = SimpleNamespace(benchmark=SimpleNamespace(accuracy=AccuracySpec(samples=64)), model=model,
                          key=SimpleNamespace(dims=(), batch_size=4))
    scenario = SimpleNamespace(needs_decoder=False)
    assert unit._accuracy_outputs(job, Wide(), scenario).shape == (64, 1000) and Wide.calls == 16
    monkeypatch.setattr(unit, "ACCURACY_MAX_BYTES", 3 * 4 * 8000)  # three batches' worth
    Wide.calls = 0
    assert unit._accuracy_outputs(job, Wide(), scenario).shape == (12, 1000) and Wide.calls == 3
    assert unit._accuracy_outputs(job, Wide(), SimpleNamespace(needs_decoder=True)) is None


def test_a_reference_that_is_not_finite_on_the_accuracy_samples_leaves_the_cell_unchecked():
    from bench.analysis.agreement import with_accuracy
    from bench.results.records import Agreement

    base = Agreement("pass", "ort", 0.0, 0.0, 0.05)
    ref = np.eye(4)[np.arange(8) % 4]
    bad = ref.copy()
    bad[3, 1] = np.nan
    for metric in ("top1", "cosine", "abs-error"):
        out = with_accuracy(base, ref, bad, True, metric, "", 0.05)
        assert out.verdict == "unchecked" and "NaN or infinity" in out.reason and out.accuracy is None
    own_bad = with_accuracy(base, bad, ref, True, "top1", "", 0.05)
    assert own_bad.verdict == "fail" and "NaN or infinity" in own_bad.reason


def test_a_fleet_unit_gets_the_int8_forms_shipped_and_named_as_the_node_sees_them(tmp_path):
    from dataclasses import replace

    from bench.models.loader import ModelRef, PreparedModel
    from bench.models.quantize import QuantizedModel
    from bench.runner.ray_executor import _model_files, _relocated

    q = QuantizedModel(str(tmp_path / "m-int8-static.onnx"), "int8-static", "minmax-pc-n32", 0.0, 3, 0)
    model = PreparedModel(ModelRef("zoo:mlp", "zoo"), "abc", (), str(tmp_path / "m.onnx"),
                          quantized=(("onnx-int8-static:minmax-pc-n32", q),))
    assert _model_files(model) == {str(tmp_path / "m.onnx"), q.path}
    moved = _relocated(model, {q.path: "/node/m-int8-static.onnx", model.onnx_path: "/node/m.onnx"})
    assert moved.quantized_form("onnx-int8-static:minmax-pc-n32") == replace(q, path="/node/m-int8-static.onnx")
    assert moved.onnx_path == "/node/m.onnx"


def test_every_batch_size_measures_accuracy_on_the_same_samples():
    from types import SimpleNamespace

    from bench.models.calibration import accuracy_feeds
    from bench.models.inputs import InputSpec

    model = SimpleNamespace(input_file=None, inputs=(InputSpec("x", (3,)),), source=SimpleNamespace(seed=0))
    one = np.concatenate([f["x"] for f in accuracy_feeds(model, (), 10, 1)])
    four = np.concatenate([f["x"] for f in accuracy_feeds(model, (), 10, 4)])  # 3 batches: 12, the last 2 cycled
    assert one.shape == (10, 3) and four.shape == (12, 3)
    assert np.array_equal(four[:10], one) and np.array_equal(four[10:], one[:2])
