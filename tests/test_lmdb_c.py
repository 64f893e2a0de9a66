"""The C-level LMDB cursor (cext/lmdbc.pxi) and its py-lmdb fallback.

Scans read LMDB through the MDB_cursor of a py-lmdb ``Cursor`` (see the
header of lmdbc.pxi).  These tests check that the C path and the fallback
give the same rows (and the same as sqlite3), that reads keep their
transaction's snapshot and see its own writes, that values on LMDB overflow
pages come back whole, that a cursor whose transaction ended (or whose
table was dropped, or whose read slot was reused) raises instead of touching
freed memory, and that a py-lmdb whose layout does not verify turns the C
path off instead of crashing.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import lmdb
import pytest

import terndb
from terndb._cext import _core as C
from terndb.engine.errors import OperationalError

C_PATH_AVAILABLE = C.lmdb_c_status()[0]


@pytest.fixture
def env(tmp_path) -> Iterator[Any]:
    e = lmdb.open(str(tmp_path / "env"), max_dbs=4, map_size=1 << 26)
    yield e
    e.close()


def _fill(env: Any, db: Any, items: dict[bytes, bytes]) -> None:
    with env.begin(write=True) as txn:
        for k, v in items.items():
            txn.put(k, v, db=db)


def test_the_c_path_is_on_for_the_py_lmdb_it_was_checked_against() -> None:
    if lmdb.__version__ != "3.0.0":
        pytest.skip(f"layout verified against py-lmdb 3.0.0, running {lmdb.__version__}")
    if os.environ.get("TERNDB_LMDB_C") == "0":
        pytest.skip("the C path is turned off for this run (TERNDB_LMDB_C=0)")
    assert C.lmdb_c_status() == (True, None)


# -- LmdbItems: the cursor itself ---------------------------------------------------------------


def test_items_match_py_lmdb_from_start_and_from_a_key(env: Any, path_mode: str) -> None:
    db = env.open_db(b"t")
    items = {i.to_bytes(4, "big"): b"v%d" % i * (i % 7) for i in range(0, 3000, 3)}
    _fill(env, db, items)
    with env.begin() as txn:
        scan = C.LmdbItems(txn, db)
        assert scan.uses_c == (path_mode == "c")
        assert list(scan) == sorted(items.items())
        start = (1000).to_bytes(4, "big")           # between keys: 999 and 1002
        assert list(C.LmdbItems(txn, db, start)) == [kv for kv in sorted(items.items()) if kv[0] >= start]
        assert list(C.LmdbItems(txn, db, b"\xff")) == []
    empty = env.open_db(b"empty")
    with env.begin() as txn:
        assert list(C.LmdbItems(txn, empty)) == []


def test_values_on_overflow_pages_come_back_whole(env: Any, path_mode: str) -> None:
    db = env.open_db(b"big")
    items = {b"a": os.urandom(3 * 4096 + 17), b"b": b"", b"c": os.urandom(1 << 20), b"d": b"x"}
    _fill(env, db, items)
    with env.begin() as txn:
        assert list(C.LmdbItems(txn, db)) == sorted(items.items())


def test_a_read_keeps_its_snapshot_while_a_writer_commits(env: Any, path_mode: str) -> None:
    db = env.open_db(b"t")
    _fill(env, db, {b"%03d" % i: b"old" for i in range(100)})
    reader = env.begin()
    scan = C.LmdbItems(reader, db)
    head = [next(scan) for _ in range(10)]
    with env.begin(write=True) as w:
        for i in range(100):
            w.put(b"%03d" % i, b"new", db=db)
        w.put(b"zzz", b"new", db=db)
    rest = list(scan)
    assert [v for _, v in head + rest] == [b"old"] * 100
    reader.abort()


def test_a_write_transaction_sees_its_own_writes(env: Any, path_mode: str) -> None:
    db = env.open_db(b"t")
    _fill(env, db, {b"a": b"1", b"c": b"3"})
    with env.begin(write=True) as txn:
        txn.put(b"b", b"2", db=db)
        txn.delete(b"c", db=db)
        assert list(C.LmdbItems(txn, db)) == [(b"a", b"1"), (b"b", b"2")]
        txn.abort()


@pytest.mark.parametrize("end", ["abort", "commit", "drop", "reuse"])
def test_a_scan_whose_transaction_ended_raises(env: Any, path_mode: str, end: str) -> None:
    db = env.open_db(b"t")
    _fill(env, db, {b"%03d" % i: b"v" for i in range(50)})
    txn = env.begin(write=(end in ("commit", "drop")))
    scan = C.LmdbItems(txn, db)
    next(scan)
    if end == "abort":
        txn.abort()
    elif end == "commit":
        txn.commit()
    elif end == "drop":
        txn.drop(db, delete=True)
    else:
        # The ended read transaction's MDB_txn goes back to py-lmdb's spare slot
        # and is renewed for the next reader; the old scan must not read through it.
        txn.abort()
        again = env.begin()
        assert len(list(C.LmdbItems(again, db))) == 50
    with pytest.raises((OperationalError, lmdb.Error)):
        next(scan)


class _TxnWrapper:
    """Not py-lmdb's own Transaction: must be read through its Python API."""

    def __init__(self, txn: Any) -> None:
        self._txn = txn

    def cursor(self, db: Any = None) -> Any:
        return self._txn.cursor(db=db)

    def get(self, key: bytes, default: Any = None, db: Any = None) -> Any:
        return self._txn.get(key, default, db)


