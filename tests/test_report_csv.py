"""`bench report RUN... --csv FILE`: one flat row per cell for spreadsheets, read back with
csv.DictReader against run.json's own figures; bad paths are one line and exit 2."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.codec import to_json
from bench.results.files import read_run
from tests.helpers import run_cli

SAMPLE = Path(__file__).parent / "data" / "run_v14.json"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def number(text: str) -> float | None:
    return None if text == "" else float(text)


def test_each_cell_of_the_sample_run_reads_back_with_its_figures(tmp_path, capsys):
    out = tmp_path / "cells.csv"
    code, stdout, err = run_cli(capsys, "report", str(SAMPLE), "--csv", str(out))
    assert code == 0, err
    assert f"CSV: {out} (11 cells)" in stdout
    doc = json.loads(SAMPLE.read_text())
    rows = read_csv(out)
    assert [r["cell_id"] for r in rows] == [c["id"] for c in doc["cells"]]
    for row, c in zip(rows, doc["cells"]):
        assert row["run_id"] == doc["run_id"] and row["benchmark"] == c["benchmark"]
        assert row["target"] == c["target"]["name"] and row["device"] == c["target"]["device"]
        assert row["precision"] == c["target"]["precision"] and int(row["batch_size"]) == c["batch_size"]
        assert row["status"] == c["status"] and row["reason"] == c["reason"]
        assert row["failure_kind"] == (c.get("failure_kind") or "")
        assert number(row["concurrency"]) == c.get("concurrency") and row["dims"] == ""
        assert number(row["load_s"]) == c.get("load_s") and number(row["compile_s"]) == c.get("compile_s")
        assert number(row["model_prepare_s"]) == c["model"].get("prepare_s")
        m = c.get("metrics")
        if m is None:  # failed and skipped cells: no figure, an empty field (never 0)
            assert row["throughput_per_s"] == row["p99_ms"] == row["p99_ms_ci_low"] == ""
            continue
        tp = m["throughput"]
        # exact: floats are written as repr, which reads back to the same float
        assert (number(row["throughput_per_s"]), number(row["throughput_per_s_ci_low"]),
                number(row["throughput_per_s_ci_high"])) == (tp["value"], tp["ci_low"], tp["ci_high"])
        assert row["throughput_unit"] == tp["unit"]
        for figure in ("mean", "p50", "p90", "p95", "p99", "p999", "min", "max"):
            e = m["latency_ms"][figure]
            assert (number(row[f"{figure}_ms"]), number(row[f"{figure}_ms_ci_low"]),
                    number(row[f"{figure}_ms_ci_high"])) == (e["value"], e.get("ci_low"), e.get("ci_high")), figure
        assert int(row["latency_n"]) == m["latency_ms"]["n"]
        assert int(row["peak_rss_bytes"]) == c["memory"]["peak_rss_bytes"]
        assert row["agreement"] == c["agreement"]["verdict"]
        assert int(row["repetitions"]) == len(c["repetitions"])
        assert row["unstable"] == (c.get("unstable") or "") and row["stop_reason"] == c["stop_reason"]
    knobs = json.loads(rows[0]["target_knobs"])  # a JSON object in one field, commas and quotes kept
    assert knobs == doc["cells"][0]["target"]["knobs"]


def test_several_runs_give_rows_of_each_with_their_run_id_dims_and_one_off_costs(tmp_path, capsys):
    run = read_run(SAMPLE)
    first = run.cells[0]
    shaped = replace(run, run_id="shaped", cells=(
        replace(first, id="mlp/ort-cpu/b4/seq=128/single-stream", dims={"seq": 128}, compile_s=13.9, capture_s=0.25,
                model=replace(first.model, prepare_s=4.5, export_s=0.0)),))
    other = tmp_path / "shaped"
    other.mkdir()
    (other / "run.json").write_text(json.dumps(to_json(shaped)))
    out = tmp_path / "both.csv"
    code, _, err = run_cli(capsys, "report", str(SAMPLE), str(other), "--csv", str(out))
    assert code == 0, err
    rows = read_csv(out)
    assert [r["run_id"] for r in rows] == [run.run_id] * len(run.cells) + ["shaped"]
    last = rows[-1]
    assert last["cell_id"] == "mlp/ort-cpu/b4/seq=128/single-stream"
    assert last["dims"] == "seq=128" and last["dim_seq"] == "128"
    assert rows[0]["dim_seq"] == ""  # a column for every row, empty where the cell has no such dimension
    assert (number(last["compile_s"]), number(last["capture_s"])) == (13.9, 0.25)
    assert (number(last["model_prepare_s"]), number(last["model_export_s"])) == (4.5, 0.0)
    assert number(last["throughput_per_s"]) == first.metrics.throughput.value


@pytest.mark.parametrize("case", ["a directory", "under a file", "missing directory"])
def test_a_path_that_cannot_take_the_csv_is_one_line_and_exit_2(case, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    path = {"a directory": tmp_path, "under a file": tmp_path / "a-file" / "cells.csv",
            "missing directory": tmp_path / "nowhere" / "cells.csv"}[case]
    code, out, err = run_cli(capsys, "report", str(SAMPLE), "--csv", str(path))
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bench: --csv {path}: "), err
    assert out == ""  # checked before any work: no table printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing written
