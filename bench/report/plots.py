"""Charts of the HTML report, drawn by matplotlib as static SVG (knows charts, not runs).

Why static SVG: the report must open offline and years later, in a browser, an e-mail client,
a CI artifact viewer or a wiki whose content policy blocks scripts. SVG drawn here needs no
script, style sheet or font fetched at view time, scales without blur, and its text stays text
(searchable, copyable). Why matplotlib: it is the plotting library of the field, with the log
axes, ticks and error bars these charts need; it runs here, once, never in the reader's browser.

Every chart is one <svg>; each data series drawn is an SVG group whose id ends in
"-series-N" (its interval bars "-bars-N"), so a reader (or the browser test) can count what was
drawn. Ids carry the chart's number, unique within one report, and the output is the same for
the same input (no dates, hash salt fixed per chart).
"""
from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# matplotlib's tab10, in order: a target keeps its colour in every chart of a report.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
BAD, GOOD, NEUTRAL = "#c62828", "#2e7d32", "#757575"


@dataclass(frozen=True)
class Plot:
    kind: str  # what it shows: "cdf", "sweep", "load", "pareto", "series", "roofline", "ratio", "history"
    title: str
    svg: str
    series: int  # data series drawn: the groups whose id ends in -series-N
    caption: str = ""

    @property
    def width_pt(self) -> float:
        """The size it was drawn for (the page shrinks it to fit, never enlarges it)."""
        found = re.search(r'<svg[^>]*? width="([0-9.]+)pt"', self.svg)
        return float(found.group(1)) if found else 400.0


