"""PEP 249 "Type Objects and Constructors" for terndb.

Constructors
    ``Date``, ``Time``, ``Timestamp``, their ``*FromTicks`` variants and
    ``Binary`` build the Python values a caller binds as parameters.  They
    return plain ``datetime.date`` / ``datetime.time`` / ``datetime.datetime``
    / ``bytes`` objects (what :mod:`terndb.adapters` knows how to bind), and
    turn bad arguments into :class:`~terndb.engine.errors.DataError` instead of
    a raw ``ValueError``.

Type codes (``cursor.description[i][1]``)
    terndb's type code is a *string*: the column's declared SQL type,
    upper-cased with runs of blanks collapsed (``'VARCHAR(20)'``,
    ``'INTEGER'``, ``'TIMESTAMP'``, ``'JSON'`` ...).  A computed column with no
    declared type gets a code from the Python type of its value
    (``int -> 'INTEGER'``, ``float -> 'REAL'``, ``str -> 'TEXT'``,
    ``bytes -> 'BLOB'``), or ``None`` when nothing is known (e.g. a NULL
    literal).  An ``INTEGER PRIMARY KEY`` column (an alias of the rowid) gets
    ``'INTEGER PRIMARY KEY'`` and the bare rowid pseudo-column ``'ROWID'``.
    :func:`type_code_for` is the single function the cursor calls to make one.

Type objects
    ``STRING``, ``BINARY``, ``NUMBER``, ``DATETIME`` and ``ROWID`` compare
    equal to type codes by SQLite's column-affinity rules (a declared type
    containing ``INT`` is a number, one containing ``CHAR``/``CLOB``/``TEXT`` is
    a string, ...), after a few explicit names that affinity would misfile
    (``DATE``/``TIME``/``TIMESTAMP``/``DATETIME`` are DATETIME, ``JSON`` and
    ``UUID`` are STRING, ``BOOLEAN``/``DECIMAL`` are NUMBER).  A code can match
    more than one object: ``'INTEGER PRIMARY KEY'`` and ``'ROWID'`` equal both
    NUMBER and ROWID, because a rowid is an integer.
"""
from __future__ import annotations

import datetime
import decimal
import functools
import time
from typing import Any, Callable, TypeVar

from terndb.engine.errors import DataError

__all__ = [
    "Date", "Time", "Timestamp", "DateFromTicks", "TimeFromTicks",
    "TimestampFromTicks", "Binary", "DBAPITypeObject", "STRING", "BINARY",
    "NUMBER", "DATETIME", "ROWID", "type_code_for", "type_categories",
]

_T = TypeVar("_T")


# --------------------------------------------------------------------------
# Constructors
# --------------------------------------------------------------------------

