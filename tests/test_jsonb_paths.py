"""Path extractors over JSON columns read as JSONB documents (no text rendering).

When a SELECT level reads a JSON column only through ``->``, ``->>``,
json_extract or json_type with a constant path, its table readers hand the
cells on as JSONB and the extractor walks the bytes (engine/jsonb_reads.py,
cext/jsonb.pxi ``_jb_extract``).  Checked here: which columns the planner
picks (and the references that must keep the text), and that every leaf kind,
missing paths, NULL documents, non-document cells and joins give sqlite3's
JSON1 results, with and without a plain reference beside the extractors.
"""
from __future__ import annotations

import json
from typing import Any

import pytest

import terndb
from terndb.engine.catalog import Column, Table
from terndb.engine.jsonb_reads import json_columns_read_as_jsonb
from terndb.engine.sqlparse import parse_one

DOCS = [
    {"user": {"id": 3, "name": "ann"}, "tags": ["a", "b"], "total": 12.5, "ok": True},
    {"user": {"id": 7, "name": "b\u00e9a \"q\"\n"}, "tags": [], "total": -0.0, "ok": False, "n": None},
    {"user": {"id": 12345678901234567890}, "total": 1e300, "tags": [[1, {"x": "y"}], "z"]},
    {"user": {"id": -5, "name": ""}, "total": 2.50, "nested": {"a": {"b": [1, 2, {"c": "d"}]}}},
    [1, 2.5e3, {"x": None}, True, "caf\u00e9"],
    "just a string",
    None,                                  # the JSON null document
    {"user": "not an object", "total": "12"},
]
RAW_DOCS = ['{"total": 1.50, "z": -0, "e": 1E+2, "big": 123456789012345678901234}',
            '{"k\\u0041b": [3, -0.0, 1e-7], "x y": {"z": null, "w": "\\t"}, "tags": [{"q": [[]]}]}']

PATHS = ["$", "$.user", "$.user.id", "$.user.name", "$.tags", "$.tags[0]", "$.tags[0][1].x", "$.total",
         "$.ok", "$.n", "$.missing", "$.nested.a.b[2]", "$.nested.a.b[9]", "$[1]", "$[2].x", "$[4]", "$.z",
         "$.e", "$.big", '$."user"']


def _table(*decls: tuple[str, str]) -> Table:
    return Table(name="o", object_id=1, columns=[Column(name=n, decl_type=t) for n, t in decls])


def _picked(sql: str, alias: str = "o") -> list[int]:
    table = _table(("id", "INTEGER"), ("doc", "JSON"), ("meta", "JSON"), ("note", "TEXT"))
    return json_columns_read_as_jsonb(parse_one(sql), alias, table)


@pytest.mark.parametrize("sql, picked", [
    ("SELECT doc ->> '$.a', (doc) -> 'b', json_extract(o.doc, '$.c'), json_type(doc, '$.d') FROM o", [1, 2]),
    ("SELECT doc ->> '$.a', meta ->> '$.b' FROM o WHERE note = 'x'", [1, 2]),
    ("SELECT doc ->> '$.a', doc FROM o", [2]),                      # a plain read needs the text
    ("SELECT doc ->> '$.a', meta FROM o", [1]),
    ("SELECT note FROM o WHERE id > 2", [1, 2]),                    # documents not read at all
    ("SELECT count(*) FROM o", [1, 2]),
    ("SELECT length(doc), json_extract(meta, '$.a', '$.b') FROM o", []),
    ("SELECT json_type(doc), json_type(meta, '$.a', 1) FROM o", [1]),
    ("SELECT doc ->> '$.a' FROM o WHERE meta IS NULL", [1]),
    ("SELECT * FROM o WHERE doc ->> '$.a' = 1", []),
    ("SELECT o.*, meta -> '$.a' FROM o", []),
    ("SELECT count(*), doc ->> '$.a' FROM o GROUP BY 2", [1, 2]),
    ("SELECT doc ->> '$.a' FROM o JOIN c USING (id)", []),
    ("SELECT doc ->> '$.a', (SELECT count(*) FROM c WHERE c.x = o.doc) FROM o", [2]),  # correlated
    ("SELECT doc ->> '$.a', c.doc FROM o JOIN c ON c.id = o.id", [1, 2]),              # another table's doc
    ("SELECT doc -> p FROM o", [2]),                                                  # path not constant
    ("SELECT o.id FROM o, json_each(o.doc)", [1, 2]),
    ("SELECT o.id, j.key, json_array_length(meta, p) FROM o JOIN json_tree(o.doc, '$.a') j", [1, 2]),
    ("SELECT json_quote(doc), json_array_length(meta) FROM o", [2]),
])
def test_columns_read_only_through_extractors_are_picked(sql: str, picked: list[int]) -> None:
    assert _picked(sql) == picked


def _load(twin: Any, docs: list[Any]) -> None:
    twin.both("CREATE TABLE c(id INTEGER PRIMARY KEY, name TEXT)")
    twin.both("CREATE TABLE o(id INTEGER PRIMARY KEY, doc JSON, note TEXT)")
    for i in range(-6, 8):
        twin.both("INSERT INTO c VALUES (?, ?)", (i, f"c{i}"))
    for i, d in enumerate(docs):
        twin.tern.execute("INSERT INTO o VALUES (?, ?, ?)", (i, d, f"n{i}"))
        # sqlite3 keeps what it is given: give it the canonical text a JSON column reads back.
        twin.lite.execute("INSERT INTO o VALUES (?, json(?), ?)" if isinstance(d, str) else
                          "INSERT INTO o VALUES (?, ?, ?)", (i, d, f"n{i}"))
    twin.commit()


