"""How Python values become SQL values (parameters) and come back (results).

Binding parameters
    The engine stores five kinds of SQL value: NULL, 64-bit INTEGER, REAL,
    TEXT and BLOB, i.e. ``None, int, float, str, bytes``.  Every bound
    parameter is turned into one of these by :func:`adapt_value`:

    ====================================  ========================================
    Python value                          SQL value
    ====================================  ========================================
    None, int, float, str, bytes          itself (int must fit in 64 bits, else
                                          DataError: sqlite3 raises OverflowError)
    bool                                  INTEGER 0 / 1
    int, float, str, bytes subclasses     the plain value (IntEnum -> its int,
                                          a str-mixin Enum -> its string)
    bytearray, memoryview                 BLOB (a copy)
    objects with ``__index__`` (numpy     INTEGER
    integers)
    datetime.date                         TEXT ``'YYYY-MM-DD'``
    datetime.datetime                     TEXT ``'YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]'``
    datetime.time                         TEXT ``'HH:MM:SS[.ffffff][+HH:MM]'``
    decimal.Decimal                       TEXT ``str(value)``: exact, and
                                          ``Decimal(text)`` gives it back. A column
                                          of NUMERIC affinity then applies SQLite's
                                          text-to-number rule, as sqlite3 would.
    uuid.UUID                             TEXT, 32 lower-case hex digits
                                          (``value.hex``): what SQLAlchemy's
                                          ``Uuid`` type stores on SQLite-like
                                          dialects (CHAR(32)), so raw and ORM
                                          values compare equal.
    dict, list                            TEXT: compact JSON (for JSON columns);
                                          NaN/Infinity or non-JSON content is a
                                          DataError.
    ====================================  ========================================

    Anything else raises ``ProgrammingError("Error binding parameter N: type
    'X' is not supported")`` (sqlite3's wording) unless an adapter was
    registered for its type with :func:`register_adapter`.  Registered
    adapters win over the built-in ones and must return one of the five
    native kinds.  Unlike sqlite3 there are no *deprecated* default adapters
    with surprising output: the table above is the whole story.

    A float NaN is passed through unchanged: SQLite stores NaN as NULL, and
    that rule belongs to the engine, which also meets NaN from expressions.

Parameter specs (the interface with the planner)
    The planner collects the placeholder texts of a statement *in source
    order* (``'?'``, ``'?3'``, ``':name'``, ``'$name'``, ``'@name'``) and calls
    :meth:`ParamSpec.from_markers`.  SQLite's numbering applies: ``?NNN`` is
    slot NNN, ``?`` is one past the largest slot so far, a name takes the next
    slot on first use and keeps it.  ``spec.marker_slots[i]`` is the 0-based
    slot the i-th placeholder reads, ``spec.count`` the number of slots.  At
    execute time ``bind(spec, params)`` returns a tuple of ``spec.count``
    native values, in slot order:

    * a sequence (tuple, list, any non-text Sequence) binds slot i to item i;
      its length must equal ``spec.count``; named slots cannot be bound from a
      sequence (Python 3.14's sqlite3 rule, stricter than 3.11's);
    * a mapping binds each named slot to ``params[name_without_prefix]``
      (``:a`` and ``$a`` both read key ``'a'``); extra keys are ignored; an
      unnamed slot cannot be bound from a mapping.

    Mistakes raise :class:`~terndb.engine.errors.ParameterError`.

Results
    Values come back as stored (like sqlite3's default).  With the
    connection option ``detect_types=PARSE_DECLTYPES``, :func:`row_converter`
    builds a per-statement converter from the result columns' declared
    types: the declared type's first word (``'TIMESTAMP'`` in ``'TIMESTAMP
    WITH TIME ZONE'``), upper-cased, selects a converter registered with
    :func:`register_converter`, else a built-in one: DATE -> date,
    DATETIME/TIMESTAMP -> datetime, TIME -> time, BOOLEAN/BOOL -> bool,
    DECIMAL/NUMERIC -> Decimal, JSON -> the parsed document.  NULL stays
    None.  Converters receive the stored value itself (str, int, float or
    bytes; sqlite3 always passes bytes).  A stored value a built-in converter
    cannot read raises DataError naming the column.
"""
from __future__ import annotations

