"""Column types of the terndb dialect: how SQLAlchemy types are stored and read back.

terndb stores five kinds of value (NULL, INTEGER, REAL, TEXT, BLOB), like
SQLite, so types without a native storage class are encoded:

* ``DateTime``/``Date``/``Time`` are ISO-8601 TEXT (``'YYYY-MM-DD HH:MM:SS.ffffff'``,
  ``'YYYY-MM-DD'``, ``'HH:MM:SS.ffffff'``), as SQLite's dialect stores them, so
  values sort and compare as text in time order.  Timezone-aware values keep
  their ``+HH:MM`` offset.  Microseconds are always written so every stored
  value of a column has the same shape (text comparison stays chronological).
* ``JSON`` is its text; a document that is a bare number may come back as a
  number (the ``JSON`` declared type has NUMERIC affinity), which is returned
  as is.  ``JSON.NULL`` stores the JSON text ``null``; ``None`` stores SQL NULL
  when ``none_as_null=True`` and JSON ``null`` otherwise (SQLAlchemy's rule).
  Index and path operands (``doc["a"]``, ``doc[("a", 1)]``) bind as JSON path
  text (``$."a"[1]``) for the compiler's ``->`` / ``json_extract``.
* ``Boolean``, ``Enum``, ``Uuid``, ``Numeric`` and ``LargeBinary`` use
  SQLAlchemy's generic non-native forms (INTEGER 0/1, VARCHAR, CHAR(32) hex,
  REAL converted back to ``Decimal`` at the column's scale, BLOB).

``ischema_names`` maps declared type names to types for reflection; unknown
names fall back on SQLite's affinity rules (see ``reflection.resolve_type``).
"""
from __future__ import annotations

import datetime
import json
from typing import Any, Callable

from sqlalchemy import types as sqltypes
from sqlalchemy.engine.interfaces import Dialect


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _TextTemporal:
    """Shared binding and literal rendering: a temporal value is stored as its ISO text."""

    def _to_text(self, value: Any) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        to_text = self._to_text

        def process(value: Any) -> Any:
            return None if value is None else to_text(value)
        return process

    def literal_processor(self, dialect: Dialect) -> Callable[[Any], str]:
        def process(value: Any) -> str:
            return _quote_literal(self._to_text(value))
        return process


class DATETIME(_TextTemporal, sqltypes.DateTime):
    """A datetime stored as ``'YYYY-MM-DD HH:MM:SS.ffffff[+HH:MM]'`` text."""

    __visit_name__ = "DATETIME"

    def _to_text(self, value: Any) -> str:
        if isinstance(value, datetime.datetime):
            return value.isoformat(sep=" ", timespec="microseconds")
        if isinstance(value, datetime.date):
            # A date given to a DATETIME column means its midnight (as SQLite's dialect does).
            return value.isoformat() + " 00:00:00.000000"
        raise TypeError("DateTime type only accepts Python datetime and date objects as input.")

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any]:
        def process(value: Any) -> Any:
            if value is None or isinstance(value, datetime.datetime):
                return value
            return datetime.datetime.fromisoformat(value)
        return process


class DATE(_TextTemporal, sqltypes.Date):
    """A date stored as ``'YYYY-MM-DD'`` text."""

    __visit_name__ = "DATE"

    def _to_text(self, value: Any) -> str:
        if isinstance(value, datetime.datetime):
            return value.date().isoformat()
        if isinstance(value, datetime.date):
            return value.isoformat()
        raise TypeError("Date type only accepts Python date objects as input.")

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any]:
        def process(value: Any) -> Any:
            if value is None or isinstance(value, datetime.date):
                return value
            if len(value) == 10:
                return datetime.date.fromisoformat(value)
            # A timestamp text (e.g. CURRENT_TIMESTAMP) in a DATE column: keep its date.
            return datetime.datetime.fromisoformat(value).date()
        return process


