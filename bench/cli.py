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
    sc.add_argument("--rounds", type=int, default=11, help="interleaved rounds of each loop (default 11)")
    sc.add_argument("--checks", default="overhead,timer,kernels,bootstrap,jit",
                    help="comma-separated subset of overhead,timer,kernels,bootstrap,jit (default: all)")
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


SELF_CHECKS = ("overhead", "timer", "kernels", "bootstrap", "jit")


def _cmd_self_check(args: argparse.Namespace) -> int:
    from bench import selfcheck

    if args.rounds < 1:
        raise BenchError(f"--rounds {args.rounds}: expected an integer >= 1")
    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    bad = [c for c in checks if c not in SELF_CHECKS]
    if bad or not checks:
        raise BenchError(f"--checks {args.checks!r}: allowed: {', '.join(SELF_CHECKS)}")
    report: dict[str, dict] = {}
    if "overhead" in checks:
        o = selfcheck.check_overhead(rounds=args.rounds)
        report["overhead"] = {**o.__dict__, "throughput_ratio": o.throughput_ratio, "added_ns_per_call": o.added_ns_per_call}
        if not args.json:
            print("harness overhead (tiny ONNX Add model, onnxruntime CPU, 1 thread; medians of "
                  f"{o.rounds} interleaved rounds of ~{o.calls_per_round} calls)")
            print(f"  bare session.run loop      {o.bare_ns_per_call:9.0f} ns/call")
            print(f"  harness single-stream loop {o.harness_ns_per_call:9.0f} ns/call")
            print(f"  harness/bare throughput    {o.throughput_ratio:9.2%}   "
                  f"(target >= 98%: {'met' if o.throughput_ratio >= 0.98 else 'NOT met'})")
            print(f"  added per call             {o.added_ns_per_call:9.0f} ns      "
                  f"(target <= 1000 ns: {'met' if o.added_ns_per_call <= 1000 else 'NOT met'})")
    if "timer" in checks:
        t = selfcheck.check_timer()
        report["timer"] = t.__dict__
        if not args.json:
            print("timer (time.perf_counter_ns)")
            print(f"  stated resolution {t.stated_resolution_ns:.0f} ns; smallest step seen {t.min_step_ns} ns; "
                  f"median cost of one read {t.median_read_ns:.0f} ns")
    if "kernels" in checks:
        k = selfcheck.check_kernels()
        report["kernels"] = k.__dict__
        if not args.json:
            print(f"kernels (latency summary of {k.n:,} samples: p50/p90/p95/p99/p99.9, mean, min, max)")
            print(f"  numba {k.kernel_ms:.1f} ms; numpy {k.numpy_ms:.1f} ms; ratio {k.numpy_ms / k.kernel_ms:.2f}x")
    if "bootstrap" in checks:
        b = selfcheck.check_bootstrap()
        report["bootstrap"] = {**b.__dict__, "speedup": b.speedup}
        if not args.json:
            print(f"bootstrap (95% percentile intervals of the mean and p99, n = {b.n:,}, {b.resamples} resamples; "
                  "medians of 3)")
            print(f"  ours  {b.ours_s * 1e3:8.1f} ms   mean [{b.ours_mean_ci[0]:.1f}, {b.ours_mean_ci[1]:.1f}]   "
                  f"p99 [{b.ours_p99_ci[0]:.1f}, {b.ours_p99_ci[1]:.1f}]")
            if b.scipy_s is None:
                print(f"  scipy: {b.note}")
            else:
                print(f"  scipy {b.scipy_s * 1e3:8.1f} ms   mean [{b.scipy_mean_ci[0]:.1f}, {b.scipy_mean_ci[1]:.1f}]   "
                      f"p99 [{b.scipy_p99_ci[0]:.1f}, {b.scipy_p99_ci[1]:.1f}]")
                print(f"  speed-up {b.speedup:.1f}x   (target >= 10x: {'met' if b.speedup >= 10 else 'NOT met'})")
    if "jit" in checks:
        j = selfcheck.check_jit()
        report["jit"] = j.__dict__
        if not args.json:
            print("kernel JIT (every kernel, fresh process)")
            print(f"  compile into an empty cache {j.cold_s:.2f} s (target < 5 s: {'met' if j.cold_s < 5 else 'NOT met'}); "
                  f"load from the cache {j.warm_s:.2f} s")
    if args.json:
        print(json.dumps(report, indent=1))
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
