"""backend = "openai": a generator behind an OpenAI-compatible server, streamed over Server-Sent Events.

The harness's side is a client (aiohttp, the `served` extra): one connection pool per cell, sized
for its concurrency and reused by every request; each request streams one answer and is timed from
the events' arrival (bench.served.sse). What each event carries is read from its JSON chunk:
`choices[0].text` (/v1/completions) or `choices[0].delta.content` (/v1/chat/completions); a chunk
without text (chat's opening role delta, the closing finish_reason, the usage-only chunk) is no
token event. `data: [DONE]` ends the answer where it is sent; a stream that simply ends is as good.

Tokens per event (servers may pack several into one event; measured: `transformers serve` does):
  "usage"      the server's usage.completion_tokens (stream_options.include_usage), when it equals
               the token events, one each;
  "usage, split by text"  when it does not: the total is the server's, spread over the events by
               their text's length (the split moves ITL nowhere: ITL is per event, see gen_served);
  "tokenizer"  no usage: the named local tokenizer encodes the whole answer once and each token is
               given to the event its first character arrived in;
  "events"     neither: one token per event assumed, and said so in the cell (a server that packs
               tokens then reads fast: name a tokenizer).

Errors (bench.errors.RequestFailed, counted by the scenario, never timed): "connect" (refused,
reset, TLS, the connection lost), "timeout" (the whole request past timeout_s, or silence past
idle_timeout_s mid-stream), "http_status" (a status other than 200, or an error object sent inside
the stream, as LitServe does with status 200), "malformed" (not an event stream, a chunk that is
not JSON or has no choices, an answer with no token). Reasons name no header value and no URL
credentials.
"""
from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bench.backends.base import Backend, BackendInfo, StreamTrace
from bench.errors import CellFailure, RequestFailed
from bench.served.endpoint import shown_url
from bench.served.openai_options import OpenAIOptions
from bench.served.sse import SseError, SseParser

REASON_CHARS = 200  # of a server's error body, in a failure's reason


def endpoint(options: OpenAIOptions, path: str) -> str:
    """The URL of `path` (e.g. "/v1/models"): the url may end at the host or at a prefix, with or
    without its own /v1 (http://h:8000, http://h:8000/v1 and http://h/api/v1 all work)."""
    base = options.url.rstrip("/")
    if base.endswith("/v1") and path.startswith("/v1/"):
        path = path[3:]
    return base + path