@dataclass(frozen=True)
class Line:
    """One data series: points joined by a line (or points alone), with optional interval bars
    on y (and on x), and marked points drawn over it (e.g. p50 and p99 on a CDF)."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str = PALETTE[0]
    y_low: Sequence[float] | None = None
    y_high: Sequence[float] | None = None
    x_low: Sequence[float] | None = None
    x_high: Sequence[float] | None = None
    joined: bool = True
    hollow: Sequence[bool] = ()  # per point: drawn hollow (a point that failed its test)
    marks: tuple[tuple[float, float, str], ...] = ()  # (x, y, marker)


@dataclass(frozen=True)
class Guide:
    """A horizontal or vertical reference line (an SLO, a ratio of 1, a change point)."""

    axis: str  # "h" or "v"
    at: float
    label: str = ""
    color: str = NEUTRAL
    dashed: bool = True


@dataclass(frozen=True)
class Panel:
    lines: tuple[Line, ...]
    xlabel: str
    ylabel: str
    xlog: bool = False
    ylog: bool = False
    guides: tuple[Guide, ...] = ()
    band: tuple[float, float] | None = None  # a shaded horizontal band on y (a threshold zone)
    title: str = ""


@dataclass
class Canvas:
    """Numbers the charts of one report so that their SVG ids never collide."""

    count: int = 0
    _mpl: dict = field(default_factory=dict)

    def next_id(self) -> str:
        self.count += 1
        return f"p{self.count}"


def _tx(text: str) -> str:
    """Text as matplotlib draws it verbatim: a "$" would start its math mode (names come from files)."""
    return text.replace("$", r"\$")


def _rc(chart_id: str) -> dict:
    return {
        "svg.fonttype": "none",  # text stays <text>: smaller, selectable; the browser's sans-serif draws it
        "svg.hashsalt": chart_id,  # clip-path ids unique per chart and the same on every run
        "font.family": "sans-serif",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.fontsize": 7.5,
        "legend.frameon": False,
    }


def _svg(fig, chart_id: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # inline SVG in HTML takes no XML prolog or DOCTYPE
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)  # RDF naming the tool
    text = text.replace("<svg ", f'<svg id="{chart_id}" class="chart" ', 1)
    # Matplotlib's fixed ids (figure_1, axes_1, ...) repeat in every chart: make them the chart's own.
    text = re.sub(r'id="(figure|axes|patch|legend|line2d|text|matplotlib\.axis|xtick|ytick|PolyCollection|'
                  r'LineCollection|PathCollection|Line2D|Collection)_(\d+)"', rf'id="{chart_id}-\1_\2"', text)
    return text


def _figure(width_in: float, height_in: float, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _draw_line(ax, line: Line, gid: str, index: int) -> None:
    n = len(line.x)
    yerr = xerr = None
    if line.y_low is not None and line.y_high is not None:
        yerr = [[max(0.0, y - lo) for y, lo in zip(line.y, line.y_low)],
                [max(0.0, hi - y) for y, hi in zip(line.y, line.y_high)]]
    if line.x_low is not None and line.x_high is not None:
        xerr = [[max(0.0, x - lo) for x, lo in zip(line.x, line.x_low)],
                [max(0.0, hi - x) for x, hi in zip(line.x, line.x_high)]]
    if yerr is not None or xerr is not None:
        bars = ax.errorbar(line.x, line.y, yerr=yerr, xerr=xerr, fmt="none", ecolor=line.color, elinewidth=1,
                           capsize=2.5, alpha=0.8)
        for j, part in enumerate((*bars.lines[2], *bars.lines[1])):
            part.set_gid(f"{gid}-bars-{index}" if j == 0 else f"{gid}-bars-{index}-{j}")
    hollow = list(line.hollow) or [False] * n
    marker = "o" if (not line.joined or n <= 12) else None
    (drawn,) = ax.plot(line.x, line.y, color=line.color, linewidth=1.4 if line.joined else 0, marker=marker,
                       markersize=4, label=_tx(line.label))
    drawn.set_gid(f"{gid}-series-{index}")
    if marker and any(hollow):
        drawn.set_marker("")
        xs = [x for x, h in zip(line.x, hollow) if h]
        ys = [y for y, h in zip(line.y, hollow) if h]
        ax.plot(xs, ys, linestyle="none", marker="o", markersize=5, markerfacecolor="white", color=line.color)
        xs = [x for x, h in zip(line.x, hollow) if not h]
        ys = [y for y, h in zip(line.y, hollow) if not h]
        ax.plot(xs, ys, linestyle="none", marker="o", markersize=5, color=line.color)
    for x, y, m in line.marks:
        ax.plot([x], [y], linestyle="none", marker=m, markersize=5.5, color=line.color, markeredgecolor="black",
                markeredgewidth=0.5)


def _number(value: float, _pos: object = None) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _log_axis(axis, set_scale) -> None:
    """A log axis labelled with plain numbers (3, 20, 5,000), not powers of ten; minor ticks
    labelled at 2 and 5 when the axis spans less than two decades, where majors are few."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    set_scale("log")
    axis.set_major_formatter(FuncFormatter(_number))
    lo, hi = axis.get_view_interval()
    if lo > 0 and hi / lo < 100:
        axis.set_minor_formatter(FuncFormatter(lambda v, _p: _number(v) if round(v / 10 ** math.floor(
            math.log10(v) + 1e-9)) in (2, 5) else ""))
    else:
        axis.set_minor_formatter(NullFormatter())


def _draw_panel(ax, panel: Panel, gid: str, first_index: int) -> int:
    if panel.band is not None:
        ax.axhspan(*panel.band, color=NEUTRAL, alpha=0.12, linewidth=0)
    for i, line in enumerate(panel.lines):
        _draw_line(ax, line, gid, first_index + i)
    for g in panel.guides:
        draw = ax.axhline if g.axis == "h" else ax.axvline
        draw(g.at, color=g.color, linestyle="--" if g.dashed else "-", linewidth=1, label=_tx(g.label) or None)
    if panel.xlog:
        _log_axis(ax.xaxis, ax.set_xscale)
    if panel.ylog:
        _log_axis(ax.yaxis, ax.set_yscale)
    ax.set_xlabel(_tx(panel.xlabel))
    ax.set_ylabel(_tx(panel.ylabel))
    if panel.title:
        ax.set_title(_tx(panel.title), fontsize=8.5)
    if panel.lines or any(g.label for g in panel.guides):
        ax.legend(loc="best")
    return first_index + len(panel.lines)


def chart(canvas: Canvas, kind: str, title: str, panels: Sequence[Panel], caption: str = "",
          width_in: float | None = None, height_in: float = 3.0) -> Plot:
    """One chart of one or more panels side by side."""
    from matplotlib import rc_context

    chart_id = canvas.next_id()
    with rc_context(_rc(chart_id)):
        fig, axes = _figure(width_in or 3.5 * len(panels), height_in, len(panels))
        index = 0
        for ax, panel in zip(axes, panels):
            index = _draw_panel(ax, panel, chart_id, index)
        svg = _svg(fig, chart_id)
    return Plot(kind, title, svg, index, caption)


