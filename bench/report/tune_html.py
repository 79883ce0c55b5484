"""The HTML section of `bench tune`'s answer (tune.json), and a page holding it alone.

The answer first (the pick and its ties, or plainly that no candidate was shown to meet the SLO),
with the guarantee, the confirmation against the default and the cost; then every measured
candidate's throughput against p99 (the SLO line, the Pareto front, the pick and its ties marked);
then the race's eliminations look by look; then every candidate in a table.

The charts are drawn as the rest of the HTML report's are (report.plots: matplotlib, static SVG,
nothing fetched or run at view time). Each candidate's point and each look's bar is an SVG group
whose id ends in "-series-N" (the browser test counts them) and carries a <title>: the browser
shows it as a tooltip, so a point names its candidate without a label crowding the chart.

Candidate ids, reasons and settings come from user files: every string of the record reaches the
page through html.escape (matplotlib escapes the little text it draws itself).
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

from bench.report.html import _CSS, _plots, table_html
from bench.report.model import Column, Num, Table, Text, fmt_estimate, fmt_ratio, fmt_seconds, settle
from bench.report.plots import BAD, PALETTE, Canvas, Plot, _figure, _log_labels, _rc, _svg, plain_number
from bench.results.tune import Figure, LookRecord, TunedCandidate, TuneAnswer

# How each status is drawn: the pick a large filled star, its ties rings, the candidates still
# racing plain dots, and those out of the race (eliminated, over the SLO, failed) grey, so the eye
# lands on what is left to choose from.
_GREY = "#bdbdbd"
_PICK = "#f5b700"
_MARKS = {
    "pick": dict(marker="*", markersize=16, markerfacecolor=_PICK, markeredgecolor="black", markeredgewidth=0.8),
    "tie": dict(marker="o", markersize=10, markerfacecolor="none", markeredgecolor=PALETTE[0], markeredgewidth=1.8),
    "racing": dict(marker="o", markersize=6, markerfacecolor=PALETTE[0], markeredgecolor=PALETTE[0]),
    "eliminated": dict(marker="o", markersize=5, markerfacecolor=_GREY, markeredgecolor=_GREY),
    "slo": dict(marker="v", markersize=6, markerfacecolor=_GREY, markeredgecolor=BAD, markeredgewidth=0.8),
    "failed": dict(marker="x", markersize=6, markeredgecolor=_GREY, markeredgewidth=1.4),
    "untried": dict(marker=".", markersize=4, markerfacecolor=_GREY, markeredgecolor=_GREY),
}
_MEANING = {"pick": "pick", "tie": "tie of the pick", "racing": "still racing", "eliminated": "eliminated",
            "slo": "left: over the SLO", "failed": "failed", "untried": "untried"}
# Points drawn last sit on top: the pick over its ties over the rest.
_LAYER = {"pick": 6, "tie": 5, "racing": 4, "slo": 3, "eliminated": 3, "failed": 3, "untried": 2}
# The table's order: what is left to choose from first, then the race's losers by how long they lasted.
_RANK = {"pick": 0, "tie": 1, "racing": 2, "eliminated": 3, "slo": 4, "failed": 5, "untried": 6}
_STATUS_STYLE = {"pick": "good", "tie": "good", "slo": "bad", "failed": "bad"}
# A figure spanning more than this factor is drawn on a log axis: one slow candidate at 40 samples/s
# would otherwise press twenty at 2,000-5,000 into one column.
_WIDE = 20.0

_TUNE_CSS = """
section.tune dl.env{margin:8px 0}
section.tune .pick{font-size:16px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fig_text(f: Figure | None, unit: str = "") -> str:
    if f is None:
        return "-"
    return fmt_estimate(f.value, f.low, f.high) + (f" {unit}" if unit else "") + (f" (n={f.n})" if f.n else "")


def _measured(c: TunedCandidate) -> bool:
    """A candidate with a throughput and a p99 to place (positive: both axes may be log)."""
    return all(f is not None and math.isfinite(f.value) and f.value > 0 for f in (c.throughput, c.p99_ms))


def _slo_p99(answer: TuneAnswer) -> float | None:
    limit = answer.slo.get("p99_ms")
    return limit if limit is not None and math.isfinite(limit) and limit > 0 else None


def _limits(values: Sequence[float], log: bool) -> tuple[float, float]:
    """An axis range holding every value with a margin (a single value gets a range around it)."""
    lo, hi = min(values), max(values)
    if log:
        pad = (hi / lo) ** 0.08 if hi > lo else 1.5
        return lo / pad, hi * pad
    span = hi - lo or abs(hi) * 0.5 or 1.0
    return max(0.0, lo - 0.1 * span), hi + 0.1 * span


def _wide(values: Sequence[float]) -> bool:
    return min(values) > 0 and max(values) / min(values) > _WIDE


def point_title(c: TunedCandidate) -> str:
    """The tooltip of a candidate's point (plain text; escaped where it is written)."""
    lines = [f"{c.id} ({_MEANING.get(c.status, c.status)})",
             f"throughput {_fig_text(c.throughput, 'samples/s')}", f"p99 {_fig_text(c.p99_ms, 'ms')}",
             f"objective {_fig_text(c.objective)}"]
    if c.vs_pick is not None:
        lines.append(f"vs pick {fmt_ratio(c.vs_pick.ratio, c.vs_pick.low, c.vs_pick.high)}")
    if c.reason:
        lines.append(c.reason)
    return "\n".join(lines)


def _titled(svg: str, titles: dict[str, str]) -> str:
    """`svg` with a <title> first in each group named in `titles` (a group's first <title> child
    is its tooltip)."""
    for gid, text in titles.items():
        opening = f'<g id="{gid}">'
        svg = svg.replace(opening, f"{opening}<title>{_e(text)}</title>", 1)
    return svg


def _legend(ax, statuses: Sequence[str], front: bool, slo: float | None) -> None:
    """One legend entry per status drawn (not per candidate: a space may hold a hundred)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="none", label=_MEANING[s], **_MARKS[s]) for s in statuses]
    if front:
        handles.append(Line2D([], [], color="black", linewidth=1, label="Pareto front"))
    if slo is not None:
        handles.append(Line2D([], [], color=BAD, linestyle="--", linewidth=1, label=f"SLO p99 ≤ {slo:g} ms"))
    ax.legend(handles=handles, loc="best")


def _scale(ax, axis: str, values: Sequence[float]) -> None:
    log = _wide(values)
    if log:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    (ax.set_xlim if axis == "x" else ax.set_ylim)(*_limits(values, log))
    if log:
        _log_labels(ax.xaxis if axis == "x" else ax.yaxis)
    else:
        from matplotlib.ticker import FuncFormatter

        (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(FuncFormatter(plain_number))


def tradeoff_plot(answer: TuneAnswer, canvas: Canvas) -> Plot | None:
    """Every measured candidate's throughput (x) against its p99 (y), one series each, with the
    SLO's p99 limit as a horizontal line and the Pareto front joined; None when none was measured."""
    from matplotlib import rc_context

    points = [c for c in answer.candidates if _measured(c)]
    if not points:
        return None
    chart_id = canvas.next_id()
    slo = _slo_p99(answer)
    xs = [c.throughput.value for c in points]
    ys = [c.p99_ms.value for c in points]
    front = sorted((c for c in points if c.pareto), key=lambda c: c.throughput.value)
    with rc_context(_rc(chart_id)):
        fig, (ax,) = _figure(6.0, 3.8)
        _scale(ax, "x", xs)
        _scale(ax, "y", ys + ([slo] if slo is not None else []))
        if len(front) >= 2:
            (drawn,) = ax.plot([c.throughput.value for c in front], [c.p99_ms.value for c in front], color="black",
                               linewidth=1, zorder=1)
            drawn.set_gid(f"{chart_id}-front")
        for i, c in enumerate(points):
            (drawn,) = ax.plot([c.throughput.value], [c.p99_ms.value], linestyle="none",
                               zorder=_LAYER.get(c.status, 2), **_MARKS.get(c.status, _MARKS["untried"]))
            drawn.set_gid(f"{chart_id}-series-{i}")
        if slo is not None:
            ax.axhline(slo, color=BAD, linestyle="--", linewidth=1, zorder=1.5).set_gid(f"{chart_id}-slo")
            ax.text(0.99, slo, f"SLO p99 {slo:g} ms", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                    color=BAD, fontsize=7.5).set_gid(f"{chart_id}-slo-label")
        ax.set_xlabel("throughput samples/s" + (" (log)" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel("p99 latency ms" + (" (log)" if ax.get_yscale() == "log" else ""))
        _legend(ax, [s for s in _MARKS if any(c.status == s for c in points)], len(front) >= 2, slo)
        svg = _svg(fig, chart_id)
    svg = _titled(svg, {f"{chart_id}-series-{i}": point_title(c) for i, c in enumerate(points)})
    skipped = len(answer.candidates) - len(points)
    caption = ("hover a point for its candidate and figures; right and low is better"
               + (f"; {skipped} candidates without both figures are not drawn" if skipped else ""))
    return Plot("tune", f"{answer.benchmark}: throughput against p99, {len(points)} candidates", svg, len(points),
                caption)


def look_title(look: LookRecord) -> str:
    out = "; ".join(f"{cid}: {why}" for cid, why in look.out) or "none"
    return f"round {look.round + 1}: {look.racing} racing after the look, leader {look.leader}\nleft: {out}"


def race_plot(answer: TuneAnswer, canvas: Canvas) -> Plot | None:
    """Candidates racing after each look (one bar, one series, per look), those who left at that
    look stacked on top in grey: the bar's full height is the field the look judged."""
    from matplotlib import rc_context
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    looks = answer.looks
    if not looks:
        return None
    chart_id = canvas.next_id()
    rounds = [lk.round + 1 for lk in looks]
    with rc_context(_rc(chart_id)):
        fig, (ax,) = _figure(max(3.5, min(7.0, 1.6 + 0.35 * len(looks))), 2.8)
        kept = ax.bar(rounds, [lk.racing for lk in looks], width=0.6, color=PALETTE[0])
        left = ax.bar(rounds, [len(lk.out) for lk in looks], width=0.6, bottom=[lk.racing for lk in looks],
                      color=_GREY)
        for i, (bar, gone) in enumerate(zip(kept, left)):
            bar.set_gid(f"{chart_id}-series-{i}")
            gone.set_gid(f"{chart_id}-left-{i}")
        ax.set_xticks(rounds)
        ax.set_xlim(min(rounds) - 0.6, max(rounds) + 0.6)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # candidates come whole
        ax.set_xlabel("round (the look after it)")
        ax.set_ylabel("candidates")
        ax.set_ylim(0, max(lk.racing + len(lk.out) for lk in looks) * 1.05 or 1)
        # above the axes: the first look's bar is the tallest and fills the upper left
        ax.legend(handles=[Patch(color=PALETTE[0], label="racing after the look"),
                           Patch(color=_GREY, label="left at this look")], loc="lower center",
                  bbox_to_anchor=(0.5, 1.0), ncols=2)
        svg = _svg(fig, chart_id)
    titles = {f"{chart_id}-series-{i}": look_title(lk) for i, lk in enumerate(looks)}
    titles |= {f"{chart_id}-left-{i}": look_title(lk) for i, lk in enumerate(looks)}
    return Plot("race", f"{answer.benchmark}: the race, look by look", _titled(svg, titles), len(looks),
                "blue: racing after the look; grey: left at it; hover a bar for who left and why")


def eliminations_html(answer: TuneAnswer) -> str:
    """Round by round, who left the race and why (a look where nobody left keeps its row)."""
    rows = []
    for lk in answer.looks:
        head = (f'<td class="num">{lk.round + 1}</td><td><code>{_e(lk.leader)}</code></td>'
                f'<td class="num">{lk.racing}</td>')
        if not lk.out:
            rows.append(f'<tr data-round="{lk.round}">{head}<td>-</td><td>nobody left</td></tr>')
        for cid, why in lk.out:
            rows.append(f'<tr data-round="{lk.round}">{head}<td><code>{_e(cid)}</code></td><td>{_e(why)}</td></tr>')
    if not rows:
        return '<p class="note">No look was taken: nothing was eliminated.</p>'
    return ('<table class="eliminations"><caption>Who left the race, look by look</caption><thead><tr><th>round</th>'
            "<th>leader</th><th>racing after</th><th>left</th><th>why</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _num(f: Figure | None) -> Num | str:
    return "-" if f is None else Num(f.value, f.low, f.high)


def candidates_table(answer: TuneAnswer) -> Table:
    """Every candidate: the pick and its ties first, then the racing, then those who left (the
    latest to leave first)."""
    ordered = sorted(answer.candidates, key=lambda c: (_RANK.get(c.status, 9), -(c.out_round or 0)))
    objective = f"{answer.objective} ({'higher' if answer.higher_is_better else 'lower'} is better)"
    rows = settle((Text(c.id, _STATUS_STYLE.get(c.status, "")), Text(c.status, _STATUS_STYLE.get(c.status, "")),
                   _num(c.objective), _num(c.throughput), _num(c.p99_ms),
                   fmt_ratio(c.vs_pick.ratio, c.vs_pick.low, c.vs_pick.high) if c.vs_pick else "-",
                   str(c.processes), c.reason or "-") for c in ordered)
    columns = (Column("candidate", code=True), Column("status"), Column(objective, numeric=True),
               Column("samples/s", numeric=True), Column("p99 ms", numeric=True), Column("vs pick", numeric=True),
               Column("processes", numeric=True), Column("reason"))
    return Table("Every candidate", columns, rows,
                 f"± the interval's half-width at {answer.confidence:.0%}; vs pick: the candidate over the pick on "
                 f"{answer.objective}, paired by round, [low, high] at the race's corrected level")


def _verdict_box(answer: TuneAnswer) -> str:
    """The answer in one box: green with the pick, red where nothing was shown to meet the SLO or
    nothing is left."""
    if answer.outcome == "slo unmet":
        limits = ", ".join(f"{k.removesuffix('_ms')} ≤ {v:g} ms" for k, v in answer.slo.items())
        closest = f"<code>{_e(answer.closest)}</code>" if answer.closest else "none (no candidate was measured)"
        return (f'<div class="verdict fail outcome-slo-unmet"><b>SLO unmet</b>: no candidate was shown to meet the '
                f"SLO ({_e(limits)}). Closest: {closest}.</div>")
    if answer.outcome != "ok" or answer.pick is None:
        return f'<div class="verdict fail"><b>No result</b>: {_e(answer.end)}.</div>'
    pick = answer.candidate(answer.pick)
    settings = ", ".join(f"{k}={v}" for k, v in (pick.settings if pick else {}).items())
    ties = (", ".join(f"<code>{_e(t)}</code>" for t in answer.ties) if answer.ties else "none")
    return (f'<div class="verdict pass"><p class="pick"><b>Pick</b>: <code>{_e(answer.pick)}</code>'
            + (f" · {_e(settings)}" if settings else "") + "</p>"
            f'<p class="ties"><b>Ties</b> (not told apart from the pick at this confidence; any may be the best): '
            f"{ties}</p></div>")


def _confirmation_text(answer: TuneAnswer) -> str:
    c = answer.confirmation
    if c is None:
        return "not run" + (" (a grid search has no default to confirm against)" if answer.mode == "grid" else "")
    style = {"better": "good", "worse": "bad", "inconclusive": "warn"}.get(c.verdict, "")
    text = f'<code>{_e(c.pick)}</code> against the default <code>{_e(c.default)}</code>: <b class="{style}">{_e(c.verdict)}</b>'
    if c.ratio is not None:
        text += f"; ratio {_e(fmt_ratio(c.ratio.ratio, c.ratio.low, c.ratio.high))} over {c.ratio.rounds} rounds"
    if c.p_value is not None:
        text += f", p = {c.p_value:.3g}"
    return text + (f". {_e(c.text)}" if c.text else "")


def _cost_text(answer: TuneAnswer) -> str:
    k = answer.cost
    return _e(f"{k.tried} of {k.space} configurations tried · {k.processes} processes · {_seconds(k.seconds)} · "
              f"{k.fraction:.0%} of the full grid's estimated cost ({k.grid_processes} processes, "
              f"{_seconds(k.grid_seconds)})")


def _seconds(value: float) -> str:
    """"480 s", "2,667 s", "13.9 s": fmt_seconds writes a search's hours as 1.2e+04 s."""
    return f"{value:,.0f} s" if value >= 100 else fmt_seconds(value)


def summary_html(answer: TuneAnswer) -> str:
    """The answer first, then what it is worth: the guarantee, the confirmation, the cost."""
    slo = ", ".join(f"{k} ≤ {v:g}" for k, v in answer.slo.items()) or "none"
    rows = [("guarantee", _e(answer.guarantee)), ("race ended", _e(answer.end)),
            ("confirmation", _confirmation_text(answer)), ("cost", _cost_text(answer)),
            ("search", _e(f"{answer.mode} · objective {answer.objective} · SLO {slo} · confidence "
                          f"{answer.confidence:.0%} · indifference ±{answer.indifference:.0%} · seed {answer.seed}"))]
    if answer.excluded:
        n = len(answer.excluded)
        rows.append(("excluded", f"{n} combination{'s' if n > 1 else ''} the targets refused: "
                    + "; ".join(f"<code>{_e(c)}</code> ({_e(why)})" for c, why in answer.excluded)))
    if answer.runs:
        rows.append(("runs", ", ".join(f"<code>{_e(r)}</code>" for r in answer.runs)))
    return (_verdict_box(answer) + '<dl class="env tune-summary">'
            + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>")


def tune_section(answer: TuneAnswer, canvas: Canvas | None = None) -> str:
    """The answer as one <section>: summary, throughput against p99, the race, every candidate.
    `canvas`: the report's chart numbering when the section joins a page with other charts."""
    canvas = canvas or Canvas()
    scatter = tradeoff_plot(answer, canvas)
    race = race_plot(answer, canvas)
    return (f'<section id="tune" class="tune"><h2>bench tune: <code>{_e(answer.benchmark)}</code> · '
            f"{_e(answer.scenario)}</h2>{summary_html(answer)}"
            "<h3>Throughput against p99</h3>"
            + (_plots([scatter]) if scatter else '<p class="note">No candidate has both a throughput and a p99.</p>')
            + "<h3>The race</h3>" + (_plots([race]) if race else "") + eliminations_html(answer)
            + "<h3>Candidates</h3>" + table_html(candidates_table(answer)) + "</section>")


def tune_html(answer: TuneAnswer) -> str:
    """A whole page holding the section alone: self-contained, no script, nothing fetched."""
    title = f"bench tune: {answer.benchmark}"
    created = f" · created {answer.created_at}" if answer.created_at else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}{_TUNE_CSS}</style></head><body>"
            f'<header><h1>{_e(title)}</h1><p class="note">scenario {_e(answer.scenario)} · objective '
            f"{_e(answer.objective)}{_e(created)}</p></header><main>{tune_section(answer)}</main>"
            f'<footer><p class="note">Written by bench tune; self-contained: no script, style, font or image is '
            f"fetched when it is viewed.</p></footer></body></html>\n")
