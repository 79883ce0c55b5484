"""The JSON Schema of run.json, generated from the records (bench.results.records).

The committed copy (run.schema.json beside this module) lets tools outside Python validate a
result file; a test keeps it equal to what `run_schema()` generates. Each figure's domain (a
field's "minimum" or "exclusiveMinimum", declared in bench.results.records) is stated there too,
so that a validator outside Python refuses what `bench` refuses.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from bench import codec
from bench.results.records import SCHEMA_VERSION, Run


def _bounded(schema: dict[str, Any], bound: dict[str, Any]) -> dict[str, Any]:
    """`schema` with `bound` on its numbers: the number itself, each branch of an X | None, each
    item of a list, each value of a table."""
    if schema.get("type") in ("integer", "number"):
        return {**schema, **bound}
    if "anyOf" in schema:
        return {**schema, "anyOf": [_bounded(s, bound) for s in schema["anyOf"]]}
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return {**schema, "items": _bounded(schema["items"], bound)}
    if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        return {**schema, "additionalProperties": _bounded(schema["additionalProperties"], bound)}
    return schema


def _records(root: type) -> dict[str, type]:
    """Every record reachable from `root`, by class name (as the schema's $defs name them)."""
    found: dict[str, type] = {}
    todo = [root]
    while todo:
        cls = todo.pop()
        if cls.__name__ in found:
            continue
        found[cls.__name__] = cls
        for tp in typing.get_type_hints(cls).values():
            stack = [tp]
            while stack:
                t = stack.pop()
                if dataclasses.is_dataclass(t):
                    todo.append(t)
                stack.extend(typing.get_args(t))
    return found


def run_schema() -> dict[str, Any]:
    schema = codec.json_schema(Run, f"bench-run-v{SCHEMA_VERSION}", "bench run.json",
                               pinned={"schema_version": {"const": SCHEMA_VERSION}})
    for name, cls in _records(Run).items():
        props = schema["$defs"][name]["properties"]
        for f in dataclasses.fields(cls):
            bound = {k: v for k, v in f.metadata.items() if k in ("minimum", "exclusiveMinimum")}
            if bound:
                props[f.name] = _bounded(props[f.name], bound)
    return schema
