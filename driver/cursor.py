"""PEP 249 Cursor over an engine session's results.

Every public method goes through ``guarded``: terndb errors pass through
unchanged, storage (lmdb) errors become OperationalError, and any other
exception from inside becomes InternalError naming it, so callers only ever
see the PEP 249 hierarchy.  ``execute`` is compiled (``CursorState`` in
cext/stmt.pxi, this Cursor's base) and translates errors through the same
``_translated``.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NoReturn, TypeVar

import lmdb

from terndb._cext._core import CursorState, open_prepared_query
from terndb.engine import errors as E
from terndb.engine.sqlparse import split_script

from . import adapters
from .types import type_code_for

if TYPE_CHECKING:
    from .connection import Connection

F = TypeVar("F", bound=Callable[..., Any])


def _translated(err: Exception) -> Exception:
    """The PEP 249 error to raise (chained ``from err``) for ``err``; ``err`` itself when it
    passes unchanged (terndb errors, MemoryError)."""
    if isinstance(err, (E.Error, MemoryError)):
        return err
    if isinstance(err, lmdb.Error):
        return E.OperationalError(f"storage error: {err}")
    if isinstance(err, RecursionError):
        return E.OperationalError("statement too deeply nested")
    return E.InternalError(f"internal error: {type(err).__name__}: {err}")


def _reraise(err: Exception) -> NoReturn:
    """Raise ``err`` as its PEP 249 translation (chained), or unchanged; call it in
    the ``except`` block that caught ``err``."""
    exc = _translated(err)
    if exc is err:
        raise
    raise exc from err


def guarded(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            _reraise(err)
    return wrapper  # type: ignore[return-value]


_DESCRIPTIONS: dict[int, tuple] = {}


def _description(names: list, decl_types: list | None) -> tuple:
    """PEP 249 description for a result shape; cached per plan (the name list is the plan's own)."""
    entry = _DESCRIPTIONS.get(id(names))
    if entry is not None and entry[0] is names:
        return entry[1]
    desc = tuple((name, type_code_for(decl), None, None, None, None, None)
                 for name, decl in zip(names, decl_types or [None] * len(names)))
    if len(_DESCRIPTIONS) > 4096:
        _DESCRIPTIONS.clear()
    _DESCRIPTIONS[id(names)] = (names, desc)
    return desc


class Cursor(CursorState):
    """PEP 249 cursor.  Its fields and ``execute`` live in ``CursorState`` (compiled):
    a cached INSERT/UPDATE/DELETE inside the open transaction runs with no Python
    frame, the rest goes through ``_execute_planned`` below."""

    # execute()'s error translation, as guarded() does it (read by CursorState.execute).
    _translated = staticmethod(_translated)

    def __init__(self, connection: "Connection") -> None:
        self.connection = connection
        self.arraysize = 1
        self._result: Any = None
        self.description: tuple | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._closed = False
        self._converter: Any = None

    # -- helpers ---------------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise E.ProgrammingError("Cannot operate on a closed cursor.")
        self.connection._check()

    def _reset(self) -> None:
        if self._result is not None:
            self._result.close()
            self._result = None
        self.description = None
        self._converter = None

    def _take(self, result: Any) -> None:
        self._result = result
        self.rowcount = result.rowcount
        if result.lastrowid is not None:
            self.lastrowid = result.lastrowid
        if result.names is not None:
            self.description = _description(result.names, result.decl_types)
            if self.connection.detect_types:
                self._converter = adapters.row_converter(
                    list(zip(result.names, result.decl_types or [None] * len(result.names))),
                    self.connection.detect_types)

    def _execute_planned(self, session: Any, operation: str, parameters: Any) -> "Cursor":
        """execute() of a statement that is not a prepared write runnable now (checks and
        reset done by CursorState.execute, which also translates errors)."""
        # A cached SELECT outside a write transaction opens in C (None: it can't).
        self._take(open_prepared_query(session, operation, parameters)
                   or session.execute_planned(operation, parameters))
        return self

    # -- PEP 249 ---------------------------------------------------------------------

    @guarded
    def executemany(self, operation: str, seq_of_parameters: Iterable[Any]) -> "Cursor":
        self._check()
        self._reset()
        self._take(self.connection._session.executemany(operation, seq_of_parameters))
        return self

    @guarded
    def executescript(self, script: str) -> "Cursor":
        """Runs several statements; commits a pending transaction first, as sqlite3 does."""
        self._check()
        self._reset()
        session = self.connection._session
        session.commit()
        for statement in split_script(script):
            result = session.execute(statement, ())
            result.close()
        return self

    def _fetch(self, n: int) -> list:
        self._check()
        if self._result is None or self.description is None:
            raise E.ProgrammingError("no results to fetch: execute a query first")
        rows = self._result.fetch(n)
        if self._converter is not None:
            rows = self._converter.convert_rows(rows)
        return rows

    def fetchone(self) -> tuple | None:
        # guarded, written out as in execute(): fetchone() loops call it per row.
        try:
            if self._converter is not None or self._closed or self._result is None:
                rows = self._fetch(1)
            else:
                # _fetch() without the converter, inlined.
                self.connection._check()
                if self.description is None:
                    raise E.ProgrammingError("no results to fetch: execute a query first")
                rows = self._result.fetch(1)
            return rows[0] if rows else None
        except Exception as err:
            _reraise(err)

    @guarded
    def fetchmany(self, size: int | None = None) -> list:
        return self._fetch(self.arraysize if size is None else size)

    @guarded
    def fetchall(self) -> list:
        return self._fetch(-1)

    def __iter__(self) -> Iterator[tuple]:
        return self

    def __next__(self) -> tuple:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    # -- Arrow / pandas (terndb extension; see terndb/arrow.py) ------------------------

    @guarded
    def fetch_arrow_table(self) -> Any:
        """The rest of the result as a ``pyarrow.Table``."""
        from . import arrow
        return arrow.fetch_arrow_table(self)

    @guarded
    def fetch_record_batch(self, rows_per_batch: int = 1_000_000) -> Any:
        """A ``pyarrow.RecordBatchReader`` streaming the rest of the result in bounded memory."""
        from . import arrow
        return arrow.fetch_record_batch(self, rows_per_batch)

    @guarded
    def fetch_df(self) -> Any:
        """The rest of the result as a pandas DataFrame."""
        from . import arrow
        return arrow.fetch_df(self)

    @guarded
    def close(self) -> None:
        self._reset()
        self._closed = True

    def setinputsizes(self, sizes: Any) -> None:
        """No-op, as PEP 249 allows."""

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        """No-op, as PEP 249 allows."""

    def __enter__(self) -> "Cursor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
