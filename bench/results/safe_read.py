"""Reading files a stranger may have built: result files and their samples, with limits.

A result file is read only when it is a regular file under MAX_RESULT_BYTES (a FIFO would hang
the reader, /dev/zero exhaust its memory), parsed as strict JSON (no NaN or Infinity, integers
of at most MAX_INT_DIGITS digits, nesting that the parser can follow), and its figures checked
against their domain after decoding (`check_domain`): every failure is a ResultFileError, one
line. A samples file must lie inside its run directory, be a regular file, and hold an .npy
array whose header agrees with the file's real size before anything is allocated.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np

from bench.errors import ResultFileError

MAX_RESULT_BYTES = 256 * 1024 * 1024
MAX_INT_DIGITS = 20  # an int64 nanosecond count has 19; nothing in a result file needs more


class _Malformed(ValueError):
    pass


def open_regular(path: Path | str) -> tuple[int, os.stat_result]:
    """An fd of `path` opened without blocking (a FIFO would block a plain open; one swapped in
    after a stat would too), with its fstat; the caller checks the type and closes the fd."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        return fd, os.fstat(fd)
    except OSError:
        os.close(fd)
        raise


def not_regular(mode: int) -> str:
    """What a file that is not a regular one is, in words ("a FIFO (named pipe), not a regular
    file"), for the line that refuses it: a FIFO blocks its reader until a writer comes and a
    device (/dev/zero) never ends, so a suite, a model and a result file are refused alike, each
    saying what it met (where "no such file" would be false)."""
    for test, words in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return f"{words}, not a regular file"
    return "not a regular file"


def regular_file_bytes(path: Path, limit: int, what: str) -> bytes:
    """The bytes of `path`, which must be a regular file of at most `limit` bytes."""
    try:
        fd, st = open_regular(path)
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such {what}") from None
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(st.st_mode):
            raise ResultFileError(f"{path}: {not_regular(st.st_mode)}; a {what} must be one")
        if st.st_size > limit:
            raise ResultFileError(f"{path}: {st.st_size:,} bytes, over the {limit:,}-byte limit for a {what}")
        try:
            return fh.read(limit + 1)
        except OSError as exc:
            raise ResultFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Malformed(f"an integer of {len(text)} digits (at most {MAX_INT_DIGITS} allowed)")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Malformed(f"the number {text[:40]} is out of range")
    return value


def _constant(name: str) -> float:
    raise _Malformed(f"{name} is not a number a result file may hold")


def strict_json(data: bytes, path: Path) -> object:
    try:
        return json.loads(data.decode("utf-8"), parse_int=_int, parse_float=_float, parse_constant=_constant)
    except UnicodeDecodeError:
        raise ResultFileError(f"{path}: not UTF-8 text") from None
    except _Malformed as exc:
        raise ResultFileError(f"{path}: malformed result file: {exc}") from None
    except RecursionError:
        raise ResultFileError(f"{path}: malformed result file: JSON nested too deep") from None
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not JSON (truncated or corrupt?): {exc}") from None


def check_domain(run, where: str) -> None:
    """Figures outside their domain (a throughput that is not positive, a negative or non-finite
    latency) make a malformed result file, whatever wrote it."""
    for cell in run.cells:
        m = cell.metrics
        if m is None:
            continue
        bad = []
        tp = m.throughput
        if not (math.isfinite(tp.value) and tp.value > 0):
            bad.append(f"throughput {tp.value!r}")
        for name in ("mean", "p50", "p90", "p95", "p99", "p999", "min", "max"):
            e = getattr(m.latency_ms, name)
            if e is not None and not (math.isfinite(e.value) and e.value >= 0):
                bad.append(f"{name} latency {e.value!r}")
        for e, name in ((tp, "throughput"), *((getattr(m.latency_ms, n), n) for n in ("p50", "p99"))):
            if e is not None and any(b is not None and not math.isfinite(b) for b in (e.ci_low, e.ci_high)):
                bad.append(f"{name} interval bound")
        for r in cell.repetitions:
            if r.throughput is not None and not (math.isfinite(r.throughput) and r.throughput > 0):
                bad.append(f"repetition {r.index} throughput {r.throughput!r}")
        if bad:
            raise ResultFileError(f"{where}: malformed result file: cell {cell.id}: {', '.join(bad)} "
                                  "(outside the figure's domain)")


def load_samples_file(run_dir: Path, rel: str) -> np.ndarray | None:
    """A cell's samples (.npy, int or float, 1-D), or None when missing or unusable; a path
    outside the run directory or a header that disagrees with the file is never followed."""
    try:
        root = run_dir.resolve()
        path = (run_dir / rel).resolve()
        if not path.is_relative_to(root):
            return None
        fd, st = open_regular(path)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(st.st_mode):
                return None
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
            if dtype.hasobject or dtype.kind not in "iuf" or len(shape) != 1:
                return None
            if fh.tell() + shape[0] * dtype.itemsize != st.st_size:
                return None  # the header claims what the file does not hold
            return np.fromfile(fh, dtype=dtype, count=shape[0])
    except (OSError, ValueError):
        return None
