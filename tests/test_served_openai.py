"""backend = "openai": the SSE parser on planted byte streams, token counting, the served generate
loops and figures on planted times, a real aiohttp SSE server for the quirks (packed events, no
[DONE], a stall, a 500, a malformed event, a token in a header, an unknown model), and a real
LitServe server (its own venv, cached) streaming one event per token.

No timed assertion here can flake on a busy machine: exact figures come from planted event times;
the real servers' delays only give lower bounds (a server that sleeps 40 ms before its first token
cannot be heard sooner) and generous upper ones."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.backends.base import StreamTrace
from bench.backends.openai import (OpenAIBackend, OpenAIStreamer, count_tokens, endpoint, read_chunk,
                                   split_by_text, split_by_tokenizer)
from bench.config.records import BenchmarkSpec, SloSpec, StopSpec
from bench.errors import CellFailure, RequestFailed
from bench.scenarios import gen_served
from bench.scenarios.base import ScenarioRun
from bench.scenarios.gen_workload import Request
from bench.scenarios.generate import GenerateSpec
from bench.served.openai_options import OpenAIOptions
from bench.served.sse import SseError, SseParser
from tests.helpers import load_run_json, run_cli, write_suite
from tests.server_venvs import ServerVenv, ensure_venv, free_port, running

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

TOKEN = "s3cret-Token-9f1c"  # planted in a header through header_env: must appear in no result

# --- the SSE parser -----------------------------------------------------------------------------

PLANTED = ("\ufeff: a comment, then an event split over two data lines\r\n"
           "data: {\"a\": 1}\r\n"
           "data:second line é字\r\n"
           "\r\n"
           "event: note\n"
           "data: lf ends\n"
           "\n"
           "id: 7\r"
           "data: cr ends\r"
           "\r"
           ": keep-alive\n\n"
           "data: [DONE]\n\n").encode("utf-8")
EXPECTED = [("{\"a\": 1}\nsecond line é字", ""), ("lf ends", "note"), ("cr ends", ""), ("[DONE]", "")]


def _parse(chunks: list[bytes]) -> list[tuple[str, str, int]]:
    p = SseParser()
    out = []
    for k, c in enumerate(chunks):
        out += [(e.data, e.event, e.at_ns) for e in p.feed(c, k)]
    out += [(e.data, e.event, e.at_ns) for e in p.finish(len(chunks))]
    return out


def _dispatch_bytes() -> list[int]:
    """Where each planted event is dispatched: the byte ending its blank line (by hand)."""
    text = PLANTED
    ends = []
    for marker in (b"\r\n\r\n", b"\n\n", b"\r\r"):
        ends.append(text.index(marker, ends[-1] if ends else 0) + len(marker) // 2)
    ends.append(len(text) - 1)
    return ends


def test_sse_events_and_their_times_are_the_same_however_the_bytes_are_split():
    events = [(d, e) for d, e, _ in _parse([PLANTED])]
    assert events == EXPECTED
    # one byte at a time: each event's time is the byte that completed it
    at = [t for _, _, t in _parse([PLANTED[i:i + 1] for i in range(len(PLANTED))])]
    assert at == _dispatch_bytes()
    # every split into two chunks (inside a CRLF, inside a UTF-8 character, inside the BOM)
    for i in range(len(PLANTED) + 1):
        got = _parse([PLANTED[:i], PLANTED[i:]])
        assert [(d, e) for d, e, _ in got] == EXPECTED, i
        assert [t for _, _, t in got] == [0 if b < i else 1 for b in _dispatch_bytes()], i


def test_sse_stream_end_without_blank_line_and_bad_bytes():
    assert _parse([b"data: [DONE]\n"]) == [("[DONE]", "", 1)]
    assert _parse([b"data: {\"trunc"]) == [("{\"trunc", "", 1)]  # kept: it shows up as malformed
    assert _parse([b"\n\n: only comments\n\n"]) == []
    with pytest.raises(SseError, match="not UTF-8"):
        SseParser().feed(b"data: \xff\xfe\n\n", 0)


# --- chunks and token counts ---------------------------------------------------------------------


def test_chunks_of_both_apis_and_what_is_no_token():
    assert read_chunk('{"choices":[{"text":" hi","finish_reason":null}]}', "completions").text == " hi"
    role = read_chunk('{"choices":[{"delta":{"role":"assistant"},"index":0}]}', "chat")
    assert role.text == "" and role.finish_reason is None
    last = read_chunk('{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}', "chat")
    assert (last.text, last.completion_tokens, last.prompt_tokens) == ("", 9, 5)
    assert read_chunk('{"choices":[{"delta":{},"finish_reason":"length"}]}', "chat").finish_reason == "length"
    with pytest.raises(RequestFailed) as exc:
        read_chunk('{"choices": [{"te', "completions")
    assert exc.value.kind == "malformed"
    with pytest.raises(RequestFailed) as exc:
        read_chunk('{"error": {"message": "boom"}}', "chat")  # LitServe's in-stream error, status 200
    assert exc.value.kind == "http_status" and "boom" in exc.value.reason
    with pytest.raises(RequestFailed, match="choices"):
        read_chunk('{"id": 1}', "chat")


class _Enc:
    def __init__(self, offsets):
        self.offsets = offsets


class FakeTokenizer:
    """Two characters a token: offsets as a fast tokenizer gives them."""

    def encode(self, text, add_special_tokens=False):
        return _Enc([(i, min(i + 2, len(text))) for i in range(0, len(text), 2)])


def test_tokens_counted_from_usage_a_tokenizer_or_events_and_the_source_said():
    texts = ["ab", "cdef", "gh"]
    assert count_tokens(texts, 3, None) == ([1, 1, 1], 3, "usage")
    counts, total, source = count_tokens(texts, 7, None)
    assert total == 7 and sum(counts) == 7 and source == "usage, split by text" and counts[1] >= counts[0]
    assert split_by_text(10, ["a", "bbbbbbbbb"]) == [1, 9]
    assert count_tokens(texts, None, FakeTokenizer()) == ([1, 2, 1], 4, "tokenizer")
    assert split_by_tokenizer(FakeTokenizer(), ["a", "bc", "d"]) == [1, 1, 0]  # "ab" starts in the first
    assert count_tokens(texts, None, None) == ([1, 1, 1], 3, "events")


def test_options_refuse_bad_knobs_in_one_line(tmp_path):
    base = dict(url="http://127.0.0.1:1", model="m")
    assert OpenAIOptions(**base).validate() is None
    assert OpenAIOptions(**base, api="embeddings").validate()[0] == "api"
    assert OpenAIOptions(**base, extra_body={"stream": False}).validate()[0] == "extra_body.stream"
    assert OpenAIOptions(**base, tokenizer=str(tmp_path / "none")).validate()[0] == "tokenizer"
    assert OpenAIOptions(**base, idle_timeout_s=-1).validate()[0] == "idle_timeout_s"
    assert OpenAIOptions(url="http://h", model="m", headers={"Authorization": "x"}).validate()[0] == "headers.Authorization"
    assert endpoint(OpenAIOptions(url="http://h:1/v1/"), "/v1/models") == "http://h:1/v1/models"
    assert endpoint(OpenAIOptions(url="http://h:1/x"), "/v1/completions") == "http://h:1/x/v1/completions"
    body = json.loads(OpenAIStreamer(OpenAIOptions(**base, ignore_eos=True, extra_body={"top_k": 1})).body("p", 5))
    assert body["min_tokens"] == 5 and body["ignore_eos"] and body["top_k"] == 1 and body["stream"]
    assert body["stream_options"] == {"include_usage": True} and body["prompt"] == "p"


# --- figures from planted times (exact) ----------------------------------------------------------


def _bench(slo=None, generate=None) -> BenchmarkSpec:
    spec = generate or GenerateSpec()
    return BenchmarkSpec("g", "zoo:decoder", (1,), ("generate",), ("t",), "t", StopSpec(), slo,
                         tables=(("generate", spec),))


def _served_run(traces, starts, failures=()) -> gen_served.ServedRun:
    tally = gen_served.Tally(0)
    for tr, s in zip(traces, starts):
        tally.ok(s, tr, Request(0, 4, tr.output_tokens))
    for f in failures:
        tally.failed(f)
    window = max(tally.end_ns)
    return gen_served._collect(tally, window, 1, "closed loop, 1 stream", {"usage": len(traces)})


MS = 1_000_000


def test_ttft_itl_tpot_and_goodput_from_planted_events_with_packed_tokens_and_failures():
    # request A: sent at 0, events at 50, 60, 70 ms carrying 1, 3, 1 tokens (5 tokens)
    a = StreamTrace(0, (50 * MS, 60 * MS, 70 * MS), (1, 3, 1), 5)
    # request B: sent at 100 ms, one event at 300 ms carrying all 4 tokens
    b = StreamTrace(100 * MS, (300 * MS,), (4,), 4)
    run = _served_run([a, b], [0, 100 * MS], [RequestFailed("timeout", "stalled"), RequestFailed("http_status", "HTTP 500")])
    sr = ScenarioRun(run.end_ns - run.start_ns, run.window_ns, np.zeros(0, np.int64), "x", detail=run)
    slo = SloSpec(ttft_ms=100.0, tpot_ms=10.0)
    spec = GenerateSpec(min_goodput=0.5)
    fig = gen_served.figures(sr, _bench(slo, spec), spec)
    g = fig.records["generate"]
    assert g.requests == 2 and g.output_tokens == 9
    assert g.ttft_ms.min.value == pytest.approx(50.0, rel=1e-6) and g.ttft_ms.max.value == pytest.approx(200.0, rel=1e-6)
    # TPOT: A (70-50)/(5-1) = 5 ms; B one event: 0 (packing costs TPOT nothing)
    assert g.tpot_ms.max.value == pytest.approx(5.0, rel=1e-6)
    # ITL: one gap per event, whatever it carries: 10 and 10 ms
    assert g.itl_ms.p50.value == pytest.approx(10.0, rel=1e-6)
    # A meets TTFT 100 and TPOT 10; B's TTFT is 200; two failed: attainment 1 of 4
    assert g.attainment == pytest.approx(0.25) and not fig.slo.passed
    assert g.goodput_qps == pytest.approx(1 / 0.3)
    assert "2 of 4 requests failed (timeout 1: stalled; http_status 1: HTTP 500), not timed" in g.padding
    assert g.kv_cache_source == gen_served.KV_SOURCE and g.prefill_tokens_per_s.method == gen_served.PREFILL_NOTE
    assert "tokens counted by usage (2)" in g.padding and "4 token events for 9 tokens" in g.padding


def test_agreement_compares_served_texts_and_says_served_vs_in_process_is_not_checked():
    t = [np.frombuffer(b" t0 t1", np.uint8)]
    assert gen_served.text_agreement(t, t, "ref").verdict == "pass"
    other = gen_served.text_agreement([np.frombuffer(b" t0 t2", np.uint8)], t, "ref")
    assert other.verdict == "fail" and "character 5" in other.reason
    mixed = gen_served.text_agreement(t, [np.zeros((1, 3), np.int64), np.zeros((2, 5))], "ref")
    assert mixed.verdict == "unchecked" and mixed.reason.startswith("not checked: served generator")


# --- the loops, on a fake streamer ---------------------------------------------------------------


class FakeStreamer:
    """Answers after a yield to the loop: `fail_every`-th request raises; times from a counter."""

    def __init__(self, fail_every=0):
        self.calls = 0
        self.fail_every = fail_every
        self.t = 0
        self.token_sources = {}

    def clock(self):
        self.t += MS
        return self.t

    async def stream(self, prompt, max_tokens):
        self.calls += 1
        k = self.calls
        await asyncio.sleep(0)
        if self.fail_every and k % self.fail_every == 0:
            raise RequestFailed("http_status", "HTTP 500 from POST /v1/completions")
        sent = self.clock()
        times = tuple(self.clock() for _ in range(max_tokens))
        self.token_sources["usage"] = self.token_sources.get("usage", 0) + 1
        return StreamTrace(sent, times, (1,) * max_tokens, max_tokens, len(prompt.split()))


def test_closed_loop_takes_exactly_the_requests_and_counts_failures_untimed():
    fake = FakeStreamer(fail_every=3)
    pool = [Request(i, 3, 2) for i in range(5)]
    tally, window, reason = asyncio.run(gen_served.closed_loop(fake, pool, 2, 9, StopSpec(), gen_served.Prompts(0),
                                                               clock=fake.clock))
    assert fake.calls == 9 and len(tally.start_ns) == 6 and tally.errors == {"http_status": 3}
    assert "9 requests done" in reason and window == max(tally.end_ns)
    assert all(p == 3 for p in tally.prompt_tokens)  # three words, as the fake's usage says


def test_open_loop_clocks_each_request_from_its_scheduled_arrival():
    fake = FakeStreamer()
    reqs = [Request(i, 2, 2, arrival_ns=i * 2 * MS) for i in range(4)]
    tally, _ = asyncio.run(gen_served.open_loop(fake, reqs, 1, gen_served.Prompts(0)))
    assert tally.start_ns == [r.arrival_ns for r in reqs]  # exact: the schedule, not the send
    assert len(tally.lag_ns) == 4 and min(tally.lag_ns) >= 0


def test_prompts_are_seeded_words_of_the_drawn_length():
    a = gen_served.prompt_text(3, 7, 12)
    assert a == gen_served.prompt_text(3, 7, 12) != gen_served.prompt_text(3, 8, 12)
    assert len(a.split()) == 12 and set(a.split()) <= set(gen_served.WORDS)


# --- a real aiohttp SSE server for the quirks -------------------------------------------------------


class StubServer:
    """OpenAI-compatible enough, on loopback in a thread; its behaviour is the URL's first path part:
    plain (one token per event, usage, [DONE]), packed (3 tokens an event, usage, no [DONE]),
    nousage (3 tokens an event, nothing else), stall (2 events then silence), fail500, third500
    (every third request 500), stall3 (every third request stalls), malformed (an event that is not JSON), json (no stream at all).
    It needs `Authorization: Bearer TOKEN` and records what it saw."""

    GAP_S = 0.002

    def __init__(self, ssl_context=None):
        self.port = free_port()
        self.ssl_context = ssl_context
        self.seen_auth: list[str] = []
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/{mode}/v1/models", self.models)
        app.router.add_post("/{mode}/v1/completions", self.complete)
        app.router.add_post("/{mode}/v1/chat/completions", self.complete)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start())
        self.ready.set()
        self.loop.run_forever()

    def start(self):
        self.thread.start()
        self.ready.wait(10)
        return self

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def url(self, mode: str) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}/{mode}"

    def _authorized(self, request) -> bool:
        got = request.headers.get("Authorization", "")
        self.seen_auth.append(got)
        return got == f"Bearer {TOKEN}"

    async def models(self, request):
        if not self._authorized(request):
            return web.json_response({"error": "no"}, status=401)
        return web.json_response({"object": "list", "data": [{"id": "stub-7b"}, {"id": "stub-1b"}]})

    async def complete(self, request):
        mode = request.match_info["mode"]
        self.requests += 1
        if not self._authorized(request):
            return web.json_response({"error": "no"}, status=401)
        body = await request.json()
        n, chat = body["max_tokens"], "messages" in body
        if mode == "fail500" or (mode == "third500" and self.requests % 3 == 0):
            return web.Response(status=500, text="internal error")
        if mode == "json":
            return web.json_response({"choices": [{"text": "all at once"}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def chunk(text):
            choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"

        per = 3 if mode in ("packed", "nousage") else 1
        if chat:
            await resp.write(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}).encode() + b"\n\n")
        sent = 0
        while sent < n:
            k = min(per, n - sent)
            await asyncio.sleep(self.GAP_S)
            if mode == "malformed" and sent >= 2:
                await resp.write(b"data: {\"choices\": [\n\n")
                break
            await resp.write(chunk("".join(f" w{sent + j}" for j in range(k))))
            sent += k
            if (mode == "stall" or (mode == "stall3" and self.requests % 3 == 0)) and sent >= 2:
                await asyncio.sleep(3)  # past the client's idle limit; short, so the server stops soon
        if mode != "nousage" and body.get("stream_options", {}).get("include_usage"):
            usage = {"prompt_tokens": len(str(body.get("prompt", "x")).split()), "completion_tokens": sent}
            await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
        if mode == "plain":
            await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture(scope="module")
def stub():
    server = StubServer().start()
    yield server
    server.stop()


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv("BENCH_TEST_OPENAI_TOKEN", f"Bearer {TOKEN}")


def _options(stub, mode, **kw) -> OpenAIOptions:
    return OpenAIOptions(url=stub.url(mode), model="stub-7b", header_env={"Authorization": "BENCH_TEST_OPENAI_TOKEN"},
                         timeout_s=kw.pop("timeout_s", 10.0), **kw)


def _stream_all(options, n=3, max_tokens=7, tokenizer=None):
    async def go():
        s = OpenAIStreamer(options, tokenizer)
        await s.open(2)
        out = []
        try:
            for _ in range(n):
                try:
                    out.append(await s.stream_text("one two three", max_tokens))
                except RequestFailed as exc:
                    out.append(exc)
        finally:
            await s.close()
        return out, s.token_sources

    return asyncio.run(go())


@pytest.mark.parametrize("mode, api, source", [("plain", "completions", "usage"),
                                               ("packed", "completions", "usage, split by text"),
                                               ("packed", "chat", "usage, split by text"),
                                               ("nousage", "completions", "events")])
def test_real_server_streams_count_tokens_from_usage_and_say_when_only_events_counted(stub, token_env, mode, api, source):
    got, sources = _stream_all(_options(stub, mode, api=api))
    for trace, text in got:
        assert trace.output_tokens == (7 if source.startswith("usage") else len(trace.event_ns))
        if mode == "packed":
            assert trace.event_tokens == (3, 3, 1)  # the usage's 7, split by the events' text
        assert text == "".join(f" w{i}" for i in range(7))
        assert len(trace.event_ns) == (7 if mode == "plain" else 3)  # packed: 3+3+1 tokens in 3 events
        assert sum(trace.event_tokens) == trace.output_tokens
        assert list(trace.event_ns) == sorted(trace.event_ns) and trace.event_ns[0] > trace.sent_ns
    assert sources == {source: 3}


def test_a_tokenizer_counts_packed_events_when_the_server_sends_no_usage(stub, token_env):
    got, sources = _stream_all(_options(stub, "nousage"), n=1, tokenizer=FakeTokenizer())
    trace, text = got[0]
    assert trace.output_tokens == (len(text) + 1) // 2 and sources == {"tokenizer": 1}


def test_failures_are_classified(stub, token_env):
    cases = {"stall": "timeout", "fail500": "http_status", "malformed": "malformed", "json": "malformed"}
    for mode, kind in cases.items():
        got, _ = _stream_all(_options(stub, mode, idle_timeout_s=0.5), n=1)
        assert isinstance(got[0], RequestFailed) and got[0].kind == kind, (mode, got[0])
        assert TOKEN not in got[0].reason
    got, _ = _stream_all(OpenAIOptions(url=f"http://127.0.0.1:{free_port()}", model="m", connect_timeout_s=1), n=1)
    assert got[0].kind == "connect"
    stalled, _ = _stream_all(_options(stub, "stall", idle_timeout_s=0.3), n=1)
    assert "stalled" in stalled[0].reason


def test_unknown_model_and_missing_credentials_are_one_line(stub, token_env, monkeypatch):
    from bench.config.records import TargetSpec

    backend = OpenAIBackend()
    target = TargetSpec("t", "openai", "cpu", "fp32", replace(_options(stub, "plain"), model="nope"))
    with pytest.raises(CellFailure) as exc:
        backend.load(None, target)
    assert str(exc.value) == (f"model 'nope' is not served at {stub.url('plain')}; the server has 'stub-7b', 'stub-1b'")
    monkeypatch.setenv("BENCH_TEST_OPENAI_TOKEN", "wrong")
    with pytest.raises(CellFailure, match="401.*header_env"):
        OpenAIBackend().load(None, replace(target, options=_options(stub, "plain")))


def test_credentials_in_the_url_are_sent_and_never_shown(stub, token_env):
    from bench.backends.openai import server_models, without_credentials

    url = stub.url("plain").replace("http://", "http://alice:pw%21x@")
    bare, auth = without_credentials(url)
    assert bare == stub.url("plain") and auth == {"Authorization": "Basic YWxpY2U6cHcheA=="}
    options = OpenAIOptions(url=url, model="nope")  # Basic credentials, no bearer: the stub refuses them
    with pytest.raises(CellFailure) as exc:
        server_models(options)
    assert "401" in str(exc.value) and "***@127.0.0.1" in str(exc.value) and "pw" not in str(exc.value)


@pytest.fixture(scope="module")
def tls_stub(tmp_path_factory):
    """The stub over https with a self-signed certificate for 127.0.0.1 (made by openssl here)."""
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    server = StubServer(ctx).start()
    server.cert = str(d / "cert.pem")
    yield server
    server.stop()


def test_tls_is_verified_unless_told_and_a_ca_file_is_honoured(tls_stub, token_env):
    got, _ = _stream_all(_options(tls_stub, "plain"), n=1)
    assert isinstance(got[0], RequestFailed) and got[0].kind == "connect" and "TLS" in got[0].reason
    for options in (_options(tls_stub, "plain", verify_tls=False), _options(tls_stub, "plain", ca_file=tls_stub.cert)):
        got, _ = _stream_all(options, n=1)
        assert not isinstance(got[0], RequestFailed), got[0]
        from bench.backends.openai import server_models

        assert server_models(options) == ["stub-7b", "stub-1b"]


# --- bench run, end to end, against the stub -------------------------------------------------------

STOP = ("{ min_seconds = 0.05, max_seconds = 2, min_iterations = 4, warmup_iterations = 1, warmup_seconds = 0.0, "
        "ci_figures = [], repeats = 2 }")


def served_suite(stub, mode: str, model: str = "stub-7b", generate: str = "{ prompt_len = 6, output_len = 5, requests = 8, streams = [1, 2] }",
                 extra: str = "") -> str:
    return f"""
        [suite]
        name = "served"

        [targets.stub]
        backend = "openai"
        url = "{stub.url(mode)}"
        model = "{model}"
        header_env = {{ Authorization = "BENCH_TEST_OPENAI_TOKEN" }}
        timeout_s = 10
        {extra}

        [[benchmark]]
        name = "dec"
        model = "zoo:decoder"
        model_args = {{ vocab = 61, hidden = 16, depth = 1, heads = 2, max_len = 48 }}
        batch_sizes = [1]
        scenarios = ["generate"]
        targets = ["stub"]
        stop = {STOP}
        generate = {generate}
        slo = {{ ttft_ms = 5000, tpot_ms = 1000 }}
    """


def test_bench_run_measures_a_served_generator_and_never_writes_the_token(stub, token_env, tmp_path, capsys):
    suite = write_suite(tmp_path, served_suite(stub, "packed"))
    seen_before = len(stub.seen_auth)
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, err
    doc = load_run_json(tmp_path / "r")
    cells = {c["id"]: c for c in doc["cells"]}
    assert set(cells) == {"dec/stub/b1/generate/c1", "dec/stub/b1/generate/c2"}
    for c in cells.values():
        g = c["generate"]
        assert c["status"] == "ok", c["reason"]
        assert g["requests"] == 8 and g["output_tokens"] == 8 * 5  # from usage, though 2 events per answer
        assert "tokens counted by usage" in g["padding"] and g["attainment"] == 1.0
        assert g["ttft_ms"]["p50"]["value"] > 0 and g["tpot_ms"] is not None
        assert c["agreement"]["verdict"] == "reference"
        assert c["target"]["knobs"]["header_env"] == {"Authorization": "$BENCH_TEST_OPENAI_TOKEN"}
    assert stub.seen_auth[seen_before:] and set(stub.seen_auth[seen_before:]) == {f"Bearer {TOKEN}"}
    for path in (tmp_path / "r").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in out + err


def test_bench_run_at_a_poisson_rate_clocks_requests_from_their_schedule(stub, token_env, tmp_path, capsys):
    suite = write_suite(tmp_path, served_suite(stub, "plain", generate="{ prompt_len = 4, output_len = 3, qps = 40, requests = 12, streams = 2 }"))
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    cell = load_run_json(tmp_path / "r")["cells"][0]
    assert cell["status"] == "ok", cell["reason"]
    g, r = cell["generate"], cell["requests"]
    assert g["requests"] == 12 and g["offered_qps"] > 0 and g["achieved_qps"] > 0
    assert r["sent"] == 24 and r["failed"] == 0 and r["send_lag_p99_us"] is not None  # 2 processes of 12
    assert "send - scheduled arrival" in r["lag_measure"]


def test_a_local_tokenizer_counts_packed_tokens_in_a_run_when_no_usage_is_sent(stub, token_env, tmp_path, capsys):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(16)} | {"[UNK]": 16}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "tok").mkdir()
    tok.save(str(tmp_path / "tok" / "tokenizer.json"))
    body = served_suite(stub, "nousage", generate="{ prompt_len = 4, output_len = 5, requests = 4 }",
                        extra=f'tokenizer = "{tmp_path / "tok"}"').replace("repeats = 2", "repeats = 1")
    code, out, err = run_cli(capsys, "run", str(write_suite(tmp_path, body)), "--out", str(tmp_path / "r"))
    cell = load_run_json(tmp_path / "r")["cells"][0]
    assert cell["status"] == "ok", cell["reason"]
    g = cell["generate"]  # 5 tokens in 2 events (3 + 2) per answer, counted by the tokenizer
    assert g["output_tokens"] == 4 * 5 and "tokens counted by tokenizer (4)" in g["padding"]
    assert "8 token events for 20 tokens" in g["padding"]
    assert cell["target"]["details"]["tokens_counted_by"].startswith("tokenizer")


def test_a_stalling_server_costs_timeouts_counted_never_a_hung_cell(stub, token_env, tmp_path, capsys):
    body = served_suite(stub, "stall3", generate="{ prompt_len = 4, output_len = 4, requests = 6 }",
                        extra="idle_timeout_s = 0.3").replace("repeats = 2", "repeats = 1")
    code, out, err = run_cli(capsys, "run", str(write_suite(tmp_path, body)), "--out", str(tmp_path / "r"))
    cell = load_run_json(tmp_path / "r")["cells"][0]
    assert cell["status"] == "ok", cell["reason"]
    r = cell["requests"]
    assert r["sent"] == 6 and r["errors"] == {"timeout": r["failed"]} and r["failed"] >= 1
    assert "stalled" in r["error_examples"]["timeout"] and cell["generate"]["requests"] == r["ok"]


def test_a_rate_search_on_a_served_generator_reports_its_curve(stub, token_env, tmp_path, capsys):
    body = served_suite(stub, "plain", generate="{ prompt_len = 4, output_len = 3, qps = 10, requests = 5, search = true, "
                                                "max_probes = 3 }").replace("repeats = 2", "repeats = 1")
    code, out, err = run_cli(capsys, "run", str(write_suite(tmp_path, body)), "--out", str(tmp_path / "r"))
    cell = load_run_json(tmp_path / "r")["cells"][0]
    assert cell["status"] == "ok", cell["reason"]
    g = cell["generate"]
    assert len(g["curve"]) == 3 and all(p["requests"] == 5 for p in g["curve"])
    assert g["max_qps"] is not None and "rate search: 3 rates tried" in cell["stop_reason"]


def test_bench_run_counts_server_errors_and_an_unknown_model_fails_its_cell(stub, token_env, tmp_path, capsys):
    suite = write_suite(tmp_path, served_suite(stub, "third500", generate="{ prompt_len = 4, output_len = 3, requests = 9 }"))
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    doc = load_run_json(tmp_path / "r")
    cell = doc["cells"][0]
    assert cell["status"] == "ok", cell["reason"]
    assert "requests failed (http_status" in cell["generate"]["padding"]
    r = cell["requests"]  # the record every served cell has: summed over the 2 processes
    assert r["sent"] == 18 and r["ok"] + r["failed"] == 18 and r["failed"] >= 4 and set(r["errors"]) == {"http_status"}
    assert "errors" in out
    assert cell["generate"]["attainment"] < 1.0  # failed requests met no SLO
    suite = write_suite(tmp_path, served_suite(stub, "plain", model="nope", generate="{ prompt_len = 4, output_len = 3, requests = 2 }"), "s2.toml")
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r2"))
    cell = load_run_json(tmp_path / "r2")["cells"][0]
    assert code == 3 and cell["status"] == "failed"
    assert "model 'nope' is not served at" in cell["reason"] and "'stub-7b', 'stub-1b'" in cell["reason"]


# --- a real LitServe server --------------------------------------------------------------------

# Pinned: the venv's cache key is its requirements (tests/server_venvs.py); 0.2.x streams one event
# per token and ends with [DONE] (DESIGN.md's pitfalls).
LITSERVE = ServerVenv("litserve", ("litserve==0.2.19",))


@pytest.fixture(scope="module")
def litserve(tmp_path_factory):
    """LitServe on loopback (its own venv: its fastapi/uvicorn need not match the harness's), with
    a 40 ms first token and 10 ms between tokens; its workers outlive its main PID, so the
    helper stops the whole process group."""
    try:
        ensure_venv(LITSERVE)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"cannot build LitServe's venv: {exc}")
    port = free_port()
    app = Path(__file__).with_name("litserve_app.py")
    log = tmp_path_factory.mktemp("litserve") / "server.log"
    with running("litserve", [LITSERVE.executable(), str(app), "--port", str(port), "--first-ms", "40",
                              "--gap-ms", "10"], f"http://127.0.0.1:{port}/health", log_path=log,
                 ports={"http": port}, deadline_s=120) as server:
        server.url = f"http://127.0.0.1:{port}"
        yield server


def test_litserve_streams_one_event_per_token_with_done_and_usage(litserve):
    options = OpenAIOptions(url=litserve.url, model="counter", api="chat", timeout_s=60)
    got, sources = _stream_all(options, n=3, max_tokens=6)
    for item in got:
        assert not isinstance(item, RequestFailed), item
        trace, text = item
        assert text == "".join(f" t{i}" for i in range(6))
        assert len(trace.event_ns) == 6 and trace.event_tokens == (1,) * 6 and trace.output_tokens == 6
        assert trace.prompt_tokens == 3 and trace.finish_reason == "stop"
        ttft_ms = (trace.event_ns[0] - trace.sent_ns) / 1e6
        e2e_ms = (trace.event_ns[-1] - trace.sent_ns) / 1e6
        assert 40 <= ttft_ms < 10_000 and 40 + 5 * 10 <= e2e_ms < 20_000  # the planted sleeps are lower bounds
    assert sources == {"usage": 3}
    from bench.backends.openai import server_models

    assert server_models(options) is None  # LitServe has no /v1/models: the model name is not checked

    async def raw() -> bytes:  # what the parser was given: one event per token, usage last, then [DONE]
        async with aiohttp.ClientSession() as s:
            body = {"model": "counter", "stream": True, "max_tokens": 2, "messages": [{"role": "user", "content": "a"}]}
            async with s.post(f"{litserve.url}/v1/chat/completions", json=body) as resp:
                return await resp.read()

    events = [e.data for e in SseParser().feed(asyncio.run(raw()), 0)]
    assert events[-1] == "[DONE]" and len(events) == 4 and json.loads(events[-2])["usage"]["completion_tokens"] == 2


def test_bench_run_on_litserve_gives_ttft_tpot_and_goodput(litserve, tmp_path, capsys):
    suite = write_suite(tmp_path, f"""
        [suite]
        name = "lit"

        [targets.lit]
        backend = "openai"
        api = "chat"
        url = "{litserve.url}"
        model = "counter"
        timeout_s = 60

        [[benchmark]]
        name = "dec"
        model = "zoo:decoder"
        model_args = {{ vocab = 61, hidden = 16, depth = 1, heads = 2, max_len = 48 }}
        batch_sizes = [1]
        scenarios = ["generate"]
        targets = ["lit"]
        stop = {STOP}
        generate = {{ prompt_len = 5, output_len = 4, requests = 4 }}
        slo = {{ ttft_ms = 30000, tpot_ms = 30000 }}
    """)
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, err
    g = load_run_json(tmp_path / "r")["cells"][0]["generate"]
    assert g["requests"] == 4 and g["output_tokens"] == 16 and g["prompt_tokens"] == 20
    assert g["ttft_ms"]["p50"]["value"] >= 40 and g["tpot_ms"]["p50"]["value"] > 0
    assert g["attainment"] == 1.0 and g["goodput_qps"] > 0
