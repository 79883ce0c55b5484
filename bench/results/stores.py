"""The history store: runs and their cells over time, behind one interface.

SQLite by default (a file, no server to run); PostgreSQL by URL (psycopg 3) for a fleet of machines
sharing one store. The harness creates and migrates the schema itself (STORE_SCHEMA_VERSION,
under a lock: BEGIN IMMEDIATE in SQLite, an advisory transaction lock in PostgreSQL). A run is
written in one transaction, keyed by run_id with ON CONFLICT DO NOTHING, so concurrent writers
from several machines neither corrupt nor duplicate. Credentials never leave this module: every
message names the URL with its password replaced by *** (bench.results.store_url).

The harness writes only into a store of its own, never into someone else's data:

- SQLite: a file it created carries SQLITE_APPLICATION_ID in its header (`PRAGMA application_id`,
  which SQLite keeps for exactly this). A store of an earlier harness (no id, but the tables
  bench_store(version), runs and cells) is recognised by that shape and stamped when written.
  Any other file (empty, text, another application's database, one with a table named `runs`)
  is refused before SQLite opens it for writing: one line, exit 2, the file byte for byte as it
  was. A new store is built under a temporary name and linked into place, so no writer ever sees
  it half made (an empty file is someone else's).
- PostgreSQL: its tables live in a schema of their own (`schema=NAME` in the URL, default
  `bench`), every statement names it, and it is created only where the schema is new or empty.
  A schema holding tables that are not the harness's (a `runs` of another application among
  them) is refused. An earlier harness kept its tables in the connection's current schema
  (public, usually): found there, the store is named with how to move it or keep using it.
- Readers (`bench history`) never create or initialise a store; they upgrade one of their own
  to this version in place, under the same lock as writers.
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from bench.codec import to_json
from bench.results.records import Run, machine_kind
from bench.results.safe_read import check_domain
# Re-exported: the redaction helpers and the store error are imported from here across bench.
from bench.results.store_url import (DEFAULT_PG_SCHEMA, PgLocation, StoreError, driver_message, is_postgres,
                                     parse_postgres, redact, shown)

__all__ = ["CellRow", "DEFAULT_DB", "DEFAULT_PG_SCHEMA", "HistoryStore", "SQLITE_APPLICATION_ID",
           "STORE_SCHEMA_VERSION", "StoreError", "check_store", "is_postgres", "open_store", "redact", "shown"]

STORE_SCHEMA_VERSION = 3
# Store versions: 1 first; 2 adds the generate cells' ttft_p50_ms and tpot_p50_ms (null elsewhere);
# 3 adds each cell's machine kind (a fleet run measures cells on several; null: its run's).
# The marker (application id, PostgreSQL schema of its own) is no store version: a version 3
# store of an earlier harness is stamped as it is, its tables untouched.
DEFAULT_DB = "results/history.sqlite"
# "benc" in ASCII: the SQLite header's application id of a bench history store (bytes 68-71).
SQLITE_APPLICATION_ID = 0x62656E63
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_LOCK_KEY = 0x62656E6368  # "bench"


@dataclass(frozen=True)
class CellRow:
    run_id: str
    created_at: str
    commit_sha: str | None
    machine: str
    cell_key: str
    benchmark: str
    target: str
    batch_size: int
    scenario: str
    throughput: float
    throughput_lo: float | None
    throughput_hi: float | None
    p50_ms: float
    p99_ms: float
    ttft_p50_ms: float | None = None  # generate cells: time to first token, median request
    tpot_p50_ms: float | None = None  # generate cells: time per output token, median request


class HistoryStore(Protocol):
    def add_run(self, run: Run) -> bool:
        """Record a run; False when a run with its run_id is already there."""

    def rows(self) -> list[CellRow]:
        """Every ok cell of every run, oldest run first."""

    def close(self) -> None: ...


def machine_key(run: Run) -> str:
    """The machine kind of the run's own environment (a fleet run's cells carry their node's)."""
    return machine_kind(run.environment)


def _cell_rows(run: Run) -> list[tuple]:
    out = []
    for c in run.cells:
        if c.status != "ok" or c.metrics is None:
            continue
        tp, lat, g = c.metrics.throughput, c.metrics.latency_ms, c.generate
        out.append((run.run_id, c.key.stable_id, c.benchmark, c.target.name, c.batch_size, c.scenario, c.status,
                    tp.value, tp.ci_low, tp.ci_high, lat.p50.value, lat.p99.value,
                    g.ttft_ms.p50.value if g is not None else None,
                    g.tpot_ms.p50.value if g is not None and g.tpot_ms is not None else None,
                    run.machine_of(c)))
    return out


