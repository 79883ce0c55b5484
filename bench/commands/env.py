"""`bench env`: the environment fingerprint, as JSON."""
from __future__ import annotations

import argparse
import json

from bench.errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("env", help="print the environment fingerprint as JSON")
    p.add_argument("--json", action="store_true", help="accepted for symmetry; the output is always JSON")


def run(args: argparse.Namespace) -> int:
    from bench.codec import to_json
    from bench.measure.environment import fingerprint

    print(json.dumps(to_json(fingerprint()), indent=1))
    return EXIT_OK
