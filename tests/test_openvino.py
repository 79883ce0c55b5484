"""The openvino backend on the real OpenVINO runtime, and ONNX Runtime's OpenVINO execution provider.

One suite runs through `bench run` (ONNX Runtime fp32 the reference; OpenVINO fp32 under the
latency and throughput hints; OpenVINO int8-static on the QDQ model the parent quantized), and the
run file is read for what ran. Bad targets are config errors (exit 2, one line). A machine without
openvino is simulated by a package of that name whose import raises ImportError, put first on the
worker's path. The execution provider ships in onnxruntime-openvino, which replaces the onnxruntime
package, so it runs from a venv of its own (tests/server_venvs.py: built once, cached), with the
harness's source on its path and the harness's own numpy, numba and onnx versions.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from bench.backends.openvino_options import OpenVINOOptions
from bench.config.records import TargetSpec
from bench.models.inputs import make_inputs
from bench.models.loader import ModelRef, prepare
from tests.helpers import TINY_MLP, load_run_json, run_cli, write_suite
from tests.server_venvs import ServerVenv, ensure_venv

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install 'bench-harness[openvino]')")

ROOT = Path(__file__).parents[1]
STOP = ("{ min_seconds = 0.05, max_seconds = 0.5, min_iterations = 5, warmup_iterations = 2, warmup_seconds = 0.0, "
        "ci_figures = [], repeats = 2 }")
INSTALL_LINE = "pip install 'bench-harness[openvino]'"


def _suite(targets: str, extra: str = "", model: str = "zoo:mlp", bench_extra: str = "") -> str:
    model_args = f"model_args = {TINY_MLP}" if model == "zoo:mlp" else ""
    return textwrap.dedent(f"""
        [suite]
        name = "openvino"

        [targets.ort]
        backend = "onnxruntime"
        providers = ["CPUExecutionProvider"]
        intra_op_threads = 1
    """) + textwrap.dedent(extra) + textwrap.dedent(f"""
        [[benchmark]]
        name = "m"
        model = "{model}"
        {model_args}
        batch_sizes = [2]
        scenarios = ["single-stream"]
        targets = {targets}
        stop = {STOP}
        accuracy = {{ samples = 16 }}
        {bench_extra}
    """)


OV_TARGETS = """
    [targets.ov]
    backend = "openvino"
    threads = 1

    [targets.ov-tput]
    backend = "openvino"
    hint = "throughput"
    num_streams = 2
    threads = 2

    [targets.ov-int8]
    backend = "openvino"
    precision = "int8-static"
    threads = 1
    quantize = { samples = 8 }
