"""Row models rendered to Markdown, and the summaries CI job pages show (reads results only)."""
from __future__ import annotations

from bench.analysis.compare import Comparison
from bench.analysis.verdict import RunVerdict
from bench.report.compare_table import (comparison_table, count_parts, environment_lines, inconclusive_text,
                                        outcome_meaning, outcome_word, run_differences_line)
from bench.report.model import Table, Text
from bench.report.one_off import one_off_table
from bench.report.serving_table import serving_table
from bench.report.run_tables import (DetailRows, details_table, generation_table, gpu_table, summary_table,
                                     sweeps_table, targets_table)
from bench.report.tradeoff_table import tradeoff_table
from bench.results.records import Run


def _escape(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def render(table: Table, level: int = 3) -> str:
    """A heading, the table, and its caption (a table without rows gives its heading and "none")."""
    lines = [f"{'#' * level} {_escape(table.title)}", ""]
    if table.rows:
        lines += ["| " + " | ".join(_escape(c.name) for c in table.columns) + " |",
                  "|" + "".join("---:|" if c.numeric else "---|" for c in table.columns)]
        for row in table.rows:
            cells = []
            for col, value in zip(table.columns, row):
                text = _escape(value.text if isinstance(value, Text) else value)
                if col.code and text:
                    text = f"`{text}`"
                if isinstance(value, Text) and value.style in ("bad", "good") and text:
                    text = f"**{text}**"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
    else:
        lines.append("none")
    if table.caption:
        lines += ["", f"_{_escape(table.caption)}_"]
    return "\n".join(lines) + "\n"


_MAX_LISTED = 20  # a summary stays short: past this many cells, a count


def _bullets(items: list[str]) -> list[str]:
    lines = [f"- {_escape(i)}" for i in items[:_MAX_LISTED]]
    if len(items) > _MAX_LISTED:
        lines.append(f"- … and {len(items) - _MAX_LISTED} more")
    return lines + ([""] if lines else [])


def _html_line(html_path: str | None) -> list[str]:
    return [f"HTML report with charts: `{_escape(html_path)}` (one self-contained file; open it in a browser)", ""] \
        if html_path else []


def run_summary(run: Run, detail_rows: DetailRows = lambda c: (), html_path: str | None = None) -> str:
    """Short on purpose (a CI job page): the verdicts first, the HTML report named, the summary
    table and, where the run measured accuracy, the speed-against-accuracy table; the other tables
    folded away. A pass over unstable or interfered cells is "pass with
    caveats", saying how many and what it does to the answer."""
    v = RunVerdict.of(run)
    mark = "⚠️ " if v.headline == "caution" else ""
    lines = [f"## bench run `{run.run_id}` — suite `{run.suite.name}` ({run.status})", "",
             f"{mark}**{v.word}**: {len(run.cells)} cells, {len(v.failed)} failed, "
             f"{len(v.slo_failed)} SLO failures, {len(v.disagreeing)} disagree with their reference, "
             f"{len(v.invalid)} invalid server runs.", ""]
    if v.shaky:
        lines += [f"**Read with care:** {_escape(v.caveat())}.", ""]
    lines += _bullets([f"`{c.id}` failed: {c.reason}" for c in v.failed]
                      + [f"`{c.id}` outputs disagree with the reference" for c in v.disagreeing]
                      + [f"`{c.id}` SLO failed" for c in v.slo_failed]
                      + [f"`{c.id}` server run invalid" for c in v.invalid])
    lines += _html_line(html_path)
    sweeps = sweeps_table(run)
    more = [generation_table(run), serving_table(run), one_off_table(run), targets_table(run), gpu_table(run), details_table(run, detail_rows),
            sweeps if sweeps.rows else None]
    folded = "\n".join(render(t) for t in more if t is not None)
    # The speed-accuracy trade stays open under the summary: it is the deployment choice at a glance.
    trade = tradeoff_table(run)
    return ("\n".join(lines) + render(summary_table(run)) + ("\n" + render(trade) if trade is not None else "")
            + "\n<details><summary>generation, serving overhead, one-off costs, targets ranked, GPU, scenario details, sweeps</summary>"
              f"\n\n{folded}\n</details>\n")


def compare_summary(cmp: Comparison, html_path: str | None = None) -> str:
    """The answer first (slower, less accurate, inconclusive or pass, with the counts), how the runs
    differ, the slower and the less accurate cells, then the inconclusive ones with what each could
    have detected, then the table."""
    parts = count_parts(cmp)
    lines = [f"## bench compare `{cmp.base_run}` → `{cmp.new_run}`", ""]
    if cmp.run_differences:
        lines += [_escape(run_differences_line(cmp)), ""]
    lines += [f"**{outcome_word(cmp)}**: {_escape(outcome_meaning(cmp))}. **{parts[0]}** · {' · '.join(parts[1:])} "
              f"(threshold ±{cmp.threshold:.0%}, alpha {cmp.alpha:g}).", ""]
    lines += _bullets([f"`{c.key}` slower: {c.reason}" for c in cmp.slower])
    lines += _bullets([f"`{c.key}` less accurate: {c.accuracy.reason}" for c in cmp.less_accurate])
    lines += _bullets([f"`{c.key}` inconclusive: {inconclusive_text(c)}" for c in cmp.inconclusive]
                      + [f"`{c.key}` accuracy inconclusive: {c.accuracy.reason}" for c in cmp.accuracy_inconclusive])
    env = environment_lines(cmp)
    if env:
        lines += ["Environment differences: " + "; ".join(env), ""]
    if cmp.common_shift:
        lines += [f"**Warning:** {cmp.common_shift}.", ""]
    lines += _html_line(html_path)
    return "\n".join(lines) + render(comparison_table(cmp))
