"""ONNX Runtime backend: providers, intra/inter-op threads, graph optimisation level, spinning,
and on CUDA, IOBinding.

ORT falls back silently when a requested provider cannot be used (one log line at most; seen:
TensorRT -> CUDA), so after creating the session we compare `get_providers()` with what was
asked and fail the cell, unless the target sets allow_fallback; the providers that ran are
recorded either way.

With io_binding (the default on cuda), inputs are copied to the device once, outputs are bound to
device buffers allocated by a first run and reused, and the measured call is
run_with_iobinding: nothing crosses PCIe in the loop. ORT's run waits for its stream before it
returns (run option disable_synchronize_execution_providers is left off), so a host timer around
it leaves out no unfinished GPU work; that boundary is "device_resident". Without io_binding the
call is session.run on host arrays: copies in and out included, the "end_to_end" boundary.
fp16 targets run the fp16 model the parent converted (PreparedModel.onnx_fp16_path) on fp16 inputs.
"""
from __future__ import annotations

import os

from typing import Any

import numpy as np
import onnxruntime as ort

from bench.backends.base import Backend, BackendInfo
from bench.backends.devices import check_index, device_index
from bench.backends.options import missing_provider
from bench.errors import CellFailure
from bench.measure.timing import BoundCall

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def _provider_options(provider: str, target: Any) -> dict[str, str]:
    if provider == "CUDAExecutionProvider":
        opts = {"device_id": str(device_index(target.device))}
        if target.precision == "fp32":
            opts["use_tf32"] = "0"  # fp32 means fp32 (the CUDA provider defaults to TF32 on Ampere+)
        return opts
    if provider in ("TensorrtExecutionProvider", "NvTensorRTRTXExecutionProvider"):
        opts = {"device_id": str(device_index(target.device))}
        if target.precision == "fp16" and provider == "TensorrtExecutionProvider":
            opts["trt_fp16_enable"] = "True"
        return opts
    return {}


