"""A backend that does nothing: what is left of a work unit's time is the harness's and the
executor's own (bench self-check --checks executor). Named in a suite as
`backend = "bench.selfcheck.null_backend:NullBackend"`."""
from __future__ import annotations

from typing import Any

import numpy as np

from bench.backends.base import Backend, BackendInfo


class NullBackend(Backend):
    model_form = "onnx"

    def load(self, model: Any, target: Any) -> None:
        return None

    def bind(self, feeds: dict[str, np.ndarray]):
        return lambda: None

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.zeros(1, dtype=np.float32)]

    def info(self) -> BackendInfo:
        return BackendInfo(runtime="null")