@dataclass(frozen=True)
class Interval:
    """One labelled estimate with its interval on a categorical axis (a ratio plot's row)."""

    label: str
    value: float
    low: float
    high: float
    color: str = NEUTRAL


def intervals(canvas: Canvas, kind: str, title: str, columns: Sequence[tuple[str, Sequence[Interval]]],
              labels: Sequence[str], reference: float = 1.0, band: tuple[float, float] | None = None,
              caption: str = "") -> Plot:
    """Rows of estimates with their intervals (a forest plot), one panel per column (e.g.
    throughput and p99 ratios); each column's estimates are one series."""
    from matplotlib import rc_context

    chart_id = canvas.next_id()
    rows = len(labels)
    with rc_context(_rc(chart_id)):
        fig, axes = _figure(3.4 * len(columns) + 2.6, 0.8 + 0.24 * max(rows, 2), len(columns))
        position = {label: rows - 1 - i for i, label in enumerate(labels)}
        for k, (ax, (name, items)) in enumerate(zip(axes, columns)):
            if band is not None:
                ax.axvspan(*band, color=NEUTRAL, alpha=0.12, linewidth=0)
            ax.axvline(reference, color="black", linewidth=0.8)
            ys = [position[it.label] for it in items]
            xs = [it.value for it in items]
            err = [[max(0.0, it.value - it.low) for it in items], [max(0.0, it.high - it.value) for it in items]]
            for j, color in enumerate(dict.fromkeys(it.color for it in items)):  # errorbar takes one colour
                pick = [i for i, it in enumerate(items) if it.color == color]
                bars = ax.errorbar([xs[i] for i in pick], [ys[i] for i in pick], fmt="none", ecolor=color,
                                   xerr=[[err[0][i] for i in pick], [err[1][i] for i in pick]], elinewidth=1.2, capsize=2)
                for m, part in enumerate((*bars.lines[2], *bars.lines[1])):
                    part.set_gid(f"{chart_id}-bars-{k}-{j}-{m}")
            dots = ax.scatter(xs, ys, c=[it.color for it in items], s=14, zorder=3)
            dots.set_gid(f"{chart_id}-series-{k}")
            ax.set_yticks(range(rows))
            ax.set_yticklabels([_tx(x) for x in reversed(labels)] if k == 0 else [""] * rows)
            ax.set_ylim(-0.7, rows - 0.3)
            ax.set_xlabel(_tx(name))
            ax.grid(axis="y", visible=False)
            finite = [v for it in items for v in (it.low, it.high) if math.isfinite(v)]
            if finite:
                lo, hi = min(min(finite), reference), max(max(finite), reference)
                pad = (hi - lo) * 0.08 or 0.05
                ax.set_xlim(lo - pad, hi + pad)
        svg = _svg(fig, chart_id)
    return Plot(kind, title, svg, len(columns), caption)


def bars(canvas: Canvas, kind: str, title: str, labels: Sequence[str], values: Sequence[float], xlabel: str,
         colors: Sequence[str] | None = None, caption: str = "", limit: float | None = None) -> Plot:
    """Horizontal bars, one row per label (e.g. each GPU cell's fraction of peak); one series."""
    from matplotlib import rc_context

    chart_id = canvas.next_id()
    with rc_context(_rc(chart_id)):
        fig, axes = _figure(6.5, 0.8 + 0.24 * max(len(labels), 2))
        ax = axes[0]
        # One collection of thick lines, not barh's one patch per bar: the series is one SVG group.
        drawn = ax.hlines(range(len(labels)), 0, values, colors=list(colors or [PALETTE[0]] * len(labels)), linewidth=9)
        drawn.set_gid(f"{chart_id}-series-0")
        ax.set_xlim(0, max([*values, limit or 0]) * 1.05 or 1)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels([_tx(x) for x in labels])
        ax.invert_yaxis()
        ax.set_xlabel(_tx(xlabel))
        if limit is not None:
            ax.axvline(limit, color="black", linewidth=0.8)
        svg = _svg(fig, chart_id)
    return Plot(kind, title, svg, 1, caption)
