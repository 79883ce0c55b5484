"""OpenVINO backend: the prepared ONNX model read by OpenVINO and compiled for its CPU plugin.

Precision is set, never left to the plugin: on a CPU with bf16 support (AMX, AVX512-BF16) the
CPU plugin's default inference precision is bf16, so an fp32 target that did not say f32 would
measure bf16 (seen here: INFERENCE_PRECISION_HINT reads back bfloat16 when unset). fp32 targets
compile with f32, bf16 targets with bf16 (the same fp32 model: the plugin converts), and
int8-static targets read the QDQ model the parent quantized with onnxruntime.quantization
(bench.models.quantize): OpenVINO's low-precision transformations fold each Quantize/Dequantize
pair into int8 (u8 x i8) kernels and run what is left in f32. EXECUTION_MODE_HINT is ACCURACY,
which keeps the plugin from trading accuracy on its own (dynamic quantization of activations is
off: DYNAMIC_QUANTIZATION_GROUP_SIZE reads back 0), so what differs from the reference is the
precision the target names. What ran is read back from the compiled model, not assumed: the hint,
streams and threads in effect, the inference precision (a CPU without bf16 runs f32, and the cell
says so), and the executed graph's layers by the precision they ran in.

bind() gives each caller its own infer request with its input tensors set once, sharing the
numpy arrays' memory; the measured call is request.infer(), which returns when the outputs are
written (the end_to_end boundary: host inputs, host outputs, no copies in the loop; the Python
wrapper's call of a 16-wide MLP took about 14 µs here, its C++ binding's 13 µs).
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from bench.backends.base import Backend, BackendInfo
from bench.errors import CellFailure
from bench.measure.timing import BoundCall

INSTALL = "pip install 'bench-harness[openvino]' (or: pip install 'openvino>=2024.6')"
_PRECISION_HINT = {"fp32": "f32", "bf16": "bf16", "int8-static": "f32"}  # int8: the unquantized rest in f32
# Layers of the executed graph that are bookkeeping, not compute (left out of executed_layers).
_NOT_COMPUTE = ("Input", "Output", "Const", "Reorder", "Convert")


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise CellFailure(f"openvino is not installed here ({exc}); install it: {INSTALL}", kind="unsupported") from None
    return openvino


def _version(ov: Any) -> str:
    try:
        from importlib.metadata import version

        return version("openvino")
    except Exception:  # a build without its dist-info: the runtime's own build string
        return str(ov.__version__).split("-")[0]


def _precision_name(value: Any) -> str:
    """An ov.Type read back as OpenVINO writes it in a config: bfloat16 -> "bf16", float32 -> "f32"."""
    name = getattr(value, "to_string", lambda: str(value))()
    return {"bfloat16": "bf16", "float32": "f32", "float16": "f16"}.get(name, name)


def executed_layers(compiled: Any) -> str:
    """The executed graph's compute layers by the precision they ran in: "FullyConnected u8 x2,
    FakeQuantize f32 x1" (the CPU plugin's runtime model, after its fusions)."""
    counts: Counter[tuple[str, str]] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        layer, precision = rt["layerType"].astype(str), rt["runtimePrecision"].astype(str)
        if layer not in _NOT_COMPUTE:
            counts[(layer, precision)] += 1
    return ", ".join(f"{layer} {precision} x{n}" for (layer, precision), n in sorted(counts.items()))


class OpenVINOBackend(Backend):
    def __init__(self) -> None:
        self.compiled: Any = None
        self._ov: Any = None
        self._info = BackendInfo()
        self._bound: list[Any] = []  # requests and the arrays their tensors share, kept alive

    def load(self, model: Any, target: Any) -> None:
        ov = _import_openvino()
        self._ov = ov
        opts = target.options
        quantized = None
        if target.precision == "int8-static":
            quantized = model.quantized_form(target.model_form)
            path = quantized.path if quantized is not None else None
        else:
            path = model.onnx_path
        if path is None:
            raise CellFailure(f"model {model.source.ref!r} has no {target.precision} ONNX form for openvino")
        requested = _PRECISION_HINT[target.precision]
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": opts.hint.upper(),
            "INFERENCE_PRECISION_HINT": requested,
            "EXECUTION_MODE_HINT": "ACCURACY",
        }
        if opts.num_streams:
            config["NUM_STREAMS"] = opts.num_streams
        if opts.threads:
            config["INFERENCE_NUM_THREADS"] = opts.threads
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(path), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError (its own Exception) for a model or setting it refuses
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise CellFailure(f"openvino cannot compile the model for CPU: {type(exc).__name__}: {first}") from None
        c = self.compiled
        streams, threads = int(c.get_property("NUM_STREAMS")), int(c.get_property("INFERENCE_NUM_THREADS"))
        in_effect = _precision_name(c.get_property("INFERENCE_PRECISION_HINT"))
        details: dict[str, Any] = {
            "hint": str(c.get_property("PERFORMANCE_HINT")).lower(),
            "num_streams": streams,
            "threads": threads,
            # the threads that compute one call: a stream's share (0: OpenVINO's default, one per core)
            "compute_threads": max(1, (threads or len(os.sched_getaffinity(0))) // max(1, streams)),
            "optimal_requests": int(c.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")),
            "inference_precision": in_effect,
            "execution_mode": str(c.get_property("EXECUTION_MODE_HINT")).rsplit(".", 1)[-1].lower(),
            "cpu_pinning": bool(c.get_property("ENABLE_CPU_PINNING")),
            "executed_layers": executed_layers(c),
            "model_precision": quantized.describe() if quantized is not None else "fp32",
        }
        if in_effect != requested:
            caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            details["precision_note"] = (f"{requested} was asked, {in_effect} ran: this CPU's OpenVINO capabilities "
                                         f"are {', '.join(caps)}")
        if quantized is not None:
            # the one-off cost of quantizing (and calibrating) in the parent; 0.0: read from the cache
            details["quantize_s"] = quantized.seconds
        self._info = BackendInfo(runtime=f"openvino {_version(ov)}", details=details)

    def bind(self, feeds: dict[str, np.ndarray]) -> BoundCall:
        assert self.compiled is not None
        request = self.compiled.create_infer_request()
        arrays = {name: np.ascontiguousarray(arr) for name, arr in feeds.items()}
        for name, arr in arrays.items():
            # shared_memory: the tensor reads the array in place (no copy into OpenVINO's memory)
            request.set_tensor(name, self._ov.Tensor(arr, shared_memory=True))
        self._bound.append((request, arrays))
        # infer(inputs=None, share_inputs=False, share_outputs=True): the tensors set above, and
        # the outputs handed back as views of OpenVINO's buffers (no copy into numpy per call)
        return BoundCall(request.infer, (None, False, True))

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert self.compiled is not None
        request = self.compiled.create_infer_request()
        results = request.infer({name: np.ascontiguousarray(arr) for name, arr in feeds.items()})
        return [np.asarray(results[out], dtype=np.float64) for out in self.compiled.outputs]

    def info(self) -> BackendInfo:
        return self._info
