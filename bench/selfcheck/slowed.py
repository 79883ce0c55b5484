"""A target made exactly X% slower, for the reproducibility check's planted slowdown: ONNX
Runtime, each call (a generating target's every prefill and decode step too) followed by a spin
of X% of that call's own time (a user backend that adds that much work). The target name and
knobs stay the suite's, so compare matches the cells.

`SlowedOrt` is 20% slower; `SlowedOrt_P` (e.g. `bench.selfcheck.slowed:SlowedOrt_10`) is P% slower:
the factor travels in the backend's name, which is all a worker is told of a user backend."""
from __future__ import annotations

import time
from typing import Any

from bench.backends.ort import OrtBackend
from bench.measure.timing import BoundCall, as_call

SLOWDOWN = 0.20


def _slowed_call(fn: Any, *args: Any, slowdown: float = SLOWDOWN) -> Any:
    clock = time.perf_counter_ns
    t0 = clock()
    out = fn(*args)
    t1 = clock()
    end = t1 + int((t1 - t0) * slowdown)
    while clock() < end:
        pass
    return out


class SlowedGenerator:
    """An onnxruntime generator whose prefill and decode steps each take `slowdown` longer."""

    def __init__(self, gen: Any, slowdown: float = SLOWDOWN):
        self._gen = gen
        self._slowdown = slowdown
        self.cache_source = gen.cache_source
        self.vocab = gen.vocab

    def prefill(self, input_ids: Any) -> Any:
        return _slowed_call(self._gen.prefill, input_ids, slowdown=self._slowdown)

    def decode(self, tokens: Any) -> Any:
        return _slowed_call(self._gen.decode, tokens, slowdown=self._slowdown)

    def last_logits(self) -> Any:
        return self._gen.last_logits()

    def cache_bytes(self) -> int:
        return self._gen.cache_bytes()


class SlowedOrt(OrtBackend):
    slowdown = SLOWDOWN

    def bind(self, feeds: dict[str, Any]) -> BoundCall:
        fn, args = as_call(super().bind(feeds))
        slowdown = self.slowdown
        return BoundCall(lambda: _slowed_call(fn, *args, slowdown=slowdown))

    def generator(self, batch_size: int) -> SlowedGenerator:
        return SlowedGenerator(super().generator(batch_size), self.slowdown)


def backend_name(slowdown: float) -> str:
    """The backend reference of a target `slowdown` (0.1 = 10%) slower."""
    percent = round(slowdown * 100)
    return f"{__name__}:SlowedOrt" if percent == round(SLOWDOWN * 100) else f"{__name__}:SlowedOrt_{percent}"


def __getattr__(name: str) -> type:
    """SlowedOrt_P: the class P% slower, made on first use in any process (PEP 562)."""
    if name.startswith("SlowedOrt_") and name[len("SlowedOrt_"):].isdigit():
        cls = type(name, (SlowedOrt,), {"slowdown": int(name[len("SlowedOrt_"):]) / 100})
        globals()[name] = cls
        return cls
    raise AttributeError(name)