def test_a_transaction_wrapper_reads_through_the_python_api(env: Any) -> None:
    db = env.open_db(b"t")
    _fill(env, db, {b"k1": b"v1", b"k2": b"v2"})
    before = C.lmdb_c_status()
    with env.begin() as txn:
        scan = C.LmdbItems(_TxnWrapper(txn), db)
        assert not scan.uses_c
        assert list(scan) == [(b"k1", b"v1"), (b"k2", b"v2")]
        assert C.lmdb_c_lookup(_TxnWrapper(txn), db, b"k2") == (b"k2", b"v2")
    assert C.lmdb_c_status() == before       # a stranger is not a layout failure


# -- writes and point lookups: lmdb_put / lmdb_delete / lmdb_get / lookup cursors -------------------


def test_put_delete_get_answer_as_py_lmdb_does(env: Any, path_mode: str) -> None:
    db = env.open_db(b"t")
    with env.begin(write=True) as txn:
        assert C.lmdb_c_put(txn, db, b"k", b"v1") == 1
        assert C.lmdb_c_put(txn, db, b"k", b"v2", False) == 0         # MDB_NOOVERWRITE: kept
        assert C.lmdb_c_get(txn, db, b"k") == b"v1" == txn.get(b"k", db=db)
        assert C.lmdb_c_put(txn, db, b"k", b"v3") == 1                # overwrite
        assert C.lmdb_c_lookup(txn, db, b"k") == (b"k", b"v3")
        assert C.lmdb_c_put(txn, db, b"e", b"") == 1                  # empty values are values
        assert C.lmdb_c_get(txn, db, b"e") == b""
        assert C.lmdb_c_delete(txn, db, b"k") is True
        assert C.lmdb_c_delete(txn, db, b"k") is False
        assert C.lmdb_c_get(txn, db, b"k") is None
        assert C.lmdb_c_lookup(txn, db, b"k") is None
        big = os.urandom(1 << 20)                                      # overflow pages
        C.lmdb_c_put(txn, db, b"big", big)
        assert C.lmdb_c_lookup(txn, db, b"big") == (b"big", big)
    with env.begin() as txn:
        assert list(txn.cursor(db=db)) == [(b"big", big), (b"e", b"")]
        assert C.lmdb_c_lookup(txn, db, b"e") == (b"e", b"")


def test_an_append_hint_never_changes_the_outcome(env: Any, path_mode: str) -> None:
    """MDB_APPEND is tried only as a hint: a key that is not last is stored normally (2 on
    the C path, which tried the append first), an existing key still conflicts."""
    db = env.open_db(b"t")
    not_last = 2 if path_mode == "c" else 1
    with env.begin(write=True) as txn:
        assert C.lmdb_c_put(txn, db, b"b", b"1", False, True) == 1      # empty table: appended
        assert C.lmdb_c_put(txn, db, b"c", b"2", False, True) == 1      # after the last key
        assert C.lmdb_c_put(txn, db, b"a", b"3", False, True) == not_last
        assert C.lmdb_c_put(txn, db, b"c", b"4", False, True) == 0      # the last key exists
        assert C.lmdb_c_put(txn, db, b"b", b"5", False, True) == 0      # an inner key exists
        assert C.lmdb_c_put(txn, db, b"b", b"6", True, True) == not_last  # overwrite an inner key
        assert C.lmdb_c_put(txn, db, b"c", b"7", True, True) == not_last  # overwrite the last key
        for i in range(2000):                                           # page splits at the end
            assert C.lmdb_c_put(txn, db, b"d%05d" % i, b"v" * 50, False, True) == 1
        assert list(txn.cursor(db=db))[:4] == [(b"a", b"3"), (b"b", b"6"), (b"c", b"7"),
                                               (b"d00000", b"v" * 50)]
        assert txn.stat(db)["entries"] == 2003


