"""The self-contained HTML report: one file, no script, nothing fetched at view time.

A run's report: its verdicts first, the summary table (intervals, stop reasons, unstable marks,
agreement, accuracy), the speed-against-accuracy table and chart where the run measured accuracy
(report.tradeoff_table), then the charts where the run has their data (report.run_plots), the GPU table,
the one-off costs (report.one_off), the targets ranked, the sweeps, the scenario details, and the environment fingerprint, suite,
commit and each cell's stop rule. Several runs of one suite: each run, then every later run
compared with the first (a ratio chart with intervals and verdicts). A comparison alone and a
history (each series over time, change points and regressions marked) have their own documents.

Everything a result file says reaches the page through html.escape: names and reasons come from
files someone else may have made.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

from bench.analysis.compare import Comparison
from bench.analysis.history import SeriesReport
from bench.analysis.verdict import RunVerdict
from bench.report.compare_table import (OUTCOME_STYLE, comparison_table, count_parts, environment_lines,
                                        inconclusive_text, outcome_meaning, outcome_word, run_differences_line)
from bench.report.model import Table, Text
from bench.report.one_off import one_off_table
from bench.report.serving_table import serving_table
from bench.report.history_plots import history_plot
from bench.report.history_text import fmt_step
from bench.report.plots import BAD, GOOD, NEUTRAL, Canvas, Interval, Plot, intervals
from bench.report.run_plots import run_plots, target_colors
from bench.report.run_tables import (DetailRows, details_table, generation_table, gpu_table, summary_table,
                                     sweeps_table, targets_table)
from bench.report.tradeoff_table import tradeoff_table
from bench.results.records import Run

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1f;background:#fff}
header,main,footer{max-width:1400px;margin:0 auto;padding:0 20px}
header{padding-top:16px}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
nav a{margin-right:12px;font-size:13px}
.verdict{padding:10px 14px;border-radius:6px;margin:10px 0}
.verdict.pass{background:#e8f5e9;border-left:5px solid #2e7d32}.verdict.fail{background:#ffebee;border-left:5px solid #c62828}
.verdict.warn{background:#fff8e1;border-left:5px solid #b26a00}
.verdict ul{margin:6px 0 0;padding-left:20px}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px}
caption{text-align:left;font-weight:600;padding:4px 0;caption-side:top}
th,td{border:1px solid #e0e0e0;padding:3px 7px;vertical-align:top}th{background:#f5f5f5;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bad{color:#c62828;font-weight:600}.good{color:#2e7d32}.warn{color:#b26a00}
.note{color:#555;font-size:12.5px;max-width:1100px}
.plots{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure.plot{margin:0;border:1px solid #eee;border-radius:6px;padding:6px;max-width:100%;box-sizing:border-box}
figure.plot svg{width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#444;padding:4px 2px}
dl.env{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:12.5px}dl.env dt{font-weight:600}dl.env dd{margin:0}
details summary{cursor:pointer;color:#333}
code{font-size:12px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def table_html(table: Table) -> str:
    """A row model as an HTML table: numeric columns right-aligned, emphasis as a class."""
    out = ["<table>", f"<caption>{_e(table.title)}</caption>" if table.title else "", "<thead><tr>"]
    out += [f"<th>{_e(c.name)}</th>" for c in table.columns]
    out.append("</tr></thead><tbody>")
    for row in table.rows:
        out.append("<tr>")
        for col, value in zip(table.columns, row):
            text, style = (value.text, value.style) if isinstance(value, Text) else (value, "")
            body = f"<code>{_e(text)}</code>" if col.code and text else _e(text)
            classes = " ".join(x for x in ("num" if col.numeric else "", style) if x)
            out.append(f'<td class="{classes}">{body}</td>' if classes else f"<td>{body}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    if not table.rows:
        out.append('<p class="note">none</p>')
    if table.caption:
        out.append(f'<p class="note">{_e(table.caption)}</p>')
    return "".join(out)


def _plots(plots: Sequence[Plot]) -> str:
    figures = [f'<figure class="plot" data-kind="{_e(p.kind)}" data-series="{p.series}" '
               f'style="width:{p.width_pt:.0f}pt">{p.svg}'
               f"<figcaption><b>{_e(p.title)}</b>{' · ' + _e(p.caption) if p.caption else ''}</figcaption></figure>"
               for p in plots]
    return '<div class="plots">' + "".join(figures) + "</div>"


def _document(title: str, header: str, sections: Sequence[tuple[str, str, str]]) -> str:
    nav = " ".join(f'<a href="#{_e(sid)}">{_e(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{_e(sid)}"><h2>{_e(name)}</h2>{content}</section>' for sid, name, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<header>{header}<nav>{nav}</nav></header><main>{body}</main>"
            f'<footer><p class="note">Written by bench report; self-contained: no script, style, font or '
            f"image is fetched when it is viewed.</p></footer></body></html>\n")


def verdict_html(run: Run) -> str:
    """The run's answer first: pass (green), pass with caveats (amber: cells unstable or measured
    under interference, how many, and what that does to the answer), or FAIL (red) with each cell
    that made it so."""
    v = RunVerdict.of(run)
    items = [f"<li><code>{_e(c.id)}</code> failed ({_e(c.failure_kind or 'error')}): {_e(c.reason)}</li>" for c in v.failed]
    items += [f"<li><code>{_e(c.id)}</code> outputs disagree with {_e(c.agreement.reference)}: {_e(c.agreement.reason)}</li>"
              for c in v.disagreeing]
    items += [f"<li><code>{_e(c.id)}</code> SLO failed: " + "; ".join(
        f"{_e(k.metric)} {k.value_ms:.3g} ms &gt; {k.limit_ms:g} ms" for k in c.slo.checks if not k.passed) + "</li>"
        for c in v.slo_failed]
    items += [f"<li><code>{_e(c.id)}</code> server run INVALID: {_e('; '.join(c.server.validity))}</li>" for c in v.invalid]
    warn = [f"<li><code>{_e(c.id)}</code> GPU clocks throttled: {_e(', '.join(c.gpu.throttle_reasons))}</li>"
            for c in v.throttled]
    warn += [f"<li><code>{_e(c.id)}</code> unstable: {_e(c.unstable)}</li>" for c in v.unstable]
    kept = {c.id for c in v.interfered_used}
    warn += [f"<li><code>{_e(c.id)}</code> measured under interference: "
             f"{sum(r.interfered for r in c.repetitions)} of {len(c.repetitions)} processes"
             + (", some kept in its figures" if c.id in kept else ", left out of its figures") + "</li>"
             for c in v.interfered]
    warn += [f"<li><code>{_e(c.id)}</code> ALARM ({_e(a.kind)}) at {a.at_s:.0f} s: {_e(a.message)}</li>"
             for c in run.cells if c.monitor is not None for a in c.monitor.alarms]
    counts = {s: sum(c.status == s for c in run.cells) for s in ("ok", "failed", "skipped")}
    head = (f"<b>{_e(v.word)}</b> · run {_e(run.status)} · {len(run.cells)} cells: "
            f"{counts['ok']} measured, {counts['failed']} failed, {counts['skipped']} skipped · "
            f"{len(v.slo_failed)} SLO failures · {len(v.disagreeing)} disagree with their reference · "
            f"{len(v.invalid)} invalid server runs")
    if run.end_reason:
        head += f" · ended: {_e(run.end_reason)}"
    if v.shaky:
        head += f'<p class="warn"><b>Read with care:</b> {_e(v.caveat())}.</p>'
    body = f"<ul>{''.join(items)}</ul>" if items else ""
    if warn:
        body += f"<p>Read with care:</p><ul>{''.join(warn)}</ul>"
    box = {"pass": "pass", "caution": "warn", "fail": "fail"}[v.headline]
    return f'<div class="verdict {box}">{head}{body}</div>'


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def environment_html(run: Run) -> str:
    e = run.environment
    rows = [
        ("run", f"{run.run_id} · {run.status} · created {run.created_at} · finished {run.finished_at or '-'}"),
        ("suite", f"{run.suite.name} · {run.suite.path} · sha256 {run.suite.sha256[:16]}"),
        ("harness", f"{run.harness_version} · commit {e.harness_commit or 'unknown'}"
                    + (" (uncommitted changes)" if e.harness_dirty else "")),
        ("command", " ".join(run.argv) or "-"),
        ("host", f"{e.host} · {e.os} · kernel {e.kernel} · {e.machine}"),
        ("CPU", f"{e.cpu_model} · {e.cpu_cores_physical} physical / {e.cpu_cores_logical} logical cores · "
                f"governor {e.cpu_governor or 'unknown'} · memory {_mib(e.memory_total_bytes)}"),
        ("GPUs", "; ".join(f"{g.name} ({_mib(g.memory_total_bytes)}, driver {g.driver}, CUDA {g.cuda or '-'}, "
                           f"power limit {g.power_limit_w or '-'} W, persistence {g.persistence_mode or '-'})"
                           for g in e.gpus) or (e.gpu_note or "none")),
        ("Python", e.python),
        ("packages", ", ".join(f"{k} {v}" for k, v in sorted(e.packages.items()) if v) or "-"),
        ("environment variables", ", ".join(f"{k}={v}" for k, v in sorted(e.env_vars.items())) or "none set"),
    ]
    return '<dl class="env">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows) + "</dl>"


def stop_rules_html(run: Run) -> str:
    rows = [(c.id, c.stop_reason or c.reason or "-") for c in run.cells if c.status != "skipped"]
    if not rows:
        return '<p class="note">no measured cell</p>'
    body = "".join(f"<tr><td><code>{_e(i)}</code></td><td>{_e(r)}</td></tr>" for i, r in rows)
    return (f"<details><summary>the stop rule each cell ran under, and why it stopped ({len(rows)} cells)</summary>"
            f"<table><thead><tr><th>cell</th><th>stop</th></tr></thead><tbody>{body}</tbody></table></details>")


def _run_sections(run: Run, canvas: Canvas, colors: dict[str, str], detail_rows: DetailRows,
                  prefix: str = "") -> list[tuple[str, str, str]]:
    plots = run_plots(run, canvas, colors)
    tail = f" · {run.run_id}" if prefix else ""
    sections = [(f"{prefix}summary", "Summary" + tail, verdict_html(run) + table_html(summary_table(run)))]
    trade = tradeoff_table(run)
    if trade is not None:
        sections.append((f"{prefix}tradeoff", "Speed against accuracy" + tail,
                         table_html(trade) + _plots(plots["tradeoff"])))
    generation = generation_table(run)
    if generation is not None or plots["decode"]:
        sections.append((f"{prefix}generation", "Generation: TTFT, TPOT, tokens/s, decode step against KV length" + tail,
                         (table_html(generation) if generation else "") + _plots(plots["decode"])))
    charts = [("monitor", "Monitor: figures per window"), ("latency", "Latency distribution"), ("sweeps", "Throughput and p99 against batch and concurrency"),
              ("load", "Latency against offered load"), ("pareto", "Targets: throughput against p99"),
              ("series", "Throughput over the measured window")]
    for key, name in charts:
        if plots[key]:
            sections.append((f"{prefix}{key}", name + tail, _plots(plots[key])))
    gpu = gpu_table(run)
    if gpu is not None or plots["roofline"] or plots["gpu"]:
        sections.append((f"{prefix}gpu", "GPU" + tail, (table_html(gpu) if gpu else "")
                         + _plots(plots["gpu"] + plots["roofline"])))
    costs = one_off_table(run)
    tables = [t for t in (serving_table(run), costs, targets_table(run)) if t is not None]
    sweeps = sweeps_table(run)
    if sweeps.rows:
        tables.append(sweeps)
    details = details_table(run, detail_rows)
    if details is not None:
        tables.append(details)
    sections.append((f"{prefix}tables", ("One-off costs, targets" if costs else "Targets") + " ranked, sweeps, details" + tail,
                     "".join(table_html(t) for t in tables)))
    sections.append((f"{prefix}environment", "Environment, suite, commit, stop rule" + tail,
                     environment_html(run) + stop_rules_html(run)))
    return sections


_INCONCLUSIVE = "#b26a00"  # amber, as the page's warnings
_VERDICT_COLOR = {"slower": BAD, "faster": GOOD, "unchanged": NEUTRAL, "inconclusive": _INCONCLUSIVE}


def _short_key(key: str) -> str:
    """A cell key without its model hash (BENCH|HASH|TARGET|bN|SCENARIO): the table keeps it."""
    parts = key.split("|")
    return "|".join(parts[:1] + parts[2:]) if len(parts) >= 5 else key


def comparison_plot(cmp: Comparison, canvas: Canvas) -> Plot | None:
    """Per cell, NEW/BASE of throughput and p99 with their intervals, coloured by verdict, the
    threshold band shaded."""
    cells = [c for c in cmp.cells if (c.throughput is not None or c.p99 is not None) and not c.skipped]
    if not cells:
        return None
    columns = []
    for name, attr in (("throughput NEW/BASE", "throughput"), ("p99 NEW/BASE", "p99")):
        items = [Interval(_short_key(c.key), r.value, r.ci_low, r.ci_high, _VERDICT_COLOR.get(c.verdict, NEUTRAL))
                 for c in cells if (r := getattr(c, attr)) is not None]
        columns.append((name, items))
    return intervals(canvas, "ratio", f"{cmp.new_run} against {cmp.base_run}", columns, [_short_key(c.key) for c in cells],
                     band=(1 - cmp.threshold, 1 + cmp.threshold),
                     caption=f"dots: NEW/BASE; bars: 95% intervals; red slower, green faster, grey unchanged, amber "
                             f"inconclusive (the cell's verdict); shaded: the ±{cmp.threshold:.0%} threshold")


def comparison_html(cmp: Comparison, canvas: Canvas) -> str:
    """The answer first (slower red, inconclusive amber, pass green) with the counts; how the runs
    differ; the slower cells, then the inconclusive ones with what each could have detected; the
    ratio chart and the table (cells skipped in both runs folded into its caption)."""
    parts = count_parts(cmp)
    head = (f'<div class="verdict {_BOX[OUTCOME_STYLE[cmp.outcome]]}"><b>{_e(outcome_word(cmp))}</b>: '
            f"{_e(outcome_meaning(cmp))} · <b>{_e(parts[0])}</b> · {_e(' · '.join(parts[1:]))} · "
            f"threshold ±{cmp.threshold:.0%}, alpha {cmp.alpha:g}")
    if cmp.run_differences:
        head += f'<p class="warn">{_e(run_differences_line(cmp))}</p>'
    items = [f"<li><code>{_e(c.key)}</code> slower: {_e(c.reason)}</li>" for c in cmp.slower]
    items += [f"<li><code>{_e(c.key)}</code> less accurate: {_e(c.accuracy.reason)}</li>" for c in cmp.less_accurate]
    items += [f"<li><code>{_e(c.key)}</code> inconclusive: {_e(inconclusive_text(c))}</li>" for c in cmp.inconclusive]
    items += [f"<li><code>{_e(c.key)}</code> accuracy inconclusive: {_e(c.accuracy.reason)}</li>"
              for c in cmp.accuracy_inconclusive]
    if items:
        head += "<ul>" + "".join(items) + "</ul>"
    head += "</div>"
    env = environment_lines(cmp)
    if env:
        head += '<p class="note">Environment differences: ' + _e("; ".join(env)) + "</p>"
    if cmp.common_shift:
        head += f'<p class="note bad">Warning: {_e(cmp.common_shift)}.</p>'
    plot = comparison_plot(cmp, canvas)
    return head + (_plots([plot]) if plot else "") + table_html(comparison_table(cmp))


_BOX = {"bad": "fail", "warn": "warn", "good": "pass"}


def run_document(runs: Sequence[Run], detail_rows: DetailRows, comparisons: Sequence[Comparison] = ()) -> str:
    """One run's report; with several runs of one suite, each run and each later one against the first."""
    canvas = Canvas()
    colors = target_colors(runs)
    sections: list[tuple[str, str, str]] = []
    for i, cmp in enumerate(comparisons):
        sections.append((f"compare-{i + 1}", f"Compare {cmp.new_run} against {cmp.base_run}", comparison_html(cmp, canvas)))
    for i, run in enumerate(runs):
        sections += _run_sections(run, canvas, colors, detail_rows, prefix=f"run{i + 1}-" if len(runs) > 1 else "")
    first = runs[0]
    title = f"bench report · suite {first.suite.name} · " + ", ".join(r.run_id for r in runs)
    header = (f"<h1>bench report · suite <code>{_e(first.suite.name)}</code></h1>"
              f'<p class="note">{"runs" if len(runs) > 1 else "run"} {_e(", ".join(r.run_id for r in runs))} · '
              f"commit {_e((first.environment.harness_commit or 'unknown')[:12])} · host {_e(first.environment.host)}</p>")
    return _document(title, header, sections)


def compare_document(cmp: Comparison) -> str:
    canvas = Canvas()
    title = f"bench compare {cmp.base_run} -> {cmp.new_run}"
    header = f"<h1>bench compare <code>{_e(cmp.base_run)}</code> → <code>{_e(cmp.new_run)}</code></h1>"
    return _document(title, header, [("compare", "Per-cell verdicts", comparison_html(cmp, canvas))])


def history_document(reports: Sequence[SeriesReport], text: str) -> str:
    canvas = Canvas()
    alarms = [r for r in reports if r.alarm]
    head = (f'<div class="verdict {"fail" if alarms else "pass"}"><b>{len(alarms)} series where the latest run starts a '
            f"regression</b> of {len(reports)}"
            + ("<ul>" + "".join(f"<li><code>{_e(r.cell_key)}</code>: {_e(fmt_step(r.metric, r.latest_step))}</li>" for r in alarms) + "</ul>"
               if alarms else "") + "</div>")
    body = head + _plots([history_plot(r, canvas) for r in reports]) + f"<details><summary>as text</summary><pre>{_e(text)}</pre></details>"
    return _document("bench history", "<h1>bench history</h1>", [("history", "Each series over time", body)])
