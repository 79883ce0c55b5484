"""Row models rendered to Markdown, and the summaries CI job pages show (reads results only)."""
from __future__ import annotations

from bench.analysis.compare import Comparison
from bench.analysis.verdict import RunVerdict
from bench.report.compare_table import comparison_table, environment_lines
from bench.report.model import Table, Text
from bench.report.run_tables import DetailRows, details_table, gpu_table, summary_table, sweeps_table, targets_table
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


def run_summary(run: Run, detail_rows: DetailRows = lambda c: ()) -> str:
    v = RunVerdict.of(run)
    lines = [f"## bench run `{run.run_id}` — suite `{run.suite.name}` ({run.status})", "",
             f"**{'pass' if v.passed else 'FAIL'}**: {len(run.cells)} cells, {len(v.failed)} failed, "
             f"{len(v.slo_failed)} SLO failures, {len(v.disagreeing)} disagree with their reference, "
             f"{len(v.invalid)} invalid server runs.", ""]
    sweeps = sweeps_table(run)
    tables = [summary_table(run), targets_table(run), gpu_table(run), details_table(run, detail_rows),
              sweeps if sweeps.rows else None]
    return "\n".join(lines) + "\n".join(render(t) for t in tables if t is not None)


def compare_summary(cmp: Comparison) -> str:
    lines = [f"## bench compare `{cmp.base_run}` → `{cmp.new_run}`", "",
             f"threshold ±{cmp.threshold:.0%}, alpha {cmp.alpha:g}; {len(cmp.slower)} slower of {len(cmp.cells)} cells.", ""]
    env = environment_lines(cmp)
    if env:
        lines += ["Environment differences: " + "; ".join(env), ""]
    if cmp.common_shift:
        lines += [f"**Warning:** {cmp.common_shift}.", ""]
    return "\n".join(lines) + render(comparison_table(cmp))
