"""The backends the harness knows, by name: where each is implemented and its knobs record.

One line per backend. The implementation is imported lazily (only the worker that runs a target
imports its runtime); the options record is imported here, light, so the config can check knobs
without importing onnxruntime or torch. A user backend is named as `package.module:Class`.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

from bench.backends.base import REQUIRED_METHODS, Backend
from bench.backends.openvino_options import OpenVINOOptions
from bench.backends.options import OrtOptions, TorchOptions
from bench.errors import CellFailure
from bench.served.kserve_options import KServeV2Options
from bench.served.openai_options import OpenAIOptions


@dataclass(frozen=True)
class BackendEntry:
    implementation: str  # "module:Class"
    options: type  # the frozen knobs record its [targets.NAME] table is read into


BACKENDS: dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry("bench.backends.ort:OrtBackend", OrtOptions),
    "torch": BackendEntry("bench.backends.torch.backend:TorchBackend", TorchOptions),
    "kserve-v2": BackendEntry("bench.backends.kserve_v2:KServeV2Backend", KServeV2Options),
    "openai": BackendEntry("bench.backends.openai:OpenAIBackend", OpenAIOptions),
    "openvino": BackendEntry("bench.backends.openvino:OpenVINOBackend", OpenVINOOptions),
}

PLUGIN_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class BackendImportError(Exception):
    """A backend class cannot be imported, or does not have the contract's required methods."""


def backend_class(spec: str) -> type[Backend]:
    """The class behind a registry name or a `module:Class`, with the contract's defaults.

    A user class that does not derive from Backend gets them through a subclass of both (its own
    methods first), so every backend answers every capability; one that lacks a required method
    is refused, naming it.
    """
    entry = BACKENDS.get(spec)
    target = entry.implementation if entry is not None else spec
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: ImportError or whatever its import raises
        raise BackendImportError(f"{spec!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc})") from None
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        raise BackendImportError(f"{spec!r}: {module_name!r} has no class {cls_name!r}")
    missing = [m for m in REQUIRED_METHODS
               if not callable(getattr(cls, m, None)) or getattr(cls, m) is getattr(Backend, m)]
    if missing:
        raise BackendImportError(f"{spec!r}: class {cls_name} has no method {missing[0]!r} (a backend needs "
                                 f"{', '.join(REQUIRED_METHODS)}; see bench.backends.base.Backend)")
    if callable(getattr(cls, "timing_boundary", None)):
        raise BackendImportError(f"{spec!r}: class {cls_name} defines timing_boundary(), which the backend contract "
                                 "replaced: declare events(), resident_on_device() and device_wait() instead "
                                 "(see bench.backends.base.Backend)")
    if issubclass(cls, Backend):
        return cls
    return type(cls.__name__, (cls, Backend), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})


def worker_family(spec: str) -> tuple[str, tuple[str, ...]]:
    """Which worker host runs this backend's units, and what that host imports once: a registered
    backend's own module (its runtime with it); a user backend gets a host without it, since
    importing user code in a host could initialize CUDA, which its forked workers could not use."""
    entry = BACKENDS.get(spec)
    common = ("bench.runner.unit",)
    if entry is None:
        return "user", common
    return spec, (entry.implementation.partition(":")[0], *common)


def create(spec: str) -> Backend:
    """A new backend instance (in the worker); a failure to import it fails the cell."""
    try:
        cls = backend_class(spec)
    except BackendImportError as exc:
        raise CellFailure(f"backend {exc}", kind="unsupported") from None
    return cls()
