"""generate: autoregressive decoding with a KV cache, greedy, on a decoder (bench.models.decoder).

Its table, `generate = { prompt_len = 32, output_len = 64, streams = 1, ... }` (GenerateSpec):
  prompt_len, output_len  a length (fixed, { uniform = [LOW, HIGH] }, { mean = M, std = S }),
                          seeded (bench.scenarios.gen_workload)
  streams                 concurrent streams, an integer or a list (the cells' concurrency axis)
  requests                requests per process, at least (closed loop: whole batches; open loop:
                          exactly); 0: by the stop rule's min/max seconds
  qps                     open loop: Poisson arrivals at this rate, each request's clock from its
                          scheduled arrival (the server scenario's generator); 0: closed loop
  trace                   open loop from a JSON Lines file of (arrival_s, prompt_len, output_len)
  search                  find the highest rate whose SLO attainment >= min_goodput, from qps
  min_goodput             the share of requests that must meet slo.ttft_ms / slo.tpot_ms (0.9)
The cell's batch size is static batching: that many sequences decoded together per stream.

The figures (bench.analysis.generation): TTFT, TPOT, ITL, end-to-end latency per request, output
tokens/s per stream and in aggregate, prefill tokens/s, the decode step against KV length,
KV-cache bytes, goodput and attainment under the SLO, and a rate search's curve. The cell's
metrics are the end-to-end request latency and the aggregate output tokens/s.

Agreement: each target generates for the same probe batch (the first requests); its token ids
must equal the reference target's in fp32; fp16/bf16 report the first divergence and the
logits' error before it (bench.analysis.generation.token_agreement).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.config.records import BenchmarkSpec, StopSpec, TargetSpec
from bench.errors import CellFailure
from bench.results.records import Cell, CellKey, GenerateLoadPoint
from bench.scenarios import gen_loop
from bench.scenarios.base import Figures, Scenario, ScenarioRun, Session
from bench.scenarios.gen_workload import (LengthSpec, Request, TraceRow, draw_requests, parse_length, read_trace,
                                          trace_requests)
from bench.scenarios.open_loop import find_peak, poisson_schedule

MAX_STREAMS = 64
POOL_SIZE = 4096  # closed loop by time: requests cycle over this many drawn ones
TABLE_KEYS = ("prompt_len", "output_len", "streams", "requests", "qps", "trace", "search", "min_goodput",
              "resolution", "max_probes", "seed")


@dataclass(frozen=True)
class GenerateSpec:
    prompt_len: LengthSpec = LengthSpec("fixed", 32, 32)
    output_len: LengthSpec = LengthSpec("fixed", 32, 32)
    streams: tuple[int, ...] = (1,)
    requests: int = 0
    qps: float = 0.0
    trace: tuple[TraceRow, ...] = ()
    trace_file: str = ""
    search: bool = False
    min_goodput: float = 0.9
    resolution: float = 0.1
    max_probes: int = 8
    seed: int = 0

    @property
    def open_loop(self) -> bool:
        return self.qps > 0 or bool(self.trace)

    def max_total(self) -> int:
        """The longest prompt + output this workload can draw."""
        if self.trace:
            return max(r.prompt_len + r.output_len for r in self.trace)
        return self.prompt_len.high + self.output_len.high

    def load(self, streams: int) -> str:
        per = f"{streams} stream{'s' if streams > 1 else ''}"
        if self.trace:
            return f"trace replay of {len(self.trace)} requests ({Path(self.trace_file).name}), {per}"
        if self.qps > 0:
            return f"{'rate search from' if self.search else 'Poisson'} {self.qps:g} requests/s, {per}"
        return f"closed loop, {per}"


def parse_generate_table(reader: Any, value: Any, path: str) -> GenerateSpec:
    reader.expect(value, (dict,), path, "a table")
    reader.check_keys(value, TABLE_KEYS, path)
    kw: dict[str, Any] = {}
    for key in ("prompt_len", "output_len"):
        if key in value:
            kw[key] = parse_length(reader, value[key], f"{path}.{key}")
    if "streams" in value:
        raw = value["streams"]
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise reader.fail(f"{path}.streams", "[] is not allowed; expected an integer or a list of integers")
        for j, s in enumerate(items):
            if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_STREAMS:
                raise reader.fail(f"{path}.streams", f"{s!r} is not allowed; expected integers from 1 to {MAX_STREAMS}")
        if len(set(items)) != len(items):
            raise reader.fail(f"{path}.streams", f"{raw!r} repeats a value; each stream count once")
        kw["streams"] = tuple(items)
    ints = {"requests": (0, 10_000_000), "max_probes": (2, 64), "seed": (0, 2**63 - 1)}
    for key, (lo, hi) in ints.items():
        if key in value:
            v = reader.expect(value[key], (int,), f"{path}.{key}", f"an integer from {lo} to {hi}")
            if not lo <= v <= hi:
                raise reader.fail(f"{path}.{key}", f"{v!r} is not allowed; expected an integer from {lo} to {hi}")
            kw[key] = v
    floats = {"qps": (0.0, 1e6, "requests/s >= 0 (0: closed loop)"),
              "min_goodput": (1e-9, 1.0, "a share in (0, 1], e.g. 0.9"),
              "resolution": (1e-9, 0.999999, "a fraction between 0 and 1")}
    for key, (lo, hi, what) in floats.items():
        if key in value:
            v = float(reader.expect(value[key], (int, float), f"{path}.{key}", what))
            if not (math.isfinite(v) and lo <= v <= hi):
                raise reader.fail(f"{path}.{key}", f"{value[key]!r} is not allowed; expected {what}")
            kw[key] = v
    if "search" in value:
        kw["search"] = reader.expect(value["search"], (bool,), f"{path}.search", "true or false")
    if "trace" in value:
        name = reader.expect(value["trace"], (str,), f"{path}.trace", "a JSON Lines file")
        file = Path(name)
        if not file.is_absolute():
            file = Path(reader.file).parent / file  # relative to the suite file
        try:
            kw["trace"] = read_trace(file, name)
        except ValueError as exc:
            raise reader.fail(f"{path}.trace", str(exc)) from None
        kw["trace_file"] = name
    return GenerateSpec(**kw)


@dataclass(frozen=True)
class GenerateRun:
    """The worker's detail: every request's clock marks and lengths, every call's time."""

    start_ns: np.ndarray
    first_ns: np.ndarray
    end_ns: np.ndarray
    prompt_lens: np.ndarray
    output_lens: np.ndarray
    itl_ns: np.ndarray
    prefill_ns: np.ndarray
    prefill_tokens: np.ndarray
    step_kv: np.ndarray
    step_ns: np.ndarray
    window_ns: int
    kv_bytes: int
    kv_source: str
    streams: int
    load: str
    padding: str
    offered_qps: float | None = None
    probes: tuple[GenerateLoadPoint, ...] = ()
    searched: bool = False


