"""The generate scenario: a tiny decoder on the CPU, real torch and ONNX Runtime, an injected clock
where the expected figures must be exact."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from bench.analysis.generation import GenerateCompare, decode_curve, slo_of, token_agreement
from bench.analysis.goodput import RequestFigures, goodput
from bench.backends.torch.generate import TorchGenerator
from bench.config.records import BenchmarkSpec, SloSpec, StopSpec
from bench.results.records import CellKey
from bench.scenarios import gen_loop
from bench.scenarios.base import ScenarioRun
from bench.scenarios.gen_workload import LengthSpec, draw_requests, trace_requests, read_trace
from bench.scenarios.generate import Generate, GenerateSpec, _collect
from tests.helpers import load_run_json, run_cli, write_suite

FAKE = '''
import time

import torch
from torch import nn

PREFILL_NS = 5_000_000
DECODE_NS = 2_000_000


class Clock:
    """A fake clock: the decoder's calls advance it by known times; each reading ticks `tick` ns."""

    def __init__(self):
        self.t = 0
        self.tick = 0

    def __call__(self):
        self.t += self.tick
        return self.t

    def sleep(self, seconds):
        self.t += int(seconds * 1e9)


CLOCK = Clock()
CALLS = {"prefill": 0, "decode": 0}


class FakeDecoder(nn.Module):
    """Follows the decoder contract; the next token is the last one + 1 (mod vocab)."""

    def __init__(self, vocab=50, max_len=64, sleep_prefill_s=0.0):
        super().__init__()
        self.vocab_size = vocab
        self.max_len = max_len
        self.sleep_prefill_s = sleep_prefill_s
        self.w = nn.Parameter(torch.zeros(1))

    def new_cache(self, batch, device=None, dtype=None):
        return [torch.zeros(batch, self.max_len, dtype=torch.int64)]

    def _logits(self, tokens):
        return torch.nn.functional.one_hot((tokens + 1) % self.vocab_size, self.vocab_size).float()

    def prefill(self, input_ids, cache):
        CALLS["prefill"] += 1
        CLOCK.t += PREFILL_NS
        if self.sleep_prefill_s:
            time.sleep(self.sleep_prefill_s)
        cache[0][:, :input_ids.shape[1]] = input_ids
        return self._logits(input_ids[:, -1])

    def decode(self, input_ids, position, cache):
        CALLS["decode"] += 1
        CLOCK.t += DECODE_NS
        cache[0].index_copy_(1, position.reshape(1), input_ids)
        return self._logits(input_ids[:, 0])

    def forward(self, input_ids):
        return self._logits(input_ids[:, -1])


def make(vocab=50, max_len=64, sleep_prefill_s=0.0):
    return FakeDecoder(vocab, max_len, sleep_prefill_s), torch.zeros(2, 4, dtype=torch.int64)


class NoDecode(FakeDecoder):
    decode = None


def no_decode():
    return NoDecode(), torch.zeros(2, 4, dtype=torch.int64)
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    name = f"fake_decoder_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    return module


def bench_spec(spec: GenerateSpec, slo: SloSpec | None = None) -> BenchmarkSpec:
    return BenchmarkSpec("g", "zoo:decoder", (2,), ("generate",), ("t",), "t", StopSpec(), slo,
                         tables=(("generate", spec),))


