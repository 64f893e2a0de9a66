"""Aggregates over hash joins, against sqlite3.

An aggregate reading a hash join directly steps its aggregates from the left
row and the matching right rows without building joined rows, and caches a
right row's group when GROUP BY reads only right-side columns
(``HashAggregate._aggregate_join``).  None of that may show in results: every
query here runs on terndb and on sqlite3 over the same data -- NULL keys,
keys of mixed storage classes under column affinity, duplicate keys on both
sides, LEFT JOIN, several keys, collations, residual conditions, bare
columns, ORDER BY / LIMIT / HAVING above -- and must give the same rows, with
the same value types.
"""
from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import terndb

SCHEMA = [
    # o.cid has no affinity: its values keep their class and the comparison
    # affinity of the column they are compared with decides equality.
    "CREATE TABLE o (id INTEGER PRIMARY KEY, cid, k2 TEXT, amt REAL, qty INTEGER, tag TEXT COLLATE NOCASE)",
    "CREATE TABLE c (id INTEGER PRIMARY KEY, ref INTEGER, k2 TEXT, region TEXT, score NUMERIC, "
    "name TEXT COLLATE NOCASE)",
]

# Join key values of every class: 1 = 1.0 = '1' under INTEGER affinity, not under TEXT.
KEYS = [None, 1, 2, 3, 1.0, 2.5, "1", "2", "x", 3.0, "3.0"]
TEXTS = [None, "a", "b", "A", "B ", "b"]
# Without values equal under NOCASE: which of 'a' and 'A' a NOCASE group shows
# is the first row SQLite's plan meets, and its plans vary (automatic indexes).
NOCASE_TEXTS = [None, "a", "b", "B ", "c"]
REGIONS = [None, "north", "south", "east", "North"]

QUERIES = [
    # GROUP BY right-side columns: each right row's group is looked up once.
    "SELECT c.region, COUNT(*), SUM(o.amt), AVG(o.qty), MIN(o.amt), MAX(o.qty), COUNT(o.cid), TOTAL(o.qty) "
    "FROM o JOIN c ON o.cid = c.ref GROUP BY c.region",
    "SELECT c.region, c.name, COUNT(*), SUM(o.qty) FROM o JOIN c ON c.ref = o.cid GROUP BY c.region, c.name",
    # The rowid key: an AdaptiveJoin that hashes when the left table is the larger.
    "SELECT c.region, COUNT(*), SUM(o.amt), AVG(o.qty) FROM o JOIN c ON c.id = o.cid GROUP BY c.region",
    # GROUP BY a left-side column (NOCASE), both sides, an expression of the right side.
    "SELECT o.tag, COUNT(*), SUM(c.score) FROM o JOIN c ON o.cid = c.ref GROUP BY o.tag",
    "SELECT c.region, o.qty, COUNT(*), MAX(c.score) FROM o JOIN c ON o.cid = c.ref GROUP BY c.region, o.qty",
    "SELECT lower(c.region), COUNT(*), SUM(o.qty) FROM o JOIN c ON o.cid = c.ref GROUP BY lower(c.region)",
    # Arguments reading both sides; no GROUP BY (one group, even when nothing joins).
    "SELECT COUNT(*), SUM(o.qty * c.score), MIN(o.qty + c.ref), COUNT(DISTINCT c.region) "
    "FROM o JOIN c ON o.cid = c.ref",
    "SELECT c.region, SUM(o.qty - c.score), COUNT(DISTINCT o.tag) FROM o JOIN c ON o.cid = c.ref GROUP BY 1",
    # TEXT affinity on the key: 1 = '1' but 1.0 <> '1'.
    "SELECT c.region, COUNT(*), SUM(o.id) FROM o JOIN c ON o.cid = c.k2 GROUP BY c.region",
    # Several keys; a residual condition beside the key.
    "SELECT c.region, COUNT(*), SUM(o.amt) FROM o JOIN c ON o.cid = c.ref AND o.k2 = c.k2 GROUP BY c.region",
    "SELECT c.region, COUNT(*), SUM(o.amt) FROM o JOIN c ON o.cid = c.ref AND o.qty < c.score GROUP BY c.region",
    "SELECT c.region, COUNT(*) FROM o JOIN c ON o.cid = c.ref WHERE o.qty > 2 AND c.score IS NOT NULL "
    "GROUP BY c.region",
    # LEFT JOIN: unmatched left rows fall in the NULL-padded group.
    "SELECT c.region, COUNT(*), COUNT(c.id), SUM(o.qty), SUM(c.score) FROM o LEFT JOIN c ON o.cid = c.ref "
    "GROUP BY c.region",
    "SELECT c.region, COUNT(*), SUM(o.amt) FROM o LEFT JOIN c ON o.cid = c.ref AND o.qty > c.score "
    "GROUP BY c.region",
    "SELECT o.tag, COUNT(c.id), MAX(c.name) FROM o LEFT JOIN c ON o.cid = c.ref GROUP BY o.tag",
    # A collated key (not hashed) beside a hashed one.
    "SELECT c.region, COUNT(*) FROM o JOIN c ON o.tag = c.name GROUP BY c.region",
    "SELECT c.region, COUNT(*) FROM o JOIN c ON o.cid = c.ref AND o.tag = c.name GROUP BY c.region",
    # The lone max(): bare columns come from its row (o.id is unique per o row).
    "SELECT c.region, MAX(o.id), o.qty, o.amt FROM o JOIN c ON o.cid = c.ref GROUP BY c.region",
    "SELECT c.region, MIN(o.id), o.tag FROM o LEFT JOIN c ON o.cid = c.ref GROUP BY c.region",
    # HAVING, ORDER BY and LIMIT above the aggregate.
    "SELECT c.region, COUNT(*) AS n, SUM(o.qty) FROM o JOIN c ON o.cid = c.ref GROUP BY c.region "
    "HAVING COUNT(*) > 1 ORDER BY n DESC, c.region LIMIT 2",
    "SELECT c.region, SUM(o.amt) AS s FROM o JOIN c ON o.cid = c.ref GROUP BY c.region ORDER BY s, 1 LIMIT 3",
]


