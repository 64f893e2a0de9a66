"""SQLite value semantics (cext/values.pxi) checked against Python's sqlite3.

Every operation is run on hypothesis-generated values both through terndb's
compiled primitives and through sqlite3 evaluating the same expression with
bound parameters; the two answers must agree in type and value.
"""
from __future__ import annotations

import functools
import math
import os
import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from terndb._cext import _core as V
from terndb.engine.errors import DataError



def examples(n: int) -> settings:
    """Hypothesis settings sized so that the whole file runs in ~15 s;
    TERNDB_TEST_SCALE=20 (say) multiplies the examples for a long soak."""
    n *= int(os.environ.get("TERNDB_TEST_SCALE", "1"))
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


FAST = examples(60)
MANY = examples(200)


# ---------------------------------------------------------------------------
# The reference
# ---------------------------------------------------------------------------

def _connect() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    # Blobs cast or concatenated to text may not be UTF-8; terndb decodes
    # them with replacement, so read sqlite3's text the same way.
    con.text_factory = lambda b: b.decode("utf-8", "replace")
    con.execute("CREATE TABLE t(i INTEGER, r REAL, n NUMERIC, x TEXT, b BLOB)")
    return con


DB = _connect()


def sq(expr: str, *params: Any) -> Any:
    """Evaluate ``SELECT expr`` in sqlite3 with bound parameters."""
    return DB.execute("SELECT " + expr, params).fetchone()[0]


def sq_error(expr: str, *params: Any) -> str | None:
    try:
        sq(expr, *params)
    except sqlite3.Error as exc:
        return str(exc)
    return None


