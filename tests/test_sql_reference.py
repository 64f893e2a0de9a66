"""terndb against sqlite3: the same SQL over the same data must give the same answer.

Two halves:

* property tests (hypothesis) generate small tables with INTEGER, REAL, TEXT
  and untyped columns (NULLs, negative numbers, numeric-looking text, unicode,
  blobs) and queries over them from a small recursive expression grammar:
  projections and WHERE, ORDER BY/LIMIT, DISTINCT, GROUP BY/HAVING with every
  aggregate, joins, subqueries, compound selects, UPDATE/DELETE, and the
  index property (adding ``CREATE INDEX`` never changes a result);
* fixed scripts for the DML and constraint surface (multi-row INSERT,
  INSERT ... SELECT, defaults, rowid and AUTOINCREMENT behaviour, violations).

Values are compared exactly: type and value, floats bit for bit (``float.hex``)
so an off-by-one-ulp result is reported, never rounded away.  Results are
compared as multisets unless the ORDER BY makes the order total.  When sqlite3
raises, terndb must raise a ``terndb.Error`` too; terndb raising anything else,
or raising where sqlite3 does not, fails.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import terndb

# -- comparing results --------------------------------------------------------


def norm_value(v: Any, exact: bool = False) -> tuple:
    """A value as a sortable, type-exact key (1 and 1.0 differ, floats by bits).

    Only ``exact`` keys tell -0.0 from 0.0 while that difference is a known bug."""
    if v is None:
        return (0, "")
    if isinstance(v, bool):         # never produced by either driver, but be exact
        return (1, int(v))
    if isinstance(v, int):
        return (1, v)
    if isinstance(v, float):
        if v == 0.0 and not exact and "negative-zero" in KNOWN_BUGS:
            v = 0.0                 # the sign of zero: see KNOWN_BUG_SCRIPTS["negative_zero"]
        return (2, v.hex())
    if isinstance(v, str):
        return (3, v)
    if isinstance(v, bytes):
        return (4, v)
    return (9, repr(v))


def norm_rows(rows: Sequence[Sequence[Any]], exact: bool = False) -> list[tuple]:
    return [tuple(norm_value(v, exact) for v in row) for row in rows]


class Outcome:
    """What one statement did on one engine: rows (or rowcount) or an error."""

    def __init__(self, rows: list | None, rowcount: int | None, error: BaseException | None) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self.error = error

    def __repr__(self) -> str:
        if self.error is not None:
            return f"error {type(self.error).__name__}: {self.error}"
        return f"rows={self.rows!r} rowcount={self.rowcount}"


def run_lite(con: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Outcome:
    try:
        cur = con.execute(sql, params)
        rows = cur.fetchall() if cur.description is not None else None
        return Outcome(rows, cur.rowcount, None)
    except sqlite3.Error as e:
        return Outcome(None, None, e)


def run_tern(con: Any, sql: str, params: Sequence[Any] = ()) -> Outcome:
    # Only terndb.Error may escape terndb: anything else propagates and fails the test.
    try:
        cur = con.execute(sql, params)
        rows = cur.fetchall() if cur.description is not None else None
        return Outcome(rows, cur.rowcount, None)
    except terndb.Error as e:
        return Outcome(None, None, e)


def compare(pair: Any, sql: str, params: Sequence[Any] = (), *, ordered: bool = False,
            exact: bool = False) -> Outcome:
    """Run ``sql`` on both engines and assert the same outcome; return sqlite3's."""
    lite = run_lite(pair.lite, sql, params)
    tern = run_tern(pair.tern, sql, params)
    if lite.error is not None:
        assert tern.error is not None, (
            f"sqlite3 raised {lite.error!r} but terndb returned {tern!r}\n  SQL: {sql}")
        if isinstance(lite.error, sqlite3.IntegrityError):
            assert isinstance(tern.error, terndb.IntegrityError), (sql, lite, tern)
        return lite
    assert tern.error is None, f"terndb raised {tern!r}; sqlite3 gave {lite!r}\n  SQL: {sql}"
    if lite.rows is None:
        assert tern.rows is None, (sql, tern)
        if lite.rowcount is not None and lite.rowcount >= 0:
            assert tern.rowcount == lite.rowcount, (sql, lite.rowcount, tern.rowcount)
        return lite
    assert tern.rows is not None
    got, want = norm_rows(tern.rows, exact), norm_rows(lite.rows, exact)
    if not ordered:
        got, want = sorted(got), sorted(want)
    assert got == want, (f"\n  SQL:     {sql}\n  sqlite3: {lite.rows!r}\n  terndb:  {tern.rows!r}")
    return lite


# -- a crash guard ------------------------------------------------------------

_HASH_JOIN_REPRO = textwrap.dedent("""
    import terndb
    con = terndb.connect(":memory:")
    con.execute("CREATE TABLE t(a INTEGER)")
    con.execute("CREATE TABLE u(a INTEGER)")
    con.execute("INSERT INTO t VALUES (1)")
    con.execute("INSERT INTO u VALUES (1)")
    con.commit()
    assert con.execute("SELECT * FROM t JOIN u ON t.a = u.a").fetchall() == [(1, 1)]
    assert con.execute("SELECT * FROM t LEFT JOIN u USING (a)").fetchall() == [(1,)]
""")


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


# An equi-join (planned as a hash join) once crashed the interpreter; running
# the join properties in-process would then kill the whole test session, so
# they are skipped whenever the isolated probe crashes, and
# test_equi_join_does_not_crash reports the crash as a plain failure.
HASH_JOIN_CRASHES = _run_isolated(_HASH_JOIN_REPRO).returncode < 0


def test_equi_join_does_not_crash() -> None:
    proc = _run_isolated(_HASH_JOIN_REPRO)
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr[-2000:]}"


# -- data ---------------------------------------------------------------------

T_DDL = "CREATE TABLE t(id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, u)"
V_DDL = "CREATE TABLE v(k INTEGER, i INTEGER, s TEXT)"

TEXTS = ["", "a", "B", "abc", "Abc", "10", "-3", "2.5", " 7", "1e2", "ü", "日本", "a_c", "a%", "x y"]
FLOATS = [0.5, -2.25, 0.1, 3.0, -1.0, 1e20, 2.5, 1.5e-7, 0.0, 100.0]

