"""`bench report RUN...`: tables, targets ranked with the Pareto front, sweeps, scenario details;
with --html, one self-contained HTML file with the charts (several runs of one suite: each later
run compared with the first); with --csv, one flat row per cell of every run, for spreadsheets."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.output import check_html_path, check_out_path, html_renderer, write_csv, write_html, write_md
from bench.errors import EXIT_OK, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="human reports from result files")
    p.add_argument("runs", nargs="+", help="run directories or run.json files")
    p.add_argument("--md", metavar="FILE", help="write a Markdown report")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report with charts (two or more runs "
                   "of one suite: each later run compared with the first)")
    p.add_argument("--csv", metavar="FILE", help="write one row per cell (figures, interval bounds, status, dims, "
                   "target, one-off costs; a run_id column when several runs are given) for spreadsheets")
    p.add_argument("--budget-ms", type=float, metavar="MS",
                   help="latency budget (p99) for the best batch size / concurrency (default: the SLO's p99)")


def run(args: argparse.Namespace) -> int:
    from bench.report import markdown, terminal
    from bench.report.one_off import one_off_table
    from bench.report.serving_table import serving_table
    from bench.report.run_tables import (details_table, generation_table, gpu_table, summary_table, sweeps_table,
                                         targets_table)
    from bench.report.tradeoff_table import tradeoff_table
    from bench.results.files import read_run
    from bench.scenarios.registry import detail_rows

    if args.budget_ms is not None and not args.budget_ms > 0:
        raise UsageError(f"--budget-ms {args.budget_ms:g}: expected a number of ms > 0")
    html = None
    if args.html:
        check_html_path(args.html)  # before any work: a path that cannot be written is one line, not a lost report
        html = html_renderer()
    if args.csv:
        check_out_path("--csv", args.csv, "cells.csv")
    runs = [read_run(Path(r)) for r in args.runs]  # read all first: a bad file prints nothing
    comparisons = []
    if html is not None and len(runs) > 1:
        suites = sorted({r.suite.name for r in runs})
        if len(suites) > 1:
            raise UsageError("report --html: the runs are of different suites (" + ", ".join(
                f"{p}: {r.suite.name!r}" for p, r in zip(args.runs, runs)) + "); a report of several runs compares "
                "them, so give runs of one suite (or one report per suite)")
        from bench.analysis.compare import compare_runs
        from bench.scenarios.registry import compare_policy

        comparisons = [compare_runs(Path(args.runs[0]), Path(p), compare_policy) for p in args.runs[1:]]
    out = terminal.console()
    for run_ in runs:
        for table in (summary_table(run_), tradeoff_table(run_), generation_table(run_), serving_table(run_),
                      one_off_table(run_), gpu_table(run_), targets_table(run_), sweeps_table(run_, args.budget_ms),
                      details_table(run_, detail_rows)):
            if table is not None:
                out.print(terminal.render(table))
    if html is not None:
        write_html(html.run_document(runs, detail_rows, comparisons), args.html)
        print(f"HTML report: {args.html}")
    if args.csv:
        from bench.report import csv_rows

        rows = csv_rows.rows(runs)
        write_csv(csv_rows.columns_for(runs), rows, args.csv)
        print(f"CSV: {args.csv} ({len(rows)} cells)")
    if args.md:
        write_md("\n".join(markdown.run_summary(r, detail_rows, args.html) for r in runs), args.md, step_summary=False)
    return EXIT_OK
