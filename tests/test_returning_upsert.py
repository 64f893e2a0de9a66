"""RETURNING and UPSERT (ON CONFLICT ... DO NOTHING / DO UPDATE), compared with sqlite3."""
from __future__ import annotations

import sqlite3

import pytest

import terndb

SCRIPT = [
    "INSERT INTO t(a,b,u) VALUES(1,2,'x'),(2,5,'y') RETURNING a, b*2 AS bb",
    "INSERT INTO t(a,b,u) VALUES(1,3,'z') ON CONFLICT(a) DO UPDATE SET b=excluded.b+t.b WHERE t.b < 10 RETURNING *",
    "INSERT INTO t(a,b,u) VALUES(1,3,'z') ON CONFLICT(a) DO UPDATE SET b=excluded.b WHERE t.b > 100 RETURNING *",
    "INSERT INTO t(a,b,u) VALUES(9,3,'y') ON CONFLICT(u) DO UPDATE SET b=b+100 RETURNING a,b,u",
    "INSERT INTO t VALUES(1,2,'q') ON CONFLICT DO NOTHING RETURNING a",
    "INSERT INTO t(b,u) VALUES(7,'w') RETURNING a, typeof(a)",
    "UPDATE t SET b=b+1 WHERE a>=1 RETURNING a, b",
    "DELETE FROM t WHERE a=2 RETURNING rowid, u",
    "DELETE FROM t WHERE a=99 RETURNING *",
    "SELECT * FROM t ORDER BY a",
]


def replay(mod) -> list:
    con = mod.connect(":memory:")
    con.execute("CREATE TABLE t(a INTEGER PRIMARY KEY, b INT, u TEXT UNIQUE)")
    out = []
    for sql in SCRIPT:
        cur = con.execute(sql)
        out.append(([d[0] for d in cur.description] if cur.description else None, sorted(cur.fetchall())))
    out.append(con.total_changes)
    return out


def test_script_matches_sqlite() -> None:
    assert replay(terndb) == replay(sqlite3)


def test_upsert_on_unique_conflict_in_executemany() -> None:
    for mod in (terndb, sqlite3):
        con = mod.connect(":memory:")
        con.execute("CREATE TABLE kv(k TEXT PRIMARY KEY, v INT)")
        con.executemany("INSERT INTO kv VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v",
                        [("a", 1), ("b", 2), ("a", 10), ("a", 100)])
        assert con.execute("SELECT * FROM kv ORDER BY k").fetchall() == [("a", 111), ("b", 2)]


def test_upsert_update_can_still_violate_other_constraints() -> None:
    con = terndb.connect(":memory:")
    con.execute("CREATE TABLE t(a INTEGER PRIMARY KEY, u TEXT UNIQUE)")
    con.execute("INSERT INTO t VALUES (1, 'x'), (2, 'y')")
    with pytest.raises(terndb.UniqueViolation):
        con.execute("INSERT INTO t VALUES (1, 'z') ON CONFLICT(a) DO UPDATE SET u = 'y'")
    assert con.execute("SELECT * FROM t ORDER BY a").fetchall() == [(1, "x"), (2, "y")]
