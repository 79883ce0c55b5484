"""The table of a comparison, as a row model (reads a Comparison, runs nothing)."""
from __future__ import annotations

from bench.analysis.compare import Comparison, Ratio
from bench.report.model import Column, Table, Text, fmt_ratio

_STYLE = {"slower": "bad", "faster": "good", "unchanged": "", "not comparable": "warn"}


def _ratio(r: Ratio | None) -> str:
    return "-" if r is None else fmt_ratio(r.value, r.ci_low, r.ci_high)


def comparison_table(cmp: Comparison) -> Table:
    rows = tuple((c.key, Text(c.verdict, _STYLE[c.verdict]), _ratio(c.throughput), _ratio(c.p50), _ratio(c.p99),
                  "-" if c.detectable is None else f"±{c.detectable:.0%}", c.reason) for c in cmp.cells)
    return Table(f"compare {cmp.base_run} -> {cmp.new_run} · threshold ±{cmp.threshold:.0%} · alpha {cmp.alpha:g} · "
                 "ratios NEW/BASE with 95% intervals · detectable = smallest change the cell's noise lets it find "
                 "(80% power)",
                 (Column("cell", code=True), Column("verdict"), Column("throughput", numeric=True),
                  Column("p50", numeric=True), Column("p99", numeric=True), Column("detectable", numeric=True),
                  Column("why")), rows)


def environment_lines(cmp: Comparison) -> list[str]:
    return [f"{d.field}: {d.base} -> {d.new}{' (matters)' if d.matters else ''}" for d in cmp.env_differences]