ints = st.one_of(st.integers(-5, 5), st.sampled_from([2**31, -(2**40), 9223372036854775807]))
floats = st.one_of(st.sampled_from(FLOATS),
                   st.floats(-1e6, 1e6, allow_nan=False, width=64))
texts = st.sampled_from(TEXTS)
blobs = st.sampled_from([b"", b"ab", b"\x00\x01"])   # valid UTF-8, so || and CAST stay decodable


def nullable(s: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), s)


t_rows = st.lists(st.tuples(nullable(ints), nullable(floats), nullable(texts),
                            st.one_of(st.none(), ints, floats, texts, blobs)),
                  max_size=8)
v_rows = st.lists(st.tuples(nullable(st.integers(-3, 3)), nullable(st.integers(-5, 5)),
                            nullable(texts)), max_size=6)


def load(pair: Any, trows: list, vrows: list | None = None) -> None:
    """Create t (and v) on both engines and fill them with the same rows."""
    for con in (pair.lite, pair.tern):
        con.execute(T_DDL)
        con.executemany("INSERT INTO t(i, r, s, u) VALUES (?, ?, ?, ?)", trows)
        if vrows is not None:
            con.execute(V_DDL)
            con.executemany("INSERT INTO v(k, i, s) VALUES (?, ?, ?)", vrows)
        con.commit()


# -- the expression grammar ------------------------------------------------------

def sql_literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, float):
        return repr(v)
    return str(v)


# Engine bugs that have their own xfail(strict) test in this file: the
# generators leave these constructs out, because a property that fails on
# every run hides every other bug.  When one of those tests starts passing,
# delete its entry here so the properties cover the construct again.
KNOWN_BUGS: set[str] = set()

literals = st.one_of(
    st.integers(-10, 10).map(str),
    st.sampled_from(["9223372036854775807", "0.5", "-2.25", "1e3", "0.1", "3.0", "NULL"]),
    texts.map(sql_literal),
)
T_COLUMNS = ["id", "i", "r", "s", "u"]
TYPES = ["INTEGER", "REAL", "TEXT", "BLOB"] + ([] if "cast-numeric" in KNOWN_BUGS else ["NUMERIC"])
LIKE_OPS = ["LIKE"] + ([] if "not-like" in KNOWN_BUGS else ["NOT LIKE"])
GLOB_OPS = ["GLOB"] + ([] if "not-like" in KNOWN_BUGS else ["NOT GLOB"])
LIKE_PATTERNS = ["'a%'", "'%b%'", "'_'", "'A_C'", "'%'", "'1%'", "'%.%'", "'ü'"]
GLOB_PATTERNS = ["'a*'", "'*b*'", "'?'", "'[a-c]*'", "'[^a]*'", "'1*'", "'*'"]
SMALL = st.integers(-3, 4).map(str)


def expressions(columns: Sequence[str]) -> st.SearchStrategy[str]:
    """SQL expression text over ``columns``, a few levels deep."""
    leaves = st.one_of(st.sampled_from(list(columns)), literals)

    def extend(sub: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        two = st.tuples(sub, sub)
        three = st.tuples(sub, sub, sub)
        return st.one_of(
            st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "%", "||"]), sub)
              .map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
            st.tuples(sub, st.sampled_from(["=", "<>", "<", "<=", ">", ">=", "IS", "IS NOT", "==", "!="]), sub)
              .map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
            st.tuples(sub, st.sampled_from(["AND", "OR"]), sub).map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
            sub.map(lambda a: f"(NOT {a})"),
            sub.map(lambda a: f"(- {a})"),
            st.tuples(sub, st.sampled_from(["IS NULL", "IS NOT NULL"])).map(lambda x: f"({x[0]} {x[1]})"),
            st.tuples(sub, st.sampled_from(["IN", "NOT IN"]), st.lists(sub, min_size=1, max_size=3))
              .map(lambda x: f"({x[0]} {x[1]} ({', '.join(x[2])}))"),
            st.tuples(sub, st.sampled_from(LIKE_OPS), st.one_of(st.sampled_from(LIKE_PATTERNS), sub))
              .map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
            st.tuples(sub, st.sampled_from(GLOB_OPS), st.one_of(st.sampled_from(GLOB_PATTERNS), sub))
              .map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
            three.map(lambda x: f"CASE WHEN {x[0]} THEN {x[1]} ELSE {x[2]} END"),
            *([] if "between-affinity" in KNOWN_BUGS else [
                st.tuples(sub, st.sampled_from(["BETWEEN", "NOT BETWEEN"]), sub, sub)
                  .map(lambda x: f"({x[0]} {x[1]} {x[2]} AND {x[3]})")]),
            # CASE x WHEN y: with a column operand only while its affinity bug is known.
            st.tuples(literals if "case-operand-affinity" in KNOWN_BUGS else sub, sub, sub, st.booleans())
              .map(lambda x: f"CASE {x[0]} WHEN {x[1]} THEN {x[2]}{' ELSE NULL' if x[3] else ''} END"),
            st.tuples(sub, st.sampled_from(TYPES)).map(lambda x: f"CAST({x[0]} AS {x[1]})"),
            st.tuples(st.sampled_from(["abs", "length", "lower", "upper", "trim", "ltrim", "rtrim",
                                       "round", "typeof", "hex"]), sub)
              .map(lambda x: f"{x[0]}({x[1]})"),
            st.tuples(st.sampled_from(["coalesce", "ifnull", "nullif", "instr", "substr", "trim",
                                       "ltrim", "rtrim"]), two)
              .map(lambda x: f"{x[0]}({x[1][0]}, {x[1][1]})"),
            st.tuples(st.sampled_from(["iif", "replace", "coalesce"]), three)
              .map(lambda x: f"{x[0]}({x[1][0]}, {x[1][1]}, {x[1][2]})"),
            st.tuples(sub, SMALL, SMALL).map(lambda x: f"substr({x[0]}, {x[1]}, {x[2]})"),
            st.tuples(sub, SMALL).map(lambda x: f"round({x[0]}, {x[1]})"),
        )

    # st.recursive alone mostly draws bare leaves; wrapping it in one more
    # level of operators makes most generated expressions non-trivial.
    nested = st.recursive(leaves, extend, max_leaves=6)
    return st.one_of(extend(nested), extend(nested), nested)


