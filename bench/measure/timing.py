"""What the measured loops time: a bound call, and device timing events.

BoundCall: one batch's call with its arguments bound once, outside the measured loop, so the
loop calls fn(a, b) on locals exactly as a hand-written loop would (bench.scenarios.loops).

EventClock: device timing with CUDA events. The measured loop reads a "clock" after every call;
here a read records the next event of a pool on the current stream and returns it, so call i's
device time is the time between event i and event i + 1 as the GPU passed them (its work, and
any time it sat waiting for the host to launch it). Events are converted only after a device
synchronize, once per chunk: no figure leaves out work the GPU had not finished, and nothing in
the timed loop waits for the GPU. elapsed_time is in milliseconds with about 0.5 us resolution
(CUDA's cudaEventElapsedTime).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

MAX_EVENT_CHUNK = 4096  # events per chunk (each ~100 bytes of driver state); reused chunk to chunk


class BoundCall(NamedTuple):
    """One batch's call: fn(*args), with the arguments bound once, outside the measured loop."""

    fn: Callable[..., Any]
    args: tuple = ()


class DeviceEvents(NamedTuple):
    """What a GPU backend gives the scenario to time device work with events on its stream:
    a factory of timing events (record(), elapsed_time(other) in ms) and a device synchronize."""

    new_event: Callable[[], Any]
    synchronize: Callable[[], None]


def as_call(call: BoundCall | Callable[[], Any]) -> BoundCall:
    return call if isinstance(call, BoundCall) else BoundCall(call, ())


def synchronized(call: BoundCall | Callable[[], Any], wait: Callable[[], None]) -> BoundCall:
    """The call, then a wait for the device: what a request that must complete costs."""
    fn, args = as_call(call)

    def call_and_wait() -> None:
        fn(*args)
        wait()

    return BoundCall(call_and_wait, ())


class EventClock:
    def __init__(self, events: DeviceEvents):
        self._events = events
        self._pool: list[Any] = []

    def clock_for(self, k: int) -> Callable[[], Any]:
        """A clock for a chunk of k calls: k + 1 reads, each recording the next pooled event."""
        self._grow(k + 1)
        take = iter(self._pool[: k + 1]).__next__

        def clock() -> Any:
            event = take()
            event.record()
            return event

        return clock

    def _grow(self, n: int) -> None:
        if len(self._pool) >= n:
            return
        fresh = [self._events.new_event() for _ in range(n - len(self._pool))]
        # A CUDA event is created on its first record(): do that here, not in a timed chunk.
        for event in fresh:
            event.record()
        self._events.synchronize()
        self._pool.extend(fresh)

    def pairs_for(self, k: int) -> tuple[list[Any], list[Any]]:
        """k (start, end) event pairs, for calls timed one at a time (single-stream)."""
        self._grow(2 * k)
        return self._pool[0 : 2 * k : 2], self._pool[1 : 2 * k : 2]

    def pair_latencies_ns(self, starts: list[Any], ends: list[Any]) -> np.ndarray:
        self._events.synchronize()
        return _ms_to_ns([s.elapsed_time(e) for s, e in zip(starts, ends)])

    def latencies_ns(self, stamps: list[Any]) -> np.ndarray:
        """Wait for the device, then each call's time between its two events, in ns."""
        self._events.synchronize()
        return _ms_to_ns([stamps[i].elapsed_time(stamps[i + 1]) for i in range(len(stamps) - 1)])


def _ms_to_ns(ms: list[float]) -> np.ndarray:
    return np.rint(np.asarray(ms, dtype=np.float64) * 1e6).astype(np.int64)
