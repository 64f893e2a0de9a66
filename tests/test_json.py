"""JSON functions (cext/json.pxi) against Python's sqlite3 (SQLite 3.40's JSON1).

Hypothesis builds nested documents (objects, arrays, unicode text with and
without escapes, integers beyond int64, reals in several spellings, null,
true, false, varied whitespace) and paths that mostly lead somewhere in them;
every JSON function and the -> / ->> operators are evaluated by terndb and by
sqlite3 on the same arguments and must agree on the value, its SQL type and
the error message.  The same documents are then stored in tables and queried
through SQL (projections, WHERE, ORDER BY / GROUP BY on nested paths, a join
on a nested value, the aggregates).  json_each/json_tree are table-valued in
SQLite; their row builders are compared with ``SELECT * FROM json_each(?)``.
"""
from __future__ import annotations

import json
import re
import sqlite3
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import terndb
from terndb._cext import _core
from terndb.engine.errors import DataError, ProgrammingError

F = _core.SCALAR_FUNCTIONS
LITE = sqlite3.connect(":memory:")
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# --------------------------------------------------------------------------
# Comparing one call
# --------------------------------------------------------------------------

class Call:
    """A JSON function call whose arguments may be other calls, so that the
    JSON subtype (JSON text embedded as JSON, not quoted) is exercised."""

    def __init__(self, name: str, *args: Any) -> None:
        self.name = name
        self.args = args

    def sql(self, params: list[Any]) -> str:
        parts = []
        for a in self.args:
            if isinstance(a, Call):
                parts.append(a.sql(params))
            else:
                params.append(a)
                parts.append("?")
        if self.name in ("->", "->>"):
            return f"({parts[0]} {self.name} {parts[1]})"
        return f"{self.name}({', '.join(parts)})"

    def ours(self) -> Any:
        args = [a.ours() if isinstance(a, Call) else a for a in self.args]
        fn = F[self.name]
        fn.check_arity(len(args))
        return fn.func(*args)

    def __repr__(self) -> str:
        params: list[Any] = []
        return f"{self.sql(params)} {params!r}"


def _outcome(thunk: Callable[[], Any], errors: tuple[type, ...]) -> tuple:
    """('ok', type name, value) or ('err', message); str subclasses as str."""
    try:
        v = thunk()
    except errors as e:
        return ("err", str(e))
    return ("ok", "str" if isinstance(v, str) else type(v).__name__, v if not isinstance(v, str) else str(v))


def lite_eval(call: Call) -> tuple:
    params: list[Any] = []
    sql = "SELECT " + call.sql(params)
    return _outcome(lambda: LITE.execute(sql, params).fetchone()[0], (sqlite3.Error,))


def assert_same(call: Call) -> None:
    ours = _outcome(call.ours, (DataError, ProgrammingError))
    assert ours == lite_eval(call), call


# --------------------------------------------------------------------------
# Strategies: documents, their text, paths into them
# --------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "id", "user", "x1", "a b", "c.d", "e[f", "", "k-2", "_u"])
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.5, 1e20, 1e-7, 123456789.125]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)


def _dumps_with_repeated_labels(doc: Any) -> str:
    """Compact JSON text of ``doc`` in which every non-empty object repeats its
    first label at the end, holding its last member's value: SQLite keeps both
    members, and paths still find the first (the one ``doc`` holds)."""
    if isinstance(doc, dict):
        members = [json.dumps(k, ensure_ascii=False) + ":" + _dumps_with_repeated_labels(v) for k, v in doc.items()]
        if doc:
            first, last = next(iter(doc)), list(doc.values())[-1]
            members.append(json.dumps(first, ensure_ascii=False) + ":" + _dumps_with_repeated_labels(last))
        return "{" + ",".join(members) + "}"
    if isinstance(doc, list):
        return "[" + ",".join(_dumps_with_repeated_labels(x) for x in doc) + "]"
    return json.dumps(doc, ensure_ascii=False)


