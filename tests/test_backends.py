"""Backends on real runtimes: ONNX Runtime sessions and torch modules, plus the agreement check."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from bench import backends
from bench.analysis.agreement import compare_outputs
from bench.backends.options import OrtOptions, TorchOptions
from bench.config.records import TargetSpec
from bench.errors import CellFailure
from bench.models.inputs import make_inputs
from bench.models.loader import ModelRef, prepare

TINY = (("classes", 4), ("depth", 1), ("in_features", 8), ("width", 16))


@pytest.fixture(scope="module")
def mlp():
    return prepare(ModelRef("zoo:mlp", "zoo", TINY, seed=0), need_onnx=True, need_torch=True)


def ort_target(**knobs) -> TargetSpec:
    return TargetSpec("ort", "onnxruntime", knobs.pop("device", "cpu"), "fp32", OrtOptions(**knobs))


def torch_target(precision="fp32", **knobs) -> TargetSpec:
    return TargetSpec("t", "torch", "cpu", precision, TorchOptions(**knobs))


def test_registry_imports_lazily_and_rejects_unknown():
    with pytest.raises(CellFailure, match="cannot import 'no_such_module_xyz'"):
        backends.create("no_such_module_xyz:Backend")
    assert type(backends.create("onnxruntime")).__name__ == "OrtBackend"


USER_BACKENDS = """
import numpy as np


class Bare:
    # The three required methods only, not deriving from bench.backends.Backend.
    def load(self, model, target):
        self.loaded = True

    def bind(self, feeds):
        return lambda: None

    def outputs(self, feeds):
        return [np.zeros(1)]


class NoBind:
    def load(self, model, target):
        pass

    def outputs(self, feeds):
        return []


class OldGpu(Bare):
    def timing_boundary(self, scenario):
        return "device"
"""


def test_a_user_backend_gets_the_contract_defaults_or_a_line_naming_what_is_missing(tmp_path, monkeypatch):
    from bench.backends import Backend, BackendInfo
    from bench.backends.registry import BackendImportError, backend_class

    (tmp_path / "bench_user_backends.py").write_text(USER_BACKENDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    bare = backends.create("bench_user_backends:Bare")
    assert isinstance(bare, Backend) and type(bare).__name__ == "Bare"
    # every optional capability answers with the declared default of a CPU runtime
    assert bare.info() == BackendInfo(runtime="Bare") and bare.setup_cost() is None
    assert bare.events() is None and bare.device_wait() is None and not bare.resident_on_device()
    assert bare.gpu_memory() is None and bare.cuda_index() is None and bare.model_form == "onnx"
    with bare.context():
        pass
    with pytest.raises(BackendImportError, match="class NoBind has no method 'bind' .*needs load, bind, outputs"):
        backend_class("bench_user_backends:NoBind")
    with pytest.raises(BackendImportError, match="has no class 'Missing'"):
        backend_class("bench_user_backends:Missing")
    with pytest.raises(BackendImportError, match="defines timing_boundary\\(\\), which the backend contract replaced"):
        backend_class("bench_user_backends:OldGpu")


def test_ort_records_providers_and_knobs(mlp):
    backend = backends.create("onnxruntime")
    backend.load(mlp, ort_target(intra_op_threads=1, graph_optimization_level="basic", allow_spinning=False))
    info = backend.info()
    assert info.providers == ("CPUExecutionProvider",)
    assert info.details["intra_op_threads"] == 1 and info.details["allow_spinning"] is False
    feeds = make_inputs(mlp.inputs, 3, 0)
    call = backend.bind(feeds)
    assert call.fn(*call.args)[0].shape == (3, 4)


def test_ort_provider_not_installed_fails_the_cell(mlp):
    assert "DnnlExecutionProvider" not in ort.get_available_providers()
    backend = backends.create("onnxruntime")
    with pytest.raises(CellFailure, match="provider DnnlExecutionProvider is not installed in this onnxruntime build"):
        backend.load(mlp, ort_target(providers=("DnnlExecutionProvider",)))


def test_ort_silent_fallback_fails_the_cell(mlp, monkeypatch):
    # Simulate ORT dropping a requested provider (as it does from TensorRT to CUDA) on a real session.
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["XnnpackExecutionProvider", "CPUExecutionProvider"])
    backend = backends.create("onnxruntime")
    with pytest.raises(CellFailure, match="requested provider XnnpackExecutionProvider is not active .*fell back silently"):
        backend.load(mlp, ort_target(providers=("XnnpackExecutionProvider", "CPUExecutionProvider")))


def test_torch_and_ort_agree_in_fp32(mlp):
    feeds = make_inputs(mlp.inputs, 5, 0)
    o = backends.create("onnxruntime")
    o.load(mlp, ort_target())
    t = backends.create("torch")
    t.load(mlp, torch_target(threads=1))
    agreement = compare_outputs(t.outputs(feeds), o.outputs(feeds), "ort", 1e-4)
    assert agreement.verdict == "pass" and agreement.max_rel_error < 1e-5
    assert t.info().details["threads"] == 1


def test_torch_bf16_is_visibly_less_precise(mlp):
    feeds = make_inputs(mlp.inputs, 5, 0)
    ref = backends.create("torch")
    ref.load(mlp, torch_target())
    low = backends.create("torch")
    low.load(mlp, torch_target("bf16"))
    out = low.outputs(feeds)
    assert compare_outputs(out, ref.outputs(feeds), "ref", 1e-4).verdict == "fail"
    assert compare_outputs(out, ref.outputs(feeds), "ref", 3e-2).verdict == "pass"


def test_agreement_failure_modes():
    ref = [np.array([[1.0, -2.0], [3.0, 4.0]])]
    assert compare_outputs([ref[0] * 1.5], ref, "r", 1e-4).reason.startswith("relative error 0.5 exceeds")
    assert "shape" in compare_outputs([ref[0][:1]], ref, "r", 1e-4).reason
    assert "NaN" in compare_outputs([ref[0] * np.nan], ref, "r", 1e-4).reason
    assert "2 outputs" in compare_outputs(ref * 2, ref, "r", 1e-4).reason
    same = compare_outputs([ref[0].copy()], ref, "r", 1e-4)
    assert same.verdict == "pass" and same.max_abs_error == 0.0
