"""The asyncio load generator that drives a served target's Requester (bench.backends.base).

Two loads, each run in a fresh event loop (asyncio.run, one per cell or peak-search probe: a
client's connections belong to the loop that opened them):

  open_loop    requests leave at scheduled offsets from t0 (a Poisson schedule), as many in flight
               as the schedule makes, one task each. Every latency runs from the request's
               SCHEDULED send to its completion, so a late driver or a queueing server cannot hide
               the wait (no coordinated omission); each send's lag (actual send - scheduled) is
               the driver's own lateness.
  closed_loop  N workers, each sending its next request when its last returns; latency from its
               send. A callback (the scenario's StopRule) is consulted about every 50 ms and ends
               the window; the event loop's own lag (how long a ready callback waited) is sampled
               every 10 ms, since a closed loop has no schedule to be late against.

A failed request (bench.errors.RequestFailed, a timeout, a refused connection) is counted by its
kind and never timed as a success: the ok mask picks the latencies the figures come from. Any
other exception is the requester's bug: the load stops and it is raised. The driver's own request
timeout is one watchdog for all requests in flight, not an asyncio.timeout per request (measured
here: 86k null requests/s dispatched with none, 35k with one each).

Kept lean for throughput (bench self-check compares the driver's sustainable rate with wrk's):
bodies are prepared before the clock starts, timestamps go into preallocated (open loop) or
appended (closed loop) int64 arrays of the standard library's `array`, and nothing in the loop
logs, formats or allocates beyond the task and the requester's own work.
"""
from __future__ import annotations

import asyncio
import time
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np

from bench.errors import REQUEST_ERROR_KINDS, RequestFailed

Clock = Callable[[], int]
# A window's stop rule: (elapsed ns, the ok latencies so far in chunks) -> why to stop, or None.
ShouldStop = Callable[[int, list[np.ndarray]], "str | None"]

# A cell whose driver lagged past this at p99 is driver-limited: its figures may describe the
# client, not the server. The driver self-check (bench self-check, issue 28 item 8) uses the same
# criterion for the highest rate the driver sustains.
DRIVER_LAG_LIMIT_NS = 1_000_000
SPIN_BELOW_NS = 1_000_000  # sleep until 1 ms before a send is due, then spin yielding to the loop:
# asyncio's timers wake on epoll's millisecond ticks, up to 1 ms late
START_DELAY_NS = 1_000_000  # t0 is 1 ms after the start, so the first request is not born late
CHECK_EVERY_S = 0.05  # the closed loop's stop rule is consulted about this often
LAG_SAMPLE_EVERY_S = 0.01  # the closed loop's event-loop lag is sampled about this often
DRAIN_S = 2.0  # a closed loop's window waits this long (or the request timeout) for requests in flight at its end
BURST_YIELD = 64  # a driver behind schedule yields to the loop after this many sends at once
OPEN_LOOP_CONNECTIONS = 64  # the pool an open loop asks the requester for (it may open them lazily)
EXAMPLES_PER_KIND = 3  # reasons kept per error kind (already secrets-free: RequestFailed's contract)

# error_code: 0 for an ok request, else 1 + its kind's index in REQUEST_ERROR_KINDS
OK = 0
_CODE = {kind: i + 1 for i, kind in enumerate(REQUEST_ERROR_KINDS)}
_TIMEOUT = _CODE["timeout"]


@dataclass(frozen=True)
class WarmupRule:
    """Warm-up requests before the window: at least min_requests and min_seconds, at most max_seconds."""

    min_requests: int = 10
    min_seconds: float = 0.0
    max_seconds: float = 10.0


