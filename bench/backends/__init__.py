"""Backends: one module per runtime behind a small Protocol, found by name in a registry.

A backend loads a prepared model for a target, binds input arrays into a zero-argument call for
the measured loop, and returns host outputs for the agreement check. Backends never time
themselves and never write results: the scenario owns the clock.
"""
from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from typing import Any, Callable, NamedTuple, Protocol

import numpy as np

from bench.errors import CellFailure

# name -> "module:Class"; imported lazily so a worker loads only the runtime it uses.
REGISTRY: dict[str, str] = {
    "onnxruntime": "bench.backends.ort:OrtBackend",
    "torch": "bench.backends.torch_backend:TorchBackend",
}


class BoundCall(NamedTuple):
    """One batch's call: fn(*args), with the arguments bound once, outside the measured loop."""

    fn: Callable[..., Any]
    args: tuple = ()


class DeviceEvents(NamedTuple):
    """What a GPU backend gives the scenario to time device work with events on its stream:
    a factory of timing events (record(), elapsed_time(other) in ms) and a device synchronize."""

    new_event: Callable[[], Any]
    synchronize: Callable[[], None]


class Backend(Protocol):
    def load(self, model: Any, target: Any) -> None:
        """Load `model` (bench.models.loader.PreparedModel) for `target` (bench.config.TargetSpec)."""

    def bind(self, feeds: dict[str, np.ndarray]) -> Any:
        """One batch's call on these inputs: a BoundCall (fn, args), or a
        zero-argument callable; the measured loop adds nothing else."""

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Host float64 outputs on these inputs, flattened to a list, for the agreement check."""

    def context(self) -> AbstractContextManager:
        """Entered once around warm-up and measurement (e.g. torch.inference_mode)."""

    def info(self) -> dict[str, Any]:
        """What actually ran: providers, runtime version, threads; compile_s / capture_s where
        the backend had one-off costs."""


# Optional methods of a GPU backend, found with getattr so CPU and user backends need none:
#   timing_boundary(scenario) -> "end_to_end" | "device" | "device_resident"
#   events() -> DeviceEvents | None        when the boundary is "device"
#   synchronize() -> None                  waits for the device's queued work
#   gpu_memory() -> (bytes, source) | None the framework allocator's peak
#   cuda_index() -> int | None             the CUDA ordinal, for NVML telemetry


def create(name: str) -> Backend:
    """A new backend by registry name or as a user's module:Class."""
    spec = REGISTRY.get(name, name)
    module_name, _, cls_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise CellFailure(f"backend {name!r} cannot be imported: {type(exc).__name__}: {exc}") from None
    return cls()
