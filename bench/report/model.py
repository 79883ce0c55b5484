"""The row model every report table is built as, rendered alike to the terminal (report.terminal)
and to Markdown (report.markdown): a title, columns, rows of text, and a caption."""
from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence
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


@dataclass(frozen=True)
class Num:
    """A figure, with its interval where it has one, whose text is set with the rest of its
    column (settle): a column reads at one precision, its decimal points one under the other,
    never "0.94" over "10.8" over "1.2e-05"."""

    value: float
    low: float | None = None
    high: float | None = None
    digits: int = 3  # significant digits the column's smallest figure keeps


# The column's largest figure shows at most this many significant digits beyond `digits`: a column
# spanning more decades gives its smallest figures fewer digits, not its largest a tail of noise.
MORE_DIGITS = 3


@dataclass(frozen=True)
class Span:
    """A range of figures ("0.021-0.023": a target's cells differ), set like a Num in its column."""

    low: float
    high: float
    digits: int = 2


def column_decimals(nums: Iterable[Num | Span]) -> int:
    """The decimals one column of figures is written with: enough for its smallest figure to keep
    its digits, as few as the largest allows (MORE_DIGITS)."""
    nums = list(nums)
    values = [v for n in nums for v in ((n.low, n.high) if isinstance(n, Span) else (n.value,))]
    sizes = [abs(v) for v in values if v and math.isfinite(v)]
    if not sizes:
        return 0
    digits = max(n.digits for n in nums)
    want = digits - 1 - math.floor(math.log10(min(sizes)))
    most = digits + MORE_DIGITS - 1 - math.floor(math.log10(max(sizes)))
    return max(0, min(want, most))


def fmt_num(n: Num | Span, decimals: int) -> str:
    """"1,234.5 ± 6.7": the value and its interval's larger half-width at the same decimals;
    a Span as "low-high" (one figure where both ends read alike)."""
    if isinstance(n, Span):
        low, high = (f"{v:,.{decimals}f}" for v in (n.low, n.high))
        return low if low == high else f"{low}-{high}"
    if not math.isfinite(n.value):
        return "-"
    text = f"{n.value:,.{decimals}f}"
    if n.low is not None and n.high is not None and math.isfinite(n.low) and math.isfinite(n.high):
        text += f" ± {max(n.value - n.low, n.high - n.value):,.{decimals}f}"
    return text


def settle(rows: Iterable[Sequence[object]]) -> tuple[tuple[str | Text, ...], ...]:
    """Rows with every Num (and Span) written in its column's one format (column_decimals); other cells as
    they are. Table builders call this last, once the rows (and their columns) are final."""
    rows = [tuple(r) for r in rows]
    decimals: dict[int, int] = {}
    for j in range(max((len(r) for r in rows), default=0)):
        nums = [r[j] for r in rows if j < len(r) and isinstance(r[j], (Num, Span))]
        if nums:
            decimals[j] = column_decimals(nums)
    return tuple(tuple(fmt_num(v, decimals[j]) if isinstance(v, (Num, Span)) else v for j, v in enumerate(r))
                 for r in rows)


def _largest_cap(widths: Sequence[int], floors: Sequence[int], room: int) -> int:
    """The largest cap C with sum(min(w, max(C, floor))) <= room (the sum grows with C)."""
    lo, hi = 0, max(widths, default=0)
    while lo < hi:
        cap = (lo + hi + 1) // 2
        if sum(min(w, max(cap, f)) for w, f in zip(widths, floors)) <= room:
            lo = cap
        else:
            hi = cap - 1
    return lo


def fit_widths(natural: Sequence[int], minimum: Sequence[int], room: int) -> list[int] | None:
    """Column widths whose sum is at most `room`. Each column its natural width (its longest
    line) where all fit; else the widest narrowed first, to one common cap, none below its
    minimum (its longest word: a name, a number), so text wraps between words and no word is
    cut. Where even the minimums do not fit, the longest words (names, not the short numbers)
    are the ones folded, at one common cap. None where not even that fits (one character a
    column)."""
    natural = [max(n, m) for n, m in zip(natural, minimum)]
    if sum(natural) <= room:
        return list(natural)
    if sum(minimum) > room:
        if len(minimum) > room:
            return None
        cap = _largest_cap(minimum, [1] * len(minimum), room)
        return [min(m, max(cap, 1)) for m in minimum]
    cap = _largest_cap(natural, minimum, room)
    return [min(n, max(cap, m)) for n, m in zip(natural, minimum)]


def fmt_sig(value: float) -> str:
    """A figure in running text: "1,234", "56.7", "0.0123" (three significant digits, never
    written as a power of ten)."""
    if value >= 100 or value == 0:
        return f"{value:,.0f}"
    return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"


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
