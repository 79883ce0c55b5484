"""The row model every report table is built as, rendered alike to the terminal (report.terminal)
and to Markdown (report.markdown): a title, columns, rows of text, and a caption."""
from __future__ import annotations

import unicodedata

from dataclasses import dataclass
from typing import Literal

Style = Literal["", "bad", "good", "warn"]


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False  # right-justified
    code: bool = False  # an identifier: `code` in Markdown


@dataclass(frozen=True)
class Text:
    """A cell's text with an emphasis (bad: a regression, a failure; good; warn: not comparable)."""

    text: str
    style: Style = ""


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str | Text, ...], ...]
    caption: str = ""


def fmt_estimate(value: float, low: float | None, high: float | None, digits: int = 3) -> str:
    """"1,234 ± 56", "0.213 ± 0.0012": the value and its interval's larger half-width."""
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"
    if low is not None and high is not None:
        half = max(value - low, high - value)
        text += f" ± {half:,.0f}" if half >= 100 else f" ± {half:.2g}"
    return text


def fmt_ratio(value: float | None, low: float | None = None, high: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if low is None or high is None else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def fmt_opt(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def printable(text: str) -> str:
    """`text` with control characters (terminal escapes among them) shown escaped, not sent raw
    to the terminal: names and reasons may come from a result file someone else made."""
    return "".join(ch if ch == "\n" or ch == "\t" or not unicodedata.category(ch).startswith("C")
                   else ch.encode("unicode_escape").decode() for ch in text)


# What the reports write where the output's encoding has no room for it (PYTHONIOENCODING=ascii,
# a C locale with Python's UTF-8 mode off): the typography the tables use, in ASCII; any other
# character (a name someone typed) as Python's own backslash escape, which names it exactly.
ASCII_FALLBACK = {"·": "-", "±": "+/-", "µ": "u", "★": "*", "…": "...", "→": "->", "×": "x", "✖": "x", "●": "o",
                  "▲": "^", "—": "-", "–": "-", "°": " deg", "≥": ">=", "≤": "<="}
ASCII_ERRORS = "bench-ascii"  # the codecs error handler's name (register_ascii_fallback)


def _ascii_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text = exc.object[exc.start:exc.end]
    return "".join(ASCII_FALLBACK.get(ch) or ch.encode("ascii", "backslashreplace").decode() for ch in text), exc.end


def register_ascii_fallback() -> str:
    """Register the error handler that writes ASCII_FALLBACK's text for what an encoding cannot
    hold (idempotent); returns its name, for a stream's `errors`."""
    import codecs

    codecs.register_error(ASCII_ERRORS, _ascii_fallback)
    return ASCII_ERRORS


def for_encoding(text: str, encoding: str | None) -> str:
    """`text` as a stream of `encoding` can take it: itself, or with ASCII_FALLBACK's text for
    what the encoding lacks. A table is laid out from this (the layout counts "+/-" as three
    characters; the stream's error handler, replacing late, would push its columns apart)."""
    try:
        text.encode(encoding or "utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode(encoding, register_ascii_fallback()).decode(encoding)
    except LookupError:  # an encoding Python does not know: the stream's own handler decides
        return text


LINE_WIDTH = 160  # a progress or summary line on stderr: past this, terminals wrap and CI logs scroll sideways


def fit(text: str, width: int = LINE_WIDTH) -> str:
    """`text` on one line of at most `width` characters, the cut marked with "…": the full text
    stays in run.json and the reports, a terminal line only points at it."""
    one = " ".join(text.split())
    return one if len(one) <= width else one[:width - 1].rstrip() + "…"


def fmt_seconds(value: float) -> str:
    """"13.9 s", "0.41 s", "0.018 s": three significant digits from one second up, two below."""
    return f"{value:.3g} s" if value >= 1 else f"{value:.2g} s"
