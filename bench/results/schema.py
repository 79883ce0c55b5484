"""The JSON Schema of run.json, generated from the records (bench.results.records).

The committed copy (run.schema.json beside this module) lets tools outside Python validate a
result file; a test keeps it equal to what `run_schema()` generates.
"""
from __future__ import annotations

from typing import Any

from bench import codec
from bench.results.records import SCHEMA_VERSION, Run


def run_schema() -> dict[str, Any]:
    return codec.json_schema(Run, f"bench-run-v{SCHEMA_VERSION}", "bench run.json",
                       pinned={"schema_version": {"const": SCHEMA_VERSION}})

