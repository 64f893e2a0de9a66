"""Tests of terndb.types (PEP 249 type objects, constructors, type codes) and
terndb.adapters (parameter adaptation, placeholder numbering, binding,
result converters), with round-trip properties checked by hypothesis and
placeholder numbering checked against sqlite3 itself."""
from __future__ import annotations

import datetime
import decimal
import enum
import math
import sqlite3
import time
import uuid
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings, strategies as st

from terndb import adapters
from terndb.adapters import (PARSE_DECLTYPES, ParamSpec, adapt_params, adapt_value, bind,
                             register_adapter, register_converter, row_converter)
from terndb.engine.errors import DataError, ParameterError, ProgrammingError
from terndb.types import (BINARY, DATETIME, NUMBER, ROWID, STRING, Binary, Date,
                          DateFromTicks, DBAPITypeObject, Time, TimeFromTicks, Timestamp,
                          TimestampFromTicks, type_code_for)

INT64_MAX = 2 ** 63 - 1
INT64_MIN = -(2 ** 63)


@pytest.fixture(autouse=True)
def fresh_registries(monkeypatch):
    """Each test starts with no user adapters or converters, and leaves none."""
    monkeypatch.setattr(adapters, "_user_adapters", {})
    monkeypatch.setattr(adapters, "_resolved", {})
    monkeypatch.setattr(adapters, "_user_converters", {})


# ---------------------------------------------------------------- constructors

def test_constructors_build_datetime_values():
    assert Date(2002, 12, 25) == datetime.date(2002, 12, 25)
    assert Time(13, 45, 30) == datetime.time(13, 45, 30)
    assert Timestamp(2002, 12, 25, 13, 45, 30) == datetime.datetime(2002, 12, 25, 13, 45, 30)
    assert Timestamp(2002, 12, 25, 13, 45, 30, 7) == datetime.datetime(2002, 12, 25, 13, 45, 30, 7)
    assert type(Timestamp(2002, 1, 1)) is datetime.datetime


def test_from_ticks_reads_local_time():
    ticks = time.mktime((2002, 12, 25, 13, 45, 30, 0, 0, -1))
    assert DateFromTicks(ticks) == datetime.date(2002, 12, 25)
    assert TimeFromTicks(ticks) == datetime.time(13, 45, 30)
    assert TimestampFromTicks(ticks) == datetime.datetime(2002, 12, 25, 13, 45, 30)


@pytest.mark.parametrize("build", [
    lambda: Date(2002, 13, 1),
    lambda: Date("2002", 1, 1),
    lambda: Time(25, 0, 0),
    lambda: Timestamp(2002, 2, 30),
    lambda: DateFromTicks("yesterday"),
    lambda: TimestampFromTicks(1e300),
    lambda: Binary(12.5),
])
def test_bad_constructor_arguments_raise_data_error(build):
    with pytest.raises(DataError):
        build()


def test_binary_copies_bytes_like_and_refuses_text():
    assert Binary(b"abc") == b"abc"
    assert Binary(bytearray(b"\x00\xff")) == b"\x00\xff"
    assert Binary(memoryview(b"xyz")[1:]) == b"yz"
    assert type(Binary(bytearray(b"a"))) is bytes
    assert Binary(b"") == b""
    with pytest.raises(DataError, match="encode text first"):
        Binary("text")


# --------------------------------------------------------------- type objects

CATEGORY_CASES = [
    # (type code, the type objects it equals)
    ("INTEGER", {NUMBER}),
    ("int", {NUMBER}),
    ("BIGINT", {NUMBER}),
    ("UNSIGNED BIG INT", {NUMBER}),
    ("REAL", {NUMBER}),
    ("DOUBLE PRECISION", {NUMBER}),
    ("FLOAT", {NUMBER}),
    ("NUMERIC", {NUMBER}),
    ("DECIMAL(10, 5)", {NUMBER}),
    ("BOOLEAN", {NUMBER}),
    ("TEXT", {STRING}),
    ("VARCHAR(20)", {STRING}),
    ("nvarchar(100)", {STRING}),
    ("CHARACTER(20)", {STRING}),
    ("CLOB", {STRING}),
    ("JSON", {STRING}),
    ("UUID", {STRING}),
    ("BLOB", {BINARY}),
    ("DATE", {DATETIME}),
    ("datetime", {DATETIME}),
    ("TIMESTAMP", {DATETIME}),
    ("TIMESTAMP WITH TIME ZONE", {DATETIME}),
    ("TIME", {DATETIME}),
    ("ROWID", {ROWID, NUMBER}),
    ("integer  primary key", {ROWID, NUMBER}),
    # SQLite's affinity rules, applied literally: 'POINT' contains INT.
    ("POINT", {NUMBER}),
    ("STRING", {NUMBER}),  # no CHAR/CLOB/TEXT: NUMERIC affinity, as in SQLite
]
ALL_TYPE_OBJECTS = (STRING, BINARY, NUMBER, DATETIME, ROWID)


