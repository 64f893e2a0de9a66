"""Columns declared JSON: stored as SQLite JSONB (cext/jsonb.pxi), read as text.

What is checked here (test_json.py runs its sqlite3 comparisons on JSON
columns too): the bytes are SQLite's documented JSONB layout; stored rows
hold 0x0E cells; reads return SQLite's json() text; bad JSON is a DataError
naming the column and leaves the table as it was; SQL NULL, JSON null,
numbers and BLOBs keep their meaning; rows with text cells (older databases)
read and query as before, mixed with JSONB rows; `terndb check` passes.
"""
from __future__ import annotations

import io
import json
import sqlite3
from typing import Any

import pytest

import terndb
from terndb import cli
from terndb._cext import _core as C
from terndb.engine.errors import DataError

DOCS = [
    '{"user": {"id": 3, "name": "ann"}, "tags": ["a", "b"], "total": 12.50}',
    '{"user":{"id":7,"name":"b\\u00e9a \\"q\\""},"tags":[],"total":-0,"big":123456789012345678901}',
    '[1, 2.5e+3, {"x": null}, true, false, "caf\u00e9"]',
    '"just a string"',
    'null',
    ' {"a" : {"b" : {"c" : [10, 20, {"d": "deep"}]}}, "a": "dup"} ',
    '{"k":"' + "x" * 300 + '","n":{"m":' + json.dumps(list(range(100))) + '}}',
]


def test_encoding_is_sqlites_jsonb_layout() -> None:
    # {"a":1}: OBJECT of 4 payload bytes (0x4C); key TEXT "a" (0x17); INT "1" (0x13).
    assert C.jsonb_encode('{"a":1}') == b"\x4c\x17a\x131"
    # Escaped strings are TEXTJ (8) kept as written; reals FLOAT (5) as written.
    assert C.jsonb_encode('["\\n", 1.50]') == b"\x8b\x28\\n\x451.50"
    # Payloads over 11 bytes take a 1-byte size after a 0xC_ header.
    assert C.jsonb_encode('"' + "y" * 20 + '"') == b"\xc7\x14" + b"y" * 20


@pytest.mark.parametrize("text", DOCS)
def test_render_is_sqlite_json_text(text: str) -> None:
    lite = sqlite3.connect(":memory:")
    assert C.jsonb_text(C.jsonb_encode(text)) == lite.execute("SELECT json(?)", (text,)).fetchone()[0]


@pytest.mark.parametrize("path", ["$.user.id", "$.user.name", "$.tags[1]", "$.a.b.c[2].d", "$.a", "$[2].x",
                                  "$[5]", "$.n.m[99]", "$.big", "$.total", "$.nope", "$[0]"])
def test_binary_path_lookup_matches_json_extract(path: str) -> None:
    lite = sqlite3.connect(":memory:")
    for text in DOCS:
        want = lite.execute("SELECT json_extract(?, ?)", (text, path)).fetchone()[0]
        assert C.jsonb_extract(C.jsonb_encode(text), path) == want, (text, path)


def test_rows_store_jsonb_cells_and_read_back_as_text(tcon: Any) -> None:
    tcon.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, doc Json, note TEXT)")
    tcon.executemany("INSERT INTO t(doc, note) VALUES (?, ?)", [(d, d) for d in DOCS])
    tcon.commit()
    lite = sqlite3.connect(":memory:")
    want = [lite.execute("SELECT json(?)", (d,)).fetchone()[0] for d in DOCS]
    got = tcon.execute("SELECT doc, note FROM t ORDER BY id").fetchall()
    assert [r[0] for r in got] == want
    assert all(type(r[0]) is str for r in got)
    assert [r[1] for r in got] == DOCS            # a TEXT column keeps the text as given
    table = tcon._session.schema.table("t", None)
    store = tcon._db.store
    with store.begin_read() as read:
        records = [bytes(v) for _, v in read.txn.cursor(db=store.db(table.db_name)).iternext()]
    assert len(records) == len(DOCS)
    for rec, text in zip(records, DOCS):
        jsonb = C.jsonb_encode(text)
        if len(jsonb) < 128:                      # a one-byte varint length
            assert b"\x0e" + bytes([len(jsonb)]) + jsonb in rec
        assert C.decode_row(rec, 3)[1] == C.jsonb_text(jsonb)


def test_bad_json_is_a_data_error_naming_the_column(tcon: Any) -> None:
    tcon.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, doc JSON)")
    tcon.execute("INSERT INTO t(doc) VALUES ('{\"ok\": 1}')")
    with pytest.raises(DataError, match=r"column t\.doc"):
        tcon.execute("INSERT INTO t(doc) VALUES ('{bad')")
    with pytest.raises(DataError, match=r"column t\.doc"):
        tcon.executemany("INSERT INTO t(doc) VALUES (?)", [("[1]",), ("[1,]",)])
    with pytest.raises(DataError, match=r"column t\.doc"):
        tcon.execute("UPDATE t SET doc = 'nope'")
    tcon.rollback()
    tcon.execute("INSERT INTO t(doc) VALUES ('{\"ok\": 2}')")
    tcon.commit()
    assert tcon.execute("SELECT doc ->> '$.ok' FROM t ORDER BY id").fetchall() == [(2,)]