@st.composite
def doc_texts(draw: st.DrawFn, docs: st.SearchStrategy = DOCS) -> tuple[Any, str]:
    """A document and a JSON text of it, spelled in one of several ways
    (escaped or raw unicode, compact or spaced, reals as 1E5 / 1.50)."""
    doc = draw(docs)
    style = draw(st.sampled_from(["compact", "spaced", "ascii", "indent", "repeats"]))
    if style == "repeats":
        text = _dumps_with_repeated_labels(doc)
    elif style == "compact":
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    elif style == "spaced":
        text = json.dumps(doc, ensure_ascii=False)
    elif style == "ascii":
        text = json.dumps(doc, ensure_ascii=True)
    else:
        text = json.dumps(doc, ensure_ascii=False, indent=1)
    if draw(st.booleans()):                       # other spellings of reals
        text = text.replace("e+", "E+").replace(".5,", ".50,")
    return doc, text


def _key_step(k: str) -> str:
    """A path step for key ``k``: bare when SQLite allows it (no '.', '[' or
    quote; keys with spaces are quoted, though they need not be)."""
    if k and not set(k) & set('.["') and " " not in k:
        return "." + k
    return f'."{k}"'


@st.composite
def paths(draw: st.DrawFn, doc: Any) -> str:
    """A path that mostly follows ``doc``: existing keys and indexes,
    [#-N] forms, sometimes a missing step or malformed syntax."""
    p = "$"
    node = doc
    for _ in range(draw(st.integers(0, 4))):
        if isinstance(node, dict) and node and draw(st.integers(0, 5)):
            k = draw(st.sampled_from(sorted(node)))
            p += _key_step(k)
            node = node[k]
        elif isinstance(node, list) and node and draw(st.integers(0, 5)):
            i = draw(st.integers(0, len(node) - 1))
            p += draw(st.sampled_from([f"[{i}]", f"[#-{len(node) - i}]"]))
            node = node[i]
        else:
            p += draw(st.sampled_from([".zz", "[0]", "[#]", "[5]", ".a", '."a b"', "[#-1]"]))
            break
    if draw(st.integers(0, 12)) == 0:
        p += draw(st.sampled_from(["[", ".", "x", "[#-x]", '."open', "[]", "[-1]"]))
    return p


SQL_VALUES = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1),
                       st.floats(allow_nan=False), TEXT)


# --------------------------------------------------------------------------
# Fixed cases: SQLite's quirks, one by one
# --------------------------------------------------------------------------

FIXED_TEXTS = [
    ' { "a" : 1.50 , "b":[1e2, -0, "\\u0041\\/"] } ', "[1,]", '"a\\u0000b"', "123456789012345678901",
    "-9223372036854775808", "9223372036854775808", "  ", "01", "-", "1.", "1e", "1e+", "1E-5", "nullx",
    "[null1]", '"\\ud83d\\ude00"', '"a\tb"', "[1]\x00junk", '{"a":1,}', "{1:2}", "1e400",
    "[" * 2000 + "]" * 2000, "[" * 2001 + "]" * 2001, '{"a":{"b":[1,2,{"c":"x"}]}}',
]
FIXED_PATHS = [
    "$", "$.a", "$.a.b[2].c", "$.a.b[#-1].c", "$.a.b[#-4]", "$.a.b[#]", '$."a".b', "$x", "x", "", "$.",
    "$..a", "$.a[", "$.a.b[x]", "$.a.b[#-x]", "$.a.b[]", "$.a.b[-1]", '$."a', "$.a.b[2]x", "$.a\x00junk",
    "$.zz[", None, 1, "1", "[0]", "a",
]


@pytest.mark.parametrize("text", FIXED_TEXTS)
def test_parse_and_render_quirks(text: str) -> None:
    for name in ("json", "json_valid", "json_type", "json_array_length"):
        assert_same(Call(name, text))
    for p in ("$", "$[0]", "$.a"):
        assert_same(Call("json_extract", text, p))
        assert_same(Call("->", text, p))
        assert_same(Call("->>", text, p))


