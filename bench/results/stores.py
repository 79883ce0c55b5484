"""The history store: runs and their cells over time, behind one interface.

SQLite by default (a file, no server to run); PostgreSQL by URL (psycopg 3) for a fleet of machines
sharing one store. The harness creates and migrates the schema itself (STORE_SCHEMA_VERSION,
under a lock: BEGIN IMMEDIATE in SQLite, an advisory transaction lock in PostgreSQL). A run is
written in one transaction, keyed by run_id with ON CONFLICT DO NOTHING, so concurrent writers
from several machines neither corrupt nor duplicate. Credentials never leave this module: every
message names the URL with its password replaced by ***.
"""
from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from bench.errors import BenchError
from bench.codec import to_json
from bench.results.records import Run, machine_kind
from bench.results.safe_read import check_domain

STORE_SCHEMA_VERSION = 3
# Store versions: 1 first; 2 adds the generate cells' ttft_p50_ms and tpot_p50_ms (null elsewhere);
# 3 adds each cell's machine kind (a fleet run measures cells on several; null: its run's).
DEFAULT_DB = "results/history.sqlite"
_PG_LOCK_KEY = 0x62656E6368  # "bench"


class StoreError(BenchError):
    """The history store cannot be opened or written (exit 2); the message holds no password."""


_USERINFO = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
# key=value or key: value for the names of secrets, the key and the value each maybe quoted
# ("api_key": "sk-...", password='x'); `token` and `pwd` only with "=" (a parser's "unexpected
# token: ')'" is not a secret). A quoted value is replaced whole, an unquoted one up to a delimiter.
_SECRET_KEY = (r"[\w-]*?(?:(?:password|passwd|secret|api[_-]?key|access[_-]?key|client[_-]?secret)[\"']?\s*[=:]"
               r"|(?:token|pwd)[\"']?\s*=)")
_PASSWORD_PARAM = re.compile(
    r"((?:^|[?&\s,;({\[\"'])" + _SECRET_KEY + r"\s*)(?:\"[^\"]*\"|'[^']*'|[^&\s,;)}\]\"']*)", re.IGNORECASE)
