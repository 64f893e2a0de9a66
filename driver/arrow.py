"""Arrow and pandas on terndb: query results as Arrow tables, streams and DataFrames; bulk ingest.

Results
    ``Cursor.fetch_arrow_table()``, ``Cursor.fetch_record_batch(rows_per_batch)``
    and ``Cursor.fetch_df()`` build Arrow columns in compiled code
    (``ArrowColumnsBuilder`` in ``cext/arrow.pxi``) straight from the rows the
    executor produces, a chunk at a time: no Python list of all rows exists.

    Column types.  A SQLite column can mix storage classes, so a column's Arrow
    type is decided by its values, then refined by its declared type:

    ============================  ============================================
    values (NULLs aside)          Arrow type
    ============================  ============================================
    only NULLs (or no rows)       null
    only INTEGERs                 int64
    INTEGERs and REALs            float64 (integers beyond 2**53 round)
    BLOBs, maybe with numbers     binary (numbers as the bytes of their text)
    any TEXT                      string; numbers rendered as SQLite renders
                                  them (1.0 -> '1.0'), BLOBs decoded as UTF-8
                                  (invalid bytes replaced)
    ============================  ============================================

    ===========================  ===============================================
    declared type (first word)   refinement
    ===========================  ===============================================
    JSON                         always string (numbers as JSON text)
    BOOLEAN, BOOL                bool, when the values are numbers (non-zero =
                                 true)
    DATE                         date32, when every text value is YYYY-MM-DD
    DATETIME, TIMESTAMP          timestamp[us] when every value parses as an ISO
                                 date-time without offset; timestamp[us, UTC]
                                 when every value has an offset; else string
    DECIMAL                      decimal128(p, s) when every value converts
                                 exactly (REALs via their shortest repr; the
                                 declared (p, s) when given, else the smallest
                                 that fits); else the value-based type
    ===========================  ===============================================

    A refinement that does not apply to every value leaves the column's
    value-based type: the conversion never loses or invents data.

    Streams (``fetch_record_batch``) have one schema, fixed by the first batch:
    later batches are converted into it when that is exact (an INTEGER into a
    float64 column, any value into a string column...) and raise DataError
    otherwise (e.g. TEXT arriving in an int64 column) - CAST in SQL, or use
    ``fetch_arrow_table``, which sees every value before choosing.  A column
    that is all NULL in a first batch that is not the last takes its type from
    its declared type (affinity: INTEGER -> int64, REAL/NUMERIC -> float64,
    TEXT and undeclared -> string, BLOB -> binary; DATE/TIMESTAMP/JSON/BOOLEAN
    as above).

    pandas (``fetch_df``): ``Table.to_pandas()``, except that an int64 or bool
    column holding NULLs becomes pandas' nullable ``Int64`` / ``boolean``
    instead of float64 / object, so integers stay exact; dates and timestamps
    become ``datetime64``; decimals are ``Decimal`` objects.

Ingest
    ``Connection.ingest(table, data, create=False, mode="append")`` inserts a
    pyarrow Table, RecordBatch, RecordBatchReader, any object with
    ``__arrow_c_stream__`` (polars...), or a pandas DataFrame, one batch at a
    time through ``executemany``, and returns the row count.  ``create=True``
    creates the table when missing (types below); ``mode="replace"`` drops
    and re-creates it.  Columns are matched by name.  The rows belong to the
    connection's current transaction, like ``executemany``: ``commit()``.

    ===========================================  ==============================
    Arrow type                                   declared type / stored value
    ===========================================  ==============================
    int8..int64, uint8..uint64                   INTEGER (uint64 above 2**63-1:
                                                 DataError)
    float16/32/64                                REAL
    string, large_string, string_view            TEXT
    binary, large_binary, fixed_size_binary      BLOB
    bool                                         BOOLEAN (stored 0/1)
    date32/64                                    DATE ('YYYY-MM-DD')
    timestamp (any unit, any zone)               TIMESTAMP (as the driver binds
                                                 datetimes: isoformat(' '))
    time32/64                                    TIME ('HH:MM:SS[.ffffff]')
    decimal128/256(p, s)                         DECIMAL(p, s) (exact text)
    list, struct, map                            JSON (compact JSON text)
    dictionary                                   its value type
    null                                         no type (NULL values)
    ===========================================  ==============================
"""
from __future__ import annotations

