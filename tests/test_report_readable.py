"""Charts and tables people can read (issue 27, item 9), checked on real reports of planted runs:
the decode-step chart tells batch sizes apart; an interval on a log axis that runs below it (its
lower end at or below zero) stops at the axis with a mark, not at the floor of the figure; a
history's x-axis names each run's date and commit and its y-axis starts at zero or says where it
starts; the throughput-over-the-window chart is a small panel per target, or absent; generate
cells are in tokens/s; no terminal table cuts a cell id; each numeric column has one format."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from dataclasses import replace

import pytest

from bench.results.records import DecodePoint, Estimate, GenerateInfo, Latency, Series, Throughput
from tests.helpers import run_cli
from tests.test_html_report import rich_run, write_run

pytest.importorskip("matplotlib", reason="the HTML report's charts need matplotlib (pip install -e '.[report]')")

SVG = "{http://www.w3.org/2000/svg}"
HREF = "{http://www.w3.org/1999/xlink}href"


# --- planted runs -------------------------------------------------------------------------------

def _scaled(lat: Latency, k: float) -> Latency:
    def est(e: Estimate) -> Estimate:
        return replace(e, value=e.value * k, ci_low=None if e.ci_low is None else max(e.ci_low, 0.0) * k,
                       ci_high=None if e.ci_high is None else e.ci_high * k)

    return replace(lat, **{f: est(getattr(lat, f)) for f in ("mean", "p50", "p90", "p95", "p99", "p999", "min", "max")},
                   histogram=None)


# (target, batch size, streams): ids that differ only in their last characters among them
GENERATE_CELLS = [(t, b, 1) for t in ("ort-cpu", "torch-cpu") for b in (1, 2, 4)] + [("torch-cpu", 4, 2)]


def generate_cells(base_run):
    """Generate cells of benchmark `dec`, planted on the sample's ort-cpu cell: each target at
    batch 1, 2 and 4 (torch-cpu 3.7 times slower, each batch slower per step), torch-cpu b4 at
    two streams too; tokens/s throughputs, decode curves over the KV length."""
    base = next(c for c in base_run.cells if c.id == "mlp/ort-cpu/b4/single-stream")
    lat = base.metrics.latency_ms
    cells = []
    for target, b, streams in GENERATE_CELLS:
        slow = (3.7 if target == "torch-cpu" else 1.0) * (1 + 0.15 * b) * streams
        curve = tuple(DecodePoint(kv, 0.08 * slow * (1 + kv / 60), 12) for kv in (8, 16, 24, 32, 40))
        tps = 2900.0 * b / slow
        info = GenerateInfo(
            load=f"closed loop, {streams} stream{'s' if streams > 1 else ''}", streams=streams, requests=6,
            prompt_len="10", output_len="30", prompt_tokens=60, output_tokens=180, ttft_ms=_scaled(lat, 25 * slow),
            tpot_ms=_scaled(lat, 8 * slow), itl_ms=_scaled(lat, 9 * slow),
            tokens_per_s_per_stream=Estimate(tps / streams, tps / streams * 0.9, tps / streams * 1.1),
            prefill_tokens_per_s=Estimate(14 * tps, 12 * tps, 16 * tps), decode_curve=curve,
            kv_cache_bytes=b * 24576, kv_cache_source="planted")
        cells.append(replace(
            base, id=f"dec/{target}/b{b}/generate/c{streams}", benchmark="dec", target=replace(base.target, name=target),
            batch_size=b, scenario="generate", concurrency=streams, generate=info, throughput_series=None,
            metrics=replace(base.metrics, throughput=Throughput(tps, tps * 0.93, tps * 1.07, unit="tokens/s"),
                            latency_ms=_scaled(lat, 900 * slow))))
    return cells


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The rich run's report, a generate-only run's and a run holding both, as HTML and Markdown."""
    tmp = tmp_path_factory.mktemp("readable")
    rich = rich_run()
    runs = {"rich": rich, "gen": replace(rich, run_id="gen-run", cells=tuple(generate_cells(rich))),
            "mixed": replace(rich, run_id="mixed-run", cells=rich.cells + tuple(generate_cells(rich)))}
    out = {}
    for name, run in runs.items():
        run_dir = write_run(run, tmp / name)
        code = __import__("bench.cli", fromlist=["main"]).main(
            ["report", str(run_dir), "--html", str(tmp / f"{name}.html"), "--md", str(tmp / f"{name}.md")])
        assert code == 0
        out[name] = (run_dir, (tmp / f"{name}.html").read_text(), (tmp / f"{name}.md").read_text())
    return out


