"""`bench run`: run a suite, print its tables, write run.json; the exit code is the run's answer."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.commands.output import check_html_path, err, html_renderer, write_html, write_md
from bench.errors import EXIT_CELL_FAILED, EXIT_INTERRUPTED, EXIT_NO, EXIT_OK, BenchError, worst
from bench.results.stores import DEFAULT_DB


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a suite (default ./benchmarks.toml), or a model given on the command line")
    p.add_argument("suite", nargs="?", default="benchmarks.toml", metavar="SUITE|MODEL",
                   help="a suite file (TOML), or a model: path/to/model.onnx, zoo:NAME, hf:TYPE, module:function, "
                        "path/to/program.pt2; relative paths and factory modules resolve against the suite file's "
                        "directory (a model's: the current directory)")
    model = p.add_argument_group("a model on the command line (a suite built for this machine)")
    model.add_argument("--target", metavar="T[,T...]", help="targets (default: this machine's: torch-cpu and ort-cpu, "
                       "or the GPU's); allowed: ort-cpu, torch-cpu, ort-cuda, ort-cuda-fp16, torch-cuda, "
                       "torch-cuda-fp16, torch-cuda-graph, torch-cuda-compile")
    model.add_argument("--batch", metavar="N[,N...]", help="batch sizes (default: 1,8)")
    model.add_argument("--scenario", metavar="S[,S...]", help="scenarios (default: single-stream,offline)")
    model.add_argument("--shape", metavar="NAME=N[,N...]", action="append",
                       help="size of a named dynamic dimension; several sizes sweep it (e.g. seq=64,128); repeatable")
    model.add_argument("--inputs", metavar="FILE", help="the model's inputs from a .npz (an array per input, samples "
                       "along the first axis) or a directory of .npy files")
    model.add_argument("--trust-model", action="store_true", help="allow a .pt2 program (loading it may unpickle)")
    model.add_argument("--print-suite", action="store_true", help="print the suite built for the model and exit "
                       "(keep it: bench run MODEL --print-suite > mine.toml)")
    p.add_argument("--only", metavar="GLOB", help="run cells whose id (BENCH/TARGET/bN/SCENARIO) or benchmark matches")
    p.add_argument("--out", metavar="DIR", default="results", help="results root (default: results)")
    p.add_argument("--quick", action="store_true", help="smoke run: a tenth of the stop times, at most 1 s a cell")
    p.add_argument("--json", action="store_true", help="print run.json to stdout instead of the table")
    p.add_argument("--md", metavar="FILE", help="write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY when set)")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report with charts (as bench report --html)")
    p.add_argument("--fail-on-unstable", action="store_true",
                   help="exit 1 when a measured cell is unstable (a figure varies over 10%% between worker processes) or "
                        "was measured under interference, as when the answer is no (default: exit 0, the headline "
                        "amber)")
    p.add_argument("--record", action="store_true", help="record the run in the history store")
    p.add_argument("--db", metavar="URL", help="history store: postgresql://..., sqlite:///PATH or a file "
                   f"(default {DEFAULT_DB})")
    p.add_argument("--executor", default="local", metavar="NAME",
                   help="what runs the work units: local (worker processes on this machine, one at a time; default) "
                        "or ray (a Ray cluster: see docs/fleet.md)")
    p.add_argument("--address", metavar="HOST:PORT", help="--executor ray: the Ray head's address (default: $RAY_ADDRESS, "
                   "else a one-machine Ray cluster started for this run)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr (on a terminal it is a live display, "
                   "elsewhere a line per finished cell)")


_MODEL_FLAGS = ("target", "batch", "scenario", "shape", "inputs", "trust_model", "print_suite")


def _suite(args: argparse.Namespace):
    """The suite file's, or one built for a model on the command line (None: --print-suite printed it)."""
    from bench.commands.model_suite import is_model_reference, model_suite
    from bench.config.suite import load_suite
    from bench.errors import UsageError

    if is_model_reference(args.suite):
        suite, text = model_suite(args.suite, args)
        if args.print_suite:
            print(text, end="")
            return None
        return suite
    given = [f"--{f.replace('_', '-')}" for f in _MODEL_FLAGS if getattr(args, f)]
    if given:
        raise UsageError(f"{given[0]} applies to a model on the command line (bench run MODEL {given[0]} ...); "
                         f"{args.suite!r} is a suite file: set it there")
    return load_suite(args.suite, quick=args.quick)


