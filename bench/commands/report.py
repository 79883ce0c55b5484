"""`bench report RUN...`: tables, targets ranked with the Pareto front, sweeps, scenario details."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.output import write_md
from bench.errors import EXIT_OK, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="human reports from result files")
    p.add_argument("runs", nargs="+", help="run directories or run.json files")
    p.add_argument("--md", metavar="FILE", help="write a Markdown report")
    p.add_argument("--budget-ms", type=float, metavar="MS",
                   help="latency budget (p99) for the best batch size / concurrency (default: the SLO's p99)")


def run(args: argparse.Namespace) -> int:
    from bench.report import markdown, terminal
    from bench.report.run_tables import details_table, gpu_table, summary_table, sweeps_table, targets_table
    from bench.results.files import read_run
    from bench.scenarios.registry import detail_rows

    if args.budget_ms is not None and not args.budget_ms > 0:
        raise UsageError(f"--budget-ms {args.budget_ms:g}: expected a number of ms > 0")
    runs = [read_run(Path(r)) for r in args.runs]  # read all first: a bad file prints nothing
    out = terminal.console()
    for run_ in runs:
        for table in (summary_table(run_), gpu_table(run_), targets_table(run_), sweeps_table(run_, args.budget_ms),
                      details_table(run_, detail_rows)):
            if table is not None:
                out.print(terminal.render(table))
    if args.md:
        write_md("\n".join(markdown.run_summary(r, detail_rows) for r in runs), args.md, step_summary=False)
    return EXIT_OK