# --- reading the SVG --------------------------------------------------------------------------

def figures(page: str, kind: str) -> list[tuple[ET.Element, str]]:
    """Each chart of `kind`: its SVG parsed, and its caption's text."""
    found = []
    for m in re.finditer(rf'<figure class="plot" data-kind="{kind}"[^>]*>(<svg.*?</svg>)\s*<figcaption>(.*?)</figcaption>',
                         page, re.S):
        found.append((ET.fromstring(m.group(1)), re.sub(r"<[^>]+>", "", m.group(2))))
    return found


def ids(root: ET.Element, pattern: str) -> list[ET.Element]:
    return [e for e in root.iter() if re.search(pattern, e.get("id") or "")]


def numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]


def axes(root: ET.Element) -> list[tuple[ET.Element, tuple[float, float, float, float]]]:
    """Each panel (matplotlib's axes group) with its box (x0, y0, x1, y1) in SVG units, from its
    background patch."""
    out = []
    for g in ids(root, r"-axes_\d+$"):
        patch = g.find(f"{SVG}g/{SVG}path")
        xs, ys = numbers(patch.get("d"))[0::2], numbers(patch.get("d"))[1::2]
        out.append((g, (min(xs), min(ys), max(xs), max(ys))))
    return out


def text_of(el: ET.Element) -> str:
    return "\n".join("".join(t.itertext()) for t in el.iter(f"{SVG}text"))


def tick_labels(ax: ET.Element, axis: str) -> list[tuple[str, float]]:
    """(label, position along the axis) of each labelled major tick of a panel."""
    out = []
    for tick in ids(ax, rf"-{axis}tick_\d+$"):
        label = text_of(tick)
        use = next((u for u in tick.iter(f"{SVG}use")), None)
        if label and use is not None:
            out.append((label, float(use.get("x" if axis == "x" else "y"))))
    return out


def marker_shapes(root: ET.Element) -> dict[str, str]:
    return {p.get("id"): p.get("d") for p in root.iter(f"{SVG}path") if p.get("id")}


def series_style(root: ET.Element, group: ET.Element) -> tuple[str, str, str]:
    """(colour, dash pattern, marker shape) of one drawn series."""
    path = group.find(f"{SVG}path")
    style = dict(kv.split(": ", 1) for kv in path.get("style").split("; "))
    use = next((u for u in group.iter(f"{SVG}use")), None)
    shape = "" if use is None else marker_shapes(root)[use.get(HREF).lstrip("#")]
    return style["stroke"], style.get("stroke-dasharray", "solid"), shape


def legend(ax: ET.Element) -> list[str]:
    return [text_of(t) for t in ids(ax, r"-legend_\d+$")[0] if t.get("id", "").split("-")[-1].startswith("text")]


def inside(points: list[tuple[float, float]], box: tuple[float, float, float, float], slack: float = 0.51) -> bool:
    x0, y0, x1, y1 = box
    return all(x0 - slack <= x <= x1 + slack and y0 - slack <= y <= y1 + slack for x, y in points)


# --- charts -------------------------------------------------------------------------------------

