"""Document tables: WITH (dynamic = true), the Collection API, JSON-lines ingest.

Each test states one promise of terndb/documents.py and engine/documents.py;
where SQL can say the same thing, the result is compared with sqlite3 on
the same data.
"""
from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import warnings

import pytest

import terndb
from terndb import cli
from terndb.engine.catalog import _decode
from terndb.importer import import_file
from terndb.replication import Replicator

DOGS = [
    {"id": 1, "name": "Rex", "age": 3, "owner": {"name": "Ann", "city": "Oslo"}},
    {"id": 2, "name": "Fido", "age": 5.5, "tags": ["good", "loud"]},
    {"id": 3, "name": "Max", "breed": "lab", "owner": {"name": "Bo", "city": "Rome"}},
]


@pytest.fixture
def con(tmp_path):
    c = terndb.connect(str(tmp_path / "db"))
    yield c
    c.close()


def columns(con, table: str) -> list[str]:
    return [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]


# -- declaring a document table ------------------------------------------------------------

def test_create_table_with_options_sets_the_catalog_flags(con) -> None:
    con.execute("CREATE TABLE a (id INTEGER PRIMARY KEY) WITH (dynamic = true, index_attributes = false)")
    con.execute("CREATE TABLE b (id INTEGER PRIMARY KEY) WITH (dynamic = on)")
    con.execute("CREATE TABLE c (id INTEGER PRIMARY KEY)")
    tables = con._session.current_schema().tables
    assert (tables["a"].dynamic, tables["a"].index_attributes) == (True, False)
    assert (tables["b"].dynamic, tables["b"].index_attributes) == (True, True)
    assert (tables["c"].dynamic, tables["c"].index_attributes) == (False, False)
    # The options stay in the stored SQL (what .schema shows and replication replays).
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 'a'").fetchone()[0]
    assert "dynamic" in sql and "index_attributes" in sql


def test_catalog_records_written_before_the_flags_still_load() -> None:
    old = (b'{"kind":"table","obj":{"name":"t","object_id":1,"columns":[{"name":"a","decl_type":"",'
           b'"affinity":65,"notnull":false,"default_sql":null,"collation":null,"hidden":false}],'
           b'"pk":[],"rowid_alias":null,"autoincrement":false,"checks":[],"foreign_keys":[],'
           b'"sql":"CREATE TABLE t(a)","temporary":false}}')
    kind, table = _decode(old)
    assert kind == "table" and table.dynamic is False and table.index_attributes is False


@pytest.mark.parametrize("sql, message", [
    ("CREATE TABLE x (id) WITH (colour = 1)", "unknown table option: colour"),
    ("CREATE TABLE x (id) WITH (dynamic = maybe)", "takes true or false"),
    ("CREATE TABLE x (id) WITH (index_attributes = true)", "needs dynamic = true"),
])
def test_bad_table_options_are_programming_errors(con, sql, message) -> None:
    with pytest.raises(terndb.ProgrammingError, match=message):
        con.execute(sql)


def test_add_column_without_a_type_as_sqlite(con) -> None:
    lite = sqlite3.connect(":memory:")
    for db in (con, lite):
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        db.execute("ALTER TABLE t ADD COLUMN v")
        db.execute("INSERT INTO t VALUES (1, '12'), (2, 3.0), (3, x'00')")
    query = "SELECT id, v, typeof(v) FROM t ORDER BY id"
    assert con.execute(query).fetchall() == lite.execute(query).fetchall()


# -- the Collection API ----------------------------------------------------------------------

