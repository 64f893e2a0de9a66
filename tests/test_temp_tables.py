"""Temporary tables, views, indexes and triggers belong to the connection that created them (as in SQLite).

Single-connection behaviour is compared with sqlite3; privacy, lifetime
(close, a killed process), rollback and replication are checked directly.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import sqlalchemy as sa

import terndb
from terndb._cext import _core as C


def _rows(con: Any, sql: str, params: tuple = ()) -> list:
    return con.execute(sql, params).fetchall()


def _both(tern: Any, lite: sqlite3.Connection, sql: str) -> None:
    """Runs ``sql`` on both; the results (or the error's presence) must agree."""
    try:
        expected = lite.execute(sql).fetchall()
    except sqlite3.Error:
        with pytest.raises(terndb.Error):
            tern.execute(sql).fetchall()
        return
    cur = tern.execute(sql)
    assert (cur.fetchall() if cur.description is not None else []) == expected, sql


def _binlog_entries(con: Any) -> list:
    db = con._db
    with db.store.begin_read() as r:
        return [e for _, cs in db.binlog.read(r.txn, 0) for e in cs.entries]


SINGLE_CONNECTION_SCRIPT = [
    "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)",
    "INSERT INTO t VALUES (1, 'main')",
    "CREATE TEMP TABLE t(x, y)",                       # shadows main.t
    "INSERT INTO t VALUES (10, 'temp')",
    "SELECT * FROM t",
    "SELECT * FROM main.t",
    "SELECT * FROM temp.t",
    "CREATE TEMPORARY TABLE u(k TEXT UNIQUE, v)",
    "CREATE INDEX u_v ON u(v)",
    "INSERT INTO u VALUES ('a', 1), ('b', 2)",
    "INSERT INTO u VALUES ('a', 3)",                   # UNIQUE violation on a temp table
    "CREATE TABLE temp.w(q)",
    "CREATE TEMP VIEW tv AS SELECT x, (SELECT b FROM main.t) AS b FROM t",
    "SELECT * FROM tv",
    "CREATE TABLE log(msg)",
    "CREATE TEMP TRIGGER u_ins AFTER INSERT ON u BEGIN INSERT INTO log VALUES (new.k); END",
    "INSERT INTO u VALUES ('c', 3)",
    "SELECT * FROM log",
    "SELECT k, v FROM u WHERE v >= 2 ORDER BY k",
    "SELECT type, name, tbl_name, sql FROM sqlite_temp_master ORDER BY type, name",
    "SELECT type, name FROM temp.sqlite_master ORDER BY type, name",
    "SELECT type, name FROM sqlite_master ORDER BY type, name",
    "UPDATE t SET y = 'changed'",
    "DELETE FROM main.t",
    "SELECT * FROM t",
    "SELECT count(*) FROM main.t",
    "DROP TABLE t",                                    # the temp one
    "SELECT * FROM t",                                 # main.t again (now empty)
    "DROP TABLE temp.t",
    "ALTER TABLE u ADD COLUMN extra DEFAULT 7",
    "SELECT * FROM u ORDER BY k",
    "CREATE TEMP TABLE copy AS SELECT k, v FROM u",
    "SELECT * FROM copy ORDER BY k",
    "SELECT name FROM sqlite_temp_master WHERE type = 'table' ORDER BY name",
    "CREATE TEMP TABLE main.bad(x)",
]


def test_single_connection_behaviour_matches_sqlite(tmp_path: Any) -> None:
    tern = terndb.connect(str(tmp_path / "db"), isolation_level=None)
    lite = sqlite3.connect(":memory:", isolation_level=None)
    for sql in SINGLE_CONNECTION_SCRIPT:
        _both(tern, lite, sql)
    tern.close()


def test_other_connections_do_not_see_temp_objects(tmp_path: Any) -> None:
    path = str(tmp_path / "db")
    a, b = terndb.connect(path), terndb.connect(path)
    a.execute("CREATE TABLE t(x)")
    a.execute("INSERT INTO t VALUES ('main')")
    a.commit()
    a.execute("CREATE TEMP TABLE t(x)")
    a.execute("CREATE TEMP VIEW v AS SELECT 1")
    a.execute("INSERT INTO t VALUES ('a-temp')")
    a.commit()
    b.execute("CREATE TEMP TABLE t(x)")                # the same name in another connection
    b.execute("INSERT INTO t VALUES ('b-temp')")
    b.commit()
    assert _rows(a, "SELECT x FROM t") == [("a-temp",)]
    assert _rows(b, "SELECT x FROM t") == [("b-temp",)]
    assert _rows(b, "SELECT x FROM main.t") == [("main",)]
    with pytest.raises(terndb.Error, match="no such table: v"):
        b.execute("SELECT * FROM v")
    assert _rows(b, "SELECT name FROM sqlite_temp_master ORDER BY name") == [("t",)]
    assert _rows(a, "SELECT name FROM sqlite_temp_master ORDER BY name") == [("t",), ("v",)]
    assert _rows(a, "SELECT name FROM sqlite_master") == [("t",)]
    a.close()
    b.close()


def test_temp_objects_are_dropped_on_close_and_absent_after_reopen(tmp_path: Any) -> None:
    path = str(tmp_path / "db")
    keep = terndb.connect(path)                        # keeps the environment open across the close
    a = terndb.connect(path)
    a.execute("CREATE TEMP TABLE scratch(x)")
    a.execute("INSERT INTO scratch VALUES (1)")
    a.commit()
    a.close()
    b = terndb.connect(path)
    b.execute("CREATE TEMP TABLE scratch(y)")          # the name is free again
    b.close()
    keep.close()
    c = terndb.connect(path)
    assert _rows(c, "SELECT count(*) FROM sqlite_temp_master") == [(0,)]
    assert c._session.db.catalog.load(c._db.store.begin_read().txn).temp_owners() == set()
    c.close()


def test_rollback_undoes_temp_changes(tmp_path: Any) -> None:
    con = terndb.connect(str(tmp_path / "db"))
    lite = sqlite3.connect(":memory:")
    for c in (con, lite):
        c.execute("CREATE TEMP TABLE t(x)")
        c.execute("INSERT INTO t VALUES (1)")
        c.commit()
        c.execute("INSERT INTO t VALUES (2)")
        c.rollback()
    assert _rows(con, "SELECT * FROM t") == lite.execute("SELECT * FROM t").fetchall() == [(1,)]
    con.execute("BEGIN")
    con.execute("CREATE TEMP TABLE gone(x)")
    con.execute("INSERT INTO gone VALUES (1)")
    con.execute("SAVEPOINT s")
    con.execute("INSERT INTO t VALUES (3)")
    con.execute("ROLLBACK TO s")
    assert _rows(con, "SELECT * FROM t") == [(1,)]
    con.rollback()
    with pytest.raises(terndb.Error, match="no such table: gone"):
        con.execute("SELECT * FROM gone")
    con.close()


def test_temp_tables_are_not_replicated(tmp_path: Any) -> None:
    con = terndb.connect(str(tmp_path / "db"))
    con.execute("CREATE TABLE kept(id INTEGER PRIMARY KEY, v)")
    con.execute("CREATE TEMP TABLE tmp(id INTEGER PRIMARY KEY, v)")
    con.execute("CREATE TEMP TRIGGER tr AFTER INSERT ON tmp BEGIN INSERT INTO kept VALUES (new.id, new.v); END")
    con.execute("INSERT INTO tmp VALUES (1, 'x')")     # the trigger's write to kept is replicated
    con.execute("UPDATE tmp SET v = 'y'")
    con.execute("ALTER TABLE tmp ADD COLUMN w")
    con.execute("DROP TABLE tmp")
    con.commit()
    tmp_ids = set()
    entries = _binlog_entries(con)
    kept_id = _rows(con, "SELECT rootpage FROM sqlite_master WHERE name = 'kept'")[0][0]
    for e in entries:
        if e.op == C.CHANGE_OP_DDL:
            payload = json.loads(e.row)
            assert payload.get("name") in ("kept",), payload
        elif e.table_id != kept_id:
            tmp_ids.add(e.table_id)
    assert tmp_ids == set()
    assert [e.op for e in entries if e.op != C.CHANGE_OP_DDL] == [C.CHANGE_OP_INSERT]
    con.close()


CRASHING_CHILD = textwrap.dedent("""
    import os, sys, terndb
    con = terndb.connect(sys.argv[1])
    con.execute("CREATE TEMP TABLE orphan(x)")
    con.execute("INSERT INTO orphan VALUES (1)")
    con.commit()
    print("ready", flush=True)
    os.kill(os.getpid(), 9)
""")


def test_leftovers_of_a_killed_process_are_dropped_on_next_open(tmp_path: Any) -> None:
    path = str(tmp_path / "db")
    terndb.connect(path).close()
    proc = subprocess.run([sys.executable, "-c", CRASHING_CHILD, path], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))
    assert proc.stdout.strip() == "ready" and proc.returncode == -9, proc.stderr
    con = terndb.connect(path)
    db = con._db
    with db.store.begin_read() as r:
        schema = db.catalog.load(r.txn)
    assert schema.temp_owners() == set()
    assert not any(t.name == "orphan" for t in schema.tables.values())
    con.close()


