"""The driver self-check's built-in endpoint: a loopback HTTP/1.1 keep-alive server that answers
every POST with one fixed, small Open Inference Protocol v2 response, as fast as one Python process
can (asyncio.Protocol on the standard library's loop: no per-request objects, no routing, pipelined
requests answered in order). Run as its own process so that it never shares a core's GIL with wrk
or the driver: `python -m bench.selfcheck.driver_server` prints `PORT <n>` once it listens.

It reads only what framing needs (the blank line that ends the head, and Content-Length), so the
figure it allows is the transport's, not a model's: both wrk and the driver are held to it.
"""
from __future__ import annotations

import asyncio
import json
import sys

# What a v2 model with one FP32 [1, 1] output answers; kserve-v2's requester checks its outputs.
RESPONSE_BODY = json.dumps({"model_name": "echo", "model_version": "1", "id": "0",
                            "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]},
                           separators=(",", ":")).encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(RESPONSE_BODY)).encode() + b"\r\n\r\n" + RESPONSE_BODY)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def split_requests(buf: bytes) -> tuple[int, int, bool]:
    """(whole requests at the front of buf, bytes they take, whether the next head is malformed)."""
    n = pos = 0
    while True:
        head_end = buf.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return n, pos, False
        head = buf[pos:head_end].lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            line_end = head.find(b"\r\n", at + 2)
            value = head[at + 17:line_end if line_end >= 0 else len(head)]
            if not value.strip().isdigit():
                return n, pos, True
            length = int(value)
        end = head_end + 4 + length
        if end > len(buf):
            return n, pos, False
        n, pos = n + 1, end


class _Http(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        n, used, bad = split_requests(self.buf)
        if n:
            self.transport.write(RESPONSE * n)
            self.buf = self.buf[used:]
        if bad:
            self.transport.write(BAD_REQUEST)
            self.transport.close()


async def serve(host: str = "127.0.0.1", port: int = 0) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, host, port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(serve(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except KeyboardInterrupt:
        pass
