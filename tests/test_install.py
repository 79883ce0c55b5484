"""The installed harness, as a user has it after the README's test command: its `bench` script runs
from a directory outside the clone, beside transformers and Hugging Face's `kernels` package (the
project's kernels/ directory is installed as `bench_kernels` and never shadows that name)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[1]
BENCH = Path(sys.executable).with_name("bench")


def _outside_env() -> dict[str, str]:
    """The environment a user's shell gives the script: no PYTHONPATH pointing into the clone."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_project_kernels_never_shadow_hugging_faces_kernels():
    """From the repository root (where pytest and a user's `python -c` put it on sys.path) and from
    anywhere else, `import kernels` is Hugging Face's package; the statistics load as bench_kernels."""
    code = ("import kernels, bench_kernels.bootstrap as b, transformers; "
            "print(kernels.__file__); print(b.__file__)")
    for cwd in (ROOT, Path("/")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                              env={**_outside_env(), "PYTHONPATH": str(ROOT)}, timeout=120)
        assert done.returncode == 0, done.stderr
        hf_kernels, ours = done.stdout.split()
        assert "site-packages" in hf_kernels and Path(hf_kernels).parent != ROOT / "kernels", hf_kernels
        assert Path(ours) == ROOT / "kernels" / "bootstrap.py"


def test_the_installed_bench_runs_outside_the_clone_beside_transformers(tmp_path):
    """The README's test command installs transformers 5 and its `kernels`; the console script then
    runs a suite from a directory outside the clone: an ONNX Runtime cell and an hf: decoder cell."""
    assert BENCH.is_file(), f"{BENCH}: the README's commands install the `bench` script into the venv"
    fast = ("{ min_seconds = 0.05, max_seconds = 0.5, min_iterations = 5, warmup_iterations = 1, "
            "warmup_seconds = 0.0, ci_figures = [], repeats = 1 }")
    (tmp_path / "suite.toml").write_text(textwrap.dedent(f"""
        [targets.ort]
        backend = "onnxruntime"
        intra_op_threads = 1

        [targets.torch]
        backend = "torch"
        threads = 1

        [[benchmark]]
        name = "mlp"
        model = "zoo:mlp"
        model_args = {{ in_features = 8, width = 16, depth = 1, classes = 4 }}
        batch_sizes = [2]
        scenarios = ["single-stream"]
        targets = ["ort"]
        stop = {fast}

        [[benchmark]]
        name = "gpt2"
        model = "hf:gpt2"
        model_args = {{ n_layer = 1, n_embd = 16, n_head = 2, vocab_size = 61, n_positions = 32 }}
        batch_sizes = [1]
        scenarios = ["generate"]
        targets = ["torch"]
        generate = {{ prompt_len = 4, output_len = 3, requests = 2 }}
        stop = {fast}
    """))
    done = subprocess.run([str(BENCH), "run", "suite.toml", "--out", "out", "--quiet", "--json"],
                          capture_output=True, text=True, cwd=tmp_path, env=_outside_env(), timeout=280)
    assert done.returncode == 0, done.stderr
    run = json.loads(next((tmp_path / "out").glob("*/run.json")).read_text())
    assert {c["id"].split("/")[0]: c["status"] for c in run["cells"]} == {"mlp": "ok", "gpt2": "ok"}
    gen = next(c for c in run["cells"] if c["benchmark"] == "gpt2")
    assert gen["generate"]["output_tokens"] == 2 * 3
