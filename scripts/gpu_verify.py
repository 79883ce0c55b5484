"""The two halves of scripts/gpu_verify.sh that are easier in Python:

  gpu_verify.py suites OUT [no-ort-cuda]   write the suites the GPU steps run under OUT/suites,
                                           and check that each one parses (also in a dry run)
  gpu_verify.py summary OUT SECONDS [ORT_REASON]
                                           print OUT/summary.md: each step's outcome, then the
                                           tables the steps wrote
"""
from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL_STOP = {"min_seconds": 0.1, "max_seconds": 0.2, "min_iterations": 5, "warmup_iterations": 3,
              "warmup_seconds": 0.05, "ci_figures": [], "repeats": 1}


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _suite(name: str, targets: dict, benchmarks: list[dict]) -> str:
    lines = [f"# written by scripts/gpu_verify.py from benchmarks.toml\n[suite]\nname = {_toml(name)}\n"]
    for tname, table in targets.items():
        lines.append(f"[targets.{tname}]")
        lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
        lines.append("")
    for b in benchmarks:
        lines.append("[[benchmark]]")
        lines += [f"{k} = {_toml(v)}" for k, v in b.items()]
        lines.append("")
    return "\n".join(lines)


def suites(out: Path, ort_cuda: bool) -> None:
    from bench.config.suite import load_suite

    default = tomllib.loads((ROOT / "benchmarks.toml").read_text())
    targets = default["targets"]
    cuda = {n: t for n, t in targets.items() if str(t.get("device", "cpu")).startswith("cuda")
            and (ort_cuda or t["backend"] != "onnxruntime")}
    small = []
    for b in default["benchmark"]:
        on_cpu = [t for t in b["targets"] if t not in cuda and not str(targets[t].get("device", "cpu")).startswith("cuda")]
        keep = [t for t in b["targets"] if t in cuda]
        if on_cpu and keep:  # the default suite's small models, on their GPU targets
            # the reference stays the default suite's (an fp32 CPU target): the outputs are checked as there
            reference = b.get("reference", b["targets"][0])
            small.append({**{k: v for k, v in b.items() if k not in ("targets", "reference", "slo")},
                          "targets": [reference, *keep], "reference": reference, "stop": SMALL_STOP})
    # torch-cuda (fp32 eager) is the reference the fp16 targets' outputs are checked against
    big_targets = [t for t in ("torch-cuda", "torch-cuda-fp16", "torch-cuda-graph", "torch-cuda-compile", "ort-cuda-fp16")
                   if t in cuda]
    stop = {**SMALL_STOP, "min_seconds": 0.3, "max_seconds": 0.5}
    big = [{"name": name, "model": model, "batch_sizes": [1, 64], "scenarios": ["offline"], "targets": big_targets,
            "stop": stop}
           for name, model in (("resnet50", "zoo:resnet50-like"), ("bert-base", "zoo:bert-base-like"))]
    telemetry = [{"name": "resnet50", "model": "zoo:resnet50-like", "batch_sizes": [64], "scenarios": ["offline"],
                  "targets": ["torch-cuda"],
                  "stop": {**SMALL_STOP, "min_seconds": 2.5, "max_seconds": 3.0}}]
    # 2^20 sequences of 128 tokens: ~400 GB of hidden states in fp32, more than any GPU holds;
    # the inputs themselves (int64 ids) are 1 GiB on the host.
    oom = [{"name": "bert-base", "model": "zoo:bert-base-like", "batch_sizes": [64, 1 << 20], "scenarios": ["offline"],
            "targets": ["torch-cuda"], "stop": SMALL_STOP}]
    # GPT-2 small's shape generating (issue 16): fp32 eager the reference, fp16 eager, CUDA graphs, ORT CUDA.
    gen_targets = [t for t in ("torch-cuda", "torch-cuda-fp16", "torch-cuda-graph", "ort-cuda-fp16") if t in cuda]
    generate = [{"name": "gpt2", "model": "zoo:gpt2-like", "batch_sizes": [1, 32], "scenarios": ["generate"],
                 "targets": gen_targets, "generate": {"prompt_len": 128, "output_len": 32, "requests": 8},
                 "stop": {**SMALL_STOP, "warmup_seconds": 0.0}}]
    d = out / "suites"
    d.mkdir(parents=True, exist_ok=True)
    for name, benches in (("default-gpu", small), ("big-models", big), ("telemetry", telemetry), ("out-of-memory", oom),
                          ("generate-gpt2", generate)):
        path = d / f"{name}.toml"
        used = {t for b in benches for t in b["targets"]}
        path.write_text(_suite(f"gpu-verify-{name}", {n: t for n, t in targets.items() if n in used}, benches))
        spec = load_suite(path)  # a suite that does not parse fails this step, GPU or not
        print(f"{path}: {len(spec.benchmarks)} benchmark(s), targets {sorted({t for b in spec.benchmarks for t in b.targets})}")