import datetime
import decimal
import gc
import re
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from terndb._cext import _core as C
from terndb.engine import errors as E

from . import adapters

if TYPE_CHECKING:
    import pyarrow as pa

    from .connection import Connection
    from .cursor import Cursor

#: Rows per internal batch of fetch_arrow_table.  One batch sees every value before the
#: column types are chosen, so INTEGERs among REALs in a column that later meets TEXT still
#: render as integers; a table is only cut into chunks when a TEXT/BLOB column nears 1 GiB
#: (Arrow's int32 offsets), and across such a cut an INTEGER already stored in a float64
#: chunk renders as a REAL ('7.0') if the column turns to text afterwards.
TABLE_BATCH_ROWS = 1 << 62
#: Rows pulled from the executor per fetch call (bounds the live row tuples).
FETCH_CHUNK_ROWS = 8192

NULL, INT, FLOAT, BLOB, TEXT = C.ARROW_NULL, C.ARROW_INT, C.ARROW_FLOAT, C.ARROW_BLOB, C.ARROW_TEXT

_DECIMAL_PS = re.compile(r"^\s*\w+\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
    except ImportError as err:
        raise E.NotSupportedError("Arrow support needs the pyarrow package (pip install pyarrow)") from err
    return pyarrow


# --------------------------------------------------------------------------
# Declared-type rules
# --------------------------------------------------------------------------

class _ColumnRule:
    """What a result column's declared type asks of its Arrow conversion."""

    __slots__ = ("word", "decimal_ps", "affinity", "declared")

    def __init__(self, declared: str | None) -> None:
        self.declared = declared
        text = (declared or "").strip()
        self.word = text.split(" ", 1)[0].split("(", 1)[0].upper()
        self.decimal_ps: tuple[int, int] | None = None
        if self.word == "DECIMAL":
            match = _DECIMAL_PS.match(text)
            if match and 1 <= int(match.group(1)) <= 38:
                scale = int(match.group(2) or 0)
                if scale <= int(match.group(1)):
                    self.decimal_ps = (int(match.group(1)), scale)
        self.affinity = C.affinity_of_type(text) if text else None

    @property
    def forced_kind(self) -> int | None:
        """A builder kind fixed before any row (JSON text stays text)."""
        return TEXT if self.word == "JSON" else None

    def empty_stream_kind(self) -> int:
        """The kind of a column all NULL in a stream's first batch (more batches follow)."""
        if self.word in ("JSON", "DATE", "DATETIME", "TIMESTAMP"):
            return TEXT
        if self.word in ("BOOLEAN", "BOOL"):
            return INT
        aff = self.affinity
        if aff is None or aff == 2:            # undeclared or TEXT affinity
            return TEXT
        return {1: BLOB, 3: FLOAT, 4: INT, 5: FLOAT}.get(aff, TEXT)

    def refine(self, pa: Any, column: Any) -> Any:
        """The declared-type conversion of an array/chunked array, or ``column`` itself."""
        typ = column.type
        if self.word in ("BOOLEAN", "BOOL"):
            if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_null(typ):
                return pa.compute.not_equal(column, 0) if not pa.types.is_null(typ) else column.cast(pa.bool_())
            return column
        if self.word == "DATE":
            return _try_casts(pa, column, [pa.date32()]) if _texty(pa, typ) else column
        if self.word in ("DATETIME", "TIMESTAMP"):
            if _texty(pa, typ):
                return _try_casts(pa, column, [pa.timestamp("us"), pa.timestamp("us", "UTC")])
            return column
        if self.word == "DECIMAL":
            return _to_decimal(pa, column, self.decimal_ps)
        return column

    def refine_into(self, pa: Any, array: Any, target: Any, name: str) -> Any:
        """A later stream batch's column in the stream's type ``target`` (DataError if impossible)."""
        if array.type == target:
            return array
        if self.word in ("BOOLEAN", "BOOL") and pa.types.is_boolean(target):
            out = self.refine(pa, array)
        elif pa.types.is_decimal(target):
            out = _to_decimal(pa, array, (target.precision, target.scale))
        elif pa.types.is_null(array.type):
            out = pa.nulls(len(array), target)
        else:
            out = _try_casts(pa, array, [target]) if _texty(pa, array.type) else array
        if out.type != target:
            raise E.DataError(
                f"column {name!r}: a later batch has values that do not convert to the stream's "
                f"{target} type (fixed by the first batch): CAST the column in SQL or use "
                f"fetch_arrow_table()")
        return out


def _texty(pa: Any, typ: Any) -> bool:
    return pa.types.is_string(typ) or pa.types.is_null(typ)


def _try_casts(pa: Any, column: Any, targets: list) -> Any:
    for target in targets:
        try:
            return column.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return column


def _decimal_of(value: Any) -> decimal.Decimal | None:
    """A value as an exact finite Decimal, or None when it has none."""
    if type(value) is int:
        return decimal.Decimal(value)
    if type(value) is float:
        text = repr(value)     # shortest text reading back as this float: 0.1 -> 0.1
    elif type(value) is str:
        text = value.strip()
    else:
        return None
    try:
        out = decimal.Decimal(text)
    except decimal.InvalidOperation:
        return None
    return out if out.is_finite() else None


def _to_decimal(pa: Any, column: Any, ps: tuple[int, int] | None) -> Any:
    """decimal128 when every value converts exactly, else ``column`` unchanged."""
    typ = column.type
    if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or _texty(pa, typ)):
        return column
    values = column.to_pylist()
    decimals = []
    scale = 0
    int_digits = 1
    for value in values:
        if value is None:
            decimals.append(None)
            continue
        d = _decimal_of(value)
        if d is None:
            return column
        _, digits, exponent = d.as_tuple()
        scale = max(scale, -exponent)
        int_digits = max(int_digits, len(digits) + exponent)
        decimals.append(d)
    if ps is None:
        ps = (int_digits + scale, scale)
        if ps[0] > 38:
            return column
    try:
        out = pa.array(decimals, type=pa.decimal128(*ps))
    except (pa.ArrowInvalid, decimal.InvalidOperation, ValueError):
        return column     # a value needs more digits than the declared (p, s)
    return pa.chunked_array([out]) if isinstance(column, pa.ChunkedArray) else out


