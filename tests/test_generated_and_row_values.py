"""Generated columns, row values and REGEXP, compared with sqlite3 where both speak the SQL.

sqlite3 has no REGEXP function of its own: the comparison connection gets one
with SQLAlchemy's definition (Python's ``re.search``), which terndb builds in.
"""
from __future__ import annotations

import re
import sqlite3

import pytest

import terndb
from terndb.engine.errors import OperationalError, ProgrammingError


def _sqlite_regexp(pattern, value):
    if pattern is None or value is None:
        return None
    return 1 if re.search(pattern, str(value)) else 0


@pytest.fixture()
def pair(tmp_path):
    tern = terndb.connect(str(tmp_path / "db"))
    lite = sqlite3.connect(":memory:")
    lite.create_function("regexp", 2, _sqlite_regexp)
    yield tern, lite
    tern.close()
    lite.close()


def run_both(pair, statements):
    """Runs every statement on both; returns the last result of each (must be equal)."""
    tern, lite = pair
    out = []
    for sql in statements:
        a = tern.execute(sql).fetchall() if sql.lstrip().upper().startswith(("SELECT", "WITH")) else \
            tern.execute(sql)
        b = lite.execute(sql).fetchall()
        if isinstance(a, list):
            assert a == b, sql
            out.append(a)
    return out


GEN_TABLE = ("CREATE TABLE t (id INTEGER PRIMARY KEY, a INT, b INT, "
             "c INT AS (a + b) STORED, d TEXT GENERATED ALWAYS AS (c * 2) VIRTUAL, "
             "e INTEGER GENERATED ALWAYS AS (id * 10), f REAL AS (a))")


def test_generated_columns_computed_on_insert_and_update(pair):
    run_both(pair, [
        GEN_TABLE,
        "INSERT INTO t VALUES (1, 2, 3)",
        "INSERT INTO t (a, b) VALUES (5, 6), (NULL, 1)",
        "INSERT INTO t (b, a) SELECT 7, 8",
        "SELECT * FROM t ORDER BY id",
        "UPDATE t SET a = 10 WHERE id = 1",
        "UPDATE t SET b = b + 1",
        "SELECT * FROM t ORDER BY id",
        "SELECT typeof(c), typeof(d), typeof(f) FROM t ORDER BY id",
        "SELECT id FROM t WHERE d = '26'",
        "SELECT id, c FROM t WHERE c > 12 ORDER BY c",
    ])


def test_generated_column_index_and_upsert(pair):
    run_both(pair, [
        "CREATE TABLE u (k TEXT PRIMARY KEY, v INT, twice INT AS (v * 2) STORED, lower_k AS (lower(k)), "
        "day TEXT AS (date(v * 86400, 'unixepoch')))",
        "CREATE INDEX u_twice ON u (twice)",
        "CREATE UNIQUE INDEX u_lower ON u (lower_k)",
        "INSERT INTO u (k, v) VALUES ('A', 1), ('b', 2), ('C', 3)",
        "INSERT INTO u (k, v) VALUES ('b', 20) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        "SELECT k, twice FROM u WHERE twice >= 6 ORDER BY twice",
        "SELECT k FROM u WHERE lower_k = 'c'",
        "SELECT * FROM u ORDER BY k",
    ])
    tern, lite = pair
    for con in (tern, lite):
        with pytest.raises(Exception, match="UNIQUE constraint failed"):
            con.execute("INSERT INTO u (k, v) VALUES ('a', 9)")


def test_writing_a_generated_column_is_refused(pair):
    tern, lite = pair
    for con in pair:
        con.execute(GEN_TABLE)
    cases = [
        ("INSERT INTO t (a, c) VALUES (1, 2)", 'cannot INSERT into generated column "c"'),
        ("INSERT INTO t VALUES (NULL, 1, 2, 3, 4, 5, 6)", "table t has 3 columns but 7 values were supplied"),
        ("UPDATE t SET d = 1", 'cannot UPDATE generated column "d"'),
    ]
    for sql, message in cases:
        with pytest.raises(sqlite3.OperationalError, match=re.escape(message)):
            lite.execute(sql)
        with pytest.raises(ProgrammingError, match=re.escape(message)):
            tern.execute(sql)


