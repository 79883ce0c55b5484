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
    run.add_argument("--md", metavar="FILE", help="write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY when set)")
    run.add_argument("--record", action="store_true", help="record the run in the history store")
    run.add_argument("--db", metavar="URL", help="history store: postgresql://..., sqlite:///PATH or a file "
                     "(default results/history.sqlite)")

    cmp = sub.add_parser("compare", help="per-cell verdicts of NEW against BASE; exit 1 on a regression")
    cmp.add_argument("base", help="BASE run directory or run.json")
    cmp.add_argument("new", help="NEW run directory or run.json")
    cmp.add_argument("--threshold", type=float, default=5.0, metavar="PCT",
                     help="minimum effect size in percent (default 5)")
    cmp.add_argument("--alpha", type=float, default=0.05, help="significance level of the test (default 0.05)")
    cmp.add_argument("--allow-env-diff", action="store_true", help="compare cells even when environments differ")
    cmp.add_argument("--json", action="store_true", help="print the comparison as JSON")
    cmp.add_argument("--md", metavar="FILE", help="write a Markdown summary")

    rep = sub.add_parser("report", help="human reports from result files")
    rep.add_argument("runs", nargs="+", help="run directories or run.json files")
    rep.add_argument("--md", metavar="FILE", help="write a Markdown report")
    rep.add_argument("--budget-ms", type=float, metavar="MS",
                     help="latency budget (p99) for the best batch size / concurrency (default: the SLO's p99)")

    hist = sub.add_parser("history", help="cells over time with change points; exit 1 when the latest run regresses")
    hist.add_argument("action", nargs="?", choices=["show", "add"], default="show",
                      help="show (default) or add RUN... to the store")
    hist.add_argument("runs", nargs="*", help="with add: run directories or run.json files")
    hist.add_argument("--db", metavar="URL", help="history store (default results/history.sqlite)")
    hist.add_argument("--metric", choices=["throughput", "p50", "p99"], default="throughput")
    hist.add_argument("--threshold", type=float, default=5.0, metavar="PCT",
                      help="smallest step in percent that counts as a regression (default 5)")
    hist.add_argument("--only", metavar="GLOB", help="cells whose key (BENCH|MODEL|TARGET|bN|SCENARIO) matches")
    hist.add_argument("--json", action="store_true", help="print the series as JSON")

    env = sub.add_parser("env", help="print the environment fingerprint as JSON")
    env.add_argument("--json", action="store_true", help="accepted for symmetry; the output is always JSON")

    sc = sub.add_parser("self-check", help="harness overhead, timer resolution, kernel speed")
    sc.add_argument("--rounds", type=int, default=21, help="paired rounds of the two loops (default 21)")
    sc.add_argument("--checks", default="overhead,timer,kernels,bootstrap,jit",
                    help="comma-separated subset of overhead,timer,kernels,bootstrap,jit,loadgen,generator,fidelity "
                         "(default: the first five; loadgen and generator need mlcommons-loadgen; fidelity, the "
                         "CUDA-graph harness against a hand loop on ResNet-50-like fp16, needs a CUDA device)")
    sc.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


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

    from bench.results.store import redact

    # argv goes into run.json: a --db URL's password must not.
    argv = tuple(redact(a) for a in sys.argv)
    result = run_suite(suite, Path(args.out), only=args.only, argv=argv, progress=progress)
    if args.json:
        print(json.dumps(to_json(result.run), indent=1))
    else:
        # Not a terminal (CI logs, pipes): rich would assume 80 columns and cut every cell.
        width = None if sys.stdout.isatty() else 200
        from bench.report.sweeps import sweeps, sweeps_table

        from bench.report.gpu import gpu_table

        console = Console(highlight=False, width=width)
        console.print(summary_table(result.run))
        gpu = gpu_table(result.run)
        if gpu is not None:
            console.print(gpu)
        if sweeps(result.run):
            console.print(sweeps_table(result.run))
    print(f"results: {result.path}", file=sys.stderr)
    _write_run_md(result.run, args.md)
    if args.record:
        from bench.results.store import open_store, redact

        store = open_store(args.db)
        try:
            added = store.add_run(result.run)
        finally:
            store.close()
        print(f"history: {'recorded in' if added else 'already in'} {redact(args.db or 'results/history.sqlite')}",
              file=sys.stderr)
    if result.failed:
        _err(f"{len(result.failed)} cell(s) failed: " + "; ".join(f"{c.id}: {c.reason}" for c in result.failed))
        from bench.report.sweeps import sweeps

        for s in sweeps(result.run):
            if s.memory_limit:
                _err(f"{s.benchmark}/{s.target} {s.scenario}: {s.memory_limit}")
    if result.disagreeing:
        _err(f"outputs disagree with the reference in {len(result.disagreeing)} cell(s): "
             + "; ".join(f"{c.id}: {c.agreement.reason}" for c in result.disagreeing))
    if result.slo_failed:
        _err(f"SLO failed in {len(result.slo_failed)} cell(s): " + ", ".join(c.id for c in result.slo_failed))
    for c in result.invalid:
        _err(f"{c.id}: server run INVALID: " + "; ".join(c.server.validity))
    for c in result.run.cells:
        if c.gpu is not None and c.gpu.throttled:
            _err(f"{c.id}: GPU clocks throttled during the measured window ({', '.join(c.gpu.throttle_reasons)}): "
                 "its figures are not the device's steady best")
    if result.interrupted:
        _err(f"interrupted: {len(result.run.cells)} completed cell(s) kept in {result.path}")
        return EXIT_INTERRUPTED
    if result.failed:
        return EXIT_CELL_FAILED
    return EXIT_NO if result.disagreeing or result.slo_failed or result.invalid else EXIT_OK


