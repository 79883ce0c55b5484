"""The environment fingerprint: what a figure was measured on.

Holds no environment variable values beyond ALLOWED_ENV_VARS (thread counts and device
selection that change results); everything else in os.environ may be a secret.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

import psutil

from bench.measure.nvml_devices import load_nvml, nvml_errors
from bench.results.records import Environment, GpuInfo

PACKAGES = ("bench-harness", "numpy", "numba", "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnx",
            "onnxscript", "torch", "torchao", "openvino", "psutil", "nvidia-ml-py")
ALLOWED_ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
    "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING",
    "ORT_DISABLE_ALL", "PYTORCH_CUDA_ALLOC_CONF", "CI",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# What int8 and bf16 inference speed rests on, in /proc/cpuinfo's names: VNNI (a u8 x s8 dot
# product per instruction, the usual int8 speed-up on x86), AVX512-BF16 and AMX (tiles of int8/bf16
# multiply-adds: Sapphire Rapids and later), the wider vectors, and ARM's dot products.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
             "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16")


def cpu_isa() -> tuple[str, ...]:
    """The CPU's inference-relevant extensions (ISA_FLAGS, in that order) its first core lists."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return tuple(f for f in ISA_FLAGS if f in have)
    except OSError:
        pass
    return ()


def _os_name() -> str:
    system = platform.system()
    if system == "Linux":
        try:
            return f"Linux {platform.freedesktop_os_release().get('PRETTY_NAME', '')}".strip()
        except OSError:
            return "Linux"
    return f"{system} {platform.release()}"


def _governor() -> str | None:
    try:
        return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    except OSError:
        return None


def _package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(args: list[str]) -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _nvml_or_none(errors, fn, *args):
    """fn(*args), or None where the device or driver does not answer (NotSupported on older
    GPUs, MIG, vGPU; FunctionNotFound on older drivers)."""
    try:
        return fn(*args)
    except errors:
        return None


def _enabled(value, on: int) -> str | None:
    return None if value is None else ("enabled" if value == on else "disabled")


def _gpu_info(nvml, errors, index: int, driver: str, cuda: str) -> GpuInfo:
    h = nvml.nvmlDeviceGetHandleByIndex(index)

    def ask(fn, *args):
        return _nvml_or_none(errors, fn, h, *args)

    limit_mw = ask(nvml.nvmlDeviceGetEnforcedPowerLimit)
    cc = ask(nvml.nvmlDeviceGetCudaComputeCapability)
    mig = ask(nvml.nvmlDeviceGetMigMode)  # [current, pending]: a pending mode needs a GPU reset
    ecc = ask(nvml.nvmlDeviceGetEccMode)  # [current, pending]: likewise, after a reboot
    return GpuInfo(
        name=str(nvml.nvmlDeviceGetName(h)),
        uuid=str(nvml.nvmlDeviceGetUUID(h)),
        driver=driver,
        memory_total_bytes=int(nvml.nvmlDeviceGetMemoryInfo(h).total),
        power_limit_w=None if limit_mw is None else limit_mw / 1000,
        cuda=cuda,
        index=index,
        compute_capability=None if cc is None else f"{cc[0]}.{cc[1]}",
        sm_clock_max_mhz=ask(nvml.nvmlDeviceGetMaxClockInfo, nvml.NVML_CLOCK_SM),
        memory_clock_max_mhz=ask(nvml.nvmlDeviceGetMaxClockInfo, nvml.NVML_CLOCK_MEM),
        sm_clock_app_mhz=ask(nvml.nvmlDeviceGetApplicationsClock, nvml.NVML_CLOCK_SM),
        mig_mode=_enabled(None if mig is None else mig[0], nvml.NVML_DEVICE_MIG_ENABLE),
        ecc_mode=_enabled(None if ecc is None else ecc[0], nvml.NVML_FEATURE_ENABLED),
        persistence_mode=_enabled(ask(nvml.nvmlDeviceGetPersistenceMode), nvml.NVML_FEATURE_ENABLED),
    )


def gpus(nvml=None) -> tuple[tuple[GpuInfo, ...], str]:
    """GPUs seen by NVML, and a note saying why there are none when there are none.

    `nvml` is the pynvml module unless given (the tests pass a fake). A figure the device does
    not report (NotSupported) is null; NVML that cannot start gives no GPUs and says why.
    """
    nvml, why = load_nvml(nvml)
    if nvml is None:
        return (), why
    errors = nvml_errors(nvml)
    try:
        nvml.nvmlInit()
    except errors as exc:  # NVMLError_LibraryNotFound on machines without a driver
        return (), f"NVML unavailable: {exc}"
    try:
        driver = str(nvml.nvmlSystemGetDriverVersion())
        cuda = nvml.nvmlSystemGetCudaDriverVersion_v2()
        cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}"
        found = tuple(_gpu_info(nvml, errors, i, driver, cuda_text)
                      for i in range(nvml.nvmlDeviceGetCount()))
        return found, "" if found else "NVML found no GPU"
    finally:
        nvml.nvmlShutdown()


def fingerprint() -> Environment:
    uname = platform.uname()
    commit = _git(["rev-parse", "HEAD"])
    status = _git(["status", "--porcelain", "--untracked-files=no"]) if commit else None
    gpu_list, note = gpus()
    return Environment(
        host=socket.gethostname(),
        os=_os_name(),
        kernel=uname.release,
        machine=uname.machine,
        cpu_model=cpu_model(),
        cpu_cores_physical=psutil.cpu_count(logical=False),
        cpu_cores_logical=psutil.cpu_count(logical=True),
        cpu_governor=_governor(),
        memory_total_bytes=int(psutil.virtual_memory().total),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        packages=_package_versions(),
        gpus=gpu_list,
        gpu_note=note,
        harness_commit=commit,
        harness_dirty=None if status is None else bool(status),
        env_vars={k: os.environ[k] for k in ALLOWED_ENV_VARS if k in os.environ},
        cpu_isa=cpu_isa(),
    )
