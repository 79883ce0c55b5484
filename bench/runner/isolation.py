"""Each work unit in its own fresh worker process; this module knows tasks, not scenarios.

The child runs task(job) and sends back one result or one typed failure (kind, reason,
traceback) over a pipe; its stderr goes to a file whose tail becomes the reason when it dies
without a word (a segfault, the out-of-memory killer). Whoever started the child kills it on
timeout, on error and on Ctrl-C.

Two ways to start one. `run_in_worker` spawns it: a fresh interpreter that imports its runtime
(torch alone takes ~1.8 s here). `WorkerHosts` forks it from a host: one spawned process per
family of runtimes (ONNX Runtime, torch, anything else) that has imported that family's modules
once and then forks a worker per unit, so a unit starts in milliseconds with the same modules
resident as a spawned worker would have (its peak RSS stays comparable). A host never runs a
model, never initializes CUDA or NVML and starts no threads of its own: a forked child of a
process that had initialized CUDA could not use it (DESIGN: spawn for anything that has).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
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


# PR_SET_PDEATHSIG from <linux/prctl.h>: the kernel signals a process when its parent exits.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this process die with its parent, whatever kills the parent (even SIGKILL, which
    leaves the parent no chance to kill its children): Linux's parent-death signal, and a check
    for a parent that died before it was set. Elsewhere a no-op beyond that check."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's own clean-up still applies
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def ignore_terminal_interrupts() -> None:
    """Ctrl-C reaches the whole process group; only the parent reports it and kills its children.
    The starter blocked SIGINT (and SIGTERM, SIGHUP) before starting this process (see
    `_interrupts_blocked`), so a Ctrl-C during interpreter start-up waited, pending; ignoring it
    now discards it. SIGTERM and SIGHUP get their default action back (the parent's way to end
    a child is SIGKILL, or SIGTERM to a host, which sets its own handler)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _ENDING)


# The signals that end the parent's command (bench.cli): blocked while a child starts.
_ENDING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class _interrupts_blocked:
    """SIGINT (and SIGTERM, SIGHUP) blocked in this thread while a child starts, so that the
    child inherits the block (through fork and exec) and a Ctrl-C cannot reach its interpreter's
    start-up (which printed "Fatal Python error: init_import_site" or a traceback to the
    terminal); the parent's own pending signal is delivered when the block lifts, after the
    caller holds the started child (see `_start`)."""

    def __enter__(self) -> None:
        # multiprocessing starts its resource tracker on the first spawn and unblocks these
        # signals while doing so: start it before the block.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, _ENDING)

    def __exit__(self, *exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)


def _start(proc) -> None:
    """proc.start() with the ending signals blocked; a signal that arrived meanwhile is raised
    when the block lifts, and then the child is killed before the exception goes on."""
    try:
        with _interrupts_blocked():
            proc.start()
    except BaseException:
        if proc.pid is not None:
            proc.kill()
            proc.join()
        raise


