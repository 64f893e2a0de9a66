"""UPDATE rewriting its row through the cursor that found it (cext/lmdbc.pxi
``LmdbCursor.replace_current``, used by ``TableWriter.update``).

In a write transaction a statement's lookups go through a real LMDB cursor, and an
UPDATE whose row kept its key rewrites the row at that cursor's position
(``cursor_put`` with MDB_CURRENT) instead of descending the B-tree again; only while
the cursor still stands on that key with nothing written since.  These tests pin
that the rewrite is taken where it should be (the process counter moves) and that
it changes nothing observable: the tables equal sqlite3's after the same
statements, and the tables and the committed change sets equal those of the
fallback path (py-lmdb's Python API, where no in-place rewrite exists), on rows
that grow and shrink (page splits, overflow pages), indexed tables, key-changing
updates, WITHOUT ROWID tables, triggers, sub-selects that move the shared lookup
cursor, several rows per statement and savepoints rolled back.
"""
from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import lmdb
import pytest

import terndb
from terndb._cext import _core as C

C_PATH = C.lmdb_c_status()[0]
needs_c = pytest.mark.skipif(not C_PATH, reason="the C LMDB path is unavailable")


# -- the cursor primitive ------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Any) -> Iterator[Any]:
    e = lmdb.open(str(tmp_path / "env"), max_dbs=2, map_size=1 << 26)
    yield e
    e.close()


@needs_c
def test_replace_current_rewrites_the_entry_found(env: Any) -> None:
    db = env.open_db(b"t")
    with env.begin(write=True) as txn:
        for i in range(300):
            txn.put(b"k%04d" % i, b"v" * 40, db=db)
        before = C.lmdb_c_in_place_writes()
        # Same size, larger (a page split), on an overflow page, and back to small.
        for value in (b"w" * 40, b"x" * 3000, b"y" * 9000, b"z"):
            assert C.lmdb_c_find_and_replace(txn, db, b"k0150", b"k0150", value) == 1
            assert txn.get(b"k0150", db=db) == value
        assert C.lmdb_c_in_place_writes() == before + 4
        assert [k for k, _ in txn.cursor(db=db)] == [b"k%04d" % i for i in range(300)]
        assert all(v == b"v" * 40 for k, v in txn.cursor(db=db) if k != b"k0150")


@needs_c
def test_replace_current_refuses_another_key_or_a_moved_transaction(env: Any) -> None:
    db = env.open_db(b"t")
    with env.begin(write=True) as txn:
        for k in (b"a", b"b", b"c"):
            txn.put(k, b"old", db=db)
        before = C.lmdb_c_in_place_writes()
        assert C.lmdb_c_find_and_replace(txn, db, b"b", b"c", b"new") == 0       # not where it stands
        assert C.lmdb_c_find_and_replace(txn, db, b"bb", b"bb", b"new") == 0     # found nothing
        assert C.lmdb_c_find_and_replace(txn, db, b"b", b"b", b"new", (b"a", b"x")) == 0  # a write since
        assert C.lmdb_c_in_place_writes() == before
        assert dict(txn.cursor(db=db)) == {b"a": b"x", b"b": b"old", b"c": b"old"}


def test_replace_current_is_refused_on_the_fallback_path(env: Any, path_mode: str) -> None:
    db = env.open_db(b"t")
    with env.begin(write=True) as txn:
        txn.put(b"a", b"old", db=db)
        done = C.lmdb_c_find_and_replace(txn, db, b"a", b"a", b"new")
        assert done == (1 if path_mode == "c" else 0)
        assert txn.get(b"a", db=db) == (b"new" if done else b"old")


# -- UPDATE through SQL: the same tables as sqlite3 and as the fallback path ----------------


SCHEMA = [
    "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, x REAL, a TEXT, b TEXT)",
    "CREATE TABLE u(id INTEGER PRIMARY KEY, v TEXT UNIQUE, w INTEGER)",
    "CREATE INDEX u_w ON u(w)",
    "CREATE TABLE k(p TEXT, q INTEGER, r TEXT, PRIMARY KEY (p, q)) WITHOUT ROWID",
    "CREATE TABLE log(id INTEGER PRIMARY KEY, what TEXT)",
    "CREATE TRIGGER t_big AFTER UPDATE OF n ON t WHEN new.n % 7 = 0 BEGIN "
    "INSERT INTO log(what) VALUES ('t ' || new.id || ' ' || new.n); "
    "UPDATE t SET b = 'touched' WHERE id = new.id + 1; END",
]

ROWS = 120


def _load(con: Any) -> None:
    rng = random.Random(5)
    for sql in SCHEMA:
        con.execute(sql)
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                    [(i, i, i / 4, "a" * rng.randrange(0, 50), f"row-{i}") for i in range(1, ROWS + 1)])
    con.executemany("INSERT INTO u VALUES (?, ?, ?)", [(i, f"v{i}", i % 5) for i in range(1, 41)])
    con.executemany("INSERT INTO k VALUES (?, ?, ?)", [(f"p{i % 4}", i, "r" * i) for i in range(1, 41)])
    con.commit()