def run(args: argparse.Namespace) -> int:
    from bench.analysis.sweeps import sweeps
    from bench.analysis.verdict import RunVerdict
    from bench.codec import to_json
    from bench.report import markdown, terminal
    from bench.report.model import LINE_WIDTH, fit
    from bench.report.one_off import one_off_table
    from bench.report.serving_table import serving_table
    from bench.commands.live import RunProgress, choose_mode
    from bench.report.run_tables import generation_table, gpu_table, summary_table, sweeps_table
    from bench.report.tradeoff_table import tradeoff_table
    from bench.results.stores import check_store, open_store, redact
    from bench.runner.suite import run_suite
    from bench.scenarios.registry import detail_rows

    from bench.runner.executors import executor_factory

    # The executor is checked first: an unknown name, Ray missing or a head that does not answer
    # costs one line (exit 2) before the suite is read or a kernel compiled.
    executor = executor_factory(args.executor, args.address or
                                (os.environ.get("RAY_ADDRESS") if args.executor == "ray" else None))
    html = None
    if args.html:  # checked before the suite runs: a bad path costs one line, not a run's report
        check_html_path(args.html)
        html = html_renderer()
    if args.record:  # a --db bench would refuse costs one line before the run, not after it
        check_store(args.db)
    suite = _suite(args)
    if suite is None:
        return EXIT_OK
    # argv goes into run.json: a --db URL's password must not.
    argv = tuple(redact(a) for a in sys.argv)
    with RunProgress(choose_mode(args.quiet)) as progress:
        result = run_suite(suite, Path(args.out), only=args.only, argv=argv, progress=progress, executor=executor)
    if args.json:
        print(json.dumps(to_json(result.run), indent=1))
    else:
        out = terminal.console()
        out.print(terminal.render(summary_table(result.run)))
        for extra in (tradeoff_table(result.run), generation_table(result.run), serving_table(result.run),
                      one_off_table(result.run), gpu_table(result.run)):
            if extra is not None:
                out.print(terminal.render(extra))
        if sweeps(result.run):
            out.print(terminal.render(sweeps_table(result.run)))
        for line in terminal.run_headline(result.run):  # the answer, one line each however long
            out.print(terminal.markup(line), soft_wrap=True)
    for note in result.notes:
        err(note)
    print(f"results: {result.path}", file=sys.stderr)
    # Each step after the run gets its own line when it fails, and none hides another or the
    # run's own answer: the exit code is the worst of them all (bench.errors.worst).
    codes = [EXIT_OK]
    if html is not None:
        try:
            write_html(html.run_document([result.run], detail_rows), args.html)
            print(f"HTML report: {args.html}", file=sys.stderr)
        except BenchError as exc:
            err(f"{exc} (the run's results stay in {result.path})")
            codes.append(exc.exit_code)
    try:
        write_md(markdown.run_summary(result.run, detail_rows, args.html), args.md, step_summary=True)
    except BenchError as exc:
        err(str(exc))
        codes.append(exc.exit_code)
    if args.record and not result.interrupted:
        try:
            store = open_store(args.db)
            try:
                added = store.add_run(result.run)
            finally:
                store.close()
            print(f"history: {'recorded in' if added else 'already in'} {redact(args.db or DEFAULT_DB)}", file=sys.stderr)
        except BenchError as exc:
            err(f"{exc} (the run's results stay in {result.path})")
            codes.append(exc.exit_code)
    elif args.record:
        err("history: an interrupted run is not recorded")
    verdict = RunVerdict.of(result.run)
    if verdict.failed:
        # One line of at most LINE_WIDTH: each cell's own line said why, and run.json has the full text.
        err(fit(f"{len(verdict.failed)} cell(s) failed: " + "; ".join(f"{c.id}: {c.reason}" for c in verdict.failed),
                LINE_WIDTH - len("bench: ")))
        for s in sweeps(result.run):
            if s.memory_limit:
                err(f"{s.benchmark}/{s.target} {s.scenario}: {s.memory_limit}")
    if verdict.disagreeing:
        err(fit(f"outputs disagree with the reference in {len(verdict.disagreeing)} cell(s): "
                + "; ".join(f"{c.id}: {c.agreement.reason}" for c in verdict.disagreeing), LINE_WIDTH - len("bench: ")))
    if verdict.slo_failed:
        err(f"SLO failed in {len(verdict.slo_failed)} cell(s): " + ", ".join(c.id for c in verdict.slo_failed))
    for c in verdict.invalid:
        err(f"{c.id}: server run INVALID: " + "; ".join(c.server.validity))
    for c in verdict.throttled:
        err(f"{c.id}: GPU clocks throttled during the measured window ({', '.join(c.gpu.throttle_reasons)}): "
            "its figures are not the device's steady best")
    if args.fail_on_unstable and verdict.shaky:
        err(fit(f"{len(verdict.shaky)} cell(s) unstable or measured under interference (--fail-on-unstable): "
                + ", ".join(c.id for c in verdict.shaky), LINE_WIDTH - len("bench: ")))
        codes.append(EXIT_NO)
    if result.interrupted:
        err(f"interrupted: {len(result.run.cells)} completed cell(s) kept in {result.path}")
        codes.append(EXIT_INTERRUPTED)
    if verdict.failed:
        codes.append(EXIT_CELL_FAILED)
    codes.append(EXIT_NO if verdict.answer_is_no else EXIT_OK)
    return worst(*codes)
