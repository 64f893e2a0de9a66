"""Arrow results (fetch_arrow_table / fetch_record_batch / fetch_df) and ingest, against sqlite3.

Expected values come from Python's sqlite3 running the same SQL: a column's
Arrow values must equal sqlite3's values, converted by the documented rule
(any TEXT -> ``CAST(x AS TEXT)``, BLOB -> ``CAST(x AS BLOB)``, INTEGER with
REAL -> ``CAST(x AS REAL)``), so SQLite itself renders numbers as text.
"""
from __future__ import annotations

import datetime
import decimal
import sqlite3

import pytest

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

import terndb  # noqa: E402
from terndb import arrow as A  # noqa: E402


def both(twin, sql: str, params=()) -> None:
    twin.both(sql, params)


def lite_column(twin, expr: str, table: str = "t", order: str = "rowid") -> list:
    return [r[0] for r in twin.lite.execute(f"SELECT {expr} FROM {table} ORDER BY {order}")]


def expected_column(twin, col: str, table: str = "t", order: str = "rowid") -> tuple[str, list]:
    """(Arrow type name, values) sqlite3 says a column should give under the documented rule."""
    classes = {r[0] for r in twin.lite.execute(f"SELECT DISTINCT typeof({col}) FROM {table}")} - {"null"}
    if "text" in classes:
        return "string", lite_column(twin, f"CAST({col} AS TEXT)", table, order)
    if "blob" in classes:
        return "binary", lite_column(twin, f"CAST({col} AS BLOB)", table, order)
    if "real" in classes:
        return "double", lite_column(twin, f"CAST({col} AS REAL)", table, order)
    if "integer" in classes:
        return "int64", lite_column(twin, col, table, order)
    return "null", lite_column(twin, col, table, order)


# --------------------------------------------------------------------------
# Value-based types
# --------------------------------------------------------------------------

VALUES = {
    "int": [1, -2, 0, 2 ** 63 - 1, -(2 ** 63), 127, -129],
    "real": [1.5, -0.0, 1e300, 2.0, 0.1, -3.25, 1e-300],
    "text": ["a", "", "héllo ✓", "x" * 100, "ascii", "日本", "tab\tnl\n"],
    "blob": [b"", b"\x00\xff", b"abc", b"\x80" * 70, b"z", b"\x01", b"q"],
}


@pytest.mark.parametrize("kind", list(VALUES))
@pytest.mark.parametrize("null_at", [None, 0, 3, 6, "all"])
@pytest.mark.parametrize("query", ["SELECT c FROM t", "SELECT c FROM t WHERE rowid > 0 OR c IS NULL"])
def test_each_type_with_nulls_anywhere(twin, kind, null_at, query):
    values = list(VALUES[kind])
    if null_at == "all":
        values = [None] * len(values)
    elif null_at is not None:
        values[null_at] = None
    both(twin, "CREATE TABLE t(c)")
    for v in values:
        both(twin, "INSERT INTO t VALUES (?)", (v,))
    table = twin.tern.execute(query).fetch_arrow_table()
    typ, expected = expected_column(twin, "c")
    assert str(table.schema.field("c").type) == typ
    assert table.column("c").to_pylist() == expected
    assert table.column("c").null_count == sum(v is None for v in values)


MIXES = [
    [1, 2.5, None],                 # int + real -> double
    [None, 3, 4.0, 2 ** 53 + 1],    # double rounds big ints like SQLite
    [1, "a", 2.5, None],            # text wins, numbers rendered by SQLite
    [1.0, 1e20, 0.1, "x"],          # REAL text forms (1.0, 1.0e+20)
    [b"ab", 7, None],               # blob + number -> binary, number as text bytes
    [b"ab", "cd", 3],               # blob + text -> text
    [None, None, "late"],           # NULLs then text
    [5, None, b"\x00"],             # int then blob
]


