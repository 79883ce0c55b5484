"""What commands share for people: one-line errors on stderr, Markdown, HTML and CSV files, percentages."""
from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from bench.errors import UsageError
from bench.report.model import printable


def err(message: str) -> None:
    print(f"bench: {printable(message)}", file=sys.stderr)


def write_md(text: str, path: str | None, step_summary: bool) -> None:
    """Write `text` to `path` (replacing it) and, when `step_summary`, append it to
    $GITHUB_STEP_SUMMARY (the job page of a GitHub Actions step) when that is set."""
    targets = [path] if path else []
    if step_summary and os.environ.get("GITHUB_STEP_SUMMARY"):
        targets.append(os.environ["GITHUB_STEP_SUMMARY"])
    for i, target in enumerate(targets):
        try:
            with open(target, "a" if i > 0 or not path else "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise UsageError(f"{target}: cannot write the Markdown summary: {exc.strerror}") from None


def percent(pct: float, flag: str = "--threshold") -> float:
    """A percentage flag as a fraction; one clear line when it is out of range."""
    if not 0 <= pct < 100:
        raise UsageError(f"{flag} {pct:g}: expected a percentage in [0, 100)")
    return pct / 100


def check_out_path(flag: str, path: str, example: str) -> Path:
    """An output FILE (--html, --csv), checked before any work: its directory exists and is
    writable, and it is not itself a directory. One clear line (exit 2) otherwise."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; expected a file name such as {path.rstrip('/')}/{example}")
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{flag} {path}: {parent} is a file, not a directory")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {parent} does not exist (create it, or name a file in an existing one)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: directory {parent} is not writable")
    return target


def check_html_path(path: str) -> Path:
    return check_out_path("--html", path, "report.html")


def _write(flag: str, what: str, text: str, path: str, example: str) -> None:
    """Write the file whole or not at all: a temp file beside it, then a rename."""
    from bench.results.files import atomic_write_text

    target = check_out_path(flag, path, example)
    try:
        atomic_write_text(target, text)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write the {what}: {exc.strerror or exc}") from None


def write_html(text: str, path: str) -> None:
    _write("--html", "HTML report", text, path, "report.html")


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, str]], path: str) -> None:
    """A header of `columns`, then one line per row (csv module quoting: a reason's commas and
    newlines stay inside its field)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write("--csv", "CSV file", buf.getvalue(), path, "cells.csv")


def html_renderer():
    """The HTML report module, or one clear line naming the install command when its plotting
    library (an optional extra) is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--html needs matplotlib, which draws the report's charts: "
                         "pip install 'bench-harness[report]' (or pip install matplotlib)")
    from bench.report import html

    return html
