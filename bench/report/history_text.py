"""Text of `bench history`: each series, its change points, and the gate (reads reports only)."""
from __future__ import annotations

from bench.analysis.history import SeriesReport


def history_text(reports: list[SeriesReport], threshold: float, alpha: float = 0.05) -> str:
    lines = []
    for r in reports:
        unit = "samples/s" if r.metric == "throughput" else "ms"
        latest = f"{r.values[-1]:,.4g} {unit}" if r.values else "-"
        lines.append(f"{r.cell_key} on {r.machine.split('|')[0]}: {r.note}; latest {r.metric} {latest}")
        for c in r.changes:
            kind = "REGRESSION" if c.regression else ("change" if abs(c.step) < threshold else "improvement"
                                                      if (c.step > 0) == (r.metric == "throughput") else "change")
            lines.append(f"  {kind} at run {c.index + 1}/{len(r.values)} {c.run_id} ({c.created_at}, "
                         f"commit {(c.commit_sha or 'unknown')[:12]}): {c.before:,.4g} -> {c.after:,.4g} {unit} "
                         f"({c.step:+.1%})")
        if r.latest_starts_regression:
            lines.append(f"  the latest run starts a regression: {r.latest_step:+.1%} against the runs before it, "
                         f"p = {r.p_value:.2g}")
    tested = sum(r.p_value is not None for r in reports)
    lines.append(f"gate: the latest run of {tested} series tested against the runs before it, Benjamini-Hochberg "
                 f"at {alpha:g} over all of them: a night with no change raises a false alarm with probability "
                 f"at most {alpha:.0%}, however many series; an alarm also needs a step of {threshold:.0%} or more")
    return "\n".join(lines)
