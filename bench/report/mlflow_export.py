"""Runs exported to MLflow: one MLflow run per bench run, a nested MLflow run per cell.

The bench run's MLflow run carries the environment fingerprint as tags (host, OS, CPU, GPUs,
Python, the harness commit, runtime versions) and run.json (and any HTML report in the run
directory) as artifacts. Each cell's nested run carries its target's knobs, batch, scenario and
model as params, its figures and their interval bounds as metrics (`throughput`,
`throughput_ci_low`, `p99_ms`, ...), and its status, stop reason and agreement as tags. A run
whose export fails part-way is deleted from the store again: nothing is left half written.

Only through MLflow's own client (mlflow-skinny, the `mlflow` extra); a URI's password is never
printed (bench.results.stores.redact).

The store: --tracking-uri, else $MLFLOW_TRACKING_URI, else DEFAULT_TRACKING_URI in the current
directory. A store MLflow cannot use (a file store, which MLflow 3 refuses; a scheme it does not
know; a server that does not answer) is one line and exit 2, as is a failure part-way through.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.results.records import Cell, Run

MAX_PARAM_CHARS = 500  # MLflow's limit on a param value in older servers
MAX_TAG_CHARS = 5000
# The store when neither --tracking-uri nor $MLFLOW_TRACKING_URI names one: MLflow 3's own default,
# pinned, because MLflow itself falls back to ./mlruns (a file store, which MLflow 3 then refuses)
# wherever that directory holds experiments, and MLflow 2 defaults to it. `mlflow ui` run in the
# same directory shows what was exported.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
STORES = "sqlite:///PATH.db, postgresql://USER@HOST/DB, mysql://USER@HOST/DB, http(s)://HOST:PORT (a server)"


@dataclass(frozen=True)
class Store:
    """A tracking URI and where it came from, for the messages."""

    uri: str
    origin: str  # "--tracking-uri", "MLFLOW_TRACKING_URI" or "default"

    def __str__(self) -> str:
        from bench.results.stores import redact

        shown = redact(self.uri)
        if self.origin == "default":
            return f"the default store {shown}"
        return f"{self.origin} {shown}" if self.origin.startswith("--") else f"{self.origin}={shown}"


def tracking_store(given: str | None) -> Store:
    if given:
        return Store(given, "--tracking-uri")
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return Store(os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI")
    return Store(f"sqlite:///{Path.cwd() / DEFAULT_TRACKING_URI.removeprefix('sqlite:///')}", "default")


def _refuses_file_stores() -> bool:
    """MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE says otherwise; MLflow 2
    (which has no such variable) takes one."""
    try:
        from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
    except ImportError:
        return False
    return not MLFLOW_ALLOW_FILE_STORE.get()


def _check_store(store: Store) -> None:
    """A file store (a bare path or a file: URI) is refused here, in words a user can act on,
    before MLflow refuses it with a paragraph and a traceback."""
    from urllib.parse import urlparse

    import mlflow

    if urlparse(store.uri).scheme in ("", "file") and _refuses_file_stores():
        raise UsageError(f"{store}: MLflow {mlflow.__version__} refuses file stores (a path or file: URI); use a "
                         f"database or a tracking server ({STORES}), e.g. --tracking-uri {DEFAULT_TRACKING_URI} "
                         "(`mlflow migrate-filestore` moves an existing ./mlruns into one)")


def _client(store: Store):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UsageError("bench export mlflow needs MLflow's client: pip install 'bench-harness[mlflow]' "
                         "(mlflow-skinny; SQLite or PostgreSQL stores also need sqlalchemy and alembic)") from None
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines ("Creating initial tables") are not ours
    # Fail fast on a server that does not answer, instead of MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    _check_store(store)
    return MlflowClient(tracking_uri=store.uri)


def _first_line(exc: BaseException) -> str:
    from bench.results.stores import redact

    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)[:300]


def _store_failure(store: Store, exc: BaseException) -> UsageError:
    """One line for an MLflow failure that the store's URI or the store's state causes."""
    from urllib.parse import urlparse

    # MLflow's words for a scheme it has no store for (its registry's, raised by the client):
    # "unsupported URI 'foo://x' ... Supported URI schemes are: ['', 'file', ...]"
    known = re.search(r"Supported URI schemes are: \[([^\]]*)\]", str(exc))
    if known:
        schemes = [s.strip(" '\"") for s in known.group(1).split(",")]
        shown = [s for s in schemes if s and not (s == "file" and _refuses_file_stores())]
        return UsageError(f"{store}: {urlparse(store.uri).scheme!r} is not a tracking store scheme MLflow knows "
                          f"(allowed: {', '.join(shown)}; e.g. {STORES})")
    return UsageError(f"{store}: cannot use the MLflow store: {_first_line(exc)}")


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is not None:
        out[prefix] = str(value)[:MAX_PARAM_CHARS]


def environment_tags(run: Run) -> dict[str, str]:
    e = run.environment
    tags = {
        "bench.run_id": run.run_id, "bench.suite": run.suite.name, "bench.suite_sha256": run.suite.sha256,
        "bench.status": run.status, "bench.created_at": run.created_at, "bench.harness_version": run.harness_version,
        "env.host": e.host, "env.os": e.os, "env.kernel": e.kernel, "env.machine": e.machine, "env.cpu_model": e.cpu_model,
        "env.cpu_cores_logical": str(e.cpu_cores_logical), "env.memory_total_bytes": str(e.memory_total_bytes),
        "env.python": e.python, "env.harness_commit": e.harness_commit or "unknown",
        "env.harness_dirty": str(e.harness_dirty), "env.gpus": "; ".join(f"{g.name} (driver {g.driver})" for g in e.gpus)
        or (e.gpu_note or "none"),
    }
    for name, version in e.packages.items():
        if version:
            tags[f"env.package.{name}"] = version
    return {k: v[:MAX_TAG_CHARS] for k, v in tags.items()}


def cell_params(cell: Cell) -> dict[str, str]:
    out: dict[str, str] = {}
    _flat("", {"benchmark": cell.benchmark, "model": cell.model.ref, "model_sha256": cell.model.sha256,
               "batch_size": cell.batch_size, "scenario": cell.scenario, "concurrency": cell.concurrency,
               "target": cell.target.name, "backend": cell.target.backend, "device": cell.target.device,
               "precision": cell.target.precision, "knobs": cell.target.knobs}, out)
    return out


def cell_metrics(cell: Cell) -> dict[str, float]:
    out: dict[str, float] = {}
    m = cell.metrics
    if m is None:
        return out

    def put(name: str, value: float | None, low: float | None = None, high: float | None = None) -> None:
        if value is not None:
            out[name] = float(value)
        if low is not None:
            out[f"{name}_ci_low"] = float(low)
        if high is not None:
            out[f"{name}_ci_high"] = float(high)

    put("throughput", m.throughput.value, m.throughput.ci_low, m.throughput.ci_high)
    lat = m.latency_ms
    for q in ("mean", "p50", "p90", "p95", "p99", "p999"):
        e = getattr(lat, q)
        put(f"{q}_ms", e.value, e.ci_low, e.ci_high)
    out["samples"] = float(lat.n)
    if cell.memory is not None:
        out["peak_rss_bytes"] = float(cell.memory.peak_rss_bytes)
        if cell.memory.gpu_peak_bytes is not None:
            out["gpu_peak_bytes"] = float(cell.memory.gpu_peak_bytes)
    if cell.agreement is not None and cell.agreement.max_rel_error is not None:
        out["agreement_max_rel_error"] = float(cell.agreement.max_rel_error)
    if cell.gpu is not None and cell.gpu.energy_per_sample_j is not None:
        out["energy_per_sample_j"] = float(cell.gpu.energy_per_sample_j)
    if cell.monitor is not None:
        out["monitor_alarms"] = float(len(cell.monitor.alarms))
    return out


def cell_tags(cell: Cell) -> dict[str, str]:
    tags = {"bench.cell": cell.id, "bench.status": cell.status, "bench.reason": cell.reason,
            "bench.stop_reason": cell.stop_reason or "", "bench.timing_boundary": cell.timing_boundary,
            "bench.unstable": cell.unstable or "", "bench.agreement": cell.agreement.verdict if cell.agreement else ""}
    return {k: v[:MAX_TAG_CHARS] for k, v in tags.items() if v}


def export_run(client, experiment_id: str, run: Run, run_file: Path, store: Store) -> tuple[str, int]:
    """(the bench run's MLflow run id, cells exported). Deletes what it created if it fails; an
    MLflow, network or file failure is one line (UsageError) then."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    created: list[str] = []
    try:
        parent = client.create_run(experiment_id, run_name=run.run_id, tags=environment_tags(run))
        created.append(parent.info.run_id)
        for cell in run.cells:
            child = client.create_run(experiment_id, run_name=cell.id,
                                      tags={**cell_tags(cell), "mlflow.parentRunId": parent.info.run_id})
            created.append(child.info.run_id)
            client.log_batch(child.info.run_id,
                             metrics=[Metric(k, v, 0, 0) for k, v in cell_metrics(cell).items()],
                             params=[Param(k, v) for k, v in cell_params(cell).items()])
            # MLflow's run states: a skipped cell never ran (KILLED), a failed one FAILED
            client.set_terminated(child.info.run_id, {"ok": "FINISHED", "failed": "FAILED"}.get(cell.status, "KILLED"))
        _log_run_file(client, parent.info.run_id, run_file)
        if run_file.name == "run.json":  # in its run directory: the reports made beside it go too
            for html in sorted(run_file.parent.glob("*.html")):
                client.log_artifact(parent.info.run_id, str(html))
        client.log_batch(parent.info.run_id, tags=[RunTag("bench.cells", str(len(run.cells)))])
        client.set_terminated(parent.info.run_id, "FINISHED")
    except BaseException as exc:
        for run_id in reversed(created):
            try:
                client.delete_run(run_id)
            except Exception:  # the store is gone: nothing more can be undone
                pass
        if isinstance(exc, (MlflowException, RequestException, OSError)):
            raise UsageError(f"{store}: exporting {run.run_id} failed part-way (nothing of it kept): "
                             f"{_first_line(exc)}") from None
        raise
    return parent.info.run_id, len(run.cells)


def _log_run_file(client, run_id: str, run_file: Path) -> None:
    """The result file as the artifact run.json, whatever the file given was called."""
    if run_file.name == "run.json":
        client.log_artifact(run_id, str(run_file))
        return
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        shutil.copyfile(run_file, Path(tmp) / "run.json")
        client.log_artifact(run_id, str(Path(tmp) / "run.json"))


def open_experiment(store: Store, name: str) -> tuple[Any, str]:
    """(client, experiment id), creating the experiment when it does not exist. One clear line
    (the URI's password redacted) when the store cannot be used."""
    try:
        client = _client(store)
        exp = client.get_experiment_by_name(name)
        return client, exp.experiment_id if exp is not None else client.create_experiment(name)
    except UsageError:
        raise
    except Exception as exc:  # MlflowException, requests' ConnectionError, sqlalchemy's errors: all one answer
        raise _store_failure(store, exc) from None


def summary(run: Run, parent_id: str, cells: int) -> str:
    return json.dumps({"bench_run": run.run_id, "mlflow_run": parent_id, "cells": cells})
