"""The generate scenario's loops: static batches on one or more streams, closed loop or open loop.

A batch is `batch` sequences decoded together (static batching): prompts left-padded to the
batch's longest, one prefill call, then one decode call per token until the batch's longest
output is done (a sequence that finished early still rides along, as in a static batch). A
request's clock starts at its batch's prefill (closed loop) or at its scheduled arrival (open
loop, so queueing shows); its first token is the prefill's, each later one a decode step's, each
seen when the step returns its tokens to the host.

Streams are threads, each with its own generator (own KV cache): ONNX Runtime and torch release
the GIL while they compute. Closed loop: each stream takes the next `batch` requests as soon as
its last batch is done. Open loop: each stream, when free, waits for the next arrival and takes
every request that has arrived by then, up to `batch` (empty rows run as padding).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bench.config.records import StopSpec
from bench.scenarios.gen_workload import Request, prompt_ids
from bench.scenarios.open_loop import wait_for



@dataclass
class StreamLog:
    """What one stream saw, per request and per call (appended by that stream's thread only)."""

    start_ns: list[int] = field(default_factory=list)  # the request's clock start, from the origin
    first_ns: list[int] = field(default_factory=list)  # its first token
    end_ns: list[int] = field(default_factory=list)  # its last token
    prompt_lens: list[int] = field(default_factory=list)
    output_lens: list[int] = field(default_factory=list)
    itl_ns: list[int] = field(default_factory=list)  # every gap between a request's consecutive tokens
    prefill_ns: list[int] = field(default_factory=list)  # per batch
    prefill_tokens: list[int] = field(default_factory=list)  # per batch, padding included
    step_kv: list[int] = field(default_factory=list)  # per decode step: tokens in the cache after it
    step_ns: list[int] = field(default_factory=list)
    kv_bytes: int = 0
    batches: int = 0
    padded_rows: int = 0  # rows of a batch no request filled (open loop)
    padded_steps: int = 0  # decode steps a finished sequence rode along


def batch_ids(requests: list[Request], batch: int, seed: int, vocab: int) -> np.ndarray:
    """[batch, P] prompt ids, left-padded with 0 to the longest; rows past the requests stay 0."""
    width = max(r.prompt_len for r in requests)
    ids = np.zeros((batch, width), dtype=np.int64)
    for row, r in enumerate(requests):
        ids[row, width - r.prompt_len:] = prompt_ids(seed, r.index, r.prompt_len, vocab)
    return ids


def run_batch(gen: Any, requests: list[Request], batch: int, starts_ns: list[int], seed: int, vocab: int,
              clock: Callable[[], int], origin_ns: int, log: StreamLog,
              keep: Callable[[np.ndarray, Any], None] | None = None) -> None:
    """One static batch: prefill, then decode until its longest output; figures into `log`.
    `keep(tokens, gen)` sees each call's tokens (the agreement probe)."""
    ids = batch_ids(requests, batch, seed, vocab)
    width = ids.shape[1]
    steps = max(r.output_len for r in requests)
    t0 = clock()
    tokens = gen.prefill(ids)
    t = clock()
    times = [t]
    if keep is not None:
        keep(tokens, gen)
    log.prefill_ns.append(t - t0)
    log.prefill_tokens.append(batch * width)
    for step in range(1, steps):
        tokens = gen.decode(tokens)
        now = clock()
        log.step_kv.append(width + step)
        log.step_ns.append(now - t)
        t = now
        times.append(t)
        if keep is not None:
            keep(tokens, gen)
    log.kv_bytes = max(log.kv_bytes, gen.cache_bytes())
    log.batches += 1
    log.padded_rows += batch - len(requests)
    for r, start in zip(requests, starts_ns):
        mine = times[:r.output_len]
        log.start_ns.append(start - origin_ns)
        log.first_ns.append(mine[0] - origin_ns)
        log.end_ns.append(mine[-1] - origin_ns)
        log.prompt_lens.append(r.prompt_len)
        log.output_lens.append(r.output_len)
        log.itl_ns.extend(int(b - a) for a, b in zip(mine, mine[1:]))
        log.padded_steps += steps - r.output_len


def _threads(n: int, body: Callable[[int], None]) -> None:
    """body(k) on n threads (inline for one), re-raising the first failure."""
    if n == 1:
        body(0)
        return
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            body(k)
        except BaseException as exc:  # surfaced below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,), name=f"bench-stream-{k}") for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def closed_loop(gens: list[Any], pool: list[Request], batch: int, requests: int, stop: StopSpec, seed: int,
                vocab: int, context: Callable[[], Any], clock: Callable[[], int] = time.perf_counter_ns
                ) -> tuple[list[StreamLog], int, str]:
    """Each stream takes the next `batch` requests (cycling over `pool`: every batch full) until at
    least `requests` are taken, or (requests = 0) until min_seconds and min_iterations requests are
    past, at most max_seconds."""
    lock = threading.Lock()
    taken = [0]
    logs = [StreamLog() for _ in gens]
    origin = clock()
    reason = [""]

    def next_batch() -> list[Request] | None:
        with lock:
            elapsed_s = (clock() - origin) / 1e9
            n = taken[0]
            if requests:
                if n >= requests:
                    reason[0] = f"{n} requests done (generate.requests = {requests}, in whole batches of {batch})"
                    return None
            else:
                if elapsed_s >= stop.max_seconds:
                    reason[0] = f"max_seconds {stop.max_seconds:g} s reached after {n} requests"
                    return None
                if elapsed_s >= stop.min_seconds and n >= stop.min_iterations:
                    reason[0] = f"min_seconds {stop.min_seconds:g} s and min_iterations {stop.min_iterations} met"
                    return None
            taken[0] = n + batch
        return [pool[(n + i) % len(pool)] for i in range(batch)]

    def stream(k: int) -> None:
        with context():
            while (reqs := next_batch()) is not None:
                t0 = clock()
                run_batch(gens[k], reqs, batch, [t0] * len(reqs), seed, vocab, clock, origin, logs[k])

    _threads(len(gens), stream)
    window = max((max(log.end_ns) for log in logs if log.end_ns), default=0)
    return logs, int(window), reason[0]


def open_loop(gens: list[Any], requests: list[Request], batch: int, seed: int, vocab: int,
              context: Callable[[], Any], clock: Callable[[], int] = time.perf_counter_ns,
              sleep: Callable[[float], None] = time.sleep) -> tuple[list[StreamLog], int]:
    """Serve every scheduled request once, FIFO over the free streams; each request's clock starts at
    its scheduled arrival."""
    lock = threading.Lock()
    head = [0]
    logs = [StreamLog() for _ in gens]
    origin = clock() + 1_000_000  # the first arrival is not already late
    n = len(requests)

    def stream(k: int) -> None:
        with context():
            while True:
                with lock:
                    if head[0] >= n:
                        return
                    due = origin + requests[head[0]].arrival_ns
                wait_for(due, clock, sleep)
                with lock:
                    now = clock()
                    take: list[Request] = []
                    while head[0] < n and len(take) < batch and origin + requests[head[0]].arrival_ns <= now:
                        take.append(requests[head[0]])
                        head[0] += 1
                if take:
                    run_batch(gens[k], take, batch, [origin + r.arrival_ns for r in take], seed, vocab, clock,
                              origin, logs[k])

    _threads(len(gens), stream)
    window = max((max(log.end_ns) for log in logs if log.end_ns), default=0)
    return logs, int(window)