class OrtBackend(Backend):
    def __init__(self) -> None:
        self.session: ort.InferenceSession | None = None
        self._info = BackendInfo()
        self._device = "cpu"
        self._device_id = 0
        self._io_binding = False
        self._fp16 = False
        self._bound: list[Any] = []
        self._decoder_paths: tuple[str, str] | None = None
        self._decoder_note = ""
        self._gen_sessions: tuple[Any, Any] | None = None  # (prefill, decode), made by the first generator
        self._session_path = ""
        self._decoder_max_len = 0

    def load(self, model: Any, target: Any) -> None:
        opts = target.options
        requested = list(opts.resolved_providers(target.device))
        available = ort.get_available_providers()
        missing = missing_provider(requested, available, target.is_cuda)
        if missing:
            raise CellFailure(missing, kind="unsupported")
        if target.is_cuda:
            self._count_devices_or_fail(target.device)
        path = model.onnx_fp16_path if target.precision == "fp16" else model.onnx_path
        decoder = model.decoder_onnx_fp16 if target.precision == "fp16" else model.decoder_onnx
        quantized = None
        if target.precision.startswith("int8"):
            quantized = model.quantized_form(target.model_form)
            path, decoder = (quantized.path if quantized is not None else None), None
        if path is None and decoder is None:
            why = f": {model.decoder_onnx_note}" if model.decoder_onnx_note else ""
            raise CellFailure(f"model {model.source.ref!r} has no {target.precision} ONNX form for onnxruntime{why}")
        self._fp16 = target.precision == "fp16"
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.intra_op_threads
        so.inter_op_num_threads = opts.inter_op_threads
        so.graph_optimization_level = _OPT_LEVELS[opts.graph_optimization_level]
        so.log_severity_level = 3
        spin = "1" if opts.allow_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        provider_options = [_provider_options(p, target) for p in requested]
        self._decoder_paths = decoder
        self._decoder_note = model.decoder_onnx_note
        self._decoder_max_len = model.decoder_max_len or 0
        self._source = model.source

        def session(p: str) -> ort.InferenceSession:
            try:
                return ort.InferenceSession(p, so, providers=requested, provider_options=provider_options)
            except Exception as exc:  # ORT raises its own Fail/InvalidGraph types for a model it cannot load
                raise CellFailure(f"onnxruntime cannot load the model: {type(exc).__name__}: {exc}") from None

        self._new_session = session
        # A decoder that only generates loads its prefill graph here (the providers are checked on
        # it); the decode graph is loaded with the first generator.
        self._session_path = path if path is not None else decoder[0]
        self.session = session(self._session_path)
        active = self.session.get_providers()
        not_active = [p for p in requested if p not in active]
        if not_active and not opts.allow_fallback:
            raise CellFailure(
                f"requested provider {not_active[0]} is not active (ran: {', '.join(active)}); "
                "onnxruntime fell back silently (set allow_fallback = true to accept that)"
            )
        self._device = "cuda" if target.is_cuda else "cpu"
        self._device_id = device_index(target.device) if target.is_cuda else 0
        self._io_binding = opts.uses_io_binding(target.device)
        self._info = BackendInfo(
            runtime=f"onnxruntime {ort.__version__}",
            providers=tuple(active),
            details={
                "fell_back_from": not_active or None,
                "intra_op_threads": opts.intra_op_threads,
                # the threads that compute one call (0: onnxruntime's default, one per core)
                "compute_threads": opts.intra_op_threads or len(os.sched_getaffinity(0)),
                "inter_op_threads": opts.inter_op_threads,
                "allow_spinning": opts.allow_spinning,
                "io_binding": self._io_binding,
                "model_precision": ("fp16 (converted from fp32, fp16 inputs and outputs)" if self._fp16
                                    else quantized.describe() if quantized is not None else "fp32"),
            },
        )
        if quantized is not None:
            # the one-off cost of quantizing (and calibrating) in the parent; 0.0: read from the cache
            self._info.details["quantize_s"] = quantized.seconds

    @staticmethod
    def _count_devices_or_fail(device: str) -> None:
        from bench.measure.nvml_devices import visible_device_count

        count, note = visible_device_count()
        if count == 0:
            raise CellFailure(f"no CUDA device ({note})" if note else "no CUDA device")
        check_index(device, count)

    def _feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._fp16:
            return feeds
        return {k: v.astype(np.float16) if v.dtype.kind == "f" else v for k, v in feeds.items()}

    def bind(self, feeds: dict[str, np.ndarray]) -> BoundCall:
        assert self.session is not None
        feeds = self._feeds(feeds)
        if not self._io_binding:
            return BoundCall(self.session.run, (None, feeds))
        binding = self.session.io_binding()
        values = []
        for name, arr in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), self._device, self._device_id)
            binding.bind_ortvalue_input(name, value)
            values.append(value)
        binding.synchronize_inputs()  # the copies to the device are done before any timed run
        for out in self.session.get_outputs():
            binding.bind_output(out.name, self._device, self._device_id)
        # A first run allocates the outputs on the device; binding those buffers keeps every
        # later run from allocating (the loop measures inference, not the arena).
        self.session.run_with_iobinding(binding)
        for out, value in zip(self.session.get_outputs(), binding.get_outputs()):
            binding.bind_ortvalue_output(out.name, value)
        self._bound.append((binding, values))  # device buffers live as long as the backend
        return BoundCall(self.session.run_with_iobinding, (binding,))

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert self.session is not None
        return [np.asarray(o, dtype=np.float64) for o in self.session.run(None, self._feeds(feeds))]

    def resident_on_device(self) -> bool:
        # run_with_iobinding waits for ORT's stream before it returns (device_wait stays None):
        # a host timer around it is the device_resident boundary.
        return self._io_binding and self._device == "cuda"

    def cuda_index(self) -> int | None:
        return self._device_id if self._device == "cuda" else None

    def generator(self, batch_size: int):
        from bench.backends.ort_generate import OrtGenerator

        if self._decoder_paths is None:
            raise CellFailure(f"model {self._source.ref!r} has no ONNX decoder form: {self._decoder_note or 'not a decoder'}",
                              kind="unsupported")
        assert self.session is not None
        if self._gen_sessions is None:
            prefill = (self.session if self._session_path == self._decoder_paths[0]
                       else self._new_session(self._decoder_paths[0]))
            self._gen_sessions = (prefill, self._new_session(self._decoder_paths[1]))
            self._info.details["generation"] = ("prefill and decode graphs (past/present), IOBinding: the cache kept "
                                                f"as OrtValues on {self._device} between steps")
        prefill, decode = self._gen_sessions
        return OrtGenerator(prefill, decode, batch_size, self._device, self._device_id, self._decoder_max_len)

    def info(self) -> BackendInfo:
        return self._info
