"""`bench history`: each cell over time with change points; exit 1 when the latest run starts a
regression (the nightly gate), exit 4 when the gate had nothing to test. `bench history add
RUN...` records runs."""
from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path

import numpy as np

from bench.analysis.history import BASELINE_RUNS, METRICS, MIN_RUNS
from bench.commands.output import check_html_path, err, html_renderer, percent, write_html
from bench.errors import EXIT_NO, EXIT_NO_DATA, EXIT_OK, UsageError
from bench.results.calibration import DEFAULT_CALIBRATION_DIR
from bench.results.stores import DEFAULT_DB


def add_parser(sub) -> None:
    p = sub.add_parser("history", help="cells over time with change points; exit 1 when the latest run regresses, "
                       "4 when the gate had no series to test")
    p.add_argument("action", nargs="?", choices=["show", "add"], default="show",
                   help="show (default) or add RUN... to the store")
    p.add_argument("runs", nargs="*", help="with add: run directories or run.json files")
    p.add_argument("--db", metavar="URL", help=f"history store: a SQLite file bench created (default {DEFAULT_DB}), "
                   "or postgresql://... / libpq key=value, with schema=NAME for its PostgreSQL schema (default bench)")
    p.add_argument("--metric", choices=list(METRICS), default="throughput",
                   help="the figure each series follows (default throughput); accuracy: each cell's accuracy loss "
                        "against its reference, where its runs measured it (--threshold then reads as a rise in loss: "
                        "5 = 0.05, five points of top-1)")
    p.add_argument("--threshold", type=float, default=5.0, metavar="PCT",
                   help="smallest step in percent that counts as a regression (default 5)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="the gate's false-alarm rate per night, over all series at once (Benjamini-Hochberg; default 0.05)")
    p.add_argument("--only", metavar="GLOB", help="cells whose key (BENCH|MODEL|TARGET|bN|SCENARIO) matches")
    p.add_argument("--calibration", metavar="PATH",
                   help=f"the calibration records to print beside the gate: a directory (default "
                        f"{DEFAULT_CALIBRATION_DIR}, which bench self-check --checks reproducibility writes) or one "
                        "record's file; a record of another machine kind is ignored, and said so")
    p.add_argument("--json", action="store_true", help="print the series as JSON")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report: each series over time, "
                   "change points and regressions marked")


def run(args: argparse.Namespace) -> int:
    from bench.analysis.history import accuracy_losses, analyse
    from bench.codec import to_json
    from bench.report.history_text import history_text
    from bench.results.files import read_run
    from bench.results.stores import open_store, redact

    threshold = percent(args.threshold)
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha:g}: expected a number between 0 and 1")
    if args.action == "add" and not args.runs:
        raise UsageError("history add: name at least one run directory or run.json")
    if args.action == "show" and args.runs:
        raise UsageError(f"history: unexpected arguments {args.runs}; to record runs use: bench history add RUN...")
    html = None
    if args.html:
        if args.action == "add":
            raise UsageError("history add: --html is for showing the history (bench history --html FILE)")
        check_html_path(args.html)
        html = html_renderer()
    runs = [read_run(Path(r)) for r in args.runs]  # read all first: a bad file writes nothing
    store = open_store(args.db, create=args.action == "add")
    try:
        if args.action == "add":
            for run_ in runs:
                added = store.add_run(run_)
                print(f"{run_.run_id}: {'recorded' if added else 'already recorded'} in {redact(args.db or DEFAULT_DB)}")
            return EXIT_OK
        rows = store.rows()
        # The accuracy loss is not a column of the store's cells: it is read from the stored runs.
        accuracy = accuracy_losses(_run_documents(store)) if args.metric == "accuracy" else None
    finally:
        store.close()
    if args.only:
        rows = [r for r in rows if fnmatch.fnmatch(r.cell_key, args.only)]
    reports = analyse(rows, args.metric, threshold, args.alpha, accuracy)
    if not reports:
        why = "no recorded cells" + (f" match --only {args.only!r}" if args.only else "")
        if args.metric == "accuracy" and rows:
            why = ("no recorded cell" + (f" matching --only {args.only!r}" if args.only else "")
                   + " carries accuracy figures (runs of schema 14 on, whose targets were scored against a reference)")
        print(f"history: no data: {why}; the gate tested 0 series", file=sys.stderr if args.json else sys.stdout)
        if args.json:
            print("[]")
        if html is not None:
            write_html(html.history_document(reports, why), args.html)
        return EXIT_NO_DATA
    text = history_text(reports, threshold, args.alpha, _calibration(reports, rows, args, threshold))
    if args.json:
        print(json.dumps([to_json(r) for r in reports], indent=1))
    else:
        print(text)
    if html is not None:
        write_html(html.history_document(reports, text), args.html)
        print(f"HTML report: {args.html}", file=sys.stderr if args.json else sys.stdout)
    gate = [r for r in reports if r.latest_starts_regression]
    if gate:
        err(f"the latest run starts a regression in {len(gate)} series: " + ", ".join(r.cell_key for r in gate))
        return EXIT_NO
    if not any(r.p_value is not None for r in reports):
        err(f"no data: the gate tested 0 of {len(reports)} series (each needs {MIN_RUNS} runs); exit {EXIT_NO_DATA}")
        return EXIT_NO_DATA
    return EXIT_OK


def _run_documents(store) -> list[str]:
    """Every stored run's run.json text. The store keeps each run whole beside its cells' columns;
    its Protocol has no reader for them, so this reads the runs table through the connection the
    store holds (both stores keep it as `conn`, their table prefix as `prefix`). A store without
    them (another implementation) gives none, and its accuracy series are empty."""
    import sqlite3

    from bench.results.stores import StoreError, redact

    conn, prefix = getattr(store, "conn", None), getattr(store, "prefix", None)
    if conn is None or prefix is None:
        return []
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    try:
        import psycopg

        errors += (psycopg.Error,)
    except ImportError:
        pass
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT run_json FROM {prefix}runs ORDER BY created_at, run_id")
        docs = [r[0] for r in cur.fetchall()]
        conn.commit()
    except errors as exc:
        # redact: a driver's message may quote the connection string
        raise StoreError(f"{getattr(store, 'shown', 'history store')}: cannot read the stored runs: "
                         f"{redact(str(exc))}") from None
    return docs


def _calibration(reports, rows, args, threshold: float) -> dict[str, str]:
    """Machine kind -> its gate calibration in words, for the series of that kind (a corrupt
    record raises: one line, exit 2)."""
    from bench.analysis.calibration import gate_calibration_text

    out = {}
    for kind in sorted({r.machine for r in reports}):
        mine = [r for r in reports if r.machine == kind]
        tested = [r for r in mine if r.p_value is not None]
        keys = {r.cell_key for r in mine}
        # the baseline the gate had: the runs before the latest, at most BASELINE_RUNS (the median series')
        baseline = int(np.median([len(r.values) - 1 for r in tested])) if tested else BASELINE_RUNS
        out[kind] = gate_calibration_text(
            kind, args.calibration, metric=args.metric, series=max(len(tested), 1),
            cell_kinds={r.scenario for r in rows if r.machine == kind and r.cell_key in keys},
            alpha=args.alpha, threshold=threshold, baseline=min(max(baseline, MIN_RUNS - 1), BASELINE_RUNS))
    return out