def test_calls_counted_exactly_and_ttft_tpot_exact_on_an_injected_clock(fake):
    """Batch 2, 6 requests of outputs 3..6: 3 batches, one prefill each, decode steps to each
    batch's longest output; every request's TTFT is the prefill (5 ms), its TPOT the step (2 ms)."""
    decoder = fake.FakeDecoder()
    gen = TorchGenerator(decoder, 2, torch.device("cpu"), torch.float32, "eager", torch.inference_mode)
    pool = draw_requests(LengthSpec("fixed", 8, 8), LengthSpec("uniform", 3, 6), 6, seed=3)
    outs = [r.output_len for r in pool]
    logs, window, reason = gen_loop.closed_loop([gen], pool, 2, 6, StopSpec(), 0, 50, torch.inference_mode,
                                                clock=fake.CLOCK)
    assert reason.startswith("6 requests done")
    steps = sum(max(outs[i], outs[i + 1]) - 1 for i in (0, 2, 4))
    assert fake.CALLS == {"prefill": 3, "decode": steps}
    assert window == 3 * fake.PREFILL_NS + steps * fake.DECODE_NS
    run = _collect(logs, window, 1, "closed loop", gen.cache_source)
    req = RequestFigures.of(run.start_ns, run.first_ns, run.end_ns, run.output_lens)
    assert (req.ttft_ns == fake.PREFILL_NS).all()
    assert (req.tpot_ns == fake.DECODE_NS).all()
    assert list(req.e2e_ns) == [fake.PREFILL_NS + (o - 1) * fake.DECODE_NS for o in outs]
    assert (run.itl_ns == fake.DECODE_NS).all() and run.itl_ns.size == sum(o - 1 for o in outs)
    # the cell's figures from the same run: exact too
    spec = GenerateSpec(LengthSpec("fixed", 8, 8), LengthSpec("uniform", 3, 6), requests=6)
    e2e = run.end_ns - run.start_ns
    figures = Generate().figures(ScenarioRun(e2e, window, np.zeros(0, dtype=np.int64), reason, detail=run),
                                 bench_spec(spec), CellKey("g", "", "t", 2, "generate", 1))
    g = figures.records["generate"]
    assert g.ttft_ms.p50.value == g.ttft_ms.p99.value == 5.0
    assert g.tpot_ms.p50.value == g.tpot_ms.p99.value == 2.0
    assert g.output_tokens == sum(outs) and g.requests == 6 and g.prompt_tokens == 48
    assert figures.metrics.throughput.value == pytest.approx(sum(outs) / (window / 1e9))
    assert figures.metrics.throughput.unit == "tokens/s"
    # the static cache's bytes: one int64 row of max_len per sequence
    assert g.kv_cache_bytes == 2 * 64 * 8
    assert [p.steps for p in g.decode_curve] and sum(p.steps for p in g.decode_curve) == steps


def test_merged_token_figures_are_the_process_means_moderated_by_the_run(fake):
    """Three processes' TTFT p50 of 5, 6 and 7 ms: the cell's is 6 ms, its interval the moderated t
    over processes the cell's other figures get (the run's spread of p50 as the prior)."""
    from dataclasses import replace

    from bench.analysis.generation import merge_infos
    from bench.stats import Prior

    decoder = fake.FakeDecoder()
    gen = TorchGenerator(decoder, 1, torch.device("cpu"), torch.float32, "eager", torch.inference_mode)
    pool = draw_requests(LengthSpec("fixed", 4, 4), LengthSpec("fixed", 3, 3), 4, seed=0)
    logs, window, reason = gen_loop.closed_loop([gen], pool, 1, 4, StopSpec(), 0, 50, torch.inference_mode,
                                                clock=fake.CLOCK)
    run = _collect(logs, window, 1, "closed loop", gen.cache_source)
    g = Generate().figures(ScenarioRun(run.end_ns - run.start_ns, window, np.zeros(0, dtype=np.int64), reason,
                                       detail=run), bench_spec(GenerateSpec()), CellKey("g", "", "t", 1, "generate", 1)
                           ).records["generate"]
    infos = [replace(g, ttft_ms=replace(g.ttft_ms, p50=replace(g.ttft_ms.p50, value=v))) for v in (5.0, 6.0, 7.0)]
    plain = merge_infos(infos, infos[1], 0.95)
    moderated = merge_infos(infos, infos[1], 0.95, {"p50": Prior(cv2=0.01, df=20)})
    assert plain.ttft_ms.p50.value == moderated.ttft_ms.p50.value == 6.0
    assert "t over 3 processes" in plain.ttft_ms.p50.method and "moderated" in moderated.ttft_ms.p50.method
    # a run whose processes agree within 10% narrows a 3-process interval that 2 df would leave wide
    assert moderated.ttft_ms.p50.ci_high - moderated.ttft_ms.p50.ci_low < plain.ttft_ms.p50.ci_high - plain.ttft_ms.p50.ci_low
    assert len(plain.per_process) == 3