def _same(twin: Any, sql: str) -> None:
    def typed(rows: list) -> list:
        # (str subclasses such as JSON-subtyped text compare as str)
        return [tuple(("str" if isinstance(v, str) else type(v).__name__, v) for v in r) for r in rows]
    assert typed(twin.tern.execute(sql).fetchall()) == typed(twin.lite.execute(sql).fetchall()), sql


ALL_DOCS = [json.dumps(d) for d in DOCS] + RAW_DOCS + [None, 42, 2.5, b"\x01\x02"]


@pytest.mark.parametrize("form", ["->>", "->", "json_extract", "json_type"])
def test_every_leaf_kind_matches_sqlite(twin: Any, form: str) -> None:
    _load(twin, ALL_DOCS)
    for p in PATHS:
        lit = "'" + p + "'"
        call = f"doc {form} {lit}" if form.startswith("-") else f"{form}(doc, {lit})"
        # Extractors alone (JSONB reads), then beside a plain read of the column (text reads).
        _same(twin, f"SELECT id, {call} FROM o WHERE typeof(doc) != 'blob' ORDER BY id")
        _same(twin, f"SELECT id, {call}, length(doc) FROM o WHERE typeof(doc) != 'blob' ORDER BY id")


def test_json_type_of_whole_documents_matches_sqlite(twin: Any) -> None:
    _load(twin, ALL_DOCS)
    _same(twin, "SELECT id, json_type(doc) FROM o WHERE typeof(doc) != 'blob' ORDER BY id")
    _same(twin, "SELECT id, json_type(doc), length(doc) FROM o WHERE typeof(doc) != 'blob' ORDER BY id")
    _same(twin, "SELECT json_type(doc), count(*) FROM o WHERE typeof(doc) != 'blob' GROUP BY 1 ORDER BY 1")


def test_json_each_tree_and_array_length_over_jsonb_reads_match_sqlite(twin: Any) -> None:
    _load(twin, ALL_DOCS)
    for sql in [
        "SELECT o.id, j.key, j.value, j.type, j.atom, j.id, j.parent, j.fullkey, j.path "
        "FROM o, json_each(o.doc) j WHERE typeof(o.doc) != 'blob' ORDER BY o.id, j.id",
        "SELECT o.id, j.key, j.value, j.type, j.id, j.parent, j.fullkey, j.path "
        "FROM o, json_tree(o.doc, '$.user') j WHERE typeof(o.doc) != 'blob' ORDER BY o.id, j.id",
        "SELECT o.id, j.fullkey, j.value FROM o JOIN json_tree(o.doc) j ON j.type = 'integer' "
        "WHERE typeof(o.doc) != 'blob' ORDER BY o.id, j.id",
        "SELECT id, json_array_length(doc), json_array_length(doc, '$.tags'), doc ->> '$.total' FROM o "
        "WHERE typeof(doc) != 'blob' ORDER BY id",
    ]:
        _same(twin, sql)


def test_joins_groups_and_filters_on_paths_match_sqlite(twin: Any) -> None:
    _load(twin, [json.dumps({"user": {"id": i % 9 - 3}, "total": i * 1.25, "tags": ["t"] * (i % 3)})
                 for i in range(60)] + [None, "{}", '{"user": {"id": null}}'])
    twin.both("CREATE INDEX o_user ON o (doc ->> '$.user.id')")
    for sql in [
        "SELECT c.name, count(*), sum(o.doc ->> '$.total') FROM o JOIN c ON c.id = o.doc ->> '$.user.id' "
        "GROUP BY c.name ORDER BY c.name",
        "SELECT c.name, count(o.id) FROM c LEFT JOIN o ON o.doc ->> '$.user.id' = c.id GROUP BY c.id ORDER BY c.id",
        "SELECT id FROM o WHERE doc ->> '$.user.id' = 2 ORDER BY id",
        "SELECT id, doc -> '$.tags' FROM o WHERE doc ->> '$.user.id' BETWEEN -1 AND 1 ORDER BY doc ->> '$.total' DESC",
        "SELECT doc ->> '$.user.id' AS u, max(doc -> '$.tags'), json_type(doc, '$.tags') FROM o GROUP BY u ORDER BY u",
        "SELECT a.id, b.id FROM o a JOIN o b ON a.doc ->> '$.user.id' = b.doc ->> '$.user.id' "
        "WHERE a.id < 5 AND b.id < 20 ORDER BY 1, 2",
        # One side reads documents as JSONB, the other (a plain read) as text.
        "SELECT a.id, b.doc FROM o a JOIN o b ON b.id = a.doc ->> '$.user.id' WHERE a.id < 10 ORDER BY 1",
        "SELECT id, (SELECT count(*) FROM o i WHERE i.doc ->> '$.user.id' = o.doc ->> '$.user.id') FROM o "
        "WHERE id < 8 ORDER BY id",
        # Documents not read at all.
        "SELECT id, note FROM o WHERE id % 7 = 0 ORDER BY id",
        "SELECT count(*), max(note) FROM o",
    ]:
        _same(twin, sql)


def test_path_errors_and_non_simple_paths_over_jsonb_reads(twin: Any) -> None:
    _load(twin, [json.dumps(d) for d in DOCS[:4]])
    # Paths the fast extractor does not take read the document's text: same results.
    _same(twin, "SELECT id, doc -> '$.tags[#-1]', json_extract(doc, '$.user.id', '$.total') FROM o ORDER BY id")
    with pytest.raises(terndb.DataError, match="JSON path error near"):
        twin.tern.execute("SELECT doc ->> '$.user[' FROM o").fetchall()
