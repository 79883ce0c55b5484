"""The HTML report: what it draws for each kind of data a run holds, that it is self-contained,
the Markdown summary that names it, and every bad input (one line, exit 2). The same files opened
in a real browser: tests/test_html_browser.py."""
from __future__ import annotations

import html.parser
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from bench.codec import to_json
from bench.results.files import read_run
from bench.results.records import GpuSeries, GpuTelemetry, Histogram, LoadPoint, Memory, Roofline, Slo, SloCheck
from tests.helpers import run_cli

pytest.importorskip("matplotlib", reason="the HTML report's charts need matplotlib (pip install -e '.[report]')")

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "run_v14.json"


def write_run(run, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(to_json(run)))
    return run_dir


def rich_run(run_id: str = "rich-run", speed: float = 1.0):
    """The sample run (multi-stream, server, failed, skipped, unstable cells) with what it lacks
    planted: a second batch size for two targets (a sweep), a peak search with its curve and an
    SLO, and a GPU cell with telemetry and a roofline. `speed` scales every throughput."""
    run = read_run(SAMPLE)
    cells = list(run.cells)
    single = {c.target.name: c for c in cells if c.status == "ok" and c.scenario == "single-stream"}
    for name in ("ort-cpu", "torch-cpu"):
        c = single[name]
        tp = c.metrics.throughput
        cells.append(replace(c, id=c.id.replace("/b4/", "/b16/"), batch_size=16, metrics=replace(
            c.metrics, throughput=replace(tp, value=tp.value * 2.5, ci_low=tp.value * 2.3, ci_high=tp.value * 2.7))))
    server = next(c for c in cells if c.server is not None)
    curve = tuple(LoadPoint(q, q * 0.99, 0.05 + q / 4e4, 0.1 + q / 1e4, 500, q <= 3000) for q in (500, 1000, 2000, 3000, 4000))
    slo = Slo(True, (SloCheck("p99", 0.45, server.metrics.latency_ms.p99.value, True),))
    cells.append(replace(server, id=server.id.replace("/server", "/server-peak"), scenario="server-peak",
                         server=replace(server.server, curve=curve, max_qps=3000.0), slo=slo))
    fp16 = single["ort-fp16"]
    gpu = GpuTelemetry(device_index=0, uuid="GPU-x", samples=30, interval_ms=100, window_s=3.0, utilization_mean_pct=97.0,
                       sm_clock_min_mhz=1410, sm_clock_max_mhz=1980, power_mean_w=612.0, energy_j=1836.0,
                       energy_per_sample_j=0.0125, throttle_reasons=("SwPowerCap",), throttled=True,
                       series=GpuSeries(0.1, (95.0, None, 99.0), (1980.0, None, 1410.0), (600.0, None, 690.0),
                                        (None, None, None)))  # no temperature reported: three panels
    cells.append(replace(fp16, id=fp16.id.replace("ort-fp16", "torch-gpu"), target=replace(
        fp16.target, name="torch-gpu", backend="torch", device="cuda:0"), timing_boundary="device", gpu=gpu,
        memory=Memory(1 << 30, 3 << 30, "torch.cuda.max_memory_allocated"), roofline=Roofline(8.2e9, "torch", 4.1e14,
                                                                                            8.0e14, 0.5125)))
    if speed != 1.0:
        cells = [c if c.metrics is None else replace(c, metrics=replace(c.metrics, throughput=replace(
            c.metrics.throughput, value=c.metrics.throughput.value * speed,
            ci_low=c.metrics.throughput.ci_low * speed, ci_high=c.metrics.throughput.ci_high * speed)),
            repetitions=tuple(replace(r, throughput=None if r.throughput is None else r.throughput * speed)
                              for r in c.repetitions)) for c in cells]
    return replace(run, run_id=run_id, cells=tuple(cells))