import datetime
import decimal
import json
import operator
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from terndb.engine.errors import DataError, ParameterError, ProgrammingError

__all__ = [
    "SQLValue", "PARSE_DECLTYPES", "register_adapter", "register_converter",
    "adapt_value", "adapt_params", "ParamSpec", "bind", "row_converter",
    "RowConverter",
]

#: What the engine can store.
SQLValue = None | int | float | str | bytes

#: ``detect_types`` flag: convert result values by their columns' declared types.
PARSE_DECLTYPES = 1

_NATIVE: frozenset[type] = frozenset({type(None), int, float, str, bytes})
_INT64_MIN = -(2 ** 63)
_INT64_MAX = 2 ** 63 - 1


# --------------------------------------------------------------------------
# Adapting single values
# --------------------------------------------------------------------------

def _check_int64(value: int) -> int:
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    # sqlite3 raises OverflowError here; a value out of range is a DataError.
    raise DataError(f"Python int too large to store as a 64-bit SQL INTEGER: {value}")


def _adapt_int_like(value: Any) -> int:
    # operator.index is exact (no float truncation) and reaches the int
    # inside IntEnum, bool and numpy integers alike.
    return _check_int64(operator.index(value))


def _adapt_json(value: dict | list) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise DataError(f"value cannot be stored as JSON: {exc}") from exc


def _adapt_datetime(value: datetime.datetime) -> str:
    return value.isoformat(" ")


def _adapt_decimal(value: decimal.Decimal) -> str:
    return str(value)


# Built-in adapters by type; subclasses are found by walking the MRO, so
# datetime (a date subclass) must have its own entry, as it does.
_BUILTIN_ADAPTERS: dict[type, Callable[[Any], SQLValue]] = {
    bool: _adapt_int_like,
    int: _adapt_int_like,
    float: float,
    str: str.__str__,  # not str(): a str-mixin Enum's __str__ is 'Cls.NAME'
    bytes: bytes,
    bytearray: bytes,
    memoryview: bytes,
    datetime.datetime: _adapt_datetime,
    datetime.date: datetime.date.isoformat,
    datetime.time: datetime.time.isoformat,
    decimal.Decimal: _adapt_decimal,
    uuid.UUID: operator.attrgetter("hex"),
    dict: _adapt_json,
    list: _adapt_json,
}

_user_adapters: dict[type, Callable[[Any], Any]] = {}

# Resolved adapter per concrete type (user first, then built-in, then MRO),
# so the MRO walk happens once per type.  Cleared on registration.
_resolved: dict[type, Callable[[Any], Any] | None] = {}


def register_adapter(type_: type, adapter: Callable[[Any], Any]) -> None:
    """Bind values of ``type_`` (and its subclasses) as ``adapter(value)``.

    The adapter must return None, int, float, str or bytes.  It overrides the
    built-in rule for that type; registering a native type (int, str...)
    is refused, because native values skip adaptation for speed.
    """
    if not isinstance(type_, type):
        raise ProgrammingError(f"register_adapter needs a type, not {type_!r}")
    if type_ in _NATIVE:
        raise ProgrammingError(
            f"cannot register an adapter for {type_.__name__}: values of the five "
            "native SQL types are bound as they are")
    if not callable(adapter):
        raise ProgrammingError(f"adapter for {type_.__name__} is not callable")
    _user_adapters[type_] = adapter
    _resolved.clear()


def _resolve_adapter(type_: type) -> Callable[[Any], Any] | None:
    for klass in type_.__mro__:
        found = _user_adapters.get(klass) or _BUILTIN_ADAPTERS.get(klass)
        if found is not None:
            return found
    if hasattr(type_, "__index__"):
        return _adapt_int_like  # numpy integer types and other int-likes
    return None


def _type_name(type_: type) -> str:
    """'complex' for builtins, 'datetime.timedelta' for the rest (module-qualified)."""
    if type_.__module__ == "builtins":
        return type_.__qualname__
    return f"{type_.__module__}.{type_.__qualname__}"


def _binding_error(position: int, message: str) -> str:
    return f"Error binding parameter {position}: {message}"