@pytest.mark.parametrize("code,expected", CATEGORY_CASES)
def test_type_objects_follow_affinity_rules(code, expected):
    for type_object in ALL_TYPE_OBJECTS:
        matches = type_object in expected
        assert (type_object == code) is matches, (type_object, code)
        assert (code == type_object) is matches, (code, type_object)
        assert (type_object != code) is (not matches)


@pytest.mark.parametrize("code", [None, "", 1, 1.5, b"TEXT", str])
def test_type_objects_equal_no_non_codes(code):
    for type_object in ALL_TYPE_OBJECTS:
        assert type_object != code
        assert not type_object == code


def test_type_objects_compare_hash_and_repr():
    assert STRING == STRING and STRING != NUMBER
    assert DBAPITypeObject("STRING") == STRING
    assert hash(DBAPITypeObject("STRING")) == hash(STRING)
    assert len({STRING, NUMBER, STRING}) == 2
    assert repr(NUMBER) == "terndb.NUMBER"
    assert "VARCHAR(3)" in [NUMBER, STRING]


def test_type_code_for_declared_types_is_normalized_text():
    assert type_code_for("varchar(20)") == "VARCHAR(20)"
    assert type_code_for("  unsigned   big int ") == "UNSIGNED BIG INT"
    assert type_code_for("Json", str) == "JSON"  # the declared type wins
    assert type_code_for("INTEGER", int, rowid_alias=True) == "INTEGER PRIMARY KEY"
    assert type_code_for("INTEGER", int, rowid_alias=True) == ROWID


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize("value_type,code", [
    (int, "INTEGER"), (bool, "INTEGER"), (float, "REAL"), (str, "TEXT"),
    (bytes, "BLOB"), (type(None), None), (None, None), (Colour, "INTEGER"),
    (datetime.datetime, "TIMESTAMP"), (datetime.date, "DATE"), (datetime.time, "TIME"),
    (decimal.Decimal, "DECIMAL"), (dict, "JSON"), (list, "JSON"), (complex, None),
])
def test_type_code_for_computed_columns(value_type, code):
    assert type_code_for(None, value_type) == code
    assert type_code_for("", value_type) == code


def test_computed_codes_match_the_right_type_objects():
    assert type_code_for(None, int) == NUMBER
    assert type_code_for(None, float) == NUMBER
    assert type_code_for(None, str) == STRING
    assert type_code_for(None, bytes) == BINARY
    assert type_code_for(None, datetime.date) == DATETIME


# -------------------------------------------------------- adapting one value

class Shade(str, enum.Enum):
    DARK = "dark"


class MyFloat(float):
    pass


@pytest.mark.parametrize("value,expected", [
    (None, None), (0, 0), (INT64_MAX, INT64_MAX), (INT64_MIN, INT64_MIN),
    (1.5, 1.5), ("héllo", "héllo"), (b"\x00", b"\x00"),
    (True, 1), (False, 0), (Colour.RED, 1), (Shade.DARK, "dark"), (MyFloat(2.5), 2.5),
    (bytearray(b"ab"), b"ab"), (memoryview(b"abc")[::2], b"ac"),
    (datetime.date(2024, 2, 29), "2024-02-29"),
    (datetime.date(5, 1, 2), "0005-01-02"),
    (datetime.datetime(2024, 2, 29, 13, 5, 9), "2024-02-29 13:05:09"),
    (datetime.datetime(2024, 2, 29, 13, 5, 9, 120), "2024-02-29 13:05:09.000120"),
    (datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))),
     "2024-01-01 00:00:00-05:30"),
    (datetime.time(7, 8, 9), "07:08:09"),
    (datetime.time(7, 8, 9, 10), "07:08:09.000010"),
    (decimal.Decimal("1.10"), "1.10"),
    (decimal.Decimal("-0.000000000000000000000000001"), "-1E-27"),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678123456781234567812345678"),
    ({"a": [1, 2.5, None, "é"]}, '{"a":[1,2.5,null,"é"]}'),
    ([], "[]"),
])
def test_adapt_value_table(value, expected):
    result = adapt_value(value)
    assert result == expected and type(result) is type(expected)


