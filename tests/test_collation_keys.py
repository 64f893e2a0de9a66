"""Collated index keys (engine/collation.py): uniqueness, conflict handling and
index searches under NOCASE / RTRIM, compared with sqlite3; indexes written
before keys were folded, and REINDEX."""
from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import terndb


@pytest.fixture
def con(tcon: Any) -> Any:
    return tcon


def _outcome(con: Any, sql: str, params: tuple = ()) -> Any:
    """What a statement did: its rows, None for no result set, or "IntegrityError"/"error: <class>"."""
    try:
        cur = con.execute(sql, params)
        return cur.fetchall() if cur.description else None
    except (sqlite3.IntegrityError, terndb.IntegrityError):
        return "IntegrityError"
    except (sqlite3.Error, terndb.Error) as exc:
        return f"error: {type(exc).__name__}"


def _same_as_sqlite(tcon: Any, statements: list[tuple[str, tuple]], table: str = "t") -> None:
    scon = sqlite3.connect(":memory:")
    for sql, params in statements:
        want, got = _outcome(scon, sql, params), _outcome(tcon, sql, params)
        if isinstance(want, list) and isinstance(got, list):
            want, got = sorted(want, key=repr), sorted(got, key=repr)
        assert got == want, sql
    final = f"SELECT * FROM {table}"
    assert sorted(tcon.execute(final).fetchall(), key=repr) == sorted(scon.execute(final).fetchall(), key=repr)


def _script(text: str) -> list[tuple[str, tuple]]:
    return [(s.strip(), ()) for s in text.split(";") if s.strip()]