@pytest.mark.parametrize("values", MIXES)
@pytest.mark.parametrize("direct", [True, False])
def test_mixed_type_columns(twin, values, direct):
    both(twin, "CREATE TABLE t(c)")
    for v in values:
        both(twin, "INSERT INTO t VALUES (?)", (v,))
    sql = "SELECT c FROM t" if direct else "SELECT c FROM t WHERE 1"
    table = twin.tern.execute(sql).fetch_arrow_table()
    typ, expected = expected_column(twin, "c")
    assert str(table.schema.field("c").type) == typ
    assert table.column("c").to_pylist() == expected


def test_multi_column_table_and_rowid_alias(twin):
    both(twin, "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT, b BLOB)")
    rows = [(i, i * 3 if i % 4 else None, i / 7 if i % 5 else None, f"s{i}é" if i % 3 else None,
             bytes([i % 256]) if i % 6 else None) for i in range(1, 300)]
    twin.lite.executemany("INSERT INTO t VALUES (?,?,?,?,?)", rows)
    twin.tern.executemany("INSERT INTO t VALUES (?,?,?,?,?)", rows)
    for sql in ("SELECT id, n, x, s, b FROM t", "SELECT * FROM t", "SELECT b, id, s, id FROM t",
                "SELECT id, n + 0, upper(s) FROM t"):
        table = twin.tern.execute(sql).fetch_arrow_table()
        assert table.num_columns == len(twin.lite.execute(sql).description)
        assert list(zip(*[c.to_pylist() for c in table.columns])) == twin.lite.execute(sql).fetchall()


def test_duplicate_names_and_order(twin):
    both(twin, "CREATE TABLE t(a, b)")
    both(twin, "INSERT INTO t VALUES (1, 'x'), (2, 'y')")
    table = twin.tern.execute("SELECT a, b, a FROM t ORDER BY a DESC").fetch_arrow_table()
    assert table.column_names == ["a", "b", "a"]
    assert list(zip(*[c.to_pylist() for c in table.columns])) == \
        twin.lite.execute("SELECT a, b, a FROM t ORDER BY a DESC").fetchall()


def test_added_column_defaults_in_direct_scan(twin):
    both(twin, "CREATE TABLE t(a INTEGER)")
    both(twin, "INSERT INTO t VALUES (1), (2)")
    both(twin, "ALTER TABLE t ADD COLUMN d TEXT DEFAULT 'dflt'")
    both(twin, "INSERT INTO t VALUES (3, 'own')")
    table = twin.tern.execute("SELECT a, d FROM t").fetch_arrow_table()
    assert list(zip(*[c.to_pylist() for c in table.columns])) == twin.lite.execute("SELECT a, d FROM t").fetchall()


def test_empty_results(twin):
    both(twin, "CREATE TABLE t(a INTEGER, b TEXT)")
    table = twin.tern.execute("SELECT a, b FROM t").fetch_arrow_table()
    assert table.num_rows == 0 and table.column_names == ["a", "b"]
    frame = twin.tern.execute("SELECT a, b FROM t").fetch_df()
    assert list(frame.columns) == ["a", "b"] and len(frame) == 0
    batches = list(twin.tern.execute("SELECT a, b FROM t WHERE a > 5").fetch_record_batch(10))
    assert sum(b.num_rows for b in batches) == 0


def test_expressions_without_table(twin):
    sql = "SELECT 1, 2.5, 'x', x'00ff', NULL, 1 + 1.5, typeof(1)"
    table = twin.tern.execute(sql).fetch_arrow_table()
    assert list(zip(*[c.to_pylist() for c in table.columns])) == twin.lite.execute(sql).fetchall()
    assert [str(t) for t in table.schema.types] == ["int64", "double", "string", "binary", "null",
                                                     "double", "string"]


