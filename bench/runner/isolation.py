"""Each work unit in its own spawned worker process; this module knows tasks, not scenarios.

spawn, not fork: CUDA and runtime thread pools do not survive fork. The child runs task(job) and
sends back one result or one typed failure (kind, reason, traceback) over a pipe; its stderr goes
to a file whose tail becomes the reason when it dies without a word (a segfault, the
out-of-memory killer). The parent kills the child on timeout, on error and on Ctrl-C.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path

from typing import Any, Callable

from bench.errors import BenchError, CellFailure

STDERR_TAIL_BYTES = 2000


@dataclass(frozen=True)
class WorkerFailure:
    kind: str  # bench.results.records.FailureKind
    reason: str
    stderr_tail: str


def _child(task: Callable[[Any], Any], job: Any, conn, stderr_path: str) -> None:
    # Ctrl-C reaches the whole process group; the parent decides and kills us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # CUDA numbers devices fastest-first by default, NVML (and nvidia-smi) by PCI bus: the
    # harness defines cuda:N as PCI order, so cuda:N and NVML's device N are the same GPU and the
    # telemetry and fingerprint name the device that ran.
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)  # native libraries write to fd 2 directly; catch that too
    try:
        outcome = task(job)
        conn.send(("ok", outcome))
    except BaseException as exc:  # a failure of any kind is reported, never left to hang the parent
        if isinstance(exc, (CellFailure, BenchError)):
            # The user's to fix, or named by the task (a cause chained to it keeps its traceback).
            kind = exc.kind if isinstance(exc, CellFailure) else "unsupported"
            conn.send(("failed", kind, str(exc), traceback.format_exc() if exc.__cause__ is not None else ""))
        else:  # a bug or a runtime error: its traceback goes with it
            conn.send(("failed", "error", f"{type(exc).__name__}: {exc}".strip(), traceback.format_exc()))
    finally:
        conn.close()


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - STDERR_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _death_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (likely the out-of-memory killer)" if -code == signal.SIGKILL else ""
        return f"worker killed by {name}{hint}"
    return f"worker exited with code {code} without a result"


def run_in_worker(task: Callable[[Any], Any], job: Any, stderr_path: Path, timeout_s: float,
                  name: str = "bench-worker") -> Any:
    """task(job) in a spawned child: its return value, or a WorkerFailure. `task` must be a
    module-level function (spawn pickles it by name)."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(task, job, send, str(stderr_path)), name=name)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout_s):
            return WorkerFailure("timeout", f"timed out after {timeout_s:.0f} s", _tail(stderr_path))
        try:
            message = recv.recv()
        except EOFError:  # the child died before sending
            proc.join(5)
            return WorkerFailure("crash", _death_reason(proc.exitcode), _tail(stderr_path))
        if message[0] == "ok":
            return message[1]
        _, kind, reason, tb = message
        tail = _tail(stderr_path)
        return WorkerFailure(kind, reason, (tb + tail)[-STDERR_TAIL_BYTES:].strip())
    except BaseException:  # Ctrl-C or a parent-side error: the child must not outlive it
        proc.kill()
        raise
    finally:
        if proc.is_alive():
            proc.join(2)
        if proc.is_alive():
            proc.kill()
            proc.join()
        recv.close()
