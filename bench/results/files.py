"""Writing and reading run directories: results/<run_id>/run.json plus raw samples beside it.

run.json is rewritten atomically (temp file + rename) after every finished cell, so an
interrupted run keeps every completed cell and the file is never half-written. A run directory
is never overwritten.
"""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.codec import DecodeError, from_json, to_json
from bench.errors import ResultFileError, ResultWriteError, UsageError
from bench.results.migrations import MIGRATIONS, upgrade
from bench.results.records import SCHEMA_VERSION, Run
from bench.results.safe_read import MAX_RESULT_BYTES, check_domain, regular_file_bytes, strict_json

RUN_FILE = "run.json"


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _file_mode() -> int:
    """The mode a plain open() would give a new file (0o666 less the umask): mkstemp's own 0o600
    would make run.json private while its samples beside it are not."""
    try:  # Linux says it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status", encoding="ascii") as fh:
            mask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Space held back in the run directory (a file of this many bytes, or 1.25 times the last
# run.json if larger) and given up when a write fails for lack of space, so that the final
# run.json, with the completed cells and the reason the run ended, still fits on a full disk.
RESERVE_MIN_BYTES = 64 * 1024
_RESERVE_FILE = ".space-reserve"


class RunDir:
    """One run's directory; created empty, refused if it exists.

    Every write failure (ENOSPC, EROFS, EACCES, ...) becomes a ResultWriteError and leaves no
    temporary file; `finish` then writes the final run.json after releasing the reserve."""

    def __init__(self, root: Path, run_id: str):
        self.path = Path(root) / run_id
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise UsageError(f"--out {root}: is a file, not a directory (give a directory to hold run directories)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.mkdir()
            (self.path / "samples").mkdir()
        except FileExistsError:
            raise UsageError(f"{self.path}: a run directory of that name exists; results are never overwritten") from None
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot create the run directory: {exc.strerror}") from None
        self._written_ids: set[str] = set()  # cells of the last run.json written: they fit on this disk
        self._reserve(RESERVE_MIN_BYTES)

    def _reserve(self, size: int) -> None:
        """Hold `size` bytes (best effort: on a disk too full for it, the run goes on without)."""
        try:
            fd = os.open(self.path / _RESERVE_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError:
            pass

    def release_reserve(self) -> None:
        (self.path / _RESERVE_FILE).unlink(missing_ok=True)

    def write_run(self, run: Run) -> Path:
        target = self.path / RUN_FILE
        text = json.dumps(to_json(run), indent=1, allow_nan=False) + "\n"
        try:
            atomic_write_text(target, text)
        except OSError as exc:
            raise ResultWriteError(f"{target}: cannot write the results: {exc.strerror or exc}") from None
        self._written_ids = {c.id for c in run.cells}
        self._reserve(max(RESERVE_MIN_BYTES, len(text) * 5 // 4))
        return target

    def finish(self, run: Run) -> Path:
        """The final run.json: the reserve given up first, so that it fits where the disk filled;
        if even then it does not, the cells of the last run.json that was written (which fit
        before) with the run's end, and the count of cells that could not be kept."""
        self.release_reserve()
        target = self.path / RUN_FILE
        attempts = [run]
        fitted = tuple(c for c in run.cells if c.id in self._written_ids)
        if len(fitted) < len(run.cells):
            lost = len(run.cells) - len(fitted)
            attempts.append(replace(run, cells=fitted,
                                    end_reason=f"{run.end_reason}; {lost} cell(s) measured after the last write "
                                               "could not be kept (no space)".lstrip("; ")))
        for attempt in attempts:
            try:
                atomic_write_text(target, json.dumps(to_json(attempt), indent=1, allow_nan=False) + "\n")
                return target
            except OSError as exc:
                error = exc
        raise ResultWriteError(f"{target}: cannot write the results: {error.strerror or error}; "
                               "the last complete run.json stays") from None

    def write_samples(self, index: int, latencies_ns: np.ndarray) -> str:
        rel = f"samples/{index:04d}.npy"
        tmp = self.path / f"samples/.{index:04d}.tmp.npy"
        # Through a buffer and one plain write: numpy's own file writer reports a full disk as
        # "N requested and M written", without the system's reason.
        buf = io.BytesIO()
        np.save(buf, np.asarray(latencies_ns, dtype=np.int64), allow_pickle=False)
        try:
            with open(tmp, "wb") as fh:
                fh.write(buf.getbuffer())
            os.replace(tmp, self.path / rel)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # nothing was created there
                pass
            raise ResultWriteError(f"{self.path / rel}: cannot write the samples: {exc.strerror or exc}") from None
        return rel


def read_run(path: str | Path) -> Run:
    """Load run.json (or a run directory holding one), upgrading older schema versions."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_FILE
    doc = strict_json(regular_file_bytes(path, MAX_RESULT_BYTES, "result file"), path)
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
    try:
        doc = upgrade(doc, SCHEMA_VERSION)
    except (TypeError, KeyError, AttributeError, ValueError) as exc:  # an old file of the wrong shape
        raise ResultFileError(f"{path}: malformed result file (schema_version {version}): {exc!r}") from None
    try:
        run = from_json(Run, doc, "run")
    except DecodeError as exc:
        raise ResultFileError(f"{path}: malformed result file: {_where(doc, exc)}") from None
    except (OverflowError, ValueError) as exc:
        raise ResultFileError(f"{path}: malformed result file: {exc}") from None
    check_domain(run, str(path))
    return run


def _where(doc: dict, exc: DecodeError) -> str:
    """The codec's message, and the cell named by its id where the fault lies in one: its index
    ("run.cells[3].n") says where in the file, its id which cell a report shows."""
    m = re.match(r"run\.cells\[(\d+)\]", exc.path)
    cells = doc.get("cells")
    cell = cells[int(m.group(1))] if m and isinstance(cells, list) and int(m.group(1)) < len(cells) else None
    if not isinstance(cell, dict) or not isinstance(cell.get("id"), str):
        return str(exc)
    return f"{exc} (cell {cell['id']})"
