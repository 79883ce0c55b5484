"""Stores that are not the harness's, and secrets in store URLs (issue 26).

SQLite: the harness writes only to a file it created (its application id in the header) or to a
store of an earlier harness (recognised by its tables, stamped when written); anything else is
one line, exit 2, the file byte for byte as it was. PostgreSQL (a real server, where
BENCH_TEST_PG_URL names one): the harness's tables live in a schema of their own, a schema holding
another application's tables is refused untouched, and an earlier harness's store in the current
schema is named with how to move it. Secrets: a password made of every printable ASCII character,
percent-encoded as it should be and typed raw as a user would, in a URL and in libpq's key=value
form, never leaves a piece of itself in an error line, in `bench run --record`'s stderr, in
run.json's argv or in `bench history`'s output.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from bench.results.stores import SQLITE_APPLICATION_ID, STORE_SCHEMA_VERSION, StoreError, open_store, redact
from tests.helpers import load_run_json, run_cli, tiny_suite, write_suite

RUN = Path(__file__).parent / "data/run_v2.json"
PG_URL = os.environ.get("BENCH_TEST_PG_URL")
needs_pg = pytest.mark.skipif(
    not PG_URL and not os.environ.get("CI"),
    reason="set BENCH_TEST_PG_URL to a PostgreSQL database (.ci/run starts one with .ci/postgres.sh)",
)

# Every printable ASCII character, the space among them, shuffled (random.Random(26)) so that no
# four of them in a row read like a word a message could hold by chance. .ci/postgres.sh gives
# the role bench_ci_special this password.
SPECIAL_PASSWORD = 'OgxDrHpU_a\\@ysmk>6Kj.7!d^*1YR3+-|M"B($&P)A[S8Gfib,L{hZXn4CJF= Iu/Ecz}NQv;w2<#~T?Vq5`o%]0\'elW:t9'
ENCODED = quote(SPECIAL_PASSWORD, safe="")
assert sorted(SPECIAL_PASSWORD) == [chr(c) for c in range(0x20, 0x7F)]


def pieces(text: str) -> list[str]:
    """The pieces of the password (as typed or percent-encoded) that `text` holds: four characters
    in a row, or five of the encoded form (whose %XX triples are common)."""
    found = [SPECIAL_PASSWORD[i:i + 4] for i in range(len(SPECIAL_PASSWORD) - 3) if SPECIAL_PASSWORD[i:i + 4] in text]
    return found + [ENCODED[i:i + 5] for i in range(len(ENCODED) - 4) if ENCODED[i:i + 5] in text]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench: "), err
    return lines[0]


# The tables of a store as earlier harnesses created them (no schema named, no marker): version 1.
V1_DDL = """
    CREATE TABLE bench_store (version INTEGER NOT NULL);
    CREATE TABLE runs (run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, suite TEXT NOT NULL,
        machine TEXT NOT NULL, commit_sha TEXT, run_json TEXT NOT NULL);
    CREATE TABLE cells (run_id TEXT NOT NULL REFERENCES runs(run_id), cell_key TEXT NOT NULL,
        benchmark TEXT NOT NULL, target TEXT NOT NULL, batch_size INTEGER NOT NULL, scenario TEXT NOT NULL,
        status TEXT NOT NULL, throughput DOUBLE PRECISION NOT NULL, throughput_lo DOUBLE PRECISION,
        throughput_hi DOUBLE PRECISION, p50_ms DOUBLE PRECISION NOT NULL, p99_ms DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, cell_key));
    CREATE INDEX cells_by_key ON cells (cell_key);
    INSERT INTO bench_store VALUES (1);
    INSERT INTO runs VALUES ('old-run', '2026-11-01T00:00:00Z', 's', 'm', NULL, '{}');
    INSERT INTO cells VALUES ('old-run', 'k', 'b', 't', 1, 'offline', 'ok', 100.0, NULL, NULL, 1.0, 2.0);