@pytest.mark.parametrize("path", FIXED_PATHS)
def test_path_quirks(path: Any) -> None:
    doc = '{"a":{"b":[1,2,{"c":"x"}]},"zz":5}'
    for name in ("json_extract", "->", "->>", "json_type", "json_array_length", "json_remove"):
        assert_same(Call(name, doc, path))
    for name in ("json_set", "json_insert", "json_replace"):
        assert_same(Call(name, doc, path, 9))
        assert_same(Call(name, doc, path, Call("json", "[1, {\"q\": 2}]")))


@pytest.mark.parametrize("call", [
    Call("json_set", "{}", "$.a.b[0].c", 1), Call("json_set", "{}", "$.a[1]", 1),
    Call("json_set", "{}", "$", "x"), Call("json_set", "{}", "$", None, "$.a", 1),
    Call("json_set", "[]", "$", 1e20), Call("json_set", '{"a":1}', "$.a", Call("json_array", 1), "$.a[0]", 7),
    Call("json_set", "{}", "$.q", 1, "$.q", 2, "$.r.s", 3, "$.r.t", 4), Call("json_insert", "[1]", "$[#]", 2),
    Call("json_replace", "[1]", "$[1]", 2), Call("json_set", "{}", "$.a"), Call("json_set", "{}", "$.a", b"\x00"),
    Call("json_remove", "[0,1,2]", "$[0]", "$[0]"), Call("json_remove", "[1]", "$"), Call("json_remove", "[1]", None),
    Call("json_extract", '{"a":[1]}', "$.a", "$.zz", "$.a[0]"), Call("json_extract", "[1]", None, "$[0]"),
    Call("json_extract", "[1]"), Call("json_object", "a"), Call("json_object", 1, 2), Call("json_object", "a", 1, "a", 2),
    Call("json_array", 1.0, 1e20, 0.1, 1e-7, float("inf"), 2**63 - 1, "x", None),
    Call("json_array", b"\x00"), Call("json_quote", Call("json", "[1]")), Call("json_quote", 'a"b\\\n\x01\x7f'),
    Call("json_array", Call("->", '{"a":[1]}', "$.a"), Call("->>", '{"a":[1]}', "$.a"),
         Call("json_extract", '{"a":[1]}', "$.a"), Call("json_extract", '{"a":"s"}', "$.a")),
    Call("json_object", "k", Call("json_object", "n", Call("json_array"))),
    Call("json_patch", '{"a":{"b":1,"c":2},"d":[1]}', '{"a":{"b":null,"n":{"x":null,"y":1}},"z":[null],"d":{"e":null}}'),
    Call("json_patch", "5", '{"a":{"b":null}}'), Call("json_patch", "{}", "[1]"), Call("json_patch", "{}", "[1,"),
    Call("json_extract", "[7.630535526512672e-302, 1.00000000000000011102230246251565404236316680908203125]", "$[0]"),
    Call("json_extract", "[1.00000000000000011102230246251565404236316680908203125]", "$[0]"),
    Call("->", "[5,6]", 1), Call("->", "[5,6]", -1), Call("->", "[5,6]", 1.5), Call("->", '{"1x":2}', "1x"),
    Call("->>", "[5,6]", "[1]"), Call("->", None, "$"), Call("->", "[1]", None), Call("->", "[1", None),
    # Repeated object labels: kept and rendered; a path finds the first member.
    Call("json", '{"a":1,"b":{"c":1,"c":[2]},"a":2}'), Call("json_extract", '{"a":1,"a":2}', "$.a"),
    Call("->", '{"a":{"x":1},"a":2}', "a"), Call("->>", '{"a":1,"a":2}', "$.a"),
    Call("json_type", '{"a":1,"a":"x"}', "$.a"), Call("json_array_length", '{"a":[1],"a":[1,2]}', "$.a"),
    Call("json_set", '{"a":1,"a":2}', "$.a", 5, "$.a", 6), Call("json_insert", '{"a":1,"a":2}', "$.b", 5),
    Call("json_replace", '{"a":{"b":1},"a":2}', "$.a.b", 5), Call("json_remove", '{"a":1,"a":2,"a":3}', "$.a", "$.a"),
    Call("json_set", '{"a":1,"a":2}', "$.a", Call("json", '{"x":1,"x":2}')),
    Call("json_patch", '{"a":1,"a":2}', '{"a":null}'), Call("json_patch", '{"a":1,"a":2}', '{"a":3}'),
    Call("json_patch", '{"a":1}', '{"a":2,"a":3}'), Call("json_patch", "{}", '{"a":2,"a":3}'),
    Call("json_patch", '{"a":1,"a":2}', '{"a":null,"a":5}'), Call("json_patch", '{"a":{"x":1}}', '{"a":{"y":1},"a":{"z":1}}'),
    Call("json_patch", '{"a":1}', '{"a":{"y":1},"a":{"z":1}}'), Call("json_patch", '{"b":1}', '{"a":{"y":1,"q":null},"a":{"z":1}}'),
    Call("json_patch", '{"a":{"x":1},"a":2}', '{"a":{"y":null,"z":1,"z":2}}'),
    Call("json_patch", '{"a":1,"a":2}', '{"b":{"c":1,"c":null}}'),
    Call("json_patch", '{"a":{"b":1}}', '{"a":{"c":1},"a":{"b":2}}'),
    Call("json_patch", '{"a":{"b":1}}', '{"a":{"c":1},"a":{"b":2,"d":3}}'),
    Call("json_patch", '{"c":1}', '{"c":1,"c":[]}'), Call("json_patch", '{"b":"s"}', '{"b":"s","b":null}'),
], ids=repr)
def test_edit_and_build_quirks(call: Call) -> None:
    assert_same(call)


