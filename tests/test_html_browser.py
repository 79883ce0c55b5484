"""The HTML reports opened in a real headless browser (Debian's chromium, driven by Playwright),
offline: no console error, no request but the file itself, every chart drawn with its series,
and the summary's figures those of run.json as the browser shows them.

.ci/run installs chromium and Playwright, so CI always runs these; elsewhere they are skipped
with the reason when either is missing. BENCH_TEST_CHROMIUM names another browser binary;
BENCH_SCREENSHOT_DIR, when set, receives a full-page screenshot of each report.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.test_html_report import expected_charts, rich_run, write_run

pytest.importorskip("matplotlib", reason="the HTML report's charts need matplotlib (pip install -e '.[report]')")


def _chromium() -> str:
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("Playwright (pip install playwright)")
    exe = os.environ.get("BENCH_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        missing.append("a chromium binary (apt-get install chromium, or set BENCH_TEST_CHROMIUM)")
    if missing:
        reason = "no browser to open the report in: install " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (.ci/run installs both)")
        pytest.skip(reason)
    return exe


# Per chart: its series as SVG groups (id ending -series-N), each with a drawn extent, and the
# chart's own box on the page.
_CHARTS_JS = """
() => [...document.querySelectorAll('figure.plot')].map(f => {
  const svg = f.querySelector('svg');
  const box = svg.getBoundingClientRect();
  const series = [...svg.querySelectorAll('[id]')].filter(e => /-series-\\d+$/.test(e.id));
  return {kind: f.dataset.kind, declared: +f.dataset.series, width: box.width, height: box.height,
          series: series.length,
          drawn: series.filter(g => { const b = g.getBBox(); return b.width > 0 || b.height > 0; }).length};
})
"""

_SUMMARY_JS = """
() => { const t = document.querySelector('#summary table, [id$="-summary"] table');
  const head = [...t.querySelectorAll('thead th')].map(th => th.innerText.trim());
  return [...t.querySelectorAll('tbody tr')].map(tr => {
    const cells = [...tr.querySelectorAll('td')].map(td => td.innerText.trim());
    return Object.fromEntries(head.map((h, i) => [h, cells[i]])); }); }