def _checked(what: str, build: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Call ``build``; report bad arguments as DataError, naming ``what``."""
    try:
        return build(*args, **kwargs)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise DataError(f"invalid {what}: {exc}") from exc


def Date(year: int, month: int, day: int) -> datetime.date:  # noqa: N802 - PEP 249 name
    """A date value, bound as ``'YYYY-MM-DD'`` text."""
    return _checked("Date", datetime.date, year, month, day)


def Time(hour: int, minute: int = 0, second: int = 0, microsecond: int = 0,  # noqa: N802
         tzinfo: datetime.tzinfo | None = None) -> datetime.time:
    """A time-of-day value, bound as ``'HH:MM:SS[.ffffff]'`` text."""
    return _checked("Time", datetime.time, hour, minute, second, microsecond, tzinfo)


def Timestamp(year: int, month: int, day: int, hour: int = 0, minute: int = 0,  # noqa: N802
              second: int = 0, microsecond: int = 0,
              tzinfo: datetime.tzinfo | None = None) -> datetime.datetime:
    """A date-and-time value, bound as ``'YYYY-MM-DD HH:MM:SS[.ffffff]'`` text."""
    return _checked("Timestamp", datetime.datetime, year, month, day, hour,
                    minute, second, microsecond, tzinfo)


def _local_time(ticks: float) -> time.struct_time:
    # PEP 249 defines ticks as seconds since the epoch, read in local time
    # (as sqlite3 and psycopg do).
    return _checked("ticks value", time.localtime, ticks)


def DateFromTicks(ticks: float) -> datetime.date:  # noqa: N802
    """The local date at ``ticks`` seconds since the epoch."""
    return Date(*_local_time(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:  # noqa: N802
    """The local time of day at ``ticks`` seconds since the epoch."""
    return Time(*_local_time(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:  # noqa: N802
    """The local date and time at ``ticks`` seconds since the epoch."""
    return Timestamp(*_local_time(ticks)[:6])


def Binary(data: bytes | bytearray | memoryview) -> bytes:  # noqa: N802
    """A binary (BLOB) value.  Text must be encoded by the caller first."""
    if isinstance(data, str):
        # bytes(str) would fail with a bare TypeError; say what to do instead.
        raise DataError("Binary() needs a bytes-like object; encode text first, "
                        "e.g. Binary(text.encode('utf-8'))")
    return _checked("Binary", bytes, data)


# --------------------------------------------------------------------------
# Type codes and type objects
# --------------------------------------------------------------------------

#: Category names, one per PEP 249 type object.
_STRING, _BINARY, _NUMBER, _DATETIME, _ROWID = (
    "STRING", "BINARY", "NUMBER", "DATETIME", "ROWID")

# Names that SQLite's affinity rules would misfile for DB-API purposes
# (DATETIME/TIMESTAMP have NUMERIC affinity, JSON and UUID too), matched on
# the declared type's first word.
_BY_FIRST_WORD: dict[str, frozenset[str]] = {
    **dict.fromkeys(("DATE", "DATETIME", "TIMESTAMP", "TIMESTAMPTZ", "TIME",
                     "TIMETZ"), frozenset({_DATETIME})),
    **dict.fromkeys(("JSON", "JSONB", "UUID"), frozenset({_STRING})),
    **dict.fromkeys(("BOOLEAN", "BOOL", "DECIMAL", "NUMERIC"), frozenset({_NUMBER})),
    **dict.fromkeys(("ROWID", "OID", "_ROWID_"), frozenset({_NUMBER, _ROWID})),
}

_INTEGER_PRIMARY_KEY = "INTEGER PRIMARY KEY"


def _normalize(type_code: str) -> str:
    """Upper-case and collapse blanks: ``' varchar ( 20 )'`` -> ``'VARCHAR ( 20 )'``."""
    return " ".join(type_code.upper().split())


def _first_word(normalized: str) -> str:
    """``'TIMESTAMP WITH TIME ZONE'`` -> ``'TIMESTAMP'``; ``'DATE(10)'`` -> ``'DATE'``."""
    return normalized.split(" ", 1)[0].split("(", 1)[0]


@functools.lru_cache(maxsize=512)
def type_categories(type_code: str | None) -> frozenset[str]:
    """The PEP 249 categories (``'STRING'``, ``'NUMBER'``...) a type code falls in.

    Cached: a program sees few distinct declared types, and the cursor or
    the caller may compare codes for every statement.
    """
    if not type_code:
        # No declared type: SQLite's "BLOB"/none affinity, but saying BINARY
        # about a column we know nothing of would mislead; match nothing.
        return frozenset()
    code = _normalize(type_code)
    if code == _INTEGER_PRIMARY_KEY:
        return frozenset({_NUMBER, _ROWID})
    explicit = _BY_FIRST_WORD.get(_first_word(code))
    if explicit is not None:
        return explicit
    return frozenset({_affinity_category(code)})


def _affinity_category(code: str) -> str:
    """SQLite's five affinity rules (datatype3.html, 3.1), in their order."""
    if "INT" in code:
        return _NUMBER
    if "CHAR" in code or "CLOB" in code or "TEXT" in code:
        return _STRING
    if "BLOB" in code:
        return _BINARY
    # REAL ("REAL", "FLOA", "DOUB") and NUMERIC affinity are both numbers.
    return _NUMBER


class DBAPITypeObject:
    """A PEP 249 type object: equal to every type code of its category."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DBAPITypeObject):
            return other.name == self.name
        if isinstance(other, str):
            return self.name in type_categories(other)
        return NotImplemented if other is not None else False

    def __hash__(self) -> int:
        return hash((DBAPITypeObject, self.name))

    def __repr__(self) -> str:
        return f"terndb.{self.name}"


STRING = DBAPITypeObject(_STRING)
BINARY = DBAPITypeObject(_BINARY)
NUMBER = DBAPITypeObject(_NUMBER)
DATETIME = DBAPITypeObject(_DATETIME)
ROWID = DBAPITypeObject(_ROWID)


# Codes for computed expressions, by the exact Python type of a value.
_CODE_BY_VALUE_TYPE: dict[type, str | None] = {
    int: "INTEGER",
    bool: "INTEGER",  # SQL has no boolean storage class: TRUE is 1
    float: "REAL",
    str: "TEXT",
    bytes: "BLOB",
    type(None): None,
}


@functools.lru_cache(maxsize=512)
def _declared_code(declared_type: str) -> str:
    return _normalize(declared_type)


def type_code_for(declared_type: str | None, value_type: type | None = None, *,
                  rowid_alias: bool = False) -> str | None:
    """The ``description`` type code of one result column.

    ``declared_type`` is the column's declared type text when the column is
    a plain table column (or a CAST), else None or ''.  ``value_type`` is the
    Python type of a value of the column (the first non-NULL one the cursor
    saw), used only when there is no declared type.  ``rowid_alias`` marks an
    ``INTEGER PRIMARY KEY`` column, so its code also equals :data:`ROWID`.
    """
    if rowid_alias:
        return _INTEGER_PRIMARY_KEY
    if declared_type:
        return _declared_code(declared_type)
    if value_type is None:
        return None
    code = _CODE_BY_VALUE_TYPE.get(value_type, _MISSING)
    if code is not _MISSING:
        return code  # type: ignore[return-value]
    return _code_for_other_type(value_type)


_MISSING: Any = object()


def _code_for_other_type(value_type: type) -> str | None:
    """Codes for values converters produce, and for subclasses of native types."""
    if issubclass(value_type, datetime.datetime):
        return "TIMESTAMP"
    if issubclass(value_type, datetime.date):
        return "DATE"
    if issubclass(value_type, datetime.time):
        return "TIME"
    if issubclass(value_type, (dict, list)):
        return "JSON"
    for base, code in _CODE_BY_VALUE_TYPE.items():
        if base is not type(None) and issubclass(value_type, base):
            return code
    if issubclass(value_type, decimal.Decimal):
        return "DECIMAL"
    return None