# --------------------------------------------------------------------------
# Generated documents, every function
# --------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_functions_match_sqlite(data: st.DataObject) -> None:
    doc, text = data.draw(doc_texts())
    p1, p2 = data.draw(paths(doc)), data.draw(paths(doc))
    v = data.draw(SQL_VALUES)
    for name in ("json", "json_valid", "json_type", "json_array_length", "json_quote", "json_array"):
        assert_same(Call(name, text))
    for name in ("json_extract", "->", "->>", "json_type", "json_array_length", "json_remove"):
        assert_same(Call(name, text, p1))
    assert_same(Call("json_extract", text, p1, p2))
    assert_same(Call("json_remove", text, p1, p2))
    for name in ("json_set", "json_insert", "json_replace"):
        assert_same(Call(name, text, p1, v, p2, Call("json", text)))
        assert_same(Call(name, text, p2, Call("->", text, p1)))
    assert_same(Call("json_array", v, Call("json", text), Call("->>", text, p1)))
    assert_same(Call("json_object", "k", v, "d", Call("json_extract", text, p1)))
    _, text2 = data.draw(doc_texts())
    assert_same(Call("json_patch", text, text2))


@SETTINGS
@given(st.data())
def test_each_and_tree_rows_match_sqlite(data: st.DataObject) -> None:
    doc, text = data.draw(doc_texts())
    path = data.draw(st.one_of(st.none(), paths(doc)))
    for fn, rows in (("json_each", _core.json_each_rows), ("json_tree", _core.json_tree_rows)):
        q = f"SELECT * FROM {fn}(?{', ?' if path is not None else ''})"
        args = (text,) if path is None else (text, path)
        expected = _outcome(lambda: LITE.execute(q, args).fetchall(), (sqlite3.Error,))
        ours = _outcome(lambda: rows(text, path), (DataError, ProgrammingError))
        assert ours == expected, (fn, text, path)