def expected_charts(doc: dict) -> dict[str, list[int]]:
    """What the report must draw for run.json `doc`, by chart kind: the series of each chart,
    counted from the file by the rules the report states (not by calling it)."""
    ok = [c for c in doc["cells"] if c["status"] == "ok" and c.get("metrics")]
    out: dict[str, list[int]] = {k: [] for k in ("cdf", "sweep", "load", "pareto", "series", "roofline", "gpu")}
    by_bench: dict[str, int] = {}
    for c in ok:
        if c["metrics"]["latency_ms"].get("histogram"):
            by_bench[c["benchmark"]] = by_bench.get(c["benchmark"], 0) + 1
    out["cdf"] = list(by_bench.values())
    sweeps: dict[tuple, dict[str, set]] = {}
    for c in ok:  # against batch size at one concurrency; against concurrency at one batch size
        if c.get("server"):
            continue
        curves = [("batch", c.get("concurrency"), c["batch_size"])]
        if c.get("concurrency") is not None:
            curves.append(("concurrency", c["batch_size"], c["concurrency"]))
        for axis, fixed, setting in curves:
            sweeps.setdefault((c["benchmark"], c["scenario"], axis, fixed), {}).setdefault(
                c["target"]["name"], set()).add(setting)
    out["sweep"] = [2 * len(t) for t in sweeps.values() if any(len(s) >= 2 for s in t.values())]
    fixed: dict[str, set] = {}
    for c in ok:
        if c.get("server"):
            if c["server"].get("curve"):
                out["load"].append(2)  # p99 and p50 over the rates tried
            else:
                fixed.setdefault(c["benchmark"], set()).add((c["target"]["name"], c["batch_size"]))
    out["load"] += [len(t) for t in fixed.values()]
    groups: dict[str, int] = {}
    for c in ok:
        conc = "" if c.get("concurrency") is None else f"/c{c['concurrency']}"
        key = f"{c['benchmark']}/b{c['batch_size']}/{c['scenario']}{conc}"
        groups[key] = groups.get(key, 0) + 1
    out["pareto"] = [n + 1 for n in groups.values() if n >= 2]  # each target, and the front
    series: dict[str, int] = {}
    for c in ok:  # a line per cell whose series moves: 3 windows or more, one beyond ±5% of its mean
        s = c.get("throughput_series")
        if s and len(s["values"]) >= 3 and sum(s["values"]) > 0:
            mean = sum(s["values"]) / len(s["values"])
            if max(abs(v / mean - 1) for v in s["values"]) > 0.05:
                series[c["benchmark"]] = series.get(c["benchmark"], 0) + 1
    out["series"] = list(series.values())
    out["roofline"] = [1] if any((c.get("roofline") or {}).get("fraction_of_peak") is not None for c in ok) else []
    for c in ok:  # a panel per figure the device reported at least once
        s = (c.get("gpu") or {}).get("series")
        if s:
            out["gpu"].append(sum(any(v is not None for v in s[k])
                                  for k in ("utilization_pct", "sm_clock_mhz", "power_w", "temperature_c")))
    return out