def adapt_value(value: Any, position: int = 1) -> SQLValue:
    """The SQL value for one parameter; ``position`` (1-based) is for messages."""
    type_ = type(value)
    try:
        if type_ in _NATIVE:
            if type_ is float and value != value:
                return None          # SQLite binds NaN as NULL
            return _check_int64(value) if type_ is int else value
        return _run_adapter(type_, value, position)
    except (DataError, ProgrammingError) as exc:
        if str(exc).startswith("Error binding parameter"):
            raise
        # Keep the root cause (a user adapter's own exception) as __cause__.
        raise type(exc)(_binding_error(position, str(exc))) from (exc.__cause__ or exc)


def _run_adapter(type_: type, value: Any, position: int) -> SQLValue:
    try:
        adapter = _resolved[type_]
    except KeyError:
        adapter = _resolved[type_] = _resolve_adapter(type_)
    if adapter is None:
        raise ProgrammingError(f"type '{_type_name(type_)}' is not supported")
    try:
        result = adapter(value)
    except (DataError, ProgrammingError):
        raise
    except Exception as exc:  # a user adapter failed: report it as bad data
        raise DataError(f"adapter for type '{type_.__name__}' raised "
                        f"{type(exc).__name__}: {exc}") from exc
    result_type = type(result)
    if result_type not in _NATIVE:
        raise ProgrammingError(
            f"adapter for type '{type_.__name__}' returned unsupported "
            f"type '{result_type.__name__}'")
    return _check_int64(result) if result_type is int else result


def adapt_params(params: tuple) -> tuple:
    """Adapt a tuple of positional values; the same object if all are native.

    This runs once per executemany row, so the common case (every value
    already None/int/float/str/bytes, ints within 64 bits) only type-checks
    and returns ``params`` itself, without building a new tuple.
    """
    for value in params:
        type_ = type(value)
        if type_ is int:
            if value > _INT64_MAX or value < _INT64_MIN:
                break
        elif type_ is float:
            if value != value:       # NaN: adapted to NULL below
                break
        elif type_ not in _NATIVE:
            break
    else:
        return params
    return tuple([adapt_value(v, i) for i, v in enumerate(params, 1)])


# --------------------------------------------------------------------------
# Placeholders and binding
# --------------------------------------------------------------------------

from terndb.engine.params import ParamSpec  # noqa: E402,F401  (numbering lives in the engine; re-exported)


def bind(spec: ParamSpec, params: Any) -> tuple:
    """The adapted values of ``spec``'s slots, from a sequence or a mapping."""
    if type(params) is tuple and not spec._has_names:
        # Hot path: executemany over tuples of a qmark statement.
        if len(params) != spec.count:
            raise _count_error(spec.count, len(params))
        return adapt_params(params)
    if params is None:
        params = ()
    if isinstance(params, Mapping):
        return _bind_mapping(spec, params)
    if isinstance(params, (str, bytes, bytearray)) or not isinstance(params, Sequence):
        raise ParameterError(
            f"parameters must be a sequence or a mapping, not {type(params).__name__}"
            + (" (wrap a single value in a tuple: (value,))"
               if isinstance(params, (str, bytes, bytearray)) else ""))
    return _bind_sequence(spec, params)


def _count_error(expected: int, supplied: int) -> ParameterError:
    return ParameterError(
        f"Incorrect number of bindings supplied. The current statement uses "
        f"{expected}, and there are {supplied} supplied.")


def _bind_sequence(spec: ParamSpec, params: Sequence) -> tuple:
    if len(params) != spec.count:
        raise _count_error(spec.count, len(params))
    if spec._has_names:
        slot = next(i for i, n in enumerate(spec.names) if n is not None)
        raise ParameterError(
            f"Binding {slot + 1} is a named parameter ({spec.names[slot]}), but "
            f"you supplied a sequence: supply a mapping for named parameters")
    return adapt_params(tuple(params))


def _bind_mapping(spec: ParamSpec, params: Mapping) -> tuple:
    values = []
    for slot, key in enumerate(spec._keys, 1):
        if key is None:
            raise ParameterError(
                f"Binding {slot} has no name, but you supplied a dictionary "
                f"(which has only names).")
        try:
            value = params[key]
        except KeyError:
            raise ParameterError(
                f"You did not supply a value for binding parameter "
                f"{spec.names[slot - 1]}.") from None
        values.append(adapt_value(value, slot))
    return tuple(values)


