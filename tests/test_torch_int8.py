"""int8 on torch targets (bench.backends.torch.quantize): real modules quantized in real workers
through `bench run`, and what each cell's target details say ran. Agreement figures are left to
the accuracy tests: these check status and the quantization's own record. Compiled cells are few
(torch.compile takes 5-20 s a process on 2 cores)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import load_run_json, run_cli, write_suite

FAST = ("{ min_seconds = 0.1, max_seconds = 0.2, min_iterations = 3, warmup_iterations = 1, warmup_seconds = 0.0, "
        "ci_figures = [], repeats = 1 }")

# User models beside the suite: one whose forward branches on a tensor's value (torch.export
# refuses data-dependent control flow), one with no nn.Linear at all.
MODELS = '''
import torch


class Branchy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(8, 4)
        self.b = torch.nn.Linear(8, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return self.b(x)


class ConvOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def branchy():
    return Branchy(), (torch.randn(2, 8),)


def conv_only():
    return ConvOnly(), (torch.randn(2, 3, 8, 8),)
'''

TARGETS = """
    [suite]
    name = "int8"

    [targets.fp32]
    backend = "torch"
    threads = 1

    [targets.dyn]
    backend = "torch"
    threads = 1
    precision = "int8-dynamic"

    [targets.dyn-compiled]
    backend = "torch"
    threads = 1
    precision = "int8-dynamic"
    mode = "compile"

    [targets.static]
    backend = "torch"
    threads = 1
    mode = "compile"
    precision = "int8-static"
    quantize = { samples = 16 }
"""


def _benchmark(name: str, model: str, targets: str, extra: str = "", batch: int = 2,
               scenarios: str = '["single-stream"]', stop: str = FAST) -> str:
    return f"""
    [[benchmark]]
    name = "{name}"
    model = "{model}"
    {extra}
    batch_sizes = [{batch}]
    scenarios = {scenarios}
    targets = {targets}
    stop = {stop}
    """


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run for every measured case: int8-dynamic eager on zoo:mlp, int8-static compiled on
    zoo:resnet-mini, a module torch.export refuses (int8-static falls back), and one with no Linear."""
    tmp = tmp_path_factory.mktemp("int8")
    (tmp / "int8_models.py").write_text(MODELS)
    suite = write_suite(tmp, TARGETS + "".join((
        _benchmark("mlp", "zoo:mlp", '["fp32", "dyn", "dyn-compiled"]',
                   "model_args = { in_features = 16, width = 32, depth = 2, classes = 4 }", 4),
        _benchmark("resnet", "zoo:resnet-mini", '["fp32", "static"]', "model_args = { width = 8, image = 16 }"),
        _benchmark("branchy", "int8_models:branchy", '["fp32", "static"]'),
        _benchmark("conv", "int8_models:conv_only", '["fp32", "dyn"]'),
    )))
    out = tmp / "r"
    # a subprocess, not cli.main in-process: a module-scoped fixture has no capsys
    done = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(suite), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return {c["id"]: c for c in load_run_json(out)["cells"]}


def _details(cells: dict, cell_id: str) -> dict:
    cell = cells[cell_id]
    assert cell["status"] == "ok", cell.get("reason")
    return cell["target"]["details"]


def test_int8_dynamic_eager_quantizes_the_mlps_linears_and_records_what_and_how_long(run):
    cells = run
    d = _details(cells, "mlp/dyn/b4/single-stream")
    assert d["quantization"].startswith("dynamic Linear int8 (per-channel weights")
    assert d["model_precision"] == "int8-dynamic (minmax-pc-n32): 3 ops int8, 0 left in float"  # depth 2 + the head
    assert d["mode"] == "eager" and d["precision_by"].startswith("quantized")
    assert isinstance(d["quantize_s"], float) and d["quantize_s"] >= 0
    assert cells["mlp/dyn/b4/single-stream"]["agreement"]["verdict"] != "reference"  # checked against fp32
    assert "quantization" not in _details(cells, "mlp/fp32/b4/single-stream")  # fp32 targets say nothing of it


def test_int8_dynamic_compiled_runs_and_says_what_torch_compile_made_of_it(run):
    cells = run
    d = _details(cells, "mlp/dyn-compiled/b4/single-stream")
    assert d["mode"] == "compile" and d["quantization"].startswith("dynamic Linear int8")
    # dynamo cannot trace the packed int8 weights: on this Sequential it captures no graph at all
    assert d["compiled_graphs"] == 0 and d["graph_breaks"] >= 1
    assert "captured no graph" in d["compile_note"] and "ran eager" in d["compile_note"]


