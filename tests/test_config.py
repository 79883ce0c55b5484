"""Config: valid suites parse into frozen specs; every bad value names file, key path and what is allowed."""
from __future__ import annotations

import dataclasses

import pytest

from bench.config.suite import load_suite, parse_suite
from bench.errors import ConfigError
from tests.helpers import FAST_STOP, run_cli, tiny_suite, write_suite


def test_tiny_suite_parses_into_frozen_specs():
    suite = parse_suite(tiny_suite(), "s.toml")
    bench = suite.benchmarks[0]
    assert bench.batch_sizes == (1, 4)
    assert bench.reference == "ort"
    assert suite.targets["ort"].options.intra_op_threads == 1
    assert suite.targets["torch"].options.threads == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        bench.name = "x"  # type: ignore[misc]


def test_default_suite_parses():
    suite = load_suite("benchmarks.toml")
    assert {b.name for b in suite.benchmarks} >= {"mlp", "resnet-mini", "bert-mini"}
    assert {t.backend for t in suite.targets.values()} == {"onnxruntime", "torch"}


LONG_STOP = ("{ min_seconds = 30, max_seconds = 600, min_iterations = 50, warmup_iterations = 40, "
             "warmup_seconds = 3, ci_figures = [] }")
SHORT_STOP = ("{ min_seconds = 0.5, max_seconds = 4, min_iterations = 3, warmup_iterations = 1, "
              "warmup_seconds = 0.01, ci_figures = [] }")


def test_quick_shrinks_stop_times():
    from bench.config.records import StopSpec

    text = tiny_suite().replace(FAST_STOP, LONG_STOP)
    assert LONG_STOP in text
    normal = parse_suite(text).benchmarks[0].stop
    assert (normal.min_seconds, normal.max_seconds, normal.min_iterations, normal.warmup_iterations,
            normal.warmup_seconds) == (30.0, 600.0, 50, 40, 3.0)
    quick = parse_suite(text, quick=True).benchmarks[0].stop
    # a tenth of the times, capped: min_seconds at 0.2 s, max_seconds at 1 s, warm-up at 2 calls and 0.05 s
    assert quick == StopSpec(min_seconds=0.2, max_seconds=1.0, min_iterations=5, warmup_iterations=2,
                             warmup_seconds=0.05, ci_rel_width=normal.ci_rel_width, confidence=normal.confidence,
                             ci_figures=(), repeats=min(normal.repeats, 2), max_repeats=2)
    # below the caps, a tenth; values already under a cap stay as they are
    short = parse_suite(tiny_suite().replace(FAST_STOP, SHORT_STOP), quick=True).benchmarks[0].stop
    assert (short.min_seconds, short.max_seconds, short.min_iterations, short.warmup_iterations,
            short.warmup_seconds) == (0.05, 0.4, 3, 1, 0.01)