def _typed(rows: list[tuple]) -> list[tuple]:
    """Rows with each value's type beside it (1 and 1.0 must not compare equal)."""
    return sorted((tuple((type(v).__name__, v) for v in r) for r in rows), key=repr)


def _load(con: Any, orders: list[tuple], customers: list[tuple]) -> None:
    for stmt in SCHEMA:
        con.execute(stmt)
    con.executemany("INSERT INTO o VALUES (?, ?, ?, ?, ?, ?)", orders)
    con.executemany("INSERT INTO c VALUES (?, ?, ?, ?, ?, ?)", customers)
    con.commit()


def _assert_same(tern: Any, lite: sqlite3.Connection, sql: str) -> None:
    expected = lite.execute(sql).fetchall()
    got = tern.execute(sql).fetchall()
    if "ORDER BY" in sql:
        assert [tuple(r) for r in got] == expected, sql
    else:
        assert _typed(got) == _typed(expected), sql


# Amounts and scores are multiples of 0.5: their sums are exact in any order.
halves = st.one_of(st.none(), st.integers(-20, 40).map(lambda n: n / 2))
order_row = st.tuples(st.sampled_from(KEYS), st.sampled_from(TEXTS), halves,
                      st.one_of(st.none(), st.integers(0, 5)), st.sampled_from(NOCASE_TEXTS))
customer_row = st.tuples(st.sampled_from(KEYS), st.sampled_from(TEXTS), st.sampled_from(REGIONS),
                         st.one_of(st.none(), st.integers(0, 4), halves), st.sampled_from(NOCASE_TEXTS))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(orders=st.lists(order_row, max_size=40), customers=st.lists(customer_row, max_size=15))