def test_insert_get_find_count_delete(con) -> None:
    dogs = con.create_document_table("dogs")
    assert dogs.insert(DOGS[0]) == 1
    assert dogs.insert(DOGS[1:]) == 2
    assert dogs.insert({"name": "Nameless"}) == 4        # INTEGER PRIMARY KEY generated
    con.commit()
    assert [dogs.get(k) for k in (1, 2, 3)] == DOGS
    assert dogs.get(99) is None
    assert dogs.get_many([3, 99, "1"]) == [DOGS[2], None, DOGS[0]]   # '1' matches 1 as in SQL
    assert dogs.find(name="Max") == [DOGS[2]]
    assert dogs.find("age > ?", (4,)) == [DOGS[1]]
    assert dogs.find("owner ->> '$.city' = :city", {"city": "Rome"}, breed="lab") == [DOGS[2]]
    assert dogs.find(breed=None, age=3) == [DOGS[0]]
    assert dogs.find(colour="red") == [] and dogs.count(colour=None) == 4
    assert dogs.count() == len(dogs) == 4 and dogs.count(breed="lab") == 1
    assert dogs.delete([1, 4, 99]) == 2 and dogs.delete(2) == 1
    assert [d["id"] for d in dogs] == [3]


def test_upsert_merges_attributes_like_sqlite_on_conflict(con) -> None:
    dogs = con.create_document_table("dogs")
    dogs.insert(DOGS)
    assert dogs.upsert({"id": 1, "age": 4, "colour": "brown"}) == 1
    assert dogs.upsert([{"id": 9, "name": "New"}, {"id": 2, "name": "Fido II"}]) == 2
    assert dogs.get(1) == {**DOGS[0], "age": 4, "colour": "brown"}
    assert dogs.get(2) == {**DOGS[1], "name": "Fido II"} and dogs.get(9) == {"id": 9, "name": "New"}
    lite = sqlite3.connect(":memory:")
    lite.execute("CREATE TABLE dogs (id INTEGER PRIMARY KEY, name, age, owner, tags, breed, colour)")
    lite.executemany("INSERT INTO dogs (id, name, age, owner, tags, breed) VALUES (?, ?, ?, ?, ?, ?)",
                     [(d["id"], d["name"], d.get("age"), json.dumps(d.get("owner"), separators=(",", ":"))
                       if "owner" in d else None, json.dumps(d.get("tags"), separators=(",", ":"))
                       if "tags" in d else None, d.get("breed")) for d in DOGS])
    lite.execute("INSERT INTO dogs (id, age, colour) VALUES (1, 4, 'brown') "
                 "ON CONFLICT (id) DO UPDATE SET age = excluded.age, colour = excluded.colour")
    lite.execute("INSERT INTO dogs (id, name) VALUES (9, 'New'), (2, 'Fido II') "
                 "ON CONFLICT (id) DO UPDATE SET name = excluded.name")
    query = "SELECT id, name, age, owner, tags, breed, colour FROM dogs ORDER BY id"
    assert con.execute(query).fetchall() == lite.execute(query).fetchall()


def test_text_primary_key_and_composite_keys(con) -> None:
    tags = con.create_document_table("tags", primary_key="code", key_type="TEXT")
    tags.insert([{"code": "a", "n": 1}, {"code": "b", "n": 2}])
    assert tags.get("b") == {"code": "b", "n": 2}
    pairs = con.create_document_table("pairs", primary_key=["x", "y"])
    pairs.insert([{"x": 1, "y": 1, "v": "one"}, {"x": 1, "y": 2, "v": "two"}])
    assert pairs.get((1, 2)) == {"x": 1, "y": 2, "v": "two"}
    assert pairs.delete([(1, 1)]) == 1 and pairs.count() == 1
    with pytest.raises(terndb.ProgrammingError, match="2 columns"):
        pairs.get(1)


def test_documents_on_an_ordinary_table_fill_declared_columns_and_defaults(con) -> None:
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INTEGER DEFAULT 7)")
    t = con.documents("t")
    t.insert([{"id": 1, "a": "x"}, {"id": 2, "A": "y", "b": 1}])    # names ignore case
    assert con.execute("SELECT * FROM t ORDER BY id").fetchall() == [(1, "x", 7), (2, "y", 1)]
    with pytest.raises(terndb.ProgrammingError, match="no column named c"):
        t.insert({"id": 3, "c": 1})
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)


# -- dynamic schema ---------------------------------------------------------------------------

