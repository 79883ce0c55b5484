"""NVML device discovery: the library, its errors, device handles, and how many CUDA devices a
worker will see (CUDA_VISIBLE_DEVICES applied), without initialising CUDA in the caller.

Why everything goes through an `nvml` object: the real one is the `pynvml` module
(nvidia-ml-py), absent or failing with NVMLError_LibraryNotFound on machines without a driver;
the tests pass a fake with the same function names, so every rule here is tested without a GPU.

Device selection: CUDA ordinals are not NVML indices once CUDA_VISIBLE_DEVICES narrows or
reorders the devices (and without CUDA_DEVICE_ORDER=PCI_BUS_ID, which the worker sets, CUDA
orders fastest-first). `nvml_index_for_cuda` maps an ordinal through CUDA_VISIBLE_DEVICES; the
surer path is the device's UUID from torch (`torch.cuda.get_device_properties(i).uuid`), which
the sampler takes with or without NVML's "GPU-" prefix.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

# nvmlClocksEventReason* bits (nvml.h; the older nvmlClocksThrottleReason* names share the values).
# BoardLimit and Reliability are newer (R550+ headers): older drivers never set them.
CLOCK_EVENT_REASON_BITS: dict[str, int] = {
    "GpuIdle": 0x1,
    "ApplicationsClocksSetting": 0x2,
    "SwPowerCap": 0x4,
    "HwSlowdown": 0x8,
    "SyncBoost": 0x10,
    "SwThermalSlowdown": 0x20,
    "HwThermalSlowdown": 0x40,
    "HwPowerBrakeSlowdown": 0x80,
    "DisplayClockSetting": 0x100,
    "BoardLimit": 0x200,
    "Reliability": 0x400,
}
# Reasons that hold clocks below what the load asks for. GpuIdle (nothing to do),
# ApplicationsClocksSetting and DisplayClockSetting (a configured clock) and SyncBoost (clocks
# matched across a group) are states, not a device under strain. BoardLimit and Reliability are
# board power/voltage limits: they lower clocks under load like a power cap does.
THROTTLING_REASONS = frozenset({
    "SwPowerCap", "HwSlowdown", "SwThermalSlowdown", "HwThermalSlowdown", "HwPowerBrakeSlowdown",
    "BoardLimit", "Reliability",
})

# NVML return codes (nvml.h) used when the `nvml` object does not define them.
_NVML_ERROR_NOT_SUPPORTED = 3
_NVML_ERROR_FUNCTION_NOT_FOUND = 13

_UUID_PREFIXES = ("GPU-", "MIG-")


def load_nvml(nvml: Any = None) -> tuple[Any, str]:
    """The `nvml` object to use (the given one, else the pynvml module), and why there is none."""
    if nvml is not None:
        return nvml, ""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    return pynvml, ""


def nvml_errors(nvml: Any) -> tuple[type[BaseException], ...]:
    """The exceptions an NVML query may raise: NVMLError, and pynvml's NVMLLibraryMismatchError
    (raised instead of FunctionNotFound by its unversioned wrappers; not an NVMLError subclass)."""
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
    return (nvml.NVMLError,) + ((mismatch,) if isinstance(mismatch, type) else ())


def is_unsupported(nvml: Any, exc: BaseException) -> bool:
    """Whether an NVML error means "never on this device/driver" rather than "not this time"."""
    if not isinstance(exc, nvml.NVMLError):
        return True  # NVMLLibraryMismatchError: the driver lacks this function
    code = getattr(exc, "value", None)
    return code in (getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", _NVML_ERROR_NOT_SUPPORTED),
                    getattr(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", _NVML_ERROR_FUNCTION_NOT_FOUND))


def normalize_uuid(uuid: object) -> str:
    """NVML's spelling of a device UUID: torch's str(props.uuid) lacks the "GPU-" prefix."""
    text = str(uuid).strip()
    return text if text.startswith(_UUID_PREFIXES) else f"GPU-{text}"


def parse_visible_devices(value: str) -> list[int | str]:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: integers, "GPU-<uuid or unique prefix>" or MIG
    ids, comma separated; the list ends at the first entry CUDA cannot parse (so "-1" or an empty
    value hides every device, and "0,-1,1" shows device 0 alone)."""
    entries: list[int | str] = []
    for token in value.split(","):
        token = token.strip()
        if re.fullmatch(r"\d+", token):
            entries.append(int(token))
        elif token.startswith(_UUID_PREFIXES) and len(token) > 4:
            entries.append(token)
        else:
            break
    return entries


