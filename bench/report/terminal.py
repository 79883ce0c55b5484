"""Row models rendered to the terminal with rich; the one Console set-up; progress lines."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table as RichTable

from bench.report.model import Table, Text, fmt_estimate, printable
from bench.results.records import Cell

_RICH_STYLE = {"bad": "bold red", "good": "green", "warn": "yellow", "": ""}


def console() -> Console:
    # Not a terminal (CI logs, pipes): rich would assume 80 columns and cut every cell.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _cell(value: str | Text) -> str:
    if isinstance(value, Text):
        style = _RICH_STYLE[value.style]
        text = printable(value.text).replace("[", r"\[")
        return f"[{style}]{text}[/]" if style else text
    return printable(value).replace("[", r"\[")


def render(table: Table) -> RichTable:
    out = RichTable(title=printable(table.title) if table.title else table.title,
                    caption=printable(table.caption) if table.caption else None)
    for col in table.columns:
        out.add_column(printable(col.name), justify="right" if col.numeric else "left")
    for row in table.rows:
        out.add_row(*(_cell(v) for v in row))
    return out


def progress_line(index: int, total: int, cell: Cell) -> str:
    head = f"[{index + 1}/{total}] {cell.id}"
    if cell.status == "ok" and cell.metrics is not None:
        tp = cell.metrics.throughput
        lat = cell.metrics.latency_ms
        agree = cell.agreement.verdict if cell.agreement else "-"
        return printable(f"{head}: {fmt_estimate(tp.value, tp.ci_low, tp.ci_high, 4)} samples/s, "
                         f"p50 {fmt_estimate(lat.p50.value, lat.p50.ci_low, lat.p50.ci_high)} ms, "
                         f"p99 {fmt_estimate(lat.p99.value, lat.p99.ci_low, lat.p99.ci_high)} ms, "
                         f"agreement {agree}; stop: {cell.stop_reason}"
                         + (f"; UNSTABLE: {cell.unstable}" if cell.unstable else ""))
    return printable(f"{head}: {cell.status}: {cell.reason}")
