"""Typed knobs of each backend, declared apart from the backends so config imports no runtime.

Each record is frozen and read from a [targets.NAME] table by the codec; `validate` returns
(key, message) for a bad value, `check_target` (key, message) when the knobs do not fit the
target's device or precision, and `model_form` names the prepared form of the model the backend
loads (so the runner prepares only what the suite's targets need).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bench.codec import did_you_mean

GRAPH_OPT_LEVELS = ("disable", "basic", "extended", "all")
TORCH_MODES = ("eager", "compile", "cudagraph")
# torch.compile's own mode names (torch/_inductor/list_mode_options).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Where a CUDA target's inputs live: "device" (already there; timed with CUDA events) or "host"
# (copied in and out on every call, host timer: the end-to-end figure a client sees).
IO_PLACES = ("device", "host")
# Provider names onnxruntime knows (its get_all_providers()), kept here so validating a config
# needs no onnxruntime import; a name not in this list is a typo, not a missing install.
KNOWN_PROVIDERS = (
    "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
    "ROCMExecutionProvider", "MIGraphXExecutionProvider", "DnnlExecutionProvider",
    "OpenVINOExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider",
    "NnapiExecutionProvider", "QNNExecutionProvider", "XnnpackExecutionProvider",
    "ACLExecutionProvider", "ArmNNExecutionProvider", "VitisAIExecutionProvider",
    "WebGpuExecutionProvider", "AzureExecutionProvider", "NvTensorRTRTXExecutionProvider",
)
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "NvTensorRTRTXExecutionProvider")


def missing_provider(requested: tuple[str, ...], available: list[str], cuda: bool) -> str | None:
    """Why onnxruntime cannot run these providers here (the first one its build lacks, and what
    brings it), or None. Said the same by the parent (a skipped cell) and the worker."""
    missing = [p for p in requested if p not in available]
    if not missing:
        return None
    hint = ""
    if cuda:
        hint = "; for CUDA install onnxruntime-gpu in place of onnxruntime"
    elif missing[0] == "OpenVINOExecutionProvider":
        hint = "; pip install onnxruntime-openvino in place of onnxruntime (they cannot share an environment)"
    return f"provider {missing[0]} is not installed in this onnxruntime build (available: {', '.join(available)}){hint}"


def _choice(obj: Any, *keys_allowed: tuple[str, tuple[str, ...]]) -> tuple[str, str] | None:
    """(key, message) for the first knob whose value is not among its allowed ones."""
    for key, allowed in keys_allowed:
        value = getattr(obj, key)
        if value not in allowed:
            return key, f"{value!r} is not allowed{did_you_mean(value, allowed)} (allowed: {', '.join(allowed)})"
    return None


def _nonneg(obj: Any, *keys: str) -> tuple[str, str] | None:
    for key in keys:
        value = getattr(obj, key)
        if value is not None and value < 0:
            return key, f"{value!r} is not allowed; expected an integer >= 0 (0 lets the runtime choose)"
    return None


@dataclass(frozen=True)
class OrtOptions:
    providers: tuple[str, ...] = ()  # empty: CPUExecutionProvider on cpu, CUDA on cuda
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization_level: str = "all"
    allow_spinning: bool = True  # ORT's default; recorded because it changes latency and CPU use
    # Bind inputs and outputs on the device once (run_with_iobinding), or feed host arrays through
    # session.run (on cuda the end-to-end mode: copies in and out included). None: true on cuda.
    io_binding: bool | None = None
    # ORT falls back from a provider it cannot use (TensorRT -> CUDA) with only a log line: that
    # fails the cell unless the target allows it, and the providers that ran are recorded.
    allow_fallback: bool = False

    def validate(self) -> tuple[str, str] | None:
        for i, p in enumerate(self.providers):
            if p not in KNOWN_PROVIDERS:
                return f"providers[{i}]", (f"{p!r} is not an onnxruntime execution provider"
                                           f"{did_you_mean(p, KNOWN_PROVIDERS)}")
        return (_choice(self, ("graph_optimization_level", GRAPH_OPT_LEVELS))
                or _nonneg(self, "intra_op_threads", "inter_op_threads"))

    def resolved_providers(self, device: str) -> tuple[str, ...]:
        if self.providers:
            return self.providers
        return ("CUDAExecutionProvider",) if device.startswith("cuda") else ("CPUExecutionProvider",)

    def unavailable(self, device: str) -> str | None:
        """Why this machine's onnxruntime cannot run the target (a provider its build lacks), or None:
        the cell is skipped with the reason, as a CUDA target is on a machine without a GPU."""
        import onnxruntime

        return missing_provider(self.resolved_providers(device), onnxruntime.get_available_providers(),
                                device.startswith("cuda"))

    def uses_io_binding(self, device: str) -> bool:
        return device.startswith("cuda") if self.io_binding is None else self.io_binding

    def check_target(self, device: str, precision: str) -> tuple[str, str] | None:
        cuda = device.startswith("cuda")
        if precision == "bf16":
            # ORT's CUDA provider has bf16 kernels for few ops and no converter ships for it.
            return "precision", ("'bf16' is not supported on onnxruntime targets "
                                 "(allowed: fp32, fp16, int8-dynamic, int8-static)")
        gpu = [p for p in self.resolved_providers(device) if p in GPU_PROVIDERS]
        if precision.startswith("int8") and (cuda or gpu):
            # The CUDA provider runs QDQ graphs by dequantizing (no int8 kernels); TensorRT needs
            # its own calibration tables. int8 here is a CPU deployment target.
            return "precision", f"{precision!r} runs on CPU providers only; set device = \"cpu\""
        if gpu and not cuda:
            return "device", f"{device!r} does not fit provider {gpu[0]}; set device = \"cuda\""
        if cuda and not gpu:
            return "providers", (f"device {device!r} needs a GPU provider first in the list "
                                 f"(allowed: {', '.join(GPU_PROVIDERS)})")
        return None

    def cpu_threads(self) -> int:
        """The compute threads it asks for (0: the runtime's default), the cores a fleet unit reserves."""
        return self.intra_op_threads

    def serial_only(self) -> str | None:
        return None

    def model_form(self, precision: str) -> str:
        # fp16 runs an fp16 model converted from the fp32 export (bench.models.loader.fp16_onnx);
        # int8 a quantized one (bench.models.quantize), named with its settings by the TargetSpec
        if precision.startswith("int8"):
            return f"onnx-{precision}"
        return "onnx-fp16" if precision == "fp16" else "onnx"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TorchOptions:
    mode: str = "eager"
    threads: int = 0  # torch.set_num_threads; 0 keeps torch's default
    interop_threads: int = 0
    inference_mode: bool = True
    compile_mode: str = "default"  # mode = "compile": torch.compile(mode=...)
    channels_last: bool = False  # 4-D inputs and the module in channels_last (NHWC) memory format
    io: str = "device"  # cuda only: see IO_PLACES

    def validate(self) -> tuple[str, str] | None:
        problem = _choice(self, ("mode", TORCH_MODES), ("compile_mode", COMPILE_MODES), ("io", IO_PLACES))
        if problem:
            return problem
        if self.compile_mode != "default" and self.mode != "compile":
            return "compile_mode", f"applies to mode = \"compile\" only (this target's mode is {self.mode!r})"
        return _nonneg(self, "threads", "interop_threads")

    def check_target(self, device: str, precision: str) -> tuple[str, str] | None:
        cuda = device.startswith("cuda")
        if self.mode == "cudagraph" and not cuda:
            return "mode", "'cudagraph' captures CUDA graphs; set device = \"cuda\" (allowed on cpu: eager, compile)"
        if self.io == "host" and not cuda:
            return "io", "'host' copies inputs to a GPU on every call; it applies to cuda targets only"
        if precision.startswith("int8") and cuda:
            return "precision", f"{precision!r} runs on the CPU only (x86 int8 kernels); set device = \"cpu\""
        if precision == "int8-static" and self.mode != "compile":
            # PT2E's converted graph runs reference (dequantize-compute-quantize) ops in eager:
            # only inductor lowers it to int8 kernels.
            return "mode", "'int8-static' (PT2E) runs compiled; set mode = \"compile\" (or use precision = \"int8-dynamic\")"
        return None

    def cpu_threads(self) -> int:
        """The compute threads it asks for (0: the runtime's default), the cores a fleet unit reserves."""
        return self.threads

    def serial_only(self) -> str | None:
        if self.mode == "cudagraph":
            # Concurrent replays of one CUDA graph must be serialized by the caller (CUDA's graph
            # thread-safety rule), and one graph per shape would be shared by all clients.
            return "replays one CUDA graph, which clients on threads cannot share (use an eager or compile target)"
        return None

    def model_form(self, precision: str) -> str:
        return "torch"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PluginOptions:
    """Knobs of a user backend named as module:Class, passed through unvalidated; the model form
    is the class's `model_form` (bench.backends.base.Backend: "onnx" unless it says otherwise)."""

    items: tuple[tuple[str, Any], ...] = ()
    form: str = "onnx"

    def check_target(self, device: str, precision: str) -> tuple[str, str] | None:
        return None

    def cpu_threads(self) -> int:
        """The compute threads it asks for (0: the runtime's default), the cores a fleet unit reserves."""
        return 0

    def serial_only(self) -> str | None:
        return None

    def model_form(self, precision: str) -> str:
        return self.form

    def to_dict(self) -> dict[str, Any]:
        return dict(self.items)

