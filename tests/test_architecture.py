"""The architecture holds: the layering (import-linter contracts), a worker free of numba, and a
scenario added as one module plus one registry line, with nothing else changed."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(config: Path, cwd: Path, pythonpath: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run([str(LINT), str(config)], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_import_contracts_are_kept():
    done = _lint(ROOT / "pyproject.toml", ROOT, str(ROOT))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout and "kept" in done.stdout


def test_the_contracts_catch_an_import_against_the_layers(tmp_path):
    """The same contract types break on a planted upward import and a planted cycle."""
    pkg = tmp_path / "layered"
    for name, body in {"__init__": "", "high": "", "low": "from layered import high\n",
                       "a": "from layered import b\n", "b": "from layered import a\n"}.items():
        (pkg / f"{name}.py").parent.mkdir(exist_ok=True)
        (pkg / f"{name}.py").write_text(body)
    config = tmp_path / "contracts.toml"
    config.write_text(textwrap.dedent("""
        [tool.importlinter]
        root_packages = ["layered"]

        [[tool.importlinter.contracts]]
        name = "layers"
        type = "layers"
        layers = ["layered.high", "layered.low"]

        [[tool.importlinter.contracts]]
        name = "no cycles"
        type = "acyclic_siblings"
        ancestors = ["layered"]
    """))
    done = _lint(config, tmp_path, str(tmp_path))
    assert done.returncode == 1
    assert "2 broken" in done.stdout and "layered.low -> layered.high" in done.stdout


def test_a_worker_imports_its_runtime_not_numba():
    """A worker's memory is a reported figure: the statistics kernels stay in the parent, and the
    commands too (a spawned worker re-imports the main module, bench.cli under the bench script)."""
    code = ("import sys; import bench.cli, bench.runner.unit, bench.runner.isolation; "
            "print(sorted(m for m in ('numba', 'bench_kernels', 'bench.stats', 'scipy', 'bench.commands', 'rich') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# A scenario the harness has never seen: one module. It owns a table (`burst = { size = N }`),
# sweeps a concurrency axis, issues bursts of back-to-back calls, keeps each burst's time, and
# compares as a sample test on p50.
BURST = '''
from bench.analysis.compare import SampleTest
from bench.scenarios.base import Scenario, ScenarioRun, steady_figures
from bench.scenarios.loops import warm_up
import time
import numpy as np


class Burst(Scenario):
    name = "burst"
    table_key = "burst"

    def parse_table(self, reader, value, path):
        table = reader.expect(value, (dict,), path, "a table")
        reader.check_keys(table, ("size",), path)
        return reader.expect(table.get("size", 4), (int,), f"{path}.size", "an integer")

    def check(self, reader, bench, targets, path):
        if bench.table("burst") is None:
            raise reader.fail(path, "the burst scenario needs burst = { size = N }")

    def axis(self, bench):
        return (1, 2)

    def run(self, session):
        fn, args = session.call
        size = session.bench.table("burst")
        warm = warm_up(session.call, session.stop, time.perf_counter_ns)
        bursts = []
        for _ in range(30):
            t0 = time.perf_counter_ns()
            for _ in range(size):
                fn(*args)
            bursts.append(time.perf_counter_ns() - t0)
        lat = np.asarray(bursts, dtype=np.int64)
        return ScenarioRun(lat, int(lat.sum()), warm, f"30 bursts of {size}", detail=size)

    def figures(self, run, bench, key):
        return steady_figures(run, bench, key, steady=False)

    def compare_policy(self):
        return SampleTest("p50")

    def detail_rows(self, cell):
        return (("burst", f"{cell.metrics.latency_ms.n} bursts"),)
'''


def test_a_new_scenario_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    from bench.analysis.compare import SampleTest
    from bench.config.suite import parse_suite
    from bench.models.loader import prepare
    from bench.report.run_tables import details_table
    from bench.results.files import RunDir
    from bench.runner.assemble import CellBuilder, model_ref
    from bench.runner.plan import plan, with_models
    from bench.runner.unit import UnitJob, run_unit
    from bench.scenarios import registry
    from tests.helpers import tiny_suite

    (tmp_path / "bench_burst.py").write_text(BURST)
    monkeypatch.syspath_prepend(str(tmp_path))
    import bench_burst

    burst = bench_burst.Burst()
    monkeypatch.setitem(registry.SCENARIOS, burst.name, burst)  # the registry line
    suite = parse_suite(tiny_suite(targets='["ort"]', batch_sizes="[2]", scenarios='["burst"]',
                                   bench_extra="burst = { size = 3 }"))
    assert suite.benchmarks[0].table("burst") == 3
    with pytest.raises(Exception, match="the burst scenario needs burst"):
        parse_suite(tiny_suite(targets='["ort"]', scenarios='["burst"]'))
    cells = plan(suite)
    assert [c.id for c in cells] == ["m/ort/b2/burst/c1", "m/ort/b2/burst/c2"]  # its axis
    bench = suite.benchmarks[0]
    model = prepare(model_ref(bench), need_onnx=True, need_torch=False)
    cells = with_models(cells, {bench.name: model.sha256})
    builder = CellBuilder(RunDir(tmp_path / "r", "run"), {bench.name: model}, tmp_path)
    p = cells[0]
    # the worker side, in this process (a spawned worker would import the module the same way)
    out = run_unit(UnitJob(p.key, 0, bench, p.target, model, str(builder.outputs_path(bench.name, "ort", 2))))
    cell = builder.ok(p, out)
    assert cell.status == "ok" and cell.metrics.latency_ms.n == 30 and cell.concurrency == 1
    assert cell.stop_reason == "30 bursts of 3" and np.load(tmp_path / "r/run" / cell.samples_file).size == 30
    assert cell.agreement.verdict == "reference"
    assert registry.compare_policy("burst") == SampleTest("p50")
    from bench.results.records import Run

    table = details_table(Run(5, "run", "now", "complete", None, None, (cell,)), registry.detail_rows)
    assert table.rows == (("m/ort/b2/burst/c1", "burst", "30 bursts"),)


def test_kernels_import_numpy_and_numba_only():
    """kernels/ (installed as bench_kernels) imports nothing of bench, nor each other by a name that
    could resolve to another package: numpy, numba and the standard library's math only."""
    import ast

    for path in sorted((ROOT / "kernels").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or "."]
            else:
                continue
            assert all(n.split(".")[0] in ("numpy", "numba", "math", "__future__") for n in names), (path.name, names)
    # no __init__.py: a regular package named `kernels` at the repository root would shadow
    # Hugging Face's `kernels` (which transformers imports) whenever the root is on sys.path
    assert not (ROOT / "kernels" / "__init__.py").exists()


def test_every_bench_package_is_installed():
    """pyproject.toml lists the packages (the finder cannot map kernels/ to bench_kernels): a new
    package under bench/ missing from the list would be absent from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bench").rglob("__init__.py")}
    assert listed == on_disk | {"bench_kernels"}
