"""Row models rendered to the terminal with rich; the one Console set-up; progress lines."""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table as RichTable

from bench.analysis.verdict import RunVerdict
from bench.report.model import LINE_WIDTH, Table, Text, fit, fit_widths, fmt_estimate, for_encoding, printable
from bench.report.one_off import one_off
from bench.report.run_tables import stop_word
from bench.results.records import Cell, Run

_RICH_STYLE = {"bad": "bold red", "good": "green", "warn": "yellow", "": ""}


def console() -> Console:
    # Not a terminal (CI logs, pipes): rich would assume 80 columns and cut every cell, so 200,
    # unless $COLUMNS says how wide the reader's page is.
    if sys.stdout.isatty():
        return Console(highlight=False)
    columns = os.environ.get("COLUMNS", "")
    return Console(highlight=False, width=int(columns) if columns.isdigit() and int(columns) >= 40 else 200)


def _plain(text: str) -> str:
    """`text` as the terminal may show it: control characters escaped (bench.report.model.
    printable), and in ASCII where stdout's encoding is (PYTHONIOENCODING=ascii, a C locale)."""
    return for_encoding(printable(text), getattr(sys.stdout, "encoding", None))


def _cell(value: str | Text) -> str:
    if isinstance(value, Text):
        style = _RICH_STYLE[value.style]
        text = _plain(value.text).replace("[", r"\[")
        return f"[{style}]{text}[/]" if style else text
    return _plain(value).replace("[", r"\[")


def markup(value: str | Text) -> str:
    """One line for Console.print: its text made printable (and ASCII where stdout is), its
    emphasis as rich markup, and no "[" read as markup."""
    return _cell(value)


class _Fitted:
    """A table laid out for the width it is printed at. rich cuts a word longer than its column
    with "…" (two cell ids cut alike, "dec/torch/b1/gener…", read as one cell) or folds a number
    in two: here each column is at least as wide as its longest word (model.fit_widths) and
    wraps between words; only where the words alone cannot fit does a column fold, and nothing
    is cut."""

    def __init__(self, table: Table):
        self.table = table

    def __rich_console__(self, console, options):
        from rich.cells import cell_len

        t = self.table
        texts = [[_plain(col.name)] + [_plain(r[j].text if isinstance(r[j], Text) else r[j]) for r in t.rows]
                 for j, col in enumerate(t.columns)]
        natural = [max(cell_len(line) for text in col for line in text.splitlines() or [""]) for col in texts]
        # A name or a number in the body may not fold; a long heading word may, past 8 characters.
        minimum = [max([min(8, cell_len(w)) for w in col[0].split()] + [cell_len(w) for text in col[1:]
                                                                       for w in text.split()], default=1)
                   for col in texts]
        widths = fit_widths(natural, minimum, options.max_width - 3 * len(t.columns) - 1)  # padding and rules
        # a caption quotes reasons ("pip install 'bench-harness[openvino]'"): no "[" read as markup
        out = RichTable(title=_cell(t.title) if t.title else t.title, caption=_cell(t.caption) if t.caption else None)
        for j, col in enumerate(t.columns):
            out.add_column(_plain(col.name), justify="right" if col.numeric else "left", overflow="fold",
                           width=None if widths is None else widths[j])
        for row in t.rows:
            out.add_row(*(_cell(v) for v in row))
        yield out


def render(table: Table) -> _Fitted:
    """The table for rich to print (console.print), laid out at the console's width."""
    return _Fitted(table)


_HEADLINE_STYLE = {"pass": "good", "caution": "warn", "fail": "bad"}


def run_headline(run: Run) -> list[str | Text]:
    """The run's answer, first: pass (green), pass with caveats (amber: cells unstable or measured
    under interference, and what that does to the answer) or FAIL (red), with its counts."""
    v = RunVerdict.of(run)
    skipped = sum(c.status == "skipped" for c in run.cells)
    extra = [f"{n} {what}" for n, what in ((len(v.slo_failed), "SLO failures"),
                                          (len(v.disagreeing), "disagree with their reference"),
                                          (len(v.invalid), "invalid server runs")) if n]
    counts = ", ".join([f"{v.measured} measured", f"{len(v.failed)} failed", f"{skipped} skipped", *extra])
    lines: list[str | Text] = [Text(f"{v.word}: {len(run.cells)} cells: {counts}", _HEADLINE_STYLE[v.headline])]
    if v.shaky:
        lines.append(Text(f"read with care: {v.caveat()}", "warn"))
    return lines


