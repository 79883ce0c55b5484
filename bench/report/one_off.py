"""What a deployment pays once, none of it in a cell's figures (reads results only).

Per worker process, before its first timed call: loading the model into the runtime (`load_s`),
torch.compile's first calls (`compile_s`), CUDA graph capture (`capture_s`). Per model, once in
a run whatever its cell count: building, hashing and exporting it (`model.prepare_s`, of which
`model.export_s`; schema 12). Per int8 target, once: quantizing the fp32 model
(`model.quantize_s`, schema 14; 0 when the quantized model came from the cache, shown "cached").
Each is shown only where a run recorded it: older files have none.
"""
from __future__ import annotations

from bench.report.model import Column, Num, Span, Table, fmt_seconds, settle
from bench.results.records import Cell, Run


def _per_process(c: Cell) -> tuple[tuple[str, float], ...]:
    return tuple((name, s) for name, s in (("load", c.load_s), ("compile", c.compile_s), ("capture", c.capture_s))
                 if s is not None)


def one_off(c: Cell) -> str:
    """"load 0.41 s, compile 13.9 s"; empty where the cell recorded none."""
    return ", ".join(f"{name} {fmt_seconds(s)}" for name, s in _per_process(c))


def one_off_total_s(c: Cell) -> float | None:
    """Load, compile and capture together: what a process waits before its first answer."""
    costs = _per_process(c)
    return sum(s for _, s in costs) if costs else None


def _span(values: list[float]) -> Span | str:
    """13.9, or 0.016-0.018 when the cells of a target differ (batch sizes, scenarios); written
    at its column's one precision (model.settle)."""
    if not values:
        return "-"
    return Span(min(values), max(values))


def one_off_table(run: Run) -> Table | None:
    """One row per benchmark and target: the model's build and export (once per model), and the
    per-process costs over its measured cells; None when the run recorded none of them."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in run.cells:
        if c.status != "skipped":
            groups.setdefault((c.benchmark, c.target.name), []).append(c)
    rows = []
    for (bench, target), cells in groups.items():
        model = cells[0].model
        per_cell = [[s for c in cells if (s := getattr(c, attr)) is not None]
                    for attr in ("load_s", "compile_s", "capture_s")]
        export = "-" if model.export_s is None else ("cached" if model.export_s == 0 else _span([model.export_s]))
        rows.append((bench, target, "-" if model.prepare_s is None else _span([model.prepare_s]), export,
                     _quantize([c.model.quantize_s for c in cells]), *(_span(v) for v in per_cell), str(len(cells))))
    names = ("model build s", "export s", "quantize s", "load s", "compile s", "capture s")
    # a column only where some row has a figure in it
    keep = [i for i in range(len(names)) if any(r[2 + i] != "-" for r in rows)]
    if not keep:
        return None
    columns = (Column("benchmark"), Column("target"), *(Column(names[i], numeric=True) for i in keep),
               Column("cells", numeric=True))
    quantized = any(r[4] != "-" for r in rows)
    return Table("one-off costs · paid once, not in the figures: model build (its export included) once per model in the run; "
                 + ("int8 quantization once per target (cached: made by an earlier run); " if quantized else "")
                 + "load, torch.compile's first calls and CUDA graph capture once per worker process",
                 columns, settle((r[0], r[1], *(r[2 + i] for i in keep), r[-1]) for r in rows),
                 "a range (low-high) where the target's cells differ (batch size, shape, scenario)")


def _quantize(values: list[float | None]) -> Span | str:
    """An int8 target's quantization seconds: what its cells paid (the first quantizes, the others
    find it made), "cached" where every cell found it in the cache (0), "-" for a target not int8."""
    paid = [v for v in values if v]
    if paid:
        return _span(paid)
    return "cached" if any(v == 0 for v in values) else "-"


def fmt_total(c: Cell) -> Num | str:
    """The cell's one-off seconds, a figure of its column (model.settle), "-" where none."""
    total = one_off_total_s(c)
    return "-" if total is None else Num(total, digits=2)
