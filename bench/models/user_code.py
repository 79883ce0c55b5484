"""What the user's code (a factory's module, its factory, its model's forward) may not do to the
harness's processes, whichever process runs it.

The parent imports and calls it while it prepares the model (to hash, export and count it), and
every worker again; it is ordinary Python written for a script of its own, so by accident it may:

- end the process: `sys.exit()` at import (a script's habit), argparse's exit on arguments it does
  not know, `os._exit`. `bench` exited 0 then with nothing measured and no line: a CI job read it
  as a pass. Inside `exits_stopped` these become a UserCodeExit naming the call and where it was
  made (a cell failure of kind crash in a worker; the parent turns it into one line, exit 2);
- read `sys.argv`: it would see the harness's own (`run suite.toml --json`) and argparse exited 2
  with a usage line of its own. It sees the script name alone (`clean_argv`; a worker's is cleaned
  once for the whole process);
- print: the harness's stdout is the user's JSON (`bench run --json`), and C extensions write to
  fd 1 as print does, so `parent_side` points fd 1 (and fd 2) at a file at the OS level while user
  code runs in the parent, and copies it to stderr afterwards; a worker's fd 1 and 2 are its cell's
  log (bench.runner.isolation).

A native `exit()` from a C extension cannot be stopped in-process: in a worker it is a worker that
ended without a result (a crash, with the exit code); in the parent it ends `bench` with that code.
"""
from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import FrameType, TracebackType

from bench.errors import CellFailure

