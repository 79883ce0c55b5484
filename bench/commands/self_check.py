"""`bench self-check`: the harness measured against itself and its peers (bench.selfcheck).

Exit code: 0 every goal a check printed was met, 1 a goal was NOT met (the answer is "no"), 2 a
check could not run (it raised, or a part it needs is missing: CUDA, scipy, Ray); the worst wins.
A check with figures only (the timer) holds no goal. Each check still runs when another fails."""
from __future__ import annotations

import argparse
import json

from bench.commands.output import err
from bench.errors import UsageError, worst
from bench.selfcheck import CHECKS, DEFAULT_CHECKS


def add_parser(sub) -> None:
    p = sub.add_parser("self-check", help="harness overhead, timer resolution, kernel speed",
                       description="Measure the harness against itself and its peers; each goal is printed met or "
                                   "NOT met. Exit 0 every goal met, 1 a goal NOT met, 2 a check could not run (it "
                                   "raised, or a part it needs is missing: CUDA, scipy, Ray); the worst wins.")
    p.add_argument("--rounds", type=int, default=21, help="paired rounds of the two loops (default 21)")
    p.add_argument("--checks", default=",".join(DEFAULT_CHECKS),
                   help=f"comma-separated subset of {','.join(CHECKS)} (default: {','.join(DEFAULT_CHECKS)}; "
                        "loadgen and generator need mlcommons-loadgen; fidelity, the CUDA-graph harness against a "
                        "hand loop on ResNet-50-like fp16, needs a CUDA device)")
    p.add_argument("--runs", type=int, default=2,
                   help="reproducibility: runs of the suite, each compared with the next (default 2)")
    p.add_argument("--suite", default="benchmarks.toml", help="reproducibility: the suite to run (default benchmarks.toml)")
    p.add_argument("--slowdown", type=float, default=20.0, metavar="PCT",
                   help="reproducibility: how much slower its planted ONNX Runtime CPU targets run (default 20)")
    p.add_argument("--url", default="",
                   help="driver: a v2 REST infer URL (http://HOST:PORT/v2/models/NAME/infer) to measure the served "
                        "driver and wrk against, instead of the check's built-in loopback server (the driver check "
                        "needs wrk: apt-get install -y wrk)")
    p.add_argument("--json", action="store_true",
                   help="print the figures as JSON, each check with its verdict (met, NOT met, could not run, no "
                        "goal) and its goals")


def run(args: argparse.Namespace) -> int:
    from bench.selfcheck.check import Options, run_check

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
    if not 1 <= args.slowdown <= 500:
        raise UsageError(f"--slowdown {args.slowdown:g}: expected a percentage from 1 to 500")
    if args.url and "driver" not in names:
        raise UsageError("--url applies to --checks driver")
    if args.url:
        from bench.selfcheck.driver_rate import for_url

        checks = [for_url(args.url) if c.name == "driver" else c for c in checks]
    options = Options(args.rounds, args.runs, args.suite, args.slowdown / 100)
    outcomes = []
    for check in checks:
        outcome = run_check(check, options)
        outcomes.append(outcome)
        if not args.json:
            for line in outcome.lines:
                print(line, flush=True)
        if outcome.could_not_run:  # said as it happens: the checks after it may take minutes
            err(f"self-check {check.name} could not run: {outcome.could_not_run}")
    if args.json:
        print(json.dumps({o.name: o.as_json() for o in outcomes}, indent=1, default=str))
    unmet = {o.name: n for o in outcomes if (n := sum(not g.met for g in o.goals))}
    if unmet:
        err(f"self-check: {sum(unmet.values())} of {sum(len(o.goals) for o in outcomes)} goals NOT met: "
            + ", ".join(f"{name} ({n})" for name, n in unmet.items()))
    return worst(*(o.exit_code for o in outcomes))
