"""A target made exactly 20% slower, for the reproducibility check's planted slowdown: ONNX
Runtime, each call (a generating target's every prefill and decode step too) followed by a spin
of a fifth of that call's own time (a user backend that adds that much work). The target name and
knobs stay the suite's, so compare matches the cells."""
from __future__ import annotations

import time
from typing import Any

from bench.backends.ort import OrtBackend
from bench.measure.timing import BoundCall, as_call

SLOWDOWN = 0.20


def _slowed_call(fn: Any, *args: Any) -> Any:
    clock = time.perf_counter_ns
    t0 = clock()
    out = fn(*args)
    t1 = clock()
    end = t1 + int((t1 - t0) * SLOWDOWN)
    while clock() < end:
        pass
    return out


class SlowedGenerator:
    """An onnxruntime generator whose prefill and decode steps each take 20% longer."""

    def __init__(self, gen: Any):
        self._gen = gen
        self.cache_source = gen.cache_source
        self.vocab = gen.vocab

    def prefill(self, input_ids: Any) -> Any:
        return _slowed_call(self._gen.prefill, input_ids)

    def decode(self, tokens: Any) -> Any:
        return _slowed_call(self._gen.decode, tokens)

    def last_logits(self) -> Any:
        return self._gen.last_logits()

    def cache_bytes(self) -> int:
        return self._gen.cache_bytes()


class SlowedOrt(OrtBackend):
    def bind(self, feeds: dict[str, Any]) -> BoundCall:
        fn, args = as_call(super().bind(feeds))
        return BoundCall(lambda: _slowed_call(fn, *args))

    def generator(self, batch_size: int) -> SlowedGenerator:
        return SlowedGenerator(super().generator(batch_size))