def _collect(logs: list[gen_loop.StreamLog], window_ns: int, streams: int, load: str, kv_source: str,
             offered_qps: float | None = None) -> GenerateRun:
    def cat(name: str) -> np.ndarray:
        return np.asarray([v for log in logs for v in getattr(log, name)], dtype=np.int64)

    rows = sum(log.padded_rows for log in logs)
    steps = sum(log.padded_steps for log in logs)
    batches = sum(log.batches for log in logs)
    padding = (f"{batches} batches: prompts left-padded to each batch's longest; {steps} decode steps where a "
               f"sequence rode along after its last token" + (f"; {rows} empty rows" if rows else ""))
    return GenerateRun(cat("start_ns"), cat("first_ns"), cat("end_ns"), cat("prompt_lens"), cat("output_lens"),
                       cat("itl_ns"), cat("prefill_ns"), cat("prefill_tokens"), cat("step_kv"), cat("step_ns"),
                       window_ns, max(log.kv_bytes for log in logs), kv_source, streams, load, padding, offered_qps)


@dataclass
class _State:
    """What start() leaves for run(): one generator per stream, and the request pool."""

    gens: list[Any]
    vocab: int
    pool: list[Request] = field(default_factory=list)
    warm_ns: list[int] = field(default_factory=list)


def spec_of(bench: BenchmarkSpec) -> GenerateSpec:
    return bench.table("generate") or GenerateSpec()


def _schedule(rate: float, spec: GenerateSpec, stop: StopSpec) -> np.ndarray:
    if spec.requests:
        n = spec.requests
        return poisson_schedule(rate, (n + 10 * math.sqrt(n) + 10) / rate * 1.5, spec.seed)[:n]
    duration = min(max(stop.min_seconds, stop.min_iterations / rate), stop.max_seconds)
    return poisson_schedule(rate, duration, spec.seed)