# --------------------------------------------------------------------------
# Batches: chunked tables and streams
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sql", ["SELECT id, v, u, w FROM t", "SELECT id, v, u, w FROM t WHERE id > 0"])
@pytest.mark.parametrize("chunked", [False, True])
def test_big_result_kinds_change_late(twin, monkeypatch, sql, chunked):
    if chunked:   # force chunks of 700 rows: earlier chunks are re-typed at the end
        monkeypatch.setattr(A, "TABLE_BATCH_ROWS", 700)
        monkeypatch.setattr(A, "FETCH_CHUNK_ROWS", 64)
    both(twin, "CREATE TABLE t(id INTEGER PRIMARY KEY, v, u, w)")
    rows = [(i, i, i, None) for i in range(1, 3001)]
    rows[1500] = (1501, 2.5, 1501, None)     # v: double from here
    rows[2900] = (2901, 2901, "t", b"b")     # u: text; w: NULLs then one blob
    if not chunked:
        rows[2950] = (2951, "late", 2951, None)   # v: ints, a real, then text: ints stay exact
    twin.lite.executemany("INSERT INTO t VALUES (?,?,?,?)", rows)
    twin.tern.executemany("INSERT INTO t VALUES (?,?,?,?)", rows)
    table = twin.tern.execute(sql).fetch_arrow_table()
    assert (table.column("id").num_chunks > 1) == chunked
    for name in ("id", "v", "u", "w"):
        typ, expected = expected_column(twin, name)
        assert str(table.schema.field(name).type) == typ
        assert table.column(name).to_pylist() == expected


@pytest.mark.parametrize("sql", ["SELECT id, s FROM t", "SELECT id, s FROM t WHERE id > 0"])
def test_record_batch_stream(twin, sql):
    both(twin, "CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT)")
    rows = [(i, f"r{i}" if i % 7 else None) for i in range(1, 5501)]
    twin.lite.executemany("INSERT INTO t VALUES (?,?)", rows)
    twin.tern.executemany("INSERT INTO t VALUES (?,?)", rows)
    reader = twin.tern.execute(sql).fetch_record_batch(rows_per_batch=1000)
    assert isinstance(reader, pa.RecordBatchReader)
    sizes = []
    got = []
    for batch in reader:
        sizes.append(batch.num_rows)
        got.extend(zip(*[c.to_pylist() for c in batch.columns]))
    assert sizes == [1000] * 5 + [500]
    assert got == twin.lite.execute(sql).fetchall()


def test_stream_converts_later_batches_when_exact(twin):
    both(twin, "CREATE TABLE t(v)")
    for v in [1.5, 2.5, 3, None, 4]:                 # double schema, ints later
        both(twin, "INSERT INTO t VALUES (?)", (v,))
    reader = twin.tern.execute("SELECT v FROM t").fetch_record_batch(2)
    assert str(reader.schema.field("v").type) == "double"
    assert reader.read_all().column("v").to_pylist() == [1.5, 2.5, 3.0, None, 4.0]


@pytest.mark.parametrize("late", ["text", 2.5, b"\x01"])
def test_stream_refuses_values_outside_its_schema(twin, late):
    both(twin, "CREATE TABLE t(v)")
    for v in [1, 2, 3, late]:
        both(twin, "INSERT INTO t VALUES (?)", (v,))
    reader = twin.tern.execute("SELECT v FROM t").fetch_record_batch(2)
    assert str(reader.schema.field("v").type) == "int64"
    next(iter(reader))
    with pytest.raises(terndb.DataError, match="first batch"):
        reader.read_all()


def test_stream_integral_real_into_int_column(twin):
    both(twin, "CREATE TABLE t(v)")
    for v in [1, 2, 3.0]:
        both(twin, "INSERT INTO t VALUES (?)", (v,))
    assert twin.tern.execute("SELECT v FROM t").fetch_record_batch(2).read_all().column(0).to_pylist() == [1, 2, 3]


@pytest.mark.parametrize("decl,later,typ", [("INTEGER", 5, "int64"), ("TEXT", "x", "string"), ("REAL", 1.5, "double"),
                                            ("", "y", "string"), ("BLOB", b"z", "binary")])