@dataclass(frozen=True)
class NetRun:
    """What one load did, request by request (times in ns from the window's t0).

    Open loop: one entry per scheduled request, in schedule order. Closed loop: one per completed
    request in completion order, `scheduled_ns` equal to `sent_ns`. Requests still in flight when
    a closed loop's window ended finish and count; one still out after DRAIN_S (or the request
    timeout) is cancelled and counted in `cut_at_end`, not here.
    """

    mode: Literal["open", "closed"]
    concurrency: int  # closed: workers; open: the connection pool asked for
    scheduled_ns: np.ndarray  # int64
    sent_ns: np.ndarray  # int64: when send() was called
    end_ns: np.ndarray  # int64: when it returned or failed
    error_code: np.ndarray  # int8: 0 ok, else 1 + index in REQUEST_ERROR_KINDS
    client: np.ndarray  # int32: the closed-loop worker (zeros in an open loop)
    lag_ns: np.ndarray  # int64: open: sent - scheduled per request; closed: event-loop lag samples
    window_ns: int  # t0 to the last completion (closed: to the stop, if later)
    warmup_latencies_ns: np.ndarray  # int64, the ok warm-up requests'
    warmup_failed: int
    examples: tuple[tuple[str, str], ...]  # (kind, reason), a few per kind
    cut_at_end: int = 0
    stop_reason: str = ""

    @property
    def ok(self) -> np.ndarray:
        return self.error_code == OK

    @property
    def latencies_ns(self) -> np.ndarray:
        """The ok requests' latencies, from their scheduled send (open) or their send (closed)."""
        ok = self.ok
        return self.end_ns[ok] - self.scheduled_ns[ok]

    @property
    def lag_measure(self) -> str:
        if self.mode == "open":
            return "send - scheduled send, per request"
        return f"event-loop lag (a ready callback's wait), sampled every {LAG_SAMPLE_EVERY_S * 1e3:g} ms"

    def error_counts(self) -> dict[str, int]:
        counts = np.bincount(self.error_code.astype(np.int64), minlength=len(REQUEST_ERROR_KINDS) + 1)
        return {kind: int(counts[code]) for kind, code in _CODE.items() if counts[code]}


# The lag must also be a material part of what was measured: a lag p99 under this share of the
# requests' own latency p99 cannot be what made the tail (on the 2-core machine here, client and
# server on loopback, 200/s into MLServer and KServe gave lag p99 1.2-1.3 ms under latency p99s of
# 13-29 ms: the server's tail, not the driver's).
LAG_SHARE_OF_TAIL = 0.10


def lag_limited(lag_ns: np.ndarray, limit_ns: int = DRIVER_LAG_LIMIT_NS,
                latency_p99_ns: float | None = None) -> str:
    """Why the driver, not the server, limited the load ("" when it did not): its lag p99 over the
    limit and, where the requests' latency p99 is given, over LAG_SHARE_OF_TAIL of it."""
    if lag_ns.size == 0:
        return ""
    p99 = float(np.percentile(lag_ns, 99))
    if p99 <= limit_ns:
        return ""
    if latency_p99_ns is not None and p99 <= LAG_SHARE_OF_TAIL * latency_p99_ns:
        return ""
    tail = ("" if latency_p99_ns is None else
            f" and {p99 / latency_p99_ns:.0%} of the requests' latency p99 ({latency_p99_ns / 1e6:,.3g} ms)")
    return (f"the driver's send lag p99 {p99 / 1e3:,.0f} µs is over {limit_ns / 1e3:,.0f} µs{tail}: the client, not "
            "the server, limited this load")


class _Tally:
    """Per-request outcomes, filled by the request coroutines (one event loop: no locks)."""

    def __init__(self) -> None:
        self.examples: dict[str, list[str]] = {}
        self.bug: BaseException | None = None

    def classify(self, exc: BaseException) -> int:
        """The error code of a failed send; a requester's bug is kept to be raised after the load."""
        if isinstance(exc, RequestFailed):
            kind, reason = exc.kind, exc.reason
        elif isinstance(exc, TimeoutError):
            kind, reason = "timeout", "no response within the driver's timeout"
        elif isinstance(exc, OSError):  # a requester that let a socket error through
            kind, reason = "connect", f"{type(exc).__name__}: {exc.strerror or 'connection failed'}"
        else:
            if self.bug is None:
                self.bug = exc
            kind, reason = "malformed", f"{type(exc).__name__} in the requester"
        kept = self.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES_PER_KIND and reason not in kept:
            kept.append(" ".join(reason.split())[:300])
        return _CODE[kind]

    def timed_out(self, timeout_s: float) -> int:
        """The error code of a request the watchdog cancelled past the driver's timeout."""
        kept = self.examples.setdefault("timeout", [])
        reason = f"no response within the driver's timeout ({timeout_s:g} s)"
        if len(kept) < EXAMPLES_PER_KIND and reason not in kept:
            kept.append(reason)
        return _TIMEOUT

    def example_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple((k, r) for k in REQUEST_ERROR_KINDS for r in self.examples.get(k, ()))


