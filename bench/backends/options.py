"""Typed knobs of each backend, declared apart from the backends so config imports no runtime.

Each record is frozen; `validate` returns (key, message) for a bad value, `check_target`
returns (key, message) when the knobs do not fit the target's device or precision.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

GRAPH_OPT_LEVELS = ("disable", "basic", "extended", "all")
TORCH_MODES = ("eager",)
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


class TargetOptions(Protocol):
    def to_dict(self) -> dict[str, Any]: ...
    def check_target(self, device: str, precision: str) -> tuple[str, str] | None: ...


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

    def validate(self) -> tuple[str, str] | None:
        for i, p in enumerate(self.providers):
            if p not in KNOWN_PROVIDERS:
                import difflib

                close = difflib.get_close_matches(p, KNOWN_PROVIDERS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                return f"providers[{i}]", f"{p!r} is not an onnxruntime execution provider{hint}"
        if self.graph_optimization_level not in GRAPH_OPT_LEVELS:
            return "graph_optimization_level", (
                f"{self.graph_optimization_level!r} is not allowed (allowed: {', '.join(GRAPH_OPT_LEVELS)})"
            )
        return _nonneg(self, "intra_op_threads", "inter_op_threads")

    def resolved_providers(self, device: str) -> tuple[str, ...]:
        if self.providers:
            return self.providers
        return ("CUDAExecutionProvider",) if device.startswith("cuda") else ("CPUExecutionProvider",)

    def check_target(self, device: str, precision: str) -> tuple[str, str] | None:
        if precision != "fp32":
            return "precision", f"{precision!r} is not supported yet on onnxruntime targets (allowed: fp32)"
        gpu = [p for p in self.resolved_providers(device) if p in GPU_PROVIDERS]
        if gpu and not device.startswith("cuda"):
            return "device", f"{device!r} does not fit provider {gpu[0]}; set device = \"cuda\""
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TorchOptions:
    mode: str = "eager"
    threads: int = 0  # torch.set_num_threads; 0 keeps torch's default
    interop_threads: int = 0
    inference_mode: bool = True

    def validate(self) -> tuple[str, str] | None:
        if self.mode not in TORCH_MODES:
            return "mode", f"{self.mode!r} is not allowed (allowed: {', '.join(TORCH_MODES)})"
        return _nonneg(self, "threads", "interop_threads")

    def check_target(self, device: str, precision: str) -> tuple[str, str] | None:
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PluginOptions:
    """Knobs of a user backend named as module:Class, passed through unvalidated."""

    items: tuple[tuple[str, Any], ...] = ()

    def check_target(self, device: str, precision: str) -> tuple[str, str] | None:
        return None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.items)


BACKEND_OPTIONS: dict[str, type] = {"onnxruntime": OrtOptions, "torch": TorchOptions}