def test_new_attributes_become_untyped_columns_with_default_indexes(con) -> None:
    dogs = con.create_document_table("dogs")
    dogs.insert(DOGS)
    assert columns(con, "dogs") == ["id", "name", "age", "owner", "tags", "breed"]
    indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    # Scalars get an index each; objects and arrays stay unindexed JSON.
    assert indexes == {"dogs__name", "dogs__age", "dogs__breed"}
    plan = con.execute("EXPLAIN QUERY PLAN SELECT * FROM dogs WHERE breed = ?", ("lab",)).fetchall()
    assert "USING INDEX dogs__breed" in plan[0][3]
    # Values keep their types (no affinity), nested values are JSON text in SQL.
    assert con.execute("SELECT typeof(age), typeof(owner), owner ->> '$.city' FROM dogs ORDER BY id"
                       ).fetchall() == [("integer", "text", "Oslo"), ("real", "null", None),
                                        ("null", "text", "Rome")]


def test_nested_paths_query_like_sqlite_json1(con) -> None:
    docs = [{"id": i, "user": {"id": i % 3, "tags": ["x", "y"][: i % 3]}, "n": i} for i in range(1, 30)]
    con.create_document_table("orders").insert(docs)
    lite = sqlite3.connect(":memory:")
    lite.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, user, n)")
    lite.executemany("INSERT INTO orders VALUES (?, ?, ?)",
                     [(d["id"], json.dumps(d["user"], separators=(",", ":")), d["n"]) for d in docs])
    for query in ["SELECT user ->> '$.id', count(*), sum(n) FROM orders GROUP BY 1 ORDER BY 1",
                  "SELECT id, json_array_length(user, '$.tags') FROM orders ORDER BY user -> '$.tags', id",
                  "SELECT o.id, j.value FROM orders o, json_each(o.user, '$.tags') j ORDER BY 1, 2"]:
        assert con.execute(query).fetchall() == lite.execute(query).fetchall(), query


def test_index_attributes_off_adds_columns_without_indexes(con) -> None:
    con.create_document_table("quiet", index_attributes=False).insert({"id": 1, "a": 1, "b": "x"})
    assert columns(con, "quiet") == ["id", "a", "b"]
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index'").fetchone() == (0,)


def test_cached_statements_see_new_columns(con) -> None:
    dogs = con.create_document_table("dogs")
    dogs.insert({"id": 1, "a": 1})
    assert con.execute("SELECT * FROM dogs").fetchall() == [(1, 1)]
    dogs.insert({"id": 2, "b": 2})
    assert con.execute("SELECT * FROM dogs").fetchall() == [(1, 1, None), (2, None, 2)]


def test_another_connections_schema_change_is_seen(tmp_path) -> None:
    path = str(tmp_path / "db")
    a, b = terndb.connect(path), terndb.connect(path)
    dogs = a.create_document_table("dogs")
    dogs.insert({"id": 1, "n": 1})
    a.commit()
    assert dogs.get(1) == {"id": 1, "n": 1}
    b.execute("ALTER TABLE dogs RENAME COLUMN id TO key")
    b.execute("ALTER TABLE dogs ADD COLUMN colour DEFAULT 'red'")
    assert dogs.get(1) == {"key": 1, "n": 1, "colour": "red"}
    a.close()
    b.close()


def test_reflection_sees_attributes_and_their_indexes(tmp_path) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    path = tmp_path / "db"
    con = terndb.connect(str(path))
    con.create_document_table("dogs").insert(DOGS)
    con.commit()
    con.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = sqlalchemy.create_engine(f"terndb:///{path}")
        inspector = sqlalchemy.inspect(engine)
        assert [c["name"] for c in inspector.get_columns("dogs")] == ["id", "name", "age", "owner", "tags", "breed"]
        assert {i["name"]: i["column_names"] for i in inspector.get_indexes("dogs")} == {
            "dogs__name": ["name"], "dogs__age": ["age"], "dogs__breed": ["breed"]}
        engine.dispose()