def test_decode_chart_gives_each_batch_size_its_own_dash_and_marker(reports):
    _, page, _ = reports["gen"]
    [(root, caption)] = figures(page, "decode")
    [(ax, _)] = axes(root)
    labels = legend(ax)
    assert sorted(labels) == sorted(f"{t} b{b} c{s}" for t, b, s in GENERATE_CELLS)  # one entry per cell
    styles = {label: series_style(root, g) for label, g in zip(labels, ids(root, r"-series-\d+$"))}
    for target in ("ort-cpu", "torch-cpu"):
        mine = {k: v for k, v in styles.items() if k.startswith(target + " ")}
        assert len({v[0] for v in mine.values()}) == 1  # the target's colour
        assert len({v[1:] for v in mine.values()}) == len(mine)  # each setting its own dash and marker
    for b in (1, 2, 4):  # one batch size reads alike whatever the target: the legend is learnt once
        assert styles[f"ort-cpu b{b} c1"][1:] == styles[f"torch-cpu b{b} c1"][1:]
    assert styles["ort-cpu b1 c1"][0] != styles["torch-cpu b1 c1"][0]
    assert "dash and marker: batch size" in caption


def test_an_interval_below_a_log_axis_stops_at_the_axis_marked(reports):
    run_dir, page, _ = reports["rich"]
    doc = {c["id"]: c for c in json.loads((run_dir / "run.json").read_text())["cells"]}
    planted = doc["mlp/ort-cpu/b4/single-stream"]["metrics"]["throughput"]
    assert planted["ci_low"] < 0 < planted["value"]  # a t interval over 2 processes reaching below zero
    [(root, caption)] = figures(page, "sweep")
    (tp_ax, tp_box), (p99_ax, p99_box) = axes(root)
    clipped = ids(tp_ax, r"-clipped-\d+-low$")
    assert clipped, "the interval below the axis is marked where it is cut"
    for mark in clipped:
        for use in mark.iter(f"{SVG}use"):
            assert float(use.get("y")) == pytest.approx(tp_box[3], abs=0.51)  # on the axis, at its bottom
    for ax, box in ((tp_ax, tp_box), (p99_ax, p99_box)):
        for bars in ids(ax, r"-bars-\d+$"):  # every bar's ends inside its panel: none runs to the floor
            for path in bars.iter(f"{SVG}path"):
                v = numbers(path.get("d"))
                assert inside(list(zip(v[0::2], v[1::2])), box), path.get("d")
    # the axis spans the points, not the decades down to a bound at zero: 93,920 is the lowest point
    lowest = min(float(label.replace(",", "")) for label, _ in tick_labels(tp_ax, "y"))
    assert 93_920 / 10 <= lowest <= 93_920
    assert "▼▲ at an axis: the interval runs on past it" in caption
    # the Pareto chart's throughput and p99 bars alike
    pareto = [(root, caption) for root, caption in figures(page, "pareto") if ids(root, r"-clipped-")]
    assert pareto and all("▼▲" in caption for _, caption in pareto)


def test_latency_against_load_starts_at_zero_and_cuts_a_negative_bound_there(reports):
    _, page, _ = reports["rich"]
    fixed = [(root, caption) for root, caption in figures(page, "load") if "interval runs on past it" in caption]
    [(root, _)] = fixed  # the fixed-rate chart: its p99 interval reaches below zero
    [(ax, box)] = axes(root)
    labels = tick_labels(ax, "y")
    assert not any(label.startswith(("−", "-")) for label, _ in labels)  # no negative latency on the axis
    zero = [y for label, y in labels if float(label) == 0]
    assert zero and zero[0] == pytest.approx(box[3], abs=0.51)  # 0 is the bottom of the axis
    for use in ids(ax, r"-clipped-\d+-low$")[0].iter(f"{SVG}use"):
        assert float(use.get("y")) == pytest.approx(box[3], abs=0.51)