def same(a: Any, b: Any) -> bool:
    """Equal in SQL type and value (a float's sign of zero included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


def check(ours: Any, theirs: Any, *context: Any) -> None:
    assert same(ours, theirs), f"terndb {ours!r} != sqlite3 {theirs!r} for {context!r}"


# ---------------------------------------------------------------------------
# Value generators
# ---------------------------------------------------------------------------

I64_MIN, I64_MAX = -2**63, 2**63 - 1

ints = st.one_of(
    st.integers(I64_MIN, I64_MAX),
    st.integers(-1000, 1000),
    st.sampled_from([0, 1, -1, I64_MIN, I64_MAX, I64_MIN + 1, I64_MAX - 1,
                     2**53, 2**53 + 1, -(2**53) - 1, 2**62, 2**31, -2**32]),
)
reals = st.one_of(
    st.floats(allow_nan=False),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.5, 5.5, -7.5, 1e20, 1e15, 1e16,
                     9.223372036854776e18, -9.223372036854776e18, 1e300,
                     float("inf"), float("-inf"), 2.0**63, 2.0**53, 0.1]),
)
SPACES = st.sampled_from(["", "", " ", "  ", "\t", "\n", "\r\n", "\x0b\x0c"])
TRAILERS = st.sampled_from(["", "", "", "x", "abc", ".", "e", "e+", "e5", ".5",
                            " 1", "\x00", "é", "-", "0x1"])
numeric_text = st.builds(
    lambda lead, sign, whole, dot, frac, exp, tail, trail: (
        lead + sign + whole + dot + frac + exp + tail + trail),
    SPACES,
    st.sampled_from(["", "", "-", "+"]),
    st.sampled_from(["", "0", "1", "12", "007", "9223372036854775807",
                     "9223372036854775808", "18446744073709551616",
                     "123456789012345678901234567890"]) | st.integers(0, 10**22).map(str),
    st.sampled_from(["", "", "."]),
    st.sampled_from(["", "5", "25", "000", "9999999999999999999"]) | st.integers(0, 10**20).map(str),
    st.sampled_from(["", "", "e3", "E-2", "e+400", "e-400", "e999", "e", "e-", "e308", "e-320"]),
    SPACES,
    TRAILERS,
)
special_text = st.sampled_from([
    "", " ", "abc", "inf", "-inf", "nan", "Infinity", "0x1A", "0X10", "1e999",
    "-1e999", "1e", "1.e", ".", "-", "+", ".5", "5.", "+.e3", "1_000", "١٢",
    "12abc", " 3.5e2x", "-0", "-0.0", "0.0", "1.0", "1e3", " 12 ", "\t12\n",
    "9223372036854775807", "-9223372036854775808", "9223372036854775808",
    "-9223372036854775809", "99999999999999999999", "1e-400", "4.9e-324",
    "1.7976931348623157e308", "1.7976931348623159e308", "2.5e-308",
])
float_text = st.floats(allow_nan=False, allow_infinity=False).map(repr)
int_text = ints.map(str)
texts = st.one_of(numeric_text, special_text, float_text, int_text,
                  st.text(max_size=8))
blobs = st.one_of(texts.map(lambda s: s.encode("utf-8")), st.binary(max_size=6))
values = st.one_of(st.none(), ints, reals, texts, blobs)
# Values whose text form is valid UTF-8 (for operations that render text).
utf8_values = st.one_of(st.none(), ints, reals, texts,
                        texts.map(lambda s: s.encode("utf-8")))


# ---------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------

@MANY
@given(st.one_of(values, st.sampled_from([b"1e999", b"\xff1"])))
def test_to_numeric_matches_multiplying_by_one(v):
    check(V.to_numeric(v), sq("? * 1", v), v)


@MANY
@given(values)
def test_to_integer_is_cast_as_integer(v):
    check(V.to_integer(v), sq("CAST(? AS INTEGER)", v), v)


@MANY
@given(st.one_of(values, float_text, numeric_text))
def test_to_real_is_cast_as_real(v):
    check(V.to_real(v), sq("CAST(? AS REAL)", v), v)


@examples(600)
@given(st.one_of(st.floats(allow_nan=False), st.floats(-1e3, 1e3),
                 st.integers(-10**18, 10**18).map(lambda i: i / 1000),
                 st.integers(-10**15, 10**15).map(float)))
@example(1.0)
@example(1e20)
@example(1.5e-7)
@example(123456789012345678.0)
@example(float("inf"))
@example(-0.0)
@example(0.1 + 0.2)
@example(9.999999999999999e22)
@example(5e-324)
@example(1.7976931348623157e308)
def test_real_to_text_matches_sqlite(r):
    check(V.real_to_text(r), sq("CAST(? AS TEXT)", r), r)
    check(V.to_text(r), sq("? || ''", r), r)


def test_real_to_text_examples():
    assert V.real_to_text(1.0) == "1.0"
    assert V.real_to_text(1e20) == "1.0e+20"
    assert V.real_to_text(1.5e-7) == "1.5e-07"
    assert V.real_to_text(123456789012345678.0) == "1.23456789012346e+17"
    assert V.real_to_text(float("inf")) == "Inf"
    assert V.real_to_text(float("-inf")) == "-Inf"
    assert V.real_to_text(0.1 + 0.2) == "0.3"


@MANY
@given(utf8_values)
def test_to_text_is_cast_as_text(v):
    check(V.to_text(v), sq("CAST(? AS TEXT)", v), v)


def test_to_numeric_examples():
    assert V.to_numeric("12abc") == 12
    assert same(V.to_numeric(" 3.5e2x"), 350.0)
    assert V.to_numeric("abc") == 0
    assert V.to_numeric(b"42") == 42
    assert V.to_numeric(None) is None
    assert same(V.to_numeric("9223372036854775808"), 9.223372036854776e18)


# ---------------------------------------------------------------------------
# Affinity
# ---------------------------------------------------------------------------

COLUMNS = {"i": V.AFF_INTEGER, "r": V.AFF_REAL, "n": V.AFF_NUMERIC,
           "x": V.AFF_TEXT, "b": V.AFF_BLOB}


def stored(column: str, v: Any) -> Any:
    """What sqlite3 stores for v in a column of table t."""
    DB.execute("DELETE FROM t")
    DB.execute(f"INSERT INTO t({column}) VALUES (?)", (v,))
    return DB.execute(f"SELECT {column} FROM t").fetchone()[0]


@MANY
@given(values, st.sampled_from(sorted(COLUMNS)))
def test_apply_affinity_matches_a_typed_column(v, column):
    check(V.apply_affinity(v, COLUMNS[column]), stored(column, v), v, column)


@pytest.mark.parametrize("v, aff, expected", [
    ("12", V.AFF_INTEGER, 12), ("1.0", V.AFF_INTEGER, 1), ("1e3", V.AFF_INTEGER, 1000),
    (1.5, V.AFF_INTEGER, 1.5), (3, V.AFF_REAL, 3.0), (5, V.AFF_TEXT, "5"),
    (1.0, V.AFF_TEXT, "1.0"), (" 12 ", V.AFF_INTEGER, 12), ("0x10", V.AFF_INTEGER, "0x10"),
    (1e20, V.AFF_NUMERIC, 1e20), ("9223372036854775808", V.AFF_INTEGER, 9.223372036854776e18),
    (b"12", V.AFF_INTEGER, b"12"), ("12", V.AFF_NONE, "12"),
])
def test_apply_affinity_examples(v, aff, expected):
    assert same(V.apply_affinity(v, aff), expected)


TYPE_WORDS = ["INT", "INTEGER", "TINYINT", "CHAR", "VARCHAR", "CLOB", "TEXT",
              "BLOB", "REAL", "FLOAT", "DOUBLE", "PRECISION", "NUMERIC", "DECIMAL",
              "BOOLEAN", "DATE", "POINT", "STRING", "X", "FLOATING", "CHARINT"]
type_names = st.builds(
    lambda words, size: " ".join(words) + size,
    st.lists(st.sampled_from(TYPE_WORDS), min_size=1, max_size=3),
    st.sampled_from(["", "", "(10)", "(5, 2)"]))


def _cast_kind(type_name: str) -> tuple:
    """Fingerprint of CAST(... AS type_name) on probes telling affinities apart."""
    return tuple((type(x).__name__, x) for x in (
        sq(f"CAST('1.5' AS {type_name})"), sq(f"CAST('2' AS {type_name})")))


AFF_FINGERPRINT = {
    V.AFF_INTEGER: (("int", 1), ("int", 2)),
    V.AFF_REAL: (("float", 1.5), ("float", 2.0)),
    V.AFF_NUMERIC: (("float", 1.5), ("int", 2)),
    V.AFF_TEXT: (("str", "1.5"), ("str", "2")),
    V.AFF_BLOB: (("bytes", b"1.5"), ("bytes", b"2")),
}


@FAST
@given(type_names)
def test_cast_affinity_of_type(type_name):
    assert AFF_FINGERPRINT[V.cast_affinity_of_type(type_name)] == _cast_kind(type_name)


@FAST
@given(st.one_of(type_names, st.just("")))
def test_affinity_of_declared_type(type_name):
    con = sqlite3.connect(":memory:")
    con.execute(f"CREATE TABLE c(v {type_name})")
    con.execute("INSERT INTO c VALUES (' 2 '), ('1.5'), (7)")
    got = [(type(x).__name__, x) for (x,) in con.execute("SELECT v FROM c ORDER BY rowid")]
    want = [(type(x).__name__, x) for x in
            (V.apply_affinity(v, V.affinity_of_type(type_name)) for v in (" 2 ", "1.5", 7))]
    assert got == want, (type_name, V.affinity_of_type(type_name))


def test_affinity_codes_round_trip():
    assert V.AFF_CODES == {V.AFF_BLOB: b"B", V.AFF_TEXT: b"T", V.AFF_NUMERIC: b"N",
                           V.AFF_INTEGER: b"I", V.AFF_REAL: b"R"}
    assert all(V.AFF_FROM_CODE[c] == a for a, c in V.AFF_CODES.items())


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------

OPS = {V.OP_EQ: "=", V.OP_NE: "<>", V.OP_LT: "<", V.OP_LE: "<=", V.OP_GT: ">", V.OP_GE: ">="}
COLLS = {V.COLL_BINARY: "BINARY", V.COLL_NOCASE: "NOCASE", V.COLL_RTRIM: "RTRIM"}
cmp_texts = st.text(alphabet="aAbBzZ _é\x00~", max_size=5)
cmp_values = st.one_of(values, cmp_texts)


@MANY
@given(cmp_values, cmp_values, st.sampled_from(sorted(OPS)), st.sampled_from(sorted(COLLS)))
def test_compare_op_matches_sqlite(a, b, op, coll):
    expected = sq(f"? {OPS[op]} ? COLLATE {COLLS[coll]}", a, b)
    check(V.compare_op(a, b, op, coll), expected, a, b, OPS[op], COLLS[coll])


@MANY
@given(cmp_values, cmp_values, st.sampled_from(sorted(COLLS)))
def test_is_and_is_not(a, b, coll):
    check(V.is_op(a, b, coll), sq(f"? IS ? COLLATE {COLLS[coll]}", a, b), a, b)
    check(V.is_not_op(a, b, coll), sq(f"? IS NOT ? COLLATE {COLLS[coll]}", a, b), a, b)


@FAST
@given(st.lists(cmp_values, max_size=12), st.sampled_from(sorted(COLLS)))
def test_sql_compare_orders_like_order_by(vs, coll):
    con = sqlite3.connect(":memory:")
    con.text_factory = DB.text_factory
    con.execute("CREATE TABLE s(k INTEGER PRIMARY KEY, v)")  # v: no affinity
    con.executemany("INSERT INTO s(v) VALUES (?)", [(v,) for v in vs])
    got = [k for (k,) in con.execute(f"SELECT k FROM s ORDER BY v COLLATE {COLLS[coll]}, k")]
    key = functools.cmp_to_key(lambda x, y: V.sql_compare_coll(x[1], y[1], coll) or x[0] - y[0])
    want = [k for k, _ in sorted(enumerate(vs, 1), key=key)]
    assert got == want


@MANY
@given(cmp_values, cmp_values)
def test_sql_compare_sign(a, b):
    c = V.sql_compare(a, b)
    assert c in (-1, 0, 1)
    assert c == -V.sql_compare(b, a)
    if a is not None and b is not None:
        assert c == sq("(?1 > ?2) - (?1 < ?2)", a, b)


def test_int_real_comparison_is_exact_beyond_2_53():
    assert V.sql_compare(2**53 + 1, 2.0**53) == 1
    assert V.sql_compare(I64_MAX, 2.0**63) == -1
    assert V.sql_compare(I64_MIN, -(2.0**63)) == 0
    assert V.sql_compare(None, -math.inf) == -1
    assert V.sql_compare(math.inf, "") == -1
    assert V.sql_compare("\uffff", b"") == -1


AFF_SQL_COLUMN = {V.AFF_INTEGER: "i", V.AFF_REAL: "r", V.AFF_NUMERIC: "n",
                  V.AFF_TEXT: "x", V.AFF_BLOB: "b"}
cmp_operand_affs = st.sampled_from([V.AFF_NONE] + sorted(AFF_SQL_COLUMN))


@MANY
@given(cmp_values, cmp_values, cmp_operand_affs, cmp_operand_affs, st.sampled_from(sorted(OPS)))
def test_comparison_affinity_between_columns_and_parameters(a, b, aff_a, aff_b, op):
    """Stored column values compared with each other or with parameters."""
    con = sqlite3.connect(":memory:")
    con.text_factory = DB.text_factory
    con.execute("CREATE TABLE p(i INTEGER, r REAL, n NUMERIC, x TEXT, b BLOB)")
    con.execute("CREATE TABLE q(i INTEGER, r REAL, n NUMERIC, x TEXT, b BLOB)")
    left = "?1" if aff_a == V.AFF_NONE else "p." + AFF_SQL_COLUMN[aff_a]
    right = "?2" if aff_b == V.AFF_NONE else "q." + AFF_SQL_COLUMN[aff_b]
    con.execute("INSERT INTO p VALUES (?1, ?1, ?1, ?1, ?1)", (a,))
    con.execute("INSERT INTO q VALUES (?1, ?1, ?1, ?1, ?1)", (b,))
    expected = con.execute(f"SELECT {left} {OPS[op]} {right}, ?1, ?2 FROM p, q", (a, b)).fetchone()[0]
    va, vb = V.apply_affinity(a, aff_a), V.apply_affinity(b, aff_b)
    conv_a, conv_b = V.comparison_affinity(aff_a, aff_b)
    ours = V.compare_op(V.apply_affinity(va, conv_a), V.apply_affinity(vb, conv_b), op)
    check(ours, expected, a, b, aff_a, aff_b, OPS[op])


# ---------------------------------------------------------------------------
# Arithmetic, concatenation, bitwise operators
# ---------------------------------------------------------------------------

BINARY_OPS = [("+", V.sql_add), ("-", V.sql_sub), ("*", V.sql_mul), ("/", V.sql_div),
              ("%", V.sql_mod), ("&", V.sql_bitand), ("|", V.sql_bitor),
              ("<<", V.sql_lshift), (">>", V.sql_rshift)]
small_shift = st.integers(-70, 70)


@examples(500)
@given(st.one_of(values, small_shift), st.one_of(values, small_shift),
       st.sampled_from(BINARY_OPS))
@example(I64_MIN, -1, ("/", V.sql_div))
@example(I64_MIN, -1, ("%", V.sql_mod))
@example(5.5, 2, ("%", V.sql_mod))
@example(-7, 3, ("%", V.sql_mod))
@example(7, -3, ("%", V.sql_mod))
@example("1e3", 7, ("%", V.sql_mod))
@example(I64_MAX, 1, ("+", V.sql_add))
@example(I64_MIN, 1, ("-", V.sql_sub))
@example(2**32, 2**32, ("*", V.sql_mul))
@example(math.inf, math.inf, ("-", V.sql_sub))
@example(1, 64, ("<<", V.sql_lshift))
@example(-1, 64, (">>", V.sql_rshift))
@example(8, -2, (">>", V.sql_rshift))
def test_binary_operators_match_sqlite(a, b, op):
    symbol, fn = op
    check(fn(a, b), sq(f"? {symbol} ?", a, b), a, symbol, b)


@MANY
@given(values)
@example(I64_MIN)
@example(-0.0)
@example("abc")
def test_unary_operators_match_sqlite(v):
    check(V.sql_neg(v), sq("-?", v), "-", v)
    check(V.sql_pos(v), sq("+?", v), "+", v)
    check(V.sql_bitnot(v), sq("~?", v), "~", v)


@MANY
@given(utf8_values, utf8_values)
@example(1.0, "")
@example(1e20, "")
@example(0.1 + 0.2, "")
def test_concat_matches_sqlite(a, b):
    check(V.sql_concat(a, b), sq("? || ?", a, b), a, b)


def test_arithmetic_examples():
    assert V.sql_add(2, 3) == 5 and type(V.sql_add(2, 3)) is int
    assert same(V.sql_add(I64_MAX, 1), 9.223372036854776e18)
    assert V.sql_div(7, 2) == 3 and V.sql_div(-7, 2) == -3
    assert V.sql_div(1, 0) is None and V.sql_mod(1, 0) is None and V.sql_div(1.0, 0.0) is None
    assert same(V.sql_mod(5.5, 2), 1.0)
    assert V.sql_mod(-7, 3) == -1 and V.sql_mod(7, -3) == 1
    assert same(V.sql_div(I64_MIN, -1), 9.223372036854776e18)
    assert V.sql_pos("abc") == "abc"
    assert V.sql_add("12abc", 1) == 13
    assert V.sql_concat(None, "a") is None


# ---------------------------------------------------------------------------
# Truth and three-valued logic
# ---------------------------------------------------------------------------

@MANY
@given(values)
@example("1abc")
@example(0.5)
@example("x")
@example(" 0.1e1x")
def test_truth_and_not(v):
    check(V.sql_truth(v), sq("NOT NOT ?", v), v)
    check(V.sql_not(v), sq("NOT ?", v), v)
    check(V.sql_truth(v), sq("CASE WHEN ? THEN 1 WHEN NOT ? THEN 0 END", v, v), v)


@FAST
@given(values, values)
def test_and_or(a, b):
    check(V.sql_and(a, b), sq("? AND ?", a, b), a, b)
    check(V.sql_or(a, b), sq("? OR ?", a, b), a, b)


# ---------------------------------------------------------------------------
# CAST
# ---------------------------------------------------------------------------

CAST_TYPES = {"INTEGER": V.AFF_INTEGER, "REAL": V.AFF_REAL, "NUMERIC": V.AFF_NUMERIC,
              "TEXT": V.AFF_TEXT, "BLOB": V.AFF_BLOB}


@examples(300)
@given(utf8_values, st.sampled_from(sorted(CAST_TYPES)))
@example("1.0", "NUMERIC")
@example("9223372036854775808", "NUMERIC")
@example("1e15", "NUMERIC")
@example("1e16", "NUMERIC")
@example(1e30, "INTEGER")
@example(-1e30, "INTEGER")
@example("abc", "REAL")
@example("1e-400", "NUMERIC")
@example("-0.0", "NUMERIC")
@example(1.0, "NUMERIC")
def test_cast_matches_sqlite(v, type_name):
    check(V.sql_cast(v, CAST_TYPES[type_name]), sq(f"CAST(? AS {type_name})", v), v, type_name)


def test_cast_of_unknown_type_name_is_numeric():
    assert V.cast_affinity_of_type("foo") == V.AFF_NUMERIC
    assert V.cast_affinity_of_type("") == V.AFF_NUMERIC
    assert V.affinity_of_type("") == V.AFF_BLOB
    assert V.affinity_of_type("FLOATING POINT") == V.AFF_INTEGER


def test_cast_rejects_unknown_affinity_code():
    with pytest.raises(DataError):
        V.sql_cast(1, 99)


# ---------------------------------------------------------------------------
# LIKE and GLOB
# ---------------------------------------------------------------------------

like_text = st.text(alphabet="aAbB%_xé\\\x00 ", max_size=7)
glob_text = st.text(alphabet="aAbz*?[]^-!\x00é", max_size=7)
match_subjects = st.one_of(like_text, glob_text, st.none(), ints, reals,
                           st.binary(max_size=3))


@examples(400)
@given(st.one_of(like_text, match_subjects), st.one_of(like_text, match_subjects))
@example("a%b", "A%%B")
@example("abc", "a%")
def test_like_matches_sqlite(value, pattern):
    check(V.sql_like(value, pattern), sq("? LIKE ?", value, pattern), value, pattern)


@examples(250)
@given(like_text, like_text, st.sampled_from(["\\", "%", "_", "a", "x", "é", "", "ab", 5]))
@example("a%b", "A%%B", "%")
@example("a_b", "a__b", "_")
@example("ab", "a%", "%")
def test_like_escape_matches_sqlite(value, pattern, escape):
    error = sq_error("? LIKE ? ESCAPE ?", value, pattern, escape)
    if error is not None:
        with pytest.raises(DataError, match="ESCAPE"):
            V.sql_like(value, pattern, escape)
        return
    check(V.sql_like(value, pattern, escape),
          sq("? LIKE ? ESCAPE ?", value, pattern, escape), value, pattern, escape)


@examples(400)
@given(st.one_of(glob_text, match_subjects), st.one_of(glob_text, match_subjects))
@example("a]", "a[]]")
@example("a", "a[")
@example("b", "[^a]")
@example("a-", "a[x-]")
@example("z", "[z-a]")
def test_glob_matches_sqlite(value, pattern):
    check(V.sql_glob(value, pattern), sq("? GLOB ?", value, pattern), value, pattern)


def test_compiled_matchers_reused():
    like = V.LikeMatcher("a_c%")
    assert like.matches("ABCdef") and like.matches("abc") and not like.matches("ab")
    glob = V.GlobMatcher("[a-c]*.txt")
    assert glob.matches("b.txt") and not glob.matches("B.txt")
    with pytest.raises(DataError):
        V.LikeMatcher("a", "xy")


@FAST
@given(match_subjects, like_text)
def test_compiled_matcher_on_any_value(value, pattern):
    expected = sq("? LIKE ?", value, pattern)
    check(V.LikeMatcher(pattern).matches_value(value), expected, value, pattern)


def test_overlong_pattern_is_an_error():
    with pytest.raises(DataError, match="too complex"):
        V.sql_like("a", "a" * 50001)
