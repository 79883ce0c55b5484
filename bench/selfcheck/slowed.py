"""A target made exactly 20% slower, for the reproducibility check's planted slowdown: ONNX
Runtime, each call followed by a spin of a fifth of that call's own time (a user backend that
adds that much work). The target name and knobs stay the suite's, so compare matches the cells."""
from __future__ import annotations

import time
from typing import Any

from bench.backends.ort import OrtBackend
from bench.measure.timing import BoundCall, as_call

SLOWDOWN = 0.20


class SlowedOrt(OrtBackend):
    def bind(self, feeds: dict[str, Any]) -> BoundCall:
        fn, args = as_call(super().bind(feeds))
        clock = time.perf_counter_ns

        def slowed() -> Any:
            t0 = clock()
            out = fn(*args)
            t1 = clock()
            end = t1 + int((t1 - t0) * SLOWDOWN)
            while clock() < end:
                pass
            return out

        return BoundCall(slowed)
