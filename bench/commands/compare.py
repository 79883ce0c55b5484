"""`bench compare BASE NEW`: per-cell verdicts; exit 1 when a cell got slower or less accurate (or,
with --fail-on-inconclusive, when a cell could not tell)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.commands.output import check_html_path, err, html_renderer, percent, write_html, write_md
from bench.errors import EXIT_NO, EXIT_OK, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="per-cell verdicts of NEW against BASE (speed, and accuracy where both runs "
                       "measured it); exit 1 on a regression of either")
    p.add_argument("base", help="BASE run directory or run.json")
    p.add_argument("new", help="NEW run directory or run.json")
    p.add_argument("--threshold", type=float, default=5.0, metavar="PCT", help="minimum effect size in percent, and "
                   "the band 'unchanged' must lie in (default 5)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the test (default 0.05)")
    p.add_argument("--allow-env-diff", action="store_true", help="compare cells even when environments differ")
    p.add_argument("--fail-on-inconclusive", action="store_true",
                   help="exit 1 when a cell is inconclusive (its interval too wide to tell a change of the threshold's "
                        "size from none) or no cell could be compared, as on a regression")
    p.add_argument("--calibration", metavar="PATH",
                   help="the calibration records to print beside the verdict: a directory (default "
                        "results/calibration, written by bench self-check --checks reproducibility) or one record")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--md", metavar="FILE", help="write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY when set)")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report: per-cell ratios with intervals and verdicts")


def run(args: argparse.Namespace) -> int:
    from bench.analysis.calibration import calibration_lines_for_runs
    from bench.analysis.compare import compare_runs
    from bench.results.files import read_run
    from bench.codec import to_json
    from bench.report import markdown, terminal
    from bench.report.compare_table import (comparison_table, environment_lines, inconclusive_lines,
                                            less_accurate_lines, outcome_line, run_differences_line)
    from bench.scenarios.registry import compare_policy

    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha:g}: expected a number between 0 and 1")
    html = None
    if args.html:
        check_html_path(args.html)
        html = html_renderer()
    cmp = compare_runs(Path(args.base), Path(args.new), compare_policy, percent(args.threshold), args.alpha,
                       args.allow_env_diff)
    # What this machine kind's A/A and planted runs measured of these verdicts, or why nothing is
    # known: a verdict's false-alarm rate is measured, not assumed (a corrupt record: one line, exit 2).
    calibration = calibration_lines_for_runs((read_run(Path(args.base)), read_run(Path(args.new))),
                                             args.calibration, alpha=args.alpha, threshold=percent(args.threshold))
    if args.json:
        print(json.dumps({**to_json(cmp), "outcome": cmp.outcome, "calibration": calibration}, indent=1))
    else:
        out = terminal.console()
        # The answer and how the runs differ come before the table: a reader of a long table (or
        # of a CI log's last screen) should not have to find them under it.
        # One line each however long (soft_wrap): a log reader greps them, a terminal wraps them.
        if line := run_differences_line(cmp):
            out.print(terminal.markup(line), soft_wrap=True)
        out.print(terminal.markup(outcome_line(cmp)), soft_wrap=True)
        for line in less_accurate_lines(cmp):
            out.print(terminal.markup(f"  less accurate: {line}"), soft_wrap=True)
        for line in inconclusive_lines(cmp):
            out.print(terminal.markup(f"  inconclusive: {line}"), soft_wrap=True)
        for line in calibration:
            out.print(terminal.markup(f"  {line}"), soft_wrap=True)
        out.print(terminal.render(comparison_table(cmp)))
        for line in environment_lines(cmp):
            print(f"environment: {line}")
        if cmp.common_shift:
            print(f"warning: {cmp.common_shift}")
    if html is not None:
        write_html(html.compare_document(cmp), args.html)
        print(f"HTML report: {args.html}", file=sys.stderr if args.json else sys.stdout)
    write_md(markdown.compare_summary(cmp, args.html), args.md, step_summary=True)
    if cmp.slower:
        err(f"{len(cmp.slower)} cell(s) slower: " + ", ".join(c.key for c in cmp.slower))
    if cmp.less_accurate:  # an accuracy regression is a regression, as a slower figure is
        err(f"{len(cmp.less_accurate)} cell(s) less accurate: " + ", ".join(c.key for c in cmp.less_accurate))
    if cmp.regressed:
        return EXIT_NO
    if args.fail_on_inconclusive and cmp.outcome == "inconclusive":
        unsure = list(dict.fromkeys(c.key for c in (*cmp.inconclusive, *cmp.accuracy_inconclusive)))
        what = (f"{len(unsure)} cell(s) inconclusive: " + ", ".join(unsure) if unsure else "no cell could be compared")
        err(f"{what} (--fail-on-inconclusive)")
        return EXIT_NO
    return EXIT_OK