# --------------------------------------------------------------------------
# Builder output -> Arrow arrays
# --------------------------------------------------------------------------

def _kind_type(pa: Any, kind: int) -> Any:
    return {NULL: pa.null(), INT: pa.int64(), FLOAT: pa.float64(), BLOB: pa.binary(), TEXT: pa.string()}[kind]


def _array(pa: Any, raw: tuple) -> Any:
    """One column of ``ArrowColumnsBuilder.take()`` as a pyarrow Array (no copy)."""
    kind, length, null_count, validity, first, second = raw
    if kind == NULL:
        return pa.nulls(length)
    bitmap = pa.py_buffer(validity) if validity is not None else None
    buffers = [bitmap, pa.py_buffer(first)]
    if second is not None:
        buffers.append(pa.py_buffer(second))
    return pa.Array.from_buffers(_kind_type(pa, kind), length, buffers, null_count=null_count)


def _rerender(pa: Any, array: Any, kind: int) -> Any:
    """An earlier chunk moved up to ``kind`` (the column's final kind), by the builder's rules."""
    if kind == FLOAT and pa.types.is_int64(array.type):
        return array.cast(pa.float64())
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), _kind_type(pa, kind))
    builder = C.ArrowColumnsBuilder(1)
    builder.set_kind(0, kind, True)
    builder.append_column_values(0, array.to_pylist())
    return _array(pa, builder.take()[0])


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------