class TIME(_TextTemporal, sqltypes.Time):
    """A time stored as ``'HH:MM:SS.ffffff[+HH:MM]'`` text."""

    __visit_name__ = "TIME"

    def _to_text(self, value: Any) -> str:
        if isinstance(value, datetime.time):
            return value.isoformat(timespec="microseconds")
        raise TypeError("Time type only accepts Python time objects as input.")

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any]:
        def process(value: Any) -> Any:
            if value is None or isinstance(value, datetime.time):
                return value
            return datetime.time.fromisoformat(value)
        return process


class JSON(sqltypes.JSON):
    """JSON stored as text; a bare-number document read back as a number stays one."""

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        loads = getattr(dialect, "_json_deserializer", None) or json.loads

        def process(value: Any) -> Any:
            if value is None or isinstance(value, (int, float)):
                return value
            return loads(value)
        return process


def json_path(steps: Any) -> str:
    """A JSON path text for terndb's JSON functions: ``("a", 1)`` -> ``$."a"[1]``.

    Integers index arrays; anything else is an object key, always quoted so keys
    with dots, spaces or brackets address one member.
    """
    parts = ["$"]
    for step in steps:
        if isinstance(step, int) and not isinstance(step, bool):
            parts.append(f"[{step}]")
        else:
            parts.append(f'."{step}"')
    return "".join(parts)


class _JSONPathText:
    """Binds an index (``doc["a"]``, ``doc[1]``) or a path (``doc[("a", 1)]``) as path text."""

    def _steps(self, value: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        steps = self._steps

        def process(value: Any) -> Any:
            return json_path(steps(value))
        return process

    def literal_processor(self, dialect: Dialect) -> Callable[[Any], str]:
        steps = self._steps

        def process(value: Any) -> str:
            return _quote_literal(json_path(steps(value)))
        return process


class JSONIndexType(_JSONPathText, sqltypes.JSON.JSONIndexType):
    def _steps(self, value: Any) -> Any:
        return (value,)


class JSONPathType(_JSONPathText, sqltypes.JSON.JSONPathType):
    def _steps(self, value: Any) -> Any:
        return value


colspecs: dict[type, type] = {
    sqltypes.DateTime: DATETIME,
    sqltypes.Date: DATE,
    sqltypes.Time: TIME,
    sqltypes.JSON: JSON,
    sqltypes.JSON.JSONIndexType: JSONIndexType,
    sqltypes.JSON.JSONPathType: JSONPathType,
}

# Declared type names (first word(s), upper-case) to SQLAlchemy types, for reflection.
ischema_names: dict[str, type] = {
    "BIGINT": sqltypes.BIGINT,
    "BLOB": sqltypes.BLOB,
    "BOOL": sqltypes.BOOLEAN,
    "BOOLEAN": sqltypes.BOOLEAN,
    "CHAR": sqltypes.CHAR,
    "DATE": sqltypes.DATE,
    "DATETIME": sqltypes.DATETIME,
    "DECIMAL": sqltypes.DECIMAL,
    "DOUBLE": sqltypes.DOUBLE,
    "DOUBLE PRECISION": sqltypes.DOUBLE_PRECISION,
    "FLOAT": sqltypes.FLOAT,
    "INT": sqltypes.INTEGER,
    "INTEGER": sqltypes.INTEGER,
    "JSON": sqltypes.JSON,
    "NCHAR": sqltypes.NCHAR,
    "NUMERIC": sqltypes.NUMERIC,
    "NVARCHAR": sqltypes.NVARCHAR,
    "REAL": sqltypes.REAL,
    "SMALLINT": sqltypes.SMALLINT,
    "TEXT": sqltypes.TEXT,
    "TIME": sqltypes.TIME,
    "TIMESTAMP": sqltypes.TIMESTAMP,
    "VARBINARY": sqltypes.VARBINARY,
    "VARCHAR": sqltypes.VARCHAR,
}