def test_trace_replay_runs_each_request_from_its_scheduled_arrival(fake, tmp_path):
    """One stream, batch 1, service 5 + 2 x 2 = 9 ms: the request arriving 1 ms in waits for the
    first, so its TTFT holds 8 ms of queueing; the one at 50 ms finds the stream idle."""
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(json.dumps(r) for r in (
        {"arrival_s": 0.0, "prompt_len": 4, "output_len": 3},
        {"arrival_s": 0.001, "prompt_len": 4, "output_len": 3},
        {"arrival_s": 0.050, "prompt_len": 6, "output_len": 3})) + "\n")
    requests = trace_requests(read_trace(trace, "t.jsonl"))
    fake.CLOCK.tick = 1_000  # each reading moves 1 µs, so the generator's spin-wait ends
    gen = TorchGenerator(fake.FakeDecoder(), 1, torch.device("cpu"), torch.float32, "eager", torch.inference_mode)
    logs, window = gen_loop.open_loop([gen], requests, 1, 0, 50, torch.inference_mode, clock=fake.CLOCK,
                                      sleep=fake.CLOCK.sleep)
    run = _collect(logs, window, 1, "trace", gen.cache_source)
    assert list(run.start_ns) == [0, 1_000_000, 50_000_000]  # the clock starts at the scheduled arrival
    req = RequestFigures.of(run.start_ns, run.first_ns, run.end_ns, run.output_lens)
    expected_ttft_ms = [5.0, 13.0, 5.0]
    assert req.ttft_ns / 1e6 == pytest.approx(expected_ttft_ms, abs=0.05)
    assert req.tpot_ns / 1e6 == pytest.approx([2.0, 2.0, 2.0], abs=0.05)


def test_length_distributions_have_their_moments():
    rng = np.random.default_rng(0)
    fixed = LengthSpec("fixed", 7, 7).draw(rng, 1000)
    assert (fixed == 7).all()
    uniform = LengthSpec("uniform", 10, 30).draw(rng, 200_000)
    assert uniform.min() == 10 and uniform.max() == 30
    assert uniform.mean() == pytest.approx(20.0, abs=0.1)
    assert uniform.var() == pytest.approx((21 ** 2 - 1) / 12, rel=0.02)  # discrete uniform on 21 values
    normal = LengthSpec("normal", 1, 200, 64.0, 8.0).draw(rng, 200_000)
    assert normal.mean() == pytest.approx(64.0, abs=0.1) and normal.std() == pytest.approx(8.0, rel=0.02)
    clipped = LengthSpec("normal", 1, 40, 32.0, 16.0).draw(rng, 10_000)
    assert clipped.min() >= 1 and clipped.max() <= 40


def test_goodput_is_the_requests_that_met_both_limits():
    ms = 1_000_000
    start = np.zeros(5, dtype=np.int64)
    first = np.array([10, 30, 10, 10, 50]) * ms
    outs = np.array([5, 5, 1, 5, 1])
    end = first + (outs - 1) * np.array([2, 2, 0, 9, 0]) * ms  # TPOT 2, 2, -, 9, -
    req = RequestFigures.of(start, first, end, outs)
    assert list(req.tpot_ns / ms) == [2, 2, 9]
    # limits: TTFT <= 20 ms, TPOT <= 5 ms -> requests 0 and 2 meet both (2 has no TPOT); 1 is late,
    # 3 too slow per token, 4 late
    rate, share = goodput(req, 2_000 * ms, ttft_ms=20, tpot_ms=5)
    assert share == pytest.approx(2 / 5) and rate == pytest.approx(2 / 2.0)
    slo, rate2, share2 = slo_of(req, 2_000 * ms, {"ttft_ms": 20, "tpot_ms": 5}, None, min_goodput=0.4)
    assert slo.passed and share2 == share and rate2 == rate
    slo, _, _ = slo_of(req, 2_000 * ms, {"ttft_ms": 20, "tpot_ms": 5}, None, min_goodput=0.5)
    assert not slo.passed


