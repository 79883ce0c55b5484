"""Terminal tables from result records (reads results only, runs nothing)."""
from __future__ import annotations

from rich.table import Table

from bench.results.schema import Cell, Run


def fmt_estimate(value: float, low: float | None, high: float | None, digits: int = 3) -> str:
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"
    if low is not None and high is not None:
        half = max(value - low, high - value)
        text += f" ± {half:,.0f}" if half >= 100 else f" ± {half:.2g}"
    return text


def progress_line(index: int, total: int, cell: Cell) -> str:
    head = f"[{index + 1}/{total}] {cell.id}"
    if cell.status == "ok" and cell.metrics is not None:
        tp = cell.metrics.throughput
        lat = cell.metrics.latency_ms
        agree = cell.agreement.verdict if cell.agreement else "-"
        return (f"{head}: {fmt_estimate(tp.value, tp.ci_low, tp.ci_high, 4)} samples/s, "
                f"p50 {fmt_estimate(lat.p50.value, lat.p50.ci_low, lat.p50.ci_high)} ms, "
                f"p99 {fmt_estimate(lat.p99.value, lat.p99.ci_low, lat.p99.ci_high)} ms, "
                f"agreement {agree}; stop: {cell.stop_reason}")
    return f"{head}: {cell.status}: {cell.reason}"


def stop_word(reason: str | None) -> str:
    if not reason:
        return "-"
    if reason.startswith("precision reached"):
        return "precision"
    if reason.startswith("max_seconds") and "precision" in reason:
        return "max_s (imprecise)"
    return reason.split(" ", 1)[0]


def _scenario(c: Cell) -> str:
    return f"{c.scenario} c{c.concurrency}" if c.scenario == "multi-stream" else c.scenario


def summary_table(run: Run) -> Table:
    confidence = next((c.metrics.latency_ms.confidence for c in run.cells if c.metrics), None)
    ci = f" · ± = {confidence:.0%} CI half-width" if confidence else ""
    table = Table(title=f"{run.suite.name} · run {run.run_id} · {run.status}{ci}", show_lines=False)
    for col, justify in [
        ("benchmark", "left"), ("target", "left"), ("batch", "right"), ("scenario", "left"),
        ("status", "left"), ("samples/s", "right"), ("p50 ms", "right"), ("p99 ms", "right"),
        ("n", "right"), ("peak RSS MiB", "right"), ("agreement", "left"), ("SLO", "left"), ("stop", "left"),
    ]:
        table.add_column(col, justify=justify)
    skipped: dict[tuple[str, str], list[Cell]] = {}
    for c in run.cells:
        if c.status == "skipped":
            # One row per target and reason: a GPU-less machine skips many GPU cells alike.
            skipped.setdefault((c.target.name, c.reason), []).append(c)
            continue
        if c.status == "ok" and c.metrics is not None:
            tp = c.metrics.throughput
            lat = c.metrics.latency_ms
            agree = c.agreement
            agree_text = "-" if agree is None else (
                f"{agree.verdict} ({agree.max_rel_error:.1e})" if agree.max_rel_error is not None else agree.verdict
            )
            slo_text = "-" if c.slo is None else ("pass" if c.slo.passed else "FAIL")
            table.add_row(
                c.benchmark, c.target.name, str(c.batch_size), _scenario(c), c.status,
                fmt_estimate(tp.value, tp.ci_low, tp.ci_high, 4),
                fmt_estimate(lat.p50.value, lat.p50.ci_low, lat.p50.ci_high),
                fmt_estimate(lat.p99.value, lat.p99.ci_low, lat.p99.ci_high),
                str(lat.n),
                f"{c.memory.peak_rss_bytes / 2**20:.0f}" if c.memory else "-",
                agree_text, slo_text,
                stop_word(c.stop_reason) if c.server is None else ("valid" if c.server.valid else "INVALID"),
            )
        else:
            table.add_row(c.benchmark, c.target.name, str(c.batch_size), _scenario(c), c.status,
                          "-", "-", "-", "-", "-", c.reason[:90], "-", "-")
    by_reason: dict[str, list[str]] = {}
    for (target, reason), cells in skipped.items():
        by_reason.setdefault(reason, []).append(f"{target} ×{len(cells)}" if len(cells) > 1 else cells[0].id)
    if by_reason:
        table.caption = "; ".join(f"skipped {', '.join(names)}: {reason}" for reason, names in by_reason.items())
    return table


def targets_table(run: Run) -> Table:
    from bench.report.targets import rank_targets

    table = Table(title="targets ranked by throughput · ★ Pareto front of throughput vs p99")
    for col, justify in [("group", "left"), ("rank", "right"), ("target", "left"), ("samples/s", "right"),
                         ("p99 ms", "right"), ("", "left")]:
        table.add_column(col, justify=justify)
    for r in rank_targets(run):
        mark = "★" if r.pareto else ("outputs disagree" if r.disagrees else "")
        tp, p99 = r.cell.metrics.throughput, r.cell.metrics.latency_ms.p99
        table.add_row(r.group, str(r.rank), r.cell.target.name, fmt_estimate(tp.value, tp.ci_low, tp.ci_high, 4),
                      fmt_estimate(p99.value, p99.ci_low, p99.ci_high), mark)
    return table
