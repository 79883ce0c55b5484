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
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, or "
                   "MLflow's own default); e.g. sqlite:///mlflow.db, http://host:5000")
    p.add_argument("--experiment", default="bench", metavar="NAME", help="MLflow experiment (created if missing; "
                   "default bench)")


def run(args: argparse.Namespace) -> int:
    from bench.report.mlflow_export import export_run, open_experiment
    from bench.results.files import read_run
    from bench.results.stores import redact

    runs = [(read_run(Path(r)), Path(r) if Path(r).is_dir() else Path(r).parent) for r in args.runs]  # all read first
    client, experiment_id = open_experiment(args.tracking_uri, args.experiment)
    shown = redact(args.tracking_uri or "the default MLflow store")
    for run_, run_dir in runs:
        parent, cells = export_run(client, experiment_id, run_, run_dir)
        print(f"{run_.run_id}: exported to {shown}, experiment {args.experiment!r}, MLflow run {parent} "
              f"with {cells} nested cell run(s)")
    return EXIT_OK
