"""One module per command, each with `add_parser(subparsers)` and `run(args) -> exit code`;
COMMANDS lists them in the order `bench --help` shows."""
from __future__ import annotations

from bench.commands import compare, env, export, history, monitor, report, run, self_check, tune

COMMANDS = {
    "run": run,
    "tune": tune,
    "compare": compare,
    "report": report,
    "history": history,
    "monitor": monitor,
    "export": export,
    "env": env,
    "self-check": self_check,
}
