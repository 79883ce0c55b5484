"""A served target for the tests: a user backend (`backend = "tests.served_echo:EchoBackend"`) whose
Requester speaks plain HTTP/1.1 over asyncio streams to the test's loopback server.

No client library: connections are kept alive in a small pool (opened lazily, up to the driver's
concurrency) and reused by every send; each prepared request is the whole encoded HTTP request,
built once outside any timing. A 200 answer must carry the body `ok`; a non-200 is "http_status",
anything unparsable "malformed", a refused or dropped connection "connect". The requester states
its timeout (timeout_s) and leaves enforcing it to the driver, so a stall is the driver's timeout.
"""
from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import numpy as np

from bench.backends.base import Backend, BackendInfo
from bench.errors import RequestFailed


class EchoRequester:
    def __init__(self, url: str, timeout_s: float = 5.0, prepare_delay_s: float = 0.0, send_block_s: float = 0.0):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/ok"
        self.timeout_s = timeout_s
        self.prepare_delay_s = prepare_delay_s  # a planted slow prepare (outside timing: must not matter)
        self.send_block_s = send_block_s  # a planted slow client: blocks the event loop in every send
        self.opened = 0  # connections opened (reuse shows as few)
        self._idle: list = []
        self._slots: asyncio.Semaphore | None = None

    async def open(self, concurrency: int) -> None:
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._idle = []

    def prepare(self, feeds: dict[str, np.ndarray]) -> bytes:
        if self.prepare_delay_s:
            time.sleep(self.prepare_delay_s)
        body = json.dumps({name: list(a.shape) for name, a in feeds.items()}).encode()
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        return head.encode() + body

    async def _connection(self):
        if self._idle:
            return self._idle.pop()
        try:
            conn = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise RequestFailed("connect", f"cannot connect to {self.host}:{self.port} ({exc.strerror or exc})") from None
        self.opened += 1
        return conn

    async def send(self, prepared: bytes) -> None:
        if self.send_block_s:
            time.sleep(self.send_block_s)  # holds the loop: the driver falls behind its schedule
        await self._slots.acquire()
        conn = None
        try:
            conn = await self._connection()
            reader, writer = conn
            writer.write(prepared)
            status, body = await _read_response(reader)
            self._idle.append(conn)  # a whole answer read: the connection is reusable
            conn = None
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise RequestFailed("connect", f"connection closed before the answer ({type(exc).__name__})") from None
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise RequestFailed("malformed", f"unparsable answer ({type(exc).__name__})") from None
        finally:
            if conn is not None:  # broken, cancelled (a timeout) or unparsable: never reused
                conn[1].close()
            self._slots.release()
        if status != 200:
            raise RequestFailed("http_status", f"HTTP {status}")
        if body != b"ok":
            raise RequestFailed("malformed", f"unexpected body {body[:20]!r}")

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle = []


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    line = await reader.readuntil(b"\r\n")
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise RequestFailed("malformed", f"not an HTTP status line: {line[:30]!r}")
    length = 0
    while True:
        h = await reader.readuntil(b"\r\n")
        if h == b"\r\n":
            break
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return int(parts[1]), await reader.readexactly(length)


class EchoBackend(Backend):
    """In-process side: outputs for the agreement check (zeros of the batch); requests go to `url`."""

    def load(self, model, target):
        knobs = dict(target.options.to_dict())
        self.url = knobs["url"]
        self.timeout_s = float(knobs.get("timeout_s", 5.0))
        self.prepare_delay_s = float(knobs.get("prepare_delay_s", 0.0))
        self.send_block_s = float(knobs.get("send_block_s", 0.0))

    def bind(self, feeds):
        return lambda: None  # the in-process call is never timed for a served target

    def outputs(self, feeds):
        batch = next(iter(feeds.values())).shape[0]
        return [np.zeros(batch)]

    def info(self):
        return BackendInfo(runtime="echo over HTTP/1.1")

    def requester(self):
        return EchoRequester(self.url, self.timeout_s, self.prepare_delay_s, self.send_block_s)