def _i64(a: array) -> np.ndarray:
    return np.frombuffer(a, dtype=np.int64).copy() if len(a) else np.zeros(0, dtype=np.int64)


async def _yield_until(due_ns: int, clock: Clock) -> None:
    """Return at `due_ns`: sleep until SPIN_BELOW_NS before, then spin, yielding to the loop each
    turn so responses keep being handled while the driver waits."""
    left = due_ns - clock()
    if left > SPIN_BELOW_NS:
        await asyncio.sleep((left - SPIN_BELOW_NS) / 1e9)
    while clock() < due_ns:
        await asyncio.sleep(0)


def _watch_period_s(timeout_s: float) -> float:
    """How often the watchdog looks: a tenth of the timeout, between 1 ms and 50 ms."""
    return min(max(timeout_s / 10, 0.001), 0.05)


async def _closed(requester: Any, items: Sequence[Any], concurrency: int, should_stop: ShouldStop,
                  timeout_s: float | None, clock: Clock, sample_lag: bool,
                  on_start: Callable[[], None], on_end: Callable[[], None], ok_only: bool = True) -> tuple:
    """N workers until should_stop; returns the raw arrays (see closed_loop)."""
    tally = _Tally()
    sent, end, client = array("q"), array("q"), array("i")
    code = bytearray()
    lags = array("q")
    send = requester.send
    m = len(items)
    state = {"stop": False}
    began = [0] * concurrency  # when worker k's request in flight was sent (0: none in flight)
    expired = bytearray(concurrency)  # set by the watchdog before it cancels worker k's request

    async def worker(k: int) -> None:
        j = k
        while not state["stop"]:
            item = items[j % m]
            j += concurrency
            began[k] = s = clock()
            try:
                await send(item)
                c = OK
            except asyncio.CancelledError:
                if not expired[k]:
                    raise  # the window ended with it in flight: cut, not counted
                expired[k] = 0
                asyncio.current_task().uncancel()
                c = tally.timed_out(timeout_s)
            except Exception as exc:
                c = tally.classify(exc)
            began[k] = 0
            e = clock()
            sent.append(s)
            end.append(e)
            code.append(c)
            client.append(k)
            if c != OK:
                if tally.bug is not None:
                    state["stop"] = True
                await asyncio.sleep(0)  # a send that fails without suspending must not starve the loop

    async def watchdog() -> None:
        limit_ns = int(timeout_s * 1e9)
        while True:
            await asyncio.sleep(_watch_period_s(timeout_s))
            now = clock()
            for k in range(concurrency):
                if began[k] and not expired[k] and now - began[k] >= limit_ns:
                    expired[k] = 1
                    tasks[k].cancel()

    on_start()
    t0 = clock()
    tasks = [asyncio.ensure_future(worker(k)) for k in range(concurrency)]
    watch = asyncio.ensure_future(watchdog()) if timeout_s is not None else None
    chunks: list[np.ndarray] = []
    seen = 0
    next_check = t0 + int(CHECK_EVERY_S * 1e9)
    reason = ""
    while True:
        await asyncio.sleep(LAG_SAMPLE_EVERY_S)
        if sample_lag:
            t = clock()
            await asyncio.sleep(0)
            lags.append(clock() - t)
        if tally.bug is not None or all(t.done() for t in tasks):
            break
        now = clock()
        if now < next_check:
            continue
        next_check = now + int(CHECK_EVERY_S * 1e9)
        n = len(end)
        if n > seen:  # the ok latencies completed since the last check, as one chunk
            c = np.frombuffer(bytes(code[seen:n]), dtype=np.int8)
            lat = np.frombuffer(end[seen:n], dtype=np.int64) - np.frombuffer(sent[seen:n], dtype=np.int64)
            chunks.append(lat[c == OK] if ok_only else lat)
            seen = n
        reason = should_stop(now - t0, chunks) or ""
        if reason:
            break
    state["stop"] = True
    stop_at = clock()
    # Each worker ends after the request it has in flight: those count (nothing sent is dropped),
    # up to DRAIN_S or the request timeout; one still out then is cancelled and counted as cut.
    _, pending = await asyncio.wait(tasks, timeout=max(DRAIN_S, timeout_s or 0.0))
    if watch is not None:
        watch.cancel()
    for t in pending:
        t.cancel()
    cut = len(pending)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    on_end()
    if tally.bug is not None:
        raise tally.bug
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            raise r
    last = max(end) if len(end) else stop_at
    return t0, sent, end, code, client, lags, tally, cut, max(last, stop_at) - t0, reason


