"""The command line: the only place that parses argv, prints for people, and exits.

Exit codes: 0 success; 1 an SLO failed or outputs disagree with the reference; 2 bad usage or input (one line on stderr);
3 a cell failed at run time while the others completed; 130 interrupted (completed cells kept).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.errors import (
    EXIT_BAD_INPUT, EXIT_CELL_FAILED, EXIT_INTERRUPTED, EXIT_NO, EXIT_OK, BenchError,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, as for every bad input
        self.exit(EXIT_BAD_INPUT, f"bench: error: {message} (see bench --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bench", description="Inference benchmarking harness.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a suite (default ./benchmarks.toml)")
    run.add_argument("suite", nargs="?", default="benchmarks.toml", help="suite file (TOML)")
    run.add_argument("--only", metavar="GLOB", help="run cells whose id (BENCH/TARGET/bN/SCENARIO) or benchmark matches")
    run.add_argument("--out", metavar="DIR", default="results", help="results root (default: results)")
    run.add_argument("--quick", action="store_true", help="smoke run: a tenth of the stop times, at most 1 s a cell")
    run.add_argument("--json", action="store_true", help="print run.json to stdout instead of the table")

    env = sub.add_parser("env", help="print the environment fingerprint as JSON")
    env.add_argument("--json", action="store_true", help="accepted for symmetry; the output is always JSON")

    sc = sub.add_parser("self-check", help="harness overhead, timer resolution, kernel speed")
    sc.add_argument("--rounds", type=int, default=7, help="interleaved rounds of each loop (default 7)")
    sc.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p


def _err(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.config import load_suite
    from bench.report.table import progress_line, summary_table
    from bench.results.schema import to_json
    from bench.scenarios.suite import Progress, run_suite

    suite = load_suite(args.suite, quick=args.quick)

    def progress(event: Progress) -> None:
        if event.cell is None:
            print(f"[{event.index + 1}/{event.total}] {event.planned.id} ...", file=sys.stderr, flush=True)
        else:
            print(progress_line(event.index, event.total, event.cell), file=sys.stderr, flush=True)

    result = run_suite(suite, Path(args.out), only=args.only, argv=tuple(sys.argv), progress=progress)
    if args.json:
        print(json.dumps(to_json(result.run), indent=1))
    else:
        # Not a terminal (CI logs, pipes): rich would assume 80 columns and cut every cell.
        width = None if sys.stdout.isatty() else 200
        Console(highlight=False, width=width).print(summary_table(result.run))
    print(f"results: {result.path}", file=sys.stderr)
    if result.failed:
        _err(f"{len(result.failed)} cell(s) failed: " + "; ".join(f"{c.id}: {c.reason}" for c in result.failed))
    if result.disagreeing:
        _err(f"outputs disagree with the reference in {len(result.disagreeing)} cell(s): "
             + "; ".join(f"{c.id}: {c.agreement.reason}" for c in result.disagreeing))
    if result.slo_failed:
        _err(f"SLO failed in {len(result.slo_failed)} cell(s): " + ", ".join(c.id for c in result.slo_failed))
    if result.interrupted:
        _err(f"interrupted: {len(result.run.cells)} completed cell(s) kept in {result.path}")
        return EXIT_INTERRUPTED
    if result.failed:
        return EXIT_CELL_FAILED
    return EXIT_NO if result.disagreeing or result.slo_failed else EXIT_OK


def _cmd_env(args: argparse.Namespace) -> int:
    from bench.measure.environment import fingerprint
    from bench.results.schema import to_json

    print(json.dumps(to_json(fingerprint()), indent=1))
    return EXIT_OK


def _cmd_self_check(args: argparse.Namespace) -> int:
    from bench import selfcheck

    if args.rounds < 1:
        raise BenchError(f"--rounds {args.rounds}: expected an integer >= 1")
    overhead = selfcheck.check_overhead(rounds=args.rounds)
    timer = selfcheck.check_timer()
    kern = selfcheck.check_kernels()
    if args.json:
        print(json.dumps({
            "overhead": {**overhead.__dict__, "throughput_ratio": overhead.throughput_ratio,
                         "added_ns_per_call": overhead.added_ns_per_call},
            "timer": timer.__dict__, "kernels": kern.__dict__,
        }, indent=1))
        return EXIT_OK
    ok_ratio = overhead.throughput_ratio >= 0.98
    ok_added = overhead.added_ns_per_call <= 1000
    print("harness overhead (tiny ONNX Add model, onnxruntime CPU, 1 thread; medians of "
          f"{overhead.rounds} interleaved rounds of ~{overhead.calls_per_round} calls)")
    print(f"  bare session.run loop      {overhead.bare_ns_per_call:9.0f} ns/call")
    print(f"  harness single-stream loop {overhead.harness_ns_per_call:9.0f} ns/call")
    print(f"  harness/bare throughput    {overhead.throughput_ratio:9.2%}   (target >= 98%: {'met' if ok_ratio else 'NOT met'})")
    print(f"  added per call             {overhead.added_ns_per_call:9.0f} ns      (target <= 1000 ns: {'met' if ok_added else 'NOT met'})")
    print("timer (time.perf_counter_ns)")
    print(f"  stated resolution {timer.stated_resolution_ns:.0f} ns; smallest step seen {timer.min_step_ns} ns; "
          f"median cost of one read {timer.median_read_ns:.0f} ns")
    print(f"kernels (latency summary of {kern.n:,} samples: p50/p90/p95/p99/p99.9, mean, min, max)")
    print(f"  numba {kern.kernel_ms:.1f} ms; numpy {kern.numpy_ms:.1f} ms; ratio {kern.numpy_ms / kern.kernel_ms:.2f}x")
    return EXIT_OK


COMMANDS = {"run": _cmd_run, "env": _cmd_env, "self-check": _cmd_self_check}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BenchError as exc:
        _err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