def _workload(con: Any, errors: list) -> None:
    """Updates by key of every kind, in one transaction, each statement run many times
    (the second run of a statement takes the prepared path); expected failures are
    recorded by their PEP 249 class name, and the transaction goes on."""
    rng = random.Random(11)

    def run(sql: str, params: tuple = ()) -> None:
        try:
            con.execute(sql, params)
        except (sqlite3.Error, terndb.Error) as err:
            errors.append((sql, params, type(err).__mro__[1].__name__
                           if type(err).__name__ not in ("IntegrityError", "OperationalError")
                           else type(err).__name__))

    for _ in range(300):
        key = rng.randrange(1, ROWS + 5)              # some keys are missing
        # Rows that grow and shrink: page splits, overflow pages, records moving.
        run("UPDATE t SET n = n + 1, x = ?, a = ? WHERE id = ?",
            (key * 0.5, "g" * rng.choice((0, 3, 200, 1500, 5000)), key))
    for _ in range(60):
        key = rng.randrange(1, ROWS + 1)
        # A sub-select on the same table moves the statement's lookup cursor to
        # another row between the lookup and the write.
        run("UPDATE t SET b = (SELECT b FROM t WHERE id = ?) || '+' WHERE id = ?", (key % ROWS + 1, key))
        run("UPDATE t SET n = n * 2 WHERE id IN (?, ?, ?)", (key, key + 1, key + 3))
    for _ in range(40):
        key = rng.randrange(1, 45)
        run("UPDATE u SET w = w + 1 WHERE id = ?", (key,))                 # indexed column changes
        run("UPDATE u SET v = ? WHERE id = ?", (f"v{rng.randrange(1, 45)}", key))   # UNIQUE conflicts
        run("UPDATE OR REPLACE u SET v = ? WHERE id = ?", (f"v{rng.randrange(1, 45)}", key))
        run("UPDATE k SET r = r || ? WHERE p = ? AND q = ?", ("x" * rng.randrange(0, 300), f"p{key % 4}", key))
    for key in range(1, 12):
        run("UPDATE t SET id = id + 1000 WHERE id = ?", (key,))            # the key changes
        run("UPDATE t SET id = ? WHERE id = ?", (key + 1, key + 20))       # onto an existing key
    run("SAVEPOINT s")
    for key in range(30, 50):
        run("UPDATE t SET n = -n, a = ? WHERE id = ?", ("s" * key * 40, key))
    run("ROLLBACK TO s")
    for key in range(40, 60):
        run("UPDATE t SET n = n + 100 WHERE id = ?", (key,))
    run("RELEASE s")
    con.commit()


def _tables(con: Any) -> dict[str, list]:
    return {name: con.execute(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()
            for name in ("t", "u", "k", "log")}


def _changes(con: Any) -> list[tuple]:
    """Every committed change after the load, without its clock: (op, table, key, record, mask)."""
    db = con._db
    with db.store.begin_read() as r:
        sets = [cs for _, cs in db.binlog.read(r.txn, 0)]
    return [e.as_tuple()[:5] for cs in sets for e in cs.entries]


def _run_terndb(path: str, c_path: bool) -> tuple[dict, list, list, int]:
    old = C.lmdb_c_enable(c_path) if C_PATH else False
    try:
        con = terndb.connect(path)
        try:
            _load(con)
            errors: list = []
            before = C.lmdb_c_in_place_writes()
            _workload(con, errors)
            in_place = C.lmdb_c_in_place_writes() - before
            return _tables(con), _changes(con), errors, in_place
        finally:
            con.close()
    finally:
        if C_PATH:
            C.lmdb_c_enable(old)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    lite = sqlite3.connect(":memory:")
    _load(lite)
    lite_errors: list = []
    _workload(lite, lite_errors)
    out: dict[str, Any] = {"sqlite3": (_tables(lite), lite_errors)}
    lite.close()
    out["fallback"] = _run_terndb(str(tmp_path_factory.mktemp("fallback") / "db"), False)
    if C_PATH:
        out["c"] = _run_terndb(str(tmp_path_factory.mktemp("c") / "db"), True)
    return out


@pytest.mark.parametrize("mode", ["c", "fallback"])
def test_tables_and_errors_equal_sqlite3(results: dict[str, Any], mode: str) -> None:
    if mode not in results:
        pytest.skip("the C LMDB path is unavailable")
    tables, _, errors, _ = results[mode]
    lite_tables, lite_errors = results["sqlite3"]
    assert errors == lite_errors
    assert len(errors) > 5                  # the workload does meet its conflicts
    for name, rows in lite_tables.items():
        assert tables[name] == rows, name


@needs_c
def test_in_place_rewrites_change_nothing_but_the_path(results: dict[str, Any]) -> None:
    c_tables, c_changes, _, in_place = results["c"]
    fb_tables, fb_changes, _, fb_in_place = results["fallback"]
    # Most updates by key were rewritten in place on the C path, none on the fallback.
    assert in_place > 300 and fb_in_place == 0
    assert c_tables == fb_tables
    assert c_changes == fb_changes          # the change sets' keys, records and masks, byte for byte


@needs_c
def test_a_prepared_update_rewrites_in_place(tmp_path: Any) -> None:
    con = terndb.connect(str(tmp_path / "db"))
    try:
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, s TEXT)")
        con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, i, "s") for i in range(100)])
        con.commit()
        before = C.lmdb_c_in_place_writes()
        for i in range(100):
            con.execute("UPDATE t SET n = n + 1, s = ? WHERE id = ?", ("t" * (i % 9), i))
        assert C.lmdb_c_in_place_writes() - before == 100
        con.commit()
        assert con.execute("SELECT id, n, s FROM t ORDER BY id").fetchall() == [
            (i, i + 1, "t" * (i % 9)) for i in range(100)]
    finally:
        con.close()
