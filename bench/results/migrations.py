"""Upgrades of older run.json documents, one `update_to_N` per schema version bump.

Version 1 is the first; there is nothing to migrate yet. Each future bump adds
`update_to_N(doc) -> doc` here, registers it in MIGRATIONS, and ships a test that loads a
committed file of version N - 1.
"""
from __future__ import annotations

from typing import Any, Callable

MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def upgrade(doc: dict[str, Any], to_version: int) -> dict[str, Any]:
    version = doc["schema_version"]
    while version < to_version:
        doc = MIGRATIONS[version + 1](doc)
        version += 1
        doc["schema_version"] = version
    return doc
