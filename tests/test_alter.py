"""ALTER TABLE compared with sqlite3: rename table/column, add/drop column, and refusals."""
from __future__ import annotations

import sqlite3

import pytest

import terndb

SETUP = [
    "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INT CHECK (b >= 0))",
    "CREATE INDEX ia ON t(a)",
    "CREATE VIEW v AS SELECT id, a FROM t WHERE b > 0",
    "INSERT INTO t(a, b) VALUES ('x', 1), ('y', 2), (NULL, 0)",
]

STEPS = [
    "ALTER TABLE t ADD COLUMN c INTEGER NOT NULL DEFAULT 7",
    "ALTER TABLE t ADD d TEXT",
    "CREATE INDEX ic ON t(c)",
    "INSERT INTO t(a, b, c, d) VALUES ('z', 3, 8, 'dd')",
    "ALTER TABLE t RENAME COLUMN a TO aa",
    "ALTER TABLE t RENAME TO u",
    "ALTER TABLE u DROP COLUMN d",
]

QUERIES = [
    "SELECT * FROM u ORDER BY id",
    "SELECT * FROM v ORDER BY id",
    "SELECT id FROM u WHERE c = 7 ORDER BY id",
    "SELECT aa, count(*) FROM u GROUP BY aa ORDER BY aa",
]


def run(mod, steps):
    con = mod.connect(":memory:")
    for s in SETUP + steps:
        con.execute(s)
    con.commit()
    return con


@pytest.mark.parametrize("n", range(len(STEPS) + 1))
def test_alter_sequence_matches_sqlite(n: int) -> None:
    steps = STEPS[:n]
    ours, ref = run(terndb, steps), run(sqlite3, steps)
    table = "u" if n >= 6 else "t"
    for q in QUERIES:
        q = q.replace("FROM u", f"FROM {table}")
        if n < 5:
            q = q.replace("aa", "a")
        if n < 1 and "c =" in q:
            continue
        assert ours.execute(q).fetchall() == ref.execute(q).fetchall(), q


@pytest.mark.parametrize("stmt", [
    "ALTER TABLE t ADD COLUMN e INTEGER NOT NULL",           # NOT NULL without a default
    "ALTER TABLE t ADD COLUMN e INTEGER PRIMARY KEY",
    "ALTER TABLE t ADD COLUMN e INTEGER UNIQUE",
    "ALTER TABLE t ADD COLUMN a TEXT",                         # duplicate
    "ALTER TABLE t DROP COLUMN id",                            # primary key
    "ALTER TABLE t DROP COLUMN a",                             # indexed
    "ALTER TABLE t DROP COLUMN b",                             # used by CHECK
    "ALTER TABLE t DROP COLUMN nope",
    "ALTER TABLE t RENAME COLUMN nope TO x",
    "ALTER TABLE nope RENAME TO x",
    "ALTER TABLE t RENAME TO v",                               # name taken by the view
])
def test_refusals_match_sqlite(stmt: str) -> None:
    ours, ref = run(terndb, []), run(sqlite3, [])
    with pytest.raises(sqlite3.Error):
        ref.execute(stmt)
    with pytest.raises(terndb.Error):
        ours.execute(stmt)
    # Nothing changed.
    assert ours.execute("SELECT * FROM t ORDER BY id").fetchall() == ref.execute("SELECT * FROM t ORDER BY id").fetchall()


def test_alter_rolls_back_with_the_transaction() -> None:
    con = run(terndb, [])
    con.execute("BEGIN")
    con.execute("ALTER TABLE t ADD COLUMN e TEXT DEFAULT 'q'")
    assert con.execute("SELECT e FROM t WHERE id = 1").fetchone() == ("q",)
    con.execute("ROLLBACK")
    with pytest.raises(terndb.NoSuchObjectError):
        con.execute("SELECT e FROM t")
    other = terndb.connect(con.path)
    assert [d[0] for d in other.execute("SELECT * FROM t").description] == ["id", "a", "b"]


def test_create_table_as_select_matches_sqlite() -> None:
    results = []
    for mod in (terndb, sqlite3):
        con = mod.connect(":memory:")
        con.execute("CREATE TABLE t(a INTEGER, b TEXT, c REAL, d, e NUMERIC, f VARCHAR(3))")
        con.execute("INSERT INTO t VALUES (1,'x',1.5,NULL,3,'abc'), (2,'y',2.5,'q',4,'d')")
        con.execute("CREATE TABLE x AS SELECT a, b AS bb, c, d, e, f, a+1, count(*) AS n FROM t GROUP BY a")
        con.execute("CREATE TABLE IF NOT EXISTS x AS SELECT 1")
        results.append((con.execute("SELECT sql FROM sqlite_master WHERE name = 'x'").fetchone(),
                        con.execute("SELECT * FROM x ORDER BY a").fetchall(),
                        con.execute("SELECT typeof(a), typeof(e) FROM x").fetchall()))
    assert results[0] == results[1]


def test_add_column_to_a_table_with_a_table_level_primary_key() -> None:
    """The stored CREATE text keeps the new column before the table constraints, as SQLite does."""
    import sqlite3
    out = []
    for mod in (sqlite3, terndb):
        con = mod.connect(":memory:")
        con.execute("CREATE TABLE t(k, v, PRIMARY KEY(k))")
        con.execute("INSERT INTO t VALUES (1, 2)")
        con.execute("ALTER TABLE t ADD COLUMN w DEFAULT 5")
        sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 't'").fetchone()[0]
        out.append((con.execute("SELECT * FROM t").fetchall(), sql.lower().replace(" ", "").replace("(k,v,", "(k,v,")))
    assert out[1][0] == out[0][0] == [(1, 2, 5)]
    assert out[1][1] == out[0][1]