def test_live_owner_in_another_process_keeps_its_objects(tmp_path: Any) -> None:
    path = str(tmp_path / "db")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, terndb
        con = terndb.connect(sys.argv[1])
        con.execute("CREATE TEMP TABLE mine(x)")
        con.commit()
        print("ready", flush=True)
        sys.stdin.readline()
        print(con.execute("SELECT count(*) FROM mine").fetchone()[0], flush=True)
        con.close()
    """), path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert child.stdout.readline().strip() == "ready"
        other = terndb.connect(path)                   # its open must not take the child's table
        other.close()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "0"
    finally:
        child.wait(timeout=60)
    assert child.returncode == 0


def test_sqlalchemy_reflects_temp_tables_and_views(tmp_path: Any) -> None:
    engine = sa.create_engine(f"terndb:///{tmp_path}/db", poolclass=sa.pool.StaticPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE plain(a)")
        conn.exec_driver_sql("CREATE TEMP TABLE tt(id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL)")
        conn.exec_driver_sql("CREATE INDEX tt_name ON tt(name)")
        conn.exec_driver_sql("CREATE TEMP VIEW tv AS SELECT name FROM tt")
    with engine.connect() as conn:
        insp = sa.inspect(conn)
        assert insp.get_temp_table_names() == ["tt"]
        assert insp.get_temp_view_names() == ["tv"]
        assert insp.get_table_names() == ["plain"]
        assert insp.get_view_names() == []
        assert [c["name"] for c in insp.get_columns("tt")] == ["id", "name"]
        assert [i["name"] for i in insp.get_indexes("tt")] == ["tt_name"]
        assert insp.has_table("tt")
    other = terndb.connect(f"{tmp_path}/db")
    assert _rows(other, "SELECT name FROM sqlite_temp_master") == []
    other.close()
    engine.dispose()


# -- TEMP triggers on main tables ----------------------------------------------------------------

TEMP_TRIGGER_SCRIPT = [
    "CREATE TABLE t(x)",
    "CREATE TABLE log(what, x)",
    "CREATE VIEW v AS SELECT x FROM t",
    "CREATE TEMP TRIGGER ins AFTER INSERT ON t BEGIN INSERT INTO log VALUES ('ins', new.x); END",
    "CREATE TEMP TRIGGER del BEFORE DELETE ON main.t WHEN old.x > 1 BEGIN INSERT INTO log VALUES ('del', old.x); END",
    "CREATE TEMP TRIGGER vi INSTEAD OF INSERT ON v BEGIN INSERT INTO t VALUES (new.x * 100); END",
    "CREATE TRIGGER ins AFTER UPDATE ON t BEGIN INSERT INTO log VALUES ('upd', new.x); END",   # main may reuse the name
    "CREATE TEMP TRIGGER ins AFTER UPDATE ON t BEGIN SELECT 1; END",                          # temp may not
    "CREATE TEMP TRIGGER main.q AFTER INSERT ON t BEGIN SELECT 1; END",
    "CREATE TEMP TRIGGER temp.q AFTER INSERT ON t BEGIN SELECT 1; END",
    "CREATE TEMP TRIGGER q AFTER INSERT ON nosuch BEGIN SELECT 1; END",
    "INSERT INTO t VALUES (1), (2)",
    "INSERT INTO v VALUES (3)",
    "UPDATE t SET x = x + 1 WHERE x = 1",
    "DELETE FROM t WHERE x <= 2",
    "SELECT * FROM log ORDER BY rowid",
    "SELECT type, name, tbl_name FROM sqlite_temp_master ORDER BY name",
    "SELECT type, name, tbl_name FROM sqlite_master WHERE type = 'trigger'",
    "DROP TRIGGER temp.ins",
    "INSERT INTO t VALUES (4)",
    "DROP TABLE t",                                    # takes its temp triggers along
    "CREATE TABLE t(x)",
    "INSERT INTO t VALUES (5)",
    "DELETE FROM t",
    "SELECT * FROM log ORDER BY rowid",
    "SELECT type, name FROM sqlite_temp_master ORDER BY name",
]


def test_temp_triggers_on_main_tables_match_sqlite(tmp_path: Any) -> None:
    tern = terndb.connect(str(tmp_path / "db"), isolation_level=None)
    lite = sqlite3.connect(":memory:", isolation_level=None)
    for sql in TEMP_TRIGGER_SCRIPT:
        _both(tern, lite, sql)
    tern.close()


def test_a_temp_trigger_on_a_main_table_fires_for_its_connection_only(tmp_path: Any) -> None:
    path = str(tmp_path / "db")
    keep = terndb.connect(path)                        # keeps the environment open across a's close
    a, b = terndb.connect(path), terndb.connect(path)
    a.execute("CREATE TABLE t(x)")
    a.execute("CREATE TABLE log(who, x)")
    a.execute("CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES ('a', new.x); END")
    a.commit()
    a.execute("INSERT INTO t VALUES (1)")
    a.commit()
    b.execute("INSERT INTO t VALUES (2)")
    b.commit()
    assert _rows(b, "SELECT * FROM log") == [("a", 1)]
    assert _rows(b, "SELECT count(*) FROM sqlite_temp_master") == [(0,)]
    with pytest.raises(terndb.Error, match="no such trigger: tr"):
        b.execute("DROP TRIGGER tr")
    b.rollback()
    # b may make its own trigger of the same name on the same table.
    b.execute("CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES ('b', new.x); END")
    b.commit()
    a.execute("INSERT INTO t VALUES (3)")
    a.commit()
    b.execute("INSERT INTO t VALUES (4)")
    b.commit()
    a.close()                                          # a's trigger goes with it; b's stays
    b.execute("INSERT INTO t VALUES (5)")
    b.commit()
    c = terndb.connect(path)
    c.execute("INSERT INTO t VALUES (6)")
    c.commit()
    assert _rows(c, "SELECT * FROM log ORDER BY rowid") == [("a", 1), ("a", 3), ("b", 4), ("b", 5)]
    for con in (b, c, keep):
        con.close()


def test_temp_triggers_are_rolled_back_and_not_replicated(tmp_path: Any) -> None:
    con = terndb.connect(str(tmp_path / "db"))
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.execute("BEGIN")
    con.execute("CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END")
    con.rollback()
    assert _rows(con, "SELECT count(*) FROM sqlite_temp_master") == [(0,)]
    con.execute("CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END")
    con.commit()
    ddl = [json.loads(e.row) for e in _binlog_entries(con) if e.op == C.CHANGE_OP_DDL]
    assert [d["op"] for d in ddl] == ["create_table"]
    con.close()