def _write_md(text: str, path: str | None, step_summary: bool) -> None:
    import os

    targets = [path] if path else []
    if step_summary and os.environ.get("GITHUB_STEP_SUMMARY"):
        targets.append(os.environ["GITHUB_STEP_SUMMARY"])
    for i, target in enumerate(targets):
        try:
            with open(target, "a" if i > 0 or not path else "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise BenchError(f"{target}: cannot write the Markdown summary: {exc.strerror}") from None


def _write_run_md(run, path: str | None) -> None:
    from bench.report.markdown import run_summary

    _write_md(run_summary(run), path, step_summary=True)


def _threshold(pct: float, flag: str = "--threshold") -> float:
    if not 0 <= pct < 100:
        raise BenchError(f"{flag} {pct:g}: expected a percentage in [0, 100)")
    return pct / 100


def _cmd_compare(args: argparse.Namespace) -> int:
    from bench.report.compare import comparison_table
    from bench.report.markdown import compare_summary
    from bench.results.compare import compare_runs
    from bench.results.schema import to_json

    if not 0 < args.alpha < 1:
        raise BenchError(f"--alpha {args.alpha:g}: expected a number between 0 and 1")
    cmp = compare_runs(Path(args.base), Path(args.new), _threshold(args.threshold), args.alpha, args.allow_env_diff)
    if args.json:
        print(json.dumps(to_json(cmp), indent=1))
    else:
        from rich.console import Console

        Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(comparison_table(cmp))
        for d in cmp.env_differences:
            print(f"environment: {d.field}: {d.base} -> {d.new}{' (matters)' if d.matters else ''}")
    _write_md(compare_summary(cmp), args.md, step_summary=True)
    if cmp.slower:
        _err(f"{len(cmp.slower)} cell(s) slower: " + ", ".join(c.key for c in cmp.slower))
        return EXIT_NO
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.report.markdown import run_summary
    from bench.report.table import summary_table, targets_table
    from bench.results.files import read_run

    runs = [read_run(Path(r)) for r in args.runs]
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    from bench.report.sweeps import sweeps_table

    if args.budget_ms is not None and not args.budget_ms > 0:
        raise BenchError(f"--budget-ms {args.budget_ms:g}: expected a number of ms > 0")
    from bench.report.gpu import gpu_table

    for run in runs:
        console.print(summary_table(run))
        gpu = gpu_table(run)
        if gpu is not None:
            console.print(gpu)
        console.print(targets_table(run))
        console.print(sweeps_table(run, args.budget_ms))
    if args.md:
        _write_md("\n".join(run_summary(r) for r in runs), args.md, step_summary=False)
    return EXIT_OK


def _cmd_history(args: argparse.Namespace) -> int:
    import fnmatch

    from bench.results.files import read_run
    from bench.results.history import analyse
    from bench.results.schema import to_json
    from bench.results.store import open_store, redact

    threshold = _threshold(args.threshold)
    if args.action == "add" and not args.runs:
        raise BenchError("history add: name at least one run directory or run.json")
    if args.action == "show" and args.runs:
        raise BenchError(f"history: unexpected arguments {args.runs}; to record runs use: bench history add RUN...")
    runs = [read_run(Path(r)) for r in args.runs]  # read all first: a bad file writes nothing
    store = open_store(args.db)
    try:
        if args.action == "add":
            for run in runs:
                added = store.add_run(run)
                print(f"{run.run_id}: {'recorded' if added else 'already recorded'} in {redact(args.db or 'results/history.sqlite')}")
            return EXIT_OK
        rows = store.rows()
    finally:
        store.close()
    if args.only:
        rows = [r for r in rows if fnmatch.fnmatch(r.cell_key, args.only)]
    reports = analyse(rows, args.metric, threshold)
    if not reports:
        print("history: no recorded cells" + (f" match --only {args.only!r}" if args.only else ""))
        return EXIT_OK
    if args.json:
        print(json.dumps([to_json(r) for r in reports], indent=1))
    else:
        from bench.report.history import history_text

        print(history_text(reports, threshold))
    gate = [r for r in reports if r.latest_starts_regression]
    if gate:
        _err(f"the latest run starts a regression in {len(gate)} series: " + ", ".join(r.cell_key for r in gate))
        return EXIT_NO
    return EXIT_OK


def _cmd_env(args: argparse.Namespace) -> int:
    from bench.measure.environment import fingerprint
    from bench.results.schema import to_json

    print(json.dumps(to_json(fingerprint()), indent=1))
    return EXIT_OK


SELF_CHECKS = ("overhead", "timer", "kernels", "bootstrap", "jit", "loadgen", "generator", "fidelity")
DEFAULT_CHECKS = "overhead,timer,kernels,bootstrap,jit"


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
        report["overhead"] = dict(o.__dict__)
        if not args.json:
            print("harness overhead (tiny ONNX Add model, onnxruntime CPU, 1 thread; medians of "
                  f"{o.rounds} paired rounds of ~{o.calls_per_round} calls, ratio and difference taken within each round)")
            print(f"  bare session.run loop      {o.bare_ns_per_call:9.0f} ns/call")
            print(f"  harness single-stream loop {o.harness_ns_per_call:9.0f} ns/call")
            print(f"  harness/bare throughput    {o.throughput_ratio:9.2%}   "
                  f"(target >= 98%: {_met(o.throughput_ratio >= 0.98)})")
            print(f"  added per call             {o.added_ns_per_call:9.0f} ns      "
                  f"(target <= 1000 ns: {_met(o.added_ns_per_call <= 1000)})")
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
                print(f"  speed-up {b.speedup:.1f}x   (target >= 10x: {_met(b.speedup >= 10)})")
    if "jit" in checks:
        j = selfcheck.check_jit()
        report["jit"] = j.__dict__
        if not args.json:
            print("kernel JIT (every kernel, fresh process)")
            print(f"  compile into an empty cache {j.cold_s:.2f} s (target < 5 s: {_met(j.cold_s < 5)}); "
                  f"load from the cache {j.warm_s:.2f} s")
    if "loadgen" in checks or "generator" in checks:
        from bench.scenarios import loadgen

        if not loadgen.available():
            raise BenchError("--checks loadgen/generator need MLPerf LoadGen: pip install mlcommons-loadgen")
    if "loadgen" in checks:
        lg = selfcheck.check_loadgen()
        report["loadgen"] = {**lg.__dict__, "loadgen_server": lg.loadgen_server.__dict__,
                             "loadgen_offline": lg.loadgen_offline.__dict__}
        if not args.json:
            s, o = lg.loadgen_server, lg.loadgen_offline
            print(f"server scenario vs MLPerf LoadGen (synthetic target, {lg.service_us:g} µs service, GIL released, "
                  f"Poisson {lg.rate_qps:g}/s, rho = {lg.rate_qps * lg.service_us / 1e6:.2f}; M/D/1 mean {lg.md1_mean_ms:.3f} ms)")
            print(f"  ours     achieved {lg.ours_server_qps:8.1f}/s   mean {lg.ours_server_mean_ms:.3f} ms   "
                  f"p99 {lg.ours_server_p99_ms:.3f} ms")
            print(f"  LoadGen  achieved {s.samples_per_s:8.1f}/s   mean {s.mean_ms:.3f} ms   p99 {s.p99_ms:.3f} ms   "
                  f"({'VALID' if s.valid else 'INVALID'})")
            print(f"  offline: ours back to back {lg.ours_offline_qps:,.1f}/s; LoadGen Offline {o.samples_per_s:,.1f}/s "
                  f"({'VALID' if o.valid else 'INVALID'})")
    if "generator" in checks:
        g = selfcheck.check_generator()
        report["generator"] = g.__dict__
        if not args.json:
            print(f"load generator limit (null backend; issue error p99 must stay under {g.limit_error_us:g} µs)")
            for rate, err in zip(g.rates, g.issue_error_p99_us):
                print(f"  {rate:>9,.0f}/s   issue error p99 {err:8.1f} µs   {'ok' if err <= g.limit_error_us else 'over'}")
            best = f"{g.highest_sustained_qps:,.0f}/s" if g.highest_sustained_qps else "none of the rates tried"
            lgn = f"{g.loadgen_null_offline_qps:,.0f}/s" if g.loadgen_null_offline_qps else "n/a"
            print(f"  highest sustained: {best}; LoadGen with a null SUT (Offline): {lgn}")
    if "fidelity" in checks:
        f = selfcheck.check_fidelity()
        report["fidelity"] = {**f.__dict__, "points": [p.__dict__ for p in f.points]}
        if not args.json:
            print(f"GPU fidelity: harness vs a hand-written loop ({f.model}, {f.mode}, {f.precision}"
                  f"{', channels_last' if f.channels_last else ''}, {f.device}; medians of paired rounds)")
            if f.note:
                print(f"  {f.note}")
            for p in f.points:
                goal = 0.98 if p.batch_size >= 256 else 0.95
                print(f"  batch {p.batch_size:>4}: hand loop {p.hand_ms_per_batch:8.3f} ms   harness "
                      f"{p.harness_ms_per_batch:8.3f} ms   harness/hand throughput {p.ratio:7.2%}   "
                      f"(target >= {goal:.0%}: {_met(p.ratio >= goal)})")
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    return EXIT_OK


COMMANDS = {"run": _cmd_run, "compare": _cmd_compare, "report": _cmd_report, "history": _cmd_history,
            "env": _cmd_env, "self-check": _cmd_self_check}


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
