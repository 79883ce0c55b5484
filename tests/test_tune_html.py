"""The HTML of `bench tune`'s answer (report.tune_html), built from answers made by hand: a point
per measured candidate, the SLO line where the SLO sets p99 (and only there), the pick and its
ties marked, the eliminations look by look, the summary, every string escaped, and the page as a
real browser draws it (offline, no console error, the charts laid out)."""
from __future__ import annotations

import html.parser
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from bench.results.tune import (TUNE_SCHEMA_VERSION, Confirmation, Cost, Figure, LookRecord, Ratio, TunedCandidate,
                                TuneAnswer)

pytest.importorskip("matplotlib", reason="the HTML report's charts need matplotlib (pip install -e '.[report]')")

from bench.report.tune_html import tune_html, tune_section  # noqa: E402  (after the skip: it imports matplotlib)

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}href"


def cand(cid: str, status: str, tp: float | None, p99: float | None, *, pareto: bool = False, reason: str = "",
         out_round: int | None = None, vs: float | None = None) -> TunedCandidate:
    fig = (lambda v: None if v is None else Figure(v, v * 0.95, v * 1.05, 6))
    return TunedCandidate(cid, cid.split("/")[0], {"target": cid.split("/")[0], "batch_size": int(cid.split("/b")[1])},
                          status, 6 if tp else 0, fig(tp), fig(tp), fig(p99), None, None if vs is None else
                          Ratio(vs, vs * 0.97, vs * 1.03, 6), reason, out_round, pareto, 12.0)


CANDIDATES = (
    cand("ort/b8", "pick", 1000, 20, pareto=True, vs=1.0),
    cand("ort/b16", "tie", 1100, 35, pareto=True, vs=1.02),
    cand("torch/b8", "eliminated", 700, 25, reason="worse than ort/b8: 0.70 [0.66, 0.74]", out_round=1, vs=0.7),
    cand("torch/b16", "slo", 1300, 80, pareto=True, reason="p99 over the SLO: 80 [76, 84] ms > 50 ms", out_round=0),
    cand("ort/b32", "eliminated", 600, 30, reason="worse than ort/b8: 0.60 [0.57, 0.63]", out_round=0, vs=0.6),
    cand("torch/b32", "failed", None, None, reason="worker crashed: CUDA out of memory", out_round=0),
    cand("ort/b64", "untried", None, None),
)
LOOKS = (
    LookRecord(0, "ort/b8", 3, (("torch/b16", "p99 over the SLO"), ("ort/b32", "worse than ort/b8"),
                                ("torch/b32", "failed: worker crashed"))),
    LookRecord(1, "ort/b8", 2, (("torch/b8", "worse than ort/b8"),)),
    LookRecord(2, "ort/b16", 2, ()),
)


def race_answer(**changes) -> TuneAnswer:
    answer = TuneAnswer(
        TUNE_SCHEMA_VERSION, "resnet18", "offline", "throughput", True, {"p99_ms": 50.0}, 0.95, 0.05, 7, "race", "ok",
        "ort/b8", ("ort/b16",), None, "indifference",
        "With probability at least 95% the best throughput of the 7 configurations in the space was never eliminated.",
        CANDIDATES, LOOKS,
        Confirmation("ort/b1", "ort/b8", "better", Ratio(2.5, 2.3, 2.7, 6), 0.0012, "ort/b8 / ort/b1: 2.500"),
        Cost(6, 7, 40, 480.0, 42, 2666.7, 0.18), runs=("tune-1",), created_at="2026-10-01T02:00:00Z")
    return replace(answer, **changes)


class _Tags(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text inside each table cell."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parsed(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    p.close()
    return p


def svgs(fragment: str) -> list[ET.Element]:
    """Each inline <svg> of the fragment, parsed as XML (it must be well-formed on its own)."""
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", fragment, flags=re.S)]


def groups(svg: ET.Element, pattern: str) -> dict[str, ET.Element]:
    return {g.get("id"): g for g in svg.iter(f"{SVG}g") if re.fullmatch(pattern, g.get("id") or "")}


def points(svg: ET.Element) -> dict[str, tuple[float, float, ET.Element]]:
    """The scatter's points by candidate id (their tooltip's first word): screen x, y and the group."""
    found = {}
    for g in groups(svg, r"p\d+-series-\d+").values():
        (use,) = g.iter(f"{SVG}use")  # one point per series
        cid = g.find(f"{SVG}title").text.split(" ")[0]
        found[cid] = (float(use.get("x")), float(use.get("y")), g)
    return found


def slo_y(svg: ET.Element) -> float | None:
    found = groups(svg, r"p\d+-slo")
    if not found:
        return None
    (g,) = found.values()
    ys = {float(y) for y in re.findall(r"[ML] [\d.]+ ([\d.]+)", g.find(f"{SVG}path").get("d"))}
    assert len(ys) == 1  # horizontal
    return ys.pop()


def test_one_point_per_measured_candidate_each_titled_with_its_id_and_figures():
    scatter, race = svgs(tune_section(race_answer()))
    found = points(scatter)
    measured = [c.id for c in CANDIDATES if c.throughput is not None and c.p99_ms is not None]
    assert sorted(found) == sorted(measured) and len(found) == 5
    title = found["torch/b8"][2].find(f"{SVG}title").text
    assert "eliminated" in title and "700 ± 35 samples/s" in title and "p99 25" in title and "worse than" in title
    # placed by their figures: more throughput further right, a higher p99 higher up (smaller y)
    by_tp = sorted(measured, key=lambda cid: next(c.throughput.value for c in CANDIDATES if c.id == cid))
    assert [found[c][0] for c in by_tp] == sorted(found[c][0] for c in by_tp)
    by_p99 = sorted(measured, key=lambda cid: next(c.p99_ms.value for c in CANDIDATES if c.id == cid))
    assert [found[c][1] for c in by_p99] == sorted((found[c][1] for c in by_p99), reverse=True)


def test_the_slo_line_lies_at_its_limit_and_only_where_the_slo_sets_p99():
    scatter = svgs(tune_section(race_answer()))[0]
    y, found = slo_y(scatter), points(scatter)
    assert y is not None
    under = [cid for cid, p in (("ort/b8", 20), ("ort/b16", 35), ("torch/b8", 25), ("ort/b32", 30)) if p < 50]
    assert all(found[c][1] > y for c in under) and found["torch/b16"][1] < y  # 80 ms: above the line
    # linear axis here: the line sits where 50 ms falls between 35 and 80 ms
    frac = (found["ort/b16"][1] - y) / (found["ort/b16"][1] - found["torch/b16"][1])
    assert frac == pytest.approx((50 - 35) / (80 - 35), abs=0.01)
    assert "SLO p99 50 ms" in ET.tostring(scatter, encoding="unicode")
    for slo in ({}, {"p50_ms": 10.0}):
        bare = svgs(tune_section(race_answer(slo=slo)))[0]
        assert slo_y(bare) is None and "SLO p99" not in ET.tostring(bare, encoding="unicode")


def test_the_pick_is_a_filled_star_its_ties_rings_and_the_losers_grey():
    scatter = svgs(tune_section(race_answer()))[0]
    found = points(scatter)
    shapes = {p.get("id"): p.get("d") for p in scatter.iter(f"{SVG}path") if p.get("id")}

    def use(cid):
        return next(found[cid][2].iter(f"{SVG}use"))

    def corners(cid):  # the marker's outline, drawn once in <defs> and placed by <use>
        return len(re.findall(r"[ML] ", shapes[use(cid).get(XLINK).lstrip("#")]))

    assert "fill: #f5b700" in use("ort/b8").get("style") and corners("ort/b8") == 10  # a filled star
    assert "fill-opacity: 0" in use("ort/b16").get("style") and "stroke: #1f77b4" in use("ort/b16").get("style")  # a ring
    for loser in ("torch/b8", "ort/b32", "torch/b16"):
        assert "#bdbdbd" in use(loser).get("style")
    assert [c for c in found if "#f5b700" in use(c).get("style")] == ["ort/b8"]


def test_the_pareto_front_is_joined_through_its_members_in_throughput_order():
    scatter = svgs(tune_section(race_answer()))[0]
    found = points(scatter)
    (front,) = groups(scatter, r"p\d+-front").values()
    vertices = [tuple(map(float, v)) for v in re.findall(r"[ML] ([\d.]+) ([\d.]+)", front.find(f"{SVG}path").get("d"))]
    expected = [found[c][:2] for c in ("ort/b8", "ort/b16", "torch/b16")]
    assert vertices == [pytest.approx(v, abs=0.01) for v in expected]


def test_wide_ranges_are_drawn_on_log_axes_with_every_point_in_order():
    wide = (cand("a/b1", "pick", 40, 2, pareto=True), cand("a/b64", "tie", 5000, 300, pareto=True),
            cand("a/b8", "eliminated", 900, 20, out_round=0))
    scatter = svgs(tune_section(race_answer(candidates=wide, pick="a/b1", ties=("a/b64",), slo={"p99_ms": 100.0})))[0]
    found, y = points(scatter), slo_y(scatter)
    text = ET.tostring(scatter, encoding="unicode")
    assert "throughput samples/s (log)" in text and "p99 latency ms (log)" in text
    assert found["a/b1"][0] < found["a/b8"][0] < found["a/b64"][0]
    assert found["a/b1"][1] > found["a/b8"][1] > y > found["a/b64"][1]
    # log: 100 ms sits where log(100) falls between log(20) and log(300)
    frac = (found["a/b8"][1] - y) / (found["a/b8"][1] - found["a/b64"][1])
    assert frac == pytest.approx(math.log(100 / 20) / math.log(300 / 20), abs=0.01)


def test_the_race_chart_has_a_bar_per_look_and_the_table_a_row_per_departure():
    section = tune_section(race_answer())
    race = svgs(section)[1]
    bars = groups(race, r"p\d+-series-\d+")
    assert len(bars) == len(LOOKS)
    assert [g.find(f"{SVG}title").text.split("\n")[0] for g in bars.values()] == [
        "round 1: 3 racing after the look, leader ort/b8", "round 2: 2 racing after the look, leader ort/b8",
        "round 3: 2 racing after the look, leader ort/b16"]
    heights = [max(ys) - min(ys) for g in bars.values()
               for ys in [[float(y) for y in re.findall(r"[ML] [\d.]+ ([\d.]+)", g.find(f"{SVG}path").get("d"))]]]
    assert heights[0] == pytest.approx(heights[1] * 3 / 2, rel=0.01) and heights[1] == pytest.approx(heights[2])
    table = re.search(r'<table class="eliminations">.*?</table>', section, flags=re.S).group(0)
    rows = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
            for r in re.findall(r"<tr data-round.*?</tr>", table)]
    assert [(r[0], r[3], r[4]) for r in rows] == [
        ("1", "torch/b16", "p99 over the SLO"), ("1", "ort/b32", "worse than ort/b8"),
        ("1", "torch/b32", "failed: worker crashed"), ("2", "torch/b8", "worse than ort/b8"), ("3", "-", "nobody left")]


def test_the_summary_names_the_pick_its_ties_the_guarantee_confirmation_and_cost():
    section = tune_section(race_answer())
    box = re.search(r'<div class="verdict pass">.*?</div>', section, flags=re.S).group(0)
    assert "<code>ort/b8</code>" in box and "batch_size=8" in box and "<code>ort/b16</code>" in box
    assert "broken" not in section.lower()
    assert "never eliminated" in section
    assert "better" in section and "2.500 [2.300, 2.700] over 6 rounds" in section and "p = 0.0012" in section
    assert html.escape("6 of 7 configurations tried · 40 processes · 480 s · 18% of the full grid's estimated cost "
                       "(42 processes, 2,667 s)") in section
    rows = re.findall(r"<tr><td[^>]*><code>([^<]+)</code></td><td[^>]*>([a-z]+)</td>", section)
    assert [s for _, s in rows] == ["pick", "tie", "eliminated", "eliminated", "slo", "failed", "untried"]
    assert {cid for cid, _ in rows} == {c.id for c in CANDIDATES}
    assert "1.020 [0.989, 1.051]" in section  # the tie against the pick, with its interval


def test_slo_unmet_says_so_plainly_and_names_the_closest():
    unmet = race_answer(outcome="slo unmet", pick=None, ties=(), closest="torch/b16", confirmation=None,
                        candidates=tuple(replace(c, status="slo" if c.throughput else c.status) for c in CANDIDATES))
    section = tune_section(unmet)
    assert "no candidate was shown to meet the SLO (p99 ≤ 50 ms)" in section
    assert "Closest: <code>torch/b16</code>" in section
    assert 'class="verdict fail' in section and "verdict pass" not in section and "<b>Pick</b>" not in section


def test_a_single_candidate_draws_one_point_and_no_front():
    only = replace(CANDIDATES[0], pareto=True)
    answer = race_answer(candidates=(only,), ties=(), looks=(), confirmation=None, mode="grid", slo={})
    section = tune_section(answer)
    (scatter,) = svgs(section)  # no look: no race chart
    assert list(points(scatter)) == ["ort/b8"] and not groups(scatter, r"p\d+-front")
    assert "No look was taken" in section


def test_no_measured_candidate_draws_no_scatter():
    answer = race_answer(candidates=CANDIDATES[5:], outcome="no result", pick=None, ties=(), looks=())
    section = tune_section(answer)
    assert svgs(section) == [] and "No candidate has both a throughput and a p99" in section


HOSTILE = '<script>alert("x")</script>/b8'


def hostile_answer() -> TuneAnswer:
    bad = replace(CANDIDATES[0], id=HOSTILE, reason='<img src=x onerror="alert(1)">', settings={"t": "<b>x</b>"})
    return race_answer(pick=HOSTILE, candidates=(bad, *CANDIDATES[1:]), benchmark="<i>bench</i>",
                       looks=(LookRecord(0, HOSTILE, 1, (("ort/b16", "</td><script>x</script>"),)),),
                       excluded=(("<svg onload=x>", "refused & why"),))


def test_every_string_of_the_record_is_escaped():
    page = tune_html(hostile_answer())
    tags = parsed(page).tags
    assert not [t for t, _ in tags if t in ("script", "img", "i")]  # nothing injected
    assert "<script" not in page and "<img" not in page and "<i>bench" not in page and "<b>x</b>" not in page
    assert html.escape(HOSTILE) in page and "&lt;i&gt;bench&lt;/i&gt;" in page
    assert not any("onerror" in a or "onload" in a for _, a in tags)
    found = points(svgs(page)[0])
    assert HOSTILE in found  # the tooltip holds the id itself, back from its escaped form


def test_the_page_parses_whole_and_is_self_contained():
    page = tune_html(race_answer())
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>bench tune: resnet18</title>" in page
    tags = parsed(page).tags
    names = [t for t, _ in tags]
    assert names.count("section") == 1 and names.count("svg") == 2 and "script" not in names
    assert not [a for _, a in tags if any(str(v).startswith(("http:", "https:", "//")) for k, v in a.items()
                                          if k in ("src", "href"))]
    assert len(svgs(page)) == 2  # each chart well-formed XML on its own


# -- in a real browser ---------------------------------------------------------------------------

from tests.test_html_browser import browser, open_offline  # noqa: E402,F401  (its fixture and skips)

_DRAWN_JS = """
() => [...document.querySelectorAll('figure.plot')].map(f => {
  const svg = f.querySelector('svg'), box = svg.getBoundingClientRect();
  const series = [...svg.querySelectorAll('[id]')].filter(e => /-series-\\d+$/.test(e.id));
  return {kind: f.dataset.kind, declared: +f.dataset.series, width: box.width, height: box.height,
          series: series.length,
          drawn: series.filter(g => { const b = g.getBBox(); return b.width > 0 && b.height > 0; }).length,
          slo: !!svg.querySelector('[id$="-slo"]')};
})
"""


@pytest.mark.parametrize("which", ["race", "hostile"])
def test_the_page_renders_offline_in_chromium(browser, tmp_path, which):  # noqa: F811
    answer = race_answer() if which == "race" else hostile_answer()
    path = tmp_path / "tune.html"
    path.write_text(tune_html(answer), encoding="utf-8")
    context, page, seen = open_offline(browser, path, f"tune-{which}")
    try:
        assert seen["requests"] == [path.as_uri()] and seen["console"] == [] and seen["errors"] == []
        charts = page.evaluate(_DRAWN_JS)
        assert [c["kind"] for c in charts] == ["tune", "race"]
        for c in charts:
            assert c["width"] > 200 and c["height"] > 100, c
            assert c["drawn"] == c["series"] == c["declared"], c
        assert charts[0]["series"] == 5 and charts[0]["slo"]
        assert page.evaluate("() => window.__injected === undefined && !document.querySelector('main script')")
        if which == "hostile":
            assert HOSTILE in page.locator("table").last.inner_text()
    finally:
        context.close()