def test_decode_curve_bins_steps_by_kv_length():
    kv = np.arange(10, 42)
    ns = (kv * 1000).astype(np.int64)
    curve = decode_curve(kv, ns, bins=4)
    assert sum(p.steps for p in curve) == kv.size
    assert [p.p50_ms for p in curve] == sorted(p.p50_ms for p in curve)  # slower with a longer cache
    assert curve[-1].kv_len == 41


def test_token_agreement_fp32_exact_fp16_reports_the_first_divergence():
    ref = [np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.ones((4, 10))]
    same = [ref[0].copy(), ref[1] + 1e-7]
    assert token_agreement(same, ref, "r", 1e-4, "fp32").verdict == "pass"
    flipped = [ref[0].copy(), ref[1].copy()]
    flipped[0][1, 2] = 99
    a = token_agreement(flipped, ref, "r", 1e-4, "fp32")
    assert a.verdict == "fail" and a.first_divergence == 2 and "position 2" in a.reason
    b = token_agreement(flipped, ref, "r", 1e-2, "fp16")
    assert b.verdict == "pass" and b.first_divergence == 2 and "near-tie" in b.reason
    off = [flipped[0], ref[1] * 1.5]
    c = token_agreement(off, ref, "r", 1e-2, "fp16")
    assert c.verdict == "fail" and "exceeds tolerance" in c.reason


def test_compile_mode_makes_the_eager_tokens():
    from bench.models.decoder import GPTDecoder

    torch.manual_seed(0)
    module = GPTDecoder(vocab=61, hidden=32, depth=2, heads=2, max_len=24).eval()
    ids = np.random.default_rng(1).integers(0, 61, (2, 6))

    def tokens(mode: str) -> np.ndarray:
        gen = TorchGenerator(module, 2, torch.device("cpu"), torch.float32, mode, torch.inference_mode)
        out = [gen.prefill(ids)]
        for _ in range(8):
            out.append(gen.decode(out[-1]))
        return np.stack(out, axis=1)

    eager = tokens("eager")
    assert (tokens("compile") == eager).all()
    # eager's sliced attention (kv_len) and the static, masked one agree with a plain forward
    with torch.no_grad():
        full = module(torch.from_numpy(np.concatenate([ids, eager[:, :-1]], axis=1)))
    assert (full[:, 5:].argmax(-1).numpy() == eager).all()


def test_compare_calls_a_tpot_regression_slower():
    from bench.analysis.compare import CompareContext
    from bench.results.records import GenerateProcess

    def cell(tpot: list[float]):
        procs = tuple(GenerateProcess(1000.0 * (1 + 0.01 * i), 5.0 + 0.01 * i, 7.0, t, t * 1.5, 50)
                      for i, t in enumerate(tpot))
        return type("C", (), {"generate": type("G", (), {"per_process": procs})()})()

    ctx = CompareContext(None, None, 0.05, 0.05)
    base = cell([2.00, 2.02, 1.99, 2.01, 2.00])
    same = GenerateCompare().compare("k", base, cell([2.01, 1.99, 2.00, 2.02, 2.00]), ctx)
    assert same.verdict == "unchanged"
    slower = GenerateCompare().compare("k", base, cell([2.60, 2.62, 2.59, 2.61, 2.60]), ctx)
    assert slower.verdict == "slower" and slower.reason.startswith("TPOT p50 decides")


def test_history_gates_on_tpot():
    from bench.analysis.history import analyse
    from bench.results.stores import CellRow

    rows = [CellRow(f"r{i}", f"2026-11-{i + 1:02d}", None, "m", "g|x|t|b1|generate|c1", "g", "t", 1, "generate",
                    1000.0, None, None, 10.0, 12.0, 5.0, 2.0 + (0.6 if i == 9 else 0.0) + 0.01 * (i % 3))
            for i in range(10)]
    rows.append(CellRow("r0", "2026-11-01", None, "m", "other|x|t|b1|offline", "o", "t", 1, "offline",
                        1000.0, None, None, 10.0, 12.0))
    reports = analyse(rows, "tpot")
    assert [r.cell_key for r in reports] == ["g|x|t|b1|generate|c1"]  # cells without a TPOT are not series
    assert reports[0].alarm


