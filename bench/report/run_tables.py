"""The tables of one run, as row models (reads results and their analysis; runs nothing).

summary: every cell with its intervals, agreement, SLO and stop, its named dimensions where the
run has them and its one-off seconds where a cell compiled or captured; skipped cells folded into
the caption by target and reason (the one-off costs' own table is report.one_off's). gpu:
boundary, one-off costs, telemetry, memory and roofline of the cells that ran on or timed a device. targets: ranked by throughput, Pareto front marked. sweeps:
throughput and p99 against batch size and concurrency, the best setting for a budget. details:
the lines each scenario shows for its own records (server validity, clients, LoadGen).
"""
from __future__ import annotations

import re

from collections.abc import Callable

from bench.analysis.ranking import rank_targets
from bench.analysis.sweeps import sweeps
from bench.analysis.tradeoff import judged_by_accuracy
from bench.report import accuracy_text
from bench.report.model import Column, Num, Table, Text, fmt_opt, fmt_sig, settle
from bench.report.one_off import fmt_total
from bench.results.records import Cell, Run

DetailRows = Callable[[Cell], tuple[tuple[str, str], ...]]


def stop_word(reason: str | None, c: Cell | None = None) -> str:
    if c is not None and c.repetitions:
        used = len(c.used_repetitions)
        # Against what the rule asked for when fewer were used (interrupted, failed, interfered):
        # "1/1 procs" for a cell Ctrl-C cut after its first process read as a whole cell.
        short = re.search(r"fewer than the (\d+) its rule asks for", reason or "")
        word = f"{used}/{short.group(1)} procs (short)" if short else f"{used}/{len(c.repetitions)} procs"
        return word + (" (imprecise)" if reason and "not reached" in reason else "")
    if not reason:
        return "-"
    if reason.startswith("precision reached"):
        return "precision"
    if reason.startswith("max_seconds") and "precision" in reason:
        return "max_s (imprecise)"
    return reason.split(" ", 1)[0]


def scenario_label(c: Cell) -> str:
    return c.scenario if c.concurrency is None else f"{c.scenario} c{c.concurrency}"


def dims_label(c: Cell) -> str:
    """"seq=128" (as in the cell id), "-" for a cell without named dimensions."""
    return c.key.dims_label or "-"


def _num(e, digits: int = 3) -> Num | str:
    """An Estimate (value and interval) as a figure of its column, "-" where there is none."""
    return "-" if e is None else Num(e.value, e.ci_low, e.ci_high, digits)


def throughput_units(cells) -> list[str]:
    """The throughput units of these cells, samples/s first: a table gives each its own column
    (a generate cell's tokens/s is not a figure to read down a samples/s column)."""
    units = dict.fromkeys(c.metrics.throughput.unit for c in cells if c.status == "ok" and c.metrics is not None)
    return sorted(units, key=lambda u: (u != "samples/s", list(units).index(u))) or ["samples/s"]


def _throughput(c: Cell, units: list[str]) -> tuple[Num | str, ...]:
    """The cell's throughput in its unit's column, "-" in the others."""
    tp = c.metrics.throughput if c.status == "ok" and c.metrics is not None else None
    return tuple(Num(tp.value, tp.ci_low, tp.ci_high, 4) if tp is not None and tp.unit == u else "-" for u in units)


# Columns a run shows only when a cell has them (see summary_table).
_DIMS, _ONE_OFF, _SLO, _ACCURACY = "dims", "one-off s", "SLO", "accuracy"


def _summary_columns(units: list[str]) -> tuple[Column, ...]:
    return (Column("benchmark"), Column("target"), Column("batch", numeric=True), Column(_DIMS), Column("scenario"),
            Column("status"), *(Column(u, numeric=True) for u in units), Column("p50 ms", numeric=True),
            Column("p99 ms", numeric=True), Column("n", numeric=True), Column("peak RSS MiB", numeric=True),
            Column(_ONE_OFF, numeric=True), Column("agreement"), Column(_ACCURACY), Column(_SLO), Column("stop"))


