"""What commands share for people: one-line errors on stderr, Markdown files, percentages."""
from __future__ import annotations

import os
import sys

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
