"""The calibration record: what this harness's verdicts are worth on one machine kind, measured.

`bench self-check --checks reproducibility` runs a suite several times and measures, on the
machine kind it ran on (bench.results.records.machine_kind), how often `bench compare` cries wolf
on runs where nothing changed (A/A), how often the nightly gate does on nights where nothing
changed, and the smallest change each kind of cell lets them see with 80% power. It writes that
here as one record per machine kind; `compare` and `history` print it beside their verdicts
(bench.analysis.calibration), and say when there is none.

Where: `results/calibration/<kind>-<hash>.json` (DEFAULT_CALIBRATION_DIR), one file per machine
kind, its name made safe for any file system from the kind (a kind holds a CPU model's spaces,
parentheses and '|', and a fleet label anything) with a hash of the whole kind so that two kinds
never share a file. The record names its kind inside too: a file copied from another machine, or
named with --calibration, is checked against the kind it is used for and ignored when it differs
(a false-alarm rate measured on a quiet GPU box says nothing of a shared 2-core VM).

Reading is as strict as for a result file (a regular file under a size limit, strict JSON, every
key known, every count and share in its domain, a version this harness reads): a corrupt record
is one ResultFileError line (exit 2), never a guess. A newer record replaces an older one of the
same kind, written atomically: the latest calibration is the one that applies.

Format history: version 1 (2026-12) first.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.codec import DecodeError, from_json, to_json
from bench.errors import ResultFileError, ResultWriteError
from bench.results.records import out_of_domain
from bench.results.safe_read import regular_file_bytes, strict_json

CALIBRATION_VERSION = 1
DEFAULT_CALIBRATION_DIR = "results/calibration"
MAX_CALIBRATION_BYTES = 4 * 1024 * 1024  # a record is a few kB; anything near this is not one

_COUNT = {"minimum": 0}
_SHARE = {"minimum": 0}  # shares and relative effects: >= 0 (a share's upper bound is checked in validate)


@dataclass(frozen=True)
class CompareCalibration:
    """bench compare on A/A pairs (each run of the check against the next) and on a planted step."""

    pairs: int = field(metadata=_COUNT)  # A/A pairs compared
    false_alarm_pairs: int = field(metadata=_COUNT)  # pairs where compare exits 1 (a cell "slower")
    cells: int = field(metadata=_COUNT)  # cell comparisons over those pairs
    flagged_cells: int = field(metadata=_COUNT)  # of those, called slower or faster
    alpha: float = field(metadata=_SHARE)  # compare's --alpha and --threshold when measured
    threshold: float = field(metadata=_SHARE)
    planted_step: float = field(default=0.0, metadata=_SHARE)  # a target made this much slower (0.2: 20%)
    planted_cells: int = field(default=0, metadata=_COUNT)
    planted_found: int = field(default=0, metadata=_COUNT)  # of those cells, called slower
    verdicts: dict[str, int] = field(default_factory=dict, metadata=_COUNT)  # verdict -> A/A cells that read it

    def validate(self) -> tuple[str, str] | None:
        return out_of_domain(self) or _at_most(self, ("false_alarm_pairs", "pairs"), ("flagged_cells", "cells"),
                                               ("planted_found", "planted_cells"))


@dataclass(frozen=True)
class GateCalibration:
    """The nightly gate (bench.analysis.history) on A/A nights: no series changed, so any alarm is false."""

    metric: str  # the figure gated: throughput, p50, p99
    nights: int = field(metadata=_COUNT)
    false_alarm_nights: int = field(metadata=_COUNT)  # nights with at least one alarm
    series: int = field(metadata=_COUNT)  # series in each night (the suite's cells)
    runs: int = field(metadata=_COUNT)  # runs in each series
    method: str  # how the nights were made, in words (resampled from this machine's runs, or modelled)
    alpha: float = field(metadata=_SHARE)
    threshold: float = field(metadata=_SHARE)

    def validate(self) -> tuple[str, str] | None:
        return out_of_domain(self) or _at_most(self, ("false_alarm_nights", "nights"))


@dataclass(frozen=True)
class KindCalibration:
    """One kind of cell (its scenario: the noise of a single-stream cell is not an offline one's)."""

    kind: str
    cells: int = field(metadata=_COUNT)  # cells of this kind in the suite
    # compare's detectable change (at its alpha, 80% power) over this kind's cells in the A/A
    # pairs: the median cell, and the worst; None where no cell had a process test
    compare_detectable: float | None = field(default=None, metadata=_SHARE)
    compare_detectable_max: float | None = field(default=None, metadata=_SHARE)
    # metric -> run-to-run coefficient of variation, pooled over this kind's cells (root mean of
    # each cell's variance of log figures over the check's runs): what the gate sees night to night
    run_cv: dict[str, float] = field(default_factory=dict, metadata=_SHARE)
    # metric -> the smallest step the gate finds with 80% power on the night it starts, in one
    # series alone among the suite's (bench.analysis.calibration.gate_detectable)
    gate_detectable: dict[str, float] = field(default_factory=dict, metadata=_SHARE)

    def validate(self) -> tuple[str, str] | None:
        return out_of_domain(self)


@dataclass(frozen=True)
class Calibration:
    schema_version: int
    machine_kind: str  # bench.results.records.machine_kind of the machine that measured it
    created_at: str  # UTC ISO 8601
    suite: str  # the suite's name
    suite_sha256: str
    runs: int = field(metadata=_COUNT)  # runs of the suite the check made (A/A)
    repeats: int = field(metadata=_COUNT)  # worker processes per cell
    harness_commit: str | None
    compare: CompareCalibration
    gate: tuple[GateCalibration, ...]
    kinds: tuple[KindCalibration, ...]

    def validate(self) -> tuple[str, str] | None:
        if self.schema_version != CALIBRATION_VERSION:
            return "schema_version", (f"{self.schema_version} is not a calibration version this harness reads "
                                      f"({CALIBRATION_VERSION}); run bench self-check --checks reproducibility again")
        if not self.machine_kind:
            return "machine_kind", "empty; a calibration belongs to one machine kind"
        return out_of_domain(self)

    def gate_for(self, metric: str) -> GateCalibration | None:
        return next((g for g in self.gate if g.metric == metric), None)


def _at_most(record, *pairs: tuple[str, str]) -> tuple[str, str] | None:
    for part, whole in pairs:
        if getattr(record, part) > getattr(record, whole):
            return part, f"{getattr(record, part)} is more than {whole} ({getattr(record, whole)})"
    return None


def calibration_file(directory: Path | str, machine_kind: str) -> Path:
    """Where the record of `machine_kind` lives in `directory`: a readable stem and a hash of the
    whole kind (two kinds whose readable stems agree still get files of their own)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", machine_kind).strip("-.")[:60] or "machine"
    return Path(directory) / f"{stem}-{hashlib.sha256(machine_kind.encode()).hexdigest()[:10]}.json"


def read_calibration(path: Path | str) -> Calibration:
    """The record in `path`; a ResultFileError (one line, exit 2) for anything else."""
    path = Path(path)
    what = "calibration record"
    try:
        doc = strict_json(regular_file_bytes(path, MAX_CALIBRATION_BYTES, what), path)
    except ResultFileError as exc:
        raise ResultFileError(f"{what} {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("schema_version"), int) or "machine_kind" not in doc:
        raise ResultFileError(f"{what} {path}: not a bench calibration record (no schema_version and machine_kind); "
                              "bench self-check --checks reproducibility writes one")
    if doc["schema_version"] > CALIBRATION_VERSION:
        raise ResultFileError(f"{what} {path}: version {doc['schema_version']} is newer than this harness reads "
                              f"({CALIBRATION_VERSION}); upgrade bench, or measure again with this one")
    try:
        return from_json(Calibration, doc, "calibration")
    except DecodeError as exc:
        raise ResultFileError(f"{what} {path}: malformed: {exc}") from None
    except (OverflowError, ValueError) as exc:
        raise ResultFileError(f"{what} {path}: malformed: {exc}") from None


def write_calibration(record: Calibration, directory: Path | str = DEFAULT_CALIBRATION_DIR) -> Path:
    """Write (or replace, atomically) the record of its machine kind in `directory`."""
    import json

    from bench.results.files import atomic_write_text

    path = calibration_file(directory, record.machine_kind)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(to_json(record), indent=1) + "\n")
    except OSError as exc:
        raise ResultWriteError(f"{path}: cannot write the calibration record: {exc.strerror or exc}") from None
    return path


@dataclass(frozen=True)
class Lookup:
    """The calibration that applies to one machine kind, or why there is none."""

    machine_kind: str
    record: Calibration | None
    path: Path | None  # where it was read, or looked for
    note: str = ""  # when record is None: why (none there, another kind's record ignored)


def find_calibration(machine_kind: str, location: Path | str | None = None) -> Lookup:
    """The record for `machine_kind`. `location`: a directory of records (default
    DEFAULT_CALIBRATION_DIR, which need not exist) or one record's file, which must. A record of
    another kind is ignored and said so; a corrupt one raises ResultFileError."""
    explicit = location is not None
    where = Path(location) if explicit else Path(DEFAULT_CALIBRATION_DIR)
    if where.is_dir() or not explicit:
        path = calibration_file(where, machine_kind)
        if not path.exists():
            others = _other_kinds(where, machine_kind)
            # where two kinds read alike (one host name on other hardware), whole kinds tell them apart
            shorts = [short_kind(k) for k in (machine_kind, *others)]
            full = len(set(shorts)) < len(shorts)
            name = (lambda k: repr(k)) if full else short_kind
            tail = (f"; {where} holds records of other machine kinds only ({', '.join(map(name, others))}), ignored"
                    if others else "")
            return Lookup(machine_kind, None, path,
                          f"no calibration for machine kind {name(machine_kind)} in {where} "
                          f"(bench self-check --checks reproducibility --runs 10 writes one){tail}")
    else:
        path = where
        if not path.exists():
            raise ResultFileError(f"calibration record {path}: no such file or directory")
    record = read_calibration(path)
    if record.machine_kind != machine_kind:
        mine, theirs = _two_kinds(machine_kind, record.machine_kind)
        return Lookup(machine_kind, None, path, f"calibration {path} was measured on machine kind {theirs}, not "
                                                f"{mine}: ignored (its figures say nothing of this machine)")
    return Lookup(machine_kind, record, path)


def short_kind(kind: str) -> str:
    """A machine kind as people read it: the fleet label, or the host of an unlabelled machine
    (as bench.report.run_tables.node_kind, which this layer cannot import)."""
    return kind.split("|")[0] or kind


def _two_kinds(a: str, b: str) -> tuple[str, str]:
    """Two kinds in words that tell them apart: the short forms, or the whole kinds where those agree."""
    sa, sb = short_kind(a), short_kind(b)
    return (repr(a), repr(b)) if sa == sb else (sa, sb)


def _other_kinds(directory: Path, machine_kind: str) -> list[str]:
    """The kinds of the other readable records in `directory` (an unreadable one is no business
    of a lookup for another kind: it is reported when its own kind looks it up)."""
    if not directory.is_dir():
        return []
    kinds = []
    for p in sorted(directory.glob("*.json"))[:50]:
        try:
            kind = read_calibration(p).machine_kind
        except ResultFileError:
            continue
        if kind != machine_kind:
            kinds.append(kind)
    return kinds