def _summary_row(c: Cell, units: list[str]) -> tuple[str | Text | Num, ...]:
    head = (c.benchmark, c.target.name, str(c.batch_size), dims_label(c), scenario_label(c))
    if c.status != "ok" or c.metrics is None:
        return (*head, Text(c.status, "bad"), *_throughput(c, units), "-", "-", "-", "-", fmt_total(c), c.reason[:90],
                "-", "-", "-")
    lat, agree = c.metrics.latency_ms, c.agreement
    # An int8 target is judged by its accuracy loss (the accuracy column): its element-wise error,
    # large by design, beside its verdict would read as the reason.
    agree_text: str | Text = "-" if agree is None else (
        f"{agree.verdict} ({agree.max_rel_error:.1e})" if agree.max_rel_error is not None and not judged_by_accuracy(c)
        else agree.verdict)
    accuracy: str | Text = "-"
    if agree is not None and agree.accuracy is not None:
        accuracy = accuracy_text.headline(agree.accuracy)
        if agree.verdict == "fail" and judged_by_accuracy(c):
            accuracy = Text(accuracy, "bad")
    if agree is not None and agree.verdict == "fail":
        agree_text = Text(str(agree_text), "bad")
    slo = "-" if c.slo is None else ("pass" if c.slo.passed else Text("FAIL", "bad"))
    stop = stop_word(c.stop_reason, c) if c.server is None else ("valid" if c.server.valid else Text("INVALID", "bad"))
    status: str | Text = c.status
    if c.unstable:
        status = Text("ok, unstable", "warn")
    if any(r.interfered for r in c.repetitions):
        status = Text(f"{status if isinstance(status, str) else status.text}, interfered", "warn")
    marks = request_marks(c)
    if marks:
        status = Text(f"{status if isinstance(status, str) else status.text}, {marks}", "bad")
    return (*head, status, *_throughput(c, units), _num(lat.p50), _num(lat.p99), str(lat.n),
            f"{c.memory.peak_rss_bytes / 2**20:.0f}" if c.memory else "-", fmt_total(c), agree_text, accuracy, slo, stop)


def request_marks(c: Cell) -> str:
    """A served cell's failed requests and driver lag in a few words ("errors 10.0% (http_status
    10.0%), driver-limited"); "" when every request succeeded and the driver kept up."""
    r = c.requests
    if r is None:
        return ""
    marks = []
    if r.failed:
        kinds = ", ".join(f"{k} {n / max(r.sent, 1):.1%}" for k, n in r.errors.items())
        marks.append(f"errors {r.error_rate:.1%} ({kinds})")
    if r.driver_limited:
        marks.append("driver-limited")
    return ", ".join(marks)


def summary_table(run: Run) -> Table:
    confidence = next((c.metrics.latency_ms.confidence for c in run.cells if c.metrics), None)
    ci = ""
    if confidence:
        ci = (f" · ± = {confidence:.0%} half-width, for the figure a re-run reports" if any(c.repetitions for c in run.cells)
              else f" · ± = {confidence:.0%} CI half-width")
    rows = []
    skipped: dict[tuple[str, str], list[Cell]] = {}
    units = throughput_units(run.cells)
    for c in run.cells:
        if c.status == "skipped":
            # One line per target and reason: a GPU-less machine skips many GPU cells alike.
            skipped.setdefault((c.target.name, c.reason), []).append(c)
        else:
            rows.append(_summary_row(c, units))
    by_reason: dict[str, list[str]] = {}
    for (target, reason), cells in skipped.items():
        by_reason.setdefault(reason, []).append(f"{target} ×{len(cells)}" if len(cells) > 1 else cells[0].id)
    notes = [f"skipped {', '.join(names)}: {reason}" for reason, names in by_reason.items()]
    served = [c for c in run.cells if c.requests is not None and (c.requests.failed or c.requests.driver_limited)]
    if served:
        notes.append(f"served: {len(served)} cell(s) with failed requests or a lagging driver; their figures are from "
                     "the ok requests (the scenario details say which errors, and the driver's lag)")
    unstable = [c for c in run.cells if c.unstable]
    if unstable:
        notes.append(f"unstable: {len(unstable)} cell(s) whose figures vary over 10% between worker processes "
                     "(their stop reasons and run.json say which figure, by how much)")
    if any(c.repetitions for c in run.cells):
        notes.append("each figure is the mean over worker processes (procs); its interval, t over them, is where a "
                     "re-run's figure lands: it holds the between-process noise and the re-run's own error")
    shown = [c for c in run.cells if c.status != "skipped"]
    # Dims take a column only in runs that have them. The one-off column only where a cell compiled
    # or captured (13.9 s before a compiled model's first answer): a load alone (tens of ms) is in
    # the one-off costs table, and the table keeps its width.
    dropped = {name for name, has in ((_DIMS, any(c.dims for c in shown)),
                                      (_ONE_OFF, any(c.compile_s is not None or c.capture_s is not None for c in shown)),
                                      (_SLO, any(c.slo is not None for c in shown)),
                                      (_ACCURACY, any(c.agreement is not None and c.agreement.accuracy is not None
                                                      for c in shown)))
               if not has}
    if _ONE_OFF not in dropped:
        notes.append("one-off s = model load + torch.compile's first calls + CUDA graph capture, paid once per worker "
                     "process before its first timed call, not in the figures (the one-off costs table splits it)")
    if _ACCURACY not in dropped:
        notes.append("accuracy = the headline figure against the reference target's outputs on the accuracy samples "
                     "(the speed-against-accuracy table gives its interval and loss); int8 targets pass or fail "
                     "agreement by that loss")
    if "tokens/s" in units:
        notes.append("tokens/s = a generate cell's output tokens per second in aggregate; its p50/p99 are the "
                     "end-to-end request latency (the generation table has its token figures)")
    drop = {i for i, col in enumerate(_summary_columns(units)) if col.name in dropped}
    columns = tuple(col for i, col in enumerate(_summary_columns(units)) if i not in drop)
    rows = [tuple(v for i, v in enumerate(r) if i not in drop) for r in rows]
    if run.nodes:  # a fleet run: which machine measured each cell
        columns = (*columns[:2], Column("node"), *columns[2:])
        rows = [(*r[:2], node_label(run, c), *r[2:]) for r, c in zip(rows, shown)]
        notes.append("node: " + ", ".join(f"{n.id} = {n.environment.host} ({node_kind(n.kind)})" for n in run.nodes))
    caption = "; ".join(notes)
    return Table(f"{run.suite.name} · run {run.run_id} · {run.status}{ci}", columns, settle(rows), caption)


