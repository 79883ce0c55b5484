"""Knobs of the OpenVINO backend (bench.backends.openvino), apart from it so config imports no openvino.

OpenVINO reads the prepared ONNX model and compiles it for its CPU plugin. Precisions: fp32 and
bf16 (the same fp32 model, compiled with that inference precision), and int8-static: the QDQ model
the parent quantized with onnxruntime.quantization (bench.models.quantize), which OpenVINO's
low-precision transformations turn into int8 kernels. int8-dynamic (onnxruntime's
DynamicQuantizeLinear / MatMulInteger graph) is onnxruntime's own form and fp16 a GPU precision.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bench.backends.options import _choice, _nonneg

# ov::hint::PerformanceMode: LATENCY keeps one stream (one request's work spread over the cores),
# THROUGHPUT several streams running requests side by side (more requests in flight, each slower).
OPENVINO_HINTS = ("latency", "throughput")
OPENVINO_PRECISIONS = ("fp32", "bf16", "int8-static")


@dataclass(frozen=True)
class OpenVINOOptions:
    hint: str = "latency"  # PERFORMANCE_HINT
    num_streams: int = 0  # NUM_STREAMS; 0: the hint chooses
    threads: int = 0  # INFERENCE_NUM_THREADS; 0: OpenVINO chooses (one per core)

    def validate(self) -> tuple[str, str] | None:
        return _choice(self, ("hint", OPENVINO_HINTS)) or _nonneg(self, "num_streams", "threads")

    def unavailable(self, device: str) -> str | None:
        """Why this machine cannot run the target (openvino not importable), or None: the cell is
        skipped with the install line. find_spec imports nothing."""
        import importlib.util

        try:
            spec = importlib.util.find_spec("openvino")
        except (ImportError, ValueError):  # an import hook that refuses it, a broken install
            spec = None
        if spec is None:
            from bench.backends.openvino import INSTALL

            return f"openvino is not installed here; install it: {INSTALL}"
        return None

    def check_target(self, device: str, precision: str) -> tuple[str, str] | None:
        if device != "cpu":
            return "device", (f"{device!r} is not allowed: the openvino backend targets OpenVINO's CPU plugin "
                              "(allowed: cpu)")
        if precision not in OPENVINO_PRECISIONS:
            why = {"int8-dynamic": " (int8 on OpenVINO runs the calibrated QDQ model: int8-static)",
                   "fp16": " (fp16 is a GPU precision; on CPU use bf16)"}.get(precision, "")
            return "precision", (f"{precision!r} is not supported on openvino targets{why} "
                                 f"(allowed: {', '.join(OPENVINO_PRECISIONS)})")
        return None

    def cpu_threads(self) -> int:
        """The compute threads it asks for (0: the runtime's default), the cores a fleet unit reserves."""
        return self.threads

    def serial_only(self) -> str | None:
        return None  # each client binds its own infer request

    def model_form(self, precision: str) -> str:
        # bf16 compiles the fp32 model with bf16 inference precision: no converted model needed
        return "onnx-int8-static" if precision == "int8-static" else "onnx"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