class Generate(Scenario):
    name = "generate"
    table_key = "generate"
    needs_decoder = True
    token_slo = True
    has_roofline = False

    def parse_table(self, reader, value, path):
        return parse_generate_table(reader, value, path)

    def check(self, reader, bench: BenchmarkSpec, targets: dict[str, TargetSpec], path: str) -> None:
        from bench.models.loader import classify

        if bench.model.endswith((".onnx", ".pt2")) or classify(bench.model) in ("onnx", "pt2"):
            raise reader.fail(f"{path}.model", f"{bench.model!r} is not a decoder, which the generate scenario needs "
                              "(zoo:decoder, or a package.module:factory decoder; docs/scenarios.md, \"Generation\")")
        spec = spec_of(bench)
        if spec.search and not (bench.slo and bench.slo.token_limits()):
            raise reader.fail(f"{path}.generate.search",
                              "a rate search needs an SLO to meet, e.g. slo = { ttft_ms = 200, tpot_ms = 50 }")
        if spec.search and spec.qps <= 0:
            raise reader.fail(f"{path}.generate.search", "a rate search starts from qps: set generate.qps > 0")
        if spec.trace and spec.qps > 0:
            raise reader.fail(f"{path}.generate", "qps and trace both set; a trace brings its own arrivals")

    def axis(self, bench: BenchmarkSpec) -> tuple[int | None, ...]:
        return spec_of(bench).streams

    def busy_s(self, bench: BenchmarkSpec) -> float:
        """A schedule's length (a trace's, or requests / qps), else the stop rule's; a search runs up
        to max_probes + 1 of them."""
        spec = spec_of(bench)
        if spec.trace:
            one = spec.trace[-1].arrival_s
        elif spec.qps and spec.requests:
            one = spec.requests / spec.qps
        else:
            one = bench.stop.max_seconds
        return one * (spec.max_probes + 1 if spec.search else 1)

    def check_model(self, bench: BenchmarkSpec, model: Any) -> str | None:
        spec = spec_of(bench)
        limit = getattr(model, "decoder_max_len", None)
        if limit is not None and spec.max_total() > limit:
            what = ("a trace row's prompt_len plus output_len" if spec.trace else
                    f"prompt_len up to {spec.prompt_len.high} plus output_len up to {spec.output_len.high}")
            return (f"benchmark {bench.name!r}: {what} ({spec.max_total()} tokens) exceeds the model's maximum "
                    f"length of {limit} (raise model_args.max_len, or shorten the lengths)")
        return None

    # --- the worker side --------------------------------------------------------------------

    def start(self, session: Session, keep_outputs) -> None:
        """A generator per stream; the probe batch's tokens and logits for the agreement check (its
        first generation also compiles or captures: the setup cost is its time over a second's);
        then warm-up."""
        from bench.analysis.goodput import LOGITS_STEPS

        if session.backend.streamer() is not None:  # a served generator: bench.scenarios.gen_served
            from bench.scenarios import gen_served

            return gen_served.start(session, keep_outputs, spec_of(session.bench), POOL_SIZE)
        spec = spec_of(session.bench)
        streams = session.key.concurrency or 1
        batch = session.batch_size
        gens = [session.backend.generator(batch) for _ in range(streams)]
        vocab = int(gens[0].vocab)
        state = _State(gens, vocab)
        if spec.trace:
            state.pool = trace_requests(spec.trace)
        else:
            state.pool = draw_requests(spec.prompt_len, spec.output_len, spec.requests or POOL_SIZE, spec.seed)
        probe = [replace(r, arrival_ns=None) for r in state.pool[:batch]]
        seed = session.bench.seed
        tokens: list[np.ndarray] = []
        logits: list[np.ndarray] = []

        def keep(step_tokens: np.ndarray, gen: Any) -> None:
            tokens.append(np.asarray(step_tokens, dtype=np.int64).copy())
            if len(logits) < LOGITS_STEPS:
                logits.append(gen.last_logits())

        clock = time.perf_counter_ns
        log = gen_loop.StreamLog()

        def warm(gen: Any, keep_tokens: Any = None) -> int:
            """One probe batch on `gen`; its time (ns), kept as warm-up."""
            t0 = clock()
            gen_loop.run_batch(gen, probe, batch, [t0] * len(probe), seed, vocab, clock, t0, log, keep_tokens)
            state.warm_ns.append(clock() - t0)
            return state.warm_ns[-1]

        with session.context():
            first = warm(gens[0], keep)
            keep_outputs([np.stack(tokens, axis=1), np.stack(logits)])
            second = warm(gens[0])
            kind = session.backend.setup_cost()
            if kind is not None:
                session.setup_s[kind] = max(first - second, 0) / 1e9
            for gen in gens[1:]:  # each stream's own compile or capture, before the window
                warm(gen)
            deadline = clock() + int(session.stop.warmup_seconds * 1e9)
            while clock() < deadline:
                warm(gens[0])
        session.feeds = {"prompt_ids": gen_loop.batch_ids(probe, batch, seed, vocab)}
        session.scenario_state = state

    def run(self, session: Session) -> ScenarioRun:
        from bench.analysis.goodput import RequestFigures, load_point

        if session.backend.streamer() is not None:
            from bench.scenarios import gen_served

            return gen_served.run(session, spec_of(session.bench), _schedule)
        state: _State = session.scenario_state
        spec = spec_of(session.bench)
        bench, batch = session.bench, session.batch_size
        streams = len(state.gens)
        load = spec.load(streams)
        source = state.gens[0].cache_source
        context = session.context

        def serve(requests: list[Request]) -> GenerateRun:
            session.window.start()
            logs, window = gen_loop.open_loop(state.gens, requests, batch, bench.seed, state.vocab, context)
            session.window.end()
            last = requests[-1].arrival_ns if requests else 0
            return _collect(logs, window, streams, load, source, len(requests) / (last / 1e9) if last > 0 else None)

        if spec.search:
            limits = bench.slo.token_limits()

            def try_rate(rate: float):
                arrivals = _schedule(rate, spec, session.stop)
                reqs = [replace(r, arrival_ns=int(a)) for r, a in zip(state.pool, arrivals)]
                if not reqs:
                    raise CellFailure(f"no Poisson arrival fell within the run at {rate:g}/s: raise requests or qps")
                run = serve(reqs)
                req = RequestFigures.of(run.start_ns, run.first_ns, run.end_ns, run.output_lens)
                achieved = req.ttft_ns.size / (run.window_ns / 1e9) if run.window_ns else 0.0
                return load_point(run.offered_qps or rate, achieved, req, run.window_ns, limits, spec.min_goodput), run

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
                arrivals = _schedule(spec.qps, spec, session.stop)
                pool = state.pool if len(state.pool) >= arrivals.size else draw_requests(
                    spec.prompt_len, spec.output_len, int(arrivals.size), spec.seed)
                reqs = [replace(r, arrival_ns=int(a)) for r, a in zip(pool, arrivals)]
            if not reqs:
                raise CellFailure(f"no Poisson arrival fell within the run at {spec.qps:g}/s: raise requests or qps")
            served = serve(reqs)
            reason = f"{len(reqs)} requests served ({load})"
        else:
            session.window.start()
            logs, window, reason = gen_loop.closed_loop(state.gens, state.pool, batch, spec.requests, session.stop,
                                                        bench.seed, state.vocab, context)
            session.window.end()
            served = _collect(logs, window, streams, load, source)
        if served.end_ns.size == 0:
            raise CellFailure("no request completed")
        e2e = served.end_ns - served.start_ns
        return ScenarioRun(e2e, served.window_ns, np.asarray(state.warm_ns, dtype=np.int64), reason,
                           window_calls=int(served.prefill_ns.size + served.step_ns.size), detail=served)

    # --- the parent side --------------------------------------------------------------------

    def figures(self, run: ScenarioRun, bench: BenchmarkSpec, key: CellKey) -> Figures:
        from bench import stats
        from bench.analysis import slo as slos
        from bench.analysis.generation import _latency, decode_curve, slo_of, tokens_throughput, with_process
        from bench.analysis.goodput import RequestFigures
        from bench.results.records import Estimate, GenerateInfo, Metrics

        if not isinstance(run.detail, GenerateRun):  # a served generator's run (bench.scenarios.gen_served)
            from bench.scenarios import gen_served

            return gen_served.figures(run, bench, spec_of(bench))
        d: GenerateRun = run.detail
        spec = spec_of(bench)
        c, seed = bench.stop.confidence, bench.seed
        req = RequestFigures.of(d.start_ns, d.first_ns, d.end_ns, d.output_lens)
        n = int(req.ttft_ns.size)
        e2e = _latency(req.e2e_ns, c, seed)
        tp = tokens_throughput(int(d.output_lens.sum()), n, d.window_ns, c)
        per_stream = d.output_lens / np.maximum(req.e2e_ns, 1) * 1e9
        iv = stats.bootstrap_mean(per_stream.astype(np.float64), c, seed=seed)
        prefill_rate = float(d.prefill_tokens.sum()) / (float(d.prefill_ns.sum()) / 1e9) if d.prefill_ns.sum() else 0.0
        limits = bench.slo.token_limits() if bench.slo else {}
        slo, good_qps, share = slo_of(req, d.window_ns, limits, slos.of_latency(bench.slo_limits(), e2e),
                                      spec.min_goodput)
        peak = None
        if d.searched:
            peak = max((p.offered_qps for p in d.probes if p.good), default=None)
        info = GenerateInfo(
            load=d.load, streams=d.streams, requests=n,
            prompt_len="trace" if spec.trace else spec.prompt_len.describe(),
            output_len="trace" if spec.trace else spec.output_len.describe(),
            prompt_tokens=int(d.prompt_lens.sum()), output_tokens=int(d.output_lens.sum()),
            ttft_ms=_latency(req.ttft_ns, c, seed), tpot_ms=_latency(req.tpot_ns, c, seed),
            itl_ms=_latency(d.itl_ns, c, seed),
            tokens_per_s_per_stream=Estimate(float(per_stream.mean()), iv.low, iv.high,
                                             f"mean over requests of tokens / end-to-end time; {iv.method}"),
            prefill_tokens_per_s=Estimate(prefill_rate, None, None,
                                          "prompt tokens (padding included) / prefill time; interval across processes"),
            decode_curve=decode_curve(d.step_kv, d.step_ns), kv_cache_bytes=d.kv_bytes, kv_cache_source=d.kv_source,
            padding=d.padding, offered_qps=d.offered_qps,
            achieved_qps=n / (d.window_ns / 1e9) if d.offered_qps is not None and d.window_ns else None,
            goodput_qps=good_qps, attainment=share, min_attainment=spec.min_goodput if limits else None,
            max_qps=peak, curve=d.probes)
        info = with_process(info, tp.value)
        return Figures(Metrics(tp, e2e), req.e2e_ns.astype(np.int64), d.window_ns, 0, None, slo, {"generate": info})

    def warmup_rule(self, bench: BenchmarkSpec) -> str | None:
        return (f"the probe batch generated twice on the first stream (the agreement outputs, then the setup "
                f"cost: the first's time over the second's), one batch on each other stream, then batches until "
                f"{bench.stop.warmup_seconds:g} s; nothing cut from the measured requests")

    def merge_records(self, chosen: list[Figures], median: Figures, confidence: float,
                      prior: dict | None = None) -> dict[str, Any]:
        from bench.analysis.generation import merge_infos

        from bench.scenarios.net_requests import merge_requests

        infos = [f.records["generate"] for f in chosen]
        merged = {**median.records, "generate": merge_infos(infos, median.records["generate"], confidence, prior)}
        return merge_requests(chosen, merged)  # a served generator's requests, summed (none in-process)

    def merged_slo(self, bench: BenchmarkSpec, chosen: list[Figures], records: dict[str, Any], fallback):
        from bench.analysis.generation import merge_slo

        info = records["generate"]
        return merge_slo([f.slo for f in chosen], info.attainment, info.min_attainment)

    def compare_outputs(self, own, ref, reference: str, tolerance: float, precision: str):
        from bench.analysis.generation import token_agreement
        from bench.scenarios.gen_served import is_served_outputs, text_agreement

        if is_served_outputs(own) or is_served_outputs(ref):  # a served generator keeps its answer's text
            return text_agreement(own, ref, reference)
        return token_agreement(own, ref, reference, tolerance, precision)

    def compare_policy(self):
        from bench.analysis.generation import GenerateCompare

        return GenerateCompare()

    def detail_rows(self, cell: Cell) -> tuple[tuple[str, str], ...]:
        g = cell.generate
        if g is None:
            return ()

        def lat(x) -> str:
            return "-" if x is None else f"p50 {x.p50.value:.3g} ms, p99 {x.p99.value:.3g} ms"

        rows = [("load", f"{g.load}; {g.requests} requests, prompt {g.prompt_len}, output {g.output_len} tokens"),
                ("tokens", f"TTFT {lat(g.ttft_ms)}; TPOT {lat(g.tpot_ms)}; ITL {lat(g.itl_ms)}"),
                ("KV cache", f"{g.kv_cache_bytes / 2**20:,.2f} MiB ({g.kv_cache_source})")]
        if g.attainment is not None:
            rows.append(("goodput", f"{g.goodput_qps:,.2f} requests/s met the SLO ({g.attainment:.0%} of requests; "
                                    f"target {g.min_attainment:.0%})"))
        if g.curve:
            rows.append(("rate search", (f"max {g.max_qps:,.2f}/s meeting the SLO" if g.max_qps else "no rate met the SLO")
                         + "; " + ", ".join(f"{p.offered_qps:,.2f}/s {p.attainment:.0%} {'ok' if p.good else 'no'}"
                                            for p in g.curve)))
        if g.decode_curve:
            rows.append(("decode step vs KV", ", ".join(f"{p.kv_len}: {p.p50_ms:.3g} ms" for p in g.decode_curve)))
        return tuple(rows)