# --------------------------------------------------------------------------
# Result converters
# --------------------------------------------------------------------------

def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"expected text, got {type(value).__name__}")


def _convert_date(value: Any) -> datetime.date:
    return datetime.date.fromisoformat(_as_text(value))


def _convert_datetime(value: Any) -> datetime.datetime:
    return datetime.datetime.fromisoformat(_as_text(value))


def _convert_time(value: Any) -> datetime.time:
    return datetime.time.fromisoformat(_as_text(value))


def _convert_bool(value: Any) -> bool:
    # SQLite stores TRUE/FALSE as 1/0, and any non-zero number is true.
    if type(value) in (int, float):
        return bool(value)
    return bool(int(_as_text(value)))


def _convert_decimal(value: Any) -> decimal.Decimal:
    if type(value) is float:
        # repr gives the shortest text that reads back as this float, so
        # 0.1 becomes Decimal('0.1'), not its 55-digit binary expansion.
        return decimal.Decimal(repr(value))
    if type(value) is int:
        return decimal.Decimal(value)
    return decimal.Decimal(_as_text(value).strip())


def _convert_json(value: Any) -> Any:
    if type(value) in (int, float):
        return value  # a JSON number stored as a native number
    return json.loads(value)


_BUILTIN_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "DATE": _convert_date,
    "DATETIME": _convert_datetime,
    "TIMESTAMP": _convert_datetime,
    "TIME": _convert_time,
    "BOOLEAN": _convert_bool,
    "BOOL": _convert_bool,
    "DECIMAL": _convert_decimal,
    "NUMERIC": _convert_decimal,
    "JSON": _convert_json,
}

_user_converters: dict[str, Callable[[Any], Any]] = {}


def register_converter(typename: str, converter: Callable[[Any], Any]) -> None:
    """Convert non-NULL values of columns declared ``typename`` (any case).

    Used only on connections opened with ``detect_types=PARSE_DECLTYPES``.
    The converter gets the stored value (str, int, float or bytes).
    """
    if not isinstance(typename, str) or not typename.strip() or \
            any(c in typename for c in " ()"):
        raise ProgrammingError(
            f"converter type name must be one word, like 'POINT', not {typename!r}")
    if not callable(converter):
        raise ProgrammingError(f"converter for {typename!r} is not callable")
    _user_converters[typename.upper()] = converter


def _converter_for(declared_type: str | None) -> Callable[[Any], Any] | None:
    if not declared_type:
        return None
    key = declared_type.strip().split(" ", 1)[0].split("(", 1)[0].upper()
    return _user_converters.get(key) or _BUILTIN_CONVERTERS.get(key)


class RowConverter:
    """Applies per-column converters to result rows of one statement."""

    __slots__ = ("_columns",)

    def __init__(self, columns: list[tuple[int, str, str, Callable[[Any], Any]]]) -> None:
        # (index, column name, declared type, converter), converted columns only
        self._columns = columns

    def __call__(self, row: tuple) -> tuple:
        values = list(row)
        for index, name, declared, convert in self._columns:
            value = values[index]
            if value is not None:
                values[index] = _run_converter(convert, value, name, declared)
        return tuple(values)

    def convert_rows(self, rows: list[tuple]) -> list[tuple]:
        return [self(row) for row in rows]


def _run_converter(convert: Callable[[Any], Any], value: Any, name: str,
                   declared: str) -> Any:
    try:
        return convert(value)
    except (ValueError, TypeError, ArithmeticError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot convert value {value!r} of column {name!r} declared "
            f"{declared}: {exc}") from exc


def row_converter(columns: Sequence[tuple[str, str | None]],
                  detect_types: int) -> RowConverter | None:
    """A converter for rows whose columns are ``(name, declared_type)``.

    None when ``detect_types`` lacks PARSE_DECLTYPES or no column needs
    converting, so the cursor's default path stays free of per-row work.
    """
    if not detect_types & PARSE_DECLTYPES:
        return None
    converted = []
    for index, (name, declared) in enumerate(columns):
        convert = _converter_for(declared)
        if convert is not None:
            converted.append((index, name, declared, convert))
    return RowConverter(converted) if converted else None