def tiny_decoder_suite(extra: str = "", model: str = "zoo:decoder", targets: str = '["torch", "ort"]',
                       model_args: str = "model_args = { vocab = 61, hidden = 32, depth = 2, heads = 2, max_len = 48 }",
                       batch_sizes: str = "[1, 3]", stop: str = "") -> str:
    stop = stop or ("{ min_seconds = 0.05, max_seconds = 1, min_iterations = 5, warmup_iterations = 1, "
                    "warmup_seconds = 0.0, ci_figures = [], repeats = 2 }")
    return f"""
        [suite]
        name = "gen"

        [targets.torch]
        backend = "torch"
        threads = 1

        [targets.ort]
        backend = "onnxruntime"
        intra_op_threads = 1

        [[benchmark]]
        name = "dec"
        model = "{model}"
        {model_args}
        batch_sizes = {batch_sizes}
        scenarios = ["generate"]
        targets = {targets}
        stop = {stop}
        {extra}
    """


def test_ort_and_torch_make_the_same_tokens_and_cache_bytes_are_analytic(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_decoder_suite(
        'generate = { prompt_len = 10, output_len = 8, requests = 6 }\nslo = { ttft_ms = 1000, tpot_ms = 1000 }'))
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "TTFT p50 ms" in out and "tok/s" in out  # the generation table
    doc = load_run_json(tmp_path / "r")
    cells = {c["id"]: c for c in doc["cells"]}
    assert set(cells) == {f"dec/{t}/b{b}/generate/c1" for t in ("torch", "ort") for b in (1, 3)}
    for b in (1, 3):
        torch_cell, ort_cell = cells[f"dec/torch/b{b}/generate/c1"], cells[f"dec/ort/b{b}/generate/c1"]
        assert torch_cell["agreement"]["verdict"] == "reference"
        assert ort_cell["agreement"]["verdict"] == "pass", ort_cell["agreement"]
        assert ort_cell["agreement"]["first_divergence"] is None
        # static cache: keys and values, 2 layers, b sequences, max_len 48, width 32, fp32
        assert torch_cell["generate"]["kv_cache_bytes"] == 2 * 2 * b * 48 * 32 * 4
        # past/present: the last step's presents hold prompt + output - 1 positions
        assert ort_cell["generate"]["kv_cache_bytes"] == 2 * 2 * b * (10 + 8 - 1) * 32 * 4
        for c in (torch_cell, ort_cell):
            g = c["generate"]
            assert g["requests"] == 6 and g["output_tokens"] == 6 * 8 and g["prompt_tokens"] == 6 * 10
            assert len(g["per_process"]) == 2 and g["attainment"] == 1.0
            assert c["metrics"]["throughput"]["unit"] == "tokens/s"
            assert c["slo"]["passed"] and c["roofline"] is None
    run_dir = next((tmp_path / "r").glob("*/"))
    from bench.selfcheck.reproducibility import _pair

    pair = _pair(run_dir, run_dir)  # the re-run coverage check counts the token figures of generate cells
    assert pair.cells == 4 and pair.token_figures == 8 and pair.token_inside == 8
    code, out, err = run_cli(capsys, "compare", str(run_dir), str(run_dir))
    assert code == 0, err
    assert "output tokens/s x1.000" in out
    db = tmp_path / "h.sqlite"
    assert run_cli(capsys, "history", "add", str(run_dir), "--db", str(db))[0] == 0
    code, out, _ = run_cli(capsys, "history", "--db", str(db), "--metric", "ttft")
    assert code == 4 and "generate" in out  # one run: shown, too few for the gate (no data)