def node_kind(kind: str) -> str:
    """A machine kind as people read it: the fleet label, or the host of an unlabelled machine."""
    return kind.split("|")[0]


def node_label(run: Run, c: Cell) -> str:
    node = run.node_of(c)
    return "-" if node is None else f"{node.id} {node.label}".strip()


_GPU_COLUMNS = tuple(Column(name, numeric=name not in ("cell", "boundary", "clocks"), code=name == "cell") for name in (
    "cell", "boundary", "compile s", "capture s", "GPU peak MiB", "util %", "SM MHz", "power W", "J/sample",
    "clocks", "TFLOP/s", "of peak"))


def gpu_cells(run: Run) -> list[Cell]:
    return [c for c in run.cells if c.status == "ok" and (
        c.target.device.startswith("cuda") or c.timing_boundary != "end_to_end" or c.gpu is not None)]


def _gpu_row(c: Cell) -> tuple[str | Text | Num, ...]:
    g, roof = c.gpu, c.roofline
    mem = c.memory.gpu_peak_bytes if c.memory else None
    clocks: str | Text = "-"
    if g is not None:
        clocks = Text("THROTTLED: " + ", ".join(g.throttle_reasons), "bad") if g.throttled else "steady"
    sm = "-" if g is None or g.sm_clock_min_mhz is None else f"{g.sm_clock_min_mhz:.0f}-{g.sm_clock_max_mhz:.0f}"
    fraction = None if roof is None else roof.fraction_of_peak
    return (
        c.id, c.timing_boundary, fmt_opt(c.compile_s, ".2f"), fmt_opt(c.capture_s, ".3f"),
        fmt_opt(None if mem is None else mem / 2**20, ",.0f"),
        fmt_opt(g.utilization_mean_pct if g else None, ".0f"), sm, fmt_opt(g.power_mean_w if g else None, ".0f"),
        "-" if g is None or g.energy_per_sample_j is None else Num(g.energy_per_sample_j), clocks,
        "-" if roof is None else Num(roof.achieved_flops_per_s / 1e12),
        "-" if fraction is None else f"{fraction * 100:.1f}%",
    )


def gpu_table(run: Run) -> Table | None:
    """Shown only when a run has a GPU cell or a device-timed cell."""
    cells = gpu_cells(run)
    if not cells:
        return None
    return Table("GPU · boundary: device = CUDA events, inputs on the device; device_resident = host timer, "
                 "inputs on the device, call waits for the GPU; end_to_end = host copies included",
                 _GPU_COLUMNS, settle(_gpu_row(c) for c in cells))


def targets_table(run: Run) -> Table:
    rows = []
    ranked = rank_targets(run)
    units = throughput_units(r.cell for r in ranked)
    for r in ranked:
        mark: str | Text = "★" if r.pareto else (Text("outputs disagree", "bad") if r.disagrees else "")
        p99 = r.cell.metrics.latency_ms.p99
        v = r.vs_next
        vs = "-" if v is None else (f"x{v.ratio:.3f} [{v.low:.3f}, {v.high:.3f}] over {v.rounds} rounds"
                                    + ("" if v.resolved else " (not resolved)"))
        # A fleet run ranks targets across the machines that measured them (a deployment choice):
        # each says where it ran.
        name = r.cell.target.name + (f" @ {node_label(run, r.cell)}" if run.nodes else "")
        rows.append((r.group, str(r.rank), name, *_throughput(r.cell, units), _num(p99), vs, mark))
    return Table("targets ranked by throughput · vs next = throughput over the next-ranked target's, paired by "
                 "round (drift cancels), 95% interval · ★ Pareto front of throughput vs p99",
                 (Column("group"), Column("rank", numeric=True), Column("target"),
                  *(Column(u, numeric=True) for u in units), Column("p99 ms", numeric=True), Column("vs next (paired)"),
                  Column("")), settle(rows))


