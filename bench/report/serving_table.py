"""The serving overhead of a run's served targets, as a table (reads results and their analysis)."""
from __future__ import annotations

from bench.analysis.serving import serving_overheads
from bench.report.model import Column, Num, Table, settle
from bench.results.records import Run


def serving_table(run: Run) -> Table | None:
    """Each served target against each in-process target of the same workload, paired by round;
    None when the run has no such pair."""
    rows = []
    for o in serving_overheads(run):
        rows.append((o.group, o.served, o.in_process,
                     Num(o.added_p50_ms, o.added_p50_low_ms, o.added_p50_high_ms, 3),
                     "-" if o.time_ratio is None else Num(o.time_ratio, o.time_ratio_low, o.time_ratio_high, 3),
                     str(o.rounds),
                     f"{o.served_error_rate:.1%}" if o.served_error_rate else "-"))
    if not rows:
        return None
    return Table("serving overhead · a served target against the in-process one on the same model and workload, paired "
                 "by round (process i of each ran in round i), 95% interval · time per sample: - under an open loop, "
                 "whose throughput is the offered rate",
                 (Column("group"), Column("served"), Column("in-process"), Column("added p50 ms", numeric=True),
                  Column("time per sample x", numeric=True), Column("rounds", numeric=True), Column("served errors")),
                 settle(rows))