"""


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def open_offline(browser, path: Path, shot: str):
    """The page of `path` with the network cut, and every request, console message and page
    error it made."""
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 900})
    seen = {"requests": [], "console": [], "errors": []}
    page = context.new_page()
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.goto(path.as_uri(), wait_until="load")
    screenshots = os.environ.get("BENCH_SCREENSHOT_DIR")
    if screenshots:
        page.screenshot(path=str(Path(screenshots) / f"{shot}.png"), full_page=True)
    return context, page, seen


def test_run_report_renders_offline_with_every_chart_and_the_figures_of_run_json(browser, tmp_path, capsys):
    run_dir = write_run(rich_run(), tmp_path / "rich")
    out = tmp_path / "report.html"
    code, _, err = run_cli(capsys, "report", str(run_dir), "--html", str(out))
    assert code == 0, err
    context, page, seen = open_offline(browser, out, "report")
    try:
        assert seen["requests"] == [out.as_uri()] and seen["console"] == [] and seen["errors"] == []
        charts = page.evaluate(_CHARTS_JS)
        doc = json.loads((run_dir / "run.json").read_text())
        drawn: dict[str, list[int]] = {}
        for c in charts:
            drawn.setdefault(c["kind"], []).append(c["series"])
            assert c["width"] > 200 and c["height"] > 100, c  # laid out, not collapsed
            assert c["drawn"] == c["series"] == c["declared"], c  # each series has a drawn extent
        expected = expected_charts(doc)
        assert {k: sorted(v) for k, v in drawn.items()} == {k: sorted(v) for k, v in expected.items() if v}
        rows = page.evaluate(_SUMMARY_JS)
        shown = {(r["benchmark"], r["target"], r["batch"], r["scenario"]): r for r in rows}
        checked = 0
        for c in doc["cells"]:
            if c["status"] != "ok":
                continue
            conc = "" if c.get("concurrency") is None else f" c{c['concurrency']}"
            r = shown[(c["benchmark"], c["target"]["name"], str(c["batch_size"]), c["scenario"] + conc)]
            tp = float(r["samples/s"].split("±")[0].replace(",", ""))
            p99 = float(r["p99 ms"].split("±")[0].replace(",", ""))
            assert tp == pytest.approx(c["metrics"]["throughput"]["value"], rel=6e-4, abs=0.6), c["id"]
            assert p99 == pytest.approx(c["metrics"]["latency_ms"]["p99"]["value"], rel=6e-3), c["id"]
            checked += 1
        assert checked == sum(c["status"] == "ok" for c in doc["cells"]) >= 10
        assert page.locator(".verdict.fail").count() == 1  # the sample has failed cells: FAIL, first
    finally:
        context.close()


def test_compare_report_renders_offline_with_its_ratio_chart(browser, tmp_path, capsys):
    base = write_run(rich_run("base-run"), tmp_path / "base")
    new = write_run(rich_run("new-run", speed=0.7), tmp_path / "new")
    out = tmp_path / "compare.html"
    code, _, _ = run_cli(capsys, "compare", str(base), str(new), "--html", str(out))
    assert code == 1  # slower
    context, page, seen = open_offline(browser, out, "compare")
    try:
        assert seen["requests"] == [out.as_uri()] and seen["console"] == [] and seen["errors"] == []
        charts = page.evaluate(_CHARTS_JS)
        assert [(c["kind"], c["series"], c["drawn"]) for c in charts] == [("ratio", 2, 2)]
        verdicts = page.locator("table tbody tr td:nth-child(2)").all_inner_texts()
        assert verdicts.count("slower") == sum("slower" in v for v in verdicts) >= 1
        assert "slower" in page.locator(".verdict").inner_text()
    finally:
        context.close()


def test_generate_and_history_charts_render_offline_with_their_legends_and_axis_labels(browser, tmp_path, capsys):
    """The charts issue 27 made readable, as a browser draws them: the decode-step chart's
    legend names each batch size, the window chart's panels are titled by target, the clip
    marks of intervals cut at an axis are drawn, and a history's x-axis shows dates and commits."""
    from dataclasses import replace

    from tests.test_history import planted_series
    from tests.test_report_readable import GENERATE_CELLS, generate_cells

    rich = rich_run()
    run_dir = write_run(replace(rich, run_id="mixed", cells=rich.cells + tuple(generate_cells(rich))), tmp_path / "mixed")
    out = tmp_path / "mixed.html"
    assert run_cli(capsys, "report", str(run_dir), "--html", str(out))[0] == 0
    runs = [replace(r, created_at=f"2026-10-{1 + i:02d}T02:00:00Z") for i, r in enumerate(planted_series(12, 9, 0.2, 4))]
    for r in runs:
        write_run(r, tmp_path / r.run_id)
    db = str(tmp_path / "h.sqlite")
    assert run_cli(capsys, "history", "add", *[str(tmp_path / r.run_id) for r in runs], "--db", db)[0] == 0
    run_cli(capsys, "history", "--db", db, "--html", str(tmp_path / "history.html"))
    for path, shot in ((out, "generate"), (tmp_path / "history.html", "history")):
        context, page, seen = open_offline(browser, path, shot)
        try:
            assert seen["requests"] == [path.as_uri()] and seen["console"] == [] and seen["errors"] == []
            for c in page.evaluate(_CHARTS_JS):
                assert c["width"] > 200 and c["height"] > 100 and c["drawn"] == c["series"] == c["declared"], c
            texts = page.evaluate("""k => [...document.querySelectorAll(`figure[data-kind="${k}"] svg text`)]
                                     .map(t => t.textContent)""", "decode" if shot == "generate" else "history")
            if shot == "generate":
                assert {f"{t} b{b} c{s}" for t, b, s in GENERATE_CELLS} <= set(texts)
                panels = page.evaluate("""() => [...document.querySelectorAll('figure[data-kind="series"] svg text')]
                                          .map(t => t.textContent)""")
                assert {"ort-cpu", "torch-cpu", "ort-fp16", "torch-gpu"} <= set(panels)
                marks = page.evaluate("""() => [...document.querySelectorAll('[id*="-clipped-"] use')]
                                         .filter(u => { const b = u.getBoundingClientRect();
                                                        return b.width > 0 && b.height > 0; }).length""")
                assert marks >= 1  # the cut marks are drawn (outside the clip path, on the axis)
            else:
                assert "Oct 01" in texts and runs[0].environment.harness_commit[:7] in texts
        finally:
            context.close()