class Page(html.parser.HTMLParser):
    """What the report's HTML holds, as the parser sees it: charts by kind with their series,
    the summary table's rows, and anything that would load from elsewhere."""

    def __init__(self, text: str):
        super().__init__()
        self.charts: list[dict] = []
        self.external: list[str] = []
        self.scripts = 0
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.ids: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "figure":
            self.charts.append({"kind": a.get("data-kind"), "declared": int(a.get("data-series", -1)), "series": 0})
        if self.charts and re.search(r"-series-\d+$", a.get("id") or ""):
            self.charts[-1]["series"] += 1
        if tag == "script":
            self.scripts += 1
        for name in ("src", "href", "xlink:href", "data"):
            value = a.get(name) or ""
            if value and not value.startswith("#"):
                self.external.append(f"{tag} {name}={value}")
        if tag == "link":
            self.external.append(f"link {a}")
        if tag == "table":
            self.tables.append([])
        if tag == "tr" and self.tables:
            self.tables[-1].append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def charts_by_kind(page: Page) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for c in page.charts:
        out.setdefault(c["kind"], []).append(c["series"])
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of the rich run, written by the CLI."""
    tmp = tmp_path_factory.mktemp("html")
    run_dir = write_run(rich_run(), tmp / "rich")
    out = tmp / "report.html"
    code = __import__("bench.cli", fromlist=["main"]).main(["report", str(run_dir), "--html", str(out), "--md",
                                                             str(tmp / "report.md")])
    assert code == 0
    return run_dir, out


def test_every_chart_the_run_has_data_for_is_drawn_with_its_series(report):
    run_dir, out = report
    doc = json.loads((run_dir / "run.json").read_text())
    page = Page(out.read_text())
    expected = expected_charts(doc)
    assert all(expected[k] for k in expected), expected  # the planted run exercises every kind of chart
    drawn = charts_by_kind(page)
    for kind, series in expected.items():
        assert sorted(drawn.get(kind, [])) == sorted(series), kind
    assert all(c["series"] == c["declared"] for c in page.charts)
    assert len(page.ids) == len(set(page.ids)), "SVG ids collide between charts"


def test_the_report_is_self_contained(report):
    _, out = report
    text = out.read_text()
    page = Page(text)
    assert page.scripts == 0 and page.external == []
    assert not re.findall(r"url\((?!#)", text) and "@import" not in text  # url(#id): a clip path in the same chart
    # the only URLs are XML namespace names, which a browser never fetches
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def test_the_summary_shows_the_figures_of_run_json(report):
    run_dir, out = report
    doc = json.loads((run_dir / "run.json").read_text())
    summary = Page(out.read_text()).tables[0]
    header = summary[0]
    rows = {tuple(r[:4]): dict(zip(header, r)) for r in summary[1:]}
    for c in doc["cells"]:
        if c["status"] == "skipped":
            continue
        conc = "" if c.get("concurrency") is None else f" c{c['concurrency']}"
        row = rows[(c["benchmark"], c["target"]["name"], str(c["batch_size"]), c["scenario"] + conc)]
        if c["status"] != "ok":
            assert row["status"] == c["status"]
            continue
        for column, value, digits in (("samples/s", c["metrics"]["throughput"]["value"], 4),
                                      ("p50 ms", c["metrics"]["latency_ms"]["p50"]["value"], 3),
                                      ("p99 ms", c["metrics"]["latency_ms"]["p99"]["value"], 3)):
            shown = float(row[column].split("±")[0].replace(",", ""))
            assert shown == pytest.approx(value, rel=0.6 * 10 ** -(digits - 1), abs=0.6), (c["id"], column)
        assert ("unstable" in row["status"]) == bool(c.get("unstable"))


def test_cdf_points_follow_the_stored_histogram():
    from bench.report.run_plots import cdf_points

    h = Histogram(base_ns=1000.0, growth=2.0, relative_error=0.5, counts=(1, 0, 3), first_bucket=2)
    xs, ys = cdf_points(h)
    # bucket 2 spans [2000, 4000) ns, bucket 4 [8000, 16000): the curve starts at 2 µs, 1/4 by 4 µs, all by 16 µs
    assert xs == pytest.approx([0.002, 0.004, 0.016]) and ys == pytest.approx([0.0, 0.25, 1.0])
    assert cdf_points(replace(h, counts=(0, 0))) == ([], [])


def test_names_from_a_result_file_are_text_not_markup(tmp_path, capsys):
    run = read_run(SAMPLE)
    evil = "<script>alert(1)</script>$x$"
    cells = tuple(replace(c, target=replace(c.target, name=evil)) if c.target.name == "ort-cpu" else c for c in run.cells)
    run_dir = write_run(replace(run, cells=cells), tmp_path / "evil")
    code, _, err = run_cli(capsys, "report", str(run_dir), "--html", str(tmp_path / "r.html"))
    assert code == 0, err
    text = (tmp_path / "r.html").read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_two_runs_of_one_suite_are_compared_and_a_compare_has_its_own_report(tmp_path, capsys):
    base = write_run(rich_run("base-run"), tmp_path / "base")
    new = write_run(rich_run("new-run", speed=0.7), tmp_path / "new")
    code, out, err = run_cli(capsys, "report", str(base), str(new), "--html", str(tmp_path / "two.html"))
    assert code == 0, err
    page = Page((tmp_path / "two.html").read_text())
    drawn = charts_by_kind(page)
    assert drawn["ratio"] == [2]  # throughput and p99 ratios: one series each
    assert len(drawn["cdf"]) == 2 * len(expected_charts(json.loads((base / "run.json").read_text()))["cdf"])
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--html", str(tmp_path / "cmp.html"),
                             "--md", str(tmp_path / "cmp.md"))
    assert code == 1 and "slower" in err  # 30% slower: the compare's own answer is unchanged by --html
    text = (tmp_path / "cmp.html").read_text()
    assert charts_by_kind(Page(text)) == {"ratio": [2]}
    assert "slower</b>" in text
    md = (tmp_path / "cmp.md").read_text()
    assert md.index("slower**") < md.index("HTML report with charts: `") < md.index("| cell |")


def test_history_html_marks_change_points(tmp_path, capsys):
    from tests.test_history import planted_series

    db = str(tmp_path / "h.sqlite")
    runs = planted_series(12, step_at=11, drop=0.2, seed=1)
    for r in runs:
        write_run(r, tmp_path / r.run_id)
    code, _, err = run_cli(capsys, "history", "add", *[str(tmp_path / r.run_id) for r in runs], "--db", db)
    assert code == 0, err
    code, out, err = run_cli(capsys, "history", "--db", db, "--html", str(tmp_path / "h.html"))
    assert code == 1  # the latest run starts a regression: the gate's answer, with or without --html
    text = (tmp_path / "h.html").read_text()
    page = Page(text)
    series = len(json.loads(run_cli(capsys, "history", "--db", db, "--json")[1]))
    assert charts_by_kind(page) == {"history": [1] * series}
    assert "the latest run starts a regression" in text
    assert re.search(r"<text[^>]*>regression -(19|20)\.\d%</text>", text)  # the change point's line, labelled


def test_markdown_puts_verdicts_first_and_names_the_report(report):
    run_dir, out = report
    md = (out.parent / "report.md").read_text()
    assert md.startswith("## bench run `rich-run`")
    verdict = md.index("**FAIL**")
    failed = md.index("`mlp/dnnl/b4/single-stream` failed")
    named = md.index(f"HTML report with charts: `{out}`")
    table = md.index("| benchmark | target |")
    assert verdict < failed < named < table
    assert md.index("<details>") > table  # the other tables folded below the summary


@pytest.mark.parametrize("case", ["no run.json", "truncated", "newer schema", "html dir missing", "html is a dir",
                                  "html dir unwritable", "different suites"])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    good = write_run(read_run(SAMPLE), tmp_path / "good")
    html_path = tmp_path / "out.html"
    runs = [str(good)]
    if case == "no run.json":
        (tmp_path / "empty").mkdir()
        runs = [str(tmp_path / "empty")]
    elif case == "truncated":
        (tmp_path / "t").mkdir()
        (tmp_path / "t" / "run.json").write_text(SAMPLE.read_text()[:5000])
        runs = [str(tmp_path / "t")]
    elif case == "newer schema":
        doc = json.loads(SAMPLE.read_text())
        from bench.results.records import SCHEMA_VERSION

        doc["schema_version"] = SCHEMA_VERSION + 1  # the sample may be older than the harness
        (tmp_path / "n").mkdir()
        (tmp_path / "n" / "run.json").write_text(json.dumps(doc))
        runs = [str(tmp_path / "n")]
    elif case == "html dir missing":
        html_path = tmp_path / "nowhere" / "out.html"
    elif case == "html is a dir":
        html_path = tmp_path
    elif case == "html dir unwritable":
        html_path = Path("/proc/bench-report.html")  # refused even to root
    elif case == "different suites":
        other = read_run(SAMPLE)
        runs.append(str(write_run(replace(other, run_id="other", suite=replace(other.suite, name="nightly")),
                                  tmp_path / "other")))
    code, out, err = run_cli(capsys, "report", *runs, "--html", str(html_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    expected = {"no run.json": "run.json", "truncated": "run.json", "newer schema": "newer",
                "html dir missing": "does not exist", "html is a dir": "is a directory",
                "html dir unwritable": "bench-report.html", "different suites": "different suites"}[case]
    assert expected in lines[0]
    if case == "different suites":
        assert "'sample'" in lines[0] and "'nightly'" in lines[0]
    assert not html_path.is_file()


def test_without_matplotlib_the_line_names_the_install(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code, _, err = run_cli(capsys, "report", str(SAMPLE), "--html", str(tmp_path / "r.html"))
    assert code == 2 and "pip install 'bench-harness[report]'" in err


def test_run_writes_its_html_report_and_checks_the_path_first(tmp_path, capsys):
    from tests.helpers import tiny_suite, write_suite

    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]'))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--html", str(tmp_path / "no" / "x.html"))
    assert code == 2 and "does not exist" in err and not (tmp_path / "r").exists()  # refused before running
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--quiet", "--html", str(tmp_path / "x.html"))
    assert code == 0, err
    assert charts_by_kind(Page((tmp_path / "x.html").read_text()))["cdf"] == [2]  # one benchmark, batches 1 and 4