@pytest.mark.parametrize("doc_type", ["TEXT", "JSON"])
def test_repeated_labels_are_kept_in_every_row_and_function(twin: Any, doc_type: str) -> None:
    """SQLite keeps every member of an object, repeated labels included, in
    text and in JSONB alike: json_each/json_tree list them all in document
    order, json() renders them, a path finds the first."""
    text = '{"a":1,"b":{"c":1,"c":[2]},"a":2,"d":[{"e":0,"e":{"f":1}}]}'
    twin.both(f"CREATE TABLE o(id INTEGER PRIMARY KEY, doc {doc_type})")
    if doc_type == "JSON":
        twin.lite.execute("INSERT INTO o VALUES (1, jsonb(?))" if sqlite3.sqlite_version_info >= (3, 45)
                          else "INSERT INTO o VALUES (1, json(?))", (text,))
        twin.tern.execute("INSERT INTO o VALUES (1, ?)", (text,))
    else:
        twin.both("INSERT INTO o VALUES (1, ?)", (text,))
    for sql in [
        "SELECT j.* FROM o, json_each(o.doc) AS j",
        "SELECT j.* FROM o, json_tree(o.doc) AS j",
        "SELECT j.key, j.value, j.fullkey FROM o, json_each(o.doc, '$.b') AS j",
        "SELECT j.key, j.value, j.fullkey, j.path FROM o, json_tree(o.doc, '$.d[0]') AS j",
        "SELECT json(doc), doc -> '$.b', doc ->> '$.a', json_extract(doc, '$.b.c', '$.d[0].e') FROM o",
        "SELECT json_type(doc, '$.b.c'), json_array_length(doc, '$.b.c') FROM o",
        "SELECT json_set(doc, '$.a', 9), json_remove(doc, '$.b.c'), json_patch(doc, '{\"a\":null}') FROM o",
        "SELECT key, count(*) FROM o, json_each(o.doc) GROUP BY key ORDER BY key",
    ]:
        _both(twin, sql)
    assert twin.tern.execute(
        "SELECT key, value FROM json_each('{\"a\":1,\"a\":2}')").fetchall() == [("a", 1), ("a", 2)]


def test_each_rows_on_null_and_malformed() -> None:
    assert _core.json_each_rows(None) == [] and _core.json_tree_rows(None) == []
    with pytest.raises(DataError, match="malformed JSON"):
        _core.json_each_rows("[1,")
    with pytest.raises(DataError, match="JSON path error near 'x'"):
        _core.json_tree_rows("[1]", "$x")


# --------------------------------------------------------------------------
# Through SQL: tables, WHERE, ORDER BY / GROUP BY on nested paths, joins
# --------------------------------------------------------------------------

USERS = st.fixed_dictionaries({
    "user": st.fixed_dictionaries({"id": st.integers(0, 6), "name": st.sampled_from(["ann", "bo", "cy", "é"])}),
    "tags": st.lists(st.sampled_from(["x", "y", 1, 2.5, None]), max_size=3),
    "amount": NUMBERS,
}, optional={"note": TEXT, "a": st.one_of(SCALARS, st.lists(SCALARS, max_size=2))})


def _both(pair: Any, sql: str, params: tuple = ()) -> None:
    def run(con: Any) -> Any:
        return [tuple("str" if isinstance(x, str) else type(x).__name__ for x in r) + tuple(
            str(x) if isinstance(x, str) else x for x in r) for r in con.execute(sql, params).fetchall()]
    expected = _outcome(lambda: run(pair.lite), (sqlite3.Error,))
    ours = _outcome(lambda: run(pair.tern), (terndb.Error,))
    if expected[0] == "err":
        assert ours[0] == "err", (sql, ours)
    else:
        assert ours == expected, sql


