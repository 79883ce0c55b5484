"""multi-stream: N closed-loop clients on threads, each issuing its next request when the last returns.

One cell per client count of the benchmark's `concurrency = [1, 2, 4, ...]` (its table): the
concurrency axis. Per-client figures are kept; the sweep stops once the SLO breaks (the runner's
sweep gate acts on any concurrency axis). Threads, since ONNX Runtime's run and torch's operators release the GIL while they compute; each
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

from bench.config.records import BenchmarkSpec, TargetSpec
from bench.measure.timing import as_call
from bench.results.records import Cell, CellKey
from bench.scenarios import net_requests, net_runs
from bench.scenarios.base import Figures, Scenario, ScenarioRun, Session, steady_figures
from bench.scenarios.loops import Window, warm_up

MAX_CONCURRENCY = 256  # client threads

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


class MultiStream(Scenario):
    name = "multi-stream"
    table_key = "concurrency"

    def parse_table(self, reader, value, path) -> tuple[int, ...]:
        raw = reader.expect(value, (list,), path, "a list of client counts >= 1")
        for j, c in enumerate(raw):
            if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= MAX_CONCURRENCY:
                raise reader.fail(f"{path}[{j}]", f"{c!r} is not allowed; expected a client count from 1 to {MAX_CONCURRENCY}")
        return tuple(sorted(set(raw)))

    def check(self, reader, bench: BenchmarkSpec, targets: dict[str, TargetSpec], path: str) -> None:
        counts = bench.table("concurrency")
        if not counts:
            raise reader.fail(path, "the multi-stream scenario needs concurrency = [1, 2, 4, ...] (client counts)")
        if max(counts) > 1:
            for j, t in enumerate(bench.targets):
                why = targets[t].options.serial_only()
                if why:
                    raise reader.fail(f"{path}.targets[{j}]", f"{t!r} {why}; run the multi-stream scenario with "
                                      "concurrency = [1] or on another target")

    def axis(self, bench: BenchmarkSpec) -> tuple[int | None, ...]:
        return bench.table("concurrency")

    def run(self, session: Session) -> ScenarioRun:
        stop, n = session.stop, session.key.concurrency
        duration = min(max(stop.min_seconds, 0.2), stop.max_seconds)
        if (requester := session.backend.requester()) is not None:  # N requests in flight from one event loop
            return net_runs.closed_run(session, requester, n, per_client=True, should_stop=lambda elapsed_ns, _: (
                f"{n} closed-loop clients for {duration:g} s (min_seconds, capped at max_seconds)"
                if elapsed_ns >= duration * 1e9 else None))
        with session.context():
            warm = warm_up(session.call, stop, time.perf_counter_ns)
        # Each client its own bound call (its own input buffers and, for ONNX Runtime, its own
        # IOBinding: one binding shared by threads would have them write the same outputs).
        calls = [session.call] + [session.bind(session.feeds) for _ in range(n - 1)]
        ran = run_clients(calls, n, duration, session.context, window_marks=session.window)
        return ScenarioRun(np.concatenate(ran.latencies_ns), ran.window_ns, warm,
                           f"{n} closed-loop clients for {duration:g} s (min_seconds, capped at max_seconds)",
                           detail=ran.latencies_ns)

    def figures(self, run: ScenarioRun, bench: BenchmarkSpec, key: CellKey) -> Figures:
        from dataclasses import replace

        from bench.results.records import ClientsInfo

        # The latencies interleave N clients: MSER's single-series view does not apply, and one
        # throughput series over their concatenation would be wrong.
        figures = steady_figures(run, bench, key, steady=False)
        window_s = run.window_ns / 1e9
        clients = ClientsInfo(
            key.concurrency,
            tuple(c.size * key.batch_size / window_s for c in run.detail),
            tuple(float(np.percentile(c, 99)) / 1e6 if c.size else 0.0 for c in run.detail),
        )
        return net_requests.with_requests(replace(figures, series=None, records={"clients": clients}), run)

    def detail_rows(self, cell: Cell) -> tuple[tuple[str, str], ...]:
        c = cell.clients
        if c is None:
            return ()
        return (("clients", "; ".join(f"{tp:,.0f} samples/s p99 {p99:.3g} ms"
                                      for tp, p99 in zip(c.throughput_per_client, c.p99_ms_per_client))),)
