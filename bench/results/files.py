"""Writing and reading run directories: results/<run_id>/run.json plus raw samples beside it.

run.json is rewritten atomically (temp file + rename) after every finished cell, so an
interrupted run keeps every completed cell and the file is never half-written. A run directory
is never overwritten.
"""
from __future__ import annotations

import json
import os
import secrets
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.codec import DecodeError, from_json, to_json
from bench.errors import ResultFileError, UsageError
from bench.results.migrations import MIGRATIONS, upgrade
from bench.results.records import SCHEMA_VERSION, Run

RUN_FILE = "run.json"


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDir:
    """One run's directory; created empty, refused if it exists."""

    def __init__(self, root: Path, run_id: str):
        self.path = Path(root) / run_id
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.mkdir()
        except FileExistsError:
            raise UsageError(f"{self.path}: a run directory of that name exists; results are never overwritten") from None
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot create the run directory: {exc.strerror}") from None
        (self.path / "samples").mkdir()

    def write_run(self, run: Run) -> Path:
        target = self.path / RUN_FILE
        atomic_write_text(target, json.dumps(to_json(run), indent=1, allow_nan=False) + "\n")
        return target

    def write_samples(self, index: int, latencies_ns: np.ndarray) -> str:
        rel = f"samples/{index:04d}.npy"
        tmp = self.path / f"samples/.{index:04d}.tmp.npy"
        np.save(tmp, np.asarray(latencies_ns, dtype=np.int64), allow_pickle=False)
        os.replace(tmp, self.path / rel)
        return rel


def read_run(path: str | Path) -> Run:
    """Load run.json (or a run directory holding one), upgrading older schema versions."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such result file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not JSON (truncated or corrupt?): {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("schema_version"), int):
        raise ResultFileError(f"{path}: not a bench result file (no integer schema_version)")
    version = doc["schema_version"]
    if version > SCHEMA_VERSION:
        raise ResultFileError(
            f"{path}: schema_version {version} is newer than this harness reads ({SCHEMA_VERSION}); "
            "upgrade the bench harness to read it"
        )
    if version < 1 or (version < SCHEMA_VERSION and any(v not in MIGRATIONS for v in range(version + 1, SCHEMA_VERSION + 1))):
        raise ResultFileError(f"{path}: schema_version {version} is not a version this harness knows")
    doc = upgrade(doc, SCHEMA_VERSION)
    try:
        return from_json(Run, doc, "run")
    except DecodeError as exc:
        raise ResultFileError(f"{path}: malformed result file: {exc}") from None
