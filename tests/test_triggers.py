"""Triggers compared with sqlite3: timing, events, UPDATE OF, WHEN, NEW/OLD, RAISE, DROP."""
from __future__ import annotations

import sqlite3

import pytest

import terndb

SCHEMA = """
CREATE TABLE t(id INTEGER PRIMARY KEY, a INT, b TEXT);
CREATE TABLE log(ev TEXT, new_a INT, old_a INT);
CREATE TRIGGER ti AFTER INSERT ON t BEGIN INSERT INTO log VALUES('ins', new.a, NULL); END;
CREATE TRIGGER tu AFTER UPDATE OF a ON t FOR EACH ROW WHEN new.a <> old.a
  BEGIN INSERT INTO log VALUES('upd', new.a, old.a); END;
CREATE TRIGGER td BEFORE DELETE ON t BEGIN
  SELECT RAISE(ABORT, 'no deleting 42') WHERE old.a = 42;
  INSERT INTO log VALUES('del', NULL, old.a);
END;
CREATE TRIGGER tb BEFORE INSERT ON t WHEN new.a < 0 BEGIN SELECT RAISE(IGNORE); END;
CREATE TRIGGER tc AFTER UPDATE ON t BEGIN UPDATE log SET old_a = old_a + 1000 WHERE ev = 'upd' AND new_a = new.a; END;
"""

STEPS = [
    "INSERT INTO t(a, b) VALUES (1, 'x'), (-5, 'neg'), (42, 'y'), (7, 'z')",
    "UPDATE t SET a = a + 1 WHERE a = 1",
    "UPDATE t SET b = 'zz'",
    "DELETE FROM t WHERE a = 2",
    "DELETE FROM t WHERE a = 42",
    "DROP TRIGGER td",
    "DELETE FROM t WHERE a = 42",
]


def replay(mod) -> list:
    con = mod.connect(":memory:")
    con.executescript(SCHEMA)
    out = []
    for step in STEPS:
        try:
            con.execute(step)
            out.append("ok")
        except mod.Error as err:
            out.append(("error", str(err)))
        out.append(con.execute("SELECT * FROM t ORDER BY id").fetchall())
        out.append(con.execute("SELECT * FROM log ORDER BY rowid").fetchall())
    return out


def test_trigger_script_matches_sqlite() -> None:
    assert replay(terndb) == replay(sqlite3)


@pytest.mark.parametrize("stmt", [
    "CREATE TRIGGER ti AFTER INSERT ON t BEGIN SELECT 1; END",   # duplicate name
    "CREATE TRIGGER tx AFTER INSERT ON nope BEGIN SELECT 1; END",
    "CREATE TRIGGER tx AFTER INSERT ON t BEGIN END",
    "DROP TRIGGER nope",
])
def test_bad_trigger_statements_fail_like_sqlite(stmt: str) -> None:
    ours, ref = terndb.connect(":memory:"), sqlite3.connect(":memory:")
    ours.executescript(SCHEMA)
    ref.executescript(SCHEMA)
    with pytest.raises(sqlite3.Error):
        ref.execute(stmt)
    with pytest.raises(terndb.Error):
        ours.execute(stmt)


def test_triggers_listed_and_dropped_with_their_table() -> None:
    con = terndb.connect(":memory:")
    con.executescript(SCHEMA)
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")]
    assert names == ["tb", "tc", "td", "ti", "tu"]
    con.execute("DROP TABLE t")
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone() == (0,)


VIEW_SCHEMA = """
CREATE TABLE t(a INT, b INT);
CREATE TABLE audit(what TEXT, a INT);
CREATE VIEW v AS SELECT a, b, a + b AS s FROM t;
CREATE TRIGGER vi INSTEAD OF INSERT ON v BEGIN
  SELECT RAISE(IGNORE) WHERE new.a < 0;
  INSERT INTO t VALUES (new.a, new.b);
  INSERT INTO audit VALUES ('ins', new.a);
END;
CREATE TRIGGER vu INSTEAD OF UPDATE OF b ON v WHEN new.b IS NOT old.b BEGIN
  UPDATE t SET b = new.b WHERE a = old.a;
  INSERT INTO audit VALUES ('upd ' || old.s || '->' || (new.a + new.b), old.a);
END;
CREATE TRIGGER vd INSTEAD OF DELETE ON v BEGIN
  SELECT RAISE(ABORT, 'keep 42') WHERE old.a = 42;
  DELETE FROM t WHERE a = old.a;
  INSERT INTO audit VALUES ('del', old.a);
END;
"""

VIEW_STEPS = [
    "INSERT INTO v(a, b) VALUES (1, 10), (-1, 0), (2, 20), (42, 0)",
    "INSERT INTO v(b, a) SELECT b + 1, a + 100 FROM t WHERE a < 3",
    "UPDATE v SET b = b * 2 WHERE a > 100",
    "UPDATE v SET b = 20 WHERE a = 2",                      # WHEN false: no change
    "UPDATE v SET a = 5 WHERE a = 1",                       # no INSTEAD OF UPDATE OF a
    "DELETE FROM v WHERE a IN (SELECT a FROM t WHERE b > 30)",
    "DELETE FROM v WHERE a = 42",                           # RAISE(ABORT) undoes the statement
    "INSERT INTO v VALUES (7, 7, 0) ON CONFLICT DO NOTHING",
    "DROP VIEW v",
    "INSERT INTO v VALUES (1, 2, 3)",
]


def _replay_views(mod) -> list:
    con = mod.connect(":memory:")
    con.executescript(VIEW_SCHEMA)
    out = []
    for step in VIEW_STEPS:
        try:
            cur = con.execute(step)
            out.append(("ok", cur.rowcount))
        except mod.Error:
            out.append("error")
        out.append(con.execute("SELECT * FROM t ORDER BY a").fetchall())
        out.append(con.execute("SELECT * FROM audit ORDER BY rowid").fetchall())
        out.append(con.execute("SELECT changes(), total_changes()").fetchone())
    out.append(con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone())
    return out


def test_instead_of_triggers_make_views_writable_like_sqlite() -> None:
    assert _replay_views(terndb) == _replay_views(sqlite3)


def test_instead_of_trigger_only_on_views() -> None:
    con = terndb.connect(":memory:")
    con.executescript(VIEW_SCHEMA)
    with pytest.raises(terndb.ProgrammingError, match="INSTEAD OF trigger on table"):
        con.execute("CREATE TRIGGER x INSTEAD OF INSERT ON t BEGIN SELECT 1; END")
    with pytest.raises(terndb.ProgrammingError, match="on view"):
        con.execute("CREATE TRIGGER x AFTER INSERT ON v BEGIN SELECT 1; END")