def test_stream_all_null_first_batch_typed_by_declaration(twin, decl, later, typ):
    both(twin, f"CREATE TABLE t(v {decl})")
    for v in [None, None, later]:
        both(twin, "INSERT INTO t VALUES (?)", (v,))
    reader = twin.tern.execute("SELECT v FROM t").fetch_record_batch(2)
    assert str(reader.schema.field("v").type) == typ
    assert reader.read_all().column("v").to_pylist() == lite_column(twin, "v")


def test_stream_ends_when_cursor_reexecutes(twin):
    both(twin, "CREATE TABLE t(v)")
    for v in range(10):
        both(twin, "INSERT INTO t VALUES (?)", (v,))
    cur = twin.tern.cursor()
    reader = cur.execute("SELECT v FROM t WHERE v >= 0").fetch_record_batch(3)
    cur.execute("SELECT 1")
    with pytest.raises(terndb.InterfaceError):
        reader.read_all()


# --------------------------------------------------------------------------
# Declared types
# --------------------------------------------------------------------------

def test_dates_and_timestamps(twin):
    both(twin, "CREATE TABLE t(d DATE, ts TIMESTAMP, tz DATETIME, bad TIMESTAMP, num TIMESTAMP)")
    rows = [("2024-02-29", "2024-02-29 13:14:15.123456", "2024-01-01 10:00:00+02:00", "2024-01-01 10:00", 1700000000),
            (None, "1999-12-31T23:59:59", "2024-06-01 00:00:00-05:30", "yesterday", None),
            ("1970-01-01", None, None, None, 5)]
    twin.lite.executemany("INSERT INTO t VALUES (?,?,?,?,?)", rows)
    twin.tern.executemany("INSERT INTO t VALUES (?,?,?,?,?)", rows)
    table = twin.tern.execute("SELECT * FROM t").fetch_arrow_table()
    types = {f.name: str(f.type) for f in table.schema}
    assert types == {"d": "date32[day]", "ts": "timestamp[us]", "tz": "timestamp[us, tz=UTC]",
                     "bad": "string", "num": "int64"}
    lite = twin.lite.execute("SELECT * FROM t").fetchall()
    assert table.column("d").to_pylist() == [None if r[0] is None else datetime.date.fromisoformat(r[0]) for r in lite]
    assert table.column("ts").to_pylist() == [None if r[1] is None else datetime.datetime.fromisoformat(r[1]) for r in lite]
    assert [None if v is None else v.timestamp() for v in table.column("tz").to_pylist()] == \
        [None if r[2] is None else datetime.datetime.fromisoformat(r[2]).timestamp() for r in lite]
    assert table.column("bad").to_pylist() == [r[3] for r in lite]
    frame = twin.tern.execute("SELECT d, ts FROM t").fetch_df()
    assert str(frame["d"].dtype).startswith("datetime64") and str(frame["ts"].dtype).startswith("datetime64")


def test_decimals(twin):
    both(twin, "CREATE TABLE t(p DECIMAL(10, 2), q DECIMAL, r DECIMAL(4, 1), s DECIMAL)")
    rows = [("12.5", 1, 1.25, "abc"), (None, 0.1, None, "1"), ("-3", "123456789.000001", 2, None)]
    twin.lite.executemany("INSERT INTO t VALUES (?,?,?,?)", rows)
    twin.tern.executemany("INSERT INTO t VALUES (?,?,?,?)", rows)
    table = twin.tern.execute("SELECT * FROM t").fetch_arrow_table()
    types = {f.name: str(f.type) for f in table.schema}
    # r: 1.25 does not fit DECIMAL(4, 1) exactly -> stays double; s: 'abc' is no number -> string
    assert types == {"p": "decimal128(10, 2)", "q": "decimal128(15, 6)", "r": "double", "s": "string"}
    lite = twin.lite.execute("SELECT * FROM t").fetchall()
    assert table.column("p").to_pylist() == [None if r[0] is None else decimal.Decimal(repr(r[0])) for r in lite]
    assert table.column("q").to_pylist() == [decimal.Decimal(repr(r[1])) for r in lite]
    assert table.column("r").to_pylist() == [r[2] for r in lite]


