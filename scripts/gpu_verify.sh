#!/usr/bin/env bash
# Every GPU path of the harness checked in one call, within 10 minutes, each step time-boxed so that
# one hang cannot eat the rest. Run from the repository root:
#
#   scripts/gpu_verify.sh [--dry-run] [OUT_DIR]        (OUT_DIR defaults to $OUT, else ./gpu-verify)
#
# Needs: an NVIDIA GPU, torch with CUDA, numba, onnx, onnxscript, nvidia-ml-py, psutil and rich;
# onnxruntime-gpu is used when importable (its steps are skipped with the reason when not). No
# network; the project runs from this tree (PYTHONPATH=.). --dry-run runs the same script on a
# CPU: the GPU steps still write and check their suites, then report skipped with the reason.
# Everything lands under OUT_DIR; OUT_DIR/summary.md lists each step (passed, failed with its
# first error line, or skipped with the reason) and the tables. The exit code is 1 when a step
# failed, 2 when (not in a dry run) no GPU was usable, 0 otherwise.
set -u
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT_DIR=${1:-${OUT:-gpu-verify}}
if ! mkdir -p "$OUT_DIR" || ! OUT_DIR=$(cd "$OUT_DIR" && pwd) || ! : > "$OUT_DIR/steps.tsv"; then
  echo "gpu_verify: cannot write to $OUT_DIR" >&2
  exit 2
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export BENCH_CACHE_DIR="${BENCH_CACHE_DIR:-$OUT_DIR/cache}"
PY=${PYTHON:-python3}
STEPS="$OUT_DIR/steps.tsv"
START=$(date +%s)

# step NAME LIMIT_S COMMAND...: runs COMMAND under `timeout`, its output in OUT_DIR/NAME.log.
step() {
  local name=$1 limit=$2; shift 2
  local t0 rc status reason
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    status=passed; reason=""
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    status=failed; reason="timed out after ${limit} s"
  else
    status=failed
    reason=$(grep -m1 -E "Error|error|FAILED|failed|bench: " "$OUT_DIR/$name.log" || tail -n1 "$OUT_DIR/$name.log")
    reason="exit $rc: ${reason:0:300}"
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - t0 ))" "$reason" >> "$STEPS"
}

skip() {  # skip NAME REASON
  printf '%s\t%s\t%s\t%s\n' "$1" skipped 0 "$2" >> "$STEPS"
}

# What this machine can do: a CUDA device for torch, and onnxruntime's CUDA provider.
CUDA_REASON=""
if [ $DRY -eq 1 ]; then
  CUDA_REASON="dry run: GPU steps are not run"
elif ! command -v nvidia-smi > /dev/null; then
  CUDA_REASON="no nvidia-smi on PATH: no NVIDIA driver here"
elif ! timeout 60 $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2> /dev/null; then
  CUDA_REASON="torch.cuda.is_available() is False (a CPU build of torch, or no device visible)"
fi
ORT_CUDA_REASON=""
if ! timeout 30 $PY -c "import onnxruntime as o, sys; sys.exit(0 if 'CUDAExecutionProvider' in o.get_available_providers() else 1)" 2> /dev/null; then
  ORT_CUDA_REASON="onnxruntime-gpu is not installed (no CUDAExecutionProvider)"
fi
# The suites the GPU steps run, written and checked first, also in a dry run (so they cannot rot;
# a dry run keeps the ONNX Runtime CUDA targets in them, to check those too).
ORT_FLAG=""
[ $DRY -eq 0 ] && [ -n "$ORT_CUDA_REASON" ] && ORT_FLAG=no-ort-cuda
[ $DRY -eq 1 ] && ORT_CUDA_REASON=""
step suites 20 $PY scripts/gpu_verify.py suites "$OUT_DIR" "$ORT_FLAG"

step env 20 $PY -m bench.cli env
cp "$OUT_DIR/env.log" "$OUT_DIR/env.json" 2> /dev/null

if [ -n "$CUDA_REASON" ]; then
  for s in nvidia-smi pytest-gpu default-gpu-cells big-models generate-gpt2 fidelity telemetry out-of-memory; do
    skip "$s" "$CUDA_REASON"
  done
else
  step nvidia-smi 10 nvidia-smi -q
  step pytest-gpu 60 $PY -m pytest -q -p no:cacheprovider -m gpu tests
  # The default suite's GPU cells (small models), short stop rules.
  step default-gpu-cells 80 $PY -m bench.cli run "$OUT_DIR/suites/default-gpu.toml" \
    --out "$OUT_DIR/runs/default-gpu" --md "$OUT_DIR/default-gpu.md"
  # ResNet-50-like and BERT-base-like at batch 1 and 64 in fp16: eager, CUDA graphs, compile, ORT CUDA.
  step big-models 170 $PY -m bench.cli run "$OUT_DIR/suites/big-models.toml" \
    --out "$OUT_DIR/runs/big-models" --md "$OUT_DIR/big-models.md"
  # GPT-2-small-shaped decoder generating, batch 1 and 32: TTFT, TPOT, tokens/s per target.
  step generate-gpt2 100 $PY -m bench.cli run "$OUT_DIR/suites/generate-gpt2.toml" \
    --out "$OUT_DIR/runs/generate-gpt2" --md "$OUT_DIR/generate-gpt2.md"
  step fidelity 45 $PY -m bench.cli self-check --checks fidelity --rounds 5
  # One cell over a window of at least 2 s: NVML telemetry, energy per sample, roofline position.
  step telemetry 35 $PY -m bench.cli run "$OUT_DIR/suites/telemetry.toml" \
    --out "$OUT_DIR/runs/telemetry" --md "$OUT_DIR/telemetry.md"
  # A batch that cannot fit: the cell fails as out_of_memory and the sweep names the largest batch.
  # (exit 3 is the expected answer here: a cell failed.)
  step out-of-memory 35 bash -c '"$0" -m bench.cli run "$1/suites/out-of-memory.toml" --out "$1/runs/out-of-memory" \
    --md "$1/out-of-memory.md"; test $? -eq 3' "$PY" "$OUT_DIR"
fi

$PY scripts/gpu_verify.py summary "$OUT_DIR" "$(( $(date +%s) - START ))" "${ORT_CUDA_REASON}" > "$OUT_DIR/summary.md"
cat "$OUT_DIR/summary.md"
grep -q $'\tfailed\t' "$STEPS" && exit 1
# Not a dry run, yet nothing ran on a GPU: that is not a verification.
if [ $DRY -eq 0 ] && [ -n "$CUDA_REASON" ]; then
  echo "gpu_verify: no GPU step ran: $CUDA_REASON" >&2
  exit 2
fi
exit 0