def one_line(text: str, limit: int = REASON_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


# --- reading one chunk ------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """What one event's JSON said."""

    text: str  # "" when it carries no token
    finish_reason: str | None = None
    completion_tokens: int | None = None  # usage, where this chunk carries it
    prompt_tokens: int | None = None


def read_chunk(data: str, api: str) -> Chunk:
    """One event's data as a chunk; RequestFailed for an error object or a body that is not a chunk."""
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise RequestFailed("malformed", f"an event that is not JSON ({exc.msg}): {one_line(data, 80)!r}") from None
    if not isinstance(doc, dict):
        raise RequestFailed("malformed", f"an event that is not a JSON object: {one_line(data, 80)!r}")
    if "error" in doc:
        err = doc["error"]
        what = err.get("message", err) if isinstance(err, dict) else err
        raise RequestFailed("http_status", f"the server sent an error inside the stream: {one_line(str(what))}")
    completion = prompt = None
    usage = doc.get("usage")
    if isinstance(usage, dict):
        c, p = usage.get("completion_tokens"), usage.get("prompt_tokens")
        completion = c if isinstance(c, int) and not isinstance(c, bool) and c >= 0 else None
        prompt = p if isinstance(p, int) and not isinstance(p, bool) and p >= 0 else None
    choices = doc.get("choices")
    if not isinstance(choices, list):
        raise RequestFailed("malformed", f"a chunk without a choices list: {one_line(data, 80)!r}")
    if not choices:  # the usage-only closing chunk
        return Chunk("", None, completion, prompt)
    choice = choices[0]
    if not isinstance(choice, dict):
        raise RequestFailed("malformed", f"a choice that is not an object: {one_line(data, 80)!r}")
    if api == "chat":
        delta = choice.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
    else:
        text = choice.get("text")
    if text is not None and not isinstance(text, str):
        raise RequestFailed("malformed", f"a token text that is not a string: {one_line(data, 80)!r}")
    finish = choice.get("finish_reason")
    return Chunk(text or "", finish if isinstance(finish, str) else None, completion, prompt)


# --- counting tokens --------------------------------------------------------------------------


def split_by_text(total: int, texts: list[str]) -> list[int]:
    """`total` tokens spread over events in proportion to their text's length (largest remainder),
    every event at least one while the total allows."""
    n = len(texts)
    if total <= n:
        return [1] * total + [0] * (n - total)
    weights = np.asarray([max(len(t), 1) for t in texts], dtype=np.float64)
    share = weights / weights.sum() * total
    counts = np.maximum(np.floor(share).astype(np.int64), 1)
    while counts.sum() > total:  # the floor of one pushed past the total: take from the largest
        counts[int(np.argmax(counts))] -= 1
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    for i in order[:total - int(counts.sum())]:
        counts[i] += 1
    return counts.astype(int).tolist()


def split_by_tokenizer(tokenizer: Any, texts: list[str]) -> list[int]:
    """Each token of the whole answer (encoded once) given to the event its first character came in."""
    enc = tokenizer.encode("".join(texts), add_special_tokens=False)
    ends = np.cumsum([len(t) for t in texts])
    starts = np.asarray([s for s, _ in enc.offsets], dtype=np.int64)
    which = np.searchsorted(ends, starts, side="right")
    which = np.clip(which, 0, len(texts) - 1)
    return np.bincount(which, minlength=len(texts)).astype(int).tolist()


def count_tokens(texts: list[str], usage_tokens: int | None, tokenizer: Any) -> tuple[list[int], int, str]:
    """(tokens per token event, tokens in the answer, what counted them)."""
    if usage_tokens is not None:
        if usage_tokens == len(texts):
            return [1] * len(texts), usage_tokens, "usage"
        return split_by_text(usage_tokens, texts), usage_tokens, "usage, split by text"
    if tokenizer is not None:
        counts = split_by_tokenizer(tokenizer, texts)
        return counts, int(sum(counts)), "tokenizer"
    return [1] * len(texts), len(texts), "events"


def load_tokenizer(path: str) -> Any:
    from pathlib import Path

    from tokenizers import Tokenizer

    file = Path(path)
    if file.is_dir():
        file = file / "tokenizer.json"
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # the tokenizers library raises its own Exception types
        raise CellFailure(f"tokenizer {path!r}: cannot load {file.name} ({one_line(str(exc), 120)})") from None


# --- the streaming client ---------------------------------------------------------------------


def ssl_context(options: OpenAIOptions) -> ssl.SSLContext | None:
    if not options.url.startswith("https"):
        return None
    ctx = ssl.create_default_context(cafile=options.ca_file or None)
    if not options.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class OpenAIStreamer:
    """The Streamer (bench.backends.base) over aiohttp, used from one event loop."""

    def __init__(self, options: OpenAIOptions, tokenizer: Any = None,
                 clock: Callable[[], int] = time.perf_counter_ns):
        self.options = options
        self.tokenizer = tokenizer
        self.clock = clock
        self.url = endpoint(options, options.path())
        self.token_sources: dict[str, int] = {}  # what counted each answer's tokens, with how many answers
        self._session: Any = None

    async def open(self, concurrency: int) -> None:
        import aiohttp

        o = self.options
        ctx = ssl_context(o)
        connector = aiohttp.TCPConnector(limit=max(concurrency, 1), limit_per_host=0,
                                         ssl=ctx if ctx is not None else False)
        # The idle limit is aiohttp's read timeout: no byte for that long raises mid-stream. The
        # whole request's limit is an asyncio timeout around it (aiohttp's `total` counts the pool wait too).
        timeout = aiohttp.ClientTimeout(total=None, connect=o.connect_timeout_s, sock_connect=o.connect_timeout_s,
                                        sock_read=o.idle_limit_s())
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **o.resolved_headers()}
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers,
                                              auto_decompress=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def body(self, prompt: str, max_tokens: int) -> bytes:
        o = self.options
        doc: dict[str, Any] = {"model": o.model, "max_tokens": max_tokens, "stream": True, "temperature": o.temperature}
        if o.api == "chat":
            doc["messages"] = [{"role": "user", "content": prompt}]
        else:
            doc["prompt"] = prompt
        if o.include_usage:
            doc["stream_options"] = {"include_usage": True}
        if o.ignore_eos:
            doc["ignore_eos"] = True
            doc["min_tokens"] = max_tokens
        doc.update(o.extra_body)
        return json.dumps(doc).encode()

    async def stream(self, prompt: str, max_tokens: int) -> StreamTrace:
        trace, _ = await self.stream_text(prompt, max_tokens)
        return trace

    async def stream_text(self, prompt: str, max_tokens: int) -> tuple[StreamTrace, str]:
        """One answer: its trace and its text (the agreement probe compares texts)."""
        import aiohttp

        if self._session is None:
            raise RuntimeError("OpenAIStreamer.stream before open()")
        o = self.options
        body = self.body(prompt, max_tokens)
        sent = self.clock()
        try:
            async with asyncio.timeout(o.timeout_s):
                return await self._exchange(body, sent)
        except RequestFailed:
            raise
        except SseError as exc:
            raise RequestFailed("malformed", f"a broken event stream: {exc}") from None
        except getattr(aiohttp, "ConnectionTimeoutError", ()) as exc:  # aiohttp >= 3.10
            raise RequestFailed("connect", f"no connection within {o.connect_timeout_s:g} s ({type(exc).__name__})") from None
        except TimeoutError:
            waited_s = (self.clock() - sent) / 1e9
            if waited_s >= o.timeout_s * 0.999:
                raise RequestFailed("timeout", f"the answer took over timeout_s = {o.timeout_s:g} s") from None
            raise RequestFailed("timeout", f"the stream stalled: no byte for idle_timeout_s = {o.idle_limit_s():g} s "
                                           f"after {waited_s:.3g} s") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise RequestFailed("connect", f"TLS: the server's certificate is not trusted ({one_line(str(exc.certificate_error), 120)})") from None
        except aiohttp.ClientSSLError as exc:
            raise RequestFailed("connect", f"TLS: {one_line(str(exc), 120)}") from None
        except aiohttp.ClientConnectorError as exc:
            raise RequestFailed("connect", f"cannot connect to {shown_url(o.url)} ({exc.strerror or type(exc).__name__})") from None
        except aiohttp.ClientPayloadError as exc:
            raise RequestFailed("malformed", f"a broken response body ({one_line(str(exc), 120)})") from None
        except aiohttp.ClientResponseError as exc:
            raise RequestFailed("http_status", f"HTTP {exc.status} ({one_line(exc.message or '', 80)})") from None
        except (aiohttp.ClientConnectionError, ConnectionError) as exc:
            raise RequestFailed("connect", f"the connection was lost ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise RequestFailed("connect", f"{type(exc).__name__}: {one_line(str(exc), 120)}") from None

    async def _exchange(self, body: bytes, sent: int) -> tuple[StreamTrace, str]:
        o = self.options
        async with self._session.post(self.url, data=body) as resp:
            if resp.status != 200:
                text = (await resp.content.read(4096)).decode("utf-8", "replace")
                hint = ("; a server that refuses stream_options needs include_usage = false"
                        if resp.status in (400, 422) and o.include_usage and "stream_options" in text else "")
                raise RequestFailed("http_status", f"HTTP {resp.status} from POST {self.url.removeprefix(o.url.rstrip('/')) or '/'}"
                                                   + (f": {one_line(text)}" if text.strip() else "") + hint)
            kind = resp.headers.get("Content-Type", "")
            if "text/event-stream" not in kind:
                text = (await resp.content.read(200)).decode("utf-8", "replace")
                raise RequestFailed("malformed", f"the answer is {kind or 'untyped'}, not an event stream "
                                                 f"(does the server stream?): {one_line(text, 80)!r}")
            parser = SseParser()
            times: list[int] = []
            texts: list[str] = []
            usage = prompt_tokens = finish = None
            done = False
            async for data in resp.content.iter_any():
                now = self.clock()
                for event in parser.feed(data, now):
                    if done:
                        continue
                    if event.data.strip() == "[DONE]":
                        done = True
                        continue
                    chunk = read_chunk(event.data, o.api)
                    if chunk.text:
                        times.append(event.at_ns)
                        texts.append(chunk.text)
                    usage = chunk.completion_tokens if chunk.completion_tokens is not None else usage
                    prompt_tokens = chunk.prompt_tokens if chunk.prompt_tokens is not None else prompt_tokens
                    finish = chunk.finish_reason or finish
            for event in parser.finish(self.clock()):
                if not done and event.data.strip() != "[DONE]":
                    chunk = read_chunk(event.data, o.api)
                    if chunk.text:
                        times.append(event.at_ns)
                        texts.append(chunk.text)
                    usage = chunk.completion_tokens if chunk.completion_tokens is not None else usage
                    prompt_tokens = chunk.prompt_tokens if chunk.prompt_tokens is not None else prompt_tokens
                    finish = chunk.finish_reason or finish
        if not times:
            raise RequestFailed("malformed", "the answer carried no token"
                                + (f" (finish_reason {finish!r})" if finish else ""))
        counts, total, source = count_tokens(texts, usage, self.tokenizer)
        self.token_sources[source] = self.token_sources.get(source, 0) + 1
        trace = StreamTrace(sent, tuple(times), tuple(counts), total, prompt_tokens, finish)
        return trace, "".join(texts)


# --- the backend ------------------------------------------------------------------------------


def without_credentials(url: str) -> tuple[str, dict[str, str]]:
    """The URL without user:password, and the Basic authorization header they make (urllib cannot
    take them inside the URL; aiohttp can, for the streams)."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def server_models(options: OpenAIOptions) -> list[str] | None:
    """The model ids GET /v1/models lists; None where the server has no such route (LitServe).
    A refusal (401/403), a server error or a body that is no model list fails the cell, one line."""
    url = endpoint(options, "/v1/models")
    bare, auth = without_credentials(url)
    req = urllib.request.Request(bare, headers={**auth, **options.resolved_headers()})
    try:
        with urllib.request.urlopen(req, timeout=options.connect_timeout_s + options.timeout_s,
                                    context=ssl_context(options)) as resp:
            doc = json.loads(resp.read(1 << 20))
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405):
            return None
        raise CellFailure(f"GET {shown_url(url)} answered HTTP {exc.code}"
                          + (" (check header_env: the server refused the credentials)" if exc.code in (401, 403) else ""),
                          kind="error") from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", None) or exc
        raise CellFailure(f"GET {shown_url(url)}: {one_line(str(why), 120)}", kind="error") from None
    except ValueError:
        raise CellFailure(f"GET {shown_url(url)}: the answer is not JSON", kind="error") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise CellFailure(f"GET {shown_url(url)}: the answer has no 'data' list of models", kind="error")
    return [str(m.get("id")) for m in data if isinstance(m, dict) and "id" in m]


class OpenAIBackend(Backend):
    """A served generator: the generate scenario drives its streamer(); it has no in-process call."""

    def __init__(self) -> None:
        self.options: OpenAIOptions | None = None
        self._streamer: OpenAIStreamer | None = None
        self._models: list[str] | None = None

    def load(self, model: Any, target: Any) -> None:
        options: OpenAIOptions = target.options
        self.options = options
        try:
            options.resolved_headers()
        except LookupError as exc:
            raise CellFailure(str(exc)) from None
        self._models = server_models(options)
        if self._models is not None and options.model not in self._models:
            shown = ", ".join(repr(m) for m in self._models[:10]) + (", ..." if len(self._models) > 10 else "")
            raise CellFailure(f"model {options.model!r} is not served at {shown_url(options.url)}; the server has "
                              + (shown or "no model"), kind="error")
        tokenizer = load_tokenizer(options.tokenizer) if options.tokenizer else None
        self._streamer = OpenAIStreamer(options, tokenizer)

    def endpoint_options(self) -> OpenAIOptions | None:
        return self.options

    def streamer(self) -> OpenAIStreamer | None:
        return self._streamer

    def bind(self, feeds: dict[str, np.ndarray]):
        raise CellFailure("backend 'openai' serves the generate scenario only (a streamed generator has no "
                          "batch call to time)")

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.bind(feeds)
        return []

    def info(self) -> BackendInfo:
        o = self.options
        details: dict[str, Any] = {}
        if o is not None:
            details = {"url": shown_url(o.url), "api": o.api, "endpoint": o.path(),
                       "model_listed": "not checked: the server has no /v1/models" if self._models is None else "yes"}
        if self._streamer is not None and self._streamer.token_sources:
            details["tokens_counted_by"] = ", ".join(f"{k} ({v} answers)" for k, v in
                                                     sorted(self._streamer.token_sources.items()))
        return BackendInfo(runtime="OpenAI-compatible server (streamed)", details=details)