def test_sweeps_hold_one_concurrency_or_one_batch_size_and_tick_the_settings(reports):
    """Generate cells all have a concurrency (their streams): batch 1, 2 and 4 at one stream make a
    curve against batch size, not a pile at concurrency 1; torch-cpu b4 at 1 and 2 streams one
    against concurrency."""
    _, page, _ = reports["gen"]
    charts = {re.search(r"^(.*?): throughput", caption).group(1): root for root, caption in figures(page, "sweep")}
    assert set(charts) == {"dec generate c1", "dec generate b4"}
    for name, ticks in (("dec generate c1", ["1", "2", "4"]), ("dec generate b4", ["1", "2"])):
        for ax, _ in axes(charts[name]):
            assert [label for label, _ in tick_labels(ax, "x")] == ticks  # the settings measured, no others
    [(tp_ax, _), _] = axes(charts["dec generate c1"])
    assert sorted(legend(tp_ax)) == ["ort-cpu", "torch-cpu"]


def _history_page(tmp_path, capsys, name: str, drop: float, n: int) -> tuple[str, list]:
    from tests.test_history import planted_series

    runs = planted_series(n, step_at=n - 4, drop=drop, seed=3)
    runs = [replace(r, run_id=f"{name}-{i:03d}", created_at=f"2026-10-{1 + i:02d}T02:00:00Z") for i, r in enumerate(runs)]
    for r in runs:
        write_run(r, tmp_path / r.run_id)
    db = str(tmp_path / f"{name}.sqlite")
    assert run_cli(capsys, "history", "add", *[str(tmp_path / r.run_id) for r in runs], "--db", db)[0] == 0
    run_cli(capsys, "history", "--db", db, "--html", str(tmp_path / f"{name}.html"))
    return (tmp_path / f"{name}.html").read_text(), runs


@pytest.mark.parametrize("drop,zoomed", [(0.2, False), (0.03, True)], ids=["20% step: from zero", "3% step: range stated"])
def test_history_x_axis_names_dates_and_commits_and_y_axis_says_where_it_starts(tmp_path, capsys, drop, zoomed):
    page, runs = _history_page(tmp_path, capsys, "h", drop, n=20)
    charts = figures(page, "history")
    assert charts
    for root, caption in charts:
        [(ax, box)] = axes(root)
        ticks = tick_labels(ax, "x")
        assert 2 <= len(ticks) <= 8  # thinned: 20 runs, 8 labels at most
        for label, _ in ticks:
            date, commit = label.split("\n")
            assert re.fullmatch(r"Oct \d\d", date) and re.fullmatch(r"[0-9a-f]{7}", commit), label
        first, last = runs[0], runs[-1]
        assert ticks[0][0] == f"Oct 01\n{first.environment.harness_commit[:7]}"
        assert ticks[-1][0] == f"Oct {int(last.created_at[8:10]):02d}\n{last.environment.harness_commit[:7]}"
        ylabels = tick_labels(ax, "y")
        values = [float(label.replace(",", "")) for label, _ in ylabels]
        if zoomed:  # within 10%: an axis from zero would draw a flat line, so it spans the runs and says so
            assert min(values) > 0 and "not from 0" in text_of(root) and "not from 0" in caption
        else:
            zero = [y for label, y in ylabels if float(label.replace(",", "")) == 0]
            assert zero and zero[0] == pytest.approx(box[3], abs=0.51) and "not from 0" not in text_of(root)


def test_window_chart_is_a_small_panel_per_target(reports):
    run_dir, page, _ = reports["rich"]
    doc = json.loads((run_dir / "run.json").read_text())
    moving: dict[str, list[str]] = {}
    for c in doc["cells"]:
        s = c.get("throughput_series")
        if c["status"] == "ok" and s and len(s["values"]) >= 3:
            mean = sum(s["values"]) / len(s["values"])
            if max(abs(v / mean - 1) for v in s["values"]) > 0.05:
                moving.setdefault(c["target"]["name"], []).append(f"b{c['batch_size']} {c['scenario']}")
    assert len(moving) >= 3 and any(len(v) >= 2 for v in moving.values())
    [(root, _)] = figures(page, "series")
    panels = axes(root)
    titles = [next(t for t in ax.iter(f"{SVG}text") if "".join(t.itertext()) in moving) for ax, _ in panels]
    assert ["".join(t.itertext()) for t in titles] == list(moving)  # one panel per target, in order
    for (ax, _), target in zip(panels, moving):
        assert sorted(legend(ax)) == sorted(moving[target])  # each panel holds its target's cells only
    # one y range for all (panels read against each other): the same ticks at the same heights,
    # labelled on the first panel of a row
    heights = [[float(u.get("y")) for t in ids(ax, r"-ytick_\d+$") for u in t.iter(f"{SVG}use")] for ax, _ in panels]
    assert heights[0] and all(h == heights[0] for h in heights)
    assert tick_labels(panels[0][0], "y")