CASES = {
    "unique column NOCASE": """
        CREATE TABLE t(a TEXT COLLATE NOCASE UNIQUE, n);
        INSERT INTO t VALUES('a', 1); INSERT INTO t VALUES('A', 2); INSERT INTO t VALUES('b', 3);
        INSERT OR IGNORE INTO t VALUES('B', 4); INSERT OR REPLACE INTO t VALUES('B', 5);
        INSERT INTO t VALUES('A', 6) ON CONFLICT(a) DO UPDATE SET n = excluded.n * 10;
        INSERT INTO t VALUES('c', 7); UPDATE t SET a = 'C' WHERE a = 'a'; UPDATE OR REPLACE t SET a = 'C' WHERE n = 60""",
    "primary key NOCASE": """
        CREATE TABLE t(k TEXT COLLATE NOCASE PRIMARY KEY, v);
        INSERT INTO t VALUES('Key', 1); INSERT INTO t VALUES('KEY', 2); REPLACE INTO t VALUES('kEy', 3);
        INSERT INTO t VALUES('KEY', 4) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v""",
    "without rowid primary key NOCASE": """
        CREATE TABLE t(k TEXT COLLATE NOCASE PRIMARY KEY, v) WITHOUT ROWID;
        INSERT INTO t VALUES('x', 1); INSERT INTO t VALUES('X', 2); INSERT OR IGNORE INTO t VALUES('X', 3);
        INSERT INTO t VALUES('Y', 4); INSERT INTO t VALUES('y', 5) ON CONFLICT(k) DO UPDATE SET v = 50;
        SELECT * FROM t WHERE k = 'X'; SELECT * FROM t ORDER BY k""",
    "unique index COLLATE NOCASE on a binary column": """
        CREATE TABLE t(a, b TEXT); CREATE UNIQUE INDEX tb ON t(b COLLATE NOCASE);
        INSERT INTO t VALUES(1, 'q'); INSERT INTO t VALUES(2, 'Q'); INSERT INTO t VALUES(3, 'Qr');
        UPDATE t SET b = 'QR' WHERE a = 3; UPDATE t SET b = 'q' WHERE a = 3""",
    "RTRIM primary key": """
        CREATE TABLE t(a TEXT COLLATE RTRIM PRIMARY KEY); INSERT INTO t VALUES('a');
        INSERT INTO t VALUES('a  '); INSERT INTO t VALUES(' a'); INSERT OR REPLACE INTO t VALUES('a ')""",
    "multi-column unique with one collated part": """
        CREATE TABLE t(a, b TEXT); CREATE UNIQUE INDEX ab ON t(a, b COLLATE NOCASE);
        INSERT INTO t VALUES(1, 'q'), (2, 'Q'); INSERT INTO t VALUES(1, 'Q'); INSERT INTO t VALUES(1, 'q ');
        UPDATE t SET a = 1 WHERE a = 2""",
    "creating a unique index over collation-equal rows fails": """
        CREATE TABLE t(a TEXT); INSERT INTO t VALUES('a'), ('A');
        CREATE UNIQUE INDEX ta ON t(a COLLATE NOCASE); CREATE UNIQUE INDEX ta2 ON t(a)""",
    "NOCASE folds ASCII only": """
        CREATE TABLE t(a TEXT COLLATE NOCASE UNIQUE); INSERT INTO t VALUES('é'); INSERT INTO t VALUES('É');
        INSERT INTO t VALUES('Straße'); INSERT INTO t VALUES('STRAßE'); INSERT INTO t VALUES(1); INSERT INTO t VALUES('1')""",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_uniqueness_and_conflicts_under_collation_match_sqlite(con: Any, name: str) -> None:
    _same_as_sqlite(con, _script(CASES[name]))


SEARCHES = """
    CREATE TABLE t(a TEXT COLLATE NOCASE UNIQUE, b TEXT, c TEXT COLLATE RTRIM, d);
    CREATE INDEX tb ON t(b COLLATE NOCASE); CREATE INDEX tc ON t(c); CREATE INDEX tbd ON t(d, b COLLATE NOCASE);
    INSERT INTO t VALUES('Abc', 'Xy', 'p  ', 1), ('abd', 'xY ', 'P', 1), ('B', 'q', 'p', 2), ('x', NULL, NULL, 2);
    SELECT * FROM t WHERE a = 'ABC'; SELECT * FROM t WHERE a IN ('abc', 'ABD', 'Abd');
    SELECT * FROM t WHERE a > 'ABC' AND a <= 'X'; SELECT * FROM t WHERE a BETWEEN 'abc' AND 'B';
    SELECT * FROM t WHERE a = 'abc' COLLATE BINARY; SELECT * FROM t WHERE b = 'xy';
    SELECT * FROM t WHERE b = 'XY' COLLATE NOCASE; SELECT * FROM t WHERE b COLLATE NOCASE IN ('xy', 'XY', 'Q');
    SELECT * FROM t WHERE c = 'p'; SELECT * FROM t WHERE c IN ('p ', 'P   '); SELECT * FROM t WHERE c > 'P ';
    SELECT * FROM t WHERE d = 1 AND b = 'XY' COLLATE NOCASE; SELECT * FROM t WHERE a IS 'ABC';
    SELECT * FROM t WHERE a IS NOT 'ABC'; SELECT min(a), max(a), min(c), max(b COLLATE NOCASE) FROM t;
    SELECT a FROM t WHERE a = ?"""


def test_searches_of_collated_indexes_match_sqlite(con: Any) -> None:
    statements = _script(SEARCHES)
    statements[-1] = (statements[-1][0], ("aBC",))
    _same_as_sqlite(con, statements)


@pytest.mark.parametrize("where, index", [
    ("a = 'ABC'", "sqlite_autoindex_t_1 (a=?)"),
    ("a > 'A' AND a < 'C'", "sqlite_autoindex_t_1 (a>? AND a<?)"),
    ("a IN ('x', 'Y')", "sqlite_autoindex_t_1 (a=?)"),
    ("b = 'XY' COLLATE NOCASE", "tb (b=?)"),
    ("b COLLATE NOCASE = 'XY'", "tb (b=?)"),
    ("c = 'p '", "tc (c=?)"),
])
def test_explain_shows_collated_index_searches(con: Any, where: str, index: str) -> None:
    for sql in _script(SEARCHES)[:3]:
        con.execute(sql[0])
    plan = con.execute(f"EXPLAIN QUERY PLAN SELECT * FROM t WHERE {where}").fetchall()
    assert plan[-1][3] == f"SEARCH t USING INDEX {index}"


@pytest.mark.parametrize("where", ["a = 'abc' COLLATE BINARY", "b = 'XY'", "c = 'p' COLLATE NOCASE",
                                   "b = 'xy' COLLATE RTRIM"])
def test_indexes_of_another_collation_are_not_searched(con: Any, where: str) -> None:
    for sql in _script(SEARCHES)[:2]:
        con.execute(sql[0])
    plan = [row[3] for row in con.execute(f"EXPLAIN QUERY PLAN SELECT * FROM t WHERE {where}")]
    assert not any(("autoindex" in p or " tb " in p or " tc " in p) and "SEARCH" in p for p in plan), plan


_TEXT = st.text(alphabet="aAbB é", max_size=3)


@settings(max_examples=60, deadline=None)
@given(schema=st.sampled_from([
           "CREATE TABLE t(a TEXT COLLATE NOCASE UNIQUE, n)",
           "CREATE TABLE t(a TEXT COLLATE RTRIM PRIMARY KEY, n)",
           "CREATE TABLE t(a TEXT COLLATE NOCASE PRIMARY KEY, n) WITHOUT ROWID",
           "CREATE TABLE t(a TEXT, n); CREATE UNIQUE INDEX ta ON t(n, a COLLATE NOCASE)",
           "CREATE TABLE t(a TEXT, n); CREATE UNIQUE INDEX ta ON t(a COLLATE RTRIM, n)"]),
       ops=st.lists(st.tuples(st.sampled_from(["INSERT INTO t VALUES(?, ?)",
                                               "INSERT OR IGNORE INTO t VALUES(?, ?)",
                                               "INSERT OR REPLACE INTO t VALUES(?, ?)",
                                               "INSERT INTO t VALUES(?, ?) ON CONFLICT DO UPDATE SET n = excluded.n",
                                               "UPDATE t SET a = ? WHERE n = ?",
                                               "SELECT a, n FROM t WHERE a = ?1 OR n = ?2",
                                               "SELECT a, n FROM t WHERE a > ?1 AND n >= ?2"]),
                              _TEXT, st.integers(0, 3)), max_size=12))
def test_random_collated_writes_match_sqlite(schema: str, ops: list) -> None:
    tcon = terndb.connect(":memory:")
    try:
        _same_as_sqlite(tcon, _script(schema) + [(sql, (text, n)) for sql, text, n in ops])
    finally:
        tcon.close()


# -- indexes written before collated parts were folded ---------------------------------------------

def _age_index(con: Any, name: str) -> None:
    """Rewrites index ``name``'s catalog record as a release before folded keys wrote it (no key_format)."""
    con.commit()
    db = con._db
    w = db.store.begin_write(10)
    try:
        cat = db.catalog._db(w)
        key = f"index:{name}".encode()
        record = json.loads(w.txn.get(key, db=cat))
        del record["obj"]["key_format"]
        w.txn.put(key, json.dumps(record).encode(), db=cat)
        db.catalog.bump_version(w)
        w.commit()
    except BaseException:
        w.abort()
        raise


def _plan(con: Any, sql: str) -> str:
    return " / ".join(row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql))


