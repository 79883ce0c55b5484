"""PyTorch backend on CPU and CUDA: modes eager, compile and cudagraph (bench.backends.torch.modes).

Precision is applied by casting the module and its floating-point inputs to the dtype (not
autocast), so every op runs in that precision; outputs are cast back to float64 for agreement.
channels_last converts the module and every 4-D input to NHWC memory format, as CNNs on tensor
cores prefer. On CUDA the inputs stay on the device (io = "device": timed with CUDA events by the
scenario) or are copied in and out on every call (io = "host": the end-to-end figure). int8
precisions (CPU only) quantize the fp32 module in the worker before the mode applies, on fp32
inputs and outputs: bench.backends.torch.quantize says how, and what the details record.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.backends.base import Backend, BackendInfo, SetupCost
from bench.backends.devices import check_index, check_precision, device_index
from bench.backends.torch.modes import Runner, host_round_trip, make_runner
from bench.backends.torch.quantize import Quantized, quantize
from bench.errors import CellFailure
from bench.measure.timing import BoundCall, DeviceEvents
from bench.models.loader import build_torch

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchBackend(Backend):
    def __init__(self) -> None:
        self.runner: Runner | None = None
        self.dtype = torch.float32
        self.device = torch.device("cpu")
        self.channels_last = False
        self.io = "device"
        self._inference_mode = True
        self._mode = "eager"
        self._info = BackendInfo()
        self._quantized: Quantized | None = None
        self._precision = "fp32"

    def load(self, model: Any, target: Any) -> None:
        opts = target.options
        if target.is_cuda:
            if not torch.cuda.is_available():
                raise CellFailure("no CUDA device (torch.cuda.is_available() is False: "
                                  f"torch {torch.__version__} built for CUDA {torch.version.cuda})")
            check_index(target.device, torch.cuda.device_count())
            self.device = torch.device("cuda", device_index(target.device))  # "cuda" alone means cuda:0
            torch.cuda.set_device(self.device)
            check_precision(target.precision, torch.cuda.get_device_capability(self.device),
                            torch.cuda.get_device_name(self.device))
        if opts.threads:
            torch.set_num_threads(opts.threads)
        if opts.interop_threads:
            try:
                torch.set_num_interop_threads(opts.interop_threads)
            except RuntimeError as exc:  # only settable before any inter-op work
                raise CellFailure(f"cannot set interop_threads: {exc}") from None
        self._precision = target.precision
        self.dtype = _DTYPES.get(target.precision, torch.float32)  # int8: fp32 module and inputs, then quantized
        self.channels_last = opts.channels_last
        self.io = opts.io if target.is_cuda else "device"
        self._inference_mode = opts.inference_mode
        if target.is_cuda and target.precision == "fp32":
            # fp32 means fp32: cuDNN would run fp32 convolutions in TF32 by default (matmuls
            # default to strict fp32), and the roofline's fp32 peak is a strict-fp32 GEMM.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        module, _ = build_torch(model.source)
        module = module.to(self.device, self.dtype).eval().requires_grad_(False)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if target.is_int8:
            self._quantized = quantize(module, model, target, lambda feeds: self._tensors(feeds, self.device))
            module = self._quantized.module
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        watch = self._quantized.compile_watch if self._quantized is not None else None
        self.runner = make_runner(opts.mode, module, self.device, self.context, opts.compile_mode, watch)
        self.module = module
        self._compile_mode = opts.compile_mode
        self._mode = opts.mode
        details: dict[str, Any] = {
            "threads": torch.get_num_threads(),
            "compute_threads": torch.get_num_threads(),  # the threads that compute one call
            "interop_threads": torch.get_num_interop_threads(),
            "inference_mode": opts.inference_mode,
            "mode": opts.mode,
            "precision_by": ("quantized (fp32 inputs and outputs)" if target.is_int8
                             else "cast (module and floating-point inputs), not autocast"),
            "channels_last": self.channels_last,
        }
        if opts.mode == "compile":
            details["compile_mode"] = opts.compile_mode
        if self._quantized is not None:
            details["quantization"] = self._quantized.description
            details["model_precision"] = self._quantized.model_precision
            details["quantize_s"] = self._quantized.seconds  # the worker's one-off cost; compile is compile_s
        if target.is_cuda:
            details["device_name"] = torch.cuda.get_device_name(self.device)
            details["tf32"] = bool(torch.backends.cudnn.allow_tf32) if target.precision == "fp32" else None
        self._info = BackendInfo(
            runtime=f"torch {torch.__version__}" + (f" (CUDA {torch.version.cuda})" if target.is_cuda else ""),
            details=details)

    def _tensors(self, feeds: dict[str, np.ndarray], device: torch.device) -> tuple[torch.Tensor, ...]:
        out = []
        for arr in feeds.values():
            t = torch.from_numpy(np.ascontiguousarray(arr))
            if t.is_floating_point():
                t = t.to(self.dtype)
            t = t.to(device)
            if self.channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            out.append(t)
        return tuple(out)

    def bind(self, feeds: dict[str, np.ndarray]) -> BoundCall:
        assert self.runner is not None
        if self.io == "host":
            return host_round_trip(self.runner, self._tensors(feeds, torch.device("cpu")))
        return self.runner.call(self._tensors(feeds, self.device))

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert self.runner is not None
        out = self.runner.run(self._tensors(feeds, self.device))
        return [t.to(torch.float64).cpu().numpy() for t in out]

    def context(self):
        # inference_mode = false still runs without autograd (no_grad), only without the
        # inference-tensor restrictions.
        return torch.inference_mode() if self._inference_mode else torch.no_grad()

    def setup_cost(self) -> SetupCost | None:
        return {"compile": "compile", "cudagraph": "capture"}.get(self._mode)

    def resident_on_device(self) -> bool:
        return self.device.type == "cuda" and self.io == "device"

    def events(self) -> DeviceEvents | None:
        if not self.resident_on_device():
            return None
        return DeviceEvents(lambda: torch.cuda.Event(enable_timing=True), self.synchronize)

    def device_wait(self):
        return self.synchronize if self.device.type == "cuda" else None

    def synchronize(self) -> None:
        assert self.runner is not None
        self.runner.synchronize()

    def gpu_memory(self) -> tuple[int, str] | None:
        if self.device.type != "cuda":
            return None
        reserved = int(torch.cuda.max_memory_reserved(self.device))
        return (int(torch.cuda.max_memory_allocated(self.device)),
                "torch.cuda.max_memory_allocated since load: tensors, warm-up, compile or capture included; "
                f"the caching allocator reserved up to {reserved / 2**20:,.0f} MiB; the CUDA context excluded")

    def cuda_index(self) -> int | None:
        return self.device.index if self.device.type == "cuda" else None

    def generator(self, batch_size: int):
        from bench.backends.torch.generate import TorchGenerator

        assert self.runner is not None
        if self._precision == "int8-static":
            # int8-dynamic generates: quantize_dynamic keeps the module and its prefill/decode methods
            raise CellFailure("int8-static torch targets do not generate: PT2E quantizes the exported forward() "
                              "alone, not a decoder's prefill and decode steps (use precision = \"int8-dynamic\")",
                              kind="unsupported")
        return TorchGenerator(self.module, batch_size, self.device, self.dtype, self._mode, self.context,
                              self._compile_mode)

    def info(self) -> BackendInfo:
        if self._quantized is not None and self._quantized.compile_watch is not None and self._mode == "compile":
            self._info.details.update(self._quantized.compile_watch.details())  # known once compiled
        return self._info