def test_real_time_run_ttft_holds_the_planted_prefill_and_a_failed_slo_exits_1(fake, tmp_path, capsys):
    """Prefill sleeps 3 ms: every TTFT is at least that (whatever the machine's noise), and
    every token is counted; a TTFT limit of 1 ms then fails the SLO: exit 1."""
    suite = write_suite(tmp_path, tiny_decoder_suite(
        "generate = { prompt_len = 5, output_len = 4, requests = 5 }\nslo = { ttft_ms = 1 }",
        model=f"{fake.__name__}:make", targets='["torch"]', model_args="model_args = { sleep_prefill_s = 0.003 }",
        batch_sizes="[1]"))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 1, err
    assert "SLO failed in 1 cell(s): dec/torch/b1/generate/c1" in err
    cell = load_run_json(tmp_path / "r")["cells"][0]
    g = cell["generate"]
    assert g["ttft_ms"]["min"]["value"] >= 3.0
    assert all(p["ttft_p50_ms"] >= 3.0 and p["requests"] == 5 for p in g["per_process"])
    assert g["output_tokens"] == 20 and g["requests"] == 5
    assert not cell["slo"]["passed"] and g["attainment"] == 0.0


def test_streams_are_a_concurrency_axis_and_open_loop_counts_every_arrival(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_decoder_suite(
        "generate = { prompt_len = { uniform = [4, 9] }, output_len = { mean = 5, std = 2, max = 8 }, "
        "streams = [1, 2], qps = 300, requests = 12 }", targets='["torch"]', batch_sizes="[2]"))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, err
    cells = load_run_json(tmp_path / "r")["cells"]
    assert [c["id"] for c in cells] == ["dec/torch/b2/generate/c1", "dec/torch/b2/generate/c2"]
    for c in cells:
        g = c["generate"]
        assert g["requests"] == 12 and g["offered_qps"] > 0 and g["streams"] == c["concurrency"]
        assert g["ttft_ms"]["p50"]["value"] > 0


BAD = [
    ("too long", "generate = { prompt_len = 40, output_len = 9 }", "zoo:decoder", None,
     ["prompt_len up to 40 plus output_len up to 9 (49 tokens) exceeds the model's maximum length of 48"]),
    ("output 0", "generate = { output_len = 0 }", "zoo:decoder", None,
     ["generate.output_len", "at least 1 token"]),
    ("bad uniform", "generate = { prompt_len = { uniform = [9, 3] } }", "zoo:decoder", None,
     ["generate.prompt_len.uniform", "1 <= LOW <= HIGH"]),
    ("not a decoder", "", "zoo:mlp", "model_args = { in_features = 8, width = 8, depth = 1, classes = 2 }",
     ["is not a decoder", "has no method 'new_cache'"]),
    ("onnx file", "", "model.onnx", "", ["'model.onnx' is not a decoder"]),
    ("token slo elsewhere", "slo = { tpot_ms = 5 }", "zoo:decoder", None, ["slo.tpot_ms", "generate"]),
]