def _warmup_stop(rule: WarmupRule) -> ShouldStop:
    """Warm-up counts every answered request, failed ones too: a failing server must not hold it
    until max_seconds."""
    min_ns, cap_ns = int(rule.min_seconds * 1e9), int(max(rule.max_seconds, rule.min_seconds) * 1e9)

    def check(elapsed_ns: int, chunks: list[np.ndarray]) -> str | None:
        n = sum(c.size for c in chunks)
        if (n >= rule.min_requests and elapsed_ns >= min_ns) or elapsed_ns >= cap_ns:
            return "warm"
        return None

    return check


async def _warm_up(requester: Any, items: Sequence[Any], concurrency: int, rule: WarmupRule | None,
                   timeout_s: float | None, clock: Clock) -> tuple[np.ndarray, int]:
    if rule is None or (rule.min_requests <= 0 and rule.min_seconds <= 0):
        return np.zeros(0, dtype=np.int64), 0
    _, sent, end, code, *_ = await _closed(requester, items, concurrency, _warmup_stop(rule), timeout_s, clock,
                                           False, lambda: None, lambda: None, ok_only=False)
    c = np.frombuffer(bytes(code), dtype=np.int8)
    lat = _i64(end) - _i64(sent)
    return lat[c == OK], int((c != OK).sum())


async def _with_requester(requester: Any, concurrency: int, body: Callable[[], Any]) -> Any:
    await requester.open(concurrency)
    try:
        return await body()
    finally:
        await requester.close()


def closed_loop(requester: Any, prepared: Any, concurrency: int, should_stop: ShouldStop,
                timeout_s: float | None = None, warmup: WarmupRule | None = WarmupRule(),
                clock: Clock = time.perf_counter_ns, on_window_start: Callable[[], None] = lambda: None,
                on_window_end: Callable[[], None] = lambda: None) -> NetRun:
    """`concurrency` workers, each sending its next request when its last returns, until
    should_stop(elapsed_ns, ok latency chunks) gives a reason (consulted about every 50 ms).
    `prepared`: one prepared request, or a list cycled through (worker k starts at item k).
    `timeout_s`: the driver's own limit on one request (None: the requester's alone)."""
    if concurrency < 1:
        raise ValueError(f"concurrency {concurrency!r}: must be >= 1")
    items = list(prepared) if isinstance(prepared, list) else [prepared]

    async def body():
        warm, warm_failed = await _warm_up(requester, items, concurrency, warmup, timeout_s, clock)
        out = await _closed(requester, items, concurrency, should_stop, timeout_s, clock, True,
                            on_window_start, on_window_end)
        return warm, warm_failed, out

    warm, warm_failed, (t0, sent, end, code, client, lags, tally, cut, window, reason) = asyncio.run(
        _with_requester(requester, concurrency, body))
    sent_ns, end_ns = _i64(sent) - t0, _i64(end) - t0
    return NetRun("closed", concurrency, sent_ns, sent_ns, end_ns, np.frombuffer(bytes(code), dtype=np.int8).copy(),
                  np.frombuffer(client, dtype=np.int32).copy() if len(client) else np.zeros(0, dtype=np.int32),
                  _i64(lags), int(window), warm, warm_failed, tally.example_pairs(), cut, reason)