def _query_result(cursor: "Cursor") -> Any:
    cursor._check()
    if cursor._result is None or cursor.description is None:
        raise E.ProgrammingError("no results to fetch: execute a query first")
    return cursor._result


def _new_builder(rules: list[_ColumnRule], result: Any) -> Any:
    builder = C.ArrowColumnsBuilder(len(rules))
    for index, rule in enumerate(rules):
        if rule.forced_kind is not None:
            builder.set_kind(index, rule.forced_kind, True)
    # A plain table scan is decoded record by record straight into the buffers (no row
    # tuples); the Result's row source is read directly then, so we close the Result
    # ourselves when done.
    builder.attach(result.row_source)
    return builder


def _fill(builder: Any, result: Any, rows: int) -> None:
    # The scan allocates a short-lived tuple per row (freed by refcount at once); with the
    # cyclic GC on, those allocations trigger collections that walk every live object of
    # the application (bench.py fetch_pandas, which keeps 1M row tuples cached: 3.7x -> 4.8x
    # sqlite3 with the GC paused).  Nothing here creates reference cycles.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        builder.fill(result.fetch, rows, min(FETCH_CHUNK_ROWS, rows))
    finally:
        if was_enabled:
            gc.enable()
    if builder.done:
        result.close()       # releases the read transaction at once


def _names(cursor: "Cursor") -> list[str]:
    return [d[0] for d in cursor.description]


def _rules(result: Any, count: int) -> list[_ColumnRule]:
    decls = result.decl_types or [None] * count
    return [_ColumnRule(d) for d in decls]


def fetch_arrow_table(cursor: "Cursor") -> "pa.Table":
    """The rest of the cursor's result as a pyarrow Table (types: see the module notes)."""
    pa = _pyarrow()
    result = _query_result(cursor)
    names = _names(cursor)
    rules = _rules(result, len(names))
    builder = _new_builder(rules, result)
    batches: list[list[tuple]] = []
    while not builder.done:
        _fill(builder, result, TABLE_BATCH_ROWS)
        if builder.length:
            batches.append(builder.take())
    kinds = builder.kinds
    columns = []
    for index, rule in enumerate(rules):
        kind = kinds[index]
        chunks = []
        for batch in batches:
            array = _array(pa, batch[index])
            if batch[index][0] != kind:
                array = _rerender(pa, array, kind)
            chunks.append(array)
        column = pa.chunked_array(chunks, type=_kind_type(pa, kind))
        columns.append(rule.refine(pa, column))
    return pa.Table.from_arrays(columns, names=names)