@pytest.mark.parametrize("name,extra,model,args,fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, name, extra, model, args, fragments):
    kw = {} if args is None else {"model_args": args}
    text = tiny_decoder_suite(extra, model=model, targets='["torch"]', batch_sizes="[1]", **kw)
    if name == "token slo elsewhere":
        text = text.replace('scenarios = ["generate"]', 'scenarios = ["single-stream"]')
    code, _, err = run_cli(capsys, "run", str(write_suite(tmp_path, text)), "--out", str(tmp_path / "r"))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_a_decoder_factory_without_decode_is_refused_naming_it(fake, tmp_path, capsys):
    text = tiny_decoder_suite("", model=f"{fake.__name__}:no_decode", targets='["torch"]', model_args="",
                              batch_sizes="[1]")
    code, _, err = run_cli(capsys, "run", str(write_suite(tmp_path, text)), "--out", str(tmp_path / "r"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is not a decoder" in err and "has no method 'decode'" in err


@pytest.mark.parametrize("row,problem", [
    ('{"arrival_s": 0.1, "prompt_len": 4}', "t.jsonl:2: missing 'output_len'"),
    ('{"arrival_s": 0.1, "prompt_len": 4, "output_len": 0}', "t.jsonl:2: output_len 0 is not allowed"),
    ('{"arrival_s": -1, "prompt_len": 4, "output_len": 3}', "t.jsonl:2: arrival_s -1 is not allowed"),
    ('[1, 2, 3]', "t.jsonl:2: not a JSON object"),
    ('{"arrival_s": 0.0, "prompt_len": 4, "output_len": 3}', "t.jsonl:2: arrival_s 0.0 is before"),
    ('{"arrival_s": 0.5, "prompt_len": 4, "output_len": 3, "user": "x"}', "t.jsonl:2: unknown key 'user'"),
])
def test_a_trace_with_a_bad_row_names_file_and_line(tmp_path, capsys, row, problem):
    (tmp_path / "t.jsonl").write_text('{"arrival_s": 0.05, "prompt_len": 4, "output_len": 3}\n' + row + "\n")
    text = tiny_decoder_suite('generate = { trace = "t.jsonl" }', targets='["torch"]', batch_sizes="[1]")
    code, _, err = run_cli(capsys, "run", str(write_suite(tmp_path, text)), "--out", str(tmp_path / "r"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert problem in err and "generate.trace" in err


def test_gpt2_like_decoder_has_gpt2_small_parameter_count():
    from bench.models import zoo

    module = zoo.build("gpt2-like", zoo.resolve_args("gpt2-like", {}), 0)
    count = sum(p.numel() for p in module.parameters())
    assert count == 124_439_808  # GPT-2 small's count (head tied to the token embedding)
    assert module.cache_bytes(1, 2) == 2 * 12 * 1024 * 768 * 2


HF_ARGS = "model_args = { n_layer = 2, n_embd = 32, n_head = 2, vocab_size = 61, n_positions = 48, initializer_range = 0.5 }"


def test_a_hugging_face_model_generates_what_its_own_generate_makes(tmp_path, capsys):
    """hf:gpt2 from a tiny local config (no download): our loop's tokens equal transformers'
    greedy generate() on the same weights and prompt; its cache is counted; static modes refuse it."""
    from bench.models.loader import ModelRef, build_torch

    args = (("initializer_range", 0.5), ("n_embd", 32), ("n_head", 2), ("n_layer", 2), ("n_positions", 48),
            ("vocab_size", 61))
    module, _ = build_torch(ModelRef("hf:gpt2", "hf", args, seed=3))
    ids = np.random.default_rng(2).integers(0, 61, (2, 6))
    gen = TorchGenerator(module, 2, torch.device("cpu"), torch.float32, "eager", torch.inference_mode)
    with torch.inference_mode():
        ours = [gen.prefill(ids)]
        for _ in range(7):
            ours.append(gen.decode(ours[-1]))
        theirs = module.model.generate(torch.from_numpy(ids), max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert (np.stack(ours, axis=1) == theirs[:, 6:].numpy()).all()
    assert len(set(np.stack(ours, axis=1).ravel().tolist())) > 2  # not a degenerate constant stream
    # keys and values: 2 layers, 2 sequences, 2 heads, 6 + 7 positions, 16 dims, fp32
    assert gen.cache_bytes() == 2 * 2 * 2 * 2 * 13 * 16 * 4
    from bench.errors import CellFailure

    with pytest.raises(CellFailure, match="needs a decoder with a static cache"):
        TorchGenerator(module, 2, torch.device("cpu"), torch.float32, "cudagraph", torch.inference_mode)
    # and through the CLI: the cell runs, the torch target as its own reference
    suite = write_suite(tmp_path, tiny_decoder_suite("generate = { prompt_len = 6, output_len = 5, requests = 4 }",
                                                     model="hf:gpt2", targets='["torch"]', model_args=HF_ARGS,
                                                     batch_sizes="[2]"))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, err
    cell = load_run_json(tmp_path / "r")["cells"][0]
    assert cell["generate"]["output_tokens"] == 4 * 5 and cell["generate"]["kv_cache_bytes"] > 0


def test_an_unknown_hugging_face_model_type_is_one_line(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_decoder_suite("", model="hf:no-such-model", targets='["torch"]',
                                                     model_args="", batch_sizes="[1]"))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "'hf:no-such-model'" in err and "transformers cannot build it" in err and len(err) < 400


def test_a_version_1_history_store_is_upgraded_in_place(tmp_path):
    """A store written before generate cells existed gains the TTFT/TPOT columns and keeps its rows."""
    import sqlite3

    from bench.results.stores import STORE_SCHEMA_VERSION, open_store
    from tests.test_stores import V1_DDL

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(V1_DDL)  # the tables a version 1 store had, one run of one cell
    conn.close()
    store = open_store(str(path), create=False)
    try:
        rows = store.rows()
    finally:
        store.close()
    assert STORE_SCHEMA_VERSION == 3
    # ... and (v3) the per-cell machine column, a v1 row's machine being its run's
    assert [(r.cell_key, r.throughput, r.ttft_p50_ms, r.tpot_p50_ms, r.machine) for r in rows] == [
        ("k", 100.0, None, None, "m")]
    assert sqlite3.connect(path).execute("SELECT version FROM bench_store").fetchone() == (3,)
    open_store(str(path)).close()  # a second open finds it upgraded: no second ALTER


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_decode_makes_the_eager_tokens_on_the_gpu():
    from bench.models.decoder import GPTDecoder

    torch.manual_seed(0)
    module = GPTDecoder(vocab=61, hidden=32, depth=2, heads=2, max_len=24).eval().cuda()
    ids = np.random.default_rng(1).integers(0, 61, (2, 6))

    def tokens(mode: str) -> tuple[np.ndarray, TorchGenerator]:
        gen = TorchGenerator(module, 2, torch.device("cuda"), torch.float32, mode, torch.inference_mode)
        out = [gen.prefill(ids)]
        for _ in range(8):
            out.append(gen.decode(out[-1]))
        return np.stack(out, axis=1), gen

    eager, _ = tokens("eager")
    graph, gen = tokens("cudagraph")
    assert (graph == eager).all() and gen._graph is not None  # captured once, replayed for each step
    again = [gen.prefill(ids)]  # the same buffers serve a second sequence
    for _ in range(8):
        again.append(gen.decode(again[-1]))
    assert (np.stack(again, axis=1) == eager).all()


def test_an_onnxruntime_worker_that_generates_imports_no_torch():
    """Its memory and load time are figures: torch (a second runtime, ~1 s and ~60 MiB) stays out."""
    import subprocess
    import sys

    code = ("import sys; import bench.backends.ort, bench.backends.ort_generate, bench.scenarios.generate, "
            "bench.runner.unit; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_planted_slowdown_reaches_a_generating_target(monkeypatch):
    """The reproducibility check's 20%-slower ONNX Runtime target slows each prefill and decode step
    (so its power check covers generate cells) and hands back the wrapped generator's own tokens."""
    from bench.selfcheck import slowed

    calls = []

    def recorded(fn, *args, slowdown=slowed.SLOWDOWN):
        calls.append((fn.__name__, slowdown))
        return fn(*args)

    monkeypatch.setattr(slowed, "_slowed_call", recorded)

    class Gen:
        cache_source, vocab = "src", 7

        def prefill(self, ids):
            return ids[:, -1] + 1

        def decode(self, tokens):
            return tokens + 1

        def last_logits(self):
            return np.ones(7)

        def cache_bytes(self):
            return 123

    g = slowed.SlowedGenerator(Gen())
    assert list(g.prefill(np.array([[1, 2], [3, 4]]))) == [3, 5] and list(g.decode(np.array([3, 5]))) == [4, 6]
    assert calls == [("prefill", 0.2), ("decode", 0.2)]
    calls.clear()
    ten = slowed.SlowedGenerator(Gen(), 0.10)  # --slowdown 10
    ten.decode(np.array([1]))
    assert calls == [("decode", 0.10)]
    assert g.cache_bytes() == 123 and g.vocab == 7 and g.cache_source == "src" and g.last_logits().sum() == 7
