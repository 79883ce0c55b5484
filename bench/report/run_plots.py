"""The charts of one run (reads results and their analysis; draws with report.plots).

Each chart is drawn only where the run has its data: a latency CDF per benchmark from the
cells' stored histograms, throughput and p99 against batch size and concurrency, latency against
offered load for server cells (the peak search's curve, the SLO drawn), throughput against p99
per target group with the Pareto front, throughput against accuracy loss per workload with its
front (where the run measured accuracy), the stored throughput series over the measured window
(a small panel per target), each GPU cell's telemetry over its window, each GPU cell's fraction
of peak, and each generating cell's decode step against its KV length.

A target keeps its colour in every chart; where one chart holds several cells of a target
(batch sizes, shapes, scenarios), each setting has its own dash and marker, the same in every
chart of the report, and the legend names it. A throughput axis is in the cells' own unit
(tokens/s for generate cells).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from bench.analysis.ranking import rank_targets
from bench.analysis.tradeoff import has_accuracy, tradeoffs
from bench.report import accuracy_text
from bench.report.plots import BAD, DASHES, MARKERS, PALETTE, Canvas, Guide, Line, Panel, Plot, bars, chart
from bench.results.records import Cell, Histogram, Run


def target_colors(runs: Iterable[Run]) -> dict[str, str]:
    """One colour per target name, in order of first appearance, the same in every chart."""
    names: dict[str, str] = {}
    for run in runs:
        for c in run.cells:
            names.setdefault(c.target.name, PALETTE[len(names) % len(PALETTE)])
    return names


def _measured(run: Run) -> list[Cell]:
    return [c for c in run.cells if c.status == "ok" and c.metrics is not None]


def _shape(c: Cell) -> str:
    """" seq=128" for a cell with named dimensions (as its id says them), else empty."""
    return f" {c.key.dims_label}" if c.dims else ""


def _setting_label(c: Cell) -> str:
    """"b4 seq=128 single-stream c2": what tells a target's cells apart."""
    conc = "" if c.concurrency is None else f" c{c.concurrency}"
    return f"b{c.batch_size}{_shape(c)} {c.scenario}{conc}"


def _label(c: Cell) -> str:
    return f"{c.target.name} {_setting_label(c)}"


def _setting(c: Cell) -> tuple:
    return (c.batch_size, c.key.dims_label, c.scenario, c.concurrency or 0)


def setting_styles(cells: Iterable[Cell]) -> dict[tuple, tuple[object, str]]:
    """(dash, marker) per setting of these cells, in order of batch size: b1 solid with dots, the
    next dashed with squares, and so on, the same for every target of the chart."""
    settings = sorted({_setting(c) for c in cells}, key=lambda k: (k[0], str(k[1]), k[2], k[3]))
    return {k: (DASHES[i % len(DASHES)], MARKERS[i % len(MARKERS)]) for i, k in enumerate(settings)}


def _unit(cells: Iterable[Cell]) -> str:
    """The throughput unit of these cells ("samples/s", "tokens/s"), or each of them, joined."""
    return " or ".join(dict.fromkeys(c.metrics.throughput.unit for c in cells)) or "samples/s"


def cdf_points(h: Histogram) -> tuple[list[float], list[float]]:
    """The empirical CDF at each non-empty bucket's upper edge, in ms, from a stored histogram
    (bucket i >= 1 spans [base·growth^(i-1), base·growth^i) ns; bucket 0 is below base)."""
    total = sum(h.counts)
    if total <= 0:
        return [], []
    xs, ys, seen = [], [], 0
    for k, count in enumerate(h.counts):
        if count == 0:
            continue
        i = h.first_bucket + k
        if not xs:  # start the curve at the first bucket's lower edge
            xs.append((h.base_ns * h.growth ** (i - 1) if i >= 1 else h.base_ns / h.growth) / 1e6)
            ys.append(0.0)
        seen += count
        xs.append(h.base_ns * h.growth ** i / 1e6)
        ys.append(seen / total)
    return xs, ys