def test_window_chart_leaves_out_flat_cells_and_is_absent_when_all_are(tmp_path, capsys):
    run = rich_run()

    def flat(c):
        s = c.throughput_series
        return c if s is None else replace(c, throughput_series=Series(s.window_s, tuple(
            1000.0 * (1 + 0.01 * ((-1) ** k)) for k in range(len(s.values)))))

    one = replace(run, cells=tuple(flat(c) if c.id == "mlp/torch-cpu/b16/single-stream" else c for c in run.cells))
    code, _, err = run_cli(capsys, "report", str(write_run(one, tmp_path / "one")), "--html", str(tmp_path / "one.html"))
    assert code == 0, err
    [(root, caption)] = figures((tmp_path / "one.html").read_text(), "series")
    assert "within ±5% of their mean throughout (not drawn): torch-cpu b16 single-stream" in caption
    assert "b16 single-stream" not in [label for ax, _ in axes(root) for label in legend(ax) if "torch" in text_of(ax)]
    every = replace(run, cells=tuple(flat(c) for c in run.cells))
    code, _, err = run_cli(capsys, "report", str(write_run(every, tmp_path / "all")), "--html", str(tmp_path / "all.html"))
    assert code == 0, err
    text = (tmp_path / "all.html").read_text()
    assert figures(text, "series") == [] and "Throughput over the measured window" not in text


# --- tables -------------------------------------------------------------------------------------

def md_tables(md: str) -> dict[str, tuple[list[str], list[bool], list[list[str]]]]:
    """Each Markdown table by its heading: (columns, which are right-aligned (numeric), rows)."""
    out, lines = {}, md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#") and i + 3 < len(lines) and lines[i + 2].startswith("| "):
            head = [c.strip() for c in lines[i + 2].strip("|").split(" | ")]
            numeric = [c.endswith(":") for c in lines[i + 3].strip("|").split("|")]
            rows = []
            for row in lines[i + 4:]:
                if not row.startswith("| "):
                    break
                rows.append([c.strip() for c in re.split(r"(?<!\\)\|", row.strip()[1:-1])])
            out[line.lstrip("# ")] = (head, numeric, rows)
    return out


def _table(tables, prefix):
    return next(v for k, v in tables.items() if k.startswith(prefix))


def test_generate_cells_are_in_tokens_per_second(reports):
    run_dir, page, md = reports["mixed"]
    head, _, rows = _table(md_tables(md), "sample · run mixed-run")
    assert "samples/s" in head and "tokens/s" in head
    for r in rows:
        row = dict(zip(head, r))
        if row["status"].startswith("ok"):
            generating = row["benchmark"] == "dec"
            assert (row["tokens/s"] != "-") == generating and (row["samples/s"] != "-") != generating, row
            assert "tok/s" not in row["samples/s"]
    _, _, md = reports["gen"]
    head, _, _ = _table(md_tables(md), "sample · run gen-run")
    assert "tokens/s" in head and "samples/s" not in head  # a generate-only run: no empty samples/s column
    ranked, _, _ = _table(md_tables(md), "targets ranked")
    assert "tokens/s" in ranked and "samples/s" not in ranked
    _, page, _ = reports["gen"]
    for kind in ("sweep", "pareto"):  # the charts' throughput axes too
        for root, _ in figures(page, kind):
            assert "tokens/s (log)" in text_of(root) and "samples/s" not in text_of(root)