def test_native_values_keep_types_exactly():
    assert type(adapt_value(Colour.RED)) is int
    assert type(adapt_value(Shade.DARK)) is str
    assert type(adapt_value(MyFloat(1.0))) is float


def test_numpy_scalars_bind_as_python_numbers():
    np = pytest.importorskip("numpy")
    assert adapt_value(np.int64(7)) == 7 and type(adapt_value(np.int64(7))) is int
    assert type(adapt_value(np.float64(0.5))) is float  # a float subclass
    with pytest.raises(DataError, match="too large"):
        adapt_value(np.uint64(2 ** 64 - 1))


def test_nan_binds_as_null_like_sqlite():
    # sqlite3 binds NaN as NULL; so does terndb (also through the tuple fast path).
    assert adapt_value(float("nan")) is None
    assert adapt_params((1, float("nan"))) == (1, None)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 10 ** 30])
def test_ints_beyond_int64_are_data_errors(value):
    with pytest.raises(DataError, match=r"Error binding parameter 3: .*64-bit"):
        adapt_params((1, 2, value))
    with pytest.raises(DataError):
        adapt_value(value)


@pytest.mark.parametrize("value,name", [
    (object(), "object"), (1j, "complex"), ({1}, "set"), ((1, 2), "tuple"),
    (datetime.timedelta(1), "datetime.timedelta"),
])
def test_unsupported_types_use_sqlite3_wording(value, name):
    with pytest.raises(ProgrammingError) as info:
        adapt_params(("ok", value))
    assert str(info.value) == f"Error binding parameter 2: type '{name}' is not supported"
    # The same text as sqlite3 (3.11+) for the same mistake:
    with pytest.raises(sqlite3.ProgrammingError) as sqlite_info:
        sqlite3.connect(":memory:").execute("select ?, ?", ("ok", value))
    assert str(info.value) == str(sqlite_info.value)


@pytest.mark.parametrize("value", [{"x": float("nan")}, {"x": {1, 2}}, [object()]])
def test_non_json_content_is_a_data_error(value):
    with pytest.raises(DataError, match="Error binding parameter 1: value cannot be stored as JSON"):
        adapt_value(value)


def test_uuid_text_is_what_sqlalchemy_stores_on_sqlite():
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    process = sqlalchemy.Uuid().bind_processor(sqlite_dialect.dialect())
    value = uuid.uuid4()
    assert adapt_value(value) == process(value)


# --------------------------------------------------------------- adapt_params

def test_all_native_params_come_back_as_the_same_object():
    params = (1, 2.5, "three", b"four", None, INT64_MAX, INT64_MIN)
    assert adapt_params(params) is params
    assert adapt_params(()) == ()


def test_params_needing_adaptation_become_a_new_tuple():
    params = (1, True, datetime.date(2020, 1, 2))
    result = adapt_params(params)
    assert result == (1, 1, "2020-01-02") and type(result) is tuple
    assert params == (1, True, datetime.date(2020, 1, 2))  # input untouched


# -------------------------------------------------------- registered adapters

class Point:
    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y


class Point3(Point):
    pass


def test_registered_adapter_applies_to_type_and_subclasses():
    register_adapter(Point, lambda p: f"{p.x};{p.y}")
    assert adapt_value(Point(1, 2)) == "1;2"
    assert adapt_value(Point3(3, 4)) == "3;4"
    assert adapt_params((Point(0.5, 1),)) == ("0.5;1",)


def test_registered_adapter_overrides_builtin_rule():
    assert adapt_value(decimal.Decimal("2.5")) == "2.5"
    register_adapter(decimal.Decimal, float)
    assert adapt_value(decimal.Decimal("2.5")) == 2.5


def test_adapter_result_is_checked():
    register_adapter(Point, lambda p: (p.x, p.y))
    with pytest.raises(ProgrammingError, match="Error binding parameter 1: adapter for type 'Point' "
                                               "returned unsupported type 'tuple'"):
        adapt_value(Point(1, 2))
    register_adapter(Point, lambda p: 2 ** 70)
    with pytest.raises(DataError, match="64-bit"):
        adapt_value(Point(1, 2))


