"""Is bench tune right, and what does it save? Measures the full grid of a suite's [tune.space]
(every configuration in every round, nothing eliminated: the ground truth), then runs bench tune
with several seeds, and prints for each: its pick, whether that is the grid's best or statistically
tied with it (the paired 95% interval against the best holds 1), and its cost against the grid's,
both measured here, in this one run.

    python scripts/tune_check.py tune.toml --seeds 1,2,3,4,5 --out /tmp/tune-check
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def tune(suite: str, out: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "bench.cli", "tune", suite, "--out", str(out), "--quiet", "--json", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("suite")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--out", default="results/tune-check")
    args = ap.parse_args()
    out = Path(args.out)
    grid = tune(args.suite, out / "grid", "--grid")
    best, ties = grid["pick"], set(grid["ties"])
    g = grid["cost"]
    print(f"grid (ground truth): {g['tried']} configurations x {grid['candidates'][0]['processes']} rounds = "
          f"{g['processes']} processes, {g['seconds']:.0f} s")
    by = {c["id"]: c for c in grid["candidates"]}
    print(f"  best: {best}  throughput {by[best]['objective']['value']:.0f}")
    print(f"  tied with it (paired 95% interval holds 1): {', '.join(sorted(ties)) or 'none'}")
    hits = 0
    seeds = [int(s) for s in args.seeds.split(",")]
    print("seed  pick  right?  processes  seconds  fraction of the grid's seconds (processes)")
    for seed in seeds:
        a = tune(args.suite, out / f"seed{seed}", "--seed", str(seed))
        right = a["pick"] == best or a["pick"] in ties
        hits += right
        c = a["cost"]
        print(f"{seed}  {a['pick']}  {'best' if a['pick'] == best else 'tie' if right else 'WRONG'}  "
              f"{c['processes']}  {c['seconds']:.0f}  {c['seconds'] / g['seconds']:.0%} "
              f"({c['processes'] / g['processes']:.0%})  end: {a['end']}; its ties: {', '.join(a['ties']) or 'none'}")
    print(f"right (best or tied) in {hits} of {len(seeds)}")


if __name__ == "__main__":
    main()