# The tables of a store, as this harness creates them ({p}: the PostgreSQL schema, quoted, and a
# dot; nothing in SQLite). An index is made in its table's schema.
_DDL = [
    """CREATE TABLE {p}bench_store (version INTEGER NOT NULL)""",
    """CREATE TABLE {p}runs (
        run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, suite TEXT NOT NULL, machine TEXT NOT NULL,
        commit_sha TEXT, run_json TEXT NOT NULL)""",
    """CREATE TABLE {p}cells (
        run_id TEXT NOT NULL REFERENCES {p}runs(run_id), cell_key TEXT NOT NULL, benchmark TEXT NOT NULL,
        target TEXT NOT NULL, batch_size INTEGER NOT NULL, scenario TEXT NOT NULL, status TEXT NOT NULL,
        throughput DOUBLE PRECISION NOT NULL, throughput_lo DOUBLE PRECISION, throughput_hi DOUBLE PRECISION,
        p50_ms DOUBLE PRECISION NOT NULL, p99_ms DOUBLE PRECISION NOT NULL,
        ttft_p50_ms DOUBLE PRECISION, tpot_p50_ms DOUBLE PRECISION, machine TEXT,
        PRIMARY KEY (run_id, cell_key))""",
    """CREATE INDEX cells_by_key ON {p}cells (cell_key)""",
]
# Upgrades of an older store of ours, each to the version after it.
_UPGRADES = {
    2: ["ALTER TABLE {p}cells ADD COLUMN ttft_p50_ms DOUBLE PRECISION",
        "ALTER TABLE {p}cells ADD COLUMN tpot_p50_ms DOUBLE PRECISION"],
    3: ["ALTER TABLE {p}cells ADD COLUMN machine TEXT"],
}
_TABLES = ("bench_store", "runs", "cells")
# What makes a set of tables a bench store (any version: version 1's columns, which later
# versions keep): how a store of an earlier harness, which had no marker, is recognised.
_V1_COLUMNS = {
    "bench_store": {"version"},
    "runs": {"run_id", "created_at", "suite", "machine", "commit_sha", "run_json"},
    "cells": {"run_id", "cell_key", "benchmark", "target", "batch_size", "scenario", "status", "throughput",
              "throughput_lo", "throughput_hi", "p50_ms", "p99_ms"},
}


def _is_store(tables: dict[str, set[str]]) -> bool:
    return (all(t in tables for t in _TABLES) and tables["bench_store"] == _V1_COLUMNS["bench_store"]
            and all(_V1_COLUMNS[t] <= tables[t] for t in ("runs", "cells")))


def _not_ours(tables: dict[str, set[str]]) -> str:
    """Why a non-empty set of tables is no bench store."""
    clash = [t for t in _TABLES if t in tables]
    if clash:
        return f"its table {clash[0]!r} is not the harness's"
    names = sorted(tables)
    return f"it holds another application's tables: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"


# A cell's machine kind is its own (store v3: a fleet run measures cells on several kinds), or its
# run's for rows recorded before v3.
_SELECT = """SELECT r.run_id, r.created_at, r.commit_sha, COALESCE(c.machine, r.machine), c.cell_key, c.benchmark, c.target,
    c.batch_size, c.scenario, c.throughput, c.throughput_lo, c.throughput_hi, c.p50_ms, c.p99_ms, c.ttft_p50_ms,
    c.tpot_p50_ms FROM {p}cells c JOIN {p}runs r ON r.run_id = c.run_id ORDER BY r.created_at, r.run_id, c.cell_key"""

_READERS_NEVER_CREATE = ("readers never create one; record a run with `bench run --record --db ...` "
                         "or `bench history add` first")