def test_an_old_raw_key_index_keeps_working_until_reindex(con: Any) -> None:
    con.execute("CREATE TABLE t(a TEXT COLLATE NOCASE, n)")
    con.execute("CREATE UNIQUE INDEX ta ON t(a)")
    _age_index(con, "ta")
    con.execute("INSERT INTO t VALUES('Abc', 1), ('b', 2)")        # keys written raw, as before
    assert _plan(con, "SELECT * FROM t WHERE a = 'abc'") == "SCAN t"
    assert con.execute("SELECT n FROM t WHERE a = 'abc'").fetchall() == [(1,)]
    con.execute("INSERT INTO t VALUES('B', 3)")                   # the old index's uniqueness, as before
    con.execute("DELETE FROM t WHERE n = 3")
    con.execute("REINDEX ta")
    assert _plan(con, "SELECT * FROM t WHERE a = 'abc'") == "SEARCH t USING INDEX ta (a=?)"
    assert con.execute("SELECT n FROM t WHERE a = 'ABC'").fetchall() == [(1,)]
    with pytest.raises(terndb.IntegrityError):
        con.execute("INSERT INTO t VALUES('B', 3)")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_reindex_refuses_rows_that_collide_under_the_collation(con: Any) -> None:
    con.execute("CREATE TABLE t(a TEXT COLLATE NOCASE UNIQUE)")
    _age_index(con, "sqlite_autoindex_t_1")
    con.execute("INSERT INTO t VALUES('x'), ('X')")
    con.commit()
    with pytest.raises(terndb.IntegrityError, match="UNIQUE constraint failed: t.a"):
        con.execute("REINDEX t")
    con.rollback()
    assert sorted(con.execute("SELECT a FROM t WHERE a = 'X'").fetchall()) == [("X",), ("x",)]
    con.execute("DELETE FROM t WHERE a = 'X' COLLATE BINARY")
    con.execute("REINDEX nocase")
    with pytest.raises(terndb.IntegrityError):
        con.execute("INSERT INTO t VALUES('X')")


