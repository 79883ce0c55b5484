"""`bench self-check`: the harness measured against itself and its peers (bench.selfcheck)."""
from __future__ import annotations

import argparse
import json

from bench.errors import EXIT_OK, UsageError
from bench.selfcheck import CHECKS, DEFAULT_CHECKS


def add_parser(sub) -> None:
    p = sub.add_parser("self-check", help="harness overhead, timer resolution, kernel speed")
    p.add_argument("--rounds", type=int, default=21, help="paired rounds of the two loops (default 21)")
    p.add_argument("--checks", default=",".join(DEFAULT_CHECKS),
                   help=f"comma-separated subset of {','.join(CHECKS)} (default: {','.join(DEFAULT_CHECKS)}; "
                        "loadgen and generator need mlcommons-loadgen; fidelity, the CUDA-graph harness against a "
                        "hand loop on ResNet-50-like fp16, needs a CUDA device)")
    p.add_argument("--runs", type=int, default=2,
                   help="reproducibility: runs of the suite, each compared with the next (default 2)")
    p.add_argument("--suite", default="benchmarks.toml", help="reproducibility: the suite to run (default benchmarks.toml)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    from bench.selfcheck.check import Options

    if args.rounds < 1:
        raise UsageError(f"--rounds {args.rounds}: expected an integer >= 1")
    if args.runs < 2:
        raise UsageError(f"--runs {args.runs}: expected an integer >= 2 (runs are compared in pairs)")
    names = [c.strip() for c in args.checks.split(",") if c.strip()]
    if not names or any(n not in CHECKS for n in names):
        raise UsageError(f"--checks {args.checks!r}: allowed: {', '.join(CHECKS)}")
    checks = [c for c in CHECKS.values() if c.name in names]  # in the registry's order
    if any(c.needs_loadgen for c in checks):
        from bench.scenarios import loadgen_sut

        if not loadgen_sut.available():
            raise UsageError("--checks loadgen/generator need MLPerf LoadGen: pip install mlcommons-loadgen")
    report = {}
    for check in checks:
        record = check.run(Options(args.rounds, args.runs, args.suite))
        report[check.name] = check.as_json(record)
        if not args.json:
            for line in check.lines(record):
                print(line)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    return EXIT_OK
