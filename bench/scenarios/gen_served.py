"""The generate scenario on a served generator (a backend with a streamer(): backend = "openai").

The workload is the in-process one (bench.scenarios.generate): the same drawn prompt and output
lengths, streams (requests in flight at once), requests, qps (Poisson arrivals), trace and rate
search, with the same seed. What changes is the unit of work: one request is one prompt streamed
to its end over HTTP (the server batches as it likes, so a cell's batch size must be 1), driven
from one asyncio event loop.

A prompt is `prompt_len` common English words drawn from the benchmark's seed and the request's
index (the same text on every served target); most tokenizers make one token of each, and the
server's usage.prompt_tokens, where sent, is what the cell records. Each request asks for
max_tokens = its output_len; the answer's real length (counted by the server's usage or a
tokenizer, bench.backends.openai) is what every figure uses.

Per request, from the events' arrival times (perf_counter_ns on the client):
  TTFT  first token event - the request's start (its scheduled arrival in an open loop, so a
        driver or queue delay shows; its send in a closed loop)
  ITL   each gap between consecutive token events: one gap per event, whatever number of tokens
        the later event carries (vLLM's bench_serving does the same): the time a reader waited
  TPOT  (last token event - first) / (output tokens - 1), with the counted tokens, so an event
        carrying k tokens costs TPOT nothing extra and packing does not bias it (a whole answer in
        one event: TPOT 0)
  end-to-end = last token event - start.
Goodput and attainment under slo.ttft_ms / slo.tpot_ms as in-process (bench.analysis.goodput),
except that a failed request counts against attainment: it met no SLO.

A request that fails (bench.errors.RequestFailed: connect, timeout, http_status, malformed) is
counted by its kind, never timed: no latency, no tokens. The cell fails only when no request
completes; its stop reason and notes say how many failed and why.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from bench.errors import REQUEST_ERROR_KINDS, CellFailure, RequestFailed
from bench.scenarios.gen_workload import Request, draw_requests, trace_requests

# Common English words, most of them one token (with their leading space) in the usual BPE
# vocabularies: a prompt of N of them is about N tokens on any server.
WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
         "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they",
         "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more",
         "when", "will", "would", "who", "so", "no", "time", "out", "up", "about", "into", "than", "them",
         "only", "other", "new", "some", "could", "these", "two", "may", "first")
KV_SOURCE = "not visible to a client: a served generator"
PREFILL_NOTE = "not visible to a client: a served generator's prefill is inside its TTFT"


def prompt_text(seed: int, index: int, length: int) -> str:
    """Request `index`'s prompt: `length` words, the same for every served target of a benchmark."""
    picks = np.random.default_rng([seed, 7, index]).integers(0, len(WORDS), size=length)
    return " ".join(WORDS[i] for i in picks)


# --- what one run saw ---------------------------------------------------------------------------