async def _open(requester: Any, items: Sequence[Any], schedule: list[int], timeout_s: float | None,
                clock: Clock, on_start: Callable[[], None], on_end: Callable[[], None]) -> tuple:
    n = len(schedule)
    tally = _Tally()
    sent = array("q", bytes(8 * n))
    end = array("q", bytes(8 * n))
    code = bytearray(n)
    send = requester.send
    m = len(items)
    loop = asyncio.get_running_loop()
    in_flight: set = set()
    expired = bytearray(n)  # set by the watchdog before it cancels request i
    watched: deque = deque()  # (i, task) in send order, for the watchdog

    async def one(i: int, item: Any) -> None:
        sent[i] = clock()
        try:
            await send(item)
        except asyncio.CancelledError:
            if not expired[i]:
                raise
            asyncio.current_task().uncancel()
            code[i] = tally.timed_out(timeout_s)
        except Exception as exc:
            code[i] = tally.classify(exc)
        end[i] = clock()

    async def watchdog() -> None:
        # Requests are sent in order, so their deadlines come in order: look at the oldest only.
        limit_ns = int(timeout_s * 1e9)
        while True:
            await asyncio.sleep(_watch_period_s(timeout_s))
            now = clock()
            while watched:
                i, task = watched[0]
                if task.done():
                    watched.popleft()
                elif sent[i] and now - sent[i] >= limit_ns:
                    watched.popleft()
                    expired[i] = 1
                    task.cancel()
                else:
                    break

    on_start()
    watch = loop.create_task(watchdog()) if timeout_s is not None else None
    t0 = clock() + START_DELAY_NS
    burst = 0
    for i in range(n):
        due = t0 + schedule[i]
        if clock() < due:
            burst = 0
            await _yield_until(due, clock)
        else:  # behind schedule: send at once, but let responses in now and then
            burst += 1
            if burst >= BURST_YIELD:
                burst = 0
                await asyncio.sleep(0)
        task = loop.create_task(one(i, items[i % m]))
        in_flight.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(in_flight.discard)
        if watch is not None:
            watched.append((i, task))
        if tally.bug is not None:
            n = i + 1
            break
    while in_flight:
        await asyncio.wait(tuple(in_flight))
    if watch is not None:
        watch.cancel()
    on_end()
    if tally.bug is not None:
        raise tally.bug
    return t0, n, sent, end, code, tally


def open_loop(requester: Any, prepared_list: Sequence[Any], schedule_ns: np.ndarray,
              timeout_s: float | None = None, warmup: WarmupRule | None = WarmupRule(),
              clock: Clock = time.perf_counter_ns, connections: int = OPEN_LOOP_CONNECTIONS,
              on_window_start: Callable[[], None] = lambda: None,
              on_window_end: Callable[[], None] = lambda: None) -> NetRun:
    """Send request i at schedule_ns[i] after t0 (prepared_list cycled), each in its own task;
    warm up first with one request at a time. Latencies run from the schedule."""
    items = list(prepared_list)
    if not items:
        raise ValueError("open_loop needs at least one prepared request")
    schedule = np.asarray(schedule_ns, dtype=np.int64)

    async def body():
        warm, warm_failed = await _warm_up(requester, items, 1, warmup, timeout_s, clock)
        out = await _open(requester, items, schedule.tolist(), timeout_s, clock, on_window_start, on_window_end)
        return warm, warm_failed, out

    warm, warm_failed, (t0, n, sent, end, code, tally) = asyncio.run(_with_requester(requester, connections, body))
    sent_ns, end_ns = _i64(sent)[:n] - t0, _i64(end)[:n] - t0
    scheduled = schedule[:n].copy()
    return NetRun("open", connections, scheduled, sent_ns, end_ns, np.frombuffer(bytes(code[:n]), dtype=np.int8).copy(),
                  np.zeros(n, dtype=np.int32), sent_ns - scheduled, int(end_ns.max()) if n else 0, warm, warm_failed,
                  tally.example_pairs())
