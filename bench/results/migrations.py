"""Upgrades of older run.json documents, one `update_to_N` per schema version bump.

Each bump adds `update_to_N(doc) -> doc` here, registers it in MIGRATIONS, and ships a test that
loads a committed file of version N - 1 (tests/data/run_vN.json).
"""
from __future__ import annotations

from typing import Any, Callable



def update_to_2(doc: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: every field v2 adds has a default, and v1 never wrote a histogram (always null),
    so the document is unchanged but for its version; v1 figures keep their null intervals."""
    return doc


def update_to_3(doc: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3: `server` is new and optional, and v2 had no server scenario: version alone."""
    return doc


def update_to_4(doc: dict[str, Any]) -> dict[str, Any]:
    """v3 -> v4: `gpu` becomes a typed record, but v3 always wrote null there (no GPU targets);
    every other new field is optional: version alone."""
    return doc


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {2: update_to_2, 3: update_to_3, 4: update_to_4}


def upgrade(doc: dict[str, Any], to_version: int) -> dict[str, Any]:
    version = doc["schema_version"]
    while version < to_version:
        doc = MIGRATIONS[version + 1](doc)
        version += 1
        doc["schema_version"] = version
    return doc
