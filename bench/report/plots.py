"""Charts of the HTML report, drawn by matplotlib as static SVG (knows charts, not runs).

Why static SVG: the report must open offline and years later, in a browser, an e-mail client,
a CI artifact viewer or a wiki whose content policy blocks scripts. SVG drawn here needs no
script, style sheet or font fetched at view time, scales without blur, and its text stays text
(searchable, copyable). Why matplotlib: it is the plotting library of the field, with the log
axes, ticks and error bars these charts need; it runs here, once, never in the reader's browser.

Every chart is one <svg>; each data series drawn is an SVG group whose id ends in
"-series-N" (its interval bars "-bars-N", the marks of its intervals cut at an axis
"-clipped-N-SIDE"), so a reader (or the browser test) can count what was drawn. Ids carry the
chart's number, unique within one report, and the output is the same for the same input (no
dates, hash salt fixed per chart).

Axes that could mislead are bounded here, not by matplotlib's autoscale: on a log axis an
interval whose lower end is at or below zero (a wide t interval over few processes) would be
drawn down to the floor of the figure and drag the axis decades down with it, so a log axis
spans the points and the interval ends within REACH of them, and an interval running past the
axis stops at it with a triangle pointing on (no cap: the cap would claim a bound). A panel with
a floor (latency, throughput: never below 0) or a stated range does the same on a linear axis.
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
# Within one target's colour, the settings of a curve (batch sizes) told apart by dash and marker.
DASHES = ("-", "--", ":", "-.", (0, (6, 2, 1, 2, 1, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# On a bounded axis, an interval end more than this factor beyond the outermost point (or at or
# below zero on a log axis) is cut at the axis: one interval over two processes spanning three
# decades would otherwise flatten every other point of the chart.
REACH = 10.0
CLIPPED_NOTE = "▼▲ at an axis: the interval runs on past it (cut there)"


@dataclass(frozen=True)
class Plot:
    kind: str  # what it shows: "cdf", "sweep", "load", "pareto", "tradeoff", "series", "roofline", "ratio", "history"
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
    dash: str | tuple = "-"  # matplotlib's linestyle: lines of one colour (one target) told apart
    marker: str | None = None  # None: a dot at each point where the points are few


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
    ymin: float | None = None  # the y-axis starts here (0: a figure that cannot be negative); bars below are cut
    ylim: tuple[float, float] | None = None  # the y-axis range, stated by the caller (its label says so)
    xticks: tuple[float, ...] = ()  # ticks at these x values only (the batch sizes measured, the runs dated)
    xticklabels: tuple[str, ...] = ()  # their labels; plain numbers when empty


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


def _figure(width_in: float, height_in: float, ncols: int = 1, nrows: int = 1, sharey: bool = False):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return fig, [ax for row in axes for ax in row]


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _bounds(panel: Panel, axis: str) -> tuple[float, float] | None:
    """The range of a bounded axis (log, a floor, or stated), None for one matplotlib may
    autoscale: the points, marks, guides and band always inside; interval ends inside where
    they lie within REACH of the points (and above zero on a log axis)."""
    log, floor = (panel.xlog, None) if axis == "x" else (panel.ylog, panel.ymin)
    if axis == "y" and panel.ylim is not None:
        return panel.ylim
    if not log and floor is None:
        return None
    points, ends = [], []
    for line in panel.lines:
        points += _finite(line.x if axis == "x" else line.y)
        points += _finite(m[0] if axis == "x" else m[1] for m in line.marks)
        low, high = (line.x_low, line.x_high) if axis == "x" else (line.y_low, line.y_high)
        if low is not None and high is not None:
            ends += _finite(low) + _finite(high)
    points += [g.at for g in panel.guides if (g.axis == "v") == (axis == "x") and math.isfinite(g.at)]
    if axis == "y" and panel.band is not None:
        points += _finite(panel.band)
    if log:
        points, ends = [v for v in points if v > 0], [v for v in ends if v > 0]
    if not points:
        return None
    p_lo, p_hi = min(points), max(points)
    if log:
        lo, hi = max(min([p_lo, *ends]), p_lo / REACH), min(max([p_hi, *ends]), p_hi * REACH)
        pad = (hi / lo) ** 0.05 if hi > lo else 1.5
        return lo / pad, hi * pad
    lo = min(floor, p_lo)
    top = max([p_hi, *ends])
    hi = min(top, lo + REACH * (p_hi - lo)) if p_hi > lo else top
    return (lo, hi + 0.05 * (hi - lo)) if hi > lo else (lo, lo + (abs(lo) or 1.0))


def _draw_bars(ax, line: Line, centers: Sequence[float], others: Sequence[float], lows, highs, vertical: bool,
               bounds: tuple[float, float] | None, gid: str) -> int:
    """One line's interval bars on one axis, each cut at the axis where it runs past it (a
    triangle there, pointing on, and no cap); the number cut."""
    from matplotlib.collections import LineCollection

    segments, caps, cut = [], [], {"low": [], "high": []}
    for c, o, lo, hi in zip(centers, others, lows, highs):
        if not (math.isfinite(c) and math.isfinite(o)):
            continue
        lo = c if lo is None or not math.isfinite(lo) else min(lo, c)
        hi = c if hi is None or not math.isfinite(hi) else max(hi, c)
        ends = []
        for side, end in (("low", lo), ("high", hi)):
            limit = None if bounds is None else bounds[0 if side == "low" else 1]
            if limit is not None and (end < limit if side == "low" else end > limit):
                cut[side].append((o, limit))
                ends.append(limit)
            else:
                if end != c:
                    caps.append((o, end))
                ends.append(end)
        if ends[0] != ends[1]:
            segments.append([(o, ends[0]), (o, ends[1])] if vertical else [(ends[0], o), (ends[1], o)])
    axis = "" if vertical else "-x"
    if segments:
        bars = LineCollection(segments, colors=line.color, linewidths=1, alpha=0.8)
        bars.set_gid(f"{gid}{axis}")
        ax.add_collection(bars, autolim=bounds is None)
    if caps:
        xs, ys = zip(*caps) if vertical else zip(*((v, o) for o, v in caps))
        (drawn,) = ax.plot(xs, ys, linestyle="none", marker="_" if vertical else "|", markersize=5, markeredgewidth=1,
                           color=line.color, alpha=0.8)
        drawn.set_gid(f"{gid}{axis}-caps")
    count = 0
    for side, points in cut.items():
        if not points:
            continue
        marker = ("v" if side == "low" else "^") if vertical else ("<" if side == "low" else ">")
        xs, ys = zip(*points) if vertical else zip(*((v, o) for o, v in points))
        (drawn,) = ax.plot(xs, ys, linestyle="none", marker=marker, markersize=5, color=line.color, clip_on=False)
        drawn.set_gid(f"{gid.replace('-bars-', '-clipped-')}-{side}{axis}")
        count += len(points)
    return count


def _draw_line(ax, line: Line, gid: str, index: int, xbounds=None, ybounds=None) -> int:
    """One series, its interval bars and marks; the number of interval ends cut at an axis."""
    n = len(line.x)
    cut = 0
    if line.y_low is not None and line.y_high is not None:
        cut += _draw_bars(ax, line, line.y, line.x, line.y_low, line.y_high, True, ybounds, f"{gid}-bars-{index}")
    if line.x_low is not None and line.x_high is not None:
        cut += _draw_bars(ax, line, line.x, line.y, line.x_low, line.x_high, False, xbounds, f"{gid}-bars-{index}")
    hollow = list(line.hollow) or [False] * n
    marker = line.marker or ("o" if (not line.joined or n <= 12) else None)
    # A long curve keeps its marker (what tells it from its neighbours) at about eight points.
    every = max(1, n // 8) if line.marker and n > 12 else None
    (drawn,) = ax.plot(line.x, line.y, color=line.color, linewidth=1.4 if line.joined else 0,
                       linestyle=line.dash if line.joined else "none", marker=marker, markevery=every, markersize=4,
                       label=_tx(line.label))
    drawn.set_gid(f"{gid}-series-{index}")
    if marker and any(hollow):
        drawn.set_marker("")
        xs = [x for x, h in zip(line.x, hollow) if h]
        ys = [y for y, h in zip(line.y, hollow) if h]
        ax.plot(xs, ys, linestyle="none", marker=marker, markersize=5, markerfacecolor="white", color=line.color)
        xs = [x for x, h in zip(line.x, hollow) if not h]
        ys = [y for y, h in zip(line.y, hollow) if not h]
        ax.plot(xs, ys, linestyle="none", marker=marker, markersize=5, color=line.color)
    for x, y, m in line.marks:
        ax.plot([x], [y], linestyle="none", marker=m, markersize=5.5, color=line.color, markeredgecolor="black",
                markeredgewidth=0.5)
    return cut


def plain_number(value: float, _pos: object = None) -> str:
    """A tick label as people write numbers: "5,000", "20", "0.05" (never 5e+03)."""
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _log_labels(axis) -> None:
    """A log axis labelled with plain numbers (3, 20, 5,000), not powers of ten; minor ticks
    labelled at 2 and 5 when the axis spans less than two decades, where majors are few."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(plain_number))
    lo, hi = axis.get_view_interval()
    if lo > 0 and hi / lo < 100:
        axis.set_minor_formatter(FuncFormatter(lambda v, _p: plain_number(v) if round(v / 10 ** math.floor(
            math.log10(v) + 1e-9)) in (2, 5) else ""))
    else:
        axis.set_minor_formatter(NullFormatter())