def _child(task: Callable[[Any], Any], job: Any, conn, stderr_path: str, parent_pid: int) -> None:
    import sys

    from bench.models.user_code import exits_stopped, flush_output

    ignore_terminal_interrupts()
    die_with_parent(parent_pid)
    # CUDA numbers devices fastest-first by default, NVML (and nvidia-smi) by PCI bus: the
    # harness defines cuda:N as PCI order, so cuda:N and NVML's device N are the same GPU and the
    # telemetry and fingerprint name the device that ran.
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    # Native libraries write to fd 2 directly; catch that too. And fd 1: the parent's stdout is the
    # harness's (`bench run --json`), so a model's print (or a C extension's printf) goes to the
    # cell's log with its stderr, whose tail a failed cell keeps.
    os.dup2(fd, 2)
    os.dup2(fd, 1)
    os.close(fd)
    # The worker has no command line of its own: user code (a factory's module parsing sys.argv at
    # import) sees the script's name alone, not the harness's `run suite.toml ...`.
    sys.argv = sys.argv[:1]
    try:
        # The task runs user code (a factory, a forward): its sys.exit or os._exit is a failure
        # that says so (kind crash), not a worker that ends without a word.
        with exits_stopped("user code in the worker", "the cell's unit ran"):
            outcome = task(job)
        flush_output()
        conn.send(("ok", outcome))
    except BaseException as exc:  # a failure of any kind is reported, never left to hang the parent
        flush_output()  # what the code printed before it failed is in the log's tail
        if isinstance(exc, (CellFailure, BenchError)):
            # The user's to fix, or named by the task (a cause chained to it keeps its traceback).
            kind = exc.kind if isinstance(exc, CellFailure) else "unsupported"
            conn.send(("failed", kind, str(exc), traceback.format_exc() if exc.__cause__ is not None else ""))
        else:  # a bug or a runtime error: its traceback goes with it
            conn.send(("failed", "error", f"{type(exc).__name__}: {exc}".strip(), traceback.format_exc()))
    finally:
        conn.close()
    # The unit is done once its answer is sent: threads the user's code left (a non-daemon one
    # started at import) must not keep the worker alive, as multiprocessing's exit would (it joins
    # them), nor the interpreter's shutdown run the code's atexit hooks. The parent reads the log
    # after this, so the output is flushed first.
    flush_output()
    os._exit(0)


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
    # sys.exit and os._exit are caught in the worker (_child); what ends it with a code is native
    # (a C extension's exit()) or the interpreter itself.
    return (f"worker exited with code {code} before it returned a result (something in it ended the "
            "process: a native exit() in the model's or the runtime's code?)")


_MAX_POLL_S = 86_400.0  # the selector's timeout is a 32-bit count of ms (about 24 days)


def _poll(conn, timeout_s: float) -> bool:
    """conn.poll for any timeout, a long one (a monitor's) in slices the selector accepts."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if conn.poll(max(0.0, min(left, _MAX_POLL_S))):
            return True
        if left <= _MAX_POLL_S:
            return False


def run_in_worker(task: Callable[[Any], Any], job: Any, stderr_path: Path, timeout_s: float,
                  name: str = "bench-worker", start_method: str = "spawn") -> Any:
    """task(job) in a fresh child: its return value, or a WorkerFailure. `task` must be a
    module-level function (spawn pickles it by name)."""
    ctx = mp.get_context(start_method)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(task, job, send, str(stderr_path), os.getpid()), name=name)
    _start(proc)
    send.close()
    try:
        if not _poll(recv, timeout_s):
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


# A forked child of a process with threads may deadlock on a lock one of them held; the host's
# only threads are numpy's and ONNX Runtime's idle pools, started at import and fork-safe.
_FORK_WARNING = "This process .* is multi-threaded, use of fork"


def _host_main(conn, preload: tuple[str, ...], parent_pid: int) -> None:
    """A worker host: import the family's modules once, then fork one worker per request."""
    import importlib
    import sys
    import warnings

    # The terminal's Ctrl-C is the parent's to report; SIGTERM from the parent (or the parent's
    # death) ends the host, and the worker in flight is killed (below, and by its own
    # parent-death signal).
    ignore_terminal_interrupts()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    die_with_parent(parent_pid)
    os.dup2(2, 1)  # the host's stdout is its log (fd 2, set by _Host): the parent's stdout is the harness's
    warnings.filterwarnings("ignore", message=_FORK_WARNING, category=DeprecationWarning)
    try:
        for module in preload:
            try:
                importlib.import_module(module)
            except Exception:  # the worker imports it again and reports the failure itself
                pass
        conn.send("ready")
        while True:
            request = conn.recv()
            if request is None:
                return
            task, job, stderr_path, timeout_s, name = request
            try:
                answer = run_in_worker(task, job, Path(stderr_path), timeout_s, name, start_method="fork")
            except Exception as exc:  # the host could not start the worker: that unit fails, the host lives
                answer = WorkerFailure("crash", f"could not start a worker: {type(exc).__name__}: {exc}",
                                       traceback.format_exc()[-STDERR_TAIL_BYTES:])
            conn.send(answer)
    except (KeyboardInterrupt, SystemExit, EOFError, BrokenPipeError):
        return  # the parent is going or gone: run_in_worker has killed the worker in flight