def _steps(out: Path) -> list[list[str]]:
    rows = []
    for line in (out / "steps.tsv").read_text().splitlines():
        name, status, seconds, reason = (line.split("\t") + ["", "", "", ""])[:4]
        rows.append([name, status, seconds, reason])
    return rows


def _smi_facts(out: Path) -> list[str]:
    path = out / "nvidia-smi.log"
    if not path.exists():
        return []
    keep = ("Product Name", "Driver Version", "CUDA Version", "Max Power Limit", "Total")
    return [line.strip() for line in path.read_text(errors="replace").splitlines()
            if line.strip().startswith(keep)][:8]


def summary(out: Path, seconds: str, ort_reason: str) -> str:
    rows = _steps(out)
    lines = [f"# GPU verification ({seconds} s)", "", "| step | outcome | seconds | first error line or reason |",
             "|---|---|---:|---|"]
    for name, status, secs, reason in rows:
        lines.append(f"| {name} | {status} | {secs} | {reason.replace('|', '/')} |")
    if ort_reason:
        lines += ["", f"ONNX Runtime CUDA targets left out of the suites: {ort_reason}."]
    env = out / "env.json"
    try:
        fp = json.loads(env.read_text())
        pk = fp.get("packages", {})
        lines += ["", "## Environment", "",
                  f"- host {fp.get('host')}, {fp.get('cpu_model')}, python {fp.get('python')}",
                  f"- torch {pk.get('torch')}, onnxruntime {pk.get('onnxruntime') or pk.get('onnxruntime-gpu')}, "
                  f"numba {pk.get('numba')}",
                  *(f"- GPU {g.get('name')}, driver {g.get('driver')}, CUDA {g.get('cuda')}, "
                    f"{g.get('memory_total_bytes', 0) / 2**30:.0f} GiB" for g in fp.get("gpus", []))]
    except (OSError, ValueError, AttributeError):
        pass
    facts = _smi_facts(out)
    if facts:
        lines += ["", "## nvidia-smi", "", *(f"- {f}" for f in facts)]
    fidelity = out / "fidelity.log"
    if fidelity.exists() and fidelity.stat().st_size:
        lines += ["", "## Fidelity (harness vs hand loop)", "", "```", fidelity.read_text(errors="replace").strip(), "```"]
    for name in ("default-gpu", "big-models", "generate-gpt2", "telemetry", "out-of-memory"):
        md = out / f"{name}.md"
        if md.exists():
            lines += ["", f"## {name}", "", md.read_text(errors="replace").strip()]
        log = out / f"{name if name != 'default-gpu' else 'default-gpu-cells'}.log"
        if name == "out-of-memory" and log.exists():
            limit = [line for line in log.read_text(errors="replace").splitlines() if "largest" in line or "fit" in line]
            if limit:
                lines += ["", *limit[:4]]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "suites":
        suites(Path(argv[1]), ort_cuda=not (len(argv) > 2 and argv[2] == "no-ort-cuda"))
        return 0
    if len(argv) >= 3 and argv[0] == "summary":
        print(summary(Path(argv[1]), argv[2], argv[3] if len(argv) > 3 else ""), end="")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
