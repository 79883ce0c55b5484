"""The speed-accuracy trade (issue 29): per workload, each target's throughput over the
reference's paired by round and its accuracy loss, the Pareto front of throughput against loss
(a target that fails agreement never on it), shown in the terminal, Markdown, HTML and CSV; and
a real int8 run through the CLI showing it. No assertion on how fast anything ran."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench.analysis.tradeoff import tradeoffs
from bench.codec import to_json
from bench.results.files import read_run
from bench.results.records import Accuracy, AccuracyFigure, Agreement, Run, Throughput
from tests.helpers import FAST_STOP, TINY_MLP, run_cli, write_suite

SAMPLE = Path(__file__).parent / "data" / "run_v14.json"
ROOT = Path(__file__).parents[1]
DRIFT = (1.0, 1.12, 0.9)  # what the machine did in each round: the paired ratio cancels it


def top1(agreement: float, low: float, high: float, samples: int = 256) -> Accuracy:
    """A planted top-1 accuracy: agreement with its interval, the loss its complement."""
    return Accuracy("top1", samples, 1 - agreement, 1 - high, 1 - low, 0.95, 0,
                    (AccuracyFigure("top1_agreement", agreement, low, high), AccuracyFigure("max_prob_diff", 0.01)))


def planted_cell(base, name: str, precision: str, speed: float, accuracy: Accuracy | None, verdict: str = "pass",
                 reason: str = "", jitter: tuple[float, ...] = (1.0, 1.0, 1.0)):
    """A copy of `base` as target `name`: throughput `speed` x the base's in each of three rounds
    (the rounds' drift shared by every target), and the agreement given."""
    reps = base.repetitions
    template = reps[0]
    mine = tuple(replace(template, index=i, throughput=template.throughput * speed * d * j, used=True)
                 for i, (d, j) in enumerate(zip(DRIFT, jitter)))
    mean = sum(r.throughput for r in mine) / len(mine)
    tp = Throughput(mean, mean * 0.95, mean * 1.05, "samples/s", "planted", 0.95)
    if verdict == "reference":
        agreement = Agreement("reference", "ort-cpu", reason="this target is the reference")
    else:
        int8 = precision.startswith("int8")
        agreement = Agreement(verdict, "ort-cpu", 1e-3 if int8 else 1e-7, 1e-2 if int8 else 1e-6, 0.05 if int8 else 1e-4,
                              "accuracy loss (top-1 agreement)" if int8 else "max|out-ref| / max|ref|", reason,
                              accuracy=accuracy)
    return replace(base, id=base.id.replace(base.target.name, name), target=replace(base.target, name=name,
                   precision=precision), metrics=replace(base.metrics, throughput=tp), agreement=agreement,
                   repetitions=mine, model=replace(base.model, quantize_s=1.5 if precision.startswith("int8") else None))


def planted_run(run_id: str = "trade", fast_loss_agreement: float = 0.97) -> Run:
    """One workload (mlp b4 single-stream) of six targets on the reference ort-cpu:
    fast-int8 (2.9x, loses 3% top-1), mid-int8 (2x, loses 1%), dominated (1.5x, loses 2%: mid-int8
    is faster and closer), torch-fp32 (0.8x, loses nothing: the reference is as accurate and
    faster), failing (5x and closer than fast-int8, but it fails agreement)."""
    run = read_run(SAMPLE)
    base = next(c for c in run.cells if c.id == "mlp/ort-cpu/b4/single-stream")
    cells = (
        planted_cell(base, "ort-cpu", "fp32", 1.0, None, "reference"),
        planted_cell(base, "fast-int8", "int8-static", 2.9, top1(fast_loss_agreement, 0.94, 0.985),
                     jitter=(1.0, 1.01, 0.99)),
        planted_cell(base, "mid-int8", "int8-dynamic", 2.0, top1(0.99, 0.97, 0.997)),
        planted_cell(base, "dominated", "int8-dynamic", 1.5, top1(0.98, 0.955, 0.99)),
        planted_cell(base, "torch-fp32", "fp32", 0.8, top1(1.0, 0.985, 1.0)),
        planted_cell(base, "failing", "int8-dynamic", 5.0, top1(0.975, 0.945, 0.988), "fail",
                     "accuracy loss 0.025 exceeds tolerance 0.02"),
    )
    return replace(run, run_id=run_id, cells=cells)


def write_run(run: Run, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(to_json(run)))
    return run_dir


def test_the_front_keeps_the_fast_inaccurate_and_the_slow_accurate_and_never_a_failing_target():
    (trade,) = tradeoffs(planted_run())
    assert trade.workload == "mlp/b4/single-stream" and trade.reference == "ort-cpu" and trade.metric == "top1"
    by = {p.cell.target.name: p for p in trade.points}
    assert [p.cell.target.name for p in trade.points] == ["failing", "fast-int8", "mid-int8", "dominated", "ort-cpu",
                                                          "torch-fp32"]  # fastest first
    # fastest acceptable, a middle one, and the slow accurate reference (loss 0 by definition)
    assert {n for n, p in by.items() if p.pareto} == {"fast-int8", "mid-int8", "ort-cpu"}
    assert not by["dominated"].pareto  # mid-int8 is faster and closer
    assert not by["torch-fp32"].pareto  # as accurate as the reference, and slower
    # failing is faster than fast-int8 and closer to the reference, yet neither on the front nor pushing it off
    assert by["failing"].fails and not by["failing"].pareto
    assert by["ort-cpu"].loss == 0.0 and by["ort-cpu"].vs_reference is None
    assert by["fast-int8"].loss == pytest.approx(0.03)
    assert [p.cell.target.name for p in trade.front] == ["ort-cpu", "mid-int8", "fast-int8"]  # lowest loss first


def test_each_target_is_paired_with_the_reference_by_round():
    (trade,) = tradeoffs(planted_run())
    ratio = {p.cell.target.name: p.vs_reference for p in trade.points}
    fast = ratio["fast-int8"]
    # the rounds' drift (x1.12, x0.9) cancels: what is left is the planted 2.9 and its 1% jitter
    assert fast.rounds == 3 and fast.low < 2.9 < fast.high and fast.ratio == pytest.approx(2.9, rel=0.01)
    assert ratio["mid-int8"].ratio == pytest.approx(2.0) and ratio["mid-int8"].resolved


def test_the_trade_reads_in_the_terminal_markdown_html_and_csv(tmp_path, capsys):
    run_dir = write_run(planted_run(), tmp_path / "trade")
    html, md, out_csv = tmp_path / "r.html", tmp_path / "r.md", tmp_path / "r.csv"
    code, out, err = run_cli(capsys, "report", str(run_dir), "--html", str(html), "--md", str(md), "--csv", str(out_csv))
    assert code == 0, err
    # terminal: the trade table after the summary, each target's ratio to the reference and its loss
    assert out.index("speed against accuracy") > out.index("· run trade")
    lines = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") > 10
             and "mlp/b4/single-stream" in line}
    assert "★" in lines["fast-int8"] and "x2.90" in lines["fast-int8"] and "top-1 97.0%" in lines["fast-int8"]
    assert "3.0%" in lines["fast-int8"] and "int8-static" in lines["fast-int8"]
    assert "fails agreement" in lines["failing"] and "★" not in lines["failing"]
    assert "★" not in lines["dominated"] and "reference" in lines["ort-cpu"]
    assert "fast-int8 x2.90" in out.replace("\n", " ")  # the front in words, in the caption
    # the summary's accuracy column; an int8 target's verdict without its element-wise error
    summary = next(line for line in out.splitlines() if "│ fast-int8" in line and "single-stream" in line)
    assert "│ pass " in summary and "pass (" not in summary and "top-1 97.0%" in summary
    fp32 = next(line for line in out.splitlines() if "│ torch-fp32" in line and "single-stream" in line)
    assert "pass (1.0e-06)" in fp32 and "top-1 100%" in fp32  # judged element-wise: its error stays
    # Markdown: the trade table open under the summary, before the folded tables
    text = md.read_text()
    assert "### speed against accuracy" in text and text.index("### speed against accuracy") < text.index("<details>")
    # HTML: its own section, the table and a chart with a point per target and the front
    page = html.read_text()
    assert 'id="tradeoff"' in page and "Speed against accuracy" in page
    assert 'data-kind="tradeoff" data-series="7"' in page  # six targets and the front
    # CSV: the accuracy columns and the quantize seconds
    rows = {r["target"]: r for r in csv.DictReader(out_csv.open(newline="", encoding="utf-8"))}
    fast = rows["fast-int8"]
    assert fast["accuracy_metric"] == "top1" and float(fast["accuracy_value"]) == pytest.approx(0.97)
    assert float(fast["accuracy_ci_low"]) == 0.94 and float(fast["accuracy_ci_high"]) == 0.985
    assert float(fast["accuracy_loss"]) == pytest.approx(0.03) and fast["accuracy_samples"] == "256"
    assert float(fast["model_quantize_s"]) == 1.5
    assert rows["ort-cpu"]["accuracy_metric"] == "" and rows["ort-cpu"]["model_quantize_s"] == ""