"""


def _bench(*argv: str, env: dict | None = None, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "bench.cli", *argv], capture_output=True, text=True, timeout=280,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def ov_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    tmp = tmp_path_factory.mktemp("openvino-run")
    # A tiny random MLP's int8 answers may change a top-1 now and then: int8's accuracy figure is
    # bench.analysis.accuracy's to test; here the limit only keeps the exit code about this backend.
    suite = write_suite(tmp, _suite('["ort", "ov", "ov-tput", "ov-int8"]', OV_TARGETS,
                                    bench_extra='tolerance = { "int8-static" = 0.5 }'))
    done = _bench("run", str(suite), "--out", str(tmp / "r"))
    return done, {c["target"]["name"]: c for c in load_run_json(tmp / "r")["cells"]}


def test_fp32_cell_is_measured_and_agrees_with_onnxruntime(ov_run):
    done, cells = ov_run
    assert done.returncode == 0, done.stderr[-3000:]
    cell = cells["ov"]
    assert cell["status"] == "ok"
    assert cell["metrics"]["throughput"]["value"] > 0 and cell["metrics"]["latency_ms"]["n"] > 0
    assert cell["timing_boundary"] == "end_to_end"
    target = cell["target"]
    assert target["runtime"] == f"openvino {version('openvino')}"
    details = target["details"]
    # read back from the compiled model: what ran, not what was asked
    assert details["inference_precision"] == "f32" and details["execution_mode"] == "accuracy"
    assert details["threads"] == 1 and details["num_streams"] == 1 and details["compute_threads"] == 1
    assert details["model_precision"] == "fp32" and " f32 x" in details["executed_layers"]
    assert "quantize_s" not in details
    agreement = cell["agreement"]
    assert agreement["reference"] == "ort" and agreement["verdict"] == "pass", agreement
    assert agreement["max_rel_error"] <= 1e-4


def test_the_hint_is_recorded_as_in_effect(ov_run):
    _, cells = ov_run
    assert cells["ov"]["target"]["knobs"]["hint"] == "latency"
    assert cells["ov"]["target"]["details"]["hint"] == "latency"
    tput = cells["ov-tput"]
    assert tput["status"] == "ok" and tput["agreement"]["verdict"] == "pass"
    details = tput["target"]["details"]
    assert details["hint"] == "throughput"
    # two streams on two threads (OpenVINO lowers streams it cannot give a thread each: a
    # machine with one core would read 1), each call computed by a stream's share
    assert 1 <= details["num_streams"] <= 2 and details["threads"] >= 1
    assert details["compute_threads"] == max(1, details["threads"] // details["num_streams"])


def test_int8_static_cell_runs_the_qdq_model_in_int8(ov_run):
    _, cells = ov_run
    cell = cells["ov-int8"]
    assert cell["status"] == "ok", cell["reason"]
    details = cell["target"]["details"]
    assert details["model_precision"].startswith("int8-static (minmax-pc-n8): ")
    assert "ops int8" in details["model_precision"]
    assert isinstance(details["quantize_s"], float) and details["quantize_s"] >= 0
    assert cell["model"]["quantize_s"] is not None
    # OpenVINO's low-precision transformations ran: layers executed in u8/i8, not f32 only
    assert " u8 x" in details["executed_layers"] or " i8 x" in details["executed_layers"], details["executed_layers"]
    assert details["inference_precision"] == "f32"  # what was not quantized runs in f32
    assert cell["agreement"]["accuracy"] is not None and cell["agreement"]["accuracy"]["samples"] == 16
    assert cell["target"]["knobs"]["quantize"]["samples"] == 8


@pytest.mark.parametrize("knob, expected", [
    ('hint = "latncy"', "targets.ov.hint: 'latncy' is not allowed; did you mean 'latency'? "
                        "(allowed: latency, throughput)"),
    ('device = "cuda"', "targets.ov.device: 'cuda' is not allowed: the openvino backend targets OpenVINO's CPU "
                        "plugin (allowed: cpu)"),
    ('precision = "int8-dynamic"', "targets.ov.precision: 'int8-dynamic' is not supported on openvino targets"),
    ('precision = "fp16"', "targets.ov.precision: 'fp16' is not supported on openvino targets"),
    ("num_streams = -1", "targets.ov.num_streams: -1 is not allowed"),
])
def test_bad_targets_are_one_line_config_errors(tmp_path, capsys, knob, expected):
    extra = f'\n[targets.ov]\nbackend = "openvino"\n{knob}\n'
    suite = write_suite(tmp_path, _suite('["ort", "ov"]', extra))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err
    if "precision" in knob:
        assert "(allowed: fp32, bf16, int8-static)" in err


def test_options_need_no_openvino():
    """Config checks import no runtime: the knobs module stands alone."""
    code = ("import sys; import bench.backends.registry, bench.config.suite; "
            "assert 'openvino' not in sys.modules, 'config imported openvino'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert OpenVINOOptions().model_form("int8-static") == "onnx-int8-static"
    assert OpenVINOOptions().model_form("bf16") == "onnx"


def test_without_openvino_the_cell_is_skipped_with_the_install_line(tmp_path):
    """A machine without openvino (an import hook on the path refuses it, for the parent's
    find_spec and the worker's import alike): the parent skips the cell before any worker starts,
    naming the install line, as it skips a cuda target on a machine without a GPU."""
    blocker = tmp_path / "no-openvino"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n\n\nclass _NoOpenVINO:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'openvino' or name.startswith('openvino.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n\n\nsys.meta_path.insert(0, _NoOpenVINO())\n")
    suite = write_suite(tmp_path, _suite('["ort", "ov"]', '\n[targets.ov]\nbackend = "openvino"\n'))
    done = _bench("run", str(suite), "--out", str(tmp_path / "r"), env={"PYTHONPATH": str(blocker)})
    cells = {c["target"]["name"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    assert cells["ort"]["status"] == "ok"
    cell = cells["ov"]
    assert cell["status"] == "skipped", cell
    assert INSTALL_LINE in cell["reason"] and cell["reason"].startswith("openvino is not installed here")
    assert "Traceback" not in done.stderr
    assert done.returncode == 0, done.stderr[-2000:]


# --- the backend in-process ----------------------------------------------------------------------

TINY = (("classes", 4), ("depth", 1), ("in_features", 8), ("width", 16))


@pytest.fixture(scope="module")
def mlp():
    return prepare(ModelRef("zoo:mlp", "zoo", TINY, seed=0), need_onnx=True, need_torch=False)


def _feeds(model, batch: int = 3) -> dict[str, np.ndarray]:
    return make_inputs(model.inputs, batch, 1)


def test_each_bind_gets_its_own_request_and_outputs_agree_with_onnxruntime(mlp):
    from bench import backends

    ov_backend = backends.create("openvino")
    ov_backend.load(mlp, TargetSpec("ov", "openvino", "cpu", "fp32", OpenVINOOptions(threads=1)))
    ort_backend = backends.create("onnxruntime")
    from bench.backends.options import OrtOptions

    ort_backend.load(mlp, TargetSpec("ort", "onnxruntime", "cpu", "fp32", OrtOptions(intra_op_threads=1)))
    feeds = _feeds(mlp)
    first, second = ov_backend.bind(feeds), ov_backend.bind(feeds)
    assert first.fn.__self__ is not second.fn.__self__  # one infer request per caller
    first.fn(*first.args)
    second.fn(*second.args)
    ours, ref = ov_backend.outputs(feeds), ort_backend.outputs(feeds)
    assert [o.dtype for o in ours] == [np.float64] * len(ref)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the bound request's own outputs are those too (the measured call computes the answer)
    np.testing.assert_allclose(first.fn.__self__.get_output_tensor(0).data, ref[0], rtol=1e-5, atol=1e-6)


def test_bf16_reads_back_the_precision_that_ran(mlp):
    from bench import backends

    backend = backends.create("openvino")
    backend.load(mlp, TargetSpec("ov", "openvino", "cpu", "bf16", OpenVINOOptions(threads=1)))
    details = backend.info().details
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" in caps:
        assert details["inference_precision"] == "bf16" and "precision_note" not in details
    else:  # a CPU without bf16 runs f32, and the cell says so
        assert details["inference_precision"] == "f32" and "bf16 was asked, f32 ran" in details["precision_note"]


# --- ONNX Runtime's OpenVINO execution provider ---------------------------------------------------

ORT_OPENVINO = "onnxruntime-openvino==1.24.1"
# The harness's own dependencies at the versions it runs with here (torch is not needed for an ONNX
# file); onnxruntime-openvino stands in for onnxruntime.
_HARNESS_DEPS = ("numpy", "numba", "onnx", "psutil", "rich", "tomli-w", "nvidia-ml-py")


def _ep_venv() -> ServerVenv:
    return ServerVenv("onnxruntime-openvino", (ORT_OPENVINO, *(f"{d}=={version(d)}" for d in _HARNESS_DEPS)),
                      build_timeout_s=900.0)


def _tiny_onnx(path: Path) -> Path:
    """A two-layer MLP as a plain ONNX graph (no torch in the provider's venv), batch dynamic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((16, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    w2 = rng.standard_normal((32, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
                               numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what onnxruntime 1.17 and later read
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


EP_TARGETS = """
    [targets.ov-ep]
    backend = "onnxruntime"
    providers = ["OpenVINOExecutionProvider"]
"""


def test_openvino_execution_provider_missing_says_what_to_install(tmp_path):
    """In the harness's own venv (plain onnxruntime) the provider is absent: the cell names the
    package that brings it."""
    import onnxruntime

    if "OpenVINOExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the OpenVINO provider")
    model = _tiny_onnx(tmp_path / "mlp.onnx")
    suite = write_suite(tmp_path, _suite('["ort", "ov-ep"]', EP_TARGETS, model=str(model)))
    done = _bench("run", str(suite), "--out", str(tmp_path / "r"))
    cells = {c["target"]["name"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    assert cells["ort"]["status"] == "ok"
    cell = cells["ov-ep"]
    assert cell["status"] == "skipped" and done.returncode == 0  # the parent skips it, naming what brings it
    assert cell["reason"].startswith("provider OpenVINOExecutionProvider is not installed in this onnxruntime build")
    assert "pip install onnxruntime-openvino in place of onnxruntime" in cell["reason"]


def test_openvino_execution_provider_runs_from_its_own_venv(tmp_path):
    try:
        built = ensure_venv(_ep_venv())
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{ORT_OPENVINO} did not install here: {str(exc).splitlines()[0]}")
    venv = built.venv
    # The harness from this source tree: bench from the repository root, and its kernels under
    # the name they are installed as (bench_kernels, a directory the checkout calls kernels/).
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "bench_kernels").symlink_to(ROOT / "kernels", target_is_directory=True)
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{shim}",
           # numba's cache beside the kernels belongs to the harness's venv; this one keeps its own
           "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    model = _tiny_onnx(tmp_path / "mlp.onnx")
    suite = write_suite(tmp_path, _suite('["ort", "ov-ep"]', EP_TARGETS, model=str(model)))
    done = _bench("run", str(suite), "--out", str(tmp_path / "r"), env=env, python=venv.executable())
    assert done.returncode == 0, done.stderr[-3000:]
    cells = {c["target"]["name"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    cell = cells["ov-ep"]
    assert cell["status"] == "ok", cell["reason"]
    # the provider ran (first: ORT appends CPUExecutionProvider for the nodes it does not take)
    assert cell["target"]["providers"][0] == "OpenVINOExecutionProvider"
    assert cell["target"]["runtime"] == f"onnxruntime {ORT_OPENVINO.split('==')[1]}"
    assert cell["agreement"]["verdict"] == "pass", cell["agreement"]
