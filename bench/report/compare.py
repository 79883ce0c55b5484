"""Terminal table of a comparison (reads a Comparison, runs nothing)."""
from __future__ import annotations

from rich.table import Table

from bench.results.compare import Comparison, Ratio

_STYLE = {"slower": "bold red", "faster": "green", "unchanged": "", "not comparable": "yellow"}


def _ratio(r: Ratio | None) -> str:
    return "-" if r is None else f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"


def comparison_table(cmp: Comparison) -> Table:
    table = Table(title=f"compare {cmp.base_run} -> {cmp.new_run} · threshold ±{cmp.threshold:.0%} · "
                        f"alpha {cmp.alpha:g} · ratios NEW/BASE with 95% intervals")
    for col in ("cell", "verdict", "throughput", "p50", "p99", "why"):
        table.add_column(col)
    for c in cmp.cells:
        table.add_row(c.key, f"[{_STYLE[c.verdict]}]{c.verdict}[/]" if _STYLE[c.verdict] else c.verdict,
                      _ratio(c.throughput), _ratio(c.p50), _ratio(c.p99), c.reason)
    return table