def test_a_run_without_accuracy_figures_shows_no_trade(tmp_path, capsys):
    code, out, err = run_cli(capsys, "report", str(SAMPLE))
    assert code == 0, err
    assert "speed against accuracy" not in out and "┃ accuracy" not in out and "quantize s" not in out


INT8_SUITE = f"""
    [suite]
    name = "trade"

    [targets.ort]
    backend = "onnxruntime"
    intra_op_threads = 1

    [targets.ort-int8]
    backend = "onnxruntime"
    precision = "int8-static"
    intra_op_threads = 1
    quantize = {{ method = "minmax", samples = 16 }}

    [targets.torch]
    backend = "torch"
    threads = 1

    [[benchmark]]
    name = "m"
    model = "zoo:mlp"
    model_args = {TINY_MLP}
    batch_sizes = [4]
    scenarios = ["single-stream"]
    targets = ["ort", "ort-int8", "torch"]
    stop = {FAST_STOP}
    accuracy = {{ samples = 32 }}
"""


def test_a_real_int8_run_prints_the_trade_after_its_summary(tmp_path):
    """bench run in a subprocess, as a user runs it: the terminal report, then the CSV of its file."""
    suite = write_suite(tmp_path, INT8_SUITE)
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(suite), "--out", str(tmp_path / "out"),
                           "--quiet"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: int8's loss over its tolerance on this tiny model
    out = done.stdout
    assert out.index("speed against accuracy") > out.index("trade · run") > -1
    trade = [line for line in out.splitlines() if line.startswith("│ m/b4/single-stream")]
    assert len(trade) == 3 and any("int8-static" in line for line in trade)
    assert any("reference" in line and "★" in line for line in trade)  # the reference: loss 0, on the front
    int8_line = next(line for line in trade if "ort-int8" in line)
    assert "top-1" in int8_line and " [" in int8_line  # its headline with an interval
    # its ratio to the reference, paired by round: "x1.23 [0.9, 1.6]"
    assert any(part.strip().startswith("x") for part in int8_line.split("│"))
    assert "quantize s" in out  # the one-off costs: quantized now, or "cached" by an earlier run
    run_dir = next((tmp_path / "out").glob("*/run.json")).parent
    out_csv = tmp_path / "cells.csv"
    done = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(run_dir), "--csv", str(out_csv)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {r["target"]: r for r in csv.DictReader(out_csv.open(newline="", encoding="utf-8"))}
    assert rows["ort-int8"]["accuracy_metric"] == "top1" and rows["ort-int8"]["accuracy_samples"] == "32"
    assert float(rows["ort-int8"]["accuracy_ci_low"]) <= float(rows["ort-int8"]["accuracy_value"])
    assert rows["ort-int8"]["model_quantize_s"] != "" and rows["ort"]["model_quantize_s"] == ""
    assert rows["torch"]["accuracy_loss"] != ""
