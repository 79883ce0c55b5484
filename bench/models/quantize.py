"""int8 forms of an ONNX model, made once in the parent and cached by content like an export.

onnxruntime.quantization does the work: `int8-dynamic` (quantize_dynamic: int8 weights, activations
quantized per call from their observed range) and `int8-static` (quantize_static in the QDQ format:
QuantizeLinear/DequantizeLinear pairs around each quantizable op, scales from calibration on sample
inputs with the target's method; the fused int8 kernels are chosen at session creation). Weights are
signed int8 and activations unsigned (ORT's U8S8 default on x86, where VNNI's dot product takes u8 x s8).

The cache key is the fp32 model's hash, the onnxruntime version, the form (precision and settings)
and the calibration inputs' hash, so a changed calibration file makes a new model. How many ops were
quantized is counted from the graph each time: a graph with no quantizable op runs, and says so.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ModelError
from bench.models.cache import cache_dir, cached

QUANT_FORMAT = 1  # bump when the quantization settings below change
# Ops that carry int8 arithmetic in a quantized graph (QDQ graphs: the ops between a
# DequantizeLinear pair are counted through their QuantizeLinear nodes instead).
_INTEGER_OPS = ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul",
                "QGemm", "QAttention", "DynamicQuantizeLSTM")


@dataclass(frozen=True)
class QuantizedModel:
    path: str
    precision: str  # int8-dynamic | int8-static
    settings: str  # QuantizeSpec.key()
    seconds: float  # quantizing (and calibrating) here in this run; 0.0 when it was cached
    quantized_ops: int  # ops that compute in int8 (dynamic) or weights/activations quantized (QDQ)
    float_ops: int  # compute ops left in float
    note: str = ""  # "nothing was quantized: ..." and the like

    def describe(self) -> str:
        if not self.quantized_ops:
            return f"{self.precision} ({self.settings}): {self.note}"
        return f"{self.precision} ({self.settings}): {self.quantized_ops} ops int8, {self.float_ops} left in float"


# Compute ops a quantizer could take (what "left in float" counts); the rest move or reshape data.
_COMPUTE_OPS = ("Conv", "MatMul", "Gemm", "Attention", "LSTM", "GRU", "ConvTranspose")


def _count(path: str) -> tuple[int, int]:
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    integer = sum(op in _INTEGER_OPS for op in ops)
    # QDQ: a compute op fed by a DequantizeLinear of a weight is int8 once ORT fuses the pair.
    produced_by = {o: n.op_type for n in graph.node for o in n.output}
    qdq = sum(1 for n in graph.node if n.op_type in _COMPUTE_OPS
              and any(produced_by.get(i) == "DequantizeLinear" for i in n.input))
    left = sum(1 for n in graph.node if n.op_type in _COMPUTE_OPS
               and not any(produced_by.get(i) == "DequantizeLinear" for i in n.input))
    return integer + qdq, left


def _feeds_sha(feeds: dict[str, np.ndarray]) -> str:
    from bench.models.inputs import inputs_sha256

    return inputs_sha256(feeds)


class _Reader:
    """onnxruntime's CalibrationDataReader: one sample at a time (the batch axis kept)."""

    def __init__(self, feeds: dict[str, np.ndarray]):
        count = len(next(iter(feeds.values())))
        self._samples = [{n: a[i:i + 1] for n, a in feeds.items()} for i in range(count)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._samples):
            return None
        self._next += 1
        return self._samples[self._next - 1]

    def rewind(self) -> None:  # the entropy and percentile calibraters may read twice
        self._next = 0


def quantize_onnx(fp32_path: str, sha256: str, ref: str, precision: str, quantize: Any,
                  calibration: dict[str, np.ndarray] | None) -> QuantizedModel:
    """The int8 form of `fp32_path` for this precision and QuantizeSpec, cached by content.
    Raises ModelError when onnxruntime's quantizer cannot take the graph (one line)."""
    import onnxruntime

    feeds_key = _feeds_sha(calibration) if (precision == "int8-static" and calibration) else "-"
    key = hashlib.sha256(f"{sha256}|{onnxruntime.__version__}|{precision}|{quantize.key()}|{feeds_key}|"
                         f"{QUANT_FORMAT}".encode()).hexdigest()[:24]
    out = cache_dir() / f"{Path(fp32_path).stem}-{precision}-{key}.onnx"
    t0 = time.perf_counter()
    built = [False]

    def build(tmp: Path) -> None:
        built[0] = True
        from bench.models.quiet import quiet

        try:
            # onnxruntime.quantization logs a WARNING per weight it cannot take per channel (a
            # LayerNorm's 1-D weight, 25 lines for a BERT-base) on the root logger: kept off stderr
            with quiet():
                _quantize(fp32_path, tmp, precision, quantize, calibration)
        except (OSError, MemoryError):
            raise
        except Exception as exc:  # the quantizer's failures are about the graph
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelError(f"model {ref!r}: {precision} quantization failed: {type(exc).__name__}: {first}") from None

    path = str(cached(out, build))
    seconds = time.perf_counter() - t0 if built[0] else 0.0
    quantized, left = _count(path)
    note = "" if quantized else (f"nothing was quantized: the graph has no op onnxruntime's {precision} quantizer "
                                 "takes (Conv, MatMul, Gemm, ...); it runs as fp32")
    return QuantizedModel(path, precision, quantize.key(), seconds, quantized, left, note)


def _quantize(src: str, dst: Path, precision: str, quantize: Any, calibration: dict[str, np.ndarray] | None) -> None:
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=dst.parent) as work:
        model_in = src
        # ORT's recommended pre-processing (symbolic shape inference and graph optimisation before
        # quantization); a graph it cannot take is quantized as it is.
        pre = str(Path(work) / "pre.onnx")
        try:
            quant_pre_process(src, pre, skip_symbolic_shape=False)
            model_in = pre
        except Exception:  # quant_pre_process raises whatever its shape inference meets
            model_in = src
        if precision == "int8-dynamic":
            quantize_dynamic(model_in, str(dst), per_channel=quantize.per_channel, weight_type=QuantType.QInt8)
            return
        if not calibration:
            raise ValueError("int8-static needs calibration samples")
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[quantize.method]
        quantize_static(model_in, str(dst), _Reader(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=quantize.per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=method,
                        extra_options={"CalibTensorRangeSymmetric": False})