def fetch_record_batch(cursor: "Cursor", rows_per_batch: int = 1_000_000) -> "pa.RecordBatchReader":
    """A RecordBatchReader streaming the rest of the result, ``rows_per_batch`` rows at most per batch."""
    pa = _pyarrow()
    if not isinstance(rows_per_batch, int) or isinstance(rows_per_batch, bool) or rows_per_batch < 1:
        raise E.ProgrammingError(f"rows_per_batch must be a positive integer, not {rows_per_batch!r}")
    result = _query_result(cursor)
    names = _names(cursor)
    rules = _rules(result, len(names))
    builder = _new_builder(rules, result)
    _fill(builder, result, rows_per_batch)
    if not builder.done:
        for index, kind in enumerate(builder.kinds):
            if kind == NULL:
                builder.set_kind(index, rules[index].empty_stream_kind(), True)
    builder.lock()
    first = [rule.refine(pa, _array(pa, raw)) for rule, raw in zip(rules, builder.take(not builder.done))]
    schema = pa.schema([pa.field(name, array.type) for name, array in zip(names, first)])
    pending = [pa.RecordBatch.from_arrays(first, schema=schema)]
    del first

    def batches() -> Iterator[Any]:
        # Nothing here may keep a batch alive once yielded: memory stays ~one batch.
        yield pending.pop()
        while not builder.done:
            if cursor._result is not result:
                raise E.InterfaceError("the cursor ran another statement while a record batch "
                                       "reader was reading its result")
            _fill(builder, result, rows_per_batch)
            if not builder.length:
                break
            arrays = [rule.refine_into(pa, _array(pa, raw), field.type, field.name)
                      for rule, raw, field in zip(rules, builder.take(not builder.done), schema)]
            batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
            del arrays
            yield batch
            del batch

    return pa.RecordBatchReader.from_batches(schema, batches())


def fetch_df(cursor: "Cursor") -> Any:
    """The rest of the result as a pandas DataFrame (nullable Int64/boolean where NULLs occur)."""
    pa = _pyarrow()
    try:
        import pandas as pd
    except ImportError as err:
        raise E.NotSupportedError("fetch_df() needs the pandas package (pip install pandas)") from err
    table = fetch_arrow_table(cursor)
    frame = table.to_pandas(date_as_object=False)
    for index, column in enumerate(table.columns):
        if column.null_count and (pa.types.is_int64(column.type) or pa.types.is_boolean(column.type)):
            dtype = pd.Int64Dtype() if pa.types.is_int64(column.type) else pd.BooleanDtype()
            frame.isetitem(index, column.to_pandas(types_mapper={column.type: dtype}.get))
    return frame


# --------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------

def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _declared_type(pa: Any, typ: Any, name: str) -> str:
    t = pa.types
    if t.is_dictionary(typ):
        return _declared_type(pa, typ.value_type, name)
    if t.is_boolean(typ):
        return "BOOLEAN"
    if t.is_integer(typ):
        return "INTEGER"
    if t.is_floating(typ):
        return "REAL"
    if t.is_string(typ) or t.is_large_string(typ) or _is_string_view(pa, typ):
        return "TEXT"
    if t.is_binary(typ) or t.is_large_binary(typ) or t.is_fixed_size_binary(typ) or _is_binary_view(pa, typ):
        return "BLOB"
    if t.is_timestamp(typ):
        return "TIMESTAMP"
    if t.is_date(typ):
        return "DATE"
    if t.is_time(typ):
        return "TIME"
    if t.is_decimal(typ):
        return f"DECIMAL({typ.precision}, {typ.scale})"
    if t.is_list(typ) or t.is_large_list(typ) or t.is_fixed_size_list(typ) or t.is_struct(typ) or t.is_map(typ):
        return "JSON"
    if t.is_null(typ):
        return ""
    raise E.NotSupportedError(f"column {name!r}: Arrow type {typ} has no SQL equivalent for ingest")


def _is_string_view(pa: Any, typ: Any) -> bool:
    return bool(getattr(pa.types, "is_string_view", lambda _t: False)(typ))


def _is_binary_view(pa: Any, typ: Any) -> bool:
    return bool(getattr(pa.types, "is_binary_view", lambda _t: False)(typ))