def latency_cdfs(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    by_bench: dict[str, list[Cell]] = {}
    for c in _measured(run):
        if c.metrics.latency_ms.histogram is not None:
            by_bench.setdefault(c.benchmark, []).append(c)
    plots = []
    for bench, cells in by_bench.items():
        lines = []
        styles = setting_styles(cells)
        for c in cells:
            xs, ys = cdf_points(c.metrics.latency_ms.histogram)
            if not xs:
                continue
            lat = c.metrics.latency_ms
            # A target's cells share its colour and differ by dash (the dots stay: ● ▲ mark p50 and p99).
            lines.append(Line(_label(c), xs, ys, colors[c.target.name], marks=((lat.p50.value, 0.5, "o"),
                              (lat.p99.value, 0.99, "^")), dash=styles[_setting(c)][0]))
        if lines:
            plots.append(chart(canvas, "cdf", f"{bench}: latency distribution", [Panel(
                tuple(lines), "latency per call (ms, log)", "fraction of calls at or below", xlog=True,
                guides=(Guide("h", 0.99), Guide("h", 0.5)))], width_in=6.8, height_in=3.4,
                caption="from each cell's stored histogram (log buckets); ● p50, ▲ p99 of the cell's figures"))
    return plots


def _curves(c: Cell) -> list[tuple[str, str, int]]:
    """The sweep curves a cell is a point of, as (axis, what the curve holds fixed, setting):
    against batch size at its concurrency, and, where it has one, against concurrency at its
    batch size (a concurrency curve mixing batch sizes would pile b1, b2 and b4 at one x)."""
    fixed = "" if c.concurrency is None else f" c{c.concurrency}"
    curves = [("batch size", fixed, c.batch_size)]
    if c.concurrency is not None:
        curves.append(("concurrency", f" b{c.batch_size}", c.concurrency))
    return curves


def sweep_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    """Throughput and p99 against batch size (at one concurrency) and against concurrency (at one
    batch size), a line per target with its intervals, wherever a target has two settings or
    more; ticks at the settings measured."""
    groups: dict[tuple[str, str, str], dict[str, list[tuple[int, Cell]]]] = {}
    for c in _measured(run):
        if c.server is not None:
            continue
        for axis, fixed, setting in _curves(c):
            # A curve holds one shape: seq=128 and seq=512 are separate charts.
            groups.setdefault((c.benchmark, c.scenario + _shape(c) + fixed, axis), {}).setdefault(
                c.target.name, []).append((setting, c))
    plots = []
    for (bench, scenario, axis), by_target in groups.items():
        if not any(len({x for x, _ in points}) >= 2 for points in by_target.values()):
            continue
        tp_lines, p99_lines = [], []
        for target, points in by_target.items():
            points = sorted(points, key=lambda p: p[0])
            xs = [x for x, _ in points]
            tps = [c.metrics.throughput for _, c in points]
            p99s = [c.metrics.latency_ms.p99 for _, c in points]
            tp_lines.append(Line(target, xs, [t.value for t in tps], colors[target],
                                 [t.ci_low if t.ci_low is not None else t.value for t in tps],
                                 [t.ci_high if t.ci_high is not None else t.value for t in tps]))
            p99_lines.append(Line(target, xs, [p.value for p in p99s], colors[target],
                                  [p.ci_low if p.ci_low is not None else p.value for p in p99s],
                                  [p.ci_high if p.ci_high is not None else p.value for p in p99s]))
        cells = [c for points in by_target.values() for _, c in points]
        slo = _slo_p99(cells[0])
        ticks = tuple(sorted({x for points in by_target.values() for x, _ in points}))  # the settings measured
        plots.append(chart(canvas, "sweep", f"{bench} {scenario}: throughput and p99 against {axis}", [
            Panel(tuple(tp_lines), f"{axis} (log)", f"{_unit(cells)} (log)", xlog=True, ylog=True, xticks=ticks),
            Panel(tuple(p99_lines), f"{axis} (log)", "p99 latency ms (log)", xlog=True, ylog=True, xticks=ticks,
                  guides=(Guide("h", slo, f"SLO p99 {slo:g} ms", BAD),) if slo else ())],
            caption="bars: each figure's interval"))
    return plots


def _slo_p99(c: Cell) -> float | None:
    if c.slo is None:
        return None
    return next((k.limit_ms for k in c.slo.checks if k.metric == "p99"), None)


def load_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    """Latency against offered load: each peak search's curve (hollow: a rate that failed), and
    server cells at fixed rates joined per target; the SLO's p99 drawn."""
    plots = []
    fixed: dict[str, list[Cell]] = {}
    for c in _measured(run):
        if c.server is None:
            continue
        if c.server.curve:
            pts = sorted(c.server.curve, key=lambda p: p.offered_qps)
            xs = [p.offered_qps for p in pts]
            hollow = [not p.good for p in pts]
            slo = _slo_p99(c)
            lines = (Line("p99", xs, [p.p99_ms for p in pts], colors[c.target.name], hollow=hollow),
                     Line("p50", xs, [p.p50_ms for p in pts], PALETTE[7], hollow=hollow))
            guides = [Guide("h", slo, f"SLO p99 {slo:g} ms", BAD)] if slo else []
            if c.server.max_qps:
                guides.append(Guide("v", c.server.max_qps, f"peak {c.server.max_qps:,.0f}/s", "black"))
            plots.append(chart(canvas, "load", f"{c.id}: peak search", [Panel(
                lines, "offered requests/s", "latency ms (log)", ylog=True, guides=tuple(guides))],
                width_in=6.0, caption="each rate tried; hollow: the rate did not keep up or broke the SLO"))
        else:
            fixed.setdefault(c.benchmark, []).append(c)
    for bench, cells in fixed.items():
        by_target: dict[str, list[Cell]] = {}
        for c in cells:
            by_target.setdefault(f"{c.target.name} b{c.batch_size}{_shape(c)}", []).append(c)
        lines = []
        for name, group in by_target.items():
            group = sorted(group, key=lambda c: c.server.offered_qps)
            p99 = [c.metrics.latency_ms.p99 for c in group]
            lines.append(Line(name, [c.server.offered_qps for c in group], [p.value for p in p99],
                              colors[group[0].target.name],
                              [p.ci_low if p.ci_low is not None else p.value for p in p99],
                              [p.ci_high if p.ci_high is not None else p.value for p in p99],
                              hollow=[not c.server.valid for c in group]))
        slo = _slo_p99(cells[0])
        plots.append(chart(canvas, "load", f"{bench}: p99 against offered load", [Panel(
            tuple(lines), "offered requests/s", "p99 latency ms", guides=(Guide("h", slo, f"SLO p99 {slo:g} ms", BAD),)
            if slo else (), ymin=0.0)], width_in=6.0, caption="hollow: an invalid run (the target fell behind the rate)"))
    return plots


def pareto_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    """Per group of targets on one workload: throughput against p99, intervals both ways; the
    Pareto front (no other target is both faster and lower in p99) joined and ringed."""
    groups: dict[str, list] = {}
    for r in rank_targets(run):
        groups.setdefault(r.group, []).append(r)
    plots = []
    for group, ranked in groups.items():
        if len(ranked) < 2:
            continue
        lines = []
        for r in ranked:
            tp, p99 = r.cell.metrics.throughput, r.cell.metrics.latency_ms.p99
            lines.append(Line(r.cell.target.name + (" ★" if r.pareto else "") + (" (disagrees)" if r.disagrees else ""),
                              [p99.value], [tp.value], colors[r.cell.target.name],
                              [_low(tp.value, tp.ci_low)], [tp.ci_high if tp.ci_high is not None else tp.value],
                              [_low(p99.value, p99.ci_low)], [p99.ci_high if p99.ci_high is not None else p99.value],
                              joined=False, hollow=[r.disagrees]))
        front = sorted((r for r in ranked if r.pareto), key=lambda r: r.cell.metrics.latency_ms.p99.value)
        lines.append(Line("Pareto front", [r.cell.metrics.latency_ms.p99.value for r in front],
                          [r.cell.metrics.throughput.value for r in front], "black"))
        panel = Panel(tuple(lines), "p99 latency ms (log)", f"{_unit(r.cell for r in ranked)} (log)", xlog=True, ylog=True)
        plot = chart(canvas, "pareto", f"{group}: throughput against p99", [panel], width_in=4.4, height_in=3.0,
                     caption="★ on the Pareto front: " + ", ".join(r.cell.target.name for r in front)
                     + "; hollow: outputs disagree with the reference")
        plots.append(plot)
    return plots


def tradeoff_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    """Per workload whose targets carry accuracy figures: throughput against accuracy loss, the
    intervals both ways, the Pareto front (bench.analysis.tradeoff) joined; a target that fails
    agreement hollow and off the front. Shares' losses are in percent, as the table writes them."""
    if not has_accuracy(run):
        return []
    plots = []
    for t in tradeoffs(run):
        placed = [p for p in t.points if p.loss is not None]
        if len(placed) < 2:
            continue
        k = 100.0 if t.metric in ("top1", "token") else 1.0
        lines = []
        for p in placed:
            tp = p.cell.metrics.throughput
            low = p.loss if p.loss_low is None else p.loss_low
            high = p.loss if p.loss_high is None else p.loss_high
            name = p.cell.target.name + (" (reference)" if p.is_reference else "") + (" ★" if p.pareto else "")
            lines.append(Line(name + (" (fails agreement)" if p.fails else ""), [k * p.loss], [tp.value],
                              colors[p.cell.target.name], [_low(tp.value, tp.ci_low)],
                              [tp.ci_high if tp.ci_high is not None else tp.value], [k * low], [k * high],
                              joined=False, hollow=[p.fails]))
        front = sorted((p for p in placed if p.pareto), key=lambda p: p.loss)
        lines.append(Line("Pareto front", [k * p.loss for p in front], [p.cell.metrics.throughput.value for p in front],
                          "black"))
        panel = Panel(tuple(lines), accuracy_text.loss_words(t.metric), _unit(p.cell for p in placed), ymin=0.0)
        plots.append(chart(canvas, "tradeoff", f"{t.workload}: throughput against accuracy loss", [panel],
                           width_in=5.0, height_in=3.2,
                           caption="★ on the Pareto front: " + (", ".join(p.cell.target.name for p in front) or "none")
                           + "; up is faster, left is closer to the reference (its loss is 0); bars: 95% intervals; "
                             "hollow: outputs fail agreement (never on the front)"))
    return plots


def _low(value: float, low: float | None) -> float:
    """An interval's lower end as stored (at or below zero for a wide t interval over few
    processes: the log axis cuts it at its edge and marks it, report.plots)."""
    return value if low is None else low


FLAT = 0.05  # a series within ±5% of its mean in every window shows no warm-up or drift worth a panel
MIN_WINDOWS = 3  # two windows make a line, not a slope


def series_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    """The stored throughput series over each cell's measured window, as a share of the cell's
    mean: per benchmark one chart, a small panel per target (its cells told apart by dash and
    marker, one y range for all panels), so warm-up and drift show as a slope without one
    target's curves hiding another's. A cell whose series is flat (within ±FLAT of its mean) or
    too short says nothing here: it gets no line, the caption names it, and a benchmark whose
    cells all say nothing gets no chart."""
    by_bench: dict[str, list[Cell]] = {}
    for c in _measured(run):
        s = c.throughput_series
        if s is not None and len(s.values) >= 2 and sum(s.values) > 0:
            by_bench.setdefault(c.benchmark, []).append(c)
    plots = []
    for bench, cells in by_bench.items():
        styles = setting_styles(cells)
        by_target: dict[str, list[Line]] = {}
        flat: list[str] = []
        for c in cells:
            s = c.throughput_series
            mean = sum(s.values) / len(s.values)
            share = [100 * v / mean for v in s.values]
            if len(share) < MIN_WINDOWS or max(abs(v - 100) for v in share) <= 100 * FLAT:
                flat.append(_label(c))
                continue
            dash, marker = styles[_setting(c)]
            by_target.setdefault(c.target.name, []).append(Line(
                _setting_label(c), [(k + 0.5) * s.window_s for k in range(len(share))], share, colors[c.target.name],
                dash=dash, marker=marker))
        if not by_target:
            continue
        panels = [Panel(tuple(lines), "seconds into the window", "% of the cell's mean" if i % 4 == 0 else "",
                        guides=(Guide("h", 100.0),), title=target) for i, (target, lines) in enumerate(by_target.items())]
        caption = "one process's window per cell (the repetition whose throughput is the median), in the windows of its stored series"
        if flat:
            caption += f"; within ±{FLAT:.0%} of their mean throughout (not drawn): " + ", ".join(flat)
        plots.append(chart(canvas, "series", f"{bench}: throughput over the measured window", panels,
                           width_in=2.5 * min(len(panels), 4), height_in=2.3 * -(-len(panels) // 4), columns=4,
                           share_y=True, caption=caption))
    return plots


def roofline_plot(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    cells = [c for c in _measured(run) if c.roofline is not None and c.roofline.fraction_of_peak is not None]
    if not cells:
        return []
    return [bars(canvas, "roofline", "fraction of the device's measured peak", [c.id for c in cells],
                 [100 * c.roofline.fraction_of_peak for c in cells], "achieved FLOP/s, % of the probe's GEMM peak",
                 [colors[c.target.name] for c in cells], limit=100.0,
                 caption="FLOPs per sample × throughput against the peak a GEMM probe reached at the cell's precision")]


_GPU_PANELS = (("utilization_pct", "utilization %"), ("sm_clock_mhz", "SM clock MHz"), ("power_w", "power W"),
               ("temperature_c", "temperature °C"))


def gpu_series_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    """Each GPU cell's telemetry over its measured window (schema 8 on): a panel per figure the
    device reported; a gap where a window held no sample."""
    plots = []
    for c in _measured(run):
        s = c.gpu.series if c.gpu is not None else None
        if s is None:
            continue
        panels = []
        for attr, name in _GPU_PANELS:
            values = getattr(s, attr)
            if any(v is not None for v in values):
                xs = [(k + 0.5) * s.window_s for k in range(len(values))]
                panels.append(Panel((Line(name, xs, [math.nan if v is None else v for v in values],
                                          colors[c.target.name]),), "seconds into the window", name))
        if panels:
            throttled = f"; throttled: {', '.join(c.gpu.throttle_reasons)}" if c.gpu.throttled else ""
            plots.append(chart(canvas, "gpu", f"{c.id}: GPU telemetry over the measured window", panels,
                               width_in=2.6 * len(panels), height_in=2.4,
                               caption=f"NVML every {c.gpu.interval_ms:g} ms, in windows of {s.window_s:.3g} s{throttled}"))
    return plots


def monitor_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    """A monitor cell's windows: throughput, p50 and p99, and RSS over its time, each alarm a red line."""
    plots = []
    for c in _measured(run):
        m = c.monitor
        if m is None or not m.throughput.values:
            continue
        xs = [(k + 1) * m.window_s for k in range(len(m.throughput.values))]
        guides = tuple(Guide("v", (a.window + 1) * m.window_s, f"{a.figure} {a.change:+.0%}" if a.kind == "drift"
                             else f"{a.figure} leak", BAD) for a in m.alarms)
        positive = lambda values: [v if v > 0 else math.nan for v in values]  # noqa: E731 - no request: a gap
        color = colors[c.target.name]
        panels = [
            Panel((Line("throughput", xs, list(m.throughput.values), color),), "seconds", "samples/s", guides=guides),
            Panel((Line("p99", xs, positive(m.p99_ms.values), color), Line("p50", xs, positive(m.p50_ms.values), PALETTE[7])),
                  "seconds", "latency ms (log)", ylog=True, guides=guides),
            Panel((Line("RSS", xs, [v / 2**20 for v in m.rss_bytes.values], color),), "seconds", "worker RSS MiB"),
        ]
        plots.append(chart(canvas, "monitor", f"{c.id}: {m.windows} windows of {m.window_s:g} s", panels,
                           width_in=10.5, height_in=2.6,
                           caption=f"{m.load}; {len(m.alarms)} alarm(s) (red lines); {m.end_reason}"))
    return plots


def decode_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    """Per benchmark that generates: each cell's decode step (median) against the KV length, a
    target in its colour and each batch size (shape, concurrency) in its own dash and marker."""
    by_bench: dict[str, list[Cell]] = {}
    for c in _measured(run):
        if c.generate is not None and c.generate.decode_curve:
            by_bench.setdefault(c.benchmark, []).append(c)
    plots = []
    for bench, cells in by_bench.items():
        styles = setting_styles(cells)
        cells = sorted(cells, key=lambda c: (list(colors).index(c.target.name), list(styles).index(_setting(c))))
        lines = tuple(Line(f"{c.target.name} b{c.batch_size}{_shape(c)}" + (f" c{c.concurrency}" if c.concurrency else ""),
                           [p.kv_len for p in c.generate.decode_curve], [p.p50_ms for p in c.generate.decode_curve],
                           colors[c.target.name], dash=styles[_setting(c)][0], marker=styles[_setting(c)][1])
                      for c in cells)
        plots.append(chart(canvas, "decode", f"{bench}: decode step against KV length", [
            Panel(lines, "tokens in the KV cache", "decode step p50 ms", ymin=0.0)], width_in=5.0, height_in=3.2,
            caption="each point: the median step whose KV length fell in that bin (the bin's upper edge); "
                    "colour: target, dash and marker: batch size"))
    return plots


def run_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> dict[str, list[Plot]]:
    """Every chart of one run, by section."""
    return {
        "latency": latency_cdfs(run, canvas, colors),
        "sweeps": sweep_plots(run, canvas, colors),
        "load": load_plots(run, canvas, colors),
        "pareto": pareto_plots(run, canvas, colors),
        "tradeoff": tradeoff_plots(run, canvas, colors),
        "series": series_plots(run, canvas, colors),
        "roofline": roofline_plot(run, canvas, colors),
        "gpu": gpu_series_plots(run, canvas, colors),
        "monitor": monitor_plots(run, canvas, colors),
        "decode": decode_plots(run, canvas, colors),
    }