def _draw_panel(ax, panel: Panel, gid: str, first_index: int,
                ybounds: tuple[float, float] | None = None) -> tuple[int, int]:
    """One panel; (the next series index, the interval ends cut at an axis)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    if panel.xlog:
        ax.set_xscale("log")
    if panel.ylog:
        ax.set_yscale("log")
    xbounds, ybounds = _bounds(panel, "x"), ybounds or _bounds(panel, "y")
    if panel.band is not None:
        ax.axhspan(*panel.band, color=NEUTRAL, alpha=0.12, linewidth=0)
    cut = 0
    for i, line in enumerate(panel.lines):
        cut += _draw_line(ax, line, gid, first_index + i, xbounds, ybounds)
    for g in panel.guides:
        draw = ax.axhline if g.axis == "h" else ax.axvline
        draw(g.at, color=g.color, linestyle="--" if g.dashed else "-", linewidth=1, label=_tx(g.label) or None)
    if xbounds is not None:
        ax.set_xlim(*xbounds)
    if ybounds is not None:
        ax.set_ylim(*ybounds)
    if panel.xlog:
        _log_labels(ax.xaxis)
    if panel.ylog:
        _log_labels(ax.yaxis)
    if panel.xticks:
        from matplotlib.ticker import FixedFormatter, FuncFormatter

        ax.xaxis.set_major_locator(FixedLocator(list(panel.xticks)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FixedFormatter([_tx(t) for t in panel.xticklabels]) if panel.xticklabels
                                     else FuncFormatter(plain_number))
    ax.set_xlabel(_tx(panel.xlabel))
    ax.set_ylabel(_tx(panel.ylabel))
    if panel.title:
        ax.set_title(_tx(panel.title), fontsize=8.5)
    if panel.lines or any(g.label for g in panel.guides):
        ax.legend(loc="best")
    return first_index + len(panel.lines), cut


def chart(canvas: Canvas, kind: str, title: str, panels: Sequence[Panel], caption: str = "",
          width_in: float | None = None, height_in: float = 3.0, columns: int | None = None,
          share_y: bool = False) -> Plot:
    """One chart of one or more panels, side by side in rows of at most `columns` (all in one
    row by default); `share_y`: one y range for all (small multiples read against each other).
    The caption says when an interval was cut at an axis."""
    from matplotlib import rc_context

    chart_id = canvas.next_id()
    # a legend of many lines (8 targets at 2 batch sizes: 16) needs the height to sit in: at 3.4 in
    # matplotlib's constrained layout collapsed the axes to nothing and drew no chart
    height_in = max(height_in, 1.2 + 0.19 * max((len(p.lines) for p in panels), default=0))
    ncols = min(columns or len(panels), len(panels))
    nrows = -(-len(panels) // ncols)
    with rc_context(_rc(chart_id)):
        fig, axes = _figure(width_in or 3.5 * ncols, height_in, ncols, nrows, sharey=share_y)
        shared = None
        if share_y:
            found = [b for p in panels if (b := _bounds(p, "y")) is not None]
            shared = (min(b[0] for b in found), max(b[1] for b in found)) if found else None
        index = cut = 0
        for ax, panel in zip(axes, panels):
            index, n = _draw_panel(ax, panel, chart_id, index, shared)
            cut += n
        for ax in axes[len(panels):]:
            fig.delaxes(ax)
        svg = _svg(fig, chart_id)
    if cut:
        caption = f"{caption}; {CLIPPED_NOTE}" if caption else CLIPPED_NOTE
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
