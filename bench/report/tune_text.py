"""The answer of `bench tune` as plain lines for a terminal: the pick and its figures, its ties,
the guarantee, the confirmation against the default, the cost, and the candidates table."""
from __future__ import annotations

from bench.results.tune import Figure, TuneAnswer


def _fig(f: Figure | None, digits: int = 3) -> str:
    if f is None:
        return "-"
    if f.low is None or f.high is None:
        return f"{f.value:.{digits}g} (1 process)"
    return f"{f.value:.{digits}g} [{f.low:.{digits}g}, {f.high:.{digits}g}]"


def candidate_rows(answer: TuneAnswer, limit: int = 40) -> list[list[str]]:
    order = {"pick": 0, "tie": 1, "racing": 2, "eliminated": 3, "slo": 4, "failed": 5, "untried": 6}
    sign = -1 if answer.higher_is_better else 1
    measured = sorted((c for c in answer.candidates if c.status != "untried"),
                      key=lambda c: (order[c.status], sign * (c.objective.value if c.objective else 0)))
    rows = []
    for c in measured[:limit]:
        vs = "-" if c.vs_pick is None else (f"{c.vs_pick.ratio:.3f}" + (
            f" [{c.vs_pick.low:.3f}, {c.vs_pick.high:.3f}]" if c.vs_pick.low is not None else ""))
        rows.append([c.id, c.status, str(c.processes), _fig(c.objective), _fig(c.throughput), _fig(c.p99_ms), vs,
                     c.reason or ("on the Pareto front" if c.pareto else "")])
    return rows


HEADER = ["candidate", "status", "proc", "objective", "samples/s", "p99 ms", "vs leader", "why"]


def tune_lines(answer: TuneAnswer) -> list[str]:
    a = answer
    lines = [f"bench tune: {a.benchmark} ({a.scenario}), {a.objective} "
             f"({'higher' if a.higher_is_better else 'lower'} is better)"
             + (", SLO " + ", ".join(f"{k.removesuffix('_ms')} <= {v:g} ms" for k, v in a.slo.items()) if a.slo else "")]
    rows = candidate_rows(a)
    widths = [max(len(r[i]) for r in rows + [HEADER]) for i in range(len(HEADER))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(HEADER, widths)).rstrip())
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    hidden = sum(1 for c in a.candidates if c.status != "untried") - len(rows)
    if hidden > 0:
        lines.append(f"  ... and {hidden} more (tune.json has them all)")
    pick = a.candidate(a.pick) if a.pick else None
    if a.outcome == "slo unmet":
        lines.append(f"answer: no configuration was shown to meet the SLO; the closest: {a.closest}")
    elif pick is not None:
        lines.append(f"pick: {pick.id}  {a.objective} {_fig(pick.objective)}; samples/s {_fig(pick.throughput)}; "
                     f"p99 {_fig(pick.p99_ms)} ms; settings: "
                     + ", ".join(f"{k}={v}" for k, v in pick.settings.items()))
        lines.append("ties (not told apart from the pick): " + (", ".join(a.ties) if a.ties else "none"))
    else:
        lines.append("answer: no configuration left (every candidate failed)")
    lines.append(f"guarantee: {a.guarantee}")
    if a.confirmation is not None:
        lines.append(f"confirmation against the default ({a.confirmation.default}): {a.confirmation.verdict}; "
                     f"{a.confirmation.text}")
    c = a.cost
    lines.append(f"cost: {c.tried} of {c.space} configurations tried, {c.processes} processes, {c.seconds:.0f} s; "
                 f"the full grid at the pick's precision ({c.grid_processes} processes) ~{c.grid_seconds:.0f} s: "
                 f"{c.fraction:.0%} of it")
    if a.excluded:
        lines.append(f"left out of the space: {len(a.excluded)} combination(s) the targets refuse, e.g. "
                     f"{a.excluded[0][0]}: {a.excluded[0][1]}")
    return lines
