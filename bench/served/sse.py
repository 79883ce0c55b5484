"""Server-Sent Events, parsed incrementally from the bytes as they arrive, each event stamped with
the arrival time of the chunk that completed it.

The WHATWG event-stream rules, which OpenAI-compatible servers follow more or less: lines end in
CRLF, LF or CR; a blank line dispatches the event; `data:` lines join with "\n"; a line starting
with ":" is a comment (keep-alives); one space after the colon is dropped; a leading UTF-8 BOM is
ignored. Bytes may arrive split anywhere (inside a line, inside a CRLF, inside a multi-byte UTF-8
character): lines are cut on the bytes CR and LF, which never occur inside a UTF-8 sequence, and
decoded whole. A CR ends its line at once; an LF opening the next chunk is then its CRLF's, dropped.

An event's time is when the chunk holding its dispatching blank line arrived: the moment the
client could act on it. At the end of the stream, data with no blank line after it is still
returned (the spec drops it; servers that end on `data: [DONE]\n` without the blank line exist),
so a truncated JSON body there shows up as a malformed event rather than vanishing.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_EVENT_BYTES = 16 * 1024 * 1024  # one event's data: far above any token chunk; a runaway stream stops here


@dataclass(frozen=True)
class SseEvent:
    data: str
    at_ns: int  # arrival of the chunk that completed it (the caller's clock)
    event: str = ""  # the `event:` field, "" when absent (OpenAI streams send none)


class SseError(ValueError):
    """The byte stream is not an event stream (one line, for RequestFailed("malformed"))."""


class SseParser:
    """feed(chunk, now_ns) -> the events that chunk completed; finish(now_ns) -> what the end completed."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._data: list[str] = []
        self._event = ""
        self._data_bytes = 0
        self._started = False
        self._skip_lf = False

    def feed(self, chunk: bytes, now_ns: int) -> list[SseEvent]:
        if not chunk:
            return []
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF whose CR ended the last chunk
        self._skip_lf = False
        self._buf += chunk
        out: list[SseEvent] = []
        buf = self._buf
        start = 0
        n = len(buf)
        i = 0
        while i < n:
            b = buf[i]
            if b == 0x0A or b == 0x0D:
                line = bytes(buf[start:i])
                if b == 0x0D and i + 1 == n:
                    self._skip_lf = True  # a CR last in the chunk: its LF may open the next one
                    i += 1
                else:
                    i += 2 if (b == 0x0D and buf[i + 1] == 0x0A) else 1
                start = i
                event = self._line(line, now_ns)
                if event is not None:
                    out.append(event)
                continue
            i += 1
        del self._buf[:start]
        if len(self._buf) > MAX_EVENT_BYTES:
            raise SseError(f"a line of over {MAX_EVENT_BYTES:,} bytes with no line end")
        return out

    def finish(self, now_ns: int) -> list[SseEvent]:
        """The stream ended: a last line without its end, and data without its blank line."""
        out: list[SseEvent] = []
        if self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            self._line(line, now_ns)
        if self._data:
            out.append(self._dispatch(now_ns))
        return out

    def _line(self, raw: bytes, now_ns: int) -> SseEvent | None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SseError(f"a line that is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch(now_ns) if self._data else self._reset()
        if line.startswith(":"):
            return None  # a comment: keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_bytes += len(value)
            if self._data_bytes > MAX_EVENT_BYTES:
                raise SseError(f"an event of over {MAX_EVENT_BYTES:,} bytes of data")
        elif name == "event":
            self._event = value
        # id, retry and unknown fields: nothing a client measuring tokens needs
        return None

    def _reset(self) -> None:
        self._data, self._event, self._data_bytes = [], "", 0
        return None

    def _dispatch(self, now_ns: int) -> SseEvent:
        event = SseEvent("\n".join(self._data), now_ns, self._event)
        self._reset()
        return event