def test_shell_schema_shows_the_grown_table(tmp_path) -> None:
    path = str(tmp_path / "db")
    con = terndb.connect(path)
    con.create_document_table("dogs").insert(DOGS[0])
    con.commit()
    con.close()
    out, err = io.StringIO(), io.StringIO()
    assert cli.main([path, ".schema dogs"], stdin=io.StringIO(), stdout=out, stderr=err) == 0, err.getvalue()
    assert '"name", "age", "owner"' in out.getvalue() and "dogs__age" in out.getvalue()


# -- transactions ------------------------------------------------------------------------------

def test_rollback_removes_rows_and_the_columns_they_added(con) -> None:
    dogs = con.create_document_table("dogs")
    dogs.insert({"id": 1, "a": 1})
    con.commit()
    dogs.insert({"id": 2, "b": 2})
    assert con.in_transaction
    con.rollback()
    assert columns(con, "dogs") == ["id", "a"] and dogs.count() == 1
    assert con.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall() == [("dogs__a",)]


def test_a_failed_write_inside_a_transaction_leaves_nothing_of_itself(con) -> None:
    dogs = con.create_document_table("dogs")
    dogs.insert({"id": 1, "a": 1})
    con.execute("INSERT INTO dogs (id, a) VALUES (2, 2)")         # the caller's open transaction
    with pytest.raises(terndb.IntegrityError):
        dogs.insert([{"id": 3, "b": 3}, {"id": 1, "b": 4}])       # new attribute, then a duplicate key
    assert columns(con, "dogs") == ["id", "a"]
    assert con.in_transaction and dogs.count() == 2               # earlier statements are kept
    con.commit()


def test_autocommit_commits_each_call(tmp_path) -> None:
    path = str(tmp_path / "db")
    con = terndb.connect(path, isolation_level=None)
    con.create_document_table("dogs").insert({"id": 1, "a": 1})
    assert not con.in_transaction
    other = terndb.connect(path)
    assert other.documents("dogs").get(1) == {"id": 1, "a": 1}
    other.close()
    con.close()


def test_committed_documents_replicate_as_row_changes(tmp_path) -> None:
    ca = terndb.connect(str(tmp_path / "a"), durability="off")
    ca.create_document_table("dogs").insert(DOGS)
    ca.commit()
    rb = Replicator(str(tmp_path / "b"), peers=[ca])
    rb.sync()
    rb.close()
    cb = terndb.connect(str(tmp_path / "b"), durability="off")
    replica = cb.documents("dogs")
    assert [replica.get(k) for k in (1, 2, 3)] == DOGS
    replica.insert({"id": 4, "weight": 12})             # still dynamic on the replica
    assert columns(cb, "dogs")[-1] == "weight"
    cb.close()
    ca.close()


# -- bad input ---------------------------------------------------------------------------------

def test_bad_documents_are_clear_errors(con) -> None:
    dogs = con.create_document_table("dogs")
    con.create_document_table("tags", primary_key="code", key_type="TEXT")
    with pytest.raises(terndb.ProgrammingError, match="document 1 is a list, not a dict"):
        dogs.insert([{"id": 1}, [("id", 2)]])
    with pytest.raises(terndb.ProgrammingError, match="not str"):
        dogs.insert("{}")
    with pytest.raises(terndb.DataError, match="no primary key 'code'"):
        con.documents("tags").insert({"name": "x"})
    with pytest.raises(terndb.DataError, match="attribute 'meta' of document 0 cannot be stored as JSON"):
        dogs.insert({"id": 5, "meta": {"bad": float("nan")}})
    with pytest.raises(terndb.DataError, match="twice"):
        dogs.insert({"id": 6, "x": 1, "X": 2})
    with pytest.raises(terndb.ProgrammingError, match="non-empty strings"):
        dogs.insert({"id": 7, 8: "eight"})
    with pytest.raises(terndb.ProgrammingError, match="no such table"):
        con.documents("cats")
    assert dogs.count() == 0 and columns(con, "dogs") == ["id"]


# -- JSON lines --------------------------------------------------------------------------------

def write_jsonl(path, docs, extra: str = "") -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs) + extra)