def _error_of(call: Any) -> tuple[type, str, Any]:
    with pytest.raises(lmdb.Error) as info:
        call()
    return type(info.value), str(info.value), getattr(info.value, "code", None)


def test_lmdb_errors_are_py_lmdbs_own(env: Any, path_mode: str) -> None:
    db = env.open_db(b"t")
    other = lmdb.open(str(env.path()) + "-other", max_dbs=2)
    try:
        foreign = other.open_db(b"f")
        with env.begin(write=True) as txn:
            for mine, theirs in [
                (lambda: C.lmdb_c_put(txn, db, b"", b"v"), lambda: txn.put(b"", b"v", db=db)),
                (lambda: C.lmdb_c_put(txn, db, b"k" * 600, b"v"), lambda: txn.put(b"k" * 600, b"v", db=db)),
                (lambda: C.lmdb_c_put(txn, foreign, b"k", b"v"), lambda: txn.put(b"k", b"v", db=foreign)),
            ]:
                assert _error_of(mine) == _error_of(theirs)
            txn.abort()
        with env.begin() as ro:                                # a read-only transaction
            assert _error_of(lambda: C.lmdb_c_put(ro, db, b"k", b"v")) == \
                _error_of(lambda: ro.put(b"k", b"v", db=db))
        ended = env.begin(write=True)
        ended.abort()
        for call in (lambda: C.lmdb_c_put(ended, db, b"k", b"v"), lambda: C.lmdb_c_delete(ended, db, b"k"),
                     lambda: C.lmdb_c_get(ended, db, b"k"), lambda: C.lmdb_c_lookup(ended, db, b"k")):
            assert _error_of(call)[:2] == _error_of(lambda: ended.get(b"k", db=db))[:2]
    finally:
        other.close()


def test_a_map_full_put_raises_map_full_error(tmp_path: Any, path_mode: str) -> None:
    small = lmdb.open(str(tmp_path / "small"), max_dbs=2, map_size=1 << 16)
    try:
        db = small.open_db(b"t")
        with small.begin(write=True) as txn:
            with pytest.raises(lmdb.MapFullError, match="mdb_put: MDB_MAP_FULL"):
                for i in range(10_000):
                    C.lmdb_c_put(txn, db, b"%06d" % i, b"x" * 100)
            txn.abort()
    finally:
        small.close()


def test_py_lmdb_cursors_see_writes_made_through_c(env: Any, path_mode: str) -> None:
    """The C path counts its writes as py-lmdb does, so py-lmdb cursors re-read their entry."""
    db = env.open_db(b"t")
    _fill(env, db, {b"a": b"1", b"b": b"2", b"c": b"3"})
    with env.begin(write=True) as txn:
        cur = txn.cursor(db=db)
        assert cur.set_key(b"b") and cur.value() == b"2"
        C.lmdb_c_put(txn, db, b"b", b"two, now longer than before" * 50)
        assert cur.value() == b"two, now longer than before" * 50
        C.lmdb_c_delete(txn, db, b"a")
        assert cur.key() == b"b"
        txn.abort()