@dataclass
class Tally:
    """Requests as they finish (from one event loop: no locks)."""

    origin_ns: int
    start_ns: list[int] = field(default_factory=list)
    first_ns: list[int] = field(default_factory=list)
    end_ns: list[int] = field(default_factory=list)
    prompt_lens: list[int] = field(default_factory=list)  # drawn (words)
    prompt_tokens: list[int] = field(default_factory=list)  # the server's usage; -1 where not sent
    output_lens: list[int] = field(default_factory=list)  # counted tokens
    asked_lens: list[int] = field(default_factory=list)  # max_tokens sent
    itl_ns: list[int] = field(default_factory=list)
    events: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_reason: dict[str, str] = field(default_factory=dict)
    lag_ns: list[int] = field(default_factory=list)  # open loop: how late each send left its schedule

    def ok(self, start_ns: int, trace: Any, req: Request) -> None:
        o = self.origin_ns
        self.start_ns.append(start_ns - o)
        self.first_ns.append(trace.event_ns[0] - o)
        self.end_ns.append(trace.event_ns[-1] - o)
        self.prompt_lens.append(req.prompt_len)
        self.prompt_tokens.append(-1 if trace.prompt_tokens is None else int(trace.prompt_tokens))
        self.output_lens.append(int(trace.output_tokens))
        self.asked_lens.append(req.output_len)
        self.itl_ns.extend(int(b - a) for a, b in zip(trace.event_ns, trace.event_ns[1:]))
        self.events += len(trace.event_ns)

    def failed(self, exc: RequestFailed) -> None:
        self.errors[exc.kind] = self.errors.get(exc.kind, 0) + 1
        self.first_reason.setdefault(exc.kind, exc.reason)

    def failures(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class ServedRun:
    """The worker's detail for a served generate cell (ns offsets from the run's origin)."""

    start_ns: np.ndarray
    first_ns: np.ndarray
    end_ns: np.ndarray
    prompt_lens: np.ndarray
    prompt_tokens: np.ndarray
    output_lens: np.ndarray
    asked_lens: np.ndarray
    itl_ns: np.ndarray
    lag_ns: np.ndarray
    events: int
    window_ns: int
    streams: int
    load: str
    errors: tuple[tuple[str, int], ...] = ()
    error_reasons: tuple[tuple[str, str], ...] = ()
    token_sources: tuple[tuple[str, int], ...] = ()
    offered_qps: float | None = None
    probes: tuple[Any, ...] = ()
    searched: bool = False

    @property
    def failed(self) -> int:
        return sum(n for _, n in self.errors)

    def error_line(self) -> str:
        """"3 of 40 requests failed (timeout 2: <reason>; http_status 1: <reason>), not timed", or ""."""
        if not self.failed:
            return ""
        reasons = dict(self.error_reasons)
        parts = [f"{k} {n}: {reasons.get(k, '')}" for k, n in sorted(self.errors, key=lambda e: REQUEST_ERROR_KINDS.index(e[0]))]
        total = self.failed + int(self.end_ns.size)
        return f"{self.failed} of {total} requests failed ({'; '.join(parts)}), not timed"

    def notes(self) -> str:
        """What a reader of a served cell needs beside its figures (GenerateInfo.padding's place)."""
        sources = ", ".join(f"{k} ({n})" for k, n in self.token_sources) or "none"
        if any(k == "events" for k, _ in self.token_sources):  # a server that packs tokens then reads fast
            sources += " [events: one token each assumed, the server sent no usage and no tokenizer was named]"
        parts = ["none: the server batches as it likes", f"tokens counted by {sources}",
                 f"{self.events} token events for {int(self.output_lens.sum())} tokens"]
        short = int((self.output_lens < self.asked_lens).sum())
        if short:
            parts.append(f"{short} answers shorter than asked (the server stopped them; ignore_eos makes them full)")
        if self.lag_ns.size:
            parts.append(f"driver send lag p99 {float(np.quantile(self.lag_ns, 0.99)) / 1e6:.3g} ms")
        if self.failed:
            parts.append(self.error_line())
        return "; ".join(parts)


def _collect(t: Tally, window_ns: int, streams: int, load: str, sources: dict[str, int],
             offered_qps: float | None = None) -> ServedRun:
    def arr(values: list[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)

    return ServedRun(arr(t.start_ns), arr(t.first_ns), arr(t.end_ns), arr(t.prompt_lens), arr(t.prompt_tokens),
                     arr(t.output_lens), arr(t.asked_lens), arr(t.itl_ns), arr(t.lag_ns), t.events, window_ns,
                     streams, load, tuple(sorted(t.errors.items())), tuple(sorted(t.first_reason.items())),
                     tuple(sorted(sources.items())), offered_qps)


# --- the loops (one event loop; tests drive them with a fake streamer and clock) -----------------


class Prompts:
    """Prompt texts by request index, built once each, outside any request's timing."""

    def __init__(self, seed: int):
        self.seed = seed
        self._cache: dict[int, str] = {}

    def __call__(self, req: Request) -> str:
        text = self._cache.get(req.index)
        if text is None:
            text = self._cache[req.index] = prompt_text(self.seed, req.index, req.prompt_len)
        return text


async def _one(streamer: Any, req: Request, prompts: Prompts, tally: Tally, start_ns: int | None) -> None:
    try:
        trace = await streamer.stream(prompts(req), req.output_len)
    except RequestFailed as exc:
        tally.failed(exc)
        return
    tally.ok(trace.sent_ns if start_ns is None else start_ns, trace, req)


async def closed_loop(streamer: Any, pool: list[Request], streams: int, requests: int, stop: Any, prompts: Prompts,
                      clock: Callable[[], int] = time.perf_counter_ns) -> tuple[Tally, int, str]:
    """`streams` requests in flight, each stream sending its next as soon as its last one ended,
    until `requests` are taken, or (requests = 0) until min_seconds and min_iterations are past,
    at most max_seconds (the in-process closed loop's rule, bench.scenarios.gen_loop)."""
    tally = Tally(clock())
    taken = [0]
    reason = [""]

    def next_request() -> Request | None:
        elapsed_s = (clock() - tally.origin_ns) / 1e9
        n = taken[0]
        if requests:
            if n >= requests:
                reason[0] = f"{n} requests done (generate.requests = {requests})"
                return None
        elif elapsed_s >= stop.max_seconds:
            reason[0] = f"max_seconds {stop.max_seconds:g} s reached after {n} requests"
            return None
        elif elapsed_s >= stop.min_seconds and n >= stop.min_iterations:
            reason[0] = f"min_seconds {stop.min_seconds:g} s and min_iterations {stop.min_iterations} met"
            return None
        taken[0] = n + 1
        return pool[n % len(pool)]

    async def stream() -> None:
        while (req := next_request()) is not None:
            await _one(streamer, req, prompts, tally, None)

    await asyncio.gather(*(stream() for _ in range(streams)))
    window = max(tally.end_ns, default=0)
    return tally, int(window), reason[0]


async def open_loop(streamer: Any, reqs: list[Request], streams: int, prompts: Prompts,
                    clock: Callable[[], int] = time.perf_counter_ns) -> tuple[Tally, int]:
    """Each request sent at its scheduled arrival, at most `streams` in flight (a request that finds
    them all busy waits, its clock running from its arrival: queueing shows, as in-process)."""
    for r in reqs:
        prompts(r)  # every prompt built before the first arrival
    tally = Tally(clock() + 1_000_000)  # the first arrival is not already late
    slots = asyncio.Semaphore(streams)
    tasks = []

    async def send(req: Request, due: int) -> None:
        async with slots:
            await _one(streamer, req, prompts, tally, due)

    for req in reqs:
        due = tally.origin_ns + int(req.arrival_ns or 0)
        wait_ns = due - clock()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        tally.lag_ns.append(max(clock() - due, 0))
        tasks.append(asyncio.ensure_future(send(req, due)))
    await asyncio.gather(*tasks)
    window = max(tally.end_ns, default=0)
    return tally, int(window)


# --- the scenario's worker side ---------------------------------------------------------------


@dataclass
class ServedState:
    loop: asyncio.AbstractEventLoop
    streamer: Any
    pool: list[Request]
    prompts: Prompts
    warm_ns: list[int] = field(default_factory=list)


def start(session: Any, keep_outputs: Callable[[list[np.ndarray]], None], spec: Any, pool_size: int) -> None:
    """Open the pool; the first request's answer as the agreement outputs (its text, UTF-8 bytes);
    then warm-up: every stream busy until stop.warmup_seconds."""
    if session.batch_size != 1:
        raise CellFailure(f"batch size {session.batch_size}: a served generator takes one prompt per request and "
                          "batches on the server; set batch_sizes = [1] for this target")
    streams = session.key.concurrency or 1
    streamer = session.backend.streamer()
    pool = trace_requests(spec.trace) if spec.trace else draw_requests(
        spec.prompt_len, spec.output_len, spec.requests or pool_size, spec.seed)
    loop = asyncio.new_event_loop()
    state = ServedState(loop, streamer, pool, Prompts(session.bench.seed))
    session.scenario_state = state
    try:
        loop.run_until_complete(streamer.open(streams))
        text = probe_text(loop, streamer, state.prompts, pool[0], state.warm_ns)
        keep_outputs([np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()])
        warm_s = session.stop.warmup_seconds
        warm_stop = replace(session.stop, min_seconds=warm_s, max_seconds=max(warm_s, 1e-9), min_iterations=streams)
        tally, _, _ = loop.run_until_complete(closed_loop(streamer, pool, streams, 0, warm_stop, state.prompts))
        state.warm_ns.extend(int(e - s) for s, e in zip(tally.start_ns, tally.end_ns))
    except BaseException:
        close(state)
        raise


PROBE_TRIES = 3  # a server that fails some requests (counted in the run) should not fail the cell on its first


def probe_text(loop: asyncio.AbstractEventLoop, streamer: Any, prompts: Prompts, req: Request,
               warm_ns: list[int]) -> str:
    """The first request's answer text (the agreement outputs); CellFailure, naming the last
    failure, when PROBE_TRIES tries all fail (the server cannot serve this target at all)."""
    text_of = getattr(streamer, "stream_text", None)
    for attempt in range(PROBE_TRIES):
        t0 = time.perf_counter_ns()
        try:
            if text_of is not None:
                _, text = loop.run_until_complete(text_of(prompts(req), req.output_len))
            else:  # a Streamer without text: nothing to compare, and said so (gen_served.text_agreement)
                loop.run_until_complete(streamer.stream(prompts(req), req.output_len))
                text = ""
        except RequestFailed as exc:
            if attempt + 1 == PROBE_TRIES:
                raise CellFailure(f"the first request failed {PROBE_TRIES} times ({exc.kind}): {exc.reason}",
                                  kind="error") from None
            continue
        warm_ns.append(time.perf_counter_ns() - t0)
        return text
    raise AssertionError("unreachable")


def close(state: ServedState) -> None:
    try:
        state.loop.run_until_complete(state.streamer.close())
    finally:
        state.loop.close()


def run(session: Any, spec: Any, schedule: Callable[[float, Any, Any], np.ndarray]) -> Any:
    """The measured requests: closed loop, open loop at generate.qps (or a trace), or the rate
    search; `schedule(rate, spec, stop)` gives a rate's Poisson arrivals (the in-process scenario's)."""
    from bench.scenarios.base import ScenarioRun
    from bench.scenarios.open_loop import find_peak

    state: ServedState = session.scenario_state
    streams = session.key.concurrency or 1
    load = spec.load(streams)
    loop, streamer = state.loop, state.streamer

    def sources() -> dict[str, int]:
        return dict(getattr(streamer, "token_sources", {}) or {})

    def serve(reqs: list[Request]) -> ServedRun:
        before = sources()
        session.window.start()
        tally, window = loop.run_until_complete(open_loop(streamer, reqs, streams, state.prompts))
        session.window.end()
        used = {k: v - before.get(k, 0) for k, v in sources().items() if v - before.get(k, 0)}
        last = reqs[-1].arrival_ns if reqs else 0
        return _collect(tally, window, streams, load, used, len(reqs) / (last / 1e9) if last else None)

    try:
        if spec.search:
            limits = session.bench.slo.token_limits()

            def try_rate(rate: float):
                arrivals = schedule(rate, spec, session.stop)
                reqs = [replace(r, arrival_ns=int(a)) for r, a in zip(state.pool, arrivals)]
                if not reqs:
                    raise CellFailure(f"no Poisson arrival fell within the run at {rate:g}/s: raise requests or qps")
                d = serve(reqs)
                return load_point(d, rate, limits, spec.min_goodput), d

            peak, tried, served = find_peak(try_rate, spec.qps, spec.resolution, spec.max_probes)
            if served is None:
                _, served = try_rate(min(p.offered_qps for p in tried) or spec.qps)
            served = replace(served, probes=tuple(tried), searched=True)
            reason = (f"rate search: {len(tried)} rates tried, highest meeting the SLO "
                      + (f"{peak:,.2f}/s" if peak else "none"))
        elif spec.open_loop:
            if spec.trace:
                reqs = state.pool
            else:
                arrivals = schedule(spec.qps, spec, session.stop)
                pool = state.pool if len(state.pool) >= arrivals.size else draw_requests(
                    spec.prompt_len, spec.output_len, int(arrivals.size), spec.seed)
                reqs = [replace(r, arrival_ns=int(a)) for r, a in zip(pool, arrivals)]
            if not reqs:
                raise CellFailure(f"no Poisson arrival fell within the run at {spec.qps:g}/s: raise requests or qps")
            served = serve(reqs)
            reason = f"{len(reqs)} requests sent ({load})"
        else:
            before = sources()
            session.window.start()
            tally, window, reason = loop.run_until_complete(
                closed_loop(streamer, state.pool, streams, spec.requests, session.stop, state.prompts))
            session.window.end()
            used = {k: v - before.get(k, 0) for k, v in sources().items() if v - before.get(k, 0)}
            served = _collect(tally, window, streams, load, used)
    finally:
        close(state)
    if served.failed:
        reason = f"{reason}; {served.error_line()}"
    if served.end_ns.size == 0:
        raise CellFailure(f"no request completed: {served.error_line() or 'none was sent'}", kind="error")
    e2e = served.end_ns - served.start_ns
    return ScenarioRun(e2e, served.window_ns, np.asarray(state.warm_ns, dtype=np.int64), reason,
                       window_calls=int(served.end_ns.size), detail=served, requests=request_tally(served))


def request_tally(d: ServedRun) -> Any:
    """The requests as every served cell records them (bench.scenarios.net_requests: the cell's
    RequestStats, its error rate in the run table)."""
    from bench.scenarios.net_requests import RequestTally

    ok = int(d.end_ns.size)
    measure = "send - scheduled arrival, per request" if d.lag_ns.size else "none: a closed loop has no schedule"
    return RequestTally(d.load, ok + d.failed, ok, dict(d.errors), d.error_reasons, d.lag_ns, measure)


def attainment(d: ServedRun, req: Any, limits: dict[str, float]) -> tuple[float, float]:
    """(requests/s that met every limit, their share of every request sent, failed ones included)."""
    n = int(req.ttft_ns.size) + d.failed
    if n == 0 or d.window_ns <= 0:
        return 0.0, 0.0
    good = int(req.good(limits.get("ttft_ms"), limits.get("tpot_ms")).sum())
    return good / (d.window_ns / 1e9), good / n


def load_point(d: ServedRun, rate: float, limits: dict[str, float], min_goodput: float) -> Any:
    from bench.analysis.goodput import RequestFigures
    from bench.results.records import GenerateLoadPoint

    req = RequestFigures.of(d.start_ns, d.first_ns, d.end_ns, d.output_lens)
    good_qps, share = attainment(d, req, limits)
    achieved = req.ttft_ns.size / (d.window_ns / 1e9) if d.window_ns else 0.0
    ttft99 = float(np.quantile(req.ttft_ns, 0.99)) / 1e6 if req.ttft_ns.size else 0.0
    tpot99 = float(np.quantile(req.tpot_ns, 0.99)) / 1e6 if req.tpot_ns.size else None
    return GenerateLoadPoint(d.offered_qps or rate, achieved, good_qps, share, ttft99, tpot99, int(req.ttft_ns.size),
                             bool(req.ttft_ns.size and share >= min_goodput))


# --- the parent side ---------------------------------------------------------------------------


def figures(run: Any, bench: Any, spec: Any) -> Any:
    """The cell's figures from a ServedRun: generate's (bench.analysis.generation), with what a
    client cannot see (prefill, the KV cache) said to be unseen, and failed requests against
    attainment."""
    from bench import stats
    from bench.analysis import slo as slos
    from bench.analysis.generation import _latency, slo_of, tokens_throughput, with_process
    from bench.analysis.goodput import RequestFigures
    from bench.results.records import Estimate, GenerateInfo, Metrics, Slo
    from bench.scenarios.base import Figures
    from bench.scenarios.net_requests import with_requests

    d: ServedRun = run.detail
    c, seed = bench.stop.confidence, bench.seed
    req = RequestFigures.of(d.start_ns, d.first_ns, d.end_ns, d.output_lens)
    n = int(req.ttft_ns.size)
    e2e = _latency(req.e2e_ns, c, seed)
    tp = tokens_throughput(int(d.output_lens.sum()), n, d.window_ns, c)
    per_stream = d.output_lens / np.maximum(req.e2e_ns, 1) * 1e9
    iv = stats.bootstrap_mean(per_stream.astype(np.float64), c, seed=seed)
    limits = bench.slo.token_limits() if bench.slo else {}
    slo, good_qps, share = slo_of(req, d.window_ns, limits, slos.of_latency(bench.slo_limits(), e2e), spec.min_goodput)
    if limits:
        good_qps, share = attainment(d, req, limits)
        passed = all(ch.passed for ch in slo.checks) and share >= spec.min_goodput
        slo = Slo(passed, slo.checks)
    peak = max((p.offered_qps for p in d.probes if p.good), default=None) if d.searched else None
    told = d.prompt_tokens[d.prompt_tokens >= 0]
    prompt_tokens = int(told.sum()) if told.size == d.prompt_tokens.size and told.size else int(d.prompt_lens.sum())
    info = GenerateInfo(
        load=d.load, streams=d.streams, requests=n,
        prompt_len=("trace" if spec.trace else spec.prompt_len.describe()) + " words",
        output_len=("trace" if spec.trace else spec.output_len.describe()) + " (max_tokens)",
        prompt_tokens=prompt_tokens, output_tokens=int(d.output_lens.sum()),
        ttft_ms=_latency(req.ttft_ns, c, seed), tpot_ms=_latency(req.tpot_ns, c, seed),
        itl_ms=_latency(d.itl_ns.astype(np.float64), c, seed),
        tokens_per_s_per_stream=Estimate(float(per_stream.mean()), iv.low, iv.high,
                                         f"mean over requests of tokens / end-to-end time; {iv.method}"),
        prefill_tokens_per_s=Estimate(0.0, None, None, PREFILL_NOTE),
        decode_curve=(), kv_cache_bytes=0, kv_cache_source=KV_SOURCE, padding=d.notes(),
        offered_qps=d.offered_qps,
        achieved_qps=n / (d.window_ns / 1e9) if d.offered_qps is not None and d.window_ns else None,
        goodput_qps=good_qps, attainment=share, min_attainment=spec.min_goodput if limits else None,
        max_qps=peak, curve=d.probes)
    info = with_process(info, tp.value)
    figures = Figures(Metrics(tp, e2e), req.e2e_ns.astype(np.int64), d.window_ns, 0, None, slo, {"generate": info})
    return with_requests(figures, run)


# --- agreement ---------------------------------------------------------------------------------


def is_served_outputs(outputs: list[np.ndarray]) -> bool:
    """A served generator keeps one array: its probe answer's text as UTF-8 bytes."""
    return len(outputs) == 1 and outputs[0].dtype == np.uint8


def text_agreement(own: list[np.ndarray], ref: list[np.ndarray], reference: str) -> Any:
    """Two served generators' probe answers, as text; a served one against an in-process one is not
    checked (text against token ids, with no shared tokenizer): said so, not faked."""
    from bench.results.records import Agreement

    metric = "the probe request's generated text equal (temperature 0)"
    if not (is_served_outputs(own) and is_served_outputs(ref)):
        return Agreement("unchecked", reference, metric=metric,
                         reason="not checked: served generator (its text is not comparable with an in-process "
                                "target's token ids)")
    a, b = own[0].tobytes().decode("utf-8", "replace"), ref[0].tobytes().decode("utf-8", "replace")
    if a == b:
        return Agreement("pass", reference, metric=metric)
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return Agreement("fail", reference, metric=metric,
                     reason=f"the generated text differs from the reference's at character {at}")