def test_failing_adapter_becomes_data_error():
    def explode(point):
        raise ValueError("no can do")
    register_adapter(Point, explode)
    with pytest.raises(DataError, match="Error binding parameter 2: adapter for type 'Point' raised "
                                        "ValueError: no can do") as info:
        adapt_params((1, Point(1, 2)))
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("type_,adapter", [
    (int, str), (str, str), (type(None), str), ("Point", str), (Point, "not callable"),
])
def test_register_adapter_refuses_bad_registrations(type_, adapter):
    with pytest.raises(ProgrammingError):
        register_adapter(type_, adapter)


# ------------------------------------------------------ placeholder numbering

@pytest.mark.parametrize("markers,names,slots", [
    ([], (), ()),
    (["?", "?", "?"], (None, None, None), (0, 1, 2)),
    (["?3", "?"], (None, None, None, None), (2, 3)),
    (["?2", "?1", "?2"], (None, None), (1, 0, 1)),
    ([":a", ":b", ":a"], (":a", ":b"), (0, 1, 0)),
    ([":a", "$a", "@a"], (":a", "$a", "@a"), (0, 1, 2)),
    (["?", ":a", "?", ":a", "?1"], (None, ":a", None), (0, 1, 2, 1, 0)),
    ([":a", "?1"], (":a",), (0, 0)),
])
def test_from_markers_numbers_like_sqlite(markers, names, slots):
    spec = ParamSpec.from_markers(markers)
    assert spec.names == names
    assert spec.marker_slots == slots
    assert spec.count == len(names)


@pytest.mark.parametrize("marker", ["?0", "?32767", "?x", "?-1", ":", "name", "", "?١"])
def test_from_markers_rejects_bad_markers(marker):
    with pytest.raises(ParameterError):
        ParamSpec.from_markers(["?", marker])


MARKERS = st.sampled_from(["?", "?1", "?2", "?4", ":a", ":b", "$a", "@c"])


@settings(max_examples=300, deadline=None)
@given(st.lists(MARKERS, min_size=1, max_size=8))
def test_numbering_matches_sqlite3(markers):
    """sqlite3 (3.11) binds a sequence by slot number even for named slots,
    so selecting the markers with values 1..N shows SQLite's numbering."""
    spec = ParamSpec.from_markers(markers)
    connection = sqlite3.connect(":memory:")
    sql = "select " + ", ".join(markers)
    values = tuple(range(1, spec.count + 1))
    row = connection.execute(sql, values).fetchone()
    assert row == tuple(values[slot] for slot in spec.marker_slots)
    with pytest.raises(sqlite3.ProgrammingError):  # so spec.count is SQLite's too
        connection.execute(sql, values + (0,))


# -------------------------------------------------------------------- binding

class Row(Sequence):
    def __init__(self, *items):
        self._items = items

    def __getitem__(self, index):
        return self._items[index]

    def __len__(self):
        return len(self._items)


class Params(Mapping):
    def __init__(self, **items):
        self._items = items

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


QMARK2 = ParamSpec.from_markers(["?", "?"])
NAMED = ParamSpec.from_markers([":a", "$b", ":a"])


def test_bind_tuple_of_natives_is_the_same_object():
    params = (1, "x")
    assert bind(QMARK2, params) is params


@pytest.mark.parametrize("params", [[1, True], Row(1, True), (1, True)])
def test_bind_any_sequence(params):
    result = bind(QMARK2, params)
    assert result == (1, 1) and type(result) is tuple


@pytest.mark.parametrize("params", [
    {"a": 1, "b": datetime.date(2020, 1, 1)},
    Params(a=1, b=datetime.date(2020, 1, 1), unused=object()),
])
def test_bind_mapping_by_name_without_prefix(params):
    assert bind(NAMED, params) == (1, "2020-01-01")


def test_bind_no_parameters():
    assert bind(ParamSpec.EMPTY, ()) == ()
    assert bind(ParamSpec.EMPTY, None) == ()
    assert bind(ParamSpec.EMPTY, []) == ()
    assert bind(ParamSpec.EMPTY, {"extra": 1}) == ()


