"""A comparison as row models and headline lines (reads a Comparison, runs nothing): what every
renderer (terminal, Markdown, HTML) shows before, in and under its table."""
from __future__ import annotations

from bench.analysis.compare import CellComparison, Comparison, Ratio
from bench.report.model import Column, Table, Text, fmt_ratio

_STYLE = {"slower": "bad", "faster": "good", "unchanged": "", "inconclusive": "warn", "not comparable": "warn"}
# The table lists what needs a reader first: regressions, then the cells that could not tell.
_ORDER = {"slower": 0, "inconclusive": 1, "faster": 2, "unchanged": 3, "not comparable": 4}
OUTCOME_STYLE = {"slower": "bad", "inconclusive": "warn", "pass": "good"}
MAX_LISTED = 20  # inconclusive cells named before the table; past this, a count


def _ratio(r: Ratio | None) -> str:
    return "-" if r is None else fmt_ratio(r.value, r.ci_low, r.ci_high)


def _shown(cmp: Comparison) -> list[CellComparison]:
    """The table's cells: those skipped in both runs folded away (skipped_line), the rest worst first."""
    return sorted((c for c in cmp.cells if not c.skipped), key=lambda c: _ORDER[c.verdict])


def comparison_table(cmp: Comparison) -> Table:
    rows = tuple((c.key, Text(c.verdict, _STYLE[c.verdict]), _ratio(c.throughput), _ratio(c.p50), _ratio(c.p99),
                  "-" if c.detectable is None else f"±{c.detectable:.0%}", c.reason) for c in _shown(cmp))
    return Table(f"compare {cmp.base_run} -> {cmp.new_run} · threshold ±{cmp.threshold:.0%} · alpha {cmp.alpha:g} · "
                 "ratios NEW/BASE with 95% intervals · slower/faster: significant after Holm's correction and past "
                 f"the threshold; unchanged: the 90% interval inside ±{cmp.threshold:.0%}; inconclusive: neither · "
                 "detectable = smallest change the cell's noise lets it find (80% power)",
                 (Column("cell", code=True), Column("verdict"), Column("throughput", numeric=True),
                  Column("p50", numeric=True), Column("p99", numeric=True), Column("detectable", numeric=True),
                  Column("why")), rows, caption=skipped_line(cmp))


def environment_lines(cmp: Comparison) -> list[str]:
    return [f"{d.field}: {d.base} -> {d.new}{' (matters)' if d.matters else ''}" for d in cmp.env_differences]


def run_differences_line(cmp: Comparison) -> str:
    """How the two runs were made differently, in one line ("" when alike)."""
    return ("runs differ: " + "; ".join(cmp.run_differences)) if cmp.run_differences else ""


def skipped_line(cmp: Comparison) -> str:
    """The cells skipped in both runs (a GPU-less machine's GPU cells), as one line: how many,
    their targets, and why ("" when none)."""
    skipped = [c for c in cmp.cells if c.skipped]
    if not skipped:
        return ""
    targets = sorted({parts[2] if len(parts := c.key.split("|")) >= 5 else c.key for c in skipped})
    reasons = sorted({" ".join(c.skipped.split()) for c in skipped})
    return (f"{len(skipped)} cell{'s' if len(skipped) > 1 else ''} skipped in both runs (target"
            f"{'s' if len(targets) > 1 else ''} {', '.join(targets)}): " + "; ".join(reasons))


def count_parts(cmp: Comparison) -> list[str]:
    """"2 slower", "3 inconclusive", ...: the cells of each answer (skipped-in-both counted apart)."""
    n = {v: sum(c.verdict == v for c in cmp.cells if not c.skipped) for v in _ORDER}
    skipped = sum(bool(c.skipped) for c in cmp.cells)
    return ([f"{n['slower']} slower", f"{n['inconclusive']} inconclusive", f"{n['faster']} faster",
             f"{n['unchanged']} unchanged within ±{cmp.threshold:.0%}", f"{n['not comparable']} not comparable"]
            + ([f"{skipped} skipped in both runs"] if skipped else []))


def outcome_word(cmp: Comparison) -> str:
    return {"slower": "SLOWER", "inconclusive": "INCONCLUSIVE", "pass": "pass"}[cmp.outcome]


def outcome_meaning(cmp: Comparison) -> str:
    """What the comparison's answer means, and the exit code it gives."""
    outcome = cmp.outcome
    if outcome == "slower":
        return f"{len(cmp.slower)} cell(s) slower by more than ±{cmp.threshold:.0%} (exit 1)"
    if outcome == "inconclusive" and not cmp.inconclusive:
        return "no cell could be compared (exit 0; --fail-on-inconclusive exits 1)"
    if outcome == "inconclusive":
        return (f"{len(cmp.inconclusive)} cell(s) could not tell a ±{cmp.threshold:.0%} change from none: no "
                "regression found, none ruled out (exit 0; --fail-on-inconclusive exits 1)")
    return f"every compared cell unchanged within ±{cmp.threshold:.0%} or faster"


def outcome_line(cmp: Comparison) -> Text:
    """The comparison's answer first: its word, what it means for the exit code, the counts."""
    return Text(f"{outcome_word(cmp)}: {outcome_meaning(cmp)} · {' · '.join(count_parts(cmp))}",
                OUTCOME_STYLE[cmp.outcome])


def inconclusive_text(c: CellComparison) -> str:
    """Why a cell is inconclusive: each figure that could not tell, its ratio and interval, and
    the change it could have detected (or why it has no test)."""
    figures = [f for f in c.figures if f.answer == "inconclusive"]
    if not figures:
        return c.reason
    return "; ".join(f"{f.label} x{f.ratio.value:.3f} [{f.ratio.ci_low:.3f}, {f.ratio.ci_high:.3f}]"
                     + (f", detectable ±{f.detectable:.0%}" if f.detectable is not None else f" ({f.note})" if f.note else "")
                     for f in figures)


def inconclusive_lines(cmp: Comparison) -> list[str]:
    """Each inconclusive cell with what could not tell (inconclusive_text); at most MAX_LISTED,
    then a count."""
    lines = [f"{c.key}: {inconclusive_text(c)}" for c in cmp.inconclusive[:MAX_LISTED]]
    if len(cmp.inconclusive) > MAX_LISTED:
        lines.append(f"... and {len(cmp.inconclusive) - MAX_LISTED} more (the table lists them all)")
    return lines
