"""Schemas (CREATE SCHEMA namespaces) compared with sqlite3's attached databases.

terndb's ``CREATE SCHEMA s`` plays the part of SQLite's ``ATTACH ':memory:' AS s``:
where the SQL overlaps (schema-qualified DDL, DML, joins, indexes, views,
triggers, ALTER TABLE, ``s.sqlite_master``) both must give the same results.
Statements only terndb has (CREATE/DROP SCHEMA, cross-schema foreign keys) and
persistence, the integrity check and SQLAlchemy reflection are tested on terndb.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa

import terndb
from terndb.engine.catalog import _decode
from terndb.engine.integrity import check_database

SETUP = [
    "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)",
    "CREATE TABLE s.t(id INTEGER PRIMARY KEY, a INT, b TEXT UNIQUE)",
    "CREATE TABLE s.u(k INT, v TEXT)",
    "INSERT INTO t(id, name) VALUES (1, 'main one'), (2, 'main two'), (3, 'main three')",
    "INSERT INTO s.t(id, a, b) VALUES (1, 10, 'x'), (2, 20, 'y'), (3, 30, 'z'), (4, NULL, NULL)",
    "INSERT INTO s.u VALUES (10, 'ten'), (30, 'thirty'), (30, 'trente')",
    "CREATE INDEX s.ix_a ON t(a)",
    "CREATE VIEW s.v AS SELECT id, a * 2 AS a2 FROM s.t WHERE a IS NOT NULL",
    "UPDATE s.t SET a = a + 1 WHERE id = 2",
    "DELETE FROM s.u WHERE v = 'trente'",
]

QUERIES = [
    "SELECT * FROM s.t ORDER BY id",
    "SELECT * FROM t ORDER BY id",                       # unqualified: main's t
    "SELECT * FROM main.t ORDER BY id",
    "SELECT s.t.id, s.t.b, m.name FROM s.t JOIN main.t AS m ON m.id = s.t.id ORDER BY 1",
    "SELECT x.b, y.v FROM s.t AS x LEFT JOIN s.u AS y ON y.k = x.a ORDER BY x.id",
    "SELECT id FROM s.t WHERE a = 21",                   # through the index s.ix_a
    "SELECT * FROM s.v ORDER BY id",
    "SELECT count(*), sum(a) FROM s.t",
    "SELECT name FROM t WHERE id IN (SELECT id FROM s.t WHERE b > 'x') ORDER BY name",
    "SELECT type, name, tbl_name FROM s.sqlite_master ORDER BY type, name",
    "SELECT type, name, tbl_name FROM main.sqlite_master ORDER BY type, name",
    # Two tables named t, no aliases: schema.table.column tells them apart, a bare t.c means the one with c.
    "SELECT s.t.b, main.t.name FROM s.t JOIN main.t ON s.t.id = main.t.id ORDER BY 1",
    "SELECT * FROM s.t JOIN main.t USING (id) ORDER BY id",
    "SELECT t.name, t.b FROM s.t LEFT JOIN main.t ON main.t.id = s.t.id ORDER BY s.t.id",
    "SELECT main.t.name FROM t ORDER BY 1",
    "SELECT s.v.a2 FROM s.v ORDER BY s.v.id",
    "SELECT main.sqlite_master.name FROM main.sqlite_master ORDER BY 1",
    "SELECT (SELECT count(*) FROM main.t WHERE main.t.id < s.t.id) FROM s.t ORDER BY 1",
    # An alias beside a schema-qualified table of the same bare name: main.t.c names the
    # table, a bare t.c whichever of the two has c, t.* both.
    "SELECT * FROM s.t AS t JOIN main.t ON t.a = main.t.id * 10 ORDER BY 1",
    "SELECT t.b, main.t.name, s.t.id FROM s.t AS t JOIN main.t ON t.a = main.t.id * 10 ORDER BY 1",
    "SELECT * FROM main.t JOIN s.t AS t ON t.a = main.t.id * 10 ORDER BY 1",
    "SELECT * FROM main.t AS t JOIN s.t ON t.name LIKE 'main t%' AND s.t.b = 'y' ORDER BY 1",
    "SELECT t.* FROM s.t AS t JOIN main.t ON t.a = main.t.id * 10 ORDER BY 1",
    "SELECT s.x.b FROM s.t AS x ORDER BY 1",
    "SELECT * FROM (SELECT 3 AS k) AS t JOIN main.t ON t.k = main.t.id",
    "SELECT t.name FROM s.t AS t LEFT JOIN main.t ON main.t.id = t.a ORDER BY s.t.id",
]


def _pair(tern_path: str = ":memory:") -> tuple[Any, sqlite3.Connection]:
    tern = terndb.connect(tern_path)
    tern.execute("CREATE SCHEMA s")
    lite = sqlite3.connect(":memory:")
    lite.execute("ATTACH ':memory:' AS s")
    return tern, lite


@pytest.fixture
def pair():
    tern, lite = _pair()
    for sql in SETUP:
        tern.execute(sql)
        lite.execute(sql)
    yield tern, lite
    tern.close()
    lite.close()


@pytest.mark.parametrize("query", QUERIES)
def test_qualified_queries_match_sqlite(pair, query: str) -> None:
    tern, lite = pair
    assert tern.execute(query).fetchall() == lite.execute(query).fetchall()


@pytest.mark.parametrize("steps, query", [
    (["ALTER TABLE s.t RENAME TO t2"], "SELECT * FROM s.t2 ORDER BY id"),
    (["ALTER TABLE s.t ADD COLUMN c INT DEFAULT 5"], "SELECT * FROM s.t ORDER BY id"),
    (["ALTER TABLE s.t RENAME COLUMN a TO aa"], "SELECT aa FROM s.t WHERE aa > 15 ORDER BY id"),
    (["ALTER TABLE s.u DROP COLUMN v"], "SELECT * FROM s.u ORDER BY k"),
    (["CREATE TABLE s.c AS SELECT id, b FROM s.t WHERE id < 3"], "SELECT * FROM s.c ORDER BY id"),
    (["DROP TABLE s.t"], "SELECT * FROM t ORDER BY id"),
    (["DROP TABLE s.t"], "SELECT name FROM s.sqlite_master ORDER BY name"),
    (["DROP INDEX s.ix_a", "DROP VIEW s.v"], "SELECT name FROM s.sqlite_master ORDER BY name"),
    # Unqualified names in a view or trigger of schema s are s's.
    (["CREATE VIEW s.w AS SELECT u.v, t.b FROM u JOIN t ON t.a = u.k"], "SELECT * FROM s.w ORDER BY 1"),
    (["CREATE TRIGGER s.log AFTER INSERT ON t BEGIN INSERT INTO u VALUES (NEW.a, NEW.b); END",
      "INSERT INTO s.t(id, a, b) VALUES (9, 90, 'n')", "INSERT INTO t(id, name) VALUES (9, 'main')"],
     "SELECT * FROM s.u ORDER BY k"),
    (["CREATE VIEW s.w AS SELECT a FROM t", "ALTER TABLE s.t RENAME TO t2"], "SELECT * FROM s.w ORDER BY 1"),
    (["CREATE TRIGGER s.no_neg BEFORE INSERT ON t WHEN NEW.a < 0 BEGIN SELECT RAISE(IGNORE); END",
      "INSERT INTO s.t(id, a) VALUES (9, -1)", "INSERT INTO t(id, name) VALUES (9, 'kept')"],
     "SELECT (SELECT count(*) FROM s.t), (SELECT count(*) FROM t)"),
])
def test_qualified_ddl_matches_sqlite(pair, steps: list[str], query: str) -> None:
    tern, lite = pair
    for sql in steps:
        tern.execute(sql)
        lite.execute(sql)
    assert tern.execute(query).fetchall() == lite.execute(query).fetchall()


@pytest.mark.parametrize("sql", [
    "SELECT * FROM nowhere.t",
    "INSERT INTO nowhere.t VALUES (1)",
    "CREATE TABLE nowhere.t (a)",
    "UPDATE nowhere.t SET a = 1",
    "DELETE FROM nowhere.t",
    "CREATE INDEX nowhere.ix ON t(a)",
    "CREATE VIEW nowhere.v AS SELECT 1",
    "CREATE TRIGGER nowhere.tr AFTER INSERT ON t BEGIN SELECT 1; END",
    "ALTER TABLE nowhere.t ADD COLUMN b INT",
    "DROP VIEW nowhere.v",
    "DROP INDEX nowhere.ix",
    "SELECT * FROM s.missing",
    "DROP TABLE s.missing",
    "SELECT t.id FROM s.t JOIN main.t ON 1",
    "SELECT s.t.name FROM s.t JOIN main.t ON 1",
    "SELECT t.id FROM s.t AS t JOIN main.t ON 1",
])
def test_errors_match_sqlite(pair, sql: str) -> None:
    tern, lite = pair
    with pytest.raises(sqlite3.OperationalError) as lite_err:
        lite.execute(sql)
    with pytest.raises(terndb.ProgrammingError) as tern_err:
        tern.execute(sql)
    assert str(tern_err.value) == str(lite_err.value)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM t JOIN t",
    "SELECT * FROM s.t JOIN s.t",
    "SELECT * FROM s.t AS x JOIN s.u AS x",
    "SELECT * FROM (SELECT 1) AS t JOIN (SELECT 2) AS t",
])
def test_same_name_twice_in_one_schema_is_ambiguous(pair, sql: str) -> None:
    """No schema tells these FROM items apart (SQLite fails on their columns instead)."""
    tern, _ = pair
    with pytest.raises(terndb.ProgrammingError, match="ambiguous table name in FROM"):
        tern.execute(sql)


def test_same_name_in_two_schemas_stays_apart(pair) -> None:
    tern, _ = pair
    tern.execute("CREATE INDEX ix_a ON t(name)")         # main may reuse s's index name
    tern.execute("CREATE VIEW v AS SELECT name FROM t")   # ... and its view name
    tern.execute("DROP VIEW s.v")
    assert tern.execute("SELECT count(*) FROM v").fetchone() == (3,)
    with pytest.raises(terndb.ProgrammingError, match="no such view: s.v"):
        tern.execute("DROP VIEW s.v")
    with pytest.raises(terndb.ProgrammingError, match="already exists"):
        tern.execute("CREATE TABLE s.u (z)")


def test_create_and_drop_schema(tcon) -> None:
    tcon.execute("CREATE SCHEMA s")
    tcon.execute("CREATE SCHEMA IF NOT EXISTS s")
    with pytest.raises(terndb.ProgrammingError, match="(?i)schema s already exists"):
        tcon.execute("CREATE SCHEMA S")
    tcon.execute("CREATE TABLE s.t (a)")
    tcon.execute("CREATE VIEW s.v AS SELECT a FROM s.t")
    for restrict in ("DROP SCHEMA s", "DROP SCHEMA s RESTRICT"):
        with pytest.raises(terndb.ProgrammingError, match="CASCADE"):
            tcon.execute(restrict)
    assert tcon.execute("SELECT count(*) FROM s.t").fetchone() == (0,)
    tcon.execute("DROP SCHEMA s CASCADE")
    with pytest.raises(terndb.ProgrammingError, match="no such table: s.t"):
        tcon.execute("SELECT * FROM s.t")
    with pytest.raises(terndb.ProgrammingError, match="unknown database s"):
        tcon.execute("DROP SCHEMA s")
    tcon.execute("DROP SCHEMA IF EXISTS s")
    with pytest.raises(terndb.ProgrammingError, match="cannot drop schema main"):
        tcon.execute("DROP SCHEMA main")
    tcon.execute("CREATE SCHEMA s")                       # a dropped name can be reused, empty
    assert tcon.execute("SELECT count(*) FROM s.sqlite_master").fetchone() == (0,)


def test_schema_ddl_rolls_back(tcon) -> None:
    tcon.execute("BEGIN")
    tcon.execute("CREATE SCHEMA s")
    tcon.execute("CREATE TABLE s.t (a)")
    tcon.rollback()
    with pytest.raises(terndb.ProgrammingError, match="unknown database s"):
        tcon.execute("CREATE TABLE s.t (a)")


def test_schemas_persist_and_check_clean(tmp_path) -> None:
    path = str(tmp_path / "db")
    con = terndb.connect(path)
    con.execute("CREATE SCHEMA s")
    con.execute("CREATE TABLE s.t (id INTEGER PRIMARY KEY, a TEXT UNIQUE)")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT UNIQUE)")
    con.execute("CREATE INDEX s.t_a ON t(a)")
    con.execute("INSERT INTO s.t VALUES (1, 'in s')")
    con.execute("INSERT INTO t VALUES (1, 'in main')")
    con.commit()
    con.close()
    con = terndb.connect(path)
    try:
        assert con.execute("SELECT a FROM s.t").fetchall() == [("in s",)]
        assert con.execute("SELECT a FROM t").fetchall() == [("in main",)]
        report = check_database(con._db)
        assert report.problems == []
        assert report.tables == 2 and report.rows == 2
    finally:
        con.close()


def test_records_without_a_schema_load_as_main() -> None:
    # A catalog record written before schemas existed has no schema_name.
    old = {"kind": "table", "obj": {"name": "T", "object_id": 3, "columns": [{"name": "a"}], "pk": [],
                                    "rowid_alias": None, "autoincrement": False, "checks": [],
                                    "foreign_keys": [{"name": None, "columns": ["a"], "ref_table": "u",
                                                      "ref_columns": ["x"]}],
                                    "sql": "CREATE TABLE T(a)", "temporary": False}}
    kind, table = _decode(json.dumps(old).encode())
    assert (kind, table.schema_name, table.key) == ("table", "main", "t")
    assert table.foreign_keys[0].ref_schema is None


def test_sqlalchemy_reflects_schemas_and_cross_schema_foreign_keys(tmp_path) -> None:
    engine = sa.create_engine(f"terndb:///{tmp_path / 'db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA sales")
    meta = sa.MetaData()
    sa.Table("customer", meta, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("orders", meta, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("customer_id", sa.ForeignKey("customer.id")),
             sa.Column("parent_id", sa.ForeignKey("sales.orders.id")),
             sa.Index("ix_orders_customer", "customer_id"), schema="sales")
    meta.create_all(engine)
    insp = sa.inspect(engine)
    assert insp.get_schema_names() == ["main", "sales"]
    assert insp.default_schema_name == "main"
    assert insp.get_table_names(schema="sales") == ["orders"]
    assert insp.get_table_names() == ["customer"]
    assert insp.has_table("orders", schema="sales") and not insp.has_table("orders")
    fks = sorted(insp.get_foreign_keys("orders", schema="sales"), key=lambda f: f["referred_table"])
    assert [(f["referred_schema"], f["referred_table"], f["referred_columns"]) for f in fks] == [
        (None, "customer", ["id"]), ("sales", "orders", ["id"])]
    assert [ix["name"] for ix in insp.get_indexes("orders", schema="sales")] == ["ix_orders_customer"]
    reflected = sa.MetaData()
    reflected.reflect(engine, schema="sales")
    assert set(reflected.tables) == {"sales.orders", "customer"}
    engine.dispose()


def test_replication_publishes_only_main(tmp_path) -> None:
    # Replicas address tables by bare name: objects of other schemas must not
    # reach them (they would land in main's table of the same name).
    from terndb.engine.repl_feed import read_outgoing
    from terndb.engine.repl_versions import TableSet, VersionStore
    con = terndb.connect(str(tmp_path / "db"), durability="off")
    versions = VersionStore(con._db, TableSet("*"))
    versions.install()
    try:
        for sql in ["CREATE SCHEMA s", "CREATE TABLE s.t (id INTEGER PRIMARY KEY, a)", "CREATE INDEX s.ix ON t(a)",
                    "CREATE TABLE t (id INTEGER PRIMARY KEY, a)", "INSERT INTO s.t VALUES (1, 'in s')",
                    "INSERT INTO t VALUES (1, 'in main')", "DROP TABLE s.t"]:
            con.execute(sql)
            con.commit()
        sent = [o for o in read_outgoing(con._db, 0, TableSet("*"), limit=1000, skip_empty=True)
                if o.data is not None]
        assert [(o.tables, o.has_ddl) for o in sent] == [((), True), (("t",), False)]
    finally:
        versions.uninstall()
        con.close()


def _shell_output(connection: Any, error_class: type, script: str) -> str:
    import io

    from terndb.shell import Shell
    out, err = io.StringIO(), io.StringIO()
    Shell(connection, error_class, stdout=out, stderr=err).run_script(script)
    assert err.getvalue() == ""
    return out.getvalue()


def test_shell_lists_schema_objects_like_sqlite3() -> None:
    # The shell reads pragma_database_list and each schema's sqlite_master,
    # which terndb's schemas and sqlite3's attached databases both answer.
    script = ("CREATE TABLE main_t(a);\nCREATE TABLE s.t(a);\nCREATE INDEX s.t_a ON t(a);\n"
              "CREATE VIEW s.v AS SELECT a FROM s.t;\n.tables\n.indexes\n.schema t\n")
    tern, lite = _pair()
    try:
        assert tern.execute("SELECT * FROM pragma_database_list").fetchall() == \
            lite.execute("SELECT * FROM pragma_database_list").fetchall() == [(0, "main", ""), (2, "s", "")]
        tern_out = _shell_output(tern, terndb.Error, script)
        assert tern_out == _shell_output(lite, sqlite3.Error, script)
        assert tern_out.split("\n")[0].split() == ["main_t", "s.t", "s.v"]
    finally:
        tern.close()
        lite.close()


def test_instead_of_trigger_on_a_view_in_a_schema() -> None:
    con = terndb.connect(":memory:")
    con.executescript("""CREATE SCHEMA s; CREATE TABLE s.t(a, b); CREATE VIEW s.v AS SELECT a, b FROM t;
        CREATE TRIGGER s.ti INSTEAD OF INSERT ON v BEGIN INSERT INTO t VALUES (new.a, new.b * 10); END;""")
    con.execute("INSERT INTO s.v VALUES (1, 2)")
    assert con.execute("SELECT * FROM s.t").fetchall() == [(1, 20)]
    con.execute("DROP VIEW s.v")        # its trigger goes with it
    assert con.execute("SELECT type, name FROM s.sqlite_master").fetchall() == [("table", "t")]