def test_boolean_and_json(twin):
    both(twin, "CREATE TABLE t(b BOOLEAN, j JSON)")
    rows = [(1, '{"a": [1, 2]}'), (0, 3), (None, 2.5), (5, None)]
    twin.lite.executemany("INSERT INTO t VALUES (?,?)", rows)
    twin.tern.executemany("INSERT INTO t VALUES (?,?)", rows)
    table = twin.tern.execute("SELECT b, j FROM t").fetch_arrow_table()
    assert [str(t) for t in table.schema.types] == ["bool", "string"]
    assert table.column("b").to_pylist() == [None if r[0] is None else bool(r[0])
                                             for r in twin.lite.execute("SELECT b FROM t")]
    # A JSON column reads back SQLite's json() text of its documents (JSONB storage).
    assert table.column("j").to_pylist() == lite_column(twin, "CAST(json(j) AS TEXT)")
    frame = twin.tern.execute("SELECT b FROM t").fetch_df()
    assert str(frame["b"].dtype) == "boolean"


def test_fetch_df_dtypes(twin):
    both(twin, "CREATE TABLE t(i INTEGER, n INTEGER, x REAL, s TEXT)")
    rows = [(1, None, 0.5, "a"), (2, 2 ** 62, None, None), (3, 7, 1.5, "c")]
    twin.lite.executemany("INSERT INTO t VALUES (?,?,?,?)", rows)
    twin.tern.executemany("INSERT INTO t VALUES (?,?,?,?)", rows)
    frame = twin.tern.execute("SELECT * FROM t").fetch_df()
    assert str(frame["i"].dtype) == "int64" and str(frame["n"].dtype) == "Int64"
    assert str(frame["x"].dtype) == "float64"
    assert frame["n"].tolist()[1:] == [2 ** 62, 7] and pd.isna(frame["n"][0])   # exact, not float64
    lite = pd.read_sql("SELECT * FROM t", twin.lite)
    pd.testing.assert_frame_equal(frame.astype({"n": "float64"}), lite, check_dtype=False)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def test_fetch_errors(tcon):
    cur = tcon.cursor()
    with pytest.raises(terndb.ProgrammingError):
        cur.fetch_arrow_table()
    tcon.execute("CREATE TABLE t(a)")
    cur.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(terndb.ProgrammingError):
        cur.fetch_df()
    cur.execute("SELECT a FROM t")
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(terndb.ProgrammingError):
            cur.fetch_record_batch(bad)
    cur.close()
    with pytest.raises(terndb.ProgrammingError):
        cur.fetch_arrow_table()


# --------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------

def sample_table():
    return pa.table({
        "i": pa.array([1, None, -(2 ** 63)], pa.int64()),
        "u8": pa.array([0, 255, None], pa.uint8()),
        "f": pa.array([1.5, None, float("inf")], pa.float64()),
        "f32": pa.array([0.5, 2.0, None], pa.float32()),
        "s": pa.array(["a", None, "é✓"], pa.string()),
        "ls": pa.array(["x", "y", None], pa.large_string()),
        "bin": pa.array([b"\x00", None, b"zz"], pa.binary()),
        "flag": pa.array([True, False, None], pa.bool_()),
        "d": pa.array([datetime.date(2024, 1, 2), None, datetime.date(1970, 1, 1)], pa.date32()),
        "ts": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, 600000), None,
                        datetime.datetime(2000, 1, 1)], pa.timestamp("us")),
        "dec": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("-2.25")], pa.decimal128(6, 2)),
        "cat": pa.array(["p", "q", "p"]).dictionary_encode(),
        "lst": pa.array([[1, 2], None, []], pa.list_(pa.int64())),
    })


