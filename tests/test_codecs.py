"""Tests of the key codec (memcmp order == SQLite order) and the row codec.

The key-order tests check the codec against the real ``sqlite3``: values are
inserted into a table without column affinity, sorted with ``ORDER BY``, and
the encoded keys must be non-decreasing along SQLite's order and equal exactly
where SQLite finds the rows equal.

Run ``python tests/test_codecs.py`` for a micro benchmark (ns per call).
"""
from __future__ import annotations

import math
import sqlite3
import struct
import sys
import timeit
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terndb._cext import _core
from terndb.engine.errors import CorruptDatabaseError, DataError, InterfaceError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# ----------------------------------------------------------------- strategies

_INTERESTING_NUMBERS: list[Any] = [
    0, 1, -1, 2, 127, 128, -128, -129, 255, 256, 2**31, -(2**31), 2**32,
    2**53 - 1, 2**53, 2**53 + 1, -(2**53) - 1, 2**62 + 1, INT64_MAX, INT64_MAX - 1,
    INT64_MIN, INT64_MIN + 1, 0.0, -0.0, 0.5, -0.5, 1.5, 5e-324, -5e-324,
    1.7976931348623157e308, -1.7976931348623157e308, math.inf, -math.inf,
    float(2**53), float(2**63), -float(2**63), float(2**62), 1e20, -1e20,
    9223372036854774784.0,  # largest double below 2**63
]

ints64 = st.integers(INT64_MIN, INT64_MAX)


def _near(base: int, delta: int, as_float: bool) -> int | float:
    value = max(INT64_MIN, min(INT64_MAX, base + delta))
    return float(value) if as_float else value


# Numbers clustered around boundaries so ints and reals land close together.
near_numbers = st.builds(
    _near,
    st.sampled_from([0, 2**53, -(2**53), 2**62, INT64_MAX, INT64_MIN, 10**18]),
    st.integers(-2048, 2048),
    st.booleans(),
)
numbers = st.one_of(
    ints64, st.floats(allow_nan=True), st.sampled_from(_INTERESTING_NUMBERS), near_numbers,
)
texts = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    st.text(st.sampled_from("a\x00\x01b\xff\U0001f600"), max_size=5),
)
blobs = st.one_of(st.binary(max_size=12), st.lists(st.sampled_from([b"\x00", b"\x01", b"\xff", b"a"]),
                                                   max_size=5).map(b"".join))
sql_values = st.one_of(st.none(), numbers, texts, blobs)
# Row values: exact round trip, so no NaN (it becomes NULL, tested apart).
row_values = st.one_of(st.none(), ints64, st.floats(allow_nan=False), texts, blobs,
                       st.sampled_from(_INTERESTING_NUMBERS))


