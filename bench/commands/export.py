"""`bench export mlflow RUN... [--tracking-uri URI] [--experiment NAME]`: runs into MLflow, a
nested MLflow run per cell (bench.report.mlflow_export says what goes where)."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export runs to another system (mlflow)")
    p.add_argument("system", choices=["mlflow"], help="where to: mlflow")
    p.add_argument("runs", nargs="+", help="run directories or run.json files")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking store: a database (sqlite:///PATH.db, "
                   "postgresql://USER@HOST/DB) or a server (http://HOST:5000); default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///mlflow.db in the current directory (MLflow 3's default; its artifacts go to ./mlruns). "
                   "A file store (a path or file: URI) is refused: MLflow 3 no longer takes one")
    p.add_argument("--experiment", default="bench", metavar="NAME", help="MLflow experiment (created if missing; "
                   "default bench)")


def run(args: argparse.Namespace) -> int:
    from bench.report.mlflow_export import export_run, open_experiment, tracking_store
    from bench.results.files import read_run
    from bench.results.stores import redact

    paths = [Path(r) / "run.json" if Path(r).is_dir() else Path(r) for r in args.runs]
    runs = [(read_run(path), path) for path in paths]  # all read before anything is written
    store = tracking_store(args.tracking_uri)
    client, experiment_id = open_experiment(store, args.experiment)
    for run_, run_file in runs:
        parent, cells = export_run(client, experiment_id, run_, run_file, store)
        print(f"{run_.run_id}: exported to {redact(store.uri)}, experiment {args.experiment!r}, MLflow run {parent} "
              f"with {cells} nested cell run(s)")
    return EXIT_OK