def test_null_numbers_and_blobs_keep_their_meaning(twin: Any) -> None:
    # SQL NULL stays NULL, JSON null is the text 'null'; numbers (and numeric
    # text, by the column's NUMERIC affinity, as in SQLite) are stored as numbers;
    # BLOBs are stored unchanged.  sqlite3 is given the same values.
    twin.both("CREATE TABLE t(id INTEGER PRIMARY KEY, doc JSON)")
    for v in (None, "null", 12, 2.5, "42", "-7.25", "true", '"s"', b"\x01\x02"):
        twin.both("INSERT INTO t(doc) VALUES (?)", (v,))
    for sql in ["SELECT doc, typeof(doc) FROM t ORDER BY id",
                "SELECT id, doc IS NULL, json_type(doc), doc ->> '$' FROM t WHERE typeof(doc) != 'blob' ORDER BY id",
                "SELECT count(doc), count(*) FROM t"]:
        assert twin.tern.execute(sql).fetchall() == twin.lite.execute(sql).fetchall(), sql


def _rewrite_as_text_cells(con: Any, table_name: str) -> None:
    """Rewrites every stored row of ``table_name`` from its decoded values, so
    its documents become text cells, as in a database written before JSONB storage."""
    table = con._session.schema.table(table_name, None)
    store = con._db.store
    wtxn = store.begin_write(1.0)
    handle = store.db(table.db_name, txn=wtxn)
    rows = [(bytes(k), C.encode_row(C.decode_row(bytes(v)))) for k, v in wtxn.txn.cursor(db=handle).iternext()]
    for key, record in rows:
        wtxn.txn.put(key, record, db=handle)
    wtxn.commit()


def test_text_cells_of_older_rows_still_read_and_query(twin: Any) -> None:
    # Rows holding text cells (older databases) and new JSONB rows read and query alike.
    twin.both("CREATE TABLE t(id INTEGER PRIMARY KEY, doc JSON)")
    for i, d in enumerate(DOCS[:4]):
        twin.tern.execute("INSERT INTO t VALUES (?, ?)", (i, d))
        twin.lite.execute("INSERT INTO t VALUES (?, json(?))", (i, d))
    twin.commit()
    _rewrite_as_text_cells(twin.tern, "t")
    for i, d in enumerate(DOCS[4:], start=4):
        twin.tern.execute("INSERT INTO t VALUES (?, ?)", (i, d))
        twin.lite.execute("INSERT INTO t VALUES (?, json(?))", (i, d))
    for sql in ["SELECT id, doc, doc -> '$.user', doc ->> '$.user.id', json_extract(doc, '$.tags[0]') FROM t ORDER BY id",
                # (document 5 has a duplicate key, which json_each lists once: a text-path limitation)
                "SELECT t.id, key, value FROM t, json_each(t.doc) WHERE t.id <> 5 ORDER BY t.id, key"]:
        assert twin.tern.execute(sql).fetchall() == twin.lite.execute(sql).fetchall(), sql


def test_drop_column_keeps_documents_as_jsonb(twin: Any) -> None:
    # DROP COLUMN copies the other cells as stored: JSONB stays JSONB, including
    # rows written before an ADD COLUMN (no cell for the later columns).
    twin.both("CREATE TABLE t(id INTEGER PRIMARY KEY, x INT, doc JSON)")
    twin.tern.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, i, d) for i, d in enumerate(DOCS)])
    twin.lite.executemany("INSERT INTO t VALUES (?, ?, json(?))", [(i, i, d) for i, d in enumerate(DOCS)])
    twin.both("ALTER TABLE t ADD COLUMN y TEXT DEFAULT 'dflt'")
    twin.both("INSERT INTO t VALUES (100, 1, json('{\"a\": [1]}'), 'set')")
    twin.both("ALTER TABLE t DROP COLUMN x")
    twin.commit()
    for sql in ["SELECT id, doc, y, doc ->> '$.user.id', doc -> '$.a' FROM t ORDER BY id",
                "SELECT y, count(*) FROM t GROUP BY y ORDER BY y"]:
        assert twin.tern.execute(sql).fetchall() == twin.lite.execute(sql).fetchall(), sql
    table = twin.tern._session.schema.table("t", None)
    store = twin.tern._db.store
    with store.begin_read() as read:
        records = [bytes(v) for _, v in read.txn.cursor(db=store.db(table.db_name)).iternext()]
    assert len(records) == len(DOCS) + 1
    for rec, text in zip(records, DOCS):
        assert C.jsonb_encode(text) in rec           # the document's JSONB, not its text
    twin.both("ALTER TABLE t DROP COLUMN y")
    assert twin.tern.execute("SELECT * FROM t ORDER BY id").fetchall() == \
        twin.lite.execute("SELECT * FROM t ORDER BY id").fetchall()


