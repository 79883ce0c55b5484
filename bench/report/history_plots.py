"""The chart of one history series (`bench history --html`), drawn with report.plots.

A series is read against the calendar and the code: which night, which commit. So the x-axis is
the runs in order (evenly spaced: nightly runs are what is compared, not wall-clock gaps), each
labelled with its date (UTC) and short commit, thinned to at most MAX_TICKS labels. The y-axis
starts at zero where that leaves the series' own movement visible; where the runs differ by less
than ZOOM of the largest, an axis from zero would draw a flat line, so the axis spans the runs
and its label and the caption state the range (and that it is not from zero).
"""
from __future__ import annotations

import math

from bench.analysis.history import SeriesReport
from bench.report.history_text import fmt_step
from bench.report.plots import BAD, NEUTRAL, PALETTE, Canvas, Guide, Line, Panel, Plot, chart, plain_number

MAX_TICKS = 8  # two-line labels (date, commit) side by side on a 5-inch chart
ZOOM = 0.10  # runs spread less than this share of the largest value: the axis spans them, and says so
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def series_unit(report: SeriesReport) -> str:
    """The figure's unit: ms for latencies, tokens/s for a generate cell's throughput (a cell key
    is BENCH|MODEL|TARGET|bN|SCENARIO...), samples/s otherwise."""
    if report.metric == "accuracy":
        return "loss against the reference"
    if report.metric != "throughput":
        return "ms"
    parts = report.cell_key.split("|")
    return "tokens/s" if len(parts) > 4 and parts[4] == "generate" else "samples/s"


def tick_runs(n: int, most: int = MAX_TICKS) -> list[int]:
    """Indices of the runs labelled: evenly thinned to at most `most`, the first and the latest
    always among them."""
    if n <= most:
        return list(range(n))
    return sorted({round(k * (n - 1) / (most - 1)) for k in range(most)})


def _day(created_at: str, with_year: bool) -> str:
    """"Oct 01" ("2025-12-31" when the labels cross a year) from an ISO 8601 time; the text as
    stored when it is not one."""
    date = created_at[:10]
    try:
        year, month, day = (int(x) for x in date.split("-"))
        return date if with_year else f"{_MONTHS[month - 1]} {day:02d}"
    except (ValueError, IndexError):
        return created_at


def tick_labels(report: SeriesReport, picked: list[int]) -> list[str]:
    """Per labelled run, "Oct 01\\nab12cd3": its date (with the UTC time where two labelled runs
    share a date) and its harness commit, short."""
    dates = [report.dates[i] if i < len(report.dates) else "" for i in picked]
    with_year = len({d[:4] for d in dates}) > 1
    days = [_day(d, with_year) for d in dates]
    repeated = len(set(days)) < len(days)
    labels = []
    for i, d, day in zip(picked, dates, days):
        when = f"{day} {d[11:16]}" if repeated and len(d) >= 16 else day
        commit = report.commits[i] if i < len(report.commits) else None
        labels.append(f"{when}\n{(commit or 'no commit')[:7]}")
    return labels


def y_axis(values: list[float]) -> tuple[float | None, tuple[float, float] | None, str]:
    """(floor, range, what the label adds): from zero where the series moves by ZOOM or more
    of its largest value, else the runs' own span padded, stated."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, None, ""
    lo, hi = min(finite), max(finite)
    if lo < 0 or hi <= 0 or hi - lo >= ZOOM * hi:
        return (0.0 if lo >= 0 else None), None, ""
    pad = (hi - lo) * 0.15 or hi * 0.01
    span = (lo - pad, hi + pad)
    return None, span, f"axis {plain_number(span[0])} to {plain_number(span[1])}, not from 0"


def history_plot(report: SeriesReport, canvas: Canvas) -> Plot:
    """One series over its runs, change points as vertical lines (red: a regression), the latest
    run marked ✖ when it starts one."""
    values = list(report.values)
    xs = list(range(1, len(values) + 1))
    unit = series_unit(report)
    marks = ((xs[-1], values[-1], "X"),) if report.alarm and xs else ()
    guides = tuple(Guide("v", c.index + 0.5,
                         f"{'regression' if c.regression else 'change'} {fmt_step(report.metric, c.step)}",
                         BAD if c.regression else NEUTRAL) for c in report.changes)
    picked = tick_runs(len(values))
    floor, span, stated = y_axis(values)
    ylabel = f"{report.metric} ({unit})" + (f"\n{stated}" if stated else "")
    panel = Panel((Line(report.metric, xs, values, PALETTE[0], marks=marks),), "run: date (UTC) and harness commit",
                  ylabel, guides=guides, ymin=floor, ylim=span, xticks=tuple(xs[i] for i in picked),
                  xticklabels=tuple(tick_labels(report, picked)))
    caption = report.note + ("; ✖ the latest run starts a regression" if report.alarm else "")
    if stated:
        caption += f"; y {stated} (the runs differ by under {ZOOM:.0%})"
    return chart(canvas, "history", f"{report.cell_key} on {report.machine.split('|')[0]}", [panel],
                 width_in=5.6, height_in=3.0, caption=caption)