def test_int8_static_compiles_the_pt2e_graph_to_int8_kernels(run):
    cells = run
    d = _details(cells, "resnet/static/b2/single-stream")
    assert d["quantization"].startswith("pt2e x86-inductor static (per-channel weights, minmax activation ranges")
    assert "16 calibration samples" in d["quantization"]
    assert d["model_precision"].startswith("int8-static (minmax-pc-n16): ") and "ops int8" in d["model_precision"]
    assert d["mode"] == "compile" and d["quantize_s"] > 0
    # inductor lowered the convolutions and the head to oneDNN int8 kernels (freezing on)
    assert d["int8_kernels"] > 0 and "int8_kernels_note" not in d


def test_a_module_torch_export_refuses_falls_back_to_dynamic_and_says_why(run):
    cells = run
    d = _details(cells, "branchy/static/b2/single-stream")
    assert d["quantization"].startswith("dynamic Linear int8")
    assert "(PT2E did not apply: torch.export failed: " in d["quantization"]
    assert d["model_precision"].startswith("int8-dynamic, int8-static fell back (")
    assert "2 ops int8" in d["model_precision"]
    assert d["graph_breaks"] >= 1 and "compile_note" in d  # the data-dependent branch, the int8 Linears


def test_a_module_with_no_linear_runs_and_says_nothing_was_quantized(run):
    cells = run
    d = _details(cells, "conv/dyn/b2/single-stream")
    assert "nothing was quantized: the module has no nn.Linear" in d["quantization"]
    assert "nothing was quantized" in d["model_precision"]


LOAD_STATIC = """
from bench import backends
from bench.backends.options import TorchOptions
from bench.config.records import QuantizeSpec, TargetSpec
from bench.models.loader import ModelRef, prepare

model = prepare(ModelRef("zoo:mlp", "zoo", (("classes", 4), ("depth", 1), ("in_features", 8), ("width", 16)), seed=0),
                need_onnx=False, need_torch=True)
backend = backends.create("torch")
backend.load(model, TargetSpec("t", "torch", "cpu", "int8-static", TorchOptions(mode="compile"),
                               quantize=QuantizeSpec(samples=4)))
print(backend.info().details["quantization"])
"""


def _load_static(prelude: str = "") -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", prelude + LOAD_STATIC], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_quantizing_writes_nothing_to_stderr():
    """torchao prints "Failed to load ... _C_mxfp8 ... .so" at import on a CPU-only build; a worker's
    stderr tail becomes a failed cell's reason, so quantizing keeps it clean."""
    done = _load_static()
    assert done.stdout.startswith("pt2e x86-inductor static (per-channel weights"), done.stdout
    assert done.stderr == ""


def test_without_torchao_int8_static_falls_back_to_dynamic_and_says_so():
    done = _load_static("import sys; sys.modules['torchao'] = None\n")  # import torchao raises ImportError
    assert done.stdout.startswith("dynamic Linear int8 (per-channel weights"), done.stdout
    assert "(PT2E did not apply: torchao is not installed (" in done.stdout


def test_generate_refuses_int8_static_and_runs_int8_dynamic(tmp_path, capsys):
    suite = write_suite(tmp_path, TARGETS + _benchmark(
        "dec", "zoo:decoder", '["fp32", "dyn", "static"]',
        "model_args = { vocab = 61, hidden = 32, depth = 2, heads = 2, max_len = 48 }\n"
        "    generate = { prompt_len = 6, output_len = 4, requests = 3 }", 1, '["generate"]'))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 3, err  # one cell failed at run time, the other completed
    cells = {c["id"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    static = cells["dec/static/b1/generate/c1"]
    assert static["status"] == "failed" and static["failure_kind"] == "unsupported"
    assert static["reason"].startswith("int8-static torch targets do not generate")
    assert "\n" not in static["reason"]
    dynamic = cells["dec/dyn/b1/generate/c1"]
    assert dynamic["status"] == "ok", dynamic.get("reason")
    assert dynamic["target"]["details"]["quantization"].startswith("dynamic Linear int8")


@pytest.mark.parametrize("target, words", [
    ('precision = "int8-static"\nmode = "eager"', ["targets.t.mode", "'int8-static' (PT2E) runs compiled"]),
    ('precision = "int8-dynamic"\ndevice = "cuda"', ["targets.t.precision", "runs on the CPU only"]),
])
def test_int8_config_the_torch_backend_cannot_run_is_one_line_and_exit_2(tmp_path, capsys, target, words):
    suite = write_suite(tmp_path, f"""
    [suite]
    name = "bad"

    [targets.t]
    backend = "torch"
    {target}
    """ + _benchmark("m", "zoo:mlp", '["t"]'))
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err