def test_join_aggregates_match_sqlite(twin_factory, orders, customers):
    o_rows = [(i + 1,) + r for i, r in enumerate(orders)]
    c_rows = [(i + 1,) + r for i, r in enumerate(customers)]
    with twin_factory() as pair:
        _load(pair.tern, o_rows, c_rows)
        _load(pair.lite, o_rows, c_rows)
        for sql in QUERIES:
            _assert_same(pair.tern, pair.lite, sql)


@pytest.fixture
def shop(twin):
    """Many orders per customer, duplicate join keys on the right side too."""
    orders = [(i, (i * 7) % 23 if i % 11 else None, f"k{i % 3}", (i % 40) / 2, i % 6, "ab"[i % 2])
              for i in range(1, 400)]
    customers = [(i, i % 17, f"k{i % 2}", REGIONS[i % len(REGIONS)], i % 5, "AB"[i % 2]) for i in range(1, 30)]
    _load(twin.tern, orders, customers)
    _load(twin.lite, orders, customers)
    return twin


@pytest.mark.parametrize("sql", QUERIES)
def test_join_aggregates_on_a_larger_shop(shop, sql):
    _assert_same(shop.tern, shop.lite, sql)


def test_join_aggregate_plan_hashes_the_join(shop):
    """The queries above meet a hash join under the aggregate (the fused path)."""
    plan = " ".join(str(r) for r in shop.tern.execute("EXPLAIN QUERY PLAN " + QUERIES[0]).fetchall())
    assert "HASH JOIN" in plan and "GROUP BY" in plan


def test_join_aggregate_cached_plan_sees_new_rows(shop):
    """A right row's cached group lives for one execution: a re-run sees changes."""
    sql = QUERIES[0]
    _assert_same(shop.tern, shop.lite, sql)
    for con in (shop.tern, shop.lite):
        con.execute("UPDATE c SET region = 'west' WHERE id % 3 = 0")
        con.execute("INSERT INTO o VALUES (1000, 4, 'k1', 2.5, 3, 'a')")
        con.commit()
    _assert_same(shop.tern, shop.lite, sql)


def test_join_aggregate_bad_argument_raises_terndb_error(shop):
    """An error inside an aggregate fed by the join surfaces as a PEP 249 error."""
    with pytest.raises(terndb.Error):
        shop.tern.execute("SELECT c.region, SUM(json_extract(o.k2, '$')) FROM o JOIN c ON o.cid = c.ref "
                          "GROUP BY c.region").fetchall()
    # The connection stays usable.
    _assert_same(shop.tern, shop.lite, QUERIES[0])


def test_integer_keyed_join_agrees_on_edge_numbers(twin):
    """Integer join keys are probed as C integers: a REAL probe finds its
    integer only when exactly equal (3.0 = 3, 2**53 <> 2**53 + 1), and keys at
    int64's ends, text keys and values beyond int64 behave as in SQLite."""
    big = [2 ** 63 - 1, -2 ** 63, 2 ** 53 + 1, 2 ** 53, 0, 3, -5]
    for con in (twin.tern, twin.lite):
        con.execute("CREATE TABLE l (id INTEGER PRIMARY KEY, r REAL, i INTEGER, t TEXT, v)")
        con.execute("CREATE TABLE g (id INTEGER PRIMARY KEY, k INTEGER, grp TEXT)")
        con.executemany("INSERT INTO g (k, grp) VALUES (?, ?)", [(k, f"g{n % 3}") for n, k in enumerate(big)]
                        + [(3, "dup"), (None, "null")])
        con.executemany("INSERT INTO l (r, i, t, v) VALUES (?, ?, ?, ?)",
                        [(3.0, 3, "3", 3.5), (2.0 ** 53, 2 ** 53 + 1, "9007199254740993", "x"),
                         (9.3e18, 2 ** 63 - 1, " 3", 3.0), (-9.223372036854775808e18, -2 ** 63, "-5", b"\x03"),
                         (-5.0, None, None, None), (1e300, 0, "0.0", 0)] * 3)
        con.commit()
    for col in ("r", "i", "t", "v"):
        _assert_same(twin.tern, twin.lite,
                     f"SELECT g.grp, COUNT(*), SUM(l.id), COUNT(g.k) FROM l JOIN g ON l.{col} = g.k GROUP BY g.grp")
        _assert_same(twin.tern, twin.lite,
                     f"SELECT l.{col}, COUNT(g.id) FROM l LEFT JOIN g ON g.k = l.{col} GROUP BY 1")