def _sql_values(pa: Any, array: Any, name: str) -> list:
    """One Arrow column as a list of SQL values (None/int/float/str/bytes)."""
    t = pa.types
    typ = array.type
    if t.is_dictionary(typ):
        return _sql_values(pa, array.dictionary_decode(), name)
    if t.is_boolean(typ):
        return array.cast(pa.int8()).to_pylist()
    if t.is_uint64(typ):
        if len(array) and (pa.compute.max(array).as_py() or 0) > 2 ** 63 - 1:
            raise E.DataError(f"column {name!r}: uint64 value above 2**63-1 cannot be stored as INTEGER")
        return array.to_pylist()
    if t.is_integer(typ) or t.is_floating(typ) or t.is_null(typ):
        if array.null_count == 0 and not t.is_float16(typ):
            return array.to_numpy(zero_copy_only=False).tolist()   # faster than to_pylist for numbers
        return array.to_pylist()
    if t.is_string(typ) or t.is_large_string(typ) or t.is_binary(typ) or t.is_large_binary(typ) \
            or t.is_fixed_size_binary(typ) or _is_string_view(pa, typ) or _is_binary_view(pa, typ):
        return array.to_pylist()
    _declared_type(pa, typ, name)      # NotSupportedError for types with no SQL form
    values = array.to_pylist()
    return [None if v is None else _adapt(v, name) for v in values]


def _adapt(value: Any, name: str) -> Any:
    """A temporal/decimal/nested value as the driver binds it (adapters' rules)."""
    if isinstance(value, datetime.timedelta):
        raise E.NotSupportedError(f"column {name!r}: durations have no SQL equivalent")
    try:
        return adapters.adapt_value(value)
    except E.Error as err:
        raise E.DataError(f"column {name!r}: {err}") from err


def _batches(pa: Any, data: Any) -> tuple[Any, Iterable[Any]]:
    """(schema, iterable of RecordBatch) for any supported input."""
    if isinstance(data, pa.Table):
        return data.schema, data.to_batches()
    if isinstance(data, pa.RecordBatch):
        return data.schema, [data]
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, data
    module = type(data).__module__ or ""
    if module.startswith("pandas") and hasattr(data, "columns") and hasattr(data, "iloc"):
        try:
            table = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
            raise E.DataError(f"cannot convert the DataFrame to Arrow: {err}") from err
        return table.schema, table.to_batches()
    if hasattr(data, "__arrow_c_stream__"):
        reader = pa.RecordBatchReader.from_stream(data)
        return reader.schema, reader
    raise E.ProgrammingError(
        f"ingest() takes a pyarrow Table, RecordBatch or RecordBatchReader, an object with "
        f"__arrow_c_stream__, or a pandas DataFrame, not {type(data).__name__}")


def _table_exists(connection: "Connection", table: str) -> bool:
    rows = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE", (table,)).fetchall()
    return bool(rows)


def ingest(connection: "Connection", table: str, data: Any, *, create: bool = False,
           mode: str = "append") -> int:
    """Inserts ``data`` into ``table`` (see the module notes); returns the number of rows."""
    pa = _pyarrow()
    if not isinstance(table, str) or not table:
        raise E.ProgrammingError(f"ingest() needs a table name, not {table!r}")
    if mode not in ("append", "replace"):
        raise E.ProgrammingError(f"ingest() mode must be 'append' or 'replace', not {mode!r}")
    schema, batches = _batches(pa, data)
    names = list(schema.names)
    if not names:
        raise E.ProgrammingError("ingest() data has no columns")
    if len(set(n.lower() for n in names)) != len(names):
        raise E.ProgrammingError(f"ingest() data has duplicate column names: {names}")
    declared = [_declared_type(pa, field.type, field.name) for field in schema]
    if mode == "replace":
        connection.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
    if mode == "replace" or (create and not _table_exists(connection, table)):
        columns = ", ".join(f"{_quote(n)} {d}".rstrip() for n, d in zip(names, declared))
        connection.execute(f"CREATE TABLE {_quote(table)} ({columns})")
    sql = (f"INSERT INTO {_quote(table)} ({', '.join(_quote(n) for n in names)}) "
           f"VALUES ({', '.join('?' * len(names))})")
    cursor = connection.cursor()
    total = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        columns = [_sql_values(pa, batch.column(i), names[i]) for i in range(len(names))]
        cursor.executemany(sql, zip(*columns))
        total += batch.num_rows
    return total