t_expr = expressions(T_COLUMNS)

PROPS = settings(max_examples=80, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(PROPS, max_examples=40)


# -- property tests: single-table queries -------------------------------------


@PROPS
@given(rows=t_rows, cols=st.lists(t_expr, min_size=1, max_size=3), where=st.one_of(st.none(), t_expr))
def test_projection_and_where(twin_factory, rows, cols, where) -> None:
    with twin_factory() as pair:
        load(pair, rows)
        # Projections are checked on every row (a random WHERE is mostly
        # false), then the WHERE clause on its own.
        compare(pair, f"SELECT id, {', '.join(cols)} FROM t")
        if where is not None:
            compare(pair, f"SELECT id FROM t WHERE {where}")


@PROPS
@given(rows=t_rows,
       keys=st.lists(st.tuples(st.one_of(st.sampled_from(T_COLUMNS), t_expr),
                               st.sampled_from(["", " ASC", " DESC"])), min_size=1, max_size=3),
       limit=st.one_of(st.none(), st.tuples(st.integers(-1, 6), st.one_of(st.none(), st.integers(0, 4)))))
def test_order_by_limit_offset(twin_factory, rows, keys, limit) -> None:
    # A trailing "id" (the INTEGER PRIMARY KEY) makes the order total, so
    # row order is compared exactly, including where NULLs and types sort.
    order = ", ".join(k + d for k, d in keys) + ", id"
    sql = f"SELECT id, {keys[0][0]} FROM t ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {limit[0]}" + (f" OFFSET {limit[1]}" if limit[1] is not None else "")
    with twin_factory() as pair:
        load(pair, rows)
        compare(pair, sql, ordered=True)


@PROPS
@given(rows=t_rows, cols=st.lists(st.one_of(st.sampled_from(T_COLUMNS[1:]), t_expr), min_size=1, max_size=2))
def test_distinct(twin_factory, rows, cols) -> None:
    with twin_factory() as pair:
        load(pair, rows)
        compare(pair, f"SELECT DISTINCT {', '.join(cols)} FROM t")


AGGREGATES = ["count(*)", "count({e})", "sum({e})", "total({e})", "avg({e})", "min({e})",
              "max({e})", "count(DISTINCT {e})", "sum(DISTINCT {e})"]
# group_concat's order inside a group is unspecified in SQLite: its pieces are
# compared as a multiset (the separator never occurs in the generated data).
GC_SEP = "\x1f"


def _split_group_concat(rows: list, positions: list[int]) -> list:
    out = []
    for row in rows:
        row = list(row)
        for p in positions:
            if isinstance(row[p], str):
                row[p] = tuple(sorted(row[p].split(GC_SEP)))
        out.append(tuple(row))
    return out


@PROPS
@given(rows=t_rows, group=st.one_of(st.sampled_from(T_COLUMNS[1:]), t_expr),
       aggs=st.lists(st.tuples(st.sampled_from(AGGREGATES + ["group_concat"]),
                               st.one_of(st.sampled_from(T_COLUMNS), t_expr)), min_size=1, max_size=3),
       where=st.one_of(st.none(), t_expr), having=st.one_of(st.none(), t_expr),
       grouped=st.booleans())
def test_group_by_aggregates(twin_factory, rows, group, aggs, where, having, grouped) -> None:
    items, gc_positions = [], []
    for fmt, e in aggs:
        if fmt == "group_concat":
            gc_positions.append(len(items) + (1 if grouped else 0))
            items.append(f"group_concat({e}, '{GC_SEP}')")
        else:
            items.append(fmt.format(e=e))
    sql = f"SELECT {group + ', ' if grouped else ''}{', '.join(items)} FROM t"
    if where is not None:
        sql += f" WHERE {where}"
    if grouped:
        sql += f" GROUP BY {group}"
        if having is not None:
            sql += f" HAVING {having} OR count(*) > 1"
    with twin_factory() as pair:
        load(pair, rows)
        lite = run_lite(pair.lite, sql)
        tern = run_tern(pair.tern, sql)
        if lite.error is not None:
            assert tern.error is not None, f"sqlite3 raised {lite.error!r}, terndb gave {tern!r}\n  {sql}"
            return
        assert tern.error is None, f"terndb raised {tern!r}\n  SQL: {sql}\n  sqlite3: {lite!r}"
        want = sorted(norm_rows(_split_group_concat(lite.rows, gc_positions)))
        got = sorted(norm_rows(_split_group_concat(tern.rows, gc_positions)))
        assert got == want, f"\n  SQL: {sql}\n  sqlite3: {lite.rows!r}\n  terndb:  {tern.rows!r}"


numeric_text = st.one_of(
    st.from_regex(r"\A[ ]?[+-]?[0-9]{0,20}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?[ ]?\Z", fullmatch=True),
    st.floats(allow_nan=False).map(repr),
    st.integers(-(2 ** 70), 2 ** 70).map(str),
    st.sampled_from(["0x10", "1e", ".", "-", "+.5", "5.", "1_000", "١٢", "Infinity", "-inf", "9223372036854775808",
                     "-9223372036854775808", "-9223372036854775809", "1e-400", "4.9e-324"]),
)


@PROPS
@given(x=st.floats(allow_nan=False), text=numeric_text)
def test_number_text_conversions(twin_factory, x: float, text: str) -> None:
    """Float to text (SQLite's %!.15g), text to number (affinity and CAST): bit for bit."""
    with twin_factory() as pair:
        compare(pair, "SELECT CAST(? AS TEXT), ? || '', hex(?), round(?, 2), CAST(? AS INTEGER), typeof(? + 0)",
                (x,) * 6)
        compare(pair, "SELECT CAST(? AS REAL), CAST(? AS INTEGER), ? + 0, typeof(? + 0), ? * 1.0, abs(?), "
                      "? = 1, ? < 1e10", (text,) * 8)
        load(pair, [(None, None, None, text)])
        compare(pair, "UPDATE t SET i = u, r = u, s = u")
        compare(pair, "SELECT i, typeof(i), r, typeof(r), s, typeof(s) FROM t")


# -- property tests: several tables ---------------------------------------------

TV_COLUMNS = ["t.id", "t.i", "t.r", "t.s", "t.u", "v.k", "v.i", "v.s"]
tv_expr = expressions(TV_COLUMNS)
v_expr = expressions(["v.k", "v.i", "v.s"])


@pytest.mark.skipif(HASH_JOIN_CRASHES, reason="engine: equi-join crashes the interpreter")
@PROPS
@given(rows=t_rows, vrows=v_rows, kind=st.sampled_from(["JOIN", "LEFT JOIN", "CROSS JOIN", "INNER JOIN"]),
       on=st.one_of(st.sampled_from(["t.i = v.i", "t.id = v.k", "v.k = t.i", "t.s = v.s",
                                     "t.i = v.i AND t.s = v.s", "t.i < v.k"]), tv_expr),
       cols=st.lists(tv_expr, min_size=1, max_size=2), where=st.one_of(st.none(), tv_expr))
def test_joins(twin_factory, rows, vrows, kind, on, cols, where) -> None:
    sql = f"SELECT {', '.join(cols)} FROM t {kind} v" + ("" if kind == "CROSS JOIN" else f" ON {on}")
    if where is not None:
        sql += f" WHERE {where}"
    with twin_factory() as pair:
        load(pair, rows, vrows)
        compare(pair, sql)


SUBQUERIES = [
    "(SELECT max(v.i) FROM v)",
    "(SELECT count(*) FROM v WHERE v.k = t.i)",
    "(SELECT v.s FROM v WHERE v.i = t.i ORDER BY v.rowid LIMIT 1)",
    "(SELECT sum(v.i) FROM v WHERE v.k > t.id)",
    "(t.i IN (SELECT v.i FROM v))",
    "(t.i NOT IN (SELECT v.i FROM v))",
    "(t.s IN (SELECT v.s FROM v WHERE v.k = t.id))",
    "EXISTS (SELECT 1 FROM v WHERE v.k = t.i)",
    "NOT EXISTS (SELECT 1 FROM v WHERE v.s = t.s)",
]


@PROPS
@given(rows=t_rows, vrows=v_rows, sub=st.sampled_from(SUBQUERIES),
       where_sub=st.sampled_from(SUBQUERIES), col=t_expr)
def test_subqueries(twin_factory, rows, vrows, sub, where_sub, col) -> None:
    with twin_factory() as pair:
        load(pair, rows, vrows)
        compare(pair, f"SELECT t.id, {col}, {sub} FROM t WHERE {where_sub} OR t.id % 3 = 0")


@PROPS
@given(rows=t_rows, vrows=v_rows, op=st.sampled_from(["UNION", "UNION ALL", "EXCEPT", "INTERSECT"]),
       left=st.lists(t_expr, min_size=1, max_size=2), right_cols=st.sampled_from(["v.i", "v.s", "v.k"]),
       where=st.one_of(st.none(), v_expr))
def test_compound_selects(twin_factory, rows, vrows, op, left, right_cols, where) -> None:
    right = [right_cols] + ["v.s"] * (len(left) - 1)
    sql = (f"SELECT {', '.join(left)} FROM t {op} SELECT {', '.join(right)} FROM v"
           + (f" WHERE {where}" if where is not None else ""))
    with twin_factory() as pair:
        load(pair, rows, vrows)
        compare(pair, sql)


# -- property tests: writes ------------------------------------------------------

ASSIGN_COLUMNS = ["i", "r", "s", "u"]


@FEW
@given(rows=t_rows, sets=st.lists(st.tuples(st.sampled_from(ASSIGN_COLUMNS), t_expr), min_size=1, max_size=2,
                                  unique_by=lambda x: x[0]),
       where=st.one_of(st.none(), t_expr), delete_where=t_expr)
def test_update_then_delete(twin_factory, rows, sets, where, delete_where) -> None:
    upd = "UPDATE t SET " + ", ".join(f"{c} = {e}" for c, e in sets)
    if where is not None:
        upd += f" WHERE {where}"
    with twin_factory() as pair:
        load(pair, rows)
        compare(pair, upd)
        compare(pair, "SELECT * FROM t ORDER BY id", ordered=True)
        compare(pair, f"DELETE FROM t WHERE {delete_where}")
        compare(pair, "SELECT * FROM t ORDER BY id", ordered=True)
        pair.commit()
        compare(pair, "SELECT count(*), total(i), group_concat(id) FROM t")


# -- the index property -------------------------------------------------------------

INDEXES = ["CREATE INDEX ti ON t(i)", "CREATE INDEX ts ON t(s)", "CREATE INDEX tr ON t(r)",
           "CREATE INDEX tu ON t(u)", "CREATE INDEX tis ON t(i, s)", "CREATE INDEX tsr ON t(s DESC, r)",
           "CREATE UNIQUE INDEX tid2 ON t(id, i)"]
# SQL literal text; mixed types on purpose (affinity decides what an index key matches).
index_values = st.one_of(ints.map(sql_literal), floats.map(sql_literal), texts.map(sql_literal),
                         st.sampled_from(["NULL", "'3'", "3.0", "'1e2'", "'-3'"]))




def range_values(column: str) -> st.SearchStrategy[str]:
    """Literals for a range bound on ``column``: any type, unless the range-affinity bug is known."""
    if "index-range-affinity" not in KNOWN_BUGS or column == "u":
        return index_values
    if column == "s":
        return texts.map(sql_literal)
    return st.one_of(ints, floats).map(sql_literal)


index_predicates = st.one_of(
    st.tuples(st.sampled_from(["i", "s", "r", "u"]), st.sampled_from(["=", "<>", "IS"]),
              index_values).map(lambda x: f"{x[0]} {x[1]} {x[2]}"),
    st.sampled_from(["i", "s", "r", "u"]).flatmap(
        lambda c: st.tuples(st.just(c), st.sampled_from(["<", "<=", ">", ">="]), range_values(c)))
      .map(lambda x: f"{x[0]} {x[1]} {x[2]}"),
    # (BETWEEN with mixed-type bounds: see KNOWN_BUGS; same-type bounds below.)
    st.tuples(st.sampled_from(["i", "r"]), ints.map(sql_literal), floats.map(sql_literal))
      .map(lambda x: f"{x[0]} BETWEEN {x[1]} AND {x[2]}"),
    st.tuples(texts.map(sql_literal), texts.map(sql_literal)).map(lambda x: f"s BETWEEN {x[0]} AND {x[1]}"),
    *([] if "between-affinity" in KNOWN_BUGS else [
        st.tuples(st.sampled_from(["i", "s", "r", "u"]), index_values, index_values)
          .map(lambda x: f"{x[0]} BETWEEN {x[1]} AND {x[2]}")]),
    st.tuples(st.sampled_from(["i", "s", "r", "u"]), st.lists(index_values, min_size=1, max_size=4))
      .map(lambda x: f"{x[0]} IN ({', '.join(x[1])})"),
    st.sampled_from(["i IS NULL", "s IS NOT NULL", "s LIKE 'a%'", "s >= 'a' AND s < 'b'",
                     "i > 0 AND s = 'abc'", "i = 1 OR s = 'a'", "r > 0.5 AND r < 1e10"]),
)


@FEW
@given(rows=t_rows, preds=st.lists(index_predicates, min_size=1, max_size=2),
       indexes=st.lists(st.sampled_from(INDEXES), min_size=1, max_size=3, unique=True),
       order=st.sampled_from(["", " ORDER BY i, id", " ORDER BY s DESC, id", " ORDER BY id DESC"]))
def test_indexes_never_change_results(twin_factory, rows, preds, indexes, order) -> None:
    sql = f"SELECT * FROM t WHERE {' AND '.join(preds)}{order}"
    ordered = bool(order)
    with twin_factory() as pair:
        load(pair, rows)
        before = norm_rows(run_tern(pair.tern, sql).rows or [])
        compare(pair, sql, ordered=ordered)
        for ddl in indexes:
            if compare(pair, ddl).error is not None:
                return                 # e.g. the UNIQUE index can't be built: both refused
        pair.commit()
        compare(pair, sql, ordered=ordered)
        after = norm_rows(pair.tern.execute(sql).fetchall())
        assert (after if ordered else sorted(after)) == (before if ordered else sorted(before)), sql
        # Writes through the indexes, then the same query again.
        compare(pair, "UPDATE t SET i = i + 1, s = s || 'a' WHERE id % 2 = 0")
        compare(pair, "DELETE FROM t WHERE id % 3 = 0")
        compare(pair, "INSERT INTO t(i, r, s, u) SELECT i, r, s, u FROM t WHERE id < 3")
        compare(pair, sql, ordered=ordered)


# -- fixed scripts ------------------------------------------------------------------
# Each statement runs on both engines; SELECT results (and DML row counts) must
# match, and a statement that fails on sqlite3 must fail on terndb (an
# IntegrityError with an IntegrityError).

SCRIPTS: dict[str, list[str]] = {
    "multi_row_insert": [
        "CREATE TABLE t(a INTEGER, b TEXT)",
        "INSERT INTO t VALUES (1, 'x'), (2, 'y'), (NULL, NULL)",
        "INSERT INTO t(b) VALUES ('only b'), ('again')",
        "SELECT rowid, a, b FROM t ORDER BY rowid",
    ],
    "insert_select": [
        "CREATE TABLE src(a, b)",
        "CREATE TABLE dst(id INTEGER PRIMARY KEY, a, b DEFAULT 'dflt')",
        "INSERT INTO src VALUES (1, 'one'), (2, 'two'), (3, NULL)",
        "INSERT INTO dst(a, b) SELECT a * 10, b FROM src WHERE a > 1",
        "INSERT INTO dst(a) SELECT a FROM src ORDER BY a DESC LIMIT 2",
        "INSERT INTO dst SELECT NULL, b, a FROM src",
        "SELECT * FROM dst ORDER BY id",
        "INSERT INTO src SELECT * FROM src",          # reads a snapshot, not its own rows
        "SELECT count(*) FROM src",
    ],
    "defaults": [
        "CREATE TABLE d(a INTEGER DEFAULT 5, b TEXT DEFAULT 'x', c REAL DEFAULT -1.5, "
        "e DEFAULT NULL, f DEFAULT (1 + 2), g)",
        "INSERT INTO d DEFAULT VALUES",
        "INSERT INTO d(a, g) VALUES (1, 2)",
        "INSERT INTO d(b) VALUES (NULL)",
        "SELECT rowid, * FROM d ORDER BY rowid",
    ],
    "rowid_alias": [
        "CREATE TABLE r(id INTEGER PRIMARY KEY, v)",
        "INSERT INTO r(v) VALUES ('a')",
        "INSERT INTO r(id, v) VALUES (10, 'b')",
        "INSERT INTO r(v) VALUES ('c')",                 # max + 1 = 11
        "INSERT INTO r(id, v) VALUES ('20', 'text that is an integer')",
        "INSERT INTO r(id, v) VALUES (2.0, 'real that is an integer')",
        "INSERT INTO r(id, v) VALUES (-5, 'negative')",
        "INSERT INTO r(id, v) VALUES ('x', 'not an integer')",
        "INSERT INTO r(id, v) VALUES (1.5, 'fraction')",
        "INSERT INTO r(id, v) VALUES (10, 'duplicate')",
        "INSERT INTO r(id, v) VALUES (NULL, 'null id gets a new rowid')",
        "SELECT rowid, _rowid_, oid, id, typeof(id), v FROM r ORDER BY id",
        "UPDATE r SET id = 100 WHERE id = 1",
        "SELECT rowid, id, v FROM r WHERE rowid = 100",
        "SELECT id FROM r WHERE id > 5 AND id <= 20 ORDER BY id DESC",
        "DELETE FROM r WHERE rowid BETWEEN 10 AND 20",
        "SELECT id, v FROM r ORDER BY id",
    ],
    "rowid_without_alias": [
        "CREATE TABLE n(a TEXT, b)",
        "INSERT INTO n VALUES ('x', 1), ('y', 2)",
        "INSERT INTO n(a) VALUES ('w')",
        "SELECT rowid, * FROM n ORDER BY rowid",
        "DELETE FROM n WHERE rowid = 3",
        "INSERT INTO n(a) VALUES ('v')",
        "SELECT rowid, a FROM n ORDER BY rowid",
    ],
    "autoincrement": [
        "CREATE TABLE au(id INTEGER PRIMARY KEY AUTOINCREMENT, v)",
        "INSERT INTO au(v) VALUES (1), (2), (3)",
        "DELETE FROM au WHERE id = 3",
        "INSERT INTO au(v) VALUES (4)",           # 4, not 3: AUTOINCREMENT never reuses
        "DELETE FROM au",
        "INSERT INTO au(v) VALUES (5)",
        "INSERT INTO au(id, v) VALUES (100, 6)",
        "DELETE FROM au WHERE id = 100",
        "INSERT INTO au(v) VALUES (7)",
        "SELECT * FROM au ORDER BY id",
    ],
    "unique_and_primary_key": [
        "CREATE TABLE u(id INTEGER PRIMARY KEY, a UNIQUE, b, c, UNIQUE (b, c))",
        "INSERT INTO u(a, b, c) VALUES (1, 1, 1)",
        "INSERT INTO u(a, b, c) VALUES (1, 2, 2)",            # a dup
        "INSERT INTO u(a, b, c) VALUES (NULL, 1, 1)",         # (b, c) dup
        "INSERT INTO u(a, b, c) VALUES (NULL, 1, NULL)",      # NULLs never collide
        "INSERT INTO u(a, b, c) VALUES (NULL, 1, NULL)",
        "INSERT INTO u(id, a) VALUES (1, 99)",                 # pk dup
        "INSERT INTO u(a) VALUES ('1')",                      # untyped: '1' <> 1
        "UPDATE u SET a = 1 WHERE id = 2",
        "UPDATE u SET a = a + 10",
        "SELECT * FROM u ORDER BY id",
        "CREATE TABLE tp(x TEXT PRIMARY KEY, y)",
        "INSERT INTO tp VALUES ('k', 1)",
        "INSERT INTO tp VALUES ('k', 2)",
        "INSERT INTO tp VALUES (NULL, 3)",                    # SQLite's legacy: NULL allowed
        "INSERT INTO tp VALUES (5, 4)",
        "INSERT INTO tp VALUES ('5', 4)",                     # TEXT affinity: same as 5
        "SELECT x, typeof(x), y FROM tp ORDER BY y",
        "CREATE TABLE cp(a, b, PRIMARY KEY (a, b))",
        "INSERT INTO cp VALUES (1, 2), (2, 1)",
        "INSERT INTO cp VALUES (1, 2)",
        "SELECT * FROM cp ORDER BY a",
    ],
    "not_null_and_check": [
        "CREATE TABLE c(a NOT NULL, b INTEGER CHECK (b > 0), c TEXT NOT NULL DEFAULT 'd', "
        "CHECK (a <> b))",
        "INSERT INTO c(a, b) VALUES (1, 2)",
        "INSERT INTO c(a, b) VALUES (NULL, 2)",
        "INSERT INTO c(a, b) VALUES (1, 0)",
        "INSERT INTO c(a, b) VALUES (1, NULL)",                # CHECK on NULL passes
        "INSERT INTO c(a, b) VALUES (3, 3)",
        "INSERT INTO c(a, b, c) VALUES (4, 5, NULL)",
        "UPDATE c SET b = -1",
        "UPDATE c SET a = NULL WHERE b = 2",
        "UPDATE c SET b = b + 1 WHERE b IS NOT NULL",
        "SELECT * FROM c ORDER BY rowid",
    ],
    "failed_multi_row_statement": [
        "CREATE TABLE f(a UNIQUE)",
        "INSERT INTO f VALUES (1)",
        "INSERT INTO f VALUES (2), (3), (1), (4)",             # fails on the third row
        "SELECT a FROM f ORDER BY a",
        "UPDATE f SET a = 5 - a",                              # 4, then 3... fine, no collision
        "SELECT a FROM f ORDER BY a",
        "INSERT INTO f VALUES (10), (11)",
        "UPDATE f SET a = 11 WHERE a = 10",                    # collides
        "SELECT a FROM f ORDER BY a",
    ],
    "update_and_delete": [
        "CREATE TABLE w(id INTEGER PRIMARY KEY, a INTEGER, b TEXT)",
        "INSERT INTO w(a, b) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (NULL, 'd'), (5, NULL)",
        "UPDATE w SET a = a * 2, b = b || a WHERE a > 1",
        "UPDATE w SET a = (SELECT max(a) FROM w) WHERE a IS NULL",
        "UPDATE w SET b = 'none' WHERE b IS NULL",
        "DELETE FROM w WHERE a IN (SELECT a FROM w WHERE a > 5)",
        "SELECT * FROM w ORDER BY id",
        "DELETE FROM w",
        "SELECT count(*) FROM w",
        "INSERT INTO w(a) VALUES (1)",
        "SELECT id, a FROM w",
    ],
    "affinity_on_insert": [
        # (NUMERIC affinity: see KNOWN_BUG_SCRIPTS)
        "CREATE TABLE aff(i INTEGER, r REAL, t TEXT, b BLOB, x)",
        "INSERT INTO aff VALUES ('12', '12', 12, '12', '12')",
        "INSERT INTO aff VALUES ('1.5', 3, 1.5, 1, 1.0)",
        "INSERT INTO aff VALUES ('abc', 'abc', x'00', 'q', -0)",
        "INSERT INTO aff VALUES (2.0, '-0', 1e20, 2.0, '2.0')",
        "INSERT INTO aff VALUES (' 3 ', '1e2', -0.5, NULL, 9223372036854775807)",
        "SELECT i, typeof(i), r, typeof(r), t, typeof(t), b, typeof(b), x, typeof(x) "
        "FROM aff ORDER BY rowid",
    ],
    "null_ordering": [
        "CREATE TABLE o(a, b TEXT COLLATE NOCASE)",
        "INSERT INTO o VALUES (NULL, 'b'), (1, 'A'), ('1', 'a'), (x'01', 'B'), (1.5, NULL), (-1, 'c')",
        "SELECT a FROM o ORDER BY a, rowid",
        "SELECT a FROM o ORDER BY a DESC, rowid",
        "SELECT b FROM o WHERE b = 'a' ORDER BY rowid",
        "SELECT b FROM o WHERE b > 'a' ORDER BY rowid",
        "SELECT b FROM o ORDER BY b COLLATE BINARY, rowid",
        "SELECT a FROM o ORDER BY a LIMIT 2 OFFSET 2",
        "SELECT a FROM o ORDER BY a LIMIT -1 OFFSET 4",
    ],
    "aggregates_on_empty_and_mixed": [
        "CREATE TABLE g(k, v)",
        "SELECT count(*), count(v), sum(v), total(v), avg(v), min(v), max(v), group_concat(v) FROM g",
        "SELECT k, count(*) FROM g GROUP BY k",
        "INSERT INTO g VALUES (1, 1), (1, 2.5), (1, '3'), (2, 'x'), (2, NULL), (NULL, 4)",
        "SELECT k, count(*), count(v), sum(v), total(v), avg(v), min(v), max(v) FROM g GROUP BY k",
        "SELECT k, group_concat(v, '') FROM g WHERE k = 2 GROUP BY k",
        "SELECT count(DISTINCT k), sum(DISTINCT k) FROM g",
        "SELECT k FROM g GROUP BY k HAVING sum(v) > 3",
        "SELECT sum(v) FROM g WHERE k = 1 HAVING count(*) > 10",
        "SELECT max(v) + 1 FROM g",
    ],
    "scalar_functions": [
        "SELECT abs(-3), abs(-3.5), abs(NULL), abs('-2'), coalesce(NULL, NULL, 3), ifnull(NULL, 'x'), "
        "nullif(1, 1), nullif(1, 2), iif(1 > 2, 'a', 'b')",
        "SELECT length('日本'), length(x'0102'), length(12.5), lower('ÄB'), upper('äb'), "
        "substr('hello', 2, 3), substr('hello', -3), substr('hello', 0), substr('hello', 2, -1)",
        "SELECT trim('  a  '), ltrim('xxaxx', 'x'), rtrim('xxaxx', 'x'), trim('abcba', 'ab'), "
        "replace('aaa', 'a', 'bb'), replace('abc', '', 'x'), instr('hello', 'l'), instr('hello', 'z')",
        "SELECT round(2.5), round(-2.5), round(1.005, 2), round(123.456, -1), round(0.5), round(1e20), "
        "round(3), typeof(round(3))",
        "SELECT typeof(1), typeof(1.0), typeof('1'), typeof(x'01'), typeof(NULL), hex('aé'), hex(12), "
        "hex(1.5), hex(x'00ff'), hex(NULL)",
        "SELECT 1 || 2, 1.5 || 'x', NULL || 'x', 'a' || x'62', 0.1 + 0.2, 1e300 * 1e10, -(-9223372036854775807)",
        "SELECT 5 / 2, -5 / 2, 5 % -3, -5 % 3, 5.5 % 2, 5 / 0, 5 % 0, 5.0 / 0, '10' / '4', 'a' + 1",
        "SELECT CAST('12abc' AS INTEGER), CAST('  12  ' AS INTEGER), CAST('1e3' AS INTEGER), "
        "CAST(1.9 AS INTEGER), CAST(-1.9 AS INTEGER), CAST(x'3132' AS INTEGER), "
        "CAST(12 AS TEXT), CAST(1.0 AS TEXT), CAST('abc' AS BLOB), CAST(NULL AS TEXT)",
        "SELECT 'abc' LIKE 'ABC', 'abc' GLOB 'ABC', 'a_c' LIKE 'a\\_c' ESCAPE '\\', "
        "'ü' LIKE 'Ü', 'x' BETWEEN 'a' AND 'z', 2 IN (1, 2.0), '2' IN (1, 2)",
    ],
    "column_collation_in_order_group_distinct": [
        "CREATE TABLE o(b TEXT COLLATE NOCASE)",
        "INSERT INTO o VALUES ('b'), ('A'), ('a'), ('B'), (NULL), ('c')",
        "SELECT b FROM o ORDER BY b, rowid",
        "SELECT DISTINCT b FROM o ORDER BY b",
        "SELECT b, count(*) FROM o GROUP BY b ORDER BY b",
    ],
    "insert_into_rowid_column": [
        "CREATE TABLE n(a TEXT)",
        "INSERT INTO n(rowid, a) VALUES (50, 'z')",
        "INSERT INTO n(a) VALUES ('w')",
        "INSERT INTO n(oid, a) VALUES ('7', 'q'), (NULL, 'r')",
        "INSERT INTO n(a, _rowid_) SELECT a || '2', rowid + 100 FROM n WHERE rowid < 52",
        "INSERT INTO n(rowid, a) VALUES (50, 'dup')",
        "INSERT OR REPLACE INTO n(rowid, a) VALUES (50, 'replaced')",
        "INSERT INTO n(rowid, a) VALUES ('x', 'bad')",
        "SELECT rowid, a FROM n ORDER BY rowid",
    ],
    "mixed_queries": [
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT UNIQUE)",
        "INSERT INTO t(a, b) VALUES (1, 'x'), (2, 'y'), (NULL, 'z'), (2, NULL), (5, 'w')",
        "CREATE TABLE v(k INTEGER, i INTEGER)",
        "INSERT INTO v VALUES (1, 1), (2, NULL), (3, 2)",
        "SELECT a AS q, count(*) FROM t GROUP BY q ORDER BY q",
        "SELECT a, b FROM t ORDER BY 2 DESC",
        "SELECT a, count(*) AS n FROM t GROUP BY a ORDER BY n DESC, a",
        "SELECT count(*) FROM t HAVING count(*) > 2",
        "SELECT * FROM (SELECT a, b FROM t WHERE a > 1) AS s ORDER BY b",
        "SELECT s.a, v.k FROM (SELECT a FROM t) s JOIN v ON v.i = s.a ORDER BY 1, 2",
        "SELECT a FROM t WHERE a NOT IN (SELECT i FROM v)",
        "SELECT a FROM t WHERE a IN (SELECT i FROM v WHERE i IS NOT NULL) ORDER BY a",
        "SELECT id FROM t WHERE a = (SELECT max(i) FROM v) ORDER BY id",
        "SELECT a FROM t ORDER BY a LIMIT 1 + 1 OFFSET (SELECT 1)",
        "SELECT a FROM t ORDER BY a NULLS LAST",
        "SELECT a FROM t ORDER BY a DESC NULLS FIRST",
        "SELECT max(a), b FROM t",
        "SELECT a, group_concat(b) FROM t GROUP BY a ORDER BY a",
        "SELECT DISTINCT a FROM t ORDER BY a DESC LIMIT 2",
        "SELECT a FROM t UNION SELECT i FROM v ORDER BY 1 LIMIT 3",
        "SELECT a FROM t UNION ALL SELECT i FROM v ORDER BY a DESC",
        "SELECT a FROM t INTERSECT SELECT i FROM v ORDER BY 1",
        "SELECT count(*) FROM t, v",
        "SELECT t.id, v.k FROM t LEFT JOIN v ON v.i = t.a WHERE v.k IS NULL ORDER BY t.id",
        "SELECT t.id, v.k FROM t LEFT JOIN v ON v.i = t.a AND v.k > 1 ORDER BY t.id, v.k",
        "SELECT t.id FROM t JOIN v USING (id)",
        "SELECT id, (SELECT count(*) FROM t AS t2 WHERE t2.a < t.a) FROM t ORDER BY id",
        "SELECT id FROM t WHERE EXISTS (SELECT 1 FROM v WHERE v.i = t.a AND v.k > t.id) ORDER BY id",
        "INSERT OR IGNORE INTO t(a, b) VALUES (9, 'x')",
        "INSERT OR REPLACE INTO t(a, b) VALUES (9, 'x')",
        "REPLACE INTO t(id, a, b) VALUES (1, 10, 'xx')",
        "SELECT * FROM t ORDER BY id",
        "UPDATE OR IGNORE t SET b = 'y' WHERE id = 1",
        "UPDATE t SET a = (SELECT count(*) FROM v WHERE v.i = t.a)",
        "SELECT * FROM t ORDER BY id",
        "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY id DESC LIMIT 2)",
        "SELECT * FROM t ORDER BY id",
        "SELECT coalesce(max(id), 0) + 1 FROM t",
        "SELECT typeof(sum(a)), typeof(avg(a)), typeof(total(a)), typeof(count(a)) FROM t",
        "SELECT min(b), max(b) FROM t WHERE 0",
        "SELECT a FROM t WHERE b LIKE 'X%' ORDER BY a",
        "SELECT a FROM t WHERE b GLOB 'X*",
        "SELECT 'a' = 'A', 'a' = 'A' COLLATE NOCASE, 'a ' = 'a' COLLATE RTRIM",
        "SELECT b FROM t ORDER BY b COLLATE NOCASE DESC",
        "SELECT id, b FROM t WHERE b IN ('x', 'y', 'zz') ORDER BY id",
        "SELECT CASE WHEN a IS NULL THEN 'n' WHEN a > 1 THEN 'big' END, count(*) FROM t GROUP BY 1 ORDER BY 1",
        "CREATE VIEW tv AS SELECT t.id, v.k FROM t JOIN v ON v.k = t.id",
        "SELECT * FROM tv ORDER BY id",
        "SELECT * FROM tv WHERE k > 1",
        "SELECT char(65, 66), unicode('A'), quote('it''s'), zeroblob(2), printf('%05.2f|%s|%d', 3.14159, 'x', 42)",
        "SELECT likely(1), unlikely(0), ifnull(NULL, NULL) IS NULL, nullif('a', 'A')",
        "SELECT instr(x'0102', x'02'), length(CAST(123 AS BLOB)), upper(NULL), lower(1.5)",
        "SELECT 10 << 2, 10 >> 1, 6 & 3, 6 | 3, ~5",
        "SELECT 1 WHERE 1 IN (SELECT 1 UNION SELECT 2)",
    ],
    "cast_as_numeric": [
        "SELECT CAST(1 AS NUMERIC), CAST('1e3' AS NUMERIC), CAST(' 7 ' AS NUMERIC), "
        "CAST('12.0' AS NUMERIC), CAST(x'31' AS NUMERIC), CAST(2.5 AS NUMERIC)",
    ],
    "numeric_column_affinity": [
        "CREATE TABLE n(x NUMERIC)",
        "INSERT INTO n VALUES ('12.0'), ('1e3'), (' 7 '), ('12'), ('2.5'), ('abc'), (7), (3.0)",
        "SELECT x, typeof(x) FROM n ORDER BY rowid",
    ],
    "drop_objects": [
        "CREATE TABLE d(a)",
        "CREATE INDEX d_a ON d(a)",
        "CREATE VIEW dv AS SELECT a FROM d",
        "DROP VIEW dv",
        "DROP INDEX d_a",
        "DROP TABLE d",
        "CREATE TABLE d(b)",
        "SELECT * FROM d",
    ],
    "views_and_in_subquery": [
        "CREATE TABLE a(x INTEGER PRIMARY KEY, y)",
        "INSERT INTO a(y) VALUES ('p'), ('q'), ('r')",
        "CREATE VIEW av AS SELECT x, upper(y) AS uy FROM a WHERE x > 1",
        "SELECT * FROM av ORDER BY x",
        "SELECT x FROM a WHERE x IN (SELECT x FROM av) ORDER BY x",
        "SELECT (SELECT uy FROM av WHERE av.x = a.x) FROM a ORDER BY x",
    ],
}


def run_script(pair: Any, statements: list[str], exact: bool = False) -> list[str]:
    """Run every statement on both engines; return the mismatches (all of them,
    so one report shows every difference in the script)."""
    problems = []
    for sql in statements:
        ordered = "ORDER BY" in sql.upper() and not sql.upper().startswith("INSERT")
        try:
            compare(pair, sql, ordered=ordered, exact=exact)
        except AssertionError as e:
            problems.append(str(e).split("\nassert ")[0])
    pair.commit()
    return problems


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script(twin, name: str) -> None:
    problems = run_script(twin, SCRIPTS[name])
    assert not problems, "\n".join(problems)


# -- known engine bugs ------------------------------------------------------------
# Each case is a script compared with sqlite3 like the ones above.  They are
# strict xfails: when the engine is fixed the test fails as XPASS, which is
# the signal to drop the marker (and the KNOWN_BUGS entry, if any).

KNOWN_BUG_SCRIPTS = {
}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason))
    for name, (reason, _) in sorted(KNOWN_BUG_SCRIPTS.items())])
def test_known_bug(twin, name: str) -> None:
    problems = run_script(twin, KNOWN_BUG_SCRIPTS[name][1], exact=True)
    assert not problems, "\n".join(problems)
