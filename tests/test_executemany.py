"""executemany of ``INSERT ... VALUES``: the compiled loop (``C.insert_many``) against sqlite3.

The loop reads bare ``?`` parameters straight into the row's stored values
(with column affinity), encodes the record into the writer's scratch buffer
and hands that buffer to LMDB and to the change set.  These tests check,
on the C LMDB path and on py-lmdb's Python API, that what it stores equals
what sqlite3 stores for the same SQL (values and their types), that
parameters needing adaptation, columns computed from expressions, defaults
and generated columns, rowid allocation in and out of order, and every
constraint still behave as in sqlite3, that a failing row leaves the
database consistent, and that the binlog records exactly the stored rows.
"""
from __future__ import annotations

import decimal
import math
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

import terndb
from terndb._cext import _core as C
from terndb.engine.integrity import check_database

@pytest.fixture
def pair(tmp_path, path_mode) -> Iterator[tuple[Any, sqlite3.Connection]]:
    """A terndb connection and an in-memory sqlite3 one, to run the same SQL on both."""
    ours = terndb.connect(str(tmp_path / "db"))
    theirs = sqlite3.connect(":memory:")
    yield ours, theirs
    ours.close()
    theirs.close()


def _canon(value: Any) -> Any:
    """Floats by repr, so -0.0 and 0.0 (and NaN) count as different values."""
    return ("float", repr(value)) if isinstance(value, float) else value


def _rows(con: Any, sql: str) -> list[tuple]:
    return [tuple(_canon(v) for v in row) for row in con.execute(sql).fetchall()]


def _both(pair: tuple, *statements: str, many: tuple[str, list] | None = None) -> None:
    for con in pair:
        for sql in statements:
            con.execute(sql)
        if many is not None:
            con.executemany(*many)
        con.commit()


def _same(pair: tuple, sql: str) -> list[tuple]:
    ours, theirs = pair
    expected = _rows(theirs, sql)
    assert _rows(ours, sql) == expected
    return expected


def _consistent(con: Any) -> None:
    report = check_database(con._db)
    assert report.ok, report.problems


AFFINITY_TABLE = "CREATE TABLE t(id INTEGER PRIMARY KEY, i INTEGER, r REAL, n NUMERIC, s TEXT, b BLOB, x)"
TYPED_SELECT = ("SELECT id, i, typeof(i), r, typeof(r), n, typeof(n), s, typeof(s), "
                "b, typeof(b), x, typeof(x) FROM t ORDER BY id")

# Every native parameter type into every affinity, with the edge cases of each
# conversion: signed zeros, integral and huge reals, numeric and padded text.
AFFINITY_VALUES = [0, 1, -1, 2**62, -2**63, 2**63 - 1, 0.0, -0.0, 3.0, 2.5, -7.25, 1e300,
                   float("inf"), float("-inf"), float("nan"), 9007199254740993.0,
                   "12", "-4", "1.5", "1e3", " 7", "abc", "", "0x10",
                   b"", b"\x00\xff", b"12", None]


def test_every_native_type_into_every_affinity(pair) -> None:
    rows = [(k + 1, v, v, v, v, v, v) for k, v in enumerate(AFFINITY_VALUES)]
    _both(pair, AFFINITY_TABLE, many=("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", rows))
    assert len(_same(pair, TYPED_SELECT)) == len(rows)
    _consistent(pair[0])


def test_parameters_that_need_adapting(pair) -> None:
    """Lists, bools, Decimals and ints in a list (not a tuple) go through the binder."""
    rows: list[Any] = [[1, True, False, 2, "a", b"b", None],
                       (2, False, 1.0, True, "x", memoryview(b"mv"), 5),
                       [3, 7, 8.5, 9, 10, bytearray(b"ba"), "z"]]
    _both(pair, AFFINITY_TABLE, many=("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", rows))
    _same(pair, TYPED_SELECT)
    ours, _ = pair
    ours.executemany("INSERT INTO t(id, n) VALUES (?, ?)", [(4, decimal.Decimal("1.25"))])
    assert ours.execute("SELECT n, typeof(n) FROM t WHERE id = 4").fetchone() == (1.25, "real")


def test_columns_in_another_order_with_expressions_defaults_and_literals(pair) -> None:
    create = ("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT DEFAULT 'dflt', b INTEGER, "
              "c REAL, d TEXT, e INTEGER DEFAULT 42)")
    sql = "INSERT INTO t(d, id, c, b) VALUES (?, ?, ? * 2, 'lit')"
    rows = [("d1", 1, 1.5), ("d2", 2, 3), (None, 3, "4"), ("d4", 4, None)]
    _both(pair, create, many=(sql, rows))
    _same(pair, "SELECT id, a, b, typeof(b), c, typeof(c), d, e FROM t ORDER BY id")


def test_named_and_numbered_parameters(pair) -> None:
    create = "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b, c)"
    _both(pair, create, many=("INSERT INTO t VALUES (:k, :v, :v, :w)",
                              [{"k": 1, "v": "x", "w": 2.5}, {"k": 2, "v": 3, "w": None}]))
    _both(pair, many=("INSERT INTO t VALUES (?1 + 10, ?2, ?1, ?2)", [(1, "y"), (2, 4.0)]))
    _same(pair, "SELECT id, a, typeof(a), b, c, typeof(c) FROM t ORDER BY id")


