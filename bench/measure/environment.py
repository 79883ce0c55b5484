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

from bench.results.schema import Environment, GpuInfo

PACKAGES = ("bench-harness", "numpy", "numba", "onnxruntime", "onnxruntime-gpu", "onnx", "onnxscript",
            "torch", "psutil", "nvidia-ml-py")
ALLOWED_ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
    "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING",
    "ORT_DISABLE_ALL", "PYTORCH_CUDA_ALLOC_CONF", "CI",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def gpus() -> tuple[tuple[GpuInfo, ...], str]:
    """GPUs seen by NVML, and a note saying why there are none when there are none."""
    try:
        import pynvml
    except ImportError:
        return (), "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:  # NVMLError_LibraryNotFound on machines without a driver
        return (), f"NVML unavailable: {exc}"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        found = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            try:
                limit_w = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000
            except pynvml.NVMLError:
                limit_w = None
            found.append(GpuInfo(
                name=str(pynvml.nvmlDeviceGetName(h)),
                uuid=str(pynvml.nvmlDeviceGetUUID(h)),
                driver=str(driver),
                memory_total_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                power_limit_w=limit_w,
                cuda=f"{cuda // 1000}.{cuda % 1000 // 10}",
            ))
        return tuple(found), "" if found else "NVML found no GPU"
    finally:
        pynvml.nvmlShutdown()


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
        cpu_model=_cpu_model(),
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
    )


def cuda_available() -> bool:
    """Whether a CUDA device is usable, asked without initialising CUDA in this process."""
    gpu_list, _ = gpus()
    return bool(gpu_list)