def test_each_numeric_column_is_written_in_one_format(reports):
    _, _, md = reports["mixed"]
    checked = 0
    for title, (head, numeric, rows) in md_tables(md).items():
        for j, (name, is_number) in enumerate(zip(head, numeric)):
            cells = [r[j] for r in rows if j < len(r) and r[j] not in ("-", "")]
            if not is_number or not cells:
                continue
            for text in cells:  # a figure, its interval's half-width, a range: "1,234.5 ± 6.7", "0.021-0.023"
                assert re.fullmatch(r"[\d,.]+(?: ± [\d,.]+|-[\d,.]+)?%?", text), (title, name, text)  # never 1e-05
            decimals = {len(m.group(1) or "") for text in cells for m in re.finditer(r"\d[\d,]*(?:\.(\d+))?", text)}
            assert len(decimals) == 1, (title, name, cells)  # the decimal points one under the other
            checked += 1
    assert checked >= 15  # summary, generation, targets, one-off costs, GPU: every figure column


def _rich_table(out: str, title: str) -> list[list[str]]:
    """The body rows of the terminal table under the title starting `title`: each line split into
    its columns' text (a wrapped row spans several lines)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    start = next(i for i in range(start, len(lines)) if lines[i].startswith("┡"))
    body = []
    for line in lines[start + 1:]:
        if line.startswith("└"):
            break
        body.append([c.strip() for c in line.strip("│").split("│")])
    return body


@pytest.mark.parametrize("columns", [200, 120, 80, 60])
def test_no_terminal_table_cuts_a_cell_id(reports, capsys, monkeypatch, columns):
    run_dir, _, _ = reports["gen"]
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = run_cli(capsys, "report", str(run_dir))
    assert code == 0, err
    assert "…" not in out  # rich's cut mark: nothing is cut
    ids = [f"dec/{t}/b{b}/generate/c{s}" for t, b, s in GENERATE_CELLS]
    body = _rich_table(out, "generation ·")
    # a narrow terminal may fold an id over lines: its characters, in order, are all there
    assert "".join(r[0] for r in body) == "".join(ids)
    if columns >= 200:  # where the ids fit, each is whole on its line; the other columns wrap
        assert [r[0] for r in body if r[0]] == ids
    assert max(len(line) for line in out.splitlines()) <= columns


def test_a_cell_with_fewer_processes_than_its_rule_says_so_in_its_stop_word():
    """A cell Ctrl-C cut after its first process read '1/1 procs', as a whole cell would."""
    from dataclasses import replace

    from bench.report.run_tables import stop_word
    from bench.results.files import read_run

    run = read_run(Path(__file__).parent / "data/run_v12.json")
    c = next(c for c in run.cells if len(c.repetitions) >= 2)
    whole = stop_word(c.stop_reason, c)
    assert whole.startswith(f"{len(c.used_repetitions)}/{len(c.repetitions)} procs") and "short" not in whole
    cut = replace(c, repetitions=c.repetitions[:1], stop_reason=(
        "1 of 1 repetitions in the figures (each a worker process, in interleaved rounds), fewer than the 5 its rule "
        "asks for (interrupted): one process gives no re-run interval; per process: time"))
    assert stop_word(cut.stop_reason, cut) == f"{int(c.repetitions[0].used)}/5 procs (short)"


def test_a_reason_with_brackets_reaches_the_terminal_whole(tmp_path, capsys, monkeypatch):
    """A skipped cell's reason quotes an install line ("pip install 'bench-harness[openvino]'"): the
    terminal table's caption must not read "[openvino]" as rich markup and drop it."""
    monkeypatch.setenv("COLUMNS", "400")
    run = rich_run()
    first = run.cells[0]
    reason = "openvino is not installed here; install it: pip install 'bench-harness[openvino]'"
    skipped = replace(first, status="skipped", reason=reason, metrics=None)
    code, out, err = run_cli(capsys, "report", str(write_run(replace(run, cells=(skipped, *run.cells[1:])), tmp_path / "r")))
    assert code == 0, err
    assert "pip install 'bench-harness[openvino]'" in " ".join(out.split()), out[-2000:]
