"""PyTorch eager backend on CPU: threads, inference_mode, precision by cast.

Precision is applied by casting the module and its floating-point inputs to the dtype (not
autocast), so every op runs in that precision; outputs are cast back to float64 for agreement.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from bench.errors import CellFailure
from bench.models.loader import build_torch
from bench.backends import BoundCall

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _flatten(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flatten(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    return []


class TorchBackend:
    def __init__(self) -> None:
        self.module: torch.nn.Module | None = None
        self.dtype = torch.float32
        self.device = torch.device("cpu")
        self._inference_mode = True
        self._info: dict[str, Any] = {}

    def load(self, model: Any, target: Any) -> None:
        opts = target.options
        if target.device != "cpu":
            raise CellFailure(f"device {target.device!r}: this torch backend runs on cpu only")
        if opts.threads:
            torch.set_num_threads(opts.threads)
        if opts.interop_threads:
            try:
                torch.set_num_interop_threads(opts.interop_threads)
            except RuntimeError as exc:  # only settable before any inter-op work
                raise CellFailure(f"cannot set interop_threads: {exc}") from None
        self.dtype = _DTYPES[target.precision]
        self._inference_mode = opts.inference_mode
        module, _ = build_torch(model.source)
        self.module = module.to(self.device, self.dtype).eval()
        self._info = {
            "providers": None,
            "runtime": f"torch {torch.__version__}",
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "inference_mode": opts.inference_mode,
        }

    def _tensors(self, feeds: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
        out = []
        for arr in feeds.values():
            t = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)
            out.append(t.to(self.dtype) if t.is_floating_point() else t)
        return tuple(out)

    def bind(self, feeds: dict[str, np.ndarray]) -> BoundCall:
        assert self.module is not None
        return BoundCall(self.module, self._tensors(feeds))

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert self.module is not None
        with self.context():
            out = self.module(*self._tensors(feeds))
        return [t.detach().to(torch.float64).cpu().numpy() for t in _flatten(out)]

    def context(self):
        return torch.inference_mode() if self._inference_mode else contextlib.nullcontext()

    def info(self) -> dict[str, Any]:
        return dict(self._info)
