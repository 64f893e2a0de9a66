"""Engine mechanisms seen through the public API: plan cache, map growth, temp databases."""
from __future__ import annotations

import os

import pytest

import terndb
from terndb.engine import session as session_module


def test_repeated_statement_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    con = terndb.connect(":memory:")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t(v) VALUES (?)", [("a",), ("b",)])
    sql = "SELECT v FROM t WHERE id = ?"
    assert con.execute(sql, (1,)).fetchall() == [("a",)]
    calls = []
    real = session_module.parse_one
    monkeypatch.setattr(session_module, "parse_one", lambda text: calls.append(text) or real(text))
    for i in (1, 2, 1):
        con.execute(sql, (i,)).fetchall()
    assert calls == []                       # cached plan, no parsing or planning
    con.execute("CREATE INDEX iv ON t(v)")   # schema change: the plan is rebuilt once
    assert con.execute(sql, (2,)).fetchall() == [("b",)]
    assert calls == ["CREATE INDEX iv ON t(v)", "SELECT v FROM t WHERE id = :__s0"]
    con.close()


def test_map_grows_instead_of_failing(tmp_path) -> None:
    path = str(tmp_path / "db")
    con = terndb.connect(path, map_size=1 << 20)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE INDEX iv ON t(v)")
    rows = [("x" * 200 + str(i),) for i in range(8000)]
    con.executemany("INSERT INTO t(v) VALUES (?)", rows)   # far more than 1 MiB
    con.commit()
    con.execute("BEGIN")
    for i in range(100):                                    # growth inside an explicit txn
        con.execute("INSERT INTO t(v) VALUES (?)", ("y" * 300 + str(i),))
    con.execute("COMMIT")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (8100,)
    assert con._db.store.map_size > 1 << 20
    con.close()
    again = terndb.connect(path)
    assert again.execute("SELECT count(*) FROM t WHERE v LIKE 'y%'").fetchone() == (100,)
    again.close()


def test_memory_database_is_removed_on_close() -> None:
    con = terndb.connect(":memory:")
    path = con.path
    con.execute("CREATE TABLE t(a)")
    assert os.path.isdir(path)
    con.close()
    assert not os.path.exists(path)


def test_statement_atomicity_keeps_earlier_statements() -> None:
    con = terndb.connect(":memory:")
    con.execute("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT NOT NULL)")
    con.execute("INSERT INTO t VALUES (1, 'one')")
    with pytest.raises(terndb.NotNullViolation, match="t.b"):
        con.execute("INSERT INTO t VALUES (2, 'two'), (3, NULL)")
    assert con.in_transaction
    con.commit()
    assert con.execute("SELECT a FROM t").fetchall() == [(1,)]