class _SqlStore:
    """Shared logic; subclasses give the connection, the placeholder, the lock and the marker."""

    placeholder = "?"

    def __init__(self, conn: Any, shown: str, prefix: str = ""):
        self.conn = conn
        self.shown = shown  # the URL as messages name it: no secret
        self.prefix = prefix

    def _sql(self, text: str) -> str:
        return text.replace("{p}", self.prefix).replace("?", self.placeholder)

    def _lock(self, cur: Any) -> None:
        raise NotImplementedError

    def _begin(self, cur: Any) -> None:
        raise NotImplementedError

    def _stamped(self, cur: Any) -> bool:
        """Whether the store carries the marker (writers stamp one that does not)."""
        return True

    def _stamp(self, cur: Any) -> None:
        pass

    def _version(self, cur: Any) -> int:
        cur.execute(self._sql("SELECT version FROM {p}bench_store"))
        found = cur.fetchone()
        return 1 if found is None else found[0]  # an early store could lack the row: version 1

    def prepare(self, write: bool) -> None:
        """Bring a store of ours (already recognised) to this version, and stamp it when `write`:
        nothing is written when it is current (and stamped, or only read)."""
        cur = self.conn.cursor()
        version = self._version(cur)
        self._check_newer(version)
        if version == STORE_SCHEMA_VERSION and (not write or self._stamped(cur)):
            self.conn.commit()
            return
        self.conn.commit()
        self._begin(cur)
        self._lock(cur)
        try:
            version = self._version(cur)  # under the lock: one writer upgrades, the others find it done
            self._check_newer(version)
            if write or version < STORE_SCHEMA_VERSION:
                self._stamp(cur)
            cur.execute(self._sql("SELECT count(*) FROM {p}bench_store"))
            if cur.fetchone()[0] == 0:
                cur.execute(self._sql("INSERT INTO {p}bench_store (version) VALUES (?)"), (version,))
            for to in range(version + 1, STORE_SCHEMA_VERSION + 1):
                for ddl in _UPGRADES[to]:
                    cur.execute(self._sql(ddl))
                cur.execute(self._sql("UPDATE {p}bench_store SET version = ?"), (to,))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

    def _check_newer(self, version: int) -> None:
        if version > STORE_SCHEMA_VERSION:
            self.conn.rollback()
            raise StoreError(f"{self.shown}: history schema version {version} is newer than this harness "
                             f"({STORE_SCHEMA_VERSION}); upgrade the bench harness")

    def add_run(self, run: Run) -> bool:
        if run.status == "running":
            raise StoreError(f"run {run.run_id} is still running (its run.json is partial); record it once it completes")
        # The same domain rule as the file reader: SQLite would refuse a NaN, PostgreSQL store it.
        check_domain(run, f"run {run.run_id}")
        cur = self.conn.cursor()
        try:
            self._begin(cur)
            cur.execute(self._sql(
                "INSERT INTO {p}runs (run_id, created_at, suite, machine, commit_sha, run_json) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO NOTHING"),
                (run.run_id, run.created_at, run.suite.name, machine_key(run), run.environment.harness_commit,
                 json.dumps(to_json(run))))
            if cur.rowcount == 0:
                self.conn.rollback()
                return False
            for row in _cell_rows(run):
                cur.execute(self._sql(
                    "INSERT INTO {p}cells (run_id, cell_key, benchmark, target, batch_size, scenario, status, throughput, "
                    "throughput_lo, throughput_hi, p50_ms, p99_ms, ttft_p50_ms, tpot_p50_ms, machine) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), row)
            self.conn.commit()
            return True
        except BaseException:
            self.conn.rollback()
            raise

    def rows(self) -> list[CellRow]:
        cur = self.conn.cursor()
        cur.execute(self._sql(_SELECT))
        out = [CellRow(*r) for r in cur.fetchall()]
        self.conn.commit()
        return out

    def close(self) -> None:
        self.conn.close()


# --- SQLite ----------------------------------------------------------------------------------

def _sqlite_uri(path: Path, **params: Any) -> str:
    return path.resolve().as_uri() + "?" + urlencode(params)


def _sqlite_tables(conn: sqlite3.Connection) -> dict[str, set[str]]:
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {n: {r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (n,))} for n in names}


def _sqlite_refusal(path: Path) -> str | None:
    """None when the file at `path` is a bench store (marked, or an earlier harness's by its
    tables); else why the harness will not use it. Nothing is written: the header is read as
    bytes, and an unmarked database is opened immutable (no lock, no journal, no -wal or -shm
    files beside another application's database)."""
    with open(path, "rb") as f:
        head = f.read(100)
    if not head:
        return "is an empty file, not a bench history store"
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        return "is not a SQLite database, so not a bench history store"
    app_id = int.from_bytes(head[68:72], "big")
    if app_id == SQLITE_APPLICATION_ID:
        return None
    if app_id:
        return f"is another application's SQLite database (application_id {app_id:#010x})"
    try:
        conn = sqlite3.connect(_sqlite_uri(path, immutable=1), uri=True)
        try:
            tables = _sqlite_tables(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"is not a readable SQLite database ({exc})"
    if _is_store(tables):
        return None  # an earlier harness's store: stamped when written
    if not tables:
        return "is a SQLite database that bench did not create (no bench marker, no tables)"
    return f"is another application's SQLite database ({_not_ours(tables)})"


def _create_sqlite(path: Path) -> None:
    """A new store at `path`, made whole under a temporary name and linked into place: a
    concurrent writer finds no file or a complete store, never an empty file; the first link
    wins and the others use its store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    try:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
            conn.execute("PRAGMA journal_mode=WAL")  # kept in the file: readers never block the writer
            conn.execute("BEGIN")
            for ddl in _DDL:
                conn.execute(ddl.replace("{p}", ""))
            conn.execute("INSERT INTO bench_store (version) VALUES (?)", (STORE_SCHEMA_VERSION,))
            conn.execute("COMMIT")
        finally:
            conn.close()  # checkpoints: the file alone holds the store
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another writer's store came first: use it
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)


class SQLiteStore(_SqlStore):
    placeholder = "?"

    def __init__(self, path: Path, url: str, create: bool):
        shown_url = shown(url)
        try:
            if create and not path.exists():
                _create_sqlite(path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{shown_url}: cannot create the SQLite history: {exc}") from None
        check_store(url, create=False)  # it exists now, and is ours, or nothing opens it
        try:
            # isolation_level=None: we issue BEGIN ourselves; timeout: writers wait for the lock.
            conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{shown_url}: cannot open the SQLite history: {exc}") from None
        super().__init__(conn, shown_url)

    def _begin(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks

    def _lock(self, cur: Any) -> None:
        pass  # BEGIN IMMEDIATE already serialises writers

    def _stamped(self, cur: Any) -> bool:
        return cur.execute("PRAGMA application_id").fetchone()[0] == SQLITE_APPLICATION_ID

    def _stamp(self, cur: Any) -> None:
        found = cur.execute("PRAGMA application_id").fetchone()[0]
        if found == SQLITE_APPLICATION_ID:
            return
        if found != 0:  # replaced under our feet since it was checked: never stamp over another's id
            raise StoreError(f"{self.shown}: is another application's SQLite database (application_id {found:#010x})")
        cur.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")

    def prepare(self, write: bool) -> None:
        try:
            super().prepare(write)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.shown}: cannot prepare the SQLite history: {exc}") from None

    def add_run(self, run: Run) -> bool:
        try:
            return super().add_run(run)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.shown}: cannot write the run: {exc}") from None

    def rows(self) -> list[CellRow]:
        try:
            return super().rows()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.shown}: cannot read the history: {exc}") from None


# --- PostgreSQL ------------------------------------------------------------------------------

_PG_RELATIONS = """SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"""


class PostgresStore(_SqlStore):
    placeholder = "%s"

    def __init__(self, loc: PgLocation):
        try:
            import psycopg
        except ImportError:
            raise StoreError("PostgreSQL history needs psycopg: pip install 'psycopg[binary]'") from None
        from psycopg.conninfo import conninfo_to_dict

        self.loc = loc
        extra = {} if "connect_timeout" in conninfo_to_dict(loc.conninfo) else {"connect_timeout": 10}
        try:
            conn = psycopg.connect(loc.conninfo, **extra)
        except psycopg.Error as exc:
            raise StoreError(f"{loc.shown}: cannot connect to PostgreSQL: {driver_message(exc, loc)}") from None
        # The schema's name is checked (lower-case letters, digits, _), so quoting it is exact.
        super().__init__(conn, loc.shown, f'"{loc.schema}".')

    def _begin(self, cur: Any) -> None:
        pass  # psycopg opens a transaction on the first statement

    def _lock(self, cur: Any) -> None:
        # Concurrent CREATE TABLE can still collide in pg_type: serialise creation and upgrades.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))

    def _relations(self, cur: Any, schema: str) -> dict[str, set[str]] | None:
        """The tables (views, sequences, ...) of `schema` and their columns; None when it does not exist."""
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if cur.fetchone() is None:
            return None
        cur.execute(_PG_RELATIONS, (schema,))
        out: dict[str, set[str]] = {}
        for rel, col in cur.fetchall():
            out.setdefault(rel, set()).update([col] if col else [])
        return out

    def _earlier_store(self, cur: Any) -> str | None:
        """The schema where an earlier harness kept this database's store, when it is not ours:
        its tables had no schema named, so they went to the connection's current schema."""
        cur.execute("SELECT current_schema()")
        current = cur.fetchone()[0]
        if current is None or current == self.loc.schema:
            return None
        found = self._relations(cur, current)
        return current if found and _is_store(found) else None

    def _refuse(self, why: str) -> None:
        self.conn.rollback()
        raise StoreError(f"{self.shown}: schema {self.loc.schema!r} {why}; the harness keeps its tables in a schema "
                         "of its own: name a new or empty one with schema=NAME in the URL (?schema=NAME)")

    def open(self, create: bool) -> None:
        """Recognise (or, for a writer, create) the store in its schema, then prepare it."""
        cur = self.conn.cursor()
        found = self._relations(cur, self.loc.schema)
        if found and _is_store(found):
            self.prepare(write=create)
            return
        if found:
            self._refuse(f"is not a bench history store: {_not_ours(found)}")
        earlier = self._earlier_store(cur)
        if earlier is not None:
            self.conn.rollback()
            s, e = self.loc.schema, earlier
            raise StoreError(
                f"{self.shown}: no history store in schema {s!r}, but an earlier bench keeps one in schema {e!r}: "
                f"use it with schema={e} in the URL (?schema={e}), or move it (as its owner, in psql): "
                f"CREATE SCHEMA IF NOT EXISTS {s}; ALTER TABLE {e}.bench_store SET SCHEMA {s}; "
                f"ALTER TABLE {e}.runs SET SCHEMA {s}; ALTER TABLE {e}.cells SET SCHEMA {s};")
        if not create:
            self.conn.rollback()
            where = "does not exist" if found is None else "is empty"
            raise StoreError(f"{self.shown}: no history store: schema {self.loc.schema!r} {where} "
                             f"({_READERS_NEVER_CREATE})")
        self._lock(cur)
        found = self._relations(cur, self.loc.schema)  # under the lock: another writer may have made it
        if found and _is_store(found):
            self.conn.commit()
            self.prepare(write=True)
            return
        if found:
            self._refuse(f"is not a bench history store: {_not_ours(found)}")
        if found is None:
            cur.execute(f'CREATE SCHEMA "{self.loc.schema}"')
        for ddl in _DDL:
            cur.execute(self._sql(ddl))
        cur.execute(self._sql("INSERT INTO {p}bench_store (version) VALUES (?)"), (STORE_SCHEMA_VERSION,))
        cur.execute(self._sql("COMMENT ON TABLE {p}bench_store IS "
                              "'bench history store: the harness owns bench_store, runs and cells in this schema'"))
        self.conn.commit()

    def _error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"{self.shown}: {what}: {driver_message(exc, self.loc)}")

    def add_run(self, run: Run) -> bool:
        import psycopg

        try:
            return super().add_run(run)
        except psycopg.Error as exc:
            raise self._error("cannot write the run", exc) from None

    def rows(self) -> list[CellRow]:
        import psycopg

        try:
            return super().rows()
        except psycopg.Error as exc:
            raise self._error("cannot read the history", exc) from None


def _sqlite_path(url: str) -> Path:
    if "://" in url and not url.startswith("sqlite:///"):
        raise StoreError(f"{shown(url)}: not a history URL (allowed: postgresql://..., a libpq key=value "
                         "string, sqlite:///PATH, or a file path)")
    return Path(url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url)


def check_store(url: str | None = None, create: bool = True) -> None:
    """What open_store would refuse, found without connecting or writing: a PostgreSQL string
    libpq would misread (or a bad schema=), a file that is not a bench store, or (create=False)
    a store that does not exist. A command that records after a long run calls it first."""
    url = url or DEFAULT_DB
    if is_postgres(url):
        parse_postgres(url)
        return
    path = _sqlite_path(url)
    if not path.exists():
        if not create:
            raise StoreError(f"{shown(url)}: the history store does not exist ({_READERS_NEVER_CREATE})")
        return
    try:
        why = _sqlite_refusal(path) if path.is_file() else "is not a file"
    except OSError as exc:
        raise StoreError(f"{shown(url)}: cannot open the SQLite history: {exc}") from None
    if why is not None:
        raise StoreError(f"{shown(url)}: {why}; bench reads and writes only history stores it created "
                         "(name a new file for a new store)")


def open_store(url: str | None = None, create: bool = True) -> HistoryStore:
    """A store by URL: postgresql://... (or libpq's key=value form; schema=NAME picks the
    PostgreSQL schema, default bench), sqlite:///path, or a plain file path (SQLite). Readers
    pass create=False: a store that does not exist is then an error (a mistyped path must not
    pass a nightly gate with "no recorded cells"), and nothing is created."""
    url = url or DEFAULT_DB
    if is_postgres(url):
        pg = PostgresStore(parse_postgres(url))
        try:
            pg.open(create)
        except StoreError:
            pg.close()
            raise
        except Exception as exc:  # a driver error while recognising or creating the schema
            pg.close()
            raise pg._error("cannot prepare the history schema", exc) from None
        return pg
    store = SQLiteStore(_sqlite_path(url), url, create)
    try:
        store.prepare(write=create)
    except BaseException:
        store.close()
        raise
    return store