def nvml_index_for_cuda(cuda_index: int, environ: Mapping[str, str] = os.environ) -> int | str:
    """The NVML device behind CUDA ordinal `cuda_index`: an NVML index, or the UUID (or UUID
    prefix, or MIG id) that CUDA_VISIBLE_DEVICES names it by; both go to NvmlSampler as they are.

    Assumes CUDA_DEVICE_ORDER=PCI_BUS_ID (the worker sets it), NVML's own order; without
    CUDA_VISIBLE_DEVICES ordinals then equal NVML indices. Raises ValueError for an ordinal that
    CUDA_VISIBLE_DEVICES does not expose.
    """
    if cuda_index < 0:
        raise ValueError(f"CUDA device ordinal {cuda_index} is negative")
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return cuda_index
    entries = parse_visible_devices(value)
    if cuda_index >= len(entries):
        raise ValueError(f"CUDA device {cuda_index} is not visible: CUDA_VISIBLE_DEVICES={value!r} "
                         f"exposes {len(entries)} device(s)")
    return entries[cuda_index]


def device_handle(nvml: Any, device: int | str) -> Any:
    """An NVML handle for an NVML index or a UUID. A "GPU-" prefix shorter than a whole UUID
    (CUDA_VISIBLE_DEVICES accepts one) is matched against every device's UUID, as CUDA does.
    Raises NVML's own errors."""
    if isinstance(device, int):
        return nvml.nvmlDeviceGetHandleByIndex(device)
    uuid = normalize_uuid(device)
    try:
        return nvml.nvmlDeviceGetHandleByUUID(uuid)
    except nvml.NVMLError:
        if not uuid.startswith("GPU-"):
            raise
        matches = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            if str(nvml.nvmlDeviceGetUUID(handle)).startswith(uuid):
                matches.append(handle)
        if len(matches) != 1:
            raise
        return matches[0]


def visible_device_count(nvml: Any = None, environ: Mapping[str, str] = os.environ) -> tuple[int, str]:
    """How many CUDA devices a worker started with `environ` will see: NVML's device count
    narrowed by CUDA_VISIBLE_DEVICES, and a note saying why it is 0 (empty when it is not).
    Asks NVML, not CUDA, so the calling process does not initialise CUDA. Never raises."""
    nvml, why = load_nvml(nvml)
    if nvml is None:
        return 0, why
    errors = nvml_errors(nvml)
    try:
        nvml.nvmlInit()
    except errors as exc:
        return 0, f"NVML unavailable: {exc}"
    try:
        count = int(nvml.nvmlDeviceGetCount())
        if count == 0:
            return 0, "NVML found no GPU"
        value = environ.get("CUDA_VISIBLE_DEVICES")
        if value is None:
            return count, ""
        visible = 0
        for entry in parse_visible_devices(value):
            if isinstance(entry, int):
                if entry >= count:
                    break  # CUDA stops at the first ordinal that names no device
            elif entry.startswith("GPU-"):
                try:
                    device_handle(nvml, entry)
                except errors:
                    break
            # A MIG id is taken on trust: the legacy "MIG-GPU-<uuid>/gi/ci" form has no NVML lookup.
            visible += 1
        if visible == 0:
            return 0, f"CUDA_VISIBLE_DEVICES={value!r} hides every device"
        return visible, ""
    except errors as exc:
        return 0, f"NVML device count failed: {exc}"
    finally:
        try:
            nvml.nvmlShutdown()
        except errors:
            pass


def reason_names(bits: int) -> tuple[str, ...]:
    """NVML clock-event-reason bits as names, in bit order; an unknown bit as "Unknown(0x...)"."""
    names = [name for name, bit in CLOCK_EVENT_REASON_BITS.items() if bits & bit]
    known = 0
    for bit in CLOCK_EVENT_REASON_BITS.values():
        known |= bit
    rest = bits & ~known
    while rest:
        low = rest & -rest
        names.append(f"Unknown({low:#x})")
        rest &= rest - 1
    return tuple(names)
