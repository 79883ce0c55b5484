"""The GPU side of a run: timing boundary, one-off costs, NVML telemetry, memory and roofline
per cell (reads results only). Shown only when a run has a GPU cell or a device-timed cell."""
from __future__ import annotations

from rich.table import Table

from bench.results.schema import Cell, Run

COLUMNS = ("cell", "boundary", "compile s", "capture s", "GPU peak MiB", "util %", "SM MHz", "power W",
           "J/sample", "clocks", "TFLOP/s", "of peak")


def gpu_cells(run: Run) -> list[Cell]:
    return [c for c in run.cells if c.status == "ok" and (
        c.target.device.startswith("cuda") or c.timing_boundary != "end_to_end" or c.gpu is not None)]


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def gpu_row(c: Cell) -> tuple[str, ...]:
    g = c.gpu
    mem = c.memory.gpu_peak_bytes if c.memory else None
    roof = c.roofline
    clocks = "-"
    if g is not None:
        clocks = ("THROTTLED: " + ", ".join(r for r in g.throttle_reasons)) if g.throttled else "steady"
    sm = "-" if g is None or g.sm_clock_min_mhz is None else f"{g.sm_clock_min_mhz:.0f}-{g.sm_clock_max_mhz:.0f}"
    return (
        c.id, c.timing_boundary, _f(c.compile_s, ".2f"), _f(c.capture_s, ".3f"),
        _f(None if mem is None else mem / 2**20, ",.0f"),
        _f(g.utilization_mean_pct if g else None, ".0f"), sm, _f(g.power_mean_w if g else None, ".0f"),
        _f(g.energy_per_sample_j if g else None, ".3g"), clocks,
        _f(None if roof is None else roof.achieved_flops_per_s / 1e12, ".3g"),
        _f(None if roof is None or roof.fraction_of_peak is None else roof.fraction_of_peak * 100, ".1f")
        + ("%" if roof is not None and roof.fraction_of_peak is not None else ""),
    )


def gpu_table(run: Run) -> Table | None:
    cells = gpu_cells(run)
    if not cells:
        return None
    table = Table(title="GPU · boundary: device = CUDA events, inputs on the device; device_resident = host timer, "
                        "inputs on the device, call waits for the GPU; end_to_end = host copies included")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("cell", "boundary", "clocks") else "right")
    for c in cells:
        table.add_row(*gpu_row(c))
    return table


def gpu_markdown(run: Run) -> list[str]:
    cells = gpu_cells(run)
    if not cells:
        return []
    lines = ["", "### GPU", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for c in cells:
        row = list(gpu_row(c))
        row[0] = f"`{row[0]}`"
        lines.append("| " + " | ".join(row) + " |")
    return lines