def _dml(con: Any) -> None:
    """Writes through every row-writer path: inserts, conflicts, REPLACE, updates that move
    rowids and index keys, deletes, a rolled-back savepoint."""
    con.execute("CREATE TABLE w (id INTEGER PRIMARY KEY, u TEXT UNIQUE, n INTEGER, s TEXT)")
    con.execute("CREATE INDEX w_n ON w (n)")
    con.executemany("INSERT INTO w VALUES (?, ?, ?, ?)",
                    [(i, f"u{i}", i % 7, "s" * (i % 50)) for i in range(1, 401)])
    con.executemany("INSERT OR IGNORE INTO w VALUES (?, ?, ?, ?)", [(5, "new", 1, ""), (900, "u7", 1, "")])
    con.execute("INSERT OR REPLACE INTO w VALUES (10, 'u11', 99, 'replaced')")
    # Rowids out of order (the append hint is dropped and rows still land) and allocated.
    con.executemany("INSERT INTO w (id, u, n) VALUES (?, ?, ?)",
                    [(1500, "a", 1), (450, "b", 2), (1600, "c", 3), (1550, "d", 4)])
    con.executemany("INSERT INTO w (u, n) VALUES (?, ?)", [(f"auto{i}", i) for i in range(5)])
    con.execute("UPDATE w SET n = n + 100, s = s || 'x' WHERE id % 3 = 0")
    con.execute("UPDATE w SET id = id + 1000 WHERE id BETWEEN 50 AND 60")
    con.execute("UPDATE OR IGNORE w SET u = 'u1' WHERE id = 2")
    con.execute("DELETE FROM w WHERE n = 4")
    con.execute("SAVEPOINT sp")
    con.execute("DELETE FROM w WHERE id < 100")
    con.execute("UPDATE w SET u = NULL")
    con.execute("ROLLBACK TO sp")
    con.execute("RELEASE sp")
    for i in range(200, 260):
        con.execute("UPDATE w SET s = ? WHERE id = ?", (f"single {i}", i))
    con.commit()


def test_writes_give_sqlite3_rows_on_both_paths(path_mode: str, twin: Any) -> None:
    tern, lite = twin.tern, twin.lite
    _dml(tern)
    _dml(lite)
    for sql in ("SELECT * FROM w ORDER BY id", "SELECT n, count(*) FROM w GROUP BY n",
                "SELECT id, u FROM w WHERE u > 'u3' ORDER BY u", "SELECT * FROM w WHERE id = 1055"):
        assert tern.execute(sql).fetchall() == lite.execute(sql).fetchall(), sql
    with pytest.raises(terndb.IntegrityError, match="UNIQUE constraint failed: w.u"):
        tern.execute("UPDATE w SET u = 'u1' WHERE id = 3")
    with pytest.raises(terndb.IntegrityError, match="UNIQUE constraint failed: w.id"):
        tern.execute("INSERT INTO w (id) VALUES (1)")
    tern.commit()
    assert tern.execute("SELECT u FROM w WHERE id = 3").fetchone() == ("u3",)


def test_map_growth_replays_writes_on_both_paths(tmp_path: Any, path_mode: str) -> None:
    """MDB_MAP_FULL from the C path is py-lmdb's MapFullError: the map grows, the txn replays."""
    con = terndb.connect(str(tmp_path / "db"), map_size=1 << 20)
    try:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        con.execute("CREATE INDEX t_v ON t (v)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, "a" * 300 + str(i)) for i in range(1, 3001)])
        for i in range(1, 200):
            con.execute("UPDATE t SET v = ? WHERE id = ?", ("b" * 400 + str(i), i))
        con.execute("DELETE FROM t WHERE id > 2900")
        con.commit()
        assert con._db.store.map_size > 1 << 20
        assert con.execute("SELECT count(*), sum(v LIKE 'b%'), sum(length(v)) FROM t").fetchone() == (
            2900, 199, sum(400 + len(str(i)) if i < 200 else 300 + len(str(i)) for i in range(1, 2901)))
    finally:
        con.close()


# -- through SQL: both paths give sqlite3's rows ----------------------------------------------------


QUERIES = [
    "SELECT * FROM t",
    "SELECT id, b FROM t WHERE n % 3 = 1",
    "SELECT * FROM t WHERE id BETWEEN 17 AND 170",
    "SELECT id FROM t WHERE id > 1990",
    "SELECT id FROM t WHERE id < -5",
    "SELECT n, count(*), sum(x), avg(x), max(b), min(length(big)) FROM t GROUP BY n",
    "SELECT t.n, count(*), sum(u.w) FROM t JOIN u ON u.k = t.n GROUP BY t.n",
    # Index nested-loop joins on the INTEGER PRIMARY KEY: repeated probes (memoised in
    # read transactions), probes of missing rows, and a filter on the probed side.
    "SELECT t.id, p.label FROM t JOIN p ON p.id = t.n",
    "SELECT t.id, p.label FROM t LEFT JOIN p ON p.id = t.n * 2 WHERE t.id < 300",
    "SELECT p.label, count(*) FROM t JOIN p ON p.id = t.n AND p.label > 'label 4' GROUP BY p.label",
]


def _load(con: Any) -> None:
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL, b TEXT, big BLOB)")
    con.execute("CREATE TABLE u (k INTEGER, w REAL)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                    [(i, i % 13, i * 0.25, f"item {i}" if i % 5 else None,
                      bytes([i % 251]) * (5000 if i % 400 == 0 else 3)) for i in range(1, 2001)])
    con.executemany("INSERT INTO u VALUES (?, ?)", [(k, k * 1.5) for k in range(0, 13, 2)])
    con.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, label TEXT)")
    con.executemany("INSERT INTO p VALUES (?, ?)", [(k, f"label {k}") for k in range(1, 13)])
    con.commit()