QUERIES = [
    "SELECT id, doc->>'$.user.id', doc->'$.user', doc->'tags', doc->>'a', json_extract(doc, '$.tags[0]', '$.note') FROM o ORDER BY id",
    "SELECT id FROM o WHERE doc->>'$.user.id' > 2 AND json_array_length(doc, '$.tags') >= 1 ORDER BY id",
    "SELECT doc->>'$.user.name' AS n, count(*), json_group_array(id), sum(doc->>'$.amount') > 0 FROM o GROUP BY n ORDER BY n",
    "SELECT id, json_type(doc, '$.a') FROM o ORDER BY doc->>'$.user.name', doc->>'$.user.id' DESC, id",
    "SELECT o.id, c.name FROM o JOIN c ON c.id = o.doc ->> '$.user.id' ORDER BY o.id",
    "SELECT c.name, json_group_object(o.id, o.doc->'$.tags') FROM c LEFT JOIN o ON o.doc->>'$.user.id' = c.id GROUP BY c.id ORDER BY c.id",
    "SELECT json_set(doc, '$.user.seen', 1, '$.tags[#]', json('{\"t\": [1]}')), json_remove(doc, '$.tags[0]', '$.note') FROM o ORDER BY id",
    "SELECT json_object('id', id, 'doc', json(doc), 'first', doc->'$.tags[0]') FROM o ORDER BY id",
    "SELECT json_group_array(doc->'$.user') FROM (SELECT doc FROM o ORDER BY id)",
    "SELECT json_patch(doc, '{\"user\":{\"name\":null},\"extra\":[1]}') FROM o ORDER BY id",
]


@pytest.mark.parametrize("doc_type", ["TEXT", "JSON"])
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(docs=st.lists(doc_texts(USERS), min_size=0, max_size=8))
def test_json_through_tables(twin_factory: Callable, doc_type: str, docs: list) -> None:
    # A JSON-declared column stores JSONB and reads back SQLite's json() text of
    # the document, so sqlite3 is given json(?) for the same stored text.
    with twin_factory() as pair:
        pair.both(f"CREATE TABLE o(id INTEGER PRIMARY KEY, doc {doc_type})")
        pair.both("CREATE TABLE c(id INTEGER PRIMARY KEY, name TEXT)")
        for i, (_, text) in enumerate(docs):
            if doc_type == "JSON":
                pair.lite.execute("INSERT INTO o VALUES (?, json(?))", (i, text))
                pair.tern.execute("INSERT INTO o VALUES (?, ?)", (i, text))
            else:
                pair.both("INSERT INTO o VALUES (?, ?)", (i, text))
        for i in range(0, 7, 2):
            pair.both("INSERT INTO c VALUES (?, ?)", (i, f"c{i}"))
        pair.commit()
        for q in QUERIES:
            _both(pair, q)


SIMPLE_PATH = re.compile(r'\$(\.[A-Za-z_][A-Za-z0-9_]*|\."[^"]*"|\[[0-9]+\])*')