"""


# --- SQLite: files that are not the harness's --------------------------------------------------

def _sqlite(path: Path, script: str, wal: bool = False) -> None:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(script)
    conn.commit()
    conn.close()


FOREIGN_FILES = {
    "an empty file": lambda p: p.write_bytes(b""),
    "a text file": lambda p: p.write_text("notes: not a database\n" * 20),
    "another application's database": lambda p: _sqlite(
        p, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada');"),
    "another application's database with a table named runs": lambda p: _sqlite(
        p, "CREATE TABLE runs (id INTEGER, command TEXT); INSERT INTO runs VALUES (1, 'make');"),
    "another application's WAL database with a table named cells": lambda p: _sqlite(
        p, "CREATE TABLE cells (x INTEGER); INSERT INTO cells VALUES (7);", wal=True),
    "a database with another application id": lambda p: _sqlite(
        p, "PRAGMA application_id = 1234; CREATE TABLE bench_store (version INTEGER NOT NULL);"),
    "a SQLite database with no tables": lambda p: _sqlite(p, "PRAGMA user_version = 1;"),
}


@pytest.mark.parametrize("kind", list(FOREIGN_FILES))
def test_a_file_that_is_not_a_bench_store_is_refused_and_left_byte_for_byte(tmp_path, capsys, kind):
    db = tmp_path / "store.db"
    FOREIGN_FILES[kind](db)
    before, listing = sha256(db), sorted(os.listdir(tmp_path))
    for argv in (["history", "--db", str(db)], ["history", "add", str(RUN), "--db", str(db)],
                 ["history", "--db", f"sqlite:///{db}"]):
        code, out, err = run_cli(capsys, *argv)
        line = one_line(code, err)
        assert str(db) in line and "bench reads and writes only history stores it created" in line, line
        assert out == ""
    with pytest.raises(StoreError):
        open_store(str(db)).close()
    assert sha256(db) == before
    assert sorted(os.listdir(tmp_path)) == listing  # no journal, -wal or -shm left beside it


def test_a_clash_says_which_table_is_not_the_harnesss(tmp_path, capsys):
    db = tmp_path / "app.db"
    FOREIGN_FILES["another application's database with a table named runs"](db)
    line = one_line(*run_cli(capsys, "history", "add", str(RUN), "--db", str(db))[::2])
    assert "another application's SQLite database (its table 'runs' is not the harness's)" in line, line
    line = one_line(*run_cli(capsys, "history", "--db", str(tmp_path / "empty.db"))[::2])
    assert "does not exist" in line and not (tmp_path / "empty.db").exists()


def test_a_reader_creates_no_file_and_a_writer_a_marked_store(tmp_path, capsys):
    db = tmp_path / "new" / "h.sqlite"
    for url in (str(db), f"sqlite:///{db}"):
        line = one_line(*run_cli(capsys, "history", "--db", url)[::2])
        assert "does not exist" in line and "readers never create one" in line
    assert not db.parent.exists()
    code, out, err = run_cli(capsys, "history", "add", str(RUN), "--db", str(db))
    assert code == 0, err
    assert sorted(os.listdir(db.parent)) == ["h.sqlite"]  # built under another name, linked in whole
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA application_id").fetchone() == (SQLITE_APPLICATION_ID,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version FROM bench_store").fetchall() == [(STORE_SCHEMA_VERSION,)]
    finally:
        conn.close()
    code, out, err = run_cli(capsys, "history", "--db", str(db), "--json")
    assert code == 4 and json.loads(out)  # read back; one run is too few for the gate (no data)


def test_an_earlier_harnesss_store_is_read_as_it_is_and_stamped_when_written(tmp_path, capsys):
    db = tmp_path / "old.sqlite"
    _sqlite(db, V1_DDL.replace("INSERT INTO bench_store VALUES (1)", "INSERT INTO bench_store VALUES (3)")
            .replace("PRIMARY KEY (run_id, cell_key)", "ttft_p50_ms DOUBLE PRECISION, tpot_p50_ms DOUBLE PRECISION, "
                     "machine TEXT, PRIMARY KEY (run_id, cell_key)")
            .replace("1.0, 2.0)", "1.0, 2.0, NULL, NULL, NULL)"), wal=True)
    before = sha256(db)
    store = open_store(str(db), create=False)  # a reader: the current version, nothing to do
    try:
        assert [(r.run_id, r.machine) for r in store.rows()] == [("old-run", "m")]
    finally:
        store.close()
    assert sha256(db) == before
    code, _, err = run_cli(capsys, "history", "add", str(RUN), "--db", str(db))
    assert code == 0, err
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA application_id").fetchone() == (SQLITE_APPLICATION_ID,)
        assert {r[0] for r in conn.execute("SELECT run_id FROM runs")} == {"old-run", "20261122T193347Z-a2cc07"}
    finally:
        conn.close()


def test_check_store_finds_what_open_store_would_refuse_without_connecting_or_writing(tmp_path):
    """What `bench run --record` can call before a long run."""
    from bench.results.stores import check_store

    db = tmp_path / "app.db"
    FOREIGN_FILES["another application's database with a table named runs"](db)
    before = sha256(db)
    with pytest.raises(StoreError, match="its table 'runs' is not the harness's"):
        check_store(str(db))
    assert sha256(db) == before
    check_store(str(tmp_path / "new.sqlite"))  # a writer may create it ...
    with pytest.raises(StoreError, match="does not exist"):
        check_store(str(tmp_path / "new.sqlite"), create=False)  # ... a reader may not
    assert sorted(os.listdir(tmp_path)) == ["app.db"]
    with pytest.raises(StoreError) as exc:
        check_store(FORMS["url, typed raw"](5432))  # refused as libpq would misread it: no connection
    assert "percent-encode" in str(exc.value) and pieces(str(exc.value)) == []


# --- PostgreSQL: a schema of the harness's own ------------------------------------------------

def _with(url: str, **options: str) -> str:
    return url + ("&" if "?" in url else "?") + "&".join(f"{k}={quote(v, safe='')}" for k, v in options.items())


@pytest.fixture
def schemas():
    """Fresh schema names for one test (the test database is shared), dropped afterwards."""
    import psycopg

    made: list[str] = []

    def new() -> str:
        made.append(f"t_{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield new
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _pg(sql: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        cur = conn.execute(sql, params or None)
        return cur.fetchall() if cur.description else []


def _tables(schema: str) -> list[tuple]:
    return _pg("SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
               "ORDER BY table_name, ordinal_position", schema)


@needs_pg
def test_postgres_tables_go_to_a_schema_of_their_own(capsys, schemas):
    s = schemas()
    public = _tables("public")
    url = _with(PG_URL, schema=s)
    code, out, err = run_cli(capsys, "history", "add", str(RUN), "--db", url)
    assert code == 0, err
    assert out.strip().endswith(f"recorded in {redact(url)}") and "bench-ci-only" not in out
    assert {t for t, _, _ in _tables(s)} == {"bench_store", "runs", "cells"}
    assert _tables("public") == public  # nothing made or changed where earlier versions wrote
    code, out, err = run_cli(capsys, "history", "--db", url, "--json")
    assert code == 4 and json.loads(out), err  # one run: read back, too few for the gate (no data)


@needs_pg
@pytest.mark.parametrize("foreign", [
    "CREATE TABLE {s}.runs (id INTEGER, command TEXT); INSERT INTO {s}.runs VALUES (1, 'make')",
    "CREATE TABLE {s}.users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO {s}.users VALUES (1, 'ada')",
    "CREATE TABLE {s}.bench_store (version TEXT, owner TEXT); INSERT INTO {s}.bench_store VALUES ('x', 'y')",
])
def test_postgres_refuses_a_schema_holding_another_applications_table(capsys, schemas, foreign):
    s = schemas()
    _pg(f"CREATE SCHEMA {s}")
    for statement in foreign.format(s=s).split("; "):
        _pg(statement)
    before = _tables(s), _pg(f"SELECT * FROM {s}.{foreign.split('.')[1].split(' ')[0]}")
    url = _with(PG_URL, schema=s)
    for argv in (["history", "add", str(RUN), "--db", url], ["history", "--db", url]):
        line = one_line(*run_cli(capsys, *argv)[::2])
        assert f"schema '{s}' is not a bench history store" in line and "?schema=NAME" in line, line
        assert "bench-ci-only" not in line
    assert (_tables(s), _pg(f"SELECT * FROM {s}.{foreign.split('.')[1].split(' ')[0]}")) == before


@needs_pg
def test_another_applications_runs_in_the_current_schema_is_left_alone(capsys, schemas):
    app, ours = schemas(), schemas()
    _pg(f"CREATE SCHEMA {app}")
    _pg(f"CREATE TABLE {app}.runs (id INTEGER, command TEXT)")
    _pg(f"INSERT INTO {app}.runs VALUES (1, 'make')")
    url = _with(PG_URL, options=f"-csearch_path={app}", schema=ours)  # unqualified names would land in app
    code, _, err = run_cli(capsys, "history", "add", str(RUN), "--db", url)
    assert code == 0, err
    assert _tables(app) == [("runs", "id", "integer"), ("runs", "command", "text")]
    assert _pg(f"SELECT * FROM {app}.runs") == [(1, "make")]


@needs_pg
def test_an_earlier_harnesss_store_in_the_current_schema_is_named_with_how_to_move_it(capsys, schemas):
    old, new = schemas(), schemas()
    _pg(f"CREATE SCHEMA {old}")
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:  # as an earlier harness made it: no schema named
        conn.execute(f"SET search_path TO {old}")
        for statement in V1_DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
    url = _with(PG_URL, options=f"-csearch_path={old}", schema=new)
    for argv in (["history", "--db", url], ["history", "add", str(RUN), "--db", url]):
        line = one_line(*run_cli(capsys, *argv)[::2])
        assert f"no history store in schema '{new}', but an earlier bench keeps one in schema '{old}'" in line, line
        assert f"?schema={old}" in line and f"ALTER TABLE {old}.runs SET SCHEMA {new};" in line
    assert _pg("SELECT 1 FROM pg_namespace WHERE nspname = %s", new) == []  # nothing made meanwhile

    # Kept where it is: read (and upgraded in place, as a store of ours), then written.
    kept = _with(PG_URL, schema=old)
    code, out, err = run_cli(capsys, "history", "--db", kept, "--json")
    assert code == 4 and [s["cell_key"] for s in json.loads(out)] == ["k"], err  # one run: no data for the gate
    assert _pg(f"SELECT version FROM {old}.bench_store") == [(STORE_SCHEMA_VERSION,)]

    # Moved as the line says: found in the new schema, with its runs.
    moves = line.split("in psql): ")[1]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for statement in moves.split(";"):
            if statement.strip():
                conn.execute(statement)
    code, _, err = run_cli(capsys, "history", "add", str(RUN), "--db", url)
    assert code == 0, err
    assert {r[0] for r in _pg(f"SELECT run_id FROM {new}.runs")} == {"old-run", "20261122T193347Z-a2cc07"}


def test_a_schema_name_is_checked_before_anything_connects(capsys):
    for bad, what in (("Bench", "lower-case"), ("pg_x", "pg_"), ("a;drop", "lower-case")):
        line = one_line(*run_cli(capsys, "history", "--db", f"postgresql://u:pw-1234@127.0.0.1:1/db?schema={quote(bad)}")[::2])
        assert what in line and "pw-1234" not in line, line
    line = one_line(*run_cli(capsys, "history", "--db", "host=127.0.0.1 port=1 password=pw-1234 schema=Bench")[::2])
    assert "lower-case" in line and "password=***" in line and "pw-1234" not in line


# --- secrets -----------------------------------------------------------------------------------

def _kv(password: str, **more: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo("", host="127.0.0.1", user="bench_ci_special", password=password, dbname="bench_ci", **more)


# Each way a user may write the password: percent-encoded as a URL must be, typed raw into a URL
# (the user name, then everything up to the host), in the query, and libpq's key=value quoted as
# it must be and typed raw. `port` is where no server listens (or the real one, for the PG tests).
FORMS = {
    "url, percent-encoded": lambda port: f"postgresql://bench_ci_special:{ENCODED}@127.0.0.1:{port}/bench_ci",
    "url, typed raw": lambda port: f"postgresql://bench_ci_special:{SPECIAL_PASSWORD}@127.0.0.1:{port}/bench_ci",
    "url query, percent-encoded": lambda port: f"postgresql://bench_ci_special@127.0.0.1:{port}/bench_ci?password={ENCODED}",
    "url query, typed raw": lambda port: f"postgresql://bench_ci_special@127.0.0.1:{port}/bench_ci?password={SPECIAL_PASSWORD}",
    "key=value, quoted": lambda port: _kv(SPECIAL_PASSWORD, port=str(port)),
    "key=value, typed raw": lambda port: f"host=127.0.0.1 port={port} user=bench_ci_special password={SPECIAL_PASSWORD} dbname=bench_ci",
    "key=value, raw and last": lambda port: f"host=127.0.0.1 port={port} password={SPECIAL_PASSWORD}",
}


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("form", list(FORMS))
def test_redaction_works_from_the_parsed_url_for_every_character(form):
    url = FORMS[form](5432)
    for word in (url, f"--db={url}"):  # as argv words: each parsed as a store string
        assert pieces(redact(word)) == [], (form, redact(word))
    if form in ("url, percent-encoded", "url, typed raw", "key=value, quoted"):
        # Inside a longer text the string's end is unknown; these forms still end where they say.
        assert pieces(redact(f"bench history --db {url} --json")) == [], redact(f"bench history --db {url}")
    assert "***" in redact(url)
    assert "127.0.0.1" in redact(url)  # the rest stays readable: what failed, and where
    for text, secret in ((r"host=h password='a b\'c' dbname=d", "b'c"), (r"host=h password='a b\'c", "b\\'c"),
                         ("x password=\"a \\\"q\\\" b\" y", "q\\")):
        assert secret not in redact(text) and "***" in redact(text), redact(text)


@pytest.mark.parametrize("form", list(FORMS))
def test_the_error_line_of_a_store_that_cannot_be_used_holds_no_piece_of_the_password(capsys, form):
    url = FORMS[form](_closed_port())
    code, out, err = run_cli(capsys, "history", "--db", url)
    line = one_line(code, err)
    assert pieces(line + out) == [], (form, line)
    assert "127.0.0.1" in line, line
    code, out, err = run_cli(capsys, "history", "add", str(RUN), "--db", url)
    assert pieces(one_line(code, err) + out) == [], form


def test_a_url_libpq_would_split_inside_its_password_is_refused_with_how_to_write_it(capsys):
    line = one_line(*run_cli(capsys, "history", "--db", FORMS["url, typed raw"](5432))[::2])
    assert line.startswith("bench: postgresql://bench_ci_special:***@127.0.0.1:5432/bench_ci: ")
    assert "percent-encode" in line and "%40" in line


@pytest.mark.parametrize("form", ["url, typed raw", "url, percent-encoded", "key=value, quoted"])
def test_run_record_keeps_every_piece_of_the_password_out_of_stderr_and_run_json(tmp_path, capsys, monkeypatch, form):
    """argv as the console script has it: run.json records it, each word redacted."""
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]"))
    port = 5432 if PG_URL and form != "url, typed raw" else _closed_port()
    url = FORMS[form](port)
    if PG_URL and port == 5432:
        s = f"t_{uuid.uuid4().hex[:12]}"  # the role's own schema, dropped below
        url = _with(url, schema=s) if url.startswith("postgresql") else f"{url} schema={s}"
    argv = ["run", str(suite), "--out", str(tmp_path / "r"), "--record", f"--db={url}"]
    monkeypatch.setattr(sys, "argv", ["bench", *argv])
    code, out, err = run_cli(capsys, *argv)
    if form == "url, typed raw":  # refused before the run: one line, nothing measured to lose
        assert code == 2 and not (tmp_path / "r").exists() and pieces(err + out) == [], err
        assert len(err.strip().splitlines()) == 1 and "must percent-encode" in err, err
        return
    doc = load_run_json(tmp_path / "r")
    assert pieces(err + out) == [] and pieces(json.dumps(doc)) == [], form
    assert any(a.startswith("--db=") and "***" in a for a in doc["argv"]), doc["argv"]
    if PG_URL and port == 5432:
        assert code == 0 and "history: recorded in" in err, err
        try:
            code, out, err = run_cli(capsys, "history", "--db", url, "--json")
            assert code == 4 and doc["run_id"] in out and pieces(out + err) == [], err  # one run: no data
        finally:
            import psycopg
            from bench.results.store_url import parse_postgres

            with psycopg.connect(parse_postgres(url).conninfo, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
    else:
        assert code == 2, err
        line = [x for x in err.splitlines() if "127.0.0.1" in x]
        assert len(line) == 1 and "the run's results stay in" in line[0], err


@needs_pg
@pytest.mark.parametrize("form", ["url, percent-encoded", "url query, percent-encoded", "key=value, quoted"])
def test_a_real_password_of_every_printable_character_connects_and_never_shows(capsys, form):
    s = f"t_{uuid.uuid4().hex[:12]}"
    url = FORMS[form](5432)
    url = _with(url, schema=s) if url.startswith("postgresql") else f"{url} schema={s}"
    try:
        code, out, err = run_cli(capsys, "history", "add", str(RUN), "--db", url)
        assert code == 0, err
        assert "recorded in" in out and "***" in out and pieces(out + err) == []
        code, out, err = run_cli(capsys, "history", "--db", url)
        assert code == 4 and pieces(out + err) == [], err  # one run: no data for the gate
        wrong = url.replace(ENCODED, ENCODED + "X") if ENCODED in url else _kv(SPECIAL_PASSWORD + "X")
        code, out, err = run_cli(capsys, "history", "--db", wrong)
        line = one_line(code, err)
        assert "password authentication failed" in line and pieces(line) == [], line
    finally:
        import psycopg
        from bench.results.store_url import parse_postgres

        with psycopg.connect(parse_postgres(url).conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