def test_ingest_jsonl_creates_a_document_table(con, tmp_path) -> None:
    path = tmp_path / "dogs.jsonl"
    docs = [{"id": i, "name": f"d{i}", "info": {"n": i}} for i in range(1, 251)]
    write_jsonl(path, docs, extra="\n")                   # a blank line is skipped
    seen: list[int] = []
    assert con.ingest_jsonl("dogs", str(path), batch_size=100, progress=seen.append) == 250
    con.commit()
    assert seen == [100, 200, 250]
    assert con.documents("dogs").get_many([1, 250]) == [docs[0], docs[-1]]
    assert con.ingest_jsonl("dogs", io.StringIO('{"id": 300, "late": true}\n')) == 1
    assert columns(con, "dogs") == ["id", "name", "info", "late"]


def test_ingest_jsonl_bad_lines_name_the_line(con, tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [{"id": 1}, {"id": 2}], extra='{"id": 3,\n')
    with pytest.raises(terndb.DataError, match="line 3: bad JSON"):
        con.ingest_jsonl("bad", str(path))
    with pytest.raises(terndb.DataError, match="line 2: expected a JSON object, not list"):
        con.ingest_jsonl("bad", io.StringIO('{"id": 1}\n[1, 2]\n'))
    with pytest.raises(terndb.ProgrammingError, match="cannot read"):
        con.ingest_jsonl("bad", str(tmp_path / "missing.jsonl"))


def test_shell_imports_json_lines(tmp_path) -> None:
    path = tmp_path / "dogs.ndjson"
    write_jsonl(path, [{"id": i, "breed": ["lab", "pug"][i % 2]} for i in range(1, 1001)])
    db = str(tmp_path / "db")
    out, err = io.StringIO(), io.StringIO()
    status = cli.main([db, f".import {path} dogs", "SELECT breed, count(*) FROM dogs GROUP BY 1 ORDER BY 1"],
                      stdin=io.StringIO(), stdout=out, stderr=err)
    assert status == 0, err.getvalue()
    assert out.getvalue().splitlines() == ["imported 1,000 rows into dogs", "lab|500", "pug|500"]


def test_shell_import_flag_progress_bar_and_bad_file(tmp_path) -> None:
    path = tmp_path / "dogs.txt"
    write_jsonl(path, [{"id": i} for i in range(1, 31)])
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"id": 1}], extra="oops\n")
    db = str(tmp_path / "db")
    result = subprocess.run([sys.executable, "-m", "terndb", db, f".import --json {path} dogs",
                             f".import {bad} other", "SELECT count(*) FROM dogs",
                             "SELECT count(*) FROM sqlite_master WHERE name = 'other'"],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines() == ["imported 30 rows into dogs", "30", "0"], result.stderr
    assert "line 2: bad JSON" in result.stderr
    seen = []
    con = terndb.connect(db)
    import_file(con, str(path), "again", fmt="json", progress=lambda rows, done: seen.append((rows, done)))
    assert seen == [(30, 1.0)]
    con.close()


def test_shell_draws_a_progress_bar_on_a_terminal(tmp_path) -> None:
    from terndb.shell import Shell

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True
    path = tmp_path / "dogs.jsonl"
    write_jsonl(path, [{"id": i} for i in range(1, 11)])
    con = terndb.connect(str(tmp_path / "db"))
    out, err = io.StringIO(), Terminal()
    Shell(con, terndb.Error, stdout=out, stderr=err).dot_import([str(path), "dogs"])
    assert "[" + "#" * 30 + "] 100% 10 rows" in err.getvalue()
    assert out.getvalue() == "imported 10 rows into dogs\n"
    con.close()


def test_temporary_tables_are_not_table_options(con) -> None:
    con.execute("CREATE TEMPORARY TABLE scratch (x INTEGER)")
    con.execute("CREATE TEMP TABLE docs (id INTEGER PRIMARY KEY) WITH (dynamic = true)")
    con.documents("docs").insert({"id": 1, "a": 2})
    assert con.documents("docs").get(1) == {"id": 1, "a": 2}