def same_value(a: Any, b: Any) -> bool:
    """Equal with the same type; floats compared bit for bit (keeps -0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


def same_row(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------- row codec

@given(st.lists(row_values, max_size=40).map(tuple))
@settings(max_examples=400)
def test_row_round_trip(row: tuple) -> None:
    data = _core.encode_row(row)
    assert same_row(_core.decode_row(data), row)
    assert _core.row_column_count(data) == len(row)
    for i, v in enumerate(row):
        assert same_value(_core.decode_column(data, i), v)


@pytest.mark.parametrize("value", [
    0, 1, -1, 2, 127, 128, -128, -129, 32767, 32768, -32768, -32769, 2**23, -(2**23) - 1,
    2**31 - 1, 2**31, 2**39, -(2**47), 2**55, 2**55 - 1, INT64_MAX, INT64_MIN,
    0.0, -0.0, math.inf, -math.inf, 5e-324, 1.7976931348623157e308, 0.1,
    "", "a", "a\x00b", "\x00", "h\u00e9llo", "\U0001f600\U00010348", "x" * 63, "y" * 64,
    "z" * 100000, b"", b"\x00", b"\xff" * 63, b"\x01" * 64, bytes(range(256)) * 50, None,
])
def test_row_edge_values(value: Any) -> None:
    row = (value, 7, value)
    assert same_row(_core.decode_row(_core.encode_row(row)), row)


def test_row_is_compact() -> None:
    assert len(_core.encode_row((None, 0, 1, 5, -5))) == 1 + 1 + 1 + 1 + 2 + 2
    assert len(_core.encode_row((300, "abc", b"xy"))) == 1 + 3 + 4 + 3
    assert len(_core.encode_row((1.5,))) == 1 + 9


def test_row_bool_nan_and_buffers() -> None:
    row = _core.decode_row(_core.encode_row((True, False, math.nan, bytearray(b"ab"),
                                             memoryview(b"cd"))))
    assert same_row(row, (1, 0, None, b"ab", b"cd"))


@pytest.mark.parametrize("bad", [object(), [1], {"a": 1}, 1j, {1}])
def test_row_rejects_other_types(bad: Any) -> None:
    with pytest.raises(DataError, match=type(bad).__name__):
        _core.encode_row((1, bad))


@pytest.mark.parametrize("big", [2**63, -(2**63) - 1, 10**30])
def test_row_rejects_out_of_range_ints(big: int) -> None:
    with pytest.raises(DataError):
        _core.encode_row((big,))


def test_row_rejects_unencodable_text() -> None:
    with pytest.raises(DataError):
        _core.encode_row(("\ud800",))


def test_row_padding_after_add_column() -> None:
    data = _core.encode_row((1, "a"))
    assert _core.decode_row(data, 4) == (1, "a", None, None)
    assert _core.decode_row(data, 4, (None, None, 42, "d")) == (1, "a", 42, "d")
    assert _core.decode_row(data, 3, (None, None)) == (1, "a", None)  # short defaults
    assert _core.decode_row(data, 1) == (1,)
    assert _core.decode_row(data, 0) == ()
    assert _core.decode_column(data, 5, "dflt") == "dflt"
    assert _core.decode_column(data, 5) is None
    assert _core.row_column_count(data) == 2


def test_decode_columns_order_repeats_and_defaults() -> None:
    row = (10, None, 2.5, "text", b"blob", -7)
    data = _core.encode_row(row)
    assert _core.decode_columns(data, (4, 0, 4, 2)) == (b"blob", 10, b"blob", 2.5)
    assert _core.decode_columns(data, ()) == ()
    defaults = tuple(f"d{i}" for i in range(9))
    assert _core.decode_columns(data, (8, 5, 6), defaults) == ("d8", -7, "d6")
    assert _core.decode_columns(data, tuple(range(70)))[:6] == row  # heap offsets path
    with pytest.raises(InterfaceError):
        _core.decode_columns(data, (-1,))
    with pytest.raises(InterfaceError):
        _core.decode_column(data, -1)


@given(st.lists(row_values, min_size=1, max_size=12).map(tuple), st.data())
def test_decode_columns_matches_decode_row(row: tuple, data: st.DataObject) -> None:
    idx = tuple(data.draw(st.lists(st.integers(0, len(row) + 2), max_size=8)))
    encoded = _core.encode_row(row)
    full = _core.decode_row(encoded, len(row) + 3)
    assert same_row(_core.decode_columns(encoded, idx), tuple(full[i] for i in idx))


# ----------------------------------------------------------------- row corruption

_SAMPLE_ROW = (1, -300, 2.5, "h\u00e9", "x" * 70, b"\x00b", None, True, b"y" * 80)


def test_row_truncations_are_corrupt() -> None:
    data = _core.encode_row(_SAMPLE_ROW)
    for cut in range(len(data)):
        with pytest.raises(CorruptDatabaseError):
            _core.decode_row(data[:cut])


@pytest.mark.parametrize("data", [
    b"", b"\x80", b"\xff" * 11, b"\x01\x0e\x00", b"\x01\x0f", b"\x01\xc0", b"\x01\xff",
    b"\x01\x42\xff\xfe",            # invalid UTF-8
    b"\x05\x00",                      # more columns than bytes
    b"\x01\x0c\xff\xff\xff\xff\x0f",  # text length far past the end
    b"\x01\x0b\x00\x00",              # truncated REAL
    b"\x01\x01\x00",                  # trailing byte
])
def test_row_bad_bytes_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptDatabaseError):
        _core.decode_row(data)


@given(st.binary(max_size=40))
@settings(max_examples=500)
def test_row_random_bytes_never_crash(data: bytes) -> None:
    for call in (lambda: _core.decode_row(data), lambda: _core.decode_row(data, 5),
                 lambda: _core.decode_column(data, 3), lambda: _core.decode_columns(data, (2, 0)),
                 lambda: _core.row_column_count(data)):
        try:
            call()
        except CorruptDatabaseError:
            pass


# ----------------------------------------------------------------- key codec: round trip

def expected_decoded(value: Any, affinity: str) -> Any:
    """What decode_key returns for ``value`` under ``affinity`` (see keycodec.pxi)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, (int, float)):
        if affinity == "R":
            return float(value) + 0.0  # -0.0 reads back as 0.0
        if isinstance(value, float) and value.is_integer() and INT64_MIN <= value < 2**63:
            return int(value)
        return value + 0.0 if isinstance(value, float) else value
    return value