@pytest.mark.parametrize(
    "old, new, expected",
    [
        # unknown keys, with a did-you-mean
        ('intra_op_threads = 1', 'intra_op_thread = 1', "targets.ort.intra_op_thread: unknown key 'intra_op_thread'; did you mean 'intra_op_threads'?"),
        ('batch_sizes = [1, 4]', 'batch_size = [1, 4]', "did you mean 'batch_sizes'?"),
        # unknown names
        ('targets = ["ort", "torch"]', 'targets = ["ort", "trch"]', "benchmark[0] (m).targets[1]: 'trch' is not allowed; did you mean 'torch'?"),
        ('backend = "torch"', 'backend = "pytorch"', "targets.torch.backend: 'pytorch' is not allowed"),
        ('scenarios = ["single-stream"]', 'scenarios = ["server-x"]', "scenarios[0]: 'server-x' is not allowed"),
        ('providers = ["CPUExecutionProvider"]', 'providers = ["CPUExecutionProvidr"]', "did you mean 'CPUExecutionProvider'?"),
        # bad values
        ('batch_sizes = [1, 4]', 'batch_sizes = [0, 4]', "batch_sizes[0]: 0 is not allowed; batch sizes must be integers >= 1"),
        ('batch_sizes = [1, 4]', 'batch_sizes = [1, -2]', "batch_sizes[1]: -2 is not allowed"),
        ('batch_sizes = [1, 4]', 'batch_sizes = []', "batch_sizes: [] is not allowed"),
        ('batch_sizes = [1, 4]', 'batch_sizes = [1, "8"]', "batch_sizes[1]: '8' is not allowed"),
        ('intra_op_threads = 1', 'intra_op_threads = -1', "targets.ort.intra_op_threads: -1 is not allowed"),
        ('intra_op_threads = 1', 'intra_op_threads = "two"', "targets.ort.intra_op_threads: 'two' is not allowed; expected an integer"),
        ('backend = "torch"', 'backend = "torch"\nmode = "jit"', "targets.torch.mode: 'jit' is not allowed (allowed: eager, compile, cudagraph)"),
        ('backend = "torch"', 'backend = "torch"\nprecision = "fp8"', "targets.torch.precision: 'fp8' is not allowed"),
        ('backend = "torch"', 'backend = "torch"\ndevice = "tpu"', "targets.torch.device: 'tpu' is not allowed"),
        ('min_seconds = 0.05', 'min_seconds = 5', "max_seconds: 1.0 is not allowed; must be >= min_seconds (5.0)"),
        ('min_iterations = 5', 'min_iterations = 0', "stop.min_iterations: 0 is not allowed"),
        ('min_iterations = 5', 'min_iterations = 5, repeats = 0', "stop.repeats: 0 is not allowed; expected an integer from 1 to 1000"),
        ('min_iterations = 5', 'min_iterations = 5, repeats = -3', "stop.repeats: -3 is not allowed"),
        ('min_iterations = 5', 'min_iterations = 5, repeats = 2.5', "stop.repeats: 2.5 is not allowed; expected an integer"),
        ('min_iterations = 5', 'min_iterations = 5, repeats = "3"', "stop.repeats: '3' is not allowed; expected an integer"),
        ('min_iterations = 5', 'min_iterations = 5, repeats = 4, max_repeats = 2', "stop.max_repeats: 2 is not allowed; expected an integer from repeats (4)"),
        ('min_iterations = 5', 'min_iterations = 5, max_interference = 0', "stop.max_interference: 0.0 is not allowed"),
        ('name = "tiny"', 'name = "tiny"\nowner = "me"', "suite.owner: unknown key 'owner'"),
    ],
)
def test_bad_values_name_file_key_and_allowed(old, new, expected):
    text = tiny_suite()
    assert old in text
    with pytest.raises(ConfigError) as err:
        parse_suite(text.replace(old, new, 1), "my.toml")
    message = str(err.value)
    assert message.startswith("my.toml: ")
    assert expected in message
    assert "\n" not in message


def test_fp16_reference_is_refused():
    text = tiny_suite().replace('backend = "torch"', 'backend = "torch"\nprecision = "fp16"', 1)
    text = text.replace('targets = ["ort", "torch"]', 'targets = ["ort", "torch"]\nreference = "torch"')
    with pytest.raises(ConfigError, match="reference must be an fp32 target"):
        parse_suite(text)


def test_slo_must_name_a_limit():
    with pytest.raises(ConfigError, match="empty SLO"):
        parse_suite(tiny_suite(bench_extra="slo = {}"))
    with pytest.raises(ConfigError, match="unknown key 'p98_ms'"):
        parse_suite(tiny_suite(bench_extra="slo = { p98_ms = 3 }"))


def test_cli_missing_suite_file(tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "r"))
    assert code == 2
    assert err.strip().splitlines() == [f"bench: {tmp_path / 'nope.toml'}: no such file; pass a suite file, a model (path/to/model.onnx, "
                                      "zoo:NAME, hf:TYPE, module:function) or run where benchmarks.toml is"]
    assert not (tmp_path / "r").exists()


def test_cli_malformed_toml(tmp_path, capsys):
    path = write_suite(tmp_path, "[suite\nname = 1\n")
    code, out, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "r"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "not valid TOML" in err and "Traceback" not in err


def test_cli_unknown_target_one_line(tmp_path, capsys):
    path = write_suite(tmp_path, tiny_suite(targets='["ort", "nope"]'))
    code, out, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "r"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "targets[1]: 'nope' is not allowed" in err


def test_cli_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(capsys, "run", "--bogus")
    assert exc.value.code == 2


@pytest.mark.parametrize("stop, expected", [
    ("ci_rel_width = 0", "stop.ci_rel_width: 0.0 is not allowed; expected a relative half-width between 0 and 1"),
    ("ci_rel_width = -0.1", "stop.ci_rel_width: -0.1 is not allowed"),
    ("confidence = 1.0", "stop.confidence: 1.0 is not allowed; expected a number between 0 and 1"),
    ("confidence = 0", "stop.confidence: 0.0 is not allowed"),
    ('ci_figures = ["p98"]', "stop.ci_figures[0]: 'p98' is not allowed; did you mean 'p99'?"),
])
def test_bad_precision_targets(stop, expected):
    text = tiny_suite().replace("ci_figures = []", stop)
    with pytest.raises(ConfigError) as err:
        parse_suite(text, "s.toml")
    assert expected in str(err.value)