@pytest.mark.parametrize("spec,params,message", [
    (QMARK2, (1,), "The current statement uses 2, and there are 1 supplied."),
    (QMARK2, [1, 2, 3], "The current statement uses 2, and there are 3 supplied."),
    (QMARK2, None, "The current statement uses 2, and there are 0 supplied."),
    (QMARK2, {"a": 1}, "Binding 1 has no name, but you supplied a dictionary"),
    (NAMED, {"a": 1}, r"You did not supply a value for binding parameter \$b\."),
    (NAMED, (1, 2), r"Binding 1 is a named parameter \(:a\), but you supplied a sequence"),
    (QMARK2, "ab", r"not str \(wrap a single value in a tuple"),
    (QMARK2, b"ab", "not bytes"),
    (QMARK2, {1, 2}, "must be a sequence or a mapping, not set"),
    (QMARK2, 12, "not int"),
])
def test_bind_mistakes_are_parameter_errors(spec, params, message):
    with pytest.raises(ParameterError, match=message):
        bind(spec, params)


def test_bind_reports_the_slot_of_a_bad_value():
    with pytest.raises(ProgrammingError, match="Error binding parameter 2: type 'complex'"):
        bind(NAMED, {"a": 1, "b": 1j})
    with pytest.raises(ProgrammingError, match="Error binding parameter 2: type 'complex'"):
        bind(QMARK2, [1, 1j])


def test_param_spec_equality_and_repr():
    assert ParamSpec.from_markers(["?", ":a"]) == ParamSpec((None, ":a"), (0, 1))
    assert len({ParamSpec.from_markers(["?"]), ParamSpec.from_markers(["?1"])}) == 1
    assert "':a'" in repr(NAMED)


# ----------------------------------------------------------------- converters

def test_converters_are_off_by_default():
    assert row_converter([("d", "DATE")], 0) is None
    assert row_converter([("x", "INTEGER"), ("y", None), ("z", "")], PARSE_DECLTYPES) is None


@pytest.mark.parametrize("declared,stored,expected", [
    ("DATE", "2024-02-29", datetime.date(2024, 2, 29)),
    ("date", b"2024-02-29", datetime.date(2024, 2, 29)),
    ("TIMESTAMP", "2024-02-29 13:05:09.000120", datetime.datetime(2024, 2, 29, 13, 5, 9, 120)),
    ("DATETIME", "2024-02-29T13:05:09", datetime.datetime(2024, 2, 29, 13, 5, 9)),
    ("TIMESTAMP WITH TIME ZONE", "2024-01-01 00:00:00+01:00",
     datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))),
    ("DATETIME", "2024-02-29", datetime.datetime(2024, 2, 29)),
    ("TIME", "07:08:09.5", datetime.time(7, 8, 9, 500000)),
    ("BOOLEAN", 1, True), ("BOOLEAN", 0, False), ("BOOL", 7, True), ("BOOLEAN", "0", False),
    ("BOOLEAN", 0.0, False),
    ("DECIMAL(10,2)", "1.10", decimal.Decimal("1.10")),
    ("NUMERIC", 0.1, decimal.Decimal("0.1")),
    ("NUMERIC", 12, decimal.Decimal(12)),
    ("JSON", '{"a":[1,null]}', {"a": [1, None]}),
    ("JSON", b"[1]", [1]),
    ("JSON", 3.5, 3.5),
])
def test_builtin_converters(declared, stored, expected):
    convert = row_converter([("other", "TEXT"), ("col", declared)], PARSE_DECLTYPES)
    row = convert(("untouched", stored))
    assert row == ("untouched", expected)
    assert type(row[1]) is type(expected)
    assert convert(("x", None)) == ("x", None)


@pytest.mark.parametrize("declared,stored", [
    ("DATE", "29/02/2024"), ("DATE", 20240229), ("TIMESTAMP", "noon"),
    ("TIME", "25:00"), ("BOOLEAN", "yes"), ("DECIMAL", "1,5"), ("JSON", "{bad"),
    ("DATE", b"\xff\xfe"),
])
def test_unreadable_stored_values_raise_data_error_naming_the_column(declared, stored):
    convert = row_converter([("when", declared)], PARSE_DECLTYPES)
    with pytest.raises(DataError, match=f"column 'when' declared {declared}"):
        convert((stored,))


def test_convert_rows_converts_every_row():
    convert = row_converter([("d", "DATE")], PARSE_DECLTYPES)
    assert convert.convert_rows([("2020-01-01",), (None,)]) == [(datetime.date(2020, 1, 1),), (None,)]