def sweeps_table(run: Run, budget_ms: float | None = None) -> Table:
    found = sweeps(run, budget_ms)
    limits = any(s.memory_limit for s in found)
    unit_of = {(c.benchmark, c.target.name): c.metrics.throughput.unit for c in run.cells
               if c.status == "ok" and c.metrics is not None}
    units = list(dict.fromkeys(unit_of.get((s.benchmark, s.target), "samples/s") for s in found)) or ["samples/s"]
    columns = tuple(Column(n) for n in ("benchmark", "target", "scenario", "axis",
                                        f"setting: {' or '.join(units)} @ p99 ms", "budget", "best")
                    + (("memory limit",) if limits else ()))
    rows = []
    for s in found:
        # A throughput unit in the text only where the column holds more than one.
        unit = f" {unit_of.get((s.benchmark, s.target), 'samples/s')}" if len(units) > 1 else ""
        curve = "  ".join(f"{p.setting}: {fmt_sig(p.throughput)}{unit} @ {fmt_sig(p.p99_ms)}" for p in s.points)
        best = "-" if s.best is None else f"{s.axis} {s.best.setting}"
        rows.append((s.benchmark, s.target, s.scenario, s.axis, curve,
                     "-" if s.budget_ms is None else f"{s.budget_ms:g} ms", best if s.points else "-",
                     *((Text(s.memory_limit, "bad") if s.memory_limit else "-",) if limits else ())))
    return Table("sweeps · best = highest throughput whose p99 (upper bound) fits the budget", columns, tuple(rows))


def details_table(run: Run, detail_rows: DetailRows) -> Table | None:
    """What each scenario shows of its own records; None when no cell has any."""
    rows = [(c.id, label, Text(text, "bad") if "INVALID" in text else text)
            for c in run.cells for label, text in detail_rows(c)]
    if not rows:
        return None
    return Table("scenario details", (Column("cell", code=True), Column("what"), Column("")), tuple(rows))


_GENERATION_COLUMNS = (Column("cell", code=True), Column("load"),
                       *(Column(n, numeric=True) for n in (
                           "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms", "ITL p99 ms", "tokens/s",
                           "tok/s/stream", "prefill tok/s", "KV MiB")), Column("goodput"))


def generation_table(run: Run) -> Table | None:
    """The generate cells' token figures, each with its interval; None when the run has none."""
    rows = []
    for c in run.cells:
        g = c.generate
        if c.status != "ok" or g is None or c.metrics is None:
            continue
        tp = c.metrics.throughput
        good: str | Text = "-"
        if g.attainment is not None:
            text = f"{fmt_sig(g.goodput_qps)} req/s ({g.attainment:.0%})"
            good = Text(text, "bad") if g.min_attainment is not None and g.attainment < g.min_attainment else text
        if g.max_qps is not None or g.curve:
            good = f"{good}; max {fmt_sig(g.max_qps)}/s" if g.max_qps else Text(f"{good}; no rate met the SLO", "bad")
        rows.append((c.id, g.load, _num(g.ttft_ms.p50), _num(g.ttft_ms.p99),
                     _num(g.tpot_ms.p50 if g.tpot_ms else None), _num(g.tpot_ms.p99 if g.tpot_ms else None),
                     _num(g.itl_ms.p99 if g.itl_ms else None), Num(tp.value, tp.ci_low, tp.ci_high, 4),
                     _num(g.tokens_per_s_per_stream, 4),
                     # a served generator's prefill and KV cache are the server's: not seen from here
                     "-" if c.requests is not None else _num(g.prefill_tokens_per_s, 4),
                     "-" if c.requests is not None else Num(g.kv_cache_bytes / 2**20, digits=2), good))
    if not rows:
        return None
    return Table("generation · TTFT = time to first token (from the request's start or scheduled arrival), TPOT = "
                 "time per output token after the first, ITL = gap between tokens · tokens/s = output tokens in "
                 "aggregate · goodput = requests/s meeting slo.ttft_ms and slo.tpot_ms (share of requests)",
                 _GENERATION_COLUMNS, settle(rows),
                 "the summary's tokens/s column holds these cells' output tokens/s, and its p50/p99 their end-to-end "
                 "request latency")