@given(st.lists(st.tuples(sql_values, st.sampled_from("IRNTB"), st.booleans()), max_size=6))
@settings(max_examples=400)
def test_key_round_trip(cols: list) -> None:
    values = tuple(c[0] for c in cols)
    aff = "".join(c[1] for c in cols).encode()
    desc = bytes(int(c[2]) for c in cols)
    key = _core.encode_key(values, desc)
    decoded = _core.decode_key(key, aff, desc)
    expected = tuple(expected_decoded(v, a) for v, a, _ in cols)
    assert same_row(decoded, expected)
    assert _core.key_component_count(key) == len(values)


def test_key_equal_numbers_have_equal_bytes() -> None:
    assert _core.encode_key((5,)) == _core.encode_key((5.0,))
    assert _core.encode_key((0,)) == _core.encode_key((-0.0,)) == _core.encode_key((0.0,))
    assert _core.encode_key((2**53,)) == _core.encode_key((float(2**53),))
    assert _core.encode_key((2**53 + 1,)) != _core.encode_key((float(2**53 + 1),))
    assert _core.encode_key((math.nan,)) == _core.encode_key((None,))
    assert _core.encode_key((True,)) == _core.encode_key((1,))
    assert _core.decode_key(_core.encode_key((5.0,)), b"B") == (5,)  # documented limitation


@pytest.mark.parametrize("value", [INT64_MAX, INT64_MIN, INT64_MAX - 511, 2**62 + 513,
                                   -(2**62) - 513, 2**53 + 1, -(2**53) - 1])
def test_key_int64_extremes_round_trip(value: int) -> None:
    key = _core.encode_key((value,))
    assert _core.decode_key(key, b"I") == (value,)
    assert _core.decode_key(key, b"R") == (float(value),)


def test_key_decode_stops_at_affinity_count() -> None:
    key = _core.encode_key((1, "a", b"b"))
    assert _core.decode_key(key, b"IT") == (1, "a")
    assert _core.decode_key(key, b"ITBIII") == (1, "a", b"b")
    assert _core.decode_key(b"", b"I") == ()


def test_key_desc_mismatch_is_corrupt() -> None:
    key = _core.encode_key((1, 2), b"\x00\x01")
    assert _core.decode_key(key, b"II") == (1, 2)  # DESC is recognised from the tags
    with pytest.raises(CorruptDatabaseError):
        _core.decode_key(key, b"II", b"\x00\x00")


def test_key_rejects_bad_values() -> None:
    with pytest.raises(DataError, match="list"):
        _core.encode_key(([1],))
    with pytest.raises(DataError):
        _core.encode_key((2**64,))
    with pytest.raises(DataError):
        _core.encode_key(("\udc00",))


def test_key_long_values_use_the_heap_buffer() -> None:
    values = ("\x00" * 500, b"a" * 1000, 3)
    key = _core.encode_key(values, b"\x01\x00\x01")
    assert _core.decode_key(key, b"TBI") == values


# ----------------------------------------------------------------- key codec: order vs sqlite3

def sqlite_order_and_ties(rows: list[tuple], desc: tuple[bool, ...]) -> tuple[list[tuple], list[bool]]:
    """Rows in sqlite3's ORDER BY order, and whether each adjacent pair is equal."""
    width = len(desc)
    con = sqlite3.connect(":memory:")
    cols = ", ".join(f"c{i}" for i in range(width))  # no declared type: no affinity
    con.execute(f"CREATE TABLE t({cols})")
    con.executemany(f"INSERT INTO t VALUES ({', '.join('?' * width)})", rows)
    order = ", ".join(f"c{i} {'DESC' if d else 'ASC'}" for i, d in enumerate(desc))
    ordered = con.execute(f"SELECT {cols} FROM t ORDER BY {order}").fetchall()
    same = " AND ".join(f"?{2 * i + 1} IS ?{2 * i + 2}" for i in range(width))
    ties = [bool(con.execute(f"SELECT {same}", [v for pair in zip(a, b) for v in pair]).fetchone()[0])
            for a, b in zip(ordered, ordered[1:])]
    con.close()
    return ordered, ties