@pytest.mark.parametrize("ddl, message", [
    ("CREATE TABLE x (a INT, b INT AS (nope))", "no such column: nope"),
    ("CREATE TABLE x (a INT AS (1))", "must have at least one non-generated column"),
    ("CREATE TABLE x (a INT AS (1), b INT, PRIMARY KEY (a))", "generated columns cannot be part of the PRIMARY KEY"),
    ("CREATE TABLE x (a INT AS (1) DEFAULT 1, b INT)", "cannot use DEFAULT on a generated column"),
    ("CREATE TABLE x (a INT, b AS (random()))", "non-deterministic functions prohibited in generated columns"),
    ("CREATE TABLE x (a INT, b AS (a + changes()))", "non-deterministic functions prohibited in generated columns"),
    ("CREATE TABLE x (a INT, b AS ((SELECT 1)))", "subqueries prohibited in generated columns"),
])
def test_bad_generated_definitions(pair, ddl, message):
    tern, lite = pair
    with pytest.raises(sqlite3.OperationalError, match=re.escape(message)):
        lite.execute(ddl)
    with pytest.raises(ProgrammingError, match=re.escape(message)):
        tern.execute(ddl)


def test_generated_not_null_and_chains(pair):
    tern, lite = pair
    run_both(pair, [
        "CREATE TABLE g (a INT, c INT AS (b + 1), b INT AS (a * 2), n INT AS (a) NOT NULL)",
        "INSERT INTO g (a) VALUES (1), (4)",
        "SELECT * FROM g ORDER BY a",
    ])
    for con in pair:
        with pytest.raises(Exception, match="NOT NULL constraint failed: g.n"):
            con.execute("INSERT INTO g (a) VALUES (NULL)")
    with pytest.raises(ProgrammingError, match="generated column loop"):
        tern.execute("CREATE TABLE loop (a INT, b INT AS (c), c INT AS (b))")


def test_add_virtual_generated_column(pair):
    tern, lite = pair
    run_both(pair, [
        "CREATE TABLE v (a INT, b TEXT)",
        "INSERT INTO v VALUES (1, 'x'), (2, 'y')",
        "ALTER TABLE v ADD COLUMN c INT AS (a * 100)",
        "INSERT INTO v (a, b) VALUES (3, 'z')",
        "SELECT * FROM v ORDER BY a",
        "UPDATE v SET a = a + 1",
        "SELECT * FROM v ORDER BY a",
    ])
    for con, err in ((lite, sqlite3.OperationalError), (tern, ProgrammingError)):
        with pytest.raises(err, match="cannot add a STORED column"):
            con.execute("ALTER TABLE v ADD COLUMN d INT AS (a) STORED")


def test_generated_columns_survive_reopen(tmp_path):
    path = str(tmp_path / "db")
    con = terndb.connect(path)
    con.execute(GEN_TABLE)
    con.execute("INSERT INTO t (a, b) VALUES (1, 2)")
    con.commit()
    con.close()
    con = terndb.connect(path)
    con.execute("INSERT INTO t (a, b) VALUES (3, 4)")
    assert con.execute("SELECT c, d, e FROM t ORDER BY id").fetchall() == [(3, "6", 10), (7, "14", 20)]
    con.close()


# -- row values ------------------------------------------------------------------------

ROWS = ["CREATE TABLE r (x, y, z)",
        "INSERT INTO r VALUES (1, 2, 'a'), (1, 3, 'b'), (2, 1, 'c'), (2, NULL, 'd'), (NULL, 5, 'e'), (3, 3, 'f')"]


@pytest.mark.parametrize("where", [
    "(x, y) = (1, 2)", "(x, y) <> (1, 2)", "(x, y) < (2, 1)", "(x, y) <= (2, 1)", "(x, y) > (1, 2)",
    "(x, y) >= (2, 1)", "(x, y) IN ((1, 2), (2, 1), (NULL, 5))", "(x, y) NOT IN ((1, 2), (3, 3))",
    "(x, y) IN (SELECT y, x FROM r)", "(x, y) NOT IN (SELECT y, x FROM r WHERE z <> 'a')",
    "(x, y) IN (SELECT 1, 2 WHERE 1 != 1)", "(x, y, z) > (1, 3, 'a')", "(x, (y)) = ((2), 1)",
])
def test_row_value_predicates(pair, where):
    run_both(pair, ROWS + [f"SELECT z, ({where}) IS NULL FROM r WHERE coalesce({where}, -1) ORDER BY z"])


def test_row_value_constants_and_nulls(pair):
    run_both(pair, [
        "SELECT (1, 2) < (1, NULL), (1, 2) < (2, NULL), (1, 2) = (1, NULL), (1, 2) = (2, NULL), "
        "(1, 2) IN ((1, 2)), (1, NULL) IN ((1, 2)), (1, 2) IN ((1, 3), (NULL, 2)), (1, 2) <> (1, NULL)",
        "SELECT (1, NULL) IN (SELECT 2, 3), (1, NULL) IN (SELECT 1, 3), (1, 2) NOT IN (SELECT 1, NULL)",
    ])


