"""Terminal tables from result records (reads results only, runs nothing)."""
from __future__ import annotations

from rich.table import Table

from bench.results.schema import Cell, Run


def fmt_estimate(value: float, low: float | None, high: float | None, digits: int = 3) -> str:
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"
    if low is not None and high is not None:
        half = max(value - low, high - value)
        text += f" ± {half:.2g}"
    return text


def progress_line(index: int, total: int, cell: Cell) -> str:
    head = f"[{index + 1}/{total}] {cell.id}"
    if cell.status == "ok" and cell.metrics is not None:
        tp = cell.metrics.throughput.value
        lat = cell.metrics.latency_ms
        agree = cell.agreement.verdict if cell.agreement else "-"
        return f"{head}: {tp:,.0f} samples/s, p50 {lat.p50.value:.3g} ms, p99 {lat.p99.value:.3g} ms, agreement {agree}"
    return f"{head}: {cell.status}: {cell.reason}"


def summary_table(run: Run) -> Table:
    table = Table(title=f"{run.suite.name} · run {run.run_id} · {run.status}", show_lines=False)
    for col, justify in [
        ("benchmark", "left"), ("target", "left"), ("batch", "right"), ("scenario", "left"),
        ("status", "left"), ("samples/s", "right"), ("p50 ms", "right"), ("p99 ms", "right"),
        ("n", "right"), ("peak RSS MiB", "right"), ("agreement", "left"), ("SLO", "left"),
    ]:
        table.add_column(col, justify=justify)
    for c in run.cells:
        if c.status == "ok" and c.metrics is not None:
            tp = c.metrics.throughput
            lat = c.metrics.latency_ms
            agree = c.agreement
            agree_text = "-" if agree is None else (
                f"{agree.verdict} ({agree.max_rel_error:.1e})" if agree.max_rel_error is not None else agree.verdict
            )
            slo_text = "-" if c.slo is None else ("pass" if c.slo.passed else "FAIL")
            table.add_row(
                c.benchmark, c.target.name, str(c.batch_size), c.scenario, c.status,
                fmt_estimate(tp.value, tp.ci_low, tp.ci_high, 4),
                fmt_estimate(lat.p50.value, lat.p50.ci_low, lat.p50.ci_high),
                fmt_estimate(lat.p99.value, lat.p99.ci_low, lat.p99.ci_high),
                str(lat.n),
                f"{c.memory.peak_rss_bytes / 2**20:.0f}" if c.memory else "-",
                agree_text, slo_text,
            )
        else:
            table.add_row(c.benchmark, c.target.name, str(c.batch_size), c.scenario, c.status,
                          "-", "-", "-", "-", "-", c.reason[:60], "-")
    return table