@st.composite
def docs_with_paths(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Documents and several paths into the first of them: paths that share
    steps, prefixes of each other, repeats, indexes and missing steps."""
    pairs = draw(st.lists(doc_texts(), min_size=1, max_size=4))
    doc = pairs[0][0]
    found = draw(st.lists(paths(doc), min_size=1, max_size=4))
    extra = draw(st.lists(st.sampled_from(["$", "$.a", "$.a.b", "$[0]", "$[1].a", '$."a b"', "$.id"]),
                          max_size=2))
    return [t for _, t in pairs], found + extra


@pytest.mark.parametrize("doc_type", ["TEXT", "JSON"])
@SETTINGS
@given(data=docs_with_paths(), forms=st.lists(st.sampled_from(["->>", "->", "json_extract"]), min_size=6,
                                              max_size=6))
def test_several_paths_of_one_document_in_one_statement(doc_type: str, data: tuple, forms: list[str]) -> None:
    # One statement reading several constant paths from one column scans each
    # row's document once for all of them (JsonPathGroup): every value must be
    # what each path alone gives in SQLite, malformed documents and paths included.
    texts, found = data
    cols = []
    for i, p in enumerate(found):
        lit = "'" + p.replace("'", "''") + "'"
        form = forms[i % len(forms)]
        if not SIMPLE_PATH.fullmatch(p):
            # sqlglot rewrites the operators' literal paths ('$x' becomes '$.x'): odd
            # paths go through json_extract(), which takes its text as written.
            form = "json_extract"
        cols.append(f"json_extract(doc, {lit})" if form == "json_extract" else f"doc {form} {lit}")
    sql = f"SELECT id, {', '.join(cols)} FROM d ORDER BY id"
    tern = terndb.connect(":memory:")
    lite = sqlite3.connect(":memory:")
    try:
        for con in (tern, lite):
            con.execute(f"CREATE TABLE d (id INTEGER PRIMARY KEY, doc {doc_type})")
        if doc_type == "JSON":
            # JSONB paths: sqlite3 gets the json() text a JSON column reads back.
            lite.executemany("INSERT INTO d (doc) VALUES (json(?))", [(t,) for t in texts])
            tern.executemany("INSERT INTO d (doc) VALUES (?)", [(t,) for t in texts])
        else:
            for con in (tern, lite):
                con.executemany("INSERT INTO d (doc) VALUES (?)", [(t,) for t in texts])

        def run(con: Any) -> Any:
            return [tuple(("str", str(x)) if isinstance(x, str) else (type(x).__name__, x) for x in r)
                    for r in con.execute(sql).fetchall()]
        expected = _outcome(lambda: run(lite), (sqlite3.Error,))
        ours = _outcome(lambda: run(tern), (terndb.Error,))
        if expected[0] == "err":
            assert ours[0] == "err", (sql, ours)
        else:
            assert ours == expected, sql
    finally:
        tern.close()
        lite.close()


def test_malformed_document_in_a_row_is_a_data_error(tcon: Any) -> None:
    tcon.execute("CREATE TABLE t(doc TEXT)")
    tcon.execute("INSERT INTO t VALUES ('{\"a\":1}'), ('{\"a\":')")
    with pytest.raises(terndb.DataError, match="malformed JSON"):
        tcon.execute("SELECT doc->>'a' FROM t").fetchall()
    with pytest.raises(terndb.Error, match="JSON path error near 'x'"):
        tcon.execute("SELECT json_extract('[1]', '$x')").fetchall()
    assert tcon.execute("SELECT json_valid(doc) FROM t").fetchall() == [(1,), (0,)]


def test_json_subtype_is_kept_within_an_expression_only(tcon: Any) -> None:
    # json() marks its result as JSON: embedded as JSON by json_array(); a
    # stored copy is plain text again, as in SQLite.
    row = tcon.execute("SELECT json_array(json('[1, 2]'), '[1, 2]')").fetchone()
    assert row == ('[[1,2],"[1, 2]"]',)
    tcon.execute("CREATE TABLE t(j TEXT)")
    tcon.execute("INSERT INTO t SELECT json('[1]')")
    assert tcon.execute("SELECT json_array(j) FROM t").fetchone() == ('["[1]"]',)


def test_json_each_and_json_tree_in_from_and_joins() -> None:
    """Table-valued json_each/json_tree: alone, with parameters, and per row of a join."""
    queries = [
        "SELECT j.key, j.value, j.type FROM t, json_each(t.doc, '$.tags') AS j ORDER BY t.id, j.key",
        "SELECT t.id, count(*) FROM t JOIN json_each(t.doc, '$.tags') j GROUP BY t.id ORDER BY 1",
        "SELECT key, value, type, atom, id, parent, fullkey, path FROM json_tree('{\"a\":[1,{\"b\":2}]}')",
        "SELECT value FROM json_each(?) WHERE value > 1 ORDER BY 1",
        "SELECT t.id FROM t WHERE EXISTS (SELECT 1 FROM json_each(t.doc, '$.tags') WHERE value = 'b')",
    ]
    results = []
    for mod in (terndb, sqlite3):
        con = mod.connect(":memory:")
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, doc TEXT)")
        con.executemany("INSERT INTO t(doc) VALUES (?)",
                        [('{"tags":["a","b"],"n":1}',), ('{"tags":[1,2,3]}',), ('{"x":1}',)])
        results.append([con.execute(q, ("[1,2,3]",) if "?" in q else ()).fetchall() for q in queries])
    assert results[0] == results[1]