_BENCH_DIR = str(Path(__file__).resolve().parents[1])
_STDLIB = tuple(str(Path(p).resolve()) for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
_SITE = tuple(str(Path(p).resolve()) for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
OUTPUT_TAIL_CHARS = 200


class UserCodeExit(CellFailure):
    """The user's code asked its process to exit before it returned: in a worker, the cell fails
    as a crash (the worker would have ended without a result); the parent makes it a ModelError."""

    def __init__(self, message: str):
        super().__init__(message, kind="crash")
        self.output_tail = ""  # the last line the code printed, where the parent captured it


class _OsExitCalled(BaseException):
    """os._exit called by user code: a BaseException, so that the code's own `except Exception`
    cannot take it on its way out."""

    def __init__(self, code: int, where: str):
        super().__init__(code)
        self.code, self.where = code, where


def _is_users(filename: str) -> bool:
    """A frame of the user's code: not the standard library, not the harness, not importlib's."""
    if filename.startswith("<"):
        return False
    path = os.path.realpath(filename)
    if path.startswith(_BENCH_DIR + os.sep):
        return False
    return not (path.startswith(_STDLIB) and not path.startswith(_SITE))


def _where(frames: list[FrameType | TracebackType]) -> str:
    """'file:line' of the innermost frame of user code in `frames` (innermost last), else of the
    innermost frame: sys.exit from argparse points at the line that called parse_args()."""
    located = [(f.tb_frame.f_code.co_filename, f.tb_lineno) if isinstance(f, TracebackType)
               else (f.f_code.co_filename, f.f_lineno) for f in frames]
    if not located:
        return "an unknown place"
    users = [loc for loc in located if _is_users(loc[0])]
    filename, line = (users or located)[-1]
    return f"{filename}:{line}"


def _traceback_frames(tb: TracebackType | None) -> list[TracebackType]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def _describe_system_exit(exc: SystemExit) -> str:
    code = exc.code
    return "sys.exit()" if code is None else f"sys.exit({code!r})"


class exits_stopped:
    """Code run inside cannot end the process: SystemExit (sys.exit, exit(), argparse's exit) and
    os._exit become a UserCodeExit saying that `who` (the subject: "model 'm:f': its code") called
    what, where, and while `doing` what.

    os._exit is replaced while inside (for this process only: a child forked meanwhile, such as a
    multiprocessing worker of the user's, still exits through the real one).
    """

    def __init__(self, who: str, doing: str):
        self.who = who
        self.doing = doing

    def __enter__(self) -> exits_stopped:
        import posix

        pid = os.getpid()
        real = os._exit
        self._saved = (os._exit, posix._exit)

        def _exit(code: int) -> None:
            if os.getpid() != pid:  # a forked child of the user's: its exit is its own
                real(code)
            frames: list[FrameType] = []
            frame = sys._getframe(1)
            while frame is not None:
                frames.append(frame)
                frame = frame.f_back
            raise _OsExitCalled(code, _where(frames[::-1]))

        os._exit = posix._exit = _exit
        return self

    def __exit__(self, typ: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        import posix

        os._exit, posix._exit = self._saved
        if isinstance(exc, _OsExitCalled):
            raise UserCodeExit(f"{self.who} called os._exit({exc.code!r}) at {exc.where} "
                               f"while {self.doing}") from None
        if isinstance(exc, SystemExit):
            raise UserCodeExit(f"{self.who} called {_describe_system_exit(exc)} at "
                               f"{_where(_traceback_frames(tb))} while {self.doing}") from exc


def flush_output() -> None:
    """Python's buffered stdout and stderr, and C stdio's buffers (a C extension's printf), written
    to their file descriptors now, while those still point where the output belongs."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to ask: Python's own streams are flushed
        pass


def clean_argv() -> list[str]:
    """What user code sees as sys.argv: the script's name alone, as a script run without arguments
    sees it (an argparse parser at import takes its defaults instead of the harness's argv)."""
    return sys.argv[:1] if sys.argv else [""]


class parent_side:
    """User code run in the harness's own process: a clean sys.argv, stdin from /dev/null (input()
    raises EOFError rather than waiting), fd 1 and fd 2 captured in a file (so neither print nor a
    C extension reaches stdout, which is the harness's: `bench run --json`), and exits stopped
    (`exits_stopped`). On the way out everything is put back and what the code printed is copied
    to stderr; after an exit only its last line is kept, on the UserCodeExit (`output_tail`), for
    the one line that reports it.
    """

    def __init__(self, who: str, doing: str):
        self._exits = exits_stopped(who, doing)

    def __enter__(self) -> parent_side:
        flush_output()  # the harness's own pending output goes where it was meant to
        self._argv = sys.argv
        self._streams = (sys.stdout, sys.stderr)
        sys.argv = clean_argv()
        self._capture = tempfile.TemporaryFile(prefix="bench-user-output-")
        self._fds: dict[int, int] = {}
        try:  # a signal half-way (Ctrl-C, the prepare time box) must not leave stdout pointing here
            for fd in (0, 1, 2):
                self._fds[fd] = os.dup(fd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            os.dup2(self._capture.fileno(), 1)
            os.dup2(self._capture.fileno(), 2)
            self._exits.__enter__()
        except BaseException:
            self._restore()
            self._replay()
            raise
        return self

    def __exit__(self, typ: type | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        stopped: UserCodeExit | None = None
        try:
            self._exits.__exit__(typ, exc, tb)
        except UserCodeExit as converted:
            stopped = converted
        finally:
            self._restore()
        if stopped is None and isinstance(exc, UserCodeExit):
            stopped = exc  # an inner exits_stopped (the factory's import) converted it already
        if stopped is None:
            self._replay()
            return False
        stopped.output_tail = self._last_line()
        self._capture.close()
        if stopped is not exc:
            raise stopped
        return False

    def _restore(self) -> None:
        flush_output()  # what the code left in the buffers belongs to the capture
        for fd, saved in self._fds.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._fds = {}
        sys.argv = self._argv
        sys.stdout, sys.stderr = self._streams  # in case the code replaced them

    def _replay(self) -> None:
        """What the code printed, to stderr (the user's prints are theirs to see, not stdout's)."""
        try:
            self._capture.seek(0)
            while chunk := self._capture.read(1 << 16):
                while chunk:  # a pipe may take part of it
                    chunk = chunk[os.write(2, chunk):]
        except OSError:  # a closed stderr: the output is the user's, the run goes on
            pass
        finally:
            self._capture.close()

    def _last_line(self) -> str:
        try:
            self._capture.seek(0, os.SEEK_END)
            self._capture.seek(max(0, self._capture.tell() - 4096))
            lines = [ln.strip() for ln in self._capture.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        last = lines[-1] if lines else ""
        return last if len(last) <= OUTPUT_TAIL_CHARS else last[:OUTPUT_TAIL_CHARS] + "..."
