"""A comparison as row models and headline lines (reads a Comparison, runs nothing): what every
renderer (terminal, Markdown, HTML) shows before, in and under its table."""
from __future__ import annotations

from bench.analysis.compare import AccuracyChange, CellComparison, Comparison, Ratio
from bench.report import accuracy_text
from bench.report.model import Column, Table, Text, fmt_ratio

_STYLE = {"slower": "bad", "faster": "good", "unchanged": "", "inconclusive": "warn", "not comparable": "warn"}
# The table lists what needs a reader first: regressions, then the cells that could not tell.
_ORDER = {"slower": 0, "inconclusive": 1, "faster": 2, "unchanged": 3, "not comparable": 4}
OUTCOME_STYLE = {"slower": "bad", "less accurate": "bad", "inconclusive": "warn", "pass": "good"}
_ACCURACY_STYLE = {"worse": "bad", "better": "good", "unchanged": "", "inconclusive": "warn"}
_ACCURACY_ORDER = {"worse": 0, "inconclusive": 1}
MAX_LISTED = 20  # inconclusive cells named before the table; past this, a count


def _ratio(r: Ratio | None) -> str:
    return "-" if r is None else fmt_ratio(r.value, r.ci_low, r.ci_high)


def _rank(c: CellComparison) -> int:
    """Worst first: a regression of speed or of accuracy, then what could not tell, then the rest."""
    accuracy = _ACCURACY_ORDER.get(c.accuracy.answer, 9) if c.accuracy is not None else 9
    return min(_ORDER[c.verdict], accuracy)


def _shown(cmp: Comparison) -> list[CellComparison]:
    """The table's cells: those skipped in both runs folded away (skipped_line), the rest worst first."""
    return sorted((c for c in cmp.cells if not c.skipped), key=_rank)


def accuracy_change_text(a: AccuracyChange) -> str:
    """"top-1 loss 3.1% -> 9.4% worse": both losses as the reports write them, and the answer."""
    words = accuracy_text.SHORT.get(a.metric, a.metric)
    return (f"{words} loss {accuracy_text.loss(a.metric, a.base_loss)} -> {accuracy_text.loss(a.metric, a.new_loss)} "
            f"{a.answer}")


def _accuracy_cell(c: CellComparison) -> str | Text:
    if c.accuracy is None:
        return "-"
    return Text(accuracy_change_text(c.accuracy), _ACCURACY_STYLE[c.accuracy.answer])


def _verdict_cell(c: CellComparison) -> Text:
    """The speed verdict, and "less accurate" beside it (red) where the cell's accuracy got worse:
    a reader scanning the verdict column sees every regression."""
    if c.less_accurate:
        return Text(f"{c.verdict}, less accurate", "bad")
    return Text(c.verdict, _STYLE[c.verdict])


def comparison_table(cmp: Comparison) -> Table:
    # An accuracy column only where a cell carries accuracy figures on both sides (schema 14 runs
    # that measured accuracy samples): a speed-only comparison keeps its width.
    accuracy = bool(cmp.accuracy_compared)
    rows = tuple((c.key, _verdict_cell(c), _ratio(c.throughput), _ratio(c.p50), _ratio(c.p99),
                  "-" if c.detectable is None else f"±{c.detectable:.0%}",
                  *((_accuracy_cell(c),) if accuracy else ()),
                  c.reason + (f"; {c.accuracy.reason}" if c.accuracy is not None and c.accuracy.answer != "unchanged"
                              else "")) for c in _shown(cmp))
    title = (f"compare {cmp.base_run} -> {cmp.new_run} · threshold ±{cmp.threshold:.0%} · alpha {cmp.alpha:g} · "
             "ratios NEW/BASE with 95% intervals · slower/faster: significant after Holm's correction and past "
             f"the threshold; unchanged: the 90% interval inside ±{cmp.threshold:.0%}; inconclusive: neither · "
             "detectable = smallest change the cell's noise lets it find (80% power)")
    if accuracy:
        title += (" · accuracy loss BASE -> NEW: worse/better when the intervals do not overlap or agreement now "
                  f"fails/passes; unchanged within {cmp.threshold:.0%} of the tolerance; inconclusive: overlapping")
    return Table(title, (Column("cell", code=True), Column("verdict"), Column("throughput", numeric=True),
                         Column("p50", numeric=True), Column("p99", numeric=True), Column("detectable", numeric=True),
                         *((Column("accuracy"),) if accuracy else ()), Column("why")), rows, caption=skipped_line(cmp))


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
    parts = ([f"{n['slower']} slower", f"{n['inconclusive']} inconclusive", f"{n['faster']} faster",
              f"{n['unchanged']} unchanged within ±{cmp.threshold:.0%}", f"{n['not comparable']} not comparable"]
             + ([f"{skipped} skipped in both runs"] if skipped else []))
    if cmp.accuracy_compared:
        counts = {a: sum(c.accuracy.answer == a for c in cmp.accuracy_compared)
                  for a in ("worse", "inconclusive", "better", "unchanged")}
        parts.append("accuracy: " + ", ".join(f"{k} {a}" for a, k in counts.items()))
    return parts


def outcome_word(cmp: Comparison) -> str:
    return {"slower": "SLOWER", "less accurate": "LESS ACCURATE", "inconclusive": "INCONCLUSIVE",
            "pass": "pass"}[cmp.outcome]


def outcome_meaning(cmp: Comparison) -> str:
    """What the comparison's answer means, and the exit code it gives."""
    outcome = cmp.outcome
    worse = (f"{len(cmp.less_accurate)} cell(s) less accurate (accuracy loss up beyond its interval, or outputs "
             "that now fail agreement)") if cmp.less_accurate else ""
    if outcome == "slower":
        return (f"{len(cmp.slower)} cell(s) slower by more than ±{cmp.threshold:.0%}" + (f", {worse}" if worse else "")
                + " (exit 1)")
    if outcome == "less accurate":
        return f"{worse} (exit 1)"
    unsure = len({c.key for c in (*cmp.inconclusive, *cmp.accuracy_inconclusive)})
    if outcome == "inconclusive" and not unsure:
        return "no cell could be compared (exit 0; --fail-on-inconclusive exits 1)"
    if outcome == "inconclusive":
        what = (f"a ±{cmp.threshold:.0%} change" if not cmp.accuracy_inconclusive else
                f"a ±{cmp.threshold:.0%} change or an accuracy change" if cmp.inconclusive else "an accuracy change")
        return (f"{unsure} cell(s) could not tell {what} from none: no regression found, none ruled out (exit 0; "
                "--fail-on-inconclusive exits 1)")
    return f"every compared cell unchanged within ±{cmp.threshold:.0%} or faster" + (
        ", its accuracy unchanged or better" if cmp.accuracy_compared else "")


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
    lines += [f"{c.key}: {c.accuracy.reason}" for c in cmp.accuracy_inconclusive[:max(0, MAX_LISTED - len(lines))]]
    shown = len(cmp.inconclusive) + len(cmp.accuracy_inconclusive)
    if shown > MAX_LISTED:
        lines.append(f"... and {shown - MAX_LISTED} more (the table lists them all)")
    return lines


def less_accurate_lines(cmp: Comparison) -> list[str]:
    """Each cell whose accuracy got worse, with both losses and why (at most MAX_LISTED, then a count)."""
    lines = [f"{c.key}: {c.accuracy.reason}" for c in cmp.less_accurate[:MAX_LISTED]]
    if len(cmp.less_accurate) > MAX_LISTED:
        lines.append(f"... and {len(cmp.less_accurate) - MAX_LISTED} more (the table lists them all)")
    return lines