# The agreement verdict in a word: the line has no room for "agreement pass".
_AGREE = {"pass": "agrees", "fail": "DISAGREES", "unchecked": "unchecked"}


def _served(cell: Cell) -> str:
    """What a server cell was offered, in its scenario's words ("server schedule of 1486 Poisson
    arrivals at 1500/s served with dynamic batching ...", "peak search: 5 rates tried ..."), from
    its median repetition as the cell's records are (the cell's own stop reason, before schema 6)."""
    reps = sorted((r for r in cell.used_repetitions if r.throughput is not None), key=lambda r: r.throughput)
    return reps[(len(reps) - 1) // 2].stop_reason if reps else (cell.stop_reason or "")


def progress_line(index: int, total: int, cell: Cell) -> str:
    """One finished cell on one line of at most LINE_WIDTH characters: its figures, agreement, how
    it stopped (a server cell: valid or not, and what it was offered; UNSTABLE when its figures
    vary between processes) and its one-off costs; the full stop reason, why it is unstable, and a
    failure's whole text are in run.json and the reports."""
    head = f"[{index + 1}/{total}] {cell.id}"
    if cell.status == "ok" and cell.metrics is not None:
        tp = cell.metrics.throughput
        lat = cell.metrics.latency_ms
        verdict = cell.agreement.verdict if cell.agreement else "reference"
        agree = "" if verdict == "reference" else f"{_AGREE.get(verdict, verdict)}; "  # the reference agrees with itself
        unstable = ", UNSTABLE" if cell.unstable else ""
        if cell.server is not None:
            # As in the summary table: whether the server kept up, then what it was offered (cut
            # where the line ends), which say more of a server cell than its process count.
            tail = ("valid" if cell.server.valid else "INVALID") + unstable + f"; {_served(cell)}"
        else:
            tail = f"stop: {stop_word(cell.stop_reason, cell)}{unstable}"
        line = printable(f"{head}: {fmt_estimate(tp.value, tp.ci_low, tp.ci_high, 4)} {tp.unit}, "
                         f"p50 {fmt_estimate(lat.p50.value, lat.p50.ci_low, lat.p50.ci_high)} ms, "
                         f"p99 {fmt_estimate(lat.p99.value, lat.p99.ci_low, lat.p99.ci_high)} ms; {agree}{tail}")
        costs = one_off(cell)
        # The one-off costs whole or not at all ("load 0…" says nothing): the tables show them.
        return fit(line + f"; {costs}" if costs and len(line) + len(costs) + 2 <= LINE_WIDTH else line)
    kind = f" ({cell.failure_kind})" if cell.failure_kind else ""
    return fit(printable(f"{head}: {cell.status}{kind}: {cell.reason}"))


def _names(names: list[str], room: int) -> str:
    """"a, b, +3 more" in at most `room` characters (one name at least)."""
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        if shown and len(", ".join([*shown, name]) + (f", +{rest} more" if rest else "")) > room:
            return ", ".join([*shown, f"+{rest + 1} more"])
        shown.append(name)
    return ", ".join(shown)


def skipped_lines(cells: Sequence[Cell]) -> list[str]:
    """Skipped cells as one line per reason with their count and targets, each at most
    LINE_WIDTH characters (a GPU-less machine skips every GPU cell for one reason)."""
    by_reason: dict[str, list[Cell]] = {}
    for c in cells:
        by_reason.setdefault(printable(" ".join(c.reason.split())), []).append(c)
    lines = []
    for reason, group in by_reason.items():
        targets = sorted({printable(c.target.name) for c in group})
        head = f"skipped {len(group)} cell{'s' if len(group) > 1 else ''}: "
        word = f" ({'target' if len(targets) == 1 else 'targets'} )"
        # The targets take what the reason leaves, and at least 60 characters ("+N more" past
        # that); a longer reason is cut.
        names = f"{word[:-1]}{_names(targets, max(60, LINE_WIDTH - len(head) - len(reason) - len(word)))})"
        lines.append(fit(head + fit(reason, LINE_WIDTH - len(head) - len(names)) + names))
    return lines
