"""Markdown summaries for CI job pages (reads results only)."""
from __future__ import annotations

from bench.report.table import fmt_estimate
from bench.report.targets import rank_targets
from bench.results.compare import Comparison
from bench.results.schema import Run


def run_summary(run: Run) -> str:
    lines = [f"## bench run `{run.run_id}` — suite `{run.suite.name}` ({run.status})", ""]
    failed = [c for c in run.cells if c.status == "failed"]
    slo_failed = [c for c in run.cells if c.slo is not None and not c.slo.passed]
    disagree = [c for c in run.cells if c.agreement is not None and c.agreement.verdict == "fail"]
    invalid = [c for c in run.cells if c.server is not None and not c.server.valid]
    verdict = "FAIL" if failed or slo_failed or disagree or invalid else "pass"
    lines += [f"**{verdict}**: {len(run.cells)} cells, {len(failed)} failed, {len(slo_failed)} SLO failures, "
              f"{len(disagree)} disagree with their reference, {len(invalid)} invalid server runs.", ""]
    for c in invalid:
        lines += [f"- `{c.id}` INVALID: " + "; ".join(c.server.validity)]
    if invalid:
        lines.append("")
    lines += ["| cell | status | samples/s | p50 ms | p99 ms | SLO | agreement |",
              "|---|---|---:|---:|---:|---|---|"]
    for c in run.cells:
        if c.metrics is None:
            lines.append(f"| `{c.id}` | {c.status}: {c.reason} | | | | | |")
            continue
        tp, lat = c.metrics.throughput, c.metrics.latency_ms
        slo = "-" if c.slo is None else ("pass" if c.slo.passed else "**FAIL** " + ", ".join(
            f"{k.metric} {k.value_ms:.3g} > {k.limit_ms:g}" for k in c.slo.checks if not k.passed))
        lines.append(f"| `{c.id}` | ok | {fmt_estimate(tp.value, tp.ci_low, tp.ci_high, 4)} | "
                     f"{fmt_estimate(lat.p50.value, lat.p50.ci_low, lat.p50.ci_high)} | "
                     f"{fmt_estimate(lat.p99.value, lat.p99.ci_low, lat.p99.ci_high)} | {slo} | "
                     f"{c.agreement.verdict if c.agreement else '-'} |")
    lines += ["", "### Targets ranked by throughput (★ = Pareto front of throughput vs p99)", "",
              "| group | rank | target | samples/s | p99 ms | |", "|---|---:|---|---:|---:|---|"]
    for r in rank_targets(run):
        mark = "★" if r.pareto else ("outputs disagree" if r.disagrees else "")
        lines.append(f"| {r.group} | {r.rank} | {r.cell.target.name} | {r.cell.metrics.throughput.value:,.0f} | "
                     f"{r.cell.metrics.latency_ms.p99.value:.3g} | {mark} |")
    from bench.report.gpu import gpu_markdown
    from bench.report.sweeps import sweeps

    lines += gpu_markdown(run)
    found = sweeps(run)
    if found:
        lines += ["", "### Sweeps (best: highest throughput whose p99 upper bound fits the budget)", "",
                  "| benchmark | target | scenario | axis | setting: samples/s @ p99 ms | best |", "|---|---|---|---|---|---|"]
        for s in found:
            curve = "; ".join(f"{p.setting}: {p.throughput:,.0f} @ {p.p99_ms:.3g}" for p in s.points)
            best = "-" if s.best is None else f"{s.axis} {s.best.setting}"
            lines.append(f"| {s.benchmark} | {s.target} | {s.scenario} | {s.axis} | {curve} | {best} |")
    return "\n".join(lines) + "\n"


def compare_summary(cmp: Comparison) -> str:
    lines = [f"## bench compare `{cmp.base_run}` → `{cmp.new_run}`", "",
             f"threshold ±{cmp.threshold:.0%}, alpha {cmp.alpha:g}; "
             f"{len(cmp.slower)} slower of {len(cmp.cells)} cells.", ""]
    if cmp.env_differences:
        lines += ["Environment differences: " + "; ".join(
            f"{d.field}: {d.base} → {d.new}{' (matters)' if d.matters else ''}" for d in cmp.env_differences), ""]
    lines += ["| cell | verdict | throughput ratio | p50 ratio | p99 ratio | why |", "|---|---|---:|---:|---:|---|"]
    for c in cmp.cells:
        def r(x):
            return "-" if x is None else f"{x.value:.3f} [{x.ci_low:.3f}, {x.ci_high:.3f}]"
        lines.append(f"| `{c.key}` | **{c.verdict}** | {r(c.throughput)} | {r(c.p50)} | {r(c.p99)} | {c.reason} |")
    return "\n".join(lines) + "\n"