def test_scans_give_sqlite3_rows_on_both_paths(path_mode: str, twin: Any) -> None:
    _load(twin.tern)
    _load(twin.lite)
    for sql in QUERIES:
        got = twin.tern.execute(sql).fetchall()
        want = twin.lite.execute(sql).fetchall()
        assert sorted(got, key=repr) == sorted(want, key=repr), sql


def test_arrow_direct_scan_on_both_paths(path_mode: str) -> None:
    pytest.importorskip("pyarrow")
    tern = terndb.connect(":memory:")
    try:
        _load(tern)
        cur = tern.execute("SELECT id, n, x, b FROM t")
        table = cur.fetch_arrow_table()
        rows = tern.execute("SELECT id, n, x, b FROM t").fetchall()
        assert list(zip(*[table.column(i).to_pylist() for i in range(4)])) == rows
    finally:
        tern.close()


def test_uncommitted_rows_are_scanned_in_their_transaction(path_mode: str) -> None:
    con = terndb.connect(":memory:")
    try:
        _load(con)
        con.execute("INSERT INTO t (id, n) VALUES (5000, 99)")
        con.execute("DELETE FROM t WHERE id <= 1000")
        assert con.execute("SELECT count(*), max(id) FROM t").fetchone() == (1001, 5000)
        assert con.execute("SELECT id FROM t WHERE id BETWEEN 999 AND 1002").fetchall() == [(1001,), (1002,)]
        # Probes inside the write transaction see its own change (no memo there).
        con.execute("UPDATE p SET label = 'changed' WHERE id = 3")
        assert con.execute("SELECT count(*) FROM t JOIN p ON p.id = t.n "
                           "WHERE p.label = 'changed'").fetchone() == (77,)
        con.rollback()
        assert con.execute("SELECT count(*), max(id) FROM t").fetchone() == (2000, 2000)
    finally:
        con.close()


# -- a py-lmdb that does not verify ---------------------------------------------------------------


def _run_child(code: str, **env: str) -> str:
    # The child decides for itself (a run with TERNDB_LMDB_C=0 must not decide for it).
    inherited = {k: v for k, v in os.environ.items() if k != "TERNDB_LMDB_C"}
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          env={**inherited, **env}, timeout=120).stdout


CHILD_QUERY = """
import terndb
from terndb._cext import _core as C
con = terndb.connect(':memory:')
con.execute('CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)')
con.executemany('INSERT INTO t VALUES (?, ?)', [(i, str(i)) for i in range(100)])
print(C.lmdb_c_status())
print(con.execute('SELECT count(*), sum(a) FROM t WHERE a >= 10').fetchone())
"""


def test_disabled_by_environment_variable_still_answers() -> None:
    out = _run_child(CHILD_QUERY, TERNDB_LMDB_C="0").splitlines()
    assert out == ["(False, 'disabled by TERNDB_LMDB_C=0')", "(90, 4905)"]


def test_an_unverified_py_lmdb_version_falls_back() -> None:
    code = "import lmdb; lmdb.__version__ = '3.1.0'\n" + CHILD_QUERY
    out = _run_child(code).splitlines()
    assert out[0].startswith("(False, 'py-lmdb 3.1.0 is not a 3.0.x release")
    assert out[1] == "(90, 4905)"
