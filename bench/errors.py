"""User-fixable errors, one type per kind, each carrying the exit code the CLI uses.

Only `bench.cli` catches these and turns them into one line on stderr; everything else raises.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_NO = 1  # a regression or an SLO failed: the answer is "no"
EXIT_BAD_INPUT = 2
EXIT_CELL_FAILED = 3
# `bench history` tested no series (an empty store, an --only that matches nothing, series all
# shorter than the gate needs): "no data", neither a pass nor a regression nor bad input, so a
# nightly job can tell a gate that passed from one that never looked.
EXIT_NO_DATA = 4
EXIT_INTERRUPTED = 130


# Which exit code wins when several things went wrong in one command: an interruption, then a
# failed cell (or results that could not be written), then bad input or a step that could not
# run (a Markdown path, a store), then the answer "no".
_SEVERITY = {EXIT_OK: 0, EXIT_NO: 1, EXIT_BAD_INPUT: 2, EXIT_CELL_FAILED: 3}


def worst(*codes: int) -> int:
    """The exit code of the worst thing that happened (an interruption, 128 + a signal, first)."""
    return max(codes, key=lambda c: _SEVERITY.get(c, 4), default=EXIT_OK)


class BenchError(Exception):
    """Base of the errors a user can fix; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BenchError):
    """benchmarks.toml is missing, malformed, or names something that does not exist."""


class ModelError(BenchError):
    """A model reference cannot be resolved, loaded, exported or bound to inputs."""


class ResultFileError(BenchError):
    """A result file is unreadable, malformed, or of a schema this reader refuses."""


class ResultWriteError(BenchError):
    """Results could not be written (a full disk, a read-only filesystem, no permission): the run
    ends, its completed cells kept in run.json where the disk allows (exit 3)."""

    exit_code = EXIT_CELL_FAILED


class UsageError(BenchError):
    """Bad command-line usage beyond what argparse catches (e.g. an output dir that exists)."""


class ExecutorError(BenchError):
    """The chosen executor cannot start: Ray not installed, a cluster address that does not answer."""


class CellFailure(Exception):
    """Raised inside a worker when one cell cannot run; becomes a failed cell, not an exit.

    `kind` is the cell's failure kind (bench.results.records.FailureKind): by default
    "unsupported", the target cannot run here as configured (a missing provider, device index,
    precision or library).
    """

    def __init__(self, message: str, kind: str = "unsupported"):
        super().__init__(message)
        self.kind = kind



# Why one request to a served target failed (bench.served): the classes a cell's error rate is
# split into, in the order a reader looks for them.
REQUEST_ERROR_KINDS = ("connect", "timeout", "http_status", "malformed")


class RequestFailed(Exception):
    """One request to a served target failed; the driver counts it by `kind` (REQUEST_ERROR_KINDS)
    and goes on: a failed request is a figure (the cell's error rate), never a failed cell.
    `reason` is one line, already free of secrets (no header values, no URL credentials)."""

    def __init__(self, kind: str, reason: str):
        if kind not in REQUEST_ERROR_KINDS:
            raise ValueError(f"request error kind {kind!r}: expected one of {', '.join(REQUEST_ERROR_KINDS)}")
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason
