"""One-off costs (model load, torch.compile's first calls, CUDA graph capture, the model's build
and export) and named dimensions, shown wherever a cell's figures are: the terminal tables, the
Markdown summary and the HTML report; only what a run has."""
from __future__ import annotations

import html.parser
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from bench.codec import to_json
from bench.results.files import read_run
from tests.helpers import run_cli

SAMPLE = Path(__file__).parent / "data" / "run_v14.json"


def write_run(run, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(to_json(run)))
    return run_dir


def costly_run():
    """The sample run with what its cells lack planted: torch-cpu compiled (13.9 s), ort-fp16
    captured, the mlp model's build and export cost, and the ort-cpu single-stream cell measured at
    two sequence lengths (seq=128 slower than seq=64)."""
    run = read_run(SAMPLE)
    model = replace(run.cells[0].model, prepare_s=4.25, export_s=3.125)
    cells = []
    for c in run.cells:
        c = replace(c, model=model) if c.benchmark == "mlp" else c
        if c.status == "ok" and c.target.name == "torch-cpu":
            c = replace(c, compile_s=13.9)
        if c.status == "ok" and c.target.name == "ort-fp16":
            c = replace(c, capture_s=0.21)
        if c.id == "mlp/ort-cpu/b4/single-stream":
            tp = c.metrics.throughput
            slow = replace(c, dims={"seq": 128}, metrics=replace(c.metrics, throughput=replace(
                tp, value=tp.value / 2, ci_low=tp.ci_low / 2, ci_high=tp.ci_high / 2)))
            cells += [replace(c, dims={"seq": 64}, id="mlp/ort-cpu/b4/seq=64/single-stream"),
                      replace(slow, id="mlp/ort-cpu/b4/seq=128/single-stream")]
            continue
        cells.append(c)
    return replace(run, run_id="costly", cells=tuple(cells))


def md_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Each Markdown table by its heading: its rows as dicts by column name."""
    out, title, header = {}, "", None
    for line in text.splitlines():
        if line.startswith("#"):
            title, header = line.lstrip("# "), None
        elif line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
                out[title] = []
            elif not set(line) <= set("|-:"):
                out[title].append(dict(zip(header, cells)))
    return out


class HtmlTables(html.parser.HTMLParser):
    """Each HTML table by its caption: its rows as dicts by column name."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self._rows: list[list[str]] = []
        self._text: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._rows = []
        elif tag == "tr":
            self._rows.append([])
        elif tag in ("td", "th", "caption"):
            self._text = []

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "caption":
            self._caption, self._text = "".join(self._text).strip(), None
        elif tag in ("td", "th") and self._text is not None:
            self._rows[-1].append("".join(self._text).strip())
            self._text = None
        elif tag == "table" and self._rows:
            self.tables[self._caption] = [dict(zip(self._rows[0], r)) for r in self._rows[1:]]


def _one(tables: dict, prefix: str) -> list[dict[str, str]]:
    (rows,) = [rows for title, rows in tables.items() if title.startswith(prefix)]
    return rows


def test_one_off_costs_and_dims_in_the_terminal_markdown_and_html(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the HTML report's charts need matplotlib")
    run_dir = write_run(costly_run(), tmp_path / "r")
    code, out, err = run_cli(capsys, "report", str(run_dir), "--md", str(tmp_path / "r.md"),
                             "--html", str(tmp_path / "r.html"))
    assert code == 0, err
    md = md_tables((tmp_path / "r.md").read_text())
    page = HtmlTables((tmp_path / "r.html").read_text()).tables
    for tables in (md, page):
        rows = _one(tables, "one-off costs")
        # once per model: the mlp model's build and export on every mlp target's row; mlp-server's
        # model recorded none
        # each column at one precision: two significant digits for its smallest figure
        assert {(r["benchmark"], r["target"]): (r["model build s"], r["export s"]) for r in rows} == {
            ("mlp", "ort-cpu"): ("4.2", "3.1"), ("mlp", "torch-cpu"): ("4.2", "3.1"),
            ("mlp", "ort-fp16"): ("4.2", "3.1"), ("mlp", "dnnl"): ("4.2", "3.1"), ("mlp-server", "ort-cpu"): ("-", "-")}
        costs = {r["target"]: r for r in rows if r["benchmark"] == "mlp"}
        assert costs["torch-cpu"]["compile s"] == "14" and costs["torch-cpu"]["capture s"] == "-"
        assert costs["ort-fp16"]["capture s"] == "0.21" and costs["ort-fp16"]["compile s"] == "-"
        assert costs["torch-cpu"]["load s"] == "0.021-0.023"  # its cells' load_s: 0.02115..., 0.02314...
        summary = _one(tables, "sample · run costly")
        assert list(summary[0])[:5] == ["benchmark", "target", "batch", "dims", "scenario"]
        by_cell = {(r["target"], r["dims"], r["scenario"]): r for r in summary}
        # per cell: load + compile + capture, what a process pays before its first answer
        assert by_cell[("torch-cpu", "-", "single-stream")]["one-off s"] == "13.923"  # a load-only 0.016 s sets 3 decimals
        assert by_cell[("ort-fp16", "-", "single-stream")]["one-off s"] == "0.226"  # 0.0164 + 0.21
        # each shape its own row with its own figures
        tp = {d: float(by_cell[("ort-cpu", d, "single-stream")]["samples/s"].split("±")[0].replace(",", ""))
              for d in ("seq=64", "seq=128")}
        assert tp["seq=128"] == pytest.approx(tp["seq=64"] / 2, rel=1e-3)
        # ranked within one shape: seq=64 and seq=128 are different workloads, each alone in its group
        ranked = [r for r in _one(tables, "targets ranked") if "seq=" in r["group"]]
        assert sorted((r["group"], r["rank"]) for r in ranked) == [("mlp/b4/seq=128/single-stream", "1"),
                                                                  ("mlp/b4/seq=64/single-stream", "1")]
    # two summary rows (13.92x s: compile and load) and the one-off row (compile 14 s)
    terminal = [line for line in out.splitlines() if "torch-cpu" in line and re.search(r"13\.92\d|│\s+14 │", line)]
    assert len(terminal) == 3
    assert "one-off costs" in out and "seq=128" in out and "seq=64" in out


def test_only_what_a_run_recorded_is_shown(tmp_path, capsys):
    # The sample: a load time per cell, nothing compiled or captured, no dims, no model costs
    # (written before those were): the summary keeps its columns, the one-off table has the loads.
    code, _, err = run_cli(capsys, "report", str(SAMPLE), "--md", str(tmp_path / "s.md"))
    assert code == 0, err
    tables = md_tables((tmp_path / "s.md").read_text())
    summary = _one(tables, "sample · run")
    assert "one-off s" not in summary[0] and "dims" not in summary[0]
    costs = _one(tables, "one-off costs")
    assert list(costs[0]) == ["benchmark", "target", "load s", "cells"]
    assert {(r["benchmark"], r["target"]): r["load s"] for r in costs}[("mlp", "torch-cpu")] == "0.021-0.023"
    # a file without any of them: no one-off table at all
    run = read_run(SAMPLE)
    bare = replace(run, cells=tuple(replace(c, load_s=None) for c in run.cells))
    code, out, err = run_cli(capsys, "report", str(write_run(bare, tmp_path / "r")), "--md", str(tmp_path / "r.md"))
    assert code == 0, err
    assert not any(t.startswith("one-off") for t in md_tables((tmp_path / "r.md").read_text()))
    assert "one-off" not in out
