"""`bench tune`: the best configuration of a benchmark's targets under an SLO, raced with a stated
guarantee (bench.tune, bench.analysis.race); writes tune.json, the journal and each session's run.json.

Exit: 0 a pick; 1 no configuration shown to meet the SLO (the closest is named); 2 bad input;
3 every candidate failed; 130 interrupted (everything measured is kept: run the same command again
to continue).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.commands.output import check_html_path, err, html_renderer, write_html
from bench.errors import EXIT_CELL_FAILED, EXIT_INTERRUPTED, EXIT_NO, EXIT_OK, BenchError, ConfigError, UsageError, worst


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="search a benchmark's target knobs and batch size for the best configuration "
                                    "under an SLO, with a stated guarantee",
                       description="Race the configurations of the suite's [tune.space] (or --space): each round "
                                   "runs one worker process per candidate, and a candidate leaves the race once it "
                                   "is shown worse than the leader (or to break the SLO). See docs/tune.md.")
    p.add_argument("suite", nargs="?", default="benchmarks.toml", metavar="SUITE")
    p.add_argument("--benchmark", metavar="NAME", help="the [[benchmark]] to tune (default: tune.benchmark, or the "
                                                         "only one)")
    p.add_argument("--scenario", metavar="S", help="the scenario (default: tune.scenario, or the benchmark's first)")
    p.add_argument("--objective", metavar="FIGURE", help="throughput | mean | p50 | p90 | p95 | p99 | p999 (default: "
                                                         "tune.objective, or throughput)")
    p.add_argument("--slo", metavar="KEY=MS", action="append", help="a latency limit, e.g. p99_ms=20 (repeatable; "
                                                                    "default: tune.slo, or the benchmark's slo)")
    p.add_argument("--budget-s", type=float, metavar="S", help="seconds of measuring the search may spend "
                                                               "(default: tune.budget_s, or 1800)")
    p.add_argument("--space", metavar="FILE|TABLE", help="the search space: a TOML file with a [space] table, or "
                                                         "inline: 'batch_size = [1, 4], threads = [1, 2]'")
    p.add_argument("--seed", type=int, metavar="N", help="the search's seed (round orders, proposals)")
    p.add_argument("--out", metavar="DIR", help="the search's directory (default: results/tune-BENCHMARK); run "
                                                "again with the same DIR to continue an interrupted search")
    p.add_argument("--write-suite", metavar="FILE", help="write the pick as a suite that bench run takes unchanged")
    p.add_argument("--html", metavar="FILE", help="write the answer as a self-contained HTML page")
    p.add_argument("--json", action="store_true", help="print tune.json to stdout instead of the summary")
    p.add_argument("--grid", action="store_true", help="measure every configuration max_rounds times, eliminating "
                                                       "none (the ground truth a search is checked against)")
    p.add_argument("--quick", action="store_true", help="a tenth of the stop times (a smoke run)")
    p.add_argument("--executor", default="local", metavar="NAME", help="local (default) or ray (docs/fleet.md)")
    p.add_argument("--address", metavar="HOST:PORT", help="--executor ray: the Ray head's address")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _slo(values: list[str] | None) -> dict[str, float] | None:
    if not values:
        return None
    out = {}
    for v in values:
        key, sep, ms = v.partition("=")
        try:
            out[key.strip()] = float(ms)
        except ValueError:
            raise UsageError(f"--slo {v!r}: expected KEY=MS, e.g. p99_ms=20") from None
        if not sep:
            raise UsageError(f"--slo {v!r}: expected KEY=MS, e.g. p99_ms=20")
    return out


def run(args: argparse.Namespace) -> int:
    from bench.codec import to_json
    from bench.commands.live import RunProgress, choose_mode
    from bench.config.suite import load_suite
    from bench.report.tune_text import tune_lines
    from bench.results.stores import redact
    from bench.runner.executors import executor_factory
    from bench.tune.search import run_tune
    from bench.tune.space import parse_space_arg, read_tune

    executor = executor_factory(args.executor, args.address or
                                (os.environ.get("RAY_ADDRESS") if args.executor == "ray" else None))
    if args.html:  # checked before the search: a bad path or a missing extra costs one line, not a search
        check_html_path(args.html)
        html_renderer()
    if args.write_suite:
        _check_suite_path(args.write_suite)
    if args.budget_s is not None and not args.budget_s > 0:
        raise UsageError(f"--budget-s {args.budget_s:g}: expected seconds > 0")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed {args.seed}: expected an integer >= 0")
    suite = load_suite(args.suite, quick=args.quick)
    text = Path(args.suite).read_text()
    spec = read_tune(suite, text, str(args.suite), benchmark=args.benchmark, objective=args.objective,
                     slo=_slo(args.slo), space=parse_space_arg(args.space) if args.space else None,
                     budget_s=args.budget_s, seed=args.seed, scenario=args.scenario)
    out_dir = Path(args.out or Path("results") / f"tune-{spec.benchmark.name}")
    argv = tuple(redact(a) for a in sys.argv)
    with RunProgress(choose_mode(args.quiet)) as progress:
        result = run_tune(suite, spec, out_dir, argv=argv, grid=args.grid, progress=progress, executor=executor)
    answer = result.answer
    if args.json:
        print(json.dumps(to_json(answer), indent=1))
    else:
        for line in tune_lines(answer):
            print(line)
    print(f"search: {out_dir} (tune.json, tune.jsonl, one run.json per session)", file=sys.stderr)
    codes = [EXIT_OK]
    if args.write_suite and answer.pick and not result.interrupted:
        try:
            from bench.tune.write import write_pick_suite

            write_pick_suite(Path(args.write_suite), text, str(args.suite), spec, answer.pick)
            print(f"suite of the pick: {args.write_suite} (bench run {args.write_suite})", file=sys.stderr)
        except BenchError as exc:
            err(str(exc))
            codes.append(exc.exit_code)
    if args.html:
        try:
            from bench.report.tune_html import tune_html

            write_html(tune_html(answer), args.html)
            print(f"HTML report: {args.html}", file=sys.stderr)
        except BenchError as exc:
            err(str(exc))
            codes.append(exc.exit_code)
    if result.interrupted:
        err(f"interrupted: every measured process is kept in {out_dir}; run the same command again to continue")
        codes.append(EXIT_INTERRUPTED)
    elif answer.outcome == "slo unmet":
        err(f"no configuration was shown to meet the SLO; the closest: {answer.closest}")
        codes.append(EXIT_NO)
    elif answer.outcome == "no result":
        err("no configuration could be measured: every candidate failed (each one's reason is in tune.json)")
        codes.append(EXIT_CELL_FAILED)
    return worst(*codes)


def _check_suite_path(path: str) -> None:
    p = Path(path)
    if p.exists() and p.is_dir():
        raise UsageError(f"--write-suite {path}: is a directory; give a file name such as tuned.toml")
    if not p.parent.exists() if str(p.parent) else False:
        raise UsageError(f"--write-suite {path}: the directory {p.parent} does not exist")
    if p.suffix != ".toml":
        raise ConfigError(f"--write-suite {path}: a suite file ends in .toml")
