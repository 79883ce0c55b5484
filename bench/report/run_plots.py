"""The charts of one run (reads results and their analysis; draws with report.plots).

Each chart is drawn only where the run has its data: a latency CDF per benchmark from the
cells' stored histograms, throughput and p99 against batch size and concurrency, latency against
offered load for server cells (the peak search's curve, the SLO drawn), throughput against p99
per target group with the Pareto front, the stored throughput series over the measured window,
each GPU cell's telemetry over its window, and each GPU cell's fraction of peak.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from bench.analysis.ranking import rank_targets
from bench.report.plots import BAD, PALETTE, Canvas, Guide, Line, Panel, Plot, bars, chart
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


def _label(c: Cell) -> str:
    conc = "" if c.concurrency is None else f" c{c.concurrency}"
    return f"{c.target.name} b{c.batch_size}{_shape(c)} {c.scenario}{conc}"


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
        for i, c in enumerate(cells):
            xs, ys = cdf_points(c.metrics.latency_ms.histogram)
            if not xs:
                continue
            lat = c.metrics.latency_ms
            # Different batches and scenarios of one target share its colour: vary the shade by order.
            color = colors[c.target.name] if len({x.target.name for x in cells}) == len(cells) else PALETTE[i % len(PALETTE)]
            lines.append(Line(_label(c), xs, ys, color, marks=((lat.p50.value, 0.5, "o"), (lat.p99.value, 0.99, "^"))))
        if lines:
            plots.append(chart(canvas, "cdf", f"{bench}: latency distribution", [Panel(
                tuple(lines), "latency per call (ms, log)", "fraction of calls at or below", xlog=True,
                guides=(Guide("h", 0.99), Guide("h", 0.5)))], width_in=6.8, height_in=3.4,
                caption="from each cell's stored histogram (log buckets); ● p50, ▲ p99 of the cell's figures"))
    return plots


def _axis(c: Cell) -> tuple[str, int]:
    return ("concurrency", c.concurrency) if c.concurrency is not None else ("batch size", c.batch_size)


def sweep_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    """Throughput and p99 against batch size (or concurrency), a line per target with its intervals."""
    groups: dict[tuple[str, str, str], dict[str, list[Cell]]] = {}
    for c in _measured(run):
        if c.server is not None:
            continue
        axis, _ = _axis(c)
        # A curve holds one shape: seq=128 and seq=512 are separate charts.
        groups.setdefault((c.benchmark, c.scenario + _shape(c), axis), {}).setdefault(c.target.name, []).append(c)
    plots = []
    for (bench, scenario, axis), by_target in groups.items():
        if not any(len({_axis(c)[1] for c in cells}) >= 2 for cells in by_target.values()):
            continue
        tp_lines, p99_lines = [], []
        for target, cells in by_target.items():
            cells = sorted(cells, key=lambda c: _axis(c)[1])
            xs = [_axis(c)[1] for c in cells]
            tps = [c.metrics.throughput for c in cells]
            p99s = [c.metrics.latency_ms.p99 for c in cells]
            tp_lines.append(Line(target, xs, [t.value for t in tps], colors[target],
                                 [t.ci_low if t.ci_low is not None else t.value for t in tps],
                                 [t.ci_high if t.ci_high is not None else t.value for t in tps]))
            p99_lines.append(Line(target, xs, [p.value for p in p99s], colors[target],
                                  [p.ci_low if p.ci_low is not None else p.value for p in p99s],
                                  [p.ci_high if p.ci_high is not None else p.value for p in p99s]))
        slo = _slo_p99(next(iter(by_target.values()))[0])
        plots.append(chart(canvas, "sweep", f"{bench} {scenario}: throughput and p99 against {axis}", [
            Panel(tuple(tp_lines), f"{axis} (log)", "samples/s (log)", xlog=True, ylog=True),
            Panel(tuple(p99_lines), f"{axis} (log)", "p99 latency ms (log)", xlog=True, ylog=True,
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
            if slo else ())], width_in=6.0, caption="hollow: an invalid run (the target fell behind the rate)"))
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
                              [_positive_low(tp.value, tp.ci_low)], [tp.ci_high if tp.ci_high is not None else tp.value],
                              [_positive_low(p99.value, p99.ci_low)], [p99.ci_high if p99.ci_high is not None else p99.value],
                              joined=False, hollow=[r.disagrees]))
        front = sorted((r for r in ranked if r.pareto), key=lambda r: r.cell.metrics.latency_ms.p99.value)
        lines.append(Line("Pareto front", [r.cell.metrics.latency_ms.p99.value for r in front],
                          [r.cell.metrics.throughput.value for r in front], "black"))
        panel = Panel(tuple(lines), "p99 latency ms (log)", "samples/s (log)", xlog=True, ylog=True)
        plot = chart(canvas, "pareto", f"{group}: throughput against p99", [panel], width_in=4.4, height_in=3.0,
                     caption="★ on the Pareto front: " + ", ".join(r.cell.target.name for r in front)
                     + "; hollow: outputs disagree with the reference")
        plots.append(plot)
    return plots


def _positive_low(value: float, low: float | None) -> float:
    """An interval's lower end on a log axis: a bound at or below zero (a wide t interval over
    few processes) is drawn down to a tenth of the value, not lost off the axis."""
    return value if low is None else max(low, value / 10)


def series_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> list[Plot]:
    """The stored throughput series over each cell's measured window, as a share of the cell's
    mean, a chart per benchmark: warm-up and drift show as a slope."""
    by_bench: dict[str, list[Cell]] = {}
    for c in _measured(run):
        s = c.throughput_series
        if s is not None and len(s.values) >= 2 and sum(s.values) > 0:
            by_bench.setdefault(c.benchmark, []).append(c)
    plots = []
    for bench, cells in by_bench.items():
        lines = []
        for i, c in enumerate(cells):
            s = c.throughput_series
            mean = sum(s.values) / len(s.values)
            color = colors[c.target.name] if len({x.target.name for x in cells}) == len(cells) else PALETTE[i % len(PALETTE)]
            lines.append(Line(_label(c), [(k + 0.5) * s.window_s for k in range(len(s.values))],
                              [100 * v / mean for v in s.values], color))
        plots.append(chart(canvas, "series", f"{bench}: throughput over the measured window", [Panel(
            tuple(lines), "seconds into the measured window", "throughput, % of the cell's mean",
            guides=(Guide("h", 100.0),))], width_in=6.8, height_in=3.0,
            caption="one process's window per cell (the repetition whose throughput is the median), in the windows of its stored series"))
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
    """Per benchmark that generates: each cell's decode step (median) against the KV length."""
    by_bench: dict[str, list[Cell]] = {}
    for c in _measured(run):
        if c.generate is not None and c.generate.decode_curve:
            by_bench.setdefault(c.benchmark, []).append(c)
    plots = []
    for bench, cells in by_bench.items():
        lines = tuple(Line(f"{c.target.name} b{c.batch_size}{_shape(c)}" + (f" c{c.concurrency}" if c.concurrency else ""),
                           [p.kv_len for p in c.generate.decode_curve], [p.p50_ms for p in c.generate.decode_curve],
                           colors[c.target.name]) for c in cells)
        plots.append(chart(canvas, "decode", f"{bench}: decode step against KV length", [
            Panel(lines, "tokens in the KV cache", "decode step p50 ms")],
            caption="each point: the median step whose KV length fell in that bin (the bin's upper edge)"))
    return plots


def run_plots(run: Run, canvas: Canvas, colors: dict[str, str]) -> dict[str, list[Plot]]:
    """Every chart of one run, by section."""
    return {
        "latency": latency_cdfs(run, canvas, colors),
        "sweeps": sweep_plots(run, canvas, colors),
        "load": load_plots(run, canvas, colors),
        "pareto": pareto_plots(run, canvas, colors),
        "series": series_plots(run, canvas, colors),
        "roofline": roofline_plot(run, canvas, colors),
        "gpu": gpu_series_plots(run, canvas, colors),
        "monitor": monitor_plots(run, canvas, colors),
        "decode": decode_plots(run, canvas, colors),
    }