def test_ingest_create_round_trip_matches_sqlite3(twin):
    data = sample_table()
    assert twin.tern.ingest("t", data, create=True) == 3
    twin.tern.commit()
    # sqlite3 gets the same declared types and the values the driver documents.
    cols = ", ".join(f'"{f.name}" {A._declared_type(pa, f.type, f.name)}' for f in data.schema)
    twin.lite.execute(f"CREATE TABLE t ({cols})")
    lite_rows = [
        (1, 0, 1.5, 0.5, "a", "x", b"\x00", 1, "2024-01-02", "2024-01-02 03:04:05.600000", "1.50", "p", "[1,2]"),
        (None, 255, None, 2.0, None, "y", None, 0, None, None, None, "q", None),
        (-(2 ** 63), None, float("inf"), None, "é✓", None, b"zz", None, "1970-01-01", "2000-01-01 00:00:00",
         "-2.25", "p", "[]"),
    ]
    twin.lite.executemany(f"INSERT INTO t VALUES ({', '.join('?' * 13)})", lite_rows)
    sql = "SELECT " + ", ".join(f'"{n}", typeof("{n}")' for n in data.column_names) + " FROM t ORDER BY rowid"
    assert twin.tern.execute(sql).fetchall() == twin.lite.execute(sql).fetchall()
    back = twin.tern.execute("SELECT * FROM t").fetch_arrow_table()
    for name in ("i", "u8", "f", "s", "ls", "bin", "flag", "d", "ts", "dec"):
        want = data.column(name).to_pylist()
        assert back.column(name).to_pylist() == want, name
    assert back.column("cat").to_pylist() == ["p", "q", "p"]
    assert back.column("lst").to_pylist() == ["[1,2]", None, "[]"]


def test_ingest_inputs_and_modes(tcon):
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert tcon.ingest("t", table, create=True) == 3
    assert tcon.ingest("t", table.to_batches()[0]) == 3
    assert tcon.ingest("t", pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=2))) == 3
    assert tcon.ingest("t", pd.DataFrame({"b": ["w"], "a": [9]})) == 1          # by name
    assert tcon.execute("SELECT count(*), sum(a) FROM t").fetchone() == (10, 27)
    assert tcon.ingest("t", pa.table({"a": [5.5]}), mode="replace") == 1
    assert tcon.execute("SELECT a, typeof(a) FROM t").fetchall() == [(5.5, "real")]
    assert tcon.ingest("t", pa.table({"a": pa.array([], pa.int64())})) == 0


def test_ingest_big_round_trip(tcon):
    n = 120_000
    data = pa.table({"id": pa.array(range(n), pa.int64()), "x": pa.array([i / 3 for i in range(n)]),
                     "s": pa.array([f"v{i}" for i in range(n)])})
    assert tcon.ingest("big", data, create=True) == n
    back = tcon.execute("SELECT id, x, s FROM big").fetch_arrow_table()
    assert back.equals(data.cast(back.schema))


def test_ingest_errors(tcon):
    tcon.execute("CREATE TABLE t(a INTEGER)")
    with pytest.raises(terndb.NoSuchObjectError):
        tcon.ingest("missing", pa.table({"a": [1]}))
    with pytest.raises(terndb.ProgrammingError):
        tcon.ingest("t", pa.table({"a": [1]}), mode="upsert")
    with pytest.raises(terndb.ProgrammingError):
        tcon.ingest("t", [(1,)])
    with pytest.raises(terndb.NotSupportedError):
        tcon.ingest("d", pa.table({"a": pa.array([datetime.timedelta(1)])}), create=True)
    with pytest.raises(terndb.DataError):
        tcon.ingest("t", pa.table({"a": pa.array([2 ** 64 - 1], pa.uint64())}))
    with pytest.raises(terndb.NoSuchObjectError, match="no column named nope"):
        tcon.ingest("t", pa.table({"nope": [1]}))
    assert tcon.execute("SELECT count(*) FROM t").fetchone() == (0,)