_BEARER = re.compile(r"(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    """Text with every password in it replaced by ***: user:PASSWORD@ in any URL, anywhere in the
    text (an argv word like --db=postgresql://u:pw@h counts), password=... parameters (and
    token, secret, api_key, ... with = or :), and Bearer tokens."""
    return _BEARER.sub(r"\1***", _PASSWORD_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text)))


def _scrub(text: str, url: str) -> str:
    """An error message with the URL's password removed, however the driver quoted it."""
    text = redact(text)
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if not password:
        m = re.search(r"://[^:/@\s]*:([^@\s]+)@", url) or re.search(r"password=([^&\s]+)", url, re.IGNORECASE)
        password = m.group(1) if m else None
    return text.replace(password, "***") if password else text


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


_DDL = [
    """CREATE TABLE IF NOT EXISTS bench_store (version INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, suite TEXT NOT NULL, machine TEXT NOT NULL,
        commit_sha TEXT, run_json TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cells (
        run_id TEXT NOT NULL REFERENCES runs(run_id), cell_key TEXT NOT NULL, benchmark TEXT NOT NULL,
        target TEXT NOT NULL, batch_size INTEGER NOT NULL, scenario TEXT NOT NULL, status TEXT NOT NULL,
        throughput DOUBLE PRECISION NOT NULL, throughput_lo DOUBLE PRECISION, throughput_hi DOUBLE PRECISION,
        p50_ms DOUBLE PRECISION NOT NULL, p99_ms DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, cell_key))""",
    """CREATE INDEX IF NOT EXISTS cells_by_key ON cells (cell_key)""",
]

# A cell's machine kind is its own (store v3: a fleet run measures cells on several kinds), or its
# run's for rows recorded before v3.
_SELECT = """SELECT r.run_id, r.created_at, r.commit_sha, COALESCE(c.machine, r.machine), c.cell_key, c.benchmark, c.target,
    c.batch_size, c.scenario, c.throughput, c.throughput_lo, c.throughput_hi, c.p50_ms, c.p99_ms, c.ttft_p50_ms,
    c.tpot_p50_ms FROM cells c JOIN runs r ON r.run_id = c.run_id ORDER BY r.created_at, r.run_id, c.cell_key"""


class _SqlStore:
    """Shared logic; subclasses give the connection, the placeholder and the lock."""

    placeholder = "?"

    def __init__(self, conn: Any, url: str):
        self.conn = conn
        self.url = url

    def _sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)

    def _lock(self, cur: Any) -> None:
        raise NotImplementedError

    def _begin(self, cur: Any) -> None:
        raise NotImplementedError

    def migrate(self) -> None:
        cur = self.conn.cursor()
        self._begin(cur)
        self._lock(cur)
        for ddl in _DDL:
            cur.execute(ddl)
        cur.execute("SELECT version FROM bench_store")
        found = cur.fetchone()
        version = 1
        if found is None:
            cur.execute(self._sql("INSERT INTO bench_store (version) VALUES (?)"), (1,))
        elif found[0] > STORE_SCHEMA_VERSION:
            self.conn.rollback()
            raise StoreError(f"{redact(self.url)}: history schema version {found[0]} is newer than this harness "
                             f"({STORE_SCHEMA_VERSION}); upgrade the bench harness")
        else:
            version = found[0]
        if version < 2:  # under the same lock: one writer upgrades, the others find it done
            cur.execute("ALTER TABLE cells ADD COLUMN ttft_p50_ms DOUBLE PRECISION")
            cur.execute("ALTER TABLE cells ADD COLUMN tpot_p50_ms DOUBLE PRECISION")
            cur.execute(self._sql("UPDATE bench_store SET version = ?"), (2,))
        if version < 3:
            cur.execute("ALTER TABLE cells ADD COLUMN machine TEXT")
            cur.execute(self._sql("UPDATE bench_store SET version = ?"), (3,))
        self.conn.commit()

    def add_run(self, run: Run) -> bool:
        if run.status == "running":
            raise StoreError(f"run {run.run_id} is still running (its run.json is partial); record it once it completes")
        # The same domain rule as the file reader: SQLite would refuse a NaN, PostgreSQL store it.
        check_domain(run, f"run {run.run_id}")
        cur = self.conn.cursor()
        try:
            self._begin(cur)
            cur.execute(self._sql(
                "INSERT INTO runs (run_id, created_at, suite, machine, commit_sha, run_json) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO NOTHING"),
                (run.run_id, run.created_at, run.suite.name, machine_key(run), run.environment.harness_commit,
                 json.dumps(to_json(run))))
            if cur.rowcount == 0:
                self.conn.rollback()
                return False
            for row in _cell_rows(run):
                cur.execute(self._sql(
                    "INSERT INTO cells (run_id, cell_key, benchmark, target, batch_size, scenario, status, throughput, "
                    "throughput_lo, throughput_hi, p50_ms, p99_ms, ttft_p50_ms, tpot_p50_ms, machine) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), row)
            self.conn.commit()
            return True
        except BaseException:
            self.conn.rollback()
            raise

    def rows(self) -> list[CellRow]:
        cur = self.conn.cursor()
        cur.execute(_SELECT)
        out = [CellRow(*r) for r in cur.fetchall()]
        self.conn.commit()
        return out

    def close(self) -> None:
        self.conn.close()


def _wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL (readers never block the writer). Switching needs a moment alone with the
    file, and SQLite answers 'database is locked' at once rather than waiting when several
    processes open a new store together: retry for a while."""
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SQLiteStore(_SqlStore):
    placeholder = "?"

    def __init__(self, path: Path, url: str):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN ourselves; timeout: writers wait for the lock.
            conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
            _wal(conn)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{url}: cannot open the SQLite history: {exc}") from None
        super().__init__(conn, url)

    def _begin(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks

    def _lock(self, cur: Any) -> None:
        pass  # BEGIN IMMEDIATE already serialises writers

    def add_run(self, run: Run) -> bool:
        try:
            return super().add_run(run)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.url}: cannot write the run: {exc}") from None


class PostgresStore(_SqlStore):
    placeholder = "%s"

    def __init__(self, url: str):
        try:
            import psycopg
        except ImportError:
            raise StoreError("PostgreSQL history needs psycopg: pip install 'psycopg[binary]'") from None
        try:
            conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as exc:
            first = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, url)
            raise StoreError(f"{redact(url)}: cannot connect to PostgreSQL: {first}") from None
        super().__init__(conn, url)

    def _begin(self, cur: Any) -> None:
        pass  # psycopg opens a transaction on the first statement

    def add_run(self, run: Run) -> bool:
        import psycopg

        try:
            return super().add_run(run)
        except psycopg.Error as exc:
            raise StoreError(f"{redact(self.url)}: cannot write the run: {_scrub(str(exc).splitlines()[0], self.url)}") from None

    def _lock(self, cur: Any) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in pg_type: serialise migrations.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))


# libpq's key=value connection string ("host=h dbname=d password=..."): recognised as PostgreSQL,
# never taken for a file name (which would put the password in the working directory's listing).
_CONNINFO = re.compile(r"^\s*[A-Za-z_]+\s*=")


def is_postgres(url: str) -> bool:
    """Whether `url` is one of the forms libpq accepts: a postgresql:// or postgres:// URI, or a
    key=value connection string."""
    return url.startswith(("postgresql://", "postgres://")) or bool(_CONNINFO.match(url))


def open_store(url: str | None = None, create: bool = True) -> HistoryStore:
    """A store by URL: postgresql://... (or libpq's key=value form), sqlite:///path, or a plain
    file path (SQLite). Readers pass create=False: a SQLite file that does not exist is then an
    error (a mistyped path must not pass a nightly gate with "no recorded cells"), and nothing is
    created."""
    url = url or DEFAULT_DB
    if is_postgres(url):
        store: _SqlStore = PostgresStore(url)
    else:
        path = Path(url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url)
        if "://" in url and not url.startswith("sqlite:///"):
            raise StoreError(f"{redact(url)}: not a history URL (allowed: postgresql://..., a libpq key=value "
                             "string, sqlite:///PATH, or a file path)")
        if not create and not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise StoreError(f"{redact(url)}: the history store {what} (readers never create one; "
                             "record a run with `bench run --record --db ...` or `bench history add` first)")
        store = SQLiteStore(path, url)
    try:
        store.migrate()
    except StoreError:
        store.close()
        raise
    except Exception as exc:  # a driver error while creating the schema: report it without the URL's secret
        store.close()
        raise StoreError(f"{redact(url)}: cannot prepare the history schema: "
                         f"{_scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, url)}") from None
    return store
