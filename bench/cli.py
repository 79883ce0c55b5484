"""The command line: argv -> one command of bench.commands; a BenchError -> its one line and exit code.

Exit codes: 0 success; 1 the answer is "no" (an SLO failed, outputs disagree, a regression);
2 bad usage or input (one line on stderr); 3 a cell failed at run time while the others
completed; 130 interrupted (completed cells kept).
"""
from __future__ import annotations

import argparse
import sys

from bench.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, BenchError


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


def main(argv: list[str] | None = None) -> int:
    from bench.commands import COMMANDS
    from bench.commands.output import err

    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except BenchError as exc:
        err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