def check_order_against_sqlite(rows: list[tuple], desc: tuple[bool, ...]) -> None:
    ordered, ties = sqlite_order_and_ties(rows, desc)
    flags = bytes(desc)
    keys = [_core.encode_key(r, flags) for r in ordered]
    for i, tie in enumerate(ties):
        if tie:
            assert keys[i] == keys[i + 1], (ordered[i], ordered[i + 1])
        else:
            assert keys[i] < keys[i + 1], (ordered[i], ordered[i + 1])


@given(st.lists(sql_values, min_size=2, max_size=30), st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_key_order_single_column_matches_sqlite(values: list, desc: bool) -> None:
    check_order_against_sqlite([(v,) for v in values], (desc,))


@given(st.integers(1, 3).flatmap(lambda w: st.tuples(
    st.lists(st.tuples(*[sql_values] * w), min_size=2, max_size=25),
    st.tuples(*[st.booleans()] * w))))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_key_order_composite_matches_sqlite(case: tuple) -> None:
    rows, desc = case
    check_order_against_sqlite(rows, desc)


def test_key_order_interesting_numbers_and_strings() -> None:
    values = _INTERESTING_NUMBERS + [
        None, "", "a", "a\x00", "a\x00\x00", "a\x01", "ab", "b", "\U0001f600", "\x00",
        b"", b"a", b"a\x00", b"a\x00\x01", b"a\x01", b"ab", b"\xff", b"\x00",
    ]
    values += [v + d for v in (2**53, 2**62, -(2**62), INT64_MAX - 2000) for d in range(-3, 4)]
    values += [float(v) for v in (2**53 + 1, 2**62 + 1, INT64_MAX, INT64_MIN)]
    for desc in (False, True):
        check_order_against_sqlite([(v,) for v in values], (desc,))
        check_order_against_sqlite([(v, w) for v in values[::3] for w in values[::5]],
                                   (desc, not desc))


# ----------------------------------------------------------------- prefixes and rowids

@given(st.lists(sql_values, max_size=5).map(tuple), st.binary(max_size=5))
def test_key_prefix_property(values: tuple, desc: bytes) -> None:
    full = _core.encode_key(values, desc)
    for k in range(len(values) + 1):
        prefix = _core.encode_key(values[:k], desc[:k])
        assert full.startswith(prefix)
        succ = _core.prefix_successor(prefix)
        if succ is not None:
            assert prefix <= full < succ


@pytest.mark.parametrize("prefix, successor", [
    (b"", None), (b"\xff", None), (b"\xff\xff", None), (b"a", b"b"), (b"a\xff", b"b"),
    (b"a\xfe\xff\xff", b"a\xff"), (b"\x00", b"\x01"),
])
def test_prefix_successor_cases(prefix: bytes, successor: bytes | None) -> None:
    assert _core.prefix_successor(prefix) == successor


@given(st.binary(max_size=6), st.binary(max_size=6), st.binary(max_size=8))
def test_prefix_successor_is_least_upper_bound(prefix: bytes, suffix: bytes, other: bytes) -> None:
    succ = _core.prefix_successor(prefix)
    if succ is None:
        assert prefix.strip(b"\xff") == b""
        return
    assert prefix + suffix < succ
    assert not succ.startswith(prefix)
    if other > succ or other == succ:  # nothing below succ is beyond the prefix range
        assert not other.startswith(prefix)
    if other > prefix and not other.startswith(prefix):
        assert other >= succ


@given(st.lists(ints64, min_size=2, max_size=30))
def test_rowid_keys_sort_like_ints(rowids: list[int]) -> None:
    keys = [_core.encode_rowid(r) for r in rowids]
    assert all(len(k) == 8 for k in keys)
    assert [_core.decode_rowid(k) for k in keys] == rowids
    assert sorted(rowids) == [_core.decode_rowid(k) for k in sorted(keys)]


@given(st.lists(st.tuples(st.sampled_from([None, 1, 2.5, "a", "a\x00", b"a"]), ints64),
                min_size=2, max_size=20), st.booleans())
def test_index_keys_with_rowid_suffix(entries: list, desc: bool) -> None:
    flags = bytes([desc])
    keys = [_core.encode_key_with_rowid((v,), r, flags) for v, r in entries]
    for (v, r), key in zip(entries, keys):
        assert _core.key_rowid_suffix(key) == r
        assert key[:-8] == _core.encode_key((v,), flags)
        assert _core.decode_key(key, b"B", flags) == (v,)
    # Equal values are ordered by rowid after them.
    for (v1, r1), k1 in zip(entries, keys):
        for (v2, r2), k2 in zip(entries, keys):
            if v1 == v2 and type(v1) is type(v2):
                assert (k1 < k2) == (r1 < r2)


# ----------------------------------------------------------------- key corruption

@pytest.mark.parametrize("key", [
    b"\x99", b"\x15", b"\x15\xbf", b"\x15\xbf\x00", b"\x15\xbf\x00\x07", b"\x15\xbf\x00\x03",
    b"\x15\xbf\x00\x03\x80", b"\x15" + b"\x11" * 9 + b"\x00\x02", b"\x25abc", b"\x25a\x00\x02",
    b"\x25\xff\xfe\x00\x01", b"\x35a\x00", b"\x15\xc3\x40\x00\x03\x00\x00",
    b"\x15\xbf\xf8\x00\x03\x80\x01",   # offset on a non-integral double (1.5)
    b"\x15\xc3\xe0\x00\x03\x80\x01",   # int above INT64_MAX
])
def test_key_bad_bytes_are_corrupt(key: bytes) -> None:
    with pytest.raises(CorruptDatabaseError):
        _core.decode_key(key, b"III")


def test_key_truncations_are_corrupt() -> None:
    key = _core.encode_key((2**53 + 1, "ab\x00", b"\x00z", -1.5), b"\x00\x01\x00\x01")
    for cut in range(1, len(key)):
        try:
            _core.key_component_count(key[:cut])
        except CorruptDatabaseError:
            continue
        # A cut exactly between components is a valid shorter key.
        assert key[:cut] in {_core.encode_key(p, b"\x00\x01\x00\x01") for p in
                             [(2**53 + 1,), (2**53 + 1, "ab\x00"), (2**53 + 1, "ab\x00", b"\x00z")]}


@given(st.binary(max_size=30))
@settings(max_examples=500)
def test_key_random_bytes_never_crash(key: bytes) -> None:
    for aff in (b"IIII", b"RRRR", b"TBNI"):
        try:
            _core.decode_key(key, aff)
        except CorruptDatabaseError:
            pass
    try:
        _core.key_component_count(key)
    except CorruptDatabaseError:
        pass


def test_rowid_bad_lengths_are_corrupt() -> None:
    with pytest.raises(CorruptDatabaseError):
        _core.decode_rowid(b"\x00" * 7)
    with pytest.raises(CorruptDatabaseError):
        _core.key_rowid_suffix(b"\x05")


# ----------------------------------------------------------------- micro benchmark

def _bench(stmt: str, env: dict, number: int = 200_000) -> float:
    best = min(timeit.repeat(stmt, globals=env, number=number, repeat=5))
    return best / number * 1e9


def main() -> None:
    row = (12345, 7, 3.25, "alice", "london")
    env = {"c": _core, "row": row, "data": _core.encode_row(row), "key": (42, "bob"),
           "kbytes": _core.encode_key((42, "bob"))}
    results = {
        "encode_row (5 cols)": _bench("c.encode_row(row)", env),
        "decode_row (5 cols)": _bench("c.decode_row(data)", env),
        "decode_column (#3)": _bench("c.decode_column(data, 3)", env),
        "decode_columns (1,3)": _bench("c.decode_columns(data, (1, 3))", env),
        "encode_key (2 cols)": _bench("c.encode_key(key)", env),
        "decode_key (2 cols)": _bench("c.decode_key(kbytes, b'IT')", env),
        "encode_rowid": _bench("c.encode_rowid(123456)", env),
        "baseline: tuple(row)": _bench("tuple(row)", env),
    }
    for name, ns in results.items():
        print(f"{name:24s} {ns:7.1f} ns")


if __name__ == "__main__":
    sys.exit(main())
