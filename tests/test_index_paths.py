"""Index access paths: expression (JSON path) indexes, IN lists, ranges.

Every query runs on terndb and on sqlite3 over the same data and must give
the same rows; EXPLAIN QUERY PLAN must name the index SQLite would use (the
access path only narrows what is read, so a wrong choice shows up as a wrong
result here, a missed one as a SCAN in the plan).  Hypothesis mixes value
types (integers, reals, numeric text, text, NULL, missing paths) so that
comparison affinity decides which rows match.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import terndb

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

SCHEMA = [
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, region TEXT, doc TEXT)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, doc TEXT, n INTEGER, t TEXT)",
    "CREATE INDEX orders_user ON orders (doc ->> '$.user.id')",
    "CREATE INDEX orders_total ON orders (json_extract(doc, '$.total'))",
    "CREATE INDEX orders_n ON orders (n)",
    "CREATE INDEX orders_t_n ON orders (t, n)",
    "CREATE INDEX customers_lname ON customers (lower(name))",
    "CREATE INDEX customers_key ON customers (doc ->> '$.key')",
]


def _orders(count: int) -> list[tuple]:
    rows = []
    for i in range(1, count + 1):
        user: Any = i % 7 if i % 5 else str(i % 7)       # some ids are text
        doc = {"user": {"id": user}, "total": [1.5, 2, "3", None, 10][i % 5], "items": [i, i + 1]}
        if i % 11 == 0:
            del doc["user"]                               # a missing path
        rows.append((i, json.dumps(doc), i % 4 if i % 9 else None, ["a", "b", "10", "9"][i % 4]))
    return rows


def _customers(count: int) -> list[tuple]:
    return [(i, ["Ann", "ann", "BOB", "bob", None][i % 5], f"r{i % 3}", json.dumps({"key": i % 7}))
            for i in range(count)]


@pytest.fixture
def pair():
    tern = terndb.connect(":memory:")
    lite = sqlite3.connect(":memory:")
    for con in (tern, lite):
        for stmt in SCHEMA:
            con.execute(stmt)
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", _orders(60))
        con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", _customers(20))
        con.commit()
    yield tern, lite
    tern.close()
    lite.close()


def _plan(con: Any, sql: str, params: tuple = ()) -> list[str]:
    return [row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()]


def _same(pair: tuple, sql: str, params: tuple = ()) -> list[tuple]:
    tern, lite = pair
    ours = tern.execute(sql, params).fetchall()
    theirs = lite.execute(sql, params).fetchall()
    assert sorted(ours, key=repr) == sorted(theirs, key=repr), sql
    return ours


# --------------------------------------------------------------------------
# Expression indexes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sql, params, detail", [
    ("SELECT id FROM orders WHERE doc ->> '$.user.id' = ?", (3,),
     "SEARCH orders USING INDEX orders_user (<expr>=?)"),
    ("SELECT id FROM orders o WHERE (o.doc ->> '$.user.id') = '3'", (),
     "SEARCH o USING INDEX orders_user (<expr>=?)"),
    ("SELECT id FROM orders WHERE json_extract(doc, '$.total') > 1.5", (),
     "SEARCH orders USING INDEX orders_total (<expr>>?)"),
    ("SELECT id FROM orders WHERE JSON_EXTRACT(doc, '$.total') BETWEEN 2 AND 10", (),
     "SEARCH orders USING INDEX orders_total (<expr>>? AND <expr><?)"),
    ("SELECT id FROM orders WHERE doc ->> '$.user.id' IN (1, '2', 3, 3, NULL)", (),
     "SEARCH orders USING INDEX orders_user (<expr>=?)"),
    ("SELECT id, name FROM customers WHERE lower(name) = 'ann'", (),
     "SEARCH customers USING INDEX customers_lname (<expr>=?)"),
    ("SELECT id, name FROM customers WHERE 'bob' = LOWER(name)", (),
     "SEARCH customers USING INDEX customers_lname (<expr>=?)"),
])
def test_expression_index_is_used_like_sqlite(pair, sql, params, detail):
    tern, lite = pair
    _same(pair, sql, params)
    assert _plan(lite, sql, params) == [detail]       # the expectation is SQLite's own plan
    assert _plan(tern, sql, params) == [detail]


@pytest.mark.parametrize("sql", [
    # json_extract() and ->> are different expressions to SQLite: no index match.
    "SELECT id FROM orders WHERE json_extract(doc, '$.user.id') = 3",
    "SELECT id FROM orders WHERE doc ->> '$.total' = 2",
    # A different path, or the column of another expression.
    "SELECT id FROM orders WHERE doc ->> '$.user.name' = 'x'",
    "SELECT id FROM customers WHERE upper(name) = 'ANN'",
])
def test_other_spellings_scan(pair, sql):
    tern, lite = pair
    _same(pair, sql)
    assert _plan(tern, sql)[0].startswith("SCAN") and _plan(lite, sql)[0].startswith("SCAN")


def test_comparison_affinity_blocks_the_index_as_in_sqlite(pair):
    # c.id has INTEGER affinity: the comparison converts the expression's value,
    # so the index (holding unconverted values, some of them text) cannot serve it.
    sql = "SELECT o.id FROM customers c JOIN orders o ON o.doc ->> '$.user.id' = c.id WHERE c.id = 3"
    rows = _same(pair, sql)
    assert len(rows) > 0
    assert not any("orders_user" in d for d in _plan(pair[0], sql))
    assert not any("orders_user" in d for d in _plan(pair[1], sql))


def test_join_between_two_documents_uses_the_inner_expression_index(pair):
    sql = ("SELECT c.id, o.id FROM customers c JOIN orders o ON o.doc ->> '$.user.id' = c.doc ->> '$.key' "
           "WHERE c.region = 'r1'")
    rows = _same(pair, sql)
    assert rows
    plan = _plan(pair[0], sql)
    assert plan == ["SCAN c", "SEARCH o USING INDEX orders_user (<expr>=?)"]


def test_expression_index_kept_up_to_date(pair):
    tern, lite = pair
    for con in (tern, lite):
        con.execute("UPDATE orders SET doc = json_set(doc, '$.user.id', 42) WHERE id % 3 = 0")
        con.execute("DELETE FROM orders WHERE id % 10 = 0")
        con.execute("INSERT INTO orders VALUES (1000, '{\"user\": {\"id\": 42}}', 1, 'a')")
        con.commit()
    rows = _same(pair, "SELECT id FROM orders WHERE doc ->> '$.user.id' = 42")
    assert len(rows) == len([i for i in range(3, 61, 3) if i % 10]) + 1


# --------------------------------------------------------------------------
# IN lists on columns and rowids
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sql, detail", [
    # (doc is selected so that no index covers the query: SQLite would say COVERING INDEX.)
    ("SELECT id, n, doc FROM orders WHERE n IN (1, 3, 3, NULL)", "SEARCH orders USING INDEX orders_n (n=?)"),
    ("SELECT id, n, doc FROM orders WHERE n IN ('1', 2.0)", "SEARCH orders USING INDEX orders_n (n=?)"),
    ("SELECT id, doc FROM orders WHERE t = 'a' AND n IN (0, 2)",
     "SEARCH orders USING INDEX orders_t_n (t=? AND n=?)"),
    ("SELECT id, doc FROM orders WHERE t IN ('10', 9, 'b')", "SEARCH orders USING INDEX orders_t_n (t=?)"),
    ("SELECT id FROM orders WHERE id IN (5, 1, 5, '7', 2.5, NULL, 1000)",
     "SEARCH orders USING INTEGER PRIMARY KEY (rowid=?)"),
])
def test_in_lists_probe_the_index(pair, sql, detail):
    tern, lite = pair
    ours = _same(pair, sql)
    assert ours == lite.execute(sql).fetchall()       # index order, as SQLite returns them
    assert _plan(tern, sql) == [detail]
    assert _plan(lite, sql) == [detail]


def test_in_list_with_parameters_and_a_correlated_probe(pair):
    _same(pair, "SELECT id FROM orders WHERE n IN (?, ?)", (2, "1"))
    _same(pair, "SELECT c.id, o.id FROM customers c JOIN orders o ON o.id IN (c.id, c.id + 1, 2)")


# --------------------------------------------------------------------------
# Hypothesis: random values and predicates against sqlite3
# --------------------------------------------------------------------------

_values = st.one_of(st.none(), st.integers(-3, 3), st.sampled_from([1.0, 2.5, -0.5]),
                    st.sampled_from(["1", "2", "a", "B", "", "2.5"]))
_docs = st.one_of(st.builds(lambda v: {"k": v}, _values), st.just({}), st.builds(lambda v: {"k": [v]}, _values))
_ops = st.sampled_from(["=", "<", "<=", ">", ">=", "BETWEEN", "IN"])
_targets = st.sampled_from(["doc ->> '$.k'", "json_extract(doc, '$.k')", "lower(t)", "n", "t", "id"])


@SETTINGS
@given(docs=st.lists(st.tuples(_docs, _values, _values), min_size=0, max_size=25),
       target=_targets, op=_ops, args=st.lists(_values, min_size=1, max_size=4), use_params=st.booleans(),
       order=st.one_of(st.none(), st.tuples(_targets, st.sampled_from(["", " DESC"]), st.integers(0, 6))))
def test_random_predicates_match_sqlite(docs, target, op, args, use_params, order):
    tern = terndb.connect(":memory:")
    lite = sqlite3.connect(":memory:")
    try:
        for con in (tern, lite):
            con.execute("CREATE TABLE d (id INTEGER PRIMARY KEY, doc TEXT, n NUMERIC, t TEXT)")
            con.execute("CREATE INDEX d_k ON d (doc ->> '$.k')")
            con.execute("CREATE INDEX d_jk ON d (json_extract(doc, '$.k'))")
            con.execute("CREATE INDEX d_lt ON d (lower(t))")
            con.execute("CREATE INDEX d_n ON d (n)")
            con.execute("CREATE INDEX d_t ON d (t)")
            con.executemany("INSERT INTO d (doc, n, t) VALUES (?, ?, ?)",
                            [(json.dumps(doc), n, t) for doc, n, t in docs])
        def lit(v: Any) -> str:
            return "?" if use_params else ("NULL" if v is None else repr(v) if not isinstance(v, str)
                                           else "'" + v + "'")
        params = []
        if op == "IN":
            cond = f"{target} IN ({', '.join(lit(a) for a in args)})"
            params = list(args)
        elif op == "BETWEEN":
            lo, hi = (args + args)[:2]
            cond = f"{target} BETWEEN {lit(lo)} AND {lit(hi)}"
            params = [lo, hi]
        else:
            cond = f"{target} {op} {lit(args[0])}"
            params = [args[0]]
        sql = f"SELECT id FROM d WHERE {cond}"
        p = tuple(params) if use_params else ()
        assert sorted(tern.execute(sql, p).fetchall()) == sorted(lite.execute(sql, p).fetchall()), (sql, p)
        for agg in ("min", "max"):
            sql = f"SELECT {agg}({target}) FROM d"
            assert tern.execute(sql).fetchall() == lite.execute(sql).fetchall(), sql
        if order is not None:
            # ORDER BY an indexed term then the rowid: a total order, compared exactly.
            key, direction, limit = order
            sql = f"SELECT id, {key} FROM d WHERE {cond} ORDER BY {key}{direction}, id LIMIT {limit}"
            assert tern.execute(sql, p).fetchall() == lite.execute(sql, p).fetchall(), (sql, p)
    finally:
        tern.close()
        lite.close()


# --------------------------------------------------------------------------
# ORDER BY delivered by the access path (no sort)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sql, plan", [
    ("SELECT id, n, doc FROM orders ORDER BY n LIMIT 7", ["SCAN orders USING INDEX orders_n"]),
    ("SELECT id, n, doc FROM orders ORDER BY n, id LIMIT 30", ["SCAN orders USING INDEX orders_n"]),
    ("SELECT id, doc FROM orders WHERE n > 1 ORDER BY n LIMIT 9", ["SEARCH orders USING INDEX orders_n (n>?)"]),
    ("SELECT id, doc FROM orders WHERE t = 'b' ORDER BY n", ["SEARCH orders USING INDEX orders_t_n (t=?)"]),
    ("SELECT id, doc FROM orders WHERE t = 'b' ORDER BY t, n, id", ["SEARCH orders USING INDEX orders_t_n (t=?)"]),
    ("SELECT id, doc FROM orders WHERE t IN ('b', '10') ORDER BY t, n",
     ["SEARCH orders USING INDEX orders_t_n (t=?)"]),
    ("SELECT id FROM orders ORDER BY doc ->> '$.user.id' LIMIT 12", ["SCAN orders USING INDEX orders_user"]),
    ("SELECT id, doc FROM orders WHERE id > 10 ORDER BY id LIMIT 5",
     ["SEARCH orders USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"]),
    ("SELECT id, doc FROM orders ORDER BY rowid", ["SCAN orders"]),
    ("SELECT id FROM orders WHERE id IN (9, 3, 6) ORDER BY id", ["SEARCH orders USING INTEGER PRIMARY KEY (rowid=?)"]),
])
def test_order_by_satisfied_by_the_access_path(pair, sql, plan):
    tern, lite = pair
    assert tern.execute(sql).fetchall() == lite.execute(sql).fetchall()
    assert _plan(tern, sql) == plan


@pytest.mark.parametrize("sql", [
    "SELECT id, doc FROM orders ORDER BY n DESC, id LIMIT 5, 3",    # the index is ascending
    "SELECT id, doc FROM orders ORDER BY n, t LIMIT 5",             # ties on n are by rowid, not t
    "SELECT id, doc FROM orders ORDER BY n NULLS LAST, id LIMIT 15",
    "SELECT id, doc FROM orders ORDER BY t COLLATE NOCASE, id LIMIT 5",
    "SELECT id, doc FROM orders WHERE t = 'b' ORDER BY id",          # index order is n, then rowid
])
def test_other_orders_still_sort(pair, sql):
    tern, lite = pair
    assert tern.execute(sql).fetchall() == lite.execute(sql).fetchall()
    assert _plan(tern, sql)[-1] == "USE TEMP B-TREE FOR ORDER BY"


# --------------------------------------------------------------------------
# OR of indexable terms: a union of index accesses
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sql, plan", [
    ("SELECT id, doc FROM orders WHERE n = 1 OR id = 7",
     ["MULTI-INDEX OR", "INDEX 1", "SEARCH orders USING INDEX orders_n (n=?)",
      "INDEX 2", "SEARCH orders USING INTEGER PRIMARY KEY (rowid=?)"]),
    ("SELECT id, doc FROM orders WHERE doc ->> '$.user.id' = 2 OR (t = 'a' AND n > 0) OR n IN (3, 1)",
     ["MULTI-INDEX OR", "INDEX 1", "SEARCH orders USING INDEX orders_user (<expr>=?)",
      "INDEX 2", "SEARCH orders USING INDEX orders_t_n (t=? AND n>?)",
      "INDEX 3", "SEARCH orders USING INDEX orders_n (n=?)"]),
])
def test_or_of_indexable_terms(pair, sql, plan):
    tern, lite = pair
    rows = _same(pair, sql)
    assert len(rows) == len(set(rows))                     # each row once
    assert _plan(tern, sql) == plan


def test_or_with_an_unindexed_term_scans(pair):
    sql = "SELECT id FROM orders WHERE n = 1 OR doc LIKE '%total\": 2%'"
    _same(pair, sql)
    assert _plan(pair[0], sql) == ["SCAN orders"]


def test_or_on_the_inner_side_of_a_join(pair):
    sql = ("SELECT c.id, o.id FROM customers c JOIN orders o ON (o.id = c.id OR o.n = c.id) "
           "WHERE c.region = 'r2'")
    _same(pair, sql)
    assert "MULTI-INDEX OR" in _plan(pair[0], sql)


# --------------------------------------------------------------------------
# MIN / MAX from an end of an index; ORDER BY ... DESC read backwards
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sql, plan", [
    ("SELECT min(n) FROM orders", ["SEARCH orders USING COVERING INDEX orders_n", "AGGREGATE"]),
    ("SELECT max(n) AS top FROM orders", ["SEARCH orders USING COVERING INDEX orders_n", "AGGREGATE"]),
    ("SELECT max(t) FROM orders", ["SEARCH orders USING COVERING INDEX orders_t_n", "AGGREGATE"]),
    ("SELECT min(doc ->> '$.user.id') FROM orders", ["SEARCH orders USING INDEX orders_user", "AGGREGATE"]),
    ("SELECT max(doc ->> '$.user.id') FROM orders", ["SEARCH orders USING INDEX orders_user", "AGGREGATE"]),
    ("SELECT max(lower(name)) FROM customers", ["SEARCH customers USING INDEX customers_lname", "AGGREGATE"]),
    ("SELECT id, doc FROM orders ORDER BY n DESC, id DESC LIMIT 9", ["SCAN orders USING INDEX orders_n"]),
    ("SELECT id, doc FROM orders WHERE t = 'b' ORDER BY n DESC LIMIT 3",
     ["SEARCH orders USING INDEX orders_t_n (t=?)"]),
    ("SELECT id, doc FROM orders WHERE n IN (1, 3) ORDER BY n DESC, id DESC", ["SEARCH orders USING INDEX orders_n (n=?)"]),
])
def test_min_max_and_descending_order_from_the_index(pair, sql, plan):
    tern, lite = pair
    assert tern.execute(sql).fetchall() == lite.execute(sql).fetchall()
    assert _plan(tern, sql) == plan


def test_min_max_of_an_empty_or_all_null_index(pair):
    tern, lite = pair
    for con in (tern, lite):
        con.execute("CREATE TABLE e (a INTEGER, b TEXT)")
        con.execute("CREATE INDEX e_a ON e (a)")
        con.execute("CREATE INDEX e_b ON e (b DESC)")
    for sql in ["SELECT min(a) FROM e", "SELECT max(a) FROM e", "SELECT max(b), 1 FROM e"]:
        _same(pair, sql)
    for con in (tern, lite):
        con.executemany("INSERT INTO e VALUES (?, ?)", [(None, None), (None, "x"), (3, None), (-1, "y")])
    for sql in ["SELECT min(a) FROM e", "SELECT max(a) FROM e", "SELECT min(b) FROM e", "SELECT max(b) FROM e"]:
        assert tern.execute(sql).fetchall() == lite.execute(sql).fetchall(), sql
