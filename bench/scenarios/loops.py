"""The measured loops: warm-up, then chunks of timed calls until the stopping rule says stop.

The timed loop holds one clock read and one list store per call and nothing else (no logging,
sampling or allocation): each call's end is the next call's start, so a chunk of k calls
costs k + 1 clock reads. A backend binds its call as (function, args) and the loop calls
`function(a, b)` with the arguments in locals, exactly as a hand-written loop would: a
functools.partial costs ~50-100 ns more per call, 1-2% of a 4 µs ONNX Runtime call.
`bench self-check` measures this loop against a bare one.

On a GPU with inputs on the device, the stamps are CUDA events (bench.measure.timing) and
the same loop runs: the calls are queued back to back, the events record when the GPU passed
each, and the chunk is converted after one synchronize. Warm-up waits for each call, so the
chunk size is set from what the GPU takes, not from how fast the host queues work.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bench.config.records import StopSpec
from bench.measure.timing import MAX_EVENT_CHUNK, BoundCall, DeviceEvents, EventClock, as_call, synchronized
from bench.scenarios.stopping import StopRule

Clock = Callable[[], int]
CHUNK_TARGET_NS = 50_000_000  # the rule is consulted about every 50 ms
MAX_CHUNK = 1 << 16


@dataclass(frozen=True)
class LoopResult:
    latencies_ns: np.ndarray  # int64, one per measured call (one per `stride` calls past max_samples)
    # Sum of the chunks' spans: the time during which measured calls ran back to back. The
    # gaps between chunks (the stop rule, converting stamps) are the harness's, not the target's.
    window_ns: int
    warmup_latencies_ns: np.ndarray
    warmup_seconds: float
    stop_reason: str
    stride: int = 1  # latencies_ns keeps the calls whose index is a multiple of this
    calls: int = -1  # every measured call (-1: latencies_ns.size)


def timed_chunk(call: BoundCall | Callable[[], Any], stamps: list[int], clock: Clock) -> None:
    """Fill stamps[0..k] with clock reads around k back-to-back calls."""
    fn, args = as_call(call)
    k = len(stamps)
    # One loop per arity, so the call is a plain fn(a, b) on locals (see the module docstring).
    if len(args) == 0:
        stamps[0] = clock()
        for i in range(1, k):
            fn()
            stamps[i] = clock()
    elif len(args) == 1:
        (a,) = args
        stamps[0] = clock()
        for i in range(1, k):
            fn(a)
            stamps[i] = clock()
    elif len(args) == 2:
        a, b = args
        stamps[0] = clock()
        for i in range(1, k):
            fn(a, b)
            stamps[i] = clock()
    elif len(args) == 3:
        a, b, c = args
        stamps[0] = clock()
        for i in range(1, k):
            fn(a, b, c)
            stamps[i] = clock()
    else:
        timed_chunk(BoundCall(functools.partial(fn, *args)), stamps, clock)


def warm_up(call: BoundCall | Callable[[], Any], spec: StopSpec, clock: Clock) -> np.ndarray:
    """Call at least warmup_iterations times and for at least warmup_seconds (capped at max_seconds)."""
    fn, args = as_call(call)
    stamps = [clock()]
    start = stamps[0]
    min_ns = int(spec.warmup_seconds * 1e9)
    cap_ns = int(max(spec.max_seconds, spec.warmup_seconds) * 1e9)
    while True:
        n = len(stamps) - 1
        elapsed = stamps[-1] - start
        if (n >= spec.warmup_iterations and elapsed >= min_ns) or (elapsed >= cap_ns and n >= 1):
            break
        fn(*args)
        stamps.append(clock())
    return np.diff(np.asarray(stamps, dtype=np.int64))


@dataclass(frozen=True)
class Window:
    """Called just before the first and just after the last measured chunk (e.g. telemetry marks)."""

    start: Callable[[], None] = lambda: None
    end: Callable[[], None] = lambda: None


def paired_chunk(call: BoundCall | Callable[[], Any], starts: list[Any], ends: list[Any],
                 synchronize: Callable[[], None]) -> None:
    """One call at a time, each between its own start and end event, waiting for the device
    after each: a request issued when the previous one completed (single-stream on a GPU).
    The wait falls outside the events, so the device time excludes the host's wake-up."""
    fn, args = as_call(call)
    for start, end in zip(starts, ends):
        start.record()
        fn(*args)
        end.record()
        synchronize()


def measure(
    fn: BoundCall | Callable[[], Any], spec: StopSpec, rule: StopRule, clock: Clock = time.perf_counter_ns,
    events: DeviceEvents | None = None, window_marks: Window = Window(), wait_each_call: bool = False,
) -> LoopResult:
    """Warm up for the fixed minimum, then measure until `rule` stops.

    With `events`, each call's time is the device's (CUDA events) and warm-up waits for the
    device after every call. With `wait_each_call` too, calls are timed one at a time by an
    event pair each and the device is waited for after each (single-stream); without it they
    are queued back to back (offline).
    """
    warm = warm_up(fn if events is None else synchronized(fn, events.synchronize), spec, clock)
    max_chunk = MAX_CHUNK if events is None else MAX_EVENT_CHUNK // (2 if wait_each_call else 1)
    event_clock = EventClock(events) if events is not None else None
    per_call = float(np.median(warm[-min(warm.size, 20):])) if warm.size else 0.0
    chunk = int(min(max_chunk, max(1, CHUNK_TARGET_NS // max(per_call, 1.0))))
    chunks: list[np.ndarray] = []
    window = 0
    calls = kept = 0
    stride = 1
    window_marks.start()
    while True:
        if event_clock is None:
            stamps = [0] * (chunk + 1)  # allocated between chunks, never inside the timed loop
            timed_chunk(fn, stamps, clock)
            latencies = np.diff(np.asarray(stamps, dtype=np.int64))
        elif wait_each_call:
            starts, ends = event_clock.pairs_for(chunk)
            paired_chunk(fn, starts, ends, events.synchronize)
            latencies = event_clock.pair_latencies_ns(starts, ends)
        else:
            stamps = [None] * (chunk + 1)
            timed_chunk(fn, stamps, event_clock.clock_for(chunk))
            latencies = event_clock.latencies_ns(stamps)
        window += int(latencies.sum())
        measured = int(latencies.size)
        if stride > 1:  # keep the calls whose overall index is a multiple of the stride
            latencies = latencies[(-calls) % stride::stride]
        calls += measured
        chunks.append(latencies)
        kept += int(latencies.size)
        if kept > spec.max_samples:  # thin what is kept by half (again), evenly: memory stays bounded
            kept_all = np.concatenate(chunks)
            while kept_all.size > spec.max_samples:
                kept_all, stride = kept_all[::2], stride * 2
            chunks, kept = [kept_all], int(kept_all.size)
        reason = rule.check(window, chunks)
        if reason is not None:
            break
        # Near max_seconds, shrink the chunk so the window does not overshoot it by much.
        left_ns = spec.max_seconds * 1e9 - window
        per_call = max(window / calls, 1.0)
        chunk = int(min(max_chunk, max(1, min(CHUNK_TARGET_NS, left_ns) // per_call)))
    window_marks.end()
    if stride > 1:
        reason += (f"; {calls} calls measured, the latency of 1 in {stride} kept ({kept} samples, "
                   f"under max_samples {spec.max_samples}): throughput counts every call")
    return LoopResult(
        latencies_ns=np.concatenate(chunks),
        window_ns=int(window),
        warmup_latencies_ns=warm,
        warmup_seconds=float(warm.sum()) / 1e9,
        stop_reason=reason,
        stride=stride,
        calls=calls,
    )