# The parent waits this long beyond a unit's own timeout for the host's answer (the host times
# the unit and kills its worker itself; this only catches a host that died or hung).
HOST_GRACE_S = 60.0


class _Host:
    def __init__(self, preload: tuple[str, ...], stderr_path: Path):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self._stderr = open(stderr_path, "ab")  # noqa: SIM115 - held for the host's life
        self.proc = ctx.Process(target=_host_main, args=(child, preload, os.getpid()), name="bench-worker-host")
        # The host's own stderr (a native library's warning at import) goes to a file, not the user's terminal.
        saved = os.dup(2)
        try:
            os.dup2(self._stderr.fileno(), 2)
            _start(self.proc)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        child.close()

    def wait_ready(self, timeout_s: float) -> bool:
        if not self.conn.poll(timeout_s):
            return False
        try:
            return self.conn.recv() == "ready"
        except EOFError:
            return False

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.terminate()  # SIGTERM: the host kills its worker, then leaves
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()
        self._stderr.close()


class WorkerHosts:
    """Fresh workers forked from one host per family of runtimes (see the module docstring).

    `run(family, preload, ...)` behaves as run_in_worker; the host of `family` is started on its
    first unit (it imports `preload`) and kept until close(). A host that dies is replaced by a
    new one on the next unit; the unit it was running fails as a crash, with the host's reason.
    """

    def __init__(self, work_dir: Path):
        self._dir = work_dir
        self._hosts: dict[str, _Host] = {}
        self.interrupted = False  # a Ctrl-C arrived while closing (the hosts were killed at once)

    def __enter__(self) -> WorkerHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, family: str, preload: tuple[str, ...]) -> _Host:
        host = self._hosts.get(family)
        if host is None or not host.proc.is_alive():
            if host is not None:
                host.close()
            host = _Host(preload, self._dir / f"host-{family}.stderr")
            if not host.wait_ready(300):
                host.close()
                raise RuntimeError(f"the {family} worker host did not start: {_tail(self._dir / f'host-{family}.stderr')}")
            self._hosts[family] = host
        return host

    def run(self, family: str, preload: tuple[str, ...], task: Callable[[Any], Any], job: Any,
            stderr_path: Path, timeout_s: float, name: str = "bench-worker") -> Any:
        host = self.start(family, preload)
        try:
            host.conn.send((task, job, str(stderr_path), timeout_s, name))
            if host.conn.poll(timeout_s + HOST_GRACE_S):
                return host.conn.recv()
            reason = f"the {family} worker host gave no answer within {timeout_s + HOST_GRACE_S:.0f} s"
        except (EOFError, OSError) as exc:
            host.proc.join(2)
            reason = f"the {family} worker host died ({type(exc).__name__}; {_death_reason(host.proc.exitcode)})"
        except BaseException:  # Ctrl-C or a parent-side error: no worker may outlive the parent
            if host.proc.is_alive():
                host.proc.terminate()  # the host kills its worker in flight, then leaves
            self._drop(family)
            raise
        self._drop(family)
        return WorkerFailure("crash", reason, _tail(stderr_path))

    def _drop(self, family: str) -> None:
        host = self._hosts.pop(family, None)
        if host is not None:
            host.close()

    def close(self) -> None:
        """Stop every host (each kills its worker in flight). A Ctrl-C meanwhile kills the rest
        at once and is noted in `interrupted`, not raised: the caller still has results to keep."""
        try:
            for family in list(self._hosts):
                self._drop(family)
        except KeyboardInterrupt:
            self.interrupted = True
            for host in self._hosts.values():
                host.proc.kill()
            self._hosts.clear()
