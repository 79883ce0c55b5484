"""What `bench run` shows while it runs, on stderr: a live rich display on a terminal, one line
per finished cell elsewhere (CI logs), or nothing (--quiet).

The live display: a bar over the cells (each cell's share filled by its finished repetitions
out of its planned `repeats`), cells done / total, elapsed time and the time left at the rate so
far, and a line for the repetition in flight with its cell's last finished repetition's
throughput and the cell's precision across processes against its target. Finished cells print above it as the
plain mode prints them.

Skipped cells print no line each: when the display ends, one line per reason gives their count
and targets (a GPU-less machine skips every GPU cell for one reason: 90 lines of the same words
in the default suite before). Every line fits LINE_WIDTH characters; run.json has the full text.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Literal

from bench.report import terminal
from bench.report.model import printable

if TYPE_CHECKING:
    from bench.results.records import Cell
    from bench.runner.suite import Progress

Mode = Literal["live", "lines", "quiet"]


def choose_mode(quiet: bool, stream=None) -> Mode:
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return "quiet"
    return "live" if stream.isatty() else "lines"


class RunProgress:
    """A progress callback for run_suite, and a context that ends the live display cleanly
    (also on Ctrl-C)."""

    def __init__(self, mode: Mode):
        self.mode = mode
        self._done: dict[int, float] = {}  # cell index -> its finished share (0..1)
        self._cells_done = 0
        self._live = None
        self._task = None
        self._last: dict[int, str] = {}  # cell index -> its last finished repetition's figures
        self._skipped: list[Cell] = []  # told once per reason at the end

    def __enter__(self) -> RunProgress:
        if self.mode == "live":
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._live = Progress(TextColumn("[bold]cells"), BarColumn(), TextColumn("{task.fields[cells]}"),
                                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                  TextColumn("{task.description}"),
                                  console=Console(file=sys.stderr), transient=True, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None
        for line in terminal.skipped_lines(self._skipped):
            print(line, file=sys.stderr, flush=True)
        self._skipped = []

    def __call__(self, event: Progress) -> None:
        if self.mode == "quiet":
            return
        if event.cell is not None and event.cell.status == "skipped":
            self._skipped.append(event.cell)
            if self.mode == "live":
                self._live_event(event)  # its share of the bar, without a line
            return
        if self.mode == "lines":
            if event.finished_unit:
                return
            if event.cell is None:
                print(f"[{event.index + 1}/{event.total}] {event.planned.id} repetition {event.repetition + 1} ...",
                      file=sys.stderr, flush=True)
            else:
                print(terminal.progress_line(event.index, event.total, event.cell), file=sys.stderr, flush=True)
            return
        self._live_event(event)

    def _live_event(self, event: Progress) -> None:
        live = self._live
        if self._task is None:
            self._task = live.add_task("", total=event.total, cells=f"0/{event.total}")
        repeats = max(1, event.planned.benchmark.stop.repeats)
        if event.cell is not None:
            self._done[event.index] = 1.0
            self._cells_done += 1
            if event.cell.status != "skipped":
                live.console.print(terminal.progress_line(event.index, event.total, event.cell), highlight=False,
                                   markup=False)
        elif event.finished_unit:
            self._done[event.index] = min(0.99, self._done.get(event.index, 0.0) + 1 / repeats)
            shown = f"{event.throughput:,.4g} samples/s" if event.throughput else "-"
            self._last[event.index] = f"last: {shown}" + (f"; {event.precision}" if event.precision else "")
        last = self._last.get(event.index, "")  # the cell in flight's own, never another cell's
        description = (f"{event.planned.id} repetition {event.repetition + 1}" if event.cell is None
                       else event.planned.id) + (f"  ({last})" if last else "")
        live.update(self._task, completed=sum(self._done.values()), cells=f"{self._cells_done}/{event.total}",
                    description=printable(description))