@pytest.mark.parametrize("sql", [
    "SELECT tag, MAX(v) FROM t GROUP BY tag",
    "SELECT x, MAX(v), tag FROM t GROUP BY x",
    "SELECT x, MIN(v) FROM t GROUP BY x",
    "SELECT x, MAX(w) FROM t GROUP BY x",          # all NULL: the group's last row
    "SELECT x, tag, COUNT(v) FROM t GROUP BY x",   # no min/max: the first row
    "SELECT t.x, MAX(u.v) FROM t JOIN t AS u ON u.id = t.id GROUP BY t.x",
    "SELECT u.tag, MAX(t.v * 10 + u.id) FROM t JOIN t AS u ON u.x = t.x GROUP BY u.tag",  # no ties
])
def test_lone_min_max_shows_group_values_of_its_row(twin, sql):
    """Rows that group together may differ (1 and 1.0; 'a' and 'A' under NOCASE):
    with one min()/max(), SQLite shows the GROUP BY values of the row it
    came from, as it does for bare columns."""
    for con in (twin.tern, twin.lite):
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x, tag TEXT COLLATE NOCASE, v, w)")
        con.executemany("INSERT INTO t (x, tag, v) VALUES (?, ?, ?)",
                        [(1, "a", 5), (1.0, "A", 7), (1, "a", 6), (2.0, "b", 1), (2, "B", None)])
        con.commit()
    _assert_same(twin.tern, twin.lite, sql)


def test_hash_join_build_leaves_the_gc_as_it_found_it(shop):
    """The build pauses the cyclic GC; it must come back on after the build,
    after a build that failed, and stay off when the application turned it off."""
    import gc
    join = "SELECT COUNT(*) FROM o JOIN (SELECT ref, {expr} AS v FROM c) AS d ON d.ref = o.cid"
    assert gc.isenabled()
    shop.tern.execute(join.format(expr="k2")).fetchall()
    assert gc.isenabled()
    with pytest.raises(terndb.Error):
        shop.tern.execute(join.format(expr="json_extract(k2, '$')")).fetchall()
    assert gc.isenabled()
    gc.disable()
    try:
        shop.tern.execute(join.format(expr="k2")).fetchall()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_key_matching_many_right_rows_is_freed_without_deep_recursion(tmp_path):
    """One key shared by 200k right rows makes one long chain of matches in the hash table;
    freeing it took one C stack frame per row and crashed a thread with a 1 MB stack.
    Run in a child process: the failure is a crash, not an exception."""
    import subprocess
    import sys
    import textwrap
    script = textwrap.dedent(f"""
        import threading, terndb
        con = terndb.connect({str(tmp_path / "db")!r}, check_same_thread=False)
        con.execute("CREATE TABLE o (id INTEGER PRIMARY KEY, cid INTEGER)")
        con.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, ref INTEGER)")
        con.executemany("INSERT INTO o VALUES (?, 1)", [(i,) for i in range(200_000)])
        con.executemany("INSERT INTO c VALUES (?, 1)", [(i,) for i in range(200_000)])
        con.commit()
        found = []
        def join():
            # LIMIT: the join stops after 5 of its 4e10 rows and drops its table.
            sql = "SELECT o.cid, c.ref FROM o JOIN c ON o.cid = c.ref LIMIT 5"
            found.extend(con.execute(sql).fetchall())
        threading.stack_size(1 << 20)
        worker = threading.Thread(target=join)
        worker.start()
        worker.join()
        print(found)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str([(1, 1)] * 5)