def test_add_generated_column_keeps_documents_as_jsonb(twin: Any) -> None:
    # Filling a just-added generated column copies the other cells as stored.
    twin.both("CREATE TABLE t(id INTEGER PRIMARY KEY, doc JSON)")
    twin.tern.executemany("INSERT INTO t VALUES (?, ?)", [(i, d) for i, d in enumerate(DOCS)])
    twin.lite.executemany("INSERT INTO t VALUES (?, json(?))", [(i, d) for i, d in enumerate(DOCS)])
    twin.both("ALTER TABLE t ADD COLUMN d INT DEFAULT 7")
    twin.both("ALTER TABLE t ADD COLUMN u GENERATED ALWAYS AS (doc ->> '$.user.id') VIRTUAL")
    twin.commit()
    sql = "SELECT id, doc, d, u, doc -> '$.user' FROM t ORDER BY id"
    assert twin.tern.execute(sql).fetchall() == twin.lite.execute(sql).fetchall()
    table = twin.tern._session.schema.table("t", None)
    store = twin.tern._db.store
    with store.begin_read() as read:
        records = [bytes(v) for _, v in read.txn.cursor(db=store.db(table.db_name)).iternext()]
    for rec, text in zip(records, DOCS):
        assert C.jsonb_encode(text) in rec           # the document's JSONB, not its text
        assert C.row_column_count(rec) == 4


def test_join_index_and_returning_on_a_json_column(twin: Any) -> None:
    twin.both("CREATE TABLE c(id INTEGER PRIMARY KEY, name TEXT)")
    twin.both("CREATE TABLE o(id INTEGER PRIMARY KEY, doc JSON)")
    for i in range(1, 6):
        twin.both("INSERT INTO c VALUES (?, ?)", (i, f"c{i}"))
    for i in range(40):
        d = json.dumps({"user": {"id": i % 7}, "total": i * 1.5, "tags": ["t"] * (i % 3)}, indent=1)
        twin.tern.execute("INSERT INTO o VALUES (?, ?)", (i, d))
        twin.lite.execute("INSERT INTO o VALUES (?, json(?))", (i, d))
    twin.both("CREATE INDEX o_user ON o (doc ->> '$.user.id')")
    for sql in ["SELECT c.name, count(*), sum(o.doc ->> '$.total') FROM o JOIN c ON c.id = o.doc ->> '$.user.id' "
                "GROUP BY c.name ORDER BY c.name",
                "SELECT id FROM o WHERE doc ->> '$.user.id' = 3 ORDER BY id",
                "SELECT doc ->> '$.user.id' AS u, max(doc -> '$.tags') FROM o GROUP BY u ORDER BY u"]:
        assert twin.tern.execute(sql).fetchall() == twin.lite.execute(sql).fetchall(), sql
    twin.both("UPDATE o SET doc = json_set(doc, '$.user.id', 99) WHERE id < 5")
    sql = "SELECT id FROM o WHERE doc ->> '$.user.id' = 99 ORDER BY id"
    assert twin.tern.execute(sql).fetchall() == [(i,) for i in range(5)]
    # RETURNING sees the stored (canonical) text, as a later SELECT does.
    got = twin.tern.execute("INSERT INTO o VALUES (100, ' { \"a\" : [1, 2] } ') RETURNING doc").fetchall()
    assert got == [('{"a":[1,2]}',)]


def test_check_passes_on_a_database_with_json_columns(tmp_path: Any) -> None:
    path = str(tmp_path / "db")
    con = terndb.connect(path)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, doc JSON)")
    con.execute("CREATE INDEX t_doc ON t(doc)")   # keys are the canonical text
    con.execute("CREATE INDEX t_user ON t(doc ->> '$.user.id')")
    con.executemany("INSERT INTO t(doc) VALUES (?)", [(d,) for d in DOCS[:-1]])  # the last: too long a key
    con.commit()
    con.close()
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["check", path], stdout=out, stderr=err) == 0, out.getvalue() + err.getvalue()


def test_sqlalchemy_json_type_round_trips(tmp_path: Any) -> None:
    import sqlalchemy as sa
    engine = sa.create_engine(f"terndb:///{tmp_path / 'db'}")
    meta = sa.MetaData()
    t = sa.Table("docs", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("doc", sa.JSON))
    meta.create_all(engine)
    doc = {"user": {"id": 5, "name": "z\u00e9"}, "tags": [1, None, True]}
    with engine.begin() as conn:
        conn.execute(t.insert(), [{"id": 1, "doc": doc}])
    with engine.connect() as conn:
        assert conn.execute(sa.select(t.c.doc)).scalar_one() == doc
        assert conn.execute(sa.text("SELECT doc ->> '$.user.name' FROM docs")).scalar_one() == "z\u00e9"
    engine.dispose()
