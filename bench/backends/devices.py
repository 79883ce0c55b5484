"""What a CUDA target needs of its device, decided from plain facts so it is testable without one.

The worker asks torch for the facts (device count, compute capability, name) and these functions
decide; the parent asks NVML for the count before it spawns a worker at all. Out-of-memory is
recognised here too, across runtimes: torch raises torch.OutOfMemoryError, ONNX Runtime a
RuntimeException whose text names the failed allocation.
"""
from __future__ import annotations

import re

from bench.errors import CellFailure

# bf16 arithmetic needs Ampere (sm_80) or newer; fp16 runs on anything CUDA 12+ supports.
BF16_MIN_CAPABILITY = (8, 0)
# torch's CPU allocator says "DefaultCPUAllocator: can't allocate memory: you tried to allocate N
# bytes. Error code 12 (Cannot allocate memory)" (a RuntimeError, not torch.OutOfMemoryError), and
# ENOMEM reads "Cannot allocate memory" wherever the OS refuses (an OSError from mmap or fork).
_OOM_PATTERNS = re.compile(
    r"out of memory|failed to allocate memory|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|"
    r"cudaErrorMemoryAllocation|BFCArena.*(allocate|Allocation)|can(no|')t allocate memory",
    re.IGNORECASE,
)


def device_index(device: str) -> int:
    """'cuda' -> 0, 'cuda:3' -> 3."""
    return int(device.split(":", 1)[1]) if ":" in device else 0


def check_index(device: str, count: int) -> None:
    """A device index that this machine does not have is the user's to fix: say which exist."""
    index = device_index(device)
    if count <= 0:
        raise CellFailure("no CUDA device")
    if index >= count:
        allowed = "cuda:0" if count == 1 else f"cuda:0 .. cuda:{count - 1}"
        raise CellFailure(f"device {device!r} does not exist: this machine shows {count} CUDA "
                          f"device{'s' if count != 1 else ''} (allowed: {allowed})")


def check_precision(precision: str, capability: tuple[int, int], name: str) -> None:
    if precision == "bf16" and tuple(capability) < BF16_MIN_CAPABILITY:
        major, minor = capability
        raise CellFailure(
            f"bf16 is not supported on {name} (compute capability {major}.{minor}; bf16 needs "
            f"{BF16_MIN_CAPABILITY[0]}.{BF16_MIN_CAPABILITY[1]} or newer): use fp16 or fp32"
        )


def is_out_of_memory(exc: BaseException) -> bool:
    """Also looks down the exception chain: a graph capture or a runtime may re-raise an
    allocation failure as something else."""
    seen = 0
    while exc is not None and seen < 8:
        if type(exc).__name__ in ("OutOfMemoryError", "MemoryError") or _OOM_PATTERNS.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def out_of_memory_reason(exc: BaseException, batch_size: int) -> str:
    """The reason a failed cell of kind out_of_memory gives: the batch, and the runtime's words."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"out of memory at batch {batch_size}: {first[:200]}"
