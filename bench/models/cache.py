"""The on-disk cache of prepared models (ONNX exports, fp16 conversions): where it lives, and
entries verified by their content hash.

An entry is written atomically (temp file, rename), then its SHA-256 beside it (NAME.sha256).
On use the file is hashed and checked: a truncated or altered entry (a disk that filled during
an export, a hand edit) is rebuilt with a note saying so, never trusted forever. A cache
directory that cannot be used (read-only, a file, no permission) is one CacheError line.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from bench.errors import BenchError

_notes: list[str] = []


class CacheError(BenchError):
    """BENCH_CACHE_DIR (or ~/.cache/bench) cannot hold the model cache (exit 2)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    env = os.environ.get("BENCH_CACHE_DIR")
    root = Path(env) if env else Path.home() / ".cache" / "bench"
    path = root / "models"
    where = f"BENCH_CACHE_DIR={env}" if env else str(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"{where}: cannot use it as the model cache ({exc.strerror or exc}); "
                         "point BENCH_CACHE_DIR at a writable directory") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CacheError(f"{where}: cannot use it as the model cache (not writable); "
                         "point BENCH_CACHE_DIR at a writable directory")
    return path


def cached(path: Path, build: Callable[[Path], None]) -> Path:
    """`path`, verified against its recorded hash, or built by `build(tmp)` (which writes the
    file at tmp) and recorded. A bad entry is not deleted first: the rebuilt file replaces it by
    rename, so a concurrent run that checked it a moment ago never finds it missing."""
    side = path.with_name(path.name + ".sha256")
    if path.exists():
        try:
            ok = side.read_text(encoding="ascii").strip() == sha256_file(path)
        except (OSError, UnicodeDecodeError):
            ok = False
        if ok:
            return path
        _notes.append(f"model cache: {path.name} failed its content check (truncated, altered, or from an "
                      "older harness); rebuilt")
    tmps: list[Path] = []
    try:
        # Unique temporary names (mkstemp): runs in two containers may share the cache and a pid.
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        tmps.append(tmp)
        build(tmp)
        fd, side_name = tempfile.mkstemp(prefix=f".{side.name}.", suffix=".tmp", dir=path.parent)
        side_tmp = Path(side_name)
        tmps.append(side_tmp)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(sha256_file(tmp) + "\n")
        # The hash goes first: a reader that sees the new file sees its hash (a reader between the
        # two renames sees the old file fail the new hash and rebuilds it: slow, never wrong).
        os.replace(side_tmp, side)
        os.replace(tmp, path)
    except OSError as exc:
        raise CacheError(f"{path.parent}: cannot write the model cache ({exc.strerror or exc}); "
                         "point BENCH_CACHE_DIR at a writable directory with space") from None
    finally:
        for t in tmps:
            t.unlink(missing_ok=True)
    return path


def drain_notes() -> list[str]:
    """What the cache did that a user should hear about (rebuilt entries), once."""
    out = list(_notes)
    _notes.clear()
    return out
