"""The command line: argv -> one command of bench.commands; a BenchError -> its one line and exit code.

Exit codes: 0 success; 1 the answer is "no" (an SLO failed, outputs disagree, a regression);
2 bad usage or input (one line on stderr); 3 a cell failed at run time while the others
completed, or results could not be written; 130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM,
129 by SIGHUP (completed cells kept in each case).
"""
from __future__ import annotations

import argparse
import signal
import sys

from bench.errors import EXIT_BAD_INPUT, EXIT_CELL_FAILED, EXIT_INTERRUPTED, BenchError, worst


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, as for every bad input
        self.exit(EXIT_BAD_INPUT, f"bench: error: {message} (see bench --help)\n")


def parser() -> argparse.ArgumentParser:
    # Commands are imported here, not at module level: a spawned worker re-imports the main
    # module (this one, under the `bench` script), and its memory is a reported figure.
    from bench.commands import COMMANDS

    p = _Parser(prog="bench", description="Inference benchmarking harness.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return p


# SIGTERM (CI cancellation, `docker stop`, `kill`) and SIGHUP (a closed terminal) end a command
# the way Ctrl-C does: completed cells kept, status "interrupted", children killed; the exit code
# is 128 + the signal's number, as a shell reports a process that signal killed.
# Only the first of these signals interrupts: a second one (CI sends SIGINT, then SIGTERM a few
# seconds later) must not cut the clean-up that keeps the completed cells.
_TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Signals:
    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.received is None:
            self.received = signum
            raise KeyboardInterrupt  # the same path as Ctrl-C, from wherever the command is

    def install(self) -> dict[int, object]:
        previous = {}
        for sig in _TERMINATING:
            # A process started with SIGINT ignored (in the background of a shell) keeps ignoring it.
            if sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            previous[sig] = signal.signal(sig, self)
        return previous

    def exit_code(self, code: int) -> int:
        return 128 + self.received if self.received is not None and code == EXIT_INTERRUPTED else code


def main(argv: list[str] | None = None, script: bool = False) -> int:
    """`script`: this is the `bench` process itself (not a caller of main, such as a test, that
    owns sys.stdout): its stdout is guarded (bench.commands.output.guard_stdout), so that a full
    device or an ASCII-only terminal costs one line, not a traceback."""
    try:
        from bench.commands import COMMANDS
        from bench.commands.output import err, guard_stdout, stdout_failed
    except KeyboardInterrupt:  # Ctrl-C while the commands import: nothing started yet
        print("bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if script:
        guard_stdout()

    signals = _Signals()
    previous = signals.install()
    try:
        args = parser().parse_args(argv)
        code = COMMANDS[args.command].run(args)
    except BenchError as exc:
        err(str(exc))
        code = exc.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        code = EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stdout_failed():  # its line is out; the command's own answer stands unless this is worse
        code = worst(code, EXIT_CELL_FAILED)
    if signals.received not in (None, signal.SIGINT) and code == EXIT_INTERRUPTED:
        err(f"ended by {signal.Signals(signals.received).name} (exit {signals.exit_code(code)})")
    return signals.exit_code(code)


def leave(code: int) -> int:
    """`code`, or the process ends here with it when threads that are not daemons are still alive:
    a user's factory module may start one at import (in this process, while the model is
    prepared), and the interpreter would wait for it forever after the run is complete. Output
    is flushed first; a run's files are already complete when a command returns."""
    import os
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    return code


def entry() -> None:
    """The `bench` console script."""
    sys.exit(leave(main(script=True)))


if __name__ == "__main__":
    entry()
