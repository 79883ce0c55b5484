"""ONNX Runtime backend: providers, intra/inter-op threads, graph optimisation level, spinning.

ORT falls back silently when a requested provider cannot be used (one log line at most), so
after creating the session we compare `get_providers()` with what was asked and fail the cell.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.errors import CellFailure
from bench.backends import BoundCall

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class OrtBackend:
    def __init__(self) -> None:
        self.session: ort.InferenceSession | None = None
        self._info: dict[str, Any] = {}

    def load(self, model: Any, target: Any) -> None:
        opts = target.options
        requested = list(opts.resolved_providers(target.device))
        available = ort.get_available_providers()
        missing = [p for p in requested if p not in available]
        if missing:
            raise CellFailure(
                f"provider {missing[0]} is not installed in this onnxruntime build "
                f"(available: {', '.join(available)})"
            )
        if model.onnx_path is None:
            raise CellFailure(f"model {model.source.ref!r} has no ONNX form for onnxruntime")
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.intra_op_threads
        so.inter_op_num_threads = opts.inter_op_threads
        so.graph_optimization_level = _OPT_LEVELS[opts.graph_optimization_level]
        so.log_severity_level = 3
        spin = "1" if opts.allow_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        provider_options = []
        for p in requested:
            if p == "CUDAExecutionProvider" and ":" in target.device:
                provider_options.append({"device_id": target.device.split(":")[1]})
            else:
                provider_options.append({})
        try:
            self.session = ort.InferenceSession(model.onnx_path, so, providers=requested, provider_options=provider_options)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types for a model it cannot load
            raise CellFailure(f"onnxruntime cannot load the model: {type(exc).__name__}: {exc}") from None
        active = self.session.get_providers()
        not_active = [p for p in requested if p not in active]
        if not_active:
            raise CellFailure(
                f"requested provider {not_active[0]} is not active (ran: {', '.join(active)}); "
                "onnxruntime fell back silently"
            )
        self._info = {
            "providers": active,
            "runtime": f"onnxruntime {ort.__version__}",
            "intra_op_threads": opts.intra_op_threads,
            "inter_op_threads": opts.inter_op_threads,
            "allow_spinning": opts.allow_spinning,
        }

    def bind(self, feeds: dict[str, np.ndarray]) -> BoundCall:
        assert self.session is not None
        return BoundCall(self.session.run, (None, feeds))

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert self.session is not None
        return [np.asarray(o, dtype=np.float64) for o in self.session.run(None, feeds)]

    def context(self):
        return contextlib.nullcontext()

    def info(self) -> dict[str, Any]:
        return dict(self._info)
