"""Statement atomicity inside an open transaction, compared with sqlite3.

A single-row UPDATE runs without a nested LMDB transaction (the session
opens one only when a statement could fail after a partial write, see
``C.modify_many``); these scripts check that every failing statement still
leaves nothing behind while the transaction's earlier statements stay, for
single-row and multi-row UPDATEs and DELETEs.  (A failing executemany() is
one statement in terndb and leaves nothing, unlike sqlite3: see
test_transactions.py.)
"""
from __future__ import annotations

import sqlite3
from typing import Any

import pytest

import terndb

SETUP = [
    "CREATE TABLE t(id INTEGER PRIMARY KEY, u INTEGER UNIQUE, v TEXT NOT NULL, w REAL)",
    "CREATE INDEX t_w ON t(w)",
]
ROWS = [(i, i * 10, f"v{i}", i / 4) for i in range(1, 9)]

# (sql, params, many): run in order inside one transaction; failures are recorded, not raised.
SCRIPT: list[tuple[str, Any, bool]] = [
    ("INSERT INTO t VALUES (?, ?, ?, ?)", (20, 200, "new", 5.0), False),
    ("UPDATE t SET u = ? WHERE id = ?", (30, 1), False),            # unique clash: one row
    ("UPDATE t SET v = NULL WHERE id = ?", (2,), False),            # NOT NULL: one row
    ("UPDATE t SET w = w + 1, u = u + 1 WHERE id = ?", (3,), False),  # succeeds
    ("UPDATE t SET u = u + 10 WHERE id >= ?", (4,), False),         # 4 -> 50 clashes midway
    ("UPDATE t SET w = w * 2 WHERE id BETWEEN ? AND ?", (5, 6), False),  # succeeds, two rows
    ("UPDATE t SET id = ? WHERE id = ?", (8, 7), False),            # rowid clash
    ("UPDATE OR IGNORE t SET u = ? WHERE id = ?", (10, 5), False),  # ignored
    ("UPDATE OR REPLACE t SET u = ? WHERE id = ?", (10, 6), False),  # replaces row 1
    ("UPDATE t SET w = ? WHERE id = ?", [(1.5, 2), (2.5, 3), (None, 99)], True),
    ("DELETE FROM t WHERE id = ?", (8,), False),
    ("UPDATE t SET v = ? WHERE id = ?", ("", 999), False),          # no row
]


def run_script(module: Any, connection: Any) -> tuple[list, list]:
    for sql in SETUP:
        connection.execute(sql)
    connection.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", ROWS)
    connection.commit()
    outcomes = []
    for sql, params, many in SCRIPT:
        try:
            if many:
                connection.executemany(sql, params)
            else:
                connection.execute(sql, params)
            outcomes.append("ok")
        except module.IntegrityError:
            outcomes.append("IntegrityError")
    assert connection.in_transaction
    connection.commit()
    rows = connection.execute("SELECT id, u, v, w FROM t ORDER BY id").fetchall()
    by_w = connection.execute("SELECT id FROM t WHERE w > 1 ORDER BY w, id").fetchall()
    return outcomes, [tuple(r) for r in rows] + [tuple(r) for r in by_w]


def test_failing_statements_leave_nothing_like_sqlite3(tmp_path) -> None:
    lite = sqlite3.connect(str(tmp_path / "lite.db"))
    tern = terndb.connect(str(tmp_path / "tern"))
    try:
        expected = run_script(sqlite3, lite)
        assert run_script(terndb, tern) == expected
        assert "IntegrityError" in expected[0] and "ok" in expected[0]
    finally:
        lite.close()
        tern.close()


def test_failed_single_row_update_keeps_transaction_usable(tmp_path) -> None:
    con = terndb.connect(str(tmp_path / "db"))
    try:
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, u INTEGER UNIQUE)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [(1, 1), (2, 2)])
        con.commit()
        con.execute("UPDATE t SET u = 7 WHERE id = 1")
        with pytest.raises(terndb.IntegrityError):
            con.execute("UPDATE t SET u = ? WHERE id = ?", (7, 2))
        assert con.in_transaction
        con.execute("UPDATE t SET u = ? WHERE id = ?", (8, 2))
        con.rollback()
        assert con.execute("SELECT id, u FROM t ORDER BY id").fetchall() == [(1, 1), (2, 2)]
    finally:
        con.close()


def test_repeated_single_row_updates_publish_one_change_set_each_commit(tmp_path) -> None:
    """Updates without a nested transaction still reach the change set and the other readers."""
    path = str(tmp_path / "db")
    a = terndb.connect(path)
    b = terndb.connect(path)
    try:
        a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER)")
        a.executemany("INSERT INTO t VALUES (?, 0)", [(i,) for i in range(1, 51)])
        a.commit()
        for i in range(1, 51):
            a.execute("UPDATE t SET n = n + ? WHERE id = ?", (i, i))
        assert b.execute("SELECT sum(n) FROM t").fetchone() == (0,)
        a.commit()
        assert b.execute("SELECT sum(n) FROM t").fetchone() == (sum(range(1, 51)),)
    finally:
        a.close()
        b.close()


def test_map_growth_replays_single_row_updates(tmp_path) -> None:
    """A full map mid-transaction redoes the journal, single-row UPDATEs included."""
    path = str(tmp_path / "db")
    con = terndb.connect(path, map_size=1 << 20)
    try:
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, "") for i in range(1, 401)])
        con.commit()
        for i in range(1, 401):                     # ~3 MiB of new values: the map must grow
            con.execute("UPDATE t SET v = ? WHERE id = ?", ("z" * 8000 + str(i), i))
        con.execute("UPDATE t SET v = 'gone' WHERE id = ?", (999,))
        con.commit()
        assert con._db.store.map_size > 1 << 20
        assert con.execute("SELECT count(*), sum(length(v)) FROM t").fetchone() == (
            400, sum(8000 + len(str(i)) for i in range(1, 401)))
    finally:
        con.close()