@pytest.mark.parametrize("target, error", [("nosuch", terndb.ProgrammingError),
                                           ("nosuch.t", terndb.ProgrammingError)])
def test_reindex_of_an_unknown_object_is_an_error(con: Any, target: str, error: type) -> None:
    con.execute("CREATE TABLE t(a)")
    with pytest.raises(error):
        con.execute(f"REINDEX {target}")


def test_reindex_forms_match_sqlite(con: Any) -> None:
    _same_as_sqlite(con, _script("""
        CREATE TABLE t(a TEXT COLLATE NOCASE UNIQUE, b); CREATE INDEX tb ON t(b COLLATE RTRIM);
        INSERT INTO t VALUES('a', 'x '), ('B', 'x');
        REINDEX; REINDEX t; REINDEX main.t; REINDEX tb; REINDEX main.tb; REINDEX rtrim; REINDEX binary;
        INSERT INTO t VALUES('A', 1); SELECT * FROM t WHERE b = 'x'"""))


# -- replication apply finds rows through folded primary keys ------------------------------------------

def test_replicated_changes_find_rows_by_a_nocase_primary_key(tmp_path: Any) -> None:
    from terndb.engine.repl_apply import Applier
    from terndb.engine.repl_local import LocalPeer
    from terndb.engine.repl_versions import TableSet, VersionStore

    nodes = []
    for name in ("a", "b"):
        con = terndb.connect(str(tmp_path / name), durability="off")
        versions = VersionStore(con._db, TableSet("*"))
        versions.install()
        applier = Applier(con._db, TableSet("*"), versions)
        applier.ensure_conflict_table()
        nodes.append((con, versions, applier))
    (a, _, _), (b, _, b_applier) = nodes
    try:
        a.execute("CREATE TABLE s(k TEXT COLLATE NOCASE PRIMARY KEY, v) WITHOUT ROWID")
        a.execute("INSERT INTO s VALUES('Key', 1), ('other', 2)")
        a.commit()
        LocalPeer(b_applier, a._db).pull_all()
        a.execute("UPDATE s SET v = 10 WHERE k = 'KEY'")
        a.execute("DELETE FROM s WHERE k = 'OTHER'")
        a.commit()
        LocalPeer(b_applier, a._db).pull_all()
        assert b.execute("SELECT * FROM s").fetchall() == a.execute("SELECT * FROM s").fetchall() == [("Key", 10)]
        with pytest.raises(terndb.IntegrityError):
            b.execute("INSERT INTO s VALUES('kEY', 3)")
    finally:
        for con, versions, _ in nodes:
            versions.uninstall()
            con.close()


def test_integrity_check_accepts_folded_and_raw_key_indexes(tmp_path: Any) -> None:
    from terndb.engine.integrity import check_database

    con = terndb.connect(str(tmp_path / "db"))
    try:
        con.execute("CREATE TABLE t(a TEXT COLLATE NOCASE UNIQUE, b TEXT COLLATE RTRIM)")
        con.execute("CREATE INDEX tb ON t(b, a COLLATE BINARY)")
        con.execute("CREATE INDEX old ON t(b)")
        _age_index(con, "old")
        con.execute("INSERT INTO t VALUES('Abc', 'x  '), ('b', 'X')")
        con.commit()
        report = check_database(con._db)
        assert report.problems == [] and report.indexes == 3
    finally:
        con.close()