def test_rowids_allocated_given_and_out_of_order(pair) -> None:
    create = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"
    rows = [(None, "a"), (10, "b"), (None, "c"), (5, "d"), (None, "e"), (-3, "f"), ("20", "g"),
            (None, "h"), (7.0, "i")]
    _both(pair, create, many=("INSERT INTO t VALUES (?, ?)", rows))
    _same(pair, "SELECT id, v FROM t ORDER BY id")
    # A table without an INTEGER PRIMARY KEY: the hidden rowid is allocated.
    _both(pair, "CREATE TABLE h(a, b)", many=("INSERT INTO h VALUES (?, ?)", [(1, 2), (3, 4)]))
    _same(pair, "SELECT rowid, a, b FROM h ORDER BY rowid")
    _consistent(pair[0])


def test_generated_columns(pair) -> None:
    create = ("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, "
              "c INTEGER GENERATED ALWAYS AS (a * 2) STORED, d TEXT AS (b || '!'))")
    _both(pair, create, many=("INSERT INTO t(id, a, b) VALUES (?, ?, ?)",
                              [(1, 3, "x"), (2, "4", "y"), (3, None, None)]))
    _same(pair, "SELECT id, a, b, c, typeof(c), d FROM t ORDER BY id")


@pytest.mark.parametrize("conflict", ["OR IGNORE", "OR REPLACE"])
def test_conflicts_on_the_rowid_and_a_unique_index(pair, conflict: str) -> None:
    create = "CREATE TABLE t(id INTEGER PRIMARY KEY, u TEXT UNIQUE, v INTEGER)"
    rows = [(1, "a", 1), (2, "b", 2), (1, "c", 3), (3, "a", 4), (4, "d", 5), (4, "d", 6)]
    _both(pair, create, "CREATE INDEX t_v ON t(v)",
          many=(f"INSERT {conflict} INTO t VALUES (?, ?, ?)", rows))
    _same(pair, "SELECT id, u, v FROM t ORDER BY id")
    _same(pair, "SELECT id FROM t WHERE v >= 3 ORDER BY v")
    _consistent(pair[0])


@pytest.mark.parametrize("create,rows,message", [
    ("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT NOT NULL)",
     [(1, "x"), (2, None)], "NOT NULL constraint failed: t.a"),
    ("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER CHECK (a > 0))",
     [(1, 5), (2, -1)], "CHECK constraint failed"),
    ("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT UNIQUE)",
     [(1, "x"), (2, "x")], "UNIQUE constraint failed: t.a"),
    ("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT)",
     [(1, "x"), (1, "y")], "UNIQUE constraint failed: t.id"),
    ("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT)",
     [(1, "x"), ("one", "y")], "datatype mismatch"),
])
def test_a_failing_row_raises_and_leaves_the_database_consistent(pair, create, rows, message) -> None:
    ours, theirs = pair
    _both(pair, create)
    with pytest.raises(sqlite3.IntegrityError) as theirs_err:
        theirs.executemany("INSERT INTO t VALUES (?, ?)", rows)
    with pytest.raises(terndb.IntegrityError) as ours_err:
        ours.executemany("INSERT INTO t VALUES (?, ?)", rows)
    assert message in str(ours_err.value) and message in str(theirs_err.value)
    ours.rollback()
    assert ours.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
    # The same writer keeps working after the failure.
    ours.executemany("INSERT INTO t VALUES (?, ?)", rows[:1])
    ours.commit()
    assert ours.execute("SELECT id FROM t").fetchall() == [(1,)]
    _consistent(ours)


def test_a_value_that_cannot_be_stored_is_a_terndb_error(pair) -> None:
    ours, _ = pair
    ours.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a)")
    with pytest.raises(terndb.Error):
        ours.executemany("INSERT INTO t VALUES (?, ?)", [(1, 2), (2, object())])
    with pytest.raises(terndb.Error):
        ours.executemany("INSERT INTO t VALUES (?, ?)", [(3, 2**64)])
    with pytest.raises(terndb.ProgrammingError):
        ours.executemany("INSERT INTO t VALUES (?, ?)", [(4, 1, 2)])
    ours.rollback()
    _consistent(ours)


def test_the_binlog_holds_exactly_the_stored_rows(pair) -> None:
    ours, _ = pair
    ours.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, x REAL, a TEXT, b BLOB)")
    ours.execute("CREATE TABLE k(name TEXT PRIMARY KEY, v)")
    ours.commit()
    db = ours._db
    with db.store.begin_read() as r:
        start = db.binlog.last_sequence(r.txn)
    rows = [(i, i % 7, i * 0.5, f"w{i}" * (i % 40), bytes(range(i % 9))) for i in range(1, 301)]
    ours.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    ours.executemany("INSERT INTO k VALUES (?, ?)", [("b", 1), ("a", "2")])
    ours.commit()
    with db.store.begin_read() as r:
        (changeset,) = [cs for _, cs in db.binlog.read(r.txn, start)]
    entries = changeset.entries
    assert len(entries) == 302
    stored = ours.execute("SELECT id, n, x, a, b FROM t ORDER BY id").fetchall()
    for entry, row in zip(entries[:300], stored):
        assert entry.op == C.CHANGE_OP_INSERT
        assert entry.pk_key == C.encode_key((row[0],))
        assert C.decode_row(entry.row, 5, None) == row
    assert [e.pk_key for e in entries[300:]] == [C.encode_key(("b",)), C.encode_key(("a",))]
    assert [C.decode_row(e.row, 2, None) for e in entries[300:]] == [("b", 1), ("a", "2")]


def test_real_affinity_keeps_the_value_and_clears_the_sign_of_zero() -> None:
    """The REAL fast path of apply_affinity against the general rule it shortcuts."""
    for value in (0.0, -0.0, 1.0, -3.0, 2.5, 1e300, -1e-300, math.inf, -math.inf, 2.0**63, -2.0**63):
        got = C.apply_affinity(value, C.AFF_REAL)
        assert type(got) is float and repr(got) == repr(value + 0.0)
    assert math.isnan(C.apply_affinity(math.nan, C.AFF_REAL))