def test_update_row_value_assignment(pair):
    run_both(pair, ROWS + [
        "UPDATE r SET (x, y) = (y, x) WHERE z IN ('a', 'c')",
        "UPDATE r SET (y, z) = (y * 10, upper(z)), x = 0 WHERE z = 'f'",
        "SELECT * FROM r ORDER BY z",
    ])


def test_row_value_misuse(pair):
    tern, lite = pair
    for con in pair:
        con.execute("CREATE TABLE m (a, b)")
    for sql, message in [("SELECT (1, 2)", "row value misused"), ("SELECT (1, 2) = (1, 2, 3)", "row value misused"),
                         ("SELECT (a, b) IN (SELECT 1) FROM m", "sub-select returns 1 columns - expected 2"),
                         ("UPDATE m SET (a, b) = (1, 2, 3)", "2 columns assigned 3 values")]:
        with pytest.raises(sqlite3.OperationalError, match=re.escape(message)):
            lite.execute(sql)
        with pytest.raises(ProgrammingError, match=re.escape(message)):
            tern.execute(sql)


# -- REGEXP ----------------------------------------------------------------------------

def test_regexp_operator_and_function(pair):
    run_both(pair, [
        "CREATE TABLE s (v)",
        "INSERT INTO s VALUES ('abcde'), ('ABC'), ('xyz'), (NULL), (12345)",
        "SELECT v, v REGEXP 'b.d', v NOT REGEXP '^[a-z]+$', regexp('(?i)abc', v), v REGEXP '3' FROM s ORDER BY rowid",
        "SELECT count(*) FROM s WHERE v REGEXP '^a|z$'",
        "SELECT NULL REGEXP 'a', 'a' REGEXP NULL",
    ])


def test_regexp_replace_and_errors(tmp_path):
    con = terndb.connect(str(tmp_path / "db"))
    assert con.execute(r"SELECT regexp_replace('a1b22c', '(\d+)', '<\1>'), regexp_replace(NULL, 'a', 'b')"
                       ).fetchall() == [("a<1>b<22>c", None)]
    with pytest.raises(OperationalError, match=re.escape("invalid regular expression '(ab'")):
        con.execute("SELECT 'x' REGEXP '(ab'").fetchall()
    con.execute("CREATE TABLE s (v)")
    con.execute("INSERT INTO s VALUES ('a')")
    with pytest.raises(OperationalError, match=r"invalid regular expression '\[z'"):
        con.execute("SELECT v FROM s WHERE v REGEXP '[z'").fetchall()
    con.close()


def test_row_value_against_sub_select(pair):
    run_both(pair, ROWS + [
        "SELECT z, (x, y) = (SELECT 1, 2), (x, y) < (SELECT 2, 1), (SELECT 1, 3) <= (x, y), "
        "(x, y) <> (SELECT 9, 9 WHERE 0) FROM r ORDER BY z",
        "SELECT z FROM r AS o WHERE (x, y) = (SELECT y, x FROM r AS i WHERE i.z = char(unicode(o.z) + 2)) ORDER BY z",
    ])


def test_update_from_row_sub_select(pair):
    run_both(pair, ROWS + [
        "CREATE TABLE src (k, p, q)",
        "INSERT INTO src VALUES ('a', 100, 200), ('c', 300, 400)",
        "UPDATE r SET (x, y) = (SELECT p, q FROM src WHERE src.k = r.z) WHERE z IN ('a', 'c', 'e')",
        "SELECT * FROM r ORDER BY z",
    ])


def test_alter_keeps_generated_columns_consistent(pair):
    tern, lite = pair
    run_both(pair, [
        "CREATE TABLE a (p INT, q INT, g INT AS (p * 2))",
        "INSERT INTO a (p, q) VALUES (1, 1), (2, 2)",
        "ALTER TABLE a RENAME COLUMN p TO pp",
        "INSERT INTO a (pp, q) VALUES (3, 3)",
        "ALTER TABLE a DROP COLUMN q",
        "SELECT * FROM a ORDER BY pp",
    ])
    with pytest.raises(ProgrammingError, match='used in generated column "g"'):
        tern.execute("ALTER TABLE a DROP COLUMN pp")
    with pytest.raises(sqlite3.OperationalError):
        lite.execute("ALTER TABLE a DROP COLUMN pp")
