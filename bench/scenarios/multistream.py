"""Multi-stream: N closed-loop clients on threads, each issuing its next request when the last returns.

Threads, since ONNX Runtime's run and torch's operators release the GIL while they compute; each
client keeps its own timestamps (no shared state in the loop) and enters the backend's context
itself (torch.inference_mode is per thread). All clients start together at a barrier; the window
ends when the main thread raises the stop flag, and it is measured from the barrier's release to
the last client's last completion.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bench.scenarios.loops import Window, as_call

CLIENT_WARMUP_CALLS = 3  # per client, before the barrier: per-thread state (e.g. torch.compile's
# CUDA-graph trees, one per thread) is built outside the window


@dataclass(frozen=True)
class ClientsRun:
    latencies_ns: tuple[np.ndarray, ...]  # one array per client
    window_ns: int


def run_clients(call: Any, n_clients: int, duration_s: float, context: Callable[[], Any],
                clock: Callable[[], int] = time.perf_counter_ns, window_marks: Window = Window()) -> ClientsRun:
    """`call` is one bound call shared by every client, or a list of one per client."""
    if n_clients < 1:
        raise ValueError(f"concurrency {n_clients!r}: must be >= 1")
    calls = list(call) if isinstance(call, list) else [call] * n_clients
    if len(calls) != n_clients:
        raise ValueError(f"{len(calls)} calls for {n_clients} clients")
    stop = threading.Event()
    barrier = threading.Barrier(n_clients + 1)
    stamps: list[list[int]] = [[] for _ in range(n_clients)]
    errors: list[BaseException] = []

    def client(k: int) -> None:
        mine = stamps[k]
        append = mine.append
        fn, args = as_call(calls[k])
        try:
            with context():
                for _ in range(CLIENT_WARMUP_CALLS):
                    fn(*args)
                barrier.wait()
                append(clock())
                while not stop.is_set():
                    fn(*args)
                    append(clock())
        except BaseException as exc:  # surfaced to the caller below, not lost in a thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(k,), name=f"bench-client-{k}", daemon=True)
               for k in range(n_clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    window_marks.start()
    start = clock()
    time.sleep(duration_s)
    stop.set()
    for t in threads:
        t.join()
    window_marks.end()
    if errors:
        raise errors[0]
    per_client = tuple(np.diff(np.asarray(s, dtype=np.int64)) for s in stamps)
    last_end = max((s[-1] for s in stamps if s), default=start)
    return ClientsRun(per_client, int(last_end - start))