def test_registered_converter_wins_and_ignores_case():
    register_converter("point", lambda v: tuple(map(float, v.split(";"))))
    register_converter("date", lambda v: "custom " + v)
    convert = row_converter([("p", "POINT"), ("d", "Date")], PARSE_DECLTYPES)
    assert convert(("1;2", "2020-01-01")) == ((1.0, 2.0), "custom 2020-01-01")


@pytest.mark.parametrize("typename,converter", [
    ("two words", str), ("DECIMAL(10)", str), ("", str), (None, str), ("X", 3),
])
def test_register_converter_refuses_bad_registrations(typename, converter):
    with pytest.raises(ProgrammingError):
        register_converter(typename, converter)


# ------------------------------------------------ round trips (hypothesis)

def _through(declared: str, value):
    """Bind ``value``, store it in sqlite3 under ``declared``, read it back converted."""
    connection = sqlite3.connect(":memory:")
    connection.execute(f"create table t (v {declared})")
    connection.execute("insert into t values (?)", adapt_params((value,)))
    stored = connection.execute("select v from t").fetchone()
    return row_converter([("v", declared)], PARSE_DECLTYPES)(stored)[0]


TIMEZONES = st.one_of(st.none(), st.builds(
    datetime.timezone, st.timedeltas(min_value=datetime.timedelta(hours=-23),
                                     max_value=datetime.timedelta(hours=23)).map(
        lambda d: datetime.timedelta(minutes=d // datetime.timedelta(minutes=1)))))


@settings(max_examples=150, deadline=None)
@given(st.dates())
def test_date_round_trip(value):
    assert _through("DATE", value) == value


@settings(max_examples=150, deadline=None)
@given(st.datetimes(timezones=TIMEZONES))
def test_datetime_round_trip(value):
    back = _through("TIMESTAMP", value)
    assert back == value and back.utcoffset() == value.utcoffset()


@settings(max_examples=150, deadline=None)
@given(st.times(timezones=TIMEZONES))
def test_time_round_trip(value):
    back = _through("TIME", value)
    assert back == value and back.utcoffset() == value.utcoffset()


@settings(max_examples=150, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=True))
def test_decimal_round_trip_is_exact_through_text(value):
    # A TEXT column keeps the adapted text exactly; Decimal(text) restores
    # sign, digits and exponent alike.
    text = adapt_value(value)
    assert decimal.Decimal(text).as_tuple() == value.as_tuple()
    connection = sqlite3.connect(":memory:")
    connection.execute("create table t (v TEXT)")
    connection.execute("insert into t values (?)", (text,))
    stored = connection.execute("select v from t").fetchone()
    converted = row_converter([("v", "DECIMAL")], PARSE_DECLTYPES)(stored)[0]
    assert converted.as_tuple() == value.as_tuple()


@settings(max_examples=150, deadline=None)
@given(st.booleans())
def test_boolean_round_trip(value):
    assert _through("BOOLEAN", value) is value


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(INT64_MIN, INT64_MAX)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.lists(JSON_VALUES, max_size=4),
                 st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4)))
def test_json_round_trip(value):
    assert _through("JSON", value) == value


@settings(max_examples=150, deadline=None)
@given(st.uuids())
def test_uuid_round_trip(value):
    connection = sqlite3.connect(":memory:")
    connection.execute("create table t (v CHAR(32))")
    connection.execute("insert into t values (?)", adapt_params((value,)))
    (stored,) = connection.execute("select v from t").fetchone()
    assert len(stored) == 32 and uuid.UUID(stored) == value


NATIVE_VALUES = st.one_of(st.none(), st.integers(INT64_MIN, INT64_MAX),
                          st.floats(allow_nan=False), st.text(), st.binary())


@settings(max_examples=200, deadline=None)
@given(st.lists(NATIVE_VALUES, max_size=6).map(tuple))
def test_native_tuples_pass_through_untouched(params):
    assert adapt_params(params) is params
    assert bind(ParamSpec.from_markers(["?"] * len(params)), params) is params


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(NATIVE_VALUES, st.booleans(), st.dates(), st.decimals(allow_nan=False),
                          st.uuids(), st.binary().map(bytearray)), max_size=6))
def test_adapted_values_are_always_native_and_sqlite3_accepts_them(params):
    adapted = adapt_params(tuple(params))
    assert all(type(v) in (type(None), int, float, str, bytes) for v in adapted)
    sql = "select " + ", ".join("?" * len(params)) if params else "select 1"
    sqlite3.connect(":memory:").execute(sql, adapted).fetchone()
