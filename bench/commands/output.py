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


class _Stdout(io.FileIO):
    """fd 1 under the harness's stdout. A write that fails (a full device, an I/O error, a quota)
    is said once, as one line on stderr, and what is written after it is dropped: a traceback
    there would end the command midway (a run's --record, its Markdown, its verdict lines never
    came) and the interpreter would fail again flushing at exit. `failed` tells cli.main to exit
    3 (results that could not be written) once the command is done."""

    dropping = False  # a write failed: the rest of the output goes nowhere
    failed = False  # ... and it was a failure (not the reader leaving)

    def write(self, data) -> int:
        if self.dropping:
            return len(data)
        try:
            return super().write(data)
        except BrokenPipeError:
            # The reader left (`bench report RUN | head`): it had what it wanted, as a pipe's
            # writer that SIGPIPE ends quietly would; the rest is dropped without a word.
            self.dropping = True
        except OSError as exc:
            self.dropping = self.failed = True
            try:
                err(f"stdout: cannot write the output: {exc.strerror or exc}; the rest of it is dropped "
                    "(the command's files are written as usual)")
            except (OSError, ValueError):  # stderr on the same full device: the exit code says it
                pass
        return len(data)


def guard_stdout() -> None:
    """The process's stdout, and stderr, made safe for what a command prints, in the `bench`
    script (tests calling cli.main keep their captured streams): stdout's write failures become
    one line and exit 3 (`_Stdout`), and characters its encoding cannot hold are written in ASCII
    (bench.report.model.ASCII_FALLBACK: PYTHONIOENCODING=ascii or a C locale ended `report` with
    UnicodeEncodeError on its first '·')."""
    from bench.report.model import register_ascii_fallback

    errors = register_ascii_fallback()
    if isinstance(sys.stderr, io.TextIOWrapper):
        sys.stderr.reconfigure(errors=errors)
    out = sys.stdout
    if not isinstance(out, io.TextIOWrapper) or out is not sys.__stdout__:
        return
    try:
        fd = out.fileno()
        out.flush()
    except (OSError, ValueError):  # no usable stdout (closed): print() has nowhere to fail
        return
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(_Stdout(fd, "w", closefd=False)), encoding=out.encoding,
                                  errors=errors, line_buffering=out.line_buffering)


def stdout_failed() -> bool:
    """Whether a write to the guarded stdout failed (its line on stderr is already out)."""
    try:
        sys.stdout.flush()  # what is still buffered fails (or not) now, not at exit
    except ValueError:  # closed
        return False
    raw = getattr(getattr(sys.stdout, "buffer", None), "raw", None)
    return isinstance(raw, _Stdout) and raw.failed


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
