"""The result file contract: committed schema, a committed v1 sample, round-trips and refusals."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from bench.errors import ResultFileError, UsageError
from bench.results.files import RunDir, read_run
from bench.results.records import SCHEMA_VERSION, Run
from bench.codec import from_json, to_json
from bench.results.schema import run_schema

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "tests/data/run_v14.json"  # the current version (a real run's v6 file, upgraded)
SAMPLE_V11 = ROOT / "tests/data/run_v11.json"  # the same run at schema version 11
SCHEMA_V11_FILE = ROOT / "tests/data/run_v11.schema.json"
SAMPLE_V10 = ROOT / "tests/data/run_v10.json"  # the same run at schema version 10
SCHEMA_V10_FILE = ROOT / "tests/data/run_v10.schema.json"
SAMPLE_V8 = ROOT / "tests/data/run_v8.json"  # the same run at schema version 8
SCHEMA_V8_FILE = ROOT / "tests/data/run_v8.schema.json"
SAMPLE_V9 = ROOT / "tests/data/run_v9.json"  # the same run at schema version 9
SCHEMA_V9_FILE = ROOT / "tests/data/run_v9.schema.json"
SAMPLE_V7 = ROOT / "tests/data/run_v7.json"  # the same run at schema version 7
SCHEMA_V7_FILE = ROOT / "tests/data/run_v7.schema.json"
SAMPLE_V6 = ROOT / "tests/data/run_v6.json"  # written by the harness at schema version 6
SCHEMA_V6_FILE = ROOT / "tests/data/run_v6.schema.json"
SAMPLE_V5 = ROOT / "tests/data/run_v5.json"  # written by the harness at schema version 5
SCHEMA_V5_FILE = ROOT / "tests/data/run_v5.schema.json"
SAMPLE_V4 = ROOT / "tests/data/run_v4.json"  # written by the harness at schema version 4
SCHEMA_V4_FILE = ROOT / "tests/data/run_v4.schema.json"
SAMPLE_V3 = ROOT / "tests/data/run_v3.json"  # written by the harness at schema version 3
SCHEMA_V3_FILE = ROOT / "tests/data/run_v3.schema.json"
SAMPLE_V2 = ROOT / "tests/data/run_v2.json"
SCHEMA_V2_FILE = ROOT / "tests/data/run_v2.schema.json"
SAMPLE_V1 = ROOT / "tests/data/run_v1.json"  # written by the harness at schema version 1
SCHEMA_FILE = ROOT / "bench/results/run.schema.json"
SCHEMA_V1_FILE = ROOT / "tests/data/run_v1.schema.json"


def test_committed_schema_matches_the_records():
    assert json.loads(SCHEMA_FILE.read_text()) == run_schema(), (
        "regenerate bench/results/run.schema.json from bench.results.schema.run_schema()"
    )


def test_committed_v1_file_upgrades_to_the_current_version():
    doc = json.loads(SAMPLE_V1.read_text())
    assert doc["schema_version"] == 1
    jsonschema.validate(doc, json.loads(SCHEMA_V1_FILE.read_text()))
    run = read_run(SAMPLE_V1)
    assert run.schema_version == SCHEMA_VERSION == 14
    upgraded = to_json(run)
    jsonschema.validate(upgraded, json.loads(SCHEMA_FILE.read_text()))
    ok = [c for c in run.cells if c.status == "ok"]
    assert ok and all(c.metrics.throughput.ci_low is None and c.throughput_series is None for c in ok)
    assert [c.id for c in run.cells] == [c["id"] for c in doc["cells"]]


def test_committed_v2_file_upgrades_to_the_current_version():
    doc = json.loads(SAMPLE_V2.read_text())
    assert doc["schema_version"] == 2
    jsonschema.validate(doc, json.loads(SCHEMA_V2_FILE.read_text()))
    run = read_run(SAMPLE_V2)
    assert run.schema_version == SCHEMA_VERSION
    jsonschema.validate(to_json(run), json.loads(SCHEMA_FILE.read_text()))
    assert all(c.server is None for c in run.cells)
    assert [c.metrics.throughput.ci_low for c in run.cells if c.metrics] == [
        c["metrics"]["throughput"]["ci_low"] for c in doc["cells"] if c["metrics"]]


def test_committed_v3_file_upgrades_to_the_current_version():
    doc = json.loads(SAMPLE_V3.read_text())
    assert doc["schema_version"] == 3
    jsonschema.validate(doc, json.loads(SCHEMA_V3_FILE.read_text()))
    run = read_run(SAMPLE_V3)
    assert run.schema_version == SCHEMA_VERSION
    jsonschema.validate(to_json(run), json.loads(SCHEMA_FILE.read_text()))
    assert all(c.gpu is None and c.roofline is None and c.compile_s is None for c in run.cells)
    assert [c.id for c in run.cells] == [c["id"] for c in doc["cells"]]


def test_committed_v4_file_upgrades_with_failure_kinds_and_concurrency_axis():
    doc = json.loads(SAMPLE_V4.read_text())
    assert doc["schema_version"] == 4
    jsonschema.validate(doc, json.loads(SCHEMA_V4_FILE.read_text()))
    run = read_run(SAMPLE_V4)
    assert run.schema_version == SCHEMA_VERSION
    jsonschema.validate(to_json(run), json.loads(SCHEMA_FILE.read_text()))
    by_id = {c.id: c for c in run.cells}
    # v4's failed cell is a provider this onnxruntime lacks, with no traceback: unsupported
    assert by_id["mlp/dnnl/b4/single-stream"].failure_kind == "unsupported"
    assert all(c.failure_kind is None for c in run.cells if c.status != "failed")
    # no v4 cell here is multi-stream: none has a concurrency axis, and their keys say so
    assert all(c.concurrency is None for c in run.cells)
    assert by_id["mlp-server/ort-cpu/b1/server"].key.id == "mlp-server/ort-cpu/b1/server"


def test_committed_v5_file_upgrades_as_one_process_per_cell():
    doc = json.loads(SAMPLE_V5.read_text())
    assert doc["schema_version"] == 5
    jsonschema.validate(doc, json.loads(SCHEMA_V5_FILE.read_text()))
    run = read_run(SAMPLE_V5)
    assert run.schema_version == SCHEMA_VERSION
    jsonschema.validate(to_json(run), json.loads(SCHEMA_FILE.read_text()))
    # one process per cell: no repetitions, no split, never marked unstable (nothing to tell it by)
    assert all(c.repetitions == () and c.variance == () and c.unstable is None for c in run.cells)
    assert [c.metrics.throughput.value for c in run.cells if c.metrics] == [
        c["metrics"]["throughput"]["value"] for c in doc["cells"] if c["metrics"]]


def test_committed_v6_file_upgrades_as_a_run_that_completed():
    doc = json.loads(SAMPLE_V6.read_text())
    assert doc["schema_version"] == 6
    jsonschema.validate(doc, json.loads(SCHEMA_V6_FILE.read_text()))
    run = read_run(SAMPLE_V6)
    assert run.schema_version == SCHEMA_VERSION
    jsonschema.validate(to_json(run), json.loads(SCHEMA_FILE.read_text()))
    assert run.status == "complete" and run.end_reason == ""
    assert [c.id for c in run.cells] == [c["id"] for c in doc["cells"]]


@pytest.mark.parametrize("version,sample,schema", [
    (7, SAMPLE_V7, SCHEMA_V7_FILE),  # no GPU series then
    (8, SAMPLE_V8, SCHEMA_V8_FILE),  # no monitor then
    (9, SAMPLE_V9, SCHEMA_V9_FILE),  # no generate figures then
    (10, SAMPLE_V10, SCHEMA_V10_FILE),  # no fleet nodes then
    (11, SAMPLE_V11, SCHEMA_V11_FILE),  # no dims, inputs or one-off costs then
])
def test_committed_v7_to_v11_files_upgrade_by_version_alone(version, sample, schema):
    doc = json.loads(sample.read_text())
    assert doc["schema_version"] == version
    jsonschema.validate(doc, json.loads(schema.read_text()))
    run = read_run(sample)
    assert run.schema_version == SCHEMA_VERSION
    jsonschema.validate(to_json(run), json.loads(SCHEMA_FILE.read_text()))
    assert [c.id for c in run.cells] == [c["id"] for c in doc["cells"]]
    assert all(c.generate is None and (c.agreement is None or c.agreement.first_divergence is None) for c in run.cells)
    assert (version == 11 or run.executor == "local" and run.nodes == () and all(c.node is None for c in run.cells))
    assert all(c.dims == {} and c.inputs is None and c.model.prepare_s is None for c in run.cells)


@pytest.mark.parametrize("version", [12, 13])
def test_committed_v12_and_v13_files_upgrade_by_version_alone(version):
    """v13 added served targets' requests, v14 accuracy figures and int8 quantization time: none
    was recorded before, so an older file reads with them null."""
    sample = ROOT / f"tests/data/run_v{version}.json"
    doc = json.loads(sample.read_text())
    assert doc["schema_version"] == version
    jsonschema.validate(doc, json.loads((ROOT / f"tests/data/run_v{version}.schema.json").read_text()))
    run = read_run(sample)
    assert run.schema_version == SCHEMA_VERSION
    jsonschema.validate(to_json(run), json.loads(SCHEMA_FILE.read_text()))
    assert all((c.agreement is None or c.agreement.accuracy is None) and c.model.quantize_s is None for c in run.cells)
    assert version == 13 or all(c.requests is None for c in run.cells)


def test_current_sample_keeps_each_repetition_and_their_samples_in_order():
    import numpy as np

    run = read_run(SAMPLE)
    ok = [c for c in run.cells if c.status == "ok"]
    assert ok and all(len(c.repetitions) == 2 and len(c.used_repetitions) == 2 for c in ok)
    for c in ok:
        values = [r.throughput for r in c.used_repetitions]
        assert c.metrics.throughput.value == pytest.approx(np.mean(values))
        assert "t over 2 processes" in c.metrics.throughput.method
        assert c.metrics.latency_ms.n == sum(r.n for r in c.used_repetitions)
        assert {v.figure for v in c.variance} >= {"throughput", "p50"}


@pytest.mark.parametrize("reason, tail, kind", [
    ("out of memory at batch 64: CUDA out of memory. Tried to allocate 2 GiB", "Traceback ...", "out_of_memory"),
    ("timed out after 320 s", "", "timeout"),
    ("worker killed by SIGSEGV", "native library says: about to crash", "crash"),
    ("worker exited with code 1 without a result", "", "crash"),
    ("RuntimeError: device lost", "Traceback (most recent call last): ...", "error"),
    ("target 'gpu3': device 'cuda:3' does not exist: this machine shows 1 CUDA device (allowed: cuda:0)", "", "unsupported"),
])
def test_update_to_5_reads_the_failure_kind_from_v4_reasons(tmp_path, reason, tail, kind):
    doc = json.loads(SAMPLE_V4.read_text())
    failed = next(c for c in doc["cells"] if c["status"] == "failed")
    failed.update(reason=reason, stderr_tail=tail)
    multi = json.loads(json.dumps(next(c for c in doc["cells"] if c["status"] == "ok")))
    multi.update(id=multi["id"].replace("single-stream", "multi-stream") + "/c4", scenario="multi-stream", concurrency=4)
    doc["cells"].append(multi)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    run = read_run(path)
    assert next(c for c in run.cells if c.status == "failed").failure_kind == kind
    upgraded = run.cells[-1]
    assert upgraded.concurrency == 4 and upgraded.key.id == multi["id"]  # the v4 multi-stream id, kept


def test_cell_key_names_a_cell_within_and_across_runs():
    from bench.results.records import CellKey

    plain = CellKey("bert", "0123456789abcdef", "ort-cpu", 8, "offline")
    clients = CellKey("bert", "0123456789abcdef", "ort-cpu", 8, "multi-stream", 4)
    assert plain.id == "bert/ort-cpu/b8/offline" and clients.id == "bert/ort-cpu/b8/multi-stream/c4"
    assert plain.stable_id == "bert|0123456789ab|ort-cpu|b8|offline"
    shaped = CellKey("bert", "0123456789abcdef", "ort-cpu", 8, "offline", None, (("image", 224), ("seq", 128)))
    assert shaped.id == "bert/ort-cpu/b8/image=224,seq=128/offline"
    assert shaped.stable_id == "bert|0123456789ab|ort-cpu|b8|image=224,seq=128|offline" and shaped != plain
    assert clients.stable_id == "bert|0123456789ab|ort-cpu|b8|multi-stream|c4"
    assert len({plain, clients, CellKey("bert", "0123456789abcdef", "ort-cpu", 8, "offline")}) == 2  # hashable
    cells = read_run(SAMPLE).cells
    assert all(c.key.id == c.id for c in cells)  # every cell id in a run is its key's


def test_committed_current_sample_validates_and_round_trips():
    doc = json.loads(SAMPLE.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
    run = read_run(SAMPLE)
    assert isinstance(run, Run)
    assert to_json(run) == doc
    assert from_json(Run, json.loads(json.dumps(to_json(run)))) == run
    statuses = {c.status for c in run.cells}
    assert statuses == {"ok", "failed", "skipped"}
    ok = [c for c in run.cells if c.status == "ok"]
    assert all(c.metrics.throughput.unit == "samples/s" for c in ok)
    server = [c for c in ok if c.scenario == "server"]
    # the server's own record is one repetition's (the median one), the latency figures all repetitions'
    assert server and server[0].server.requests in {r.n for r in server[0].used_repetitions}
    assert server[0].metrics.latency_ms.n == sum(r.n for r in server[0].used_repetitions)
    assert server[0].server.valid == (not server[0].server.validity)
    for c in ok:  # v2 fills the intervals
        tp = c.metrics.throughput
        assert tp.ci_low < tp.value < tp.ci_high and tp.confidence == 0.95
        assert c.metrics.latency_ms.p50.ci_low <= c.metrics.latency_ms.p50.value <= c.metrics.latency_ms.p50.ci_high
        assert c.metrics.latency_ms.histogram is not None
        if c.server is not None:
            assert c.server.queue_depth.values and c.throughput_series is None
        elif c.clients is not None:  # clients side by side: no one series over them all
            assert len(c.clients.throughput_per_client) == c.concurrency and c.throughput_series is None
        else:
            assert c.throughput_series.values


def test_reader_refuses_newer_schema_with_the_fix(tmp_path):
    doc = json.loads(SAMPLE.read_text())
    doc["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultFileError, match="newer than this harness reads .*upgrade the bench harness"):
        read_run(path)


@pytest.mark.parametrize("content, message", [
    ("", "not JSON"),
    ('{"schema_version": 1, "run_id": ', "not JSON"),
    ("[1, 2]", "no integer schema_version"),
    ('{"schema_version": 0}', "not a version this harness knows"),
    ('{"schema_version": 1, "run_id": "x"}', "malformed result file: run: missing key"),
])
def test_reader_refuses_bad_files(tmp_path, content, message):
    path = tmp_path / "run.json"
    path.write_text(content)
    with pytest.raises(ResultFileError, match=message):
        read_run(path)


def test_truncated_sample_is_refused(tmp_path):
    text = SAMPLE.read_text()
    path = tmp_path / "run.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ResultFileError, match="truncated or corrupt"):
        read_run(path)


def test_wrong_types_name_the_key(tmp_path):
    doc = json.loads(SAMPLE.read_text())
    doc["cells"][0]["batch_size"] = "four"
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultFileError, match=r"run.cells\[0\].batch_size: 'four' is not allowed; expected an integer"):
        read_run(path)


def test_run_directories_are_never_overwritten(tmp_path):
    RunDir(tmp_path, "r1")
    with pytest.raises(UsageError, match="never overwritten"):
        RunDir(tmp_path, "r1")


def test_sample_holds_no_environment_values_beyond_the_allow_list():
    from bench.measure.environment import ALLOWED_ENV_VARS

    env = json.loads(SAMPLE.read_text())["environment"]
    assert set(env["env_vars"]) <= set(ALLOWED_ENV_VARS)
