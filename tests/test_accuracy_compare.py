"""Accuracy as a series that can regress (issue 29): bench compare answers each cell's accuracy
loss beside its speed (worse, better, unchanged, inconclusive) and exits 1 on a worse one as on a
slower one; bench history --metric accuracy follows each cell's loss and its gate fires on a rise.
Runs are planted from the committed v14 file (tests.test_tradeoff.planted_run)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.analysis.compare import compare_accuracy
from tests.helpers import run_cli
from tests.test_tradeoff import planted_run, top1, write_run


def _with(run, target: str, **agreement):
    """`run` with `target`'s agreement changed (accuracy, verdict, reason)."""
    return replace(run, cells=tuple(replace(c, agreement=replace(c.agreement, **agreement))
                                    if c.target.name == target else c for c in run.cells))


@pytest.fixture
def base_dir(tmp_path):
    return write_run(planted_run("base"), tmp_path / "base")


def test_a_loss_whose_interval_lies_above_the_base_is_a_regression_exit_1(base_dir, tmp_path, capsys):
    # fast-int8: top-1 97.0% [94.0, 98.5] -> 90.0% [86.0, 93.0]: loss [1.5, 6.0]% -> [7.0, 14.0]%
    new = _with(planted_run("new"), "fast-int8", accuracy=top1(0.90, 0.86, 0.93))
    new_dir = write_run(new, tmp_path / "new")
    md, html = tmp_path / "c.md", tmp_path / "c.html"
    code, out, err = run_cli(capsys, "compare", str(base_dir), str(new_dir), "--md", str(md), "--html", str(html))
    assert code == 1, out + err
    assert out.startswith("LESS ACCURATE: 1 cell(s) less accurate")
    assert "accuracy: 1 worse, 0 inconclusive, 0 better, 4 unchanged" in out
    assert "less accurate: mlp|" in out and "fast-int8" in out and "NEW's interval lies wholly above BASE's" in out
    assert "less accurate: mlp|" in err and "fast-int8" in err
    text = md.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `") and "fast-int8" in line)
    assert "**unchanged, less accurate**" in row or "**inconclusive, less accurate**" in row
    assert "**top-1 loss 3.0% -> 10.0% worse**" in row
    assert "**LESS ACCURATE**" in text and "less accurate: accuracy loss 3% [1.5%, 6%] -> 10% [7%, 14%]" in text
    assert "less accurate:" in html.read_text()
    code, out, _ = run_cli(capsys, "compare", str(base_dir), str(new_dir), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["outcome"] == "less accurate"
    cell = next(c for c in doc["cells"] if "|fast-int8|" in c["key"])
    assert cell["accuracy"]["answer"] == "worse" and cell["accuracy"]["new_loss"] == pytest.approx(0.10)


def test_an_overlapping_change_is_inconclusive_not_a_regression(base_dir, tmp_path, capsys):
    # loss 3.0% [1.5, 6.0] -> 4.5% [2.5, 8.0]: one or two samples' worth, the intervals overlap
    new_dir = write_run(_with(planted_run("new"), "fast-int8", accuracy=top1(0.955, 0.92, 0.975)), tmp_path / "new")
    code, out, err = run_cli(capsys, "compare", str(base_dir), str(new_dir))
    assert code == 0, out + err
    assert out.startswith("INCONCLUSIVE") and "accuracy: 0 worse, 1 inconclusive" in out
    assert "the intervals overlap; 256 samples cannot tell this change from chance" in out
    code, _, err = run_cli(capsys, "compare", str(base_dir), str(new_dir), "--fail-on-inconclusive")
    assert code == 1 and "fast-int8" in err


def test_the_same_accuracy_reads_unchanged(base_dir, capsys):
    code, out, err = run_cli(capsys, "compare", str(base_dir), str(base_dir), "--json")
    doc = json.loads(out)
    answers = {c["key"].split("|")[2]: (c["accuracy"] or {}).get("answer") for c in doc["cells"]}
    assert answers == {"ort-cpu": None, "fast-int8": "unchanged", "mid-int8": "unchanged", "dominated": "unchanged",
                       "torch-fp32": "unchanged", "failing": "unchanged"}  # the reference has no accuracy of its own
    assert doc["outcome"] != "less accurate"


def test_crossing_the_tolerance_is_worse_and_coming_back_is_better():
    run = planted_run()
    mid = next(c for c in run.cells if c.target.name == "mid-int8")
    failed = replace(mid, agreement=replace(mid.agreement, verdict="fail", reason="accuracy loss 0.012 exceeds 0.01",
                                            accuracy=top1(0.988, 0.968, 0.996)))
    worse = compare_accuracy(mid, failed, 0.05)
    assert worse.answer == "worse" and "now fails agreement" in worse.reason  # the intervals overlap: the verdict decides
    better = compare_accuracy(failed, mid, 0.05)
    assert better.answer == "better" and "now passes agreement" in better.reason
    # a loss down beyond its interval is better; within 5% of the tolerance (0.05 x 0.05) unchanged
    assert compare_accuracy(mid, replace(mid, agreement=replace(mid.agreement, accuracy=top1(0.9995, 0.998, 1.0))),
                            0.05).answer == "better"
    nudged = replace(mid, agreement=replace(mid.agreement, accuracy=top1(0.989, 0.969, 0.996)))
    assert compare_accuracy(mid, nudged, 0.05).answer == "unchanged"
    reference = next(c for c in run.cells if c.target.name == "ort-cpu")
    assert compare_accuracy(reference, reference, 0.05) is None  # no accuracy figure on either side: no answer


def test_history_follows_the_accuracy_loss_and_its_gate_fires_on_a_rise(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    runs = []
    for i in range(6):
        run = replace(planted_run(f"night{i}"), created_at=f"2026-12-0{i + 1}T03:00:00Z")
        if i == 5:  # the latest night: fast-int8 loses 9% of top-1 where it lost 3%
            run = _with(run, "fast-int8", accuracy=top1(0.91, 0.87, 0.94))
        runs.append(str(write_run(run, tmp_path / f"n{i}")))
    code, _, err = run_cli(capsys, "history", "add", *runs, "--db", str(db))
    assert code == 0, err
    code, out, err = run_cli(capsys, "history", "--db", str(db), "--metric", "accuracy")
    assert code == 1, out + err
    fast = next(line for line in out.splitlines() if "|fast-int8|" in line)
    assert "6 runs" in fast and "latest accuracy loss 0.09" in fast
    assert "losses, oldest first: 0.03, 0.03, 0.03, 0.03, 0.03, 0.09" in out
    assert "REGRESSION at run 6/6 night5" in out and "(+0.06)" in out
    assert "the latest run starts a regression: +0.06" in out
    assert "ALARM in 1 series" in out and "a rise in loss of 0.05 or more" in out
    assert "|ort-cpu|" not in out  # the reference has no loss series: it is what the others are scored against
    assert "fast-int8" in err
    html = tmp_path / "h.html"
    code, _, _ = run_cli(capsys, "history", "--db", str(db), "--metric", "accuracy", "--only", "*mid-int8*",
                         "--html", str(html))
    assert code == 0 and "loss against the reference" in html.read_text()
    code, out, _ = run_cli(capsys, "history", "--db", str(db), "--metric", "accuracy", "--only", "*ort-cpu*")
    assert code == 4 and "carries accuracy figures" in out
    code, out, _ = run_cli(capsys, "history", "--db", str(db))  # throughput, as before
    assert code == 0 and "latest throughput" in out


def test_a_compare_of_runs_without_accuracy_keeps_its_table(capsys):
    sample = Path(__file__).parent / "data" / "run_v14.json"
    code, out, _ = run_cli(capsys, "compare", str(sample), str(sample))
    assert "accuracy" not in out.split("\n", 1)[0] and "┃ accuracy" not in out
