"""Text of `bench history`: each series, its change points, and the gate (reads reports only)."""
from __future__ import annotations

from bench.analysis.history import ABSOLUTE, MIN_RUNS, SeriesReport
from bench.report.run_tables import node_kind


def fmt_step(metric: str, step: float) -> str:
    """A step as its metric reads it: "+12.0%" of a speed or latency, "+0.0312" of an accuracy loss
    (a difference in the loss's own units: 0.0312 is 3.1 points of top-1)."""
    return f"{step:+.3g}" if metric in ABSOLUTE else f"{step:+.1%}"


def threshold_words(metric: str, threshold: float) -> str:
    """"a step of 5% or more"; for an accuracy loss, "a rise in loss of 0.05 or more"."""
    return f"a rise in loss of {threshold:g} or more" if metric in ABSOLUTE else f"a step of {threshold:.0%} or more"


def gate_summary(reports: list[SeriesReport], kind: str, threshold: float, alpha: float, where: str = "",
                 calibration: str = "") -> str:
    """The gate's line for one machine kind: its answer (ALARM, pass, or no data when it tested no
    series: a gate that tested nothing has not passed), how many series it tested, the false-alarm
    rate per night it holds by design, and the rate this machine kind measured (`calibration`)."""
    mine = [r for r in reports if r.machine == kind]
    tested = sum(r.p_value is not None for r in mine)
    alarms = sum(r.latest_starts_regression for r in mine)
    metric = mine[0].metric if mine else "throughput"
    bound = (f"a night with no change raises a false alarm with probability at most {alpha:.0%} by design, "
             f"however many series; an alarm also needs {threshold_words(metric, threshold)}")
    if not tested:
        line = (f"gate{where}: no data; 0 of {len(mine)} series tested (a series is tested from its {MIN_RUNS}th run "
                f"on; {len(mine)} have fewer), so nothing passed; once tested, Benjamini-Hochberg at {alpha:g}: {bound}")
    else:
        line = (f"gate{where}: {'ALARM in ' + str(alarms) + ' series' if alarms else 'pass'}; {tested} of {len(mine)} "
                f"series tested, the latest run of each against the runs before it; Benjamini-Hochberg at {alpha:g} "
                f"over all of them: {bound}")
    return line + (f"\n  gate calibration{where}: {calibration}" if calibration else "")


def history_text(reports: list[SeriesReport], threshold: float, alpha: float = 0.05,
                 calibration: dict[str, str] | None = None) -> str:
    """The series and one gate line per machine kind; `calibration`: machine kind -> the
    calibration to print beside its gate (bench.analysis.calibration.gate_calibration_text)."""
    lines = []
    kinds = sorted({r.machine for r in reports})
    for r in sorted(reports, key=lambda r: kinds.index(r.machine)) if len(kinds) > 1 else reports:
        unit = "samples/s" if r.metric == "throughput" else "loss" if r.metric in ABSOLUTE else "ms"
        latest = f"{r.values[-1]:,.4g} {unit}" if r.values else "-"
        # an accuracy series names its figure: "latest accuracy loss 0.03125"
        lines.append(f"{r.cell_key} on {node_kind(r.machine)}: {r.note}; latest {r.metric} "
                     + (f"loss {r.values[-1]:.4g}" if r.metric in ABSOLUTE and r.values else latest))
        if r.metric in ABSOLUTE and r.values:
            lines.append("  losses, oldest first: " + ", ".join(f"{v:.4g}" for v in r.values[-12:])
                         + (f" (the last 12 of {len(r.values)})" if len(r.values) > 12 else ""))
        for c in r.changes:
            # a loss that fell, or a throughput that rose, is an improvement
            better = (c.step < 0) if r.metric in ABSOLUTE else (c.step > 0) == (r.metric == "throughput")
            kind = "REGRESSION" if c.regression else ("change" if abs(c.step) < threshold else "improvement"
                                                      if better else "change")
            lines.append(f"  {kind} at run {c.index + 1}/{len(r.values)} {c.run_id} ({c.created_at}, "
                         f"commit {(c.commit_sha or 'unknown')[:12]}): {c.before:,.4g} -> {c.after:,.4g} {unit} "
                         f"({fmt_step(r.metric, c.step)})")
        if r.latest_starts_regression:
            lines.append(f"  the latest run starts a regression: {fmt_step(r.metric, r.latest_step)} against the runs "
                         f"before it, p = {r.p_value:.2g}")
    for kind in kinds:
        where = f" on {node_kind(kind)}" if len(kinds) > 1 else ""
        lines.append(gate_summary(reports, kind, threshold, alpha, where, (calibration or {}).get(kind, "")))
    return "\n".join(lines)

