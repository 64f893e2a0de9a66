"""PEP 249 Connection: opens a database directory and owns one engine session.

Options of ``terndb.connect(path, **options)``:

============================  =================================================
``isolation_level``           ``""`` (default, = DEFERRED): DML implicitly opens a
                              transaction ended by commit()/rollback(), as in
                              sqlite3; ``None``: autocommit, each statement
                              commits unless the SQL says BEGIN.
``timeout``                   busy timeout in seconds (default 5.0): how long a
                              writer waits for another writer before
                              ``OperationalError: database is locked``.
``durability``                ``"full"`` (default: every commit fsync'd),
                              ``"normal"`` (sqlite3's WAL + synchronous=NORMAL
                              guarantee: no fsync per commit; a background
                              checkpoint every second or 1000 commits; an
                              application crash loses nothing, an OS crash
                              rolls back to the last checkpoint and never
                              corrupts; on systems without a boot id, every
                              commit fsyncs its data pages instead),
                              ``"off"`` (no fsync: an OS crash may corrupt).
``map_size``                  initial LMDB map size in bytes; it grows by itself.
``readonly``                  open the database read-only.
``detect_types``              ``terndb.PARSE_DECLTYPES`` to convert results by
                              declared type (DATE, TIMESTAMP, BOOLEAN, DECIMAL,
                              JSON); default 0 (values come back as stored).
``check_same_thread``         like sqlite3 (default True): a connection may only
                              be used by the thread that created it.
``node_id``                   this database's replication node id, persisted: a
                              name of 1-16 characters ``[A-Za-z0-9._:-]``, 32 hex
                              digits or a UUID (default: a random UUID made at
                              creation).  It cannot change once the database has
                              written anything (ProgrammingError).
============================  =================================================

``connect(":memory:")`` gives a temporary database removed on close.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from terndb._cext._core import ConnectionState
from terndb.engine import errors as E
from terndb.engine.database import Database
from terndb.engine.session import Session

from . import adapters
from .cursor import Cursor, guarded

if TYPE_CHECKING:
    from .documents import Collection


class Connection(ConnectionState):
    """PEP 249 connection.  The fields every ``Cursor.execute`` reads (``_session``,
    ``_closed``, ``_check_thread``, ``_thread``) are C fields of ``ConnectionState``."""

    # PEP 249 optional extension: exceptions as connection attributes.
    Warning = E.Warning
    Error = E.Error
    InterfaceError = E.InterfaceError
    DatabaseError = E.DatabaseError
    DataError = E.DataError
    OperationalError = E.OperationalError
    IntegrityError = E.IntegrityError
    InternalError = E.InternalError
    ProgrammingError = E.ProgrammingError
    NotSupportedError = E.NotSupportedError

    def __init__(self, path: str | os.PathLike = ":memory:", *, isolation_level: str | None = "",
                 timeout: float = 5.0, durability: str = "full", map_size: int | None = None,
                 readonly: bool = False, detect_types: int = 0, check_same_thread: bool = True,
                 node_id: Any = None) -> None:
        if isolation_level is not None and str(isolation_level).upper() not in ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise E.ProgrammingError(f"invalid isolation_level: {isolation_level!r}")
        self._db = Database.open(os.fspath(path), map_size=map_size, readonly=readonly, durability=durability)
        if node_id is not None:
            try:
                self._db.set_node_id(node_id)
            except BaseException:
                self._db.release()
                raise
        self._session = Session(self._db, isolation_level=isolation_level, busy_timeout=float(timeout),
                                binder=adapters.bind)
        self._thread = threading.get_ident()
        self._check_thread = check_same_thread
        self.detect_types = detect_types
        self._closed = False
        self.path = self._db.path

    # -- state checks ---------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise E.ProgrammingError("Cannot operate on a closed database.")
        if self._check_thread and threading.get_ident() != self._thread:
            raise E.ProgrammingError(
                "SQLite objects created in a thread can only be used in that same thread.")

    # -- PEP 249 --------------------------------------------------------------------

    @guarded
    def close(self) -> None:
        if self._closed:
            raise E.ProgrammingError("Cannot operate on a closed database.")
        try:
            self._session.close()
        finally:
            self._closed = True
            self._db.release()

    @guarded
    def commit(self) -> None:
        self._check()
        self._session.commit()

    @guarded
    def rollback(self) -> None:
        self._check()
        self._session.rollback()

    def cursor(self, factory: Any = None) -> Cursor:
        self._check()
        return (factory or Cursor)(self)

    # -- sqlite3-style conveniences -------------------------------------------------

    def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> Cursor:
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, script: str) -> Cursor:
        return self.cursor().executescript(script)

    @guarded
    def ingest(self, table: str, data: Any, *, create: bool = False, mode: str = "append") -> int:
        """Bulk-inserts a pyarrow Table/RecordBatch/RecordBatchReader or pandas DataFrame into
        ``table`` (``create``: create it if missing; ``mode="replace"``: drop and re-create);
        returns the row count.  See terndb/arrow.py for the type mapping."""
        self._check()
        from . import arrow
        return arrow.ingest(self, table, data, create=create, mode=mode)

    # -- documents (terndb/documents.py) ---------------------------------------------

    @guarded
    def documents(self, table: str) -> "Collection":
        """The document API over ``table``: insert/upsert/get/get_many/delete/find/count of dicts."""
        from .documents import Collection
        return Collection(self, table)

    @guarded
    def create_document_table(self, name: str, primary_key: str | Sequence[str] = "id", *,
                              key_type: str = "INTEGER", index_attributes: bool = True,
                              if_not_exists: bool = False) -> "Collection":
        """Creates a dynamic-schema table (``CREATE TABLE ... WITH (dynamic = true)``) keyed by
        ``primary_key``; new top-level attributes of documents become columns, each indexed
        unless ``index_attributes`` is false.  Returns its Collection."""
        self._check()
        from .documents import create_document_table
        return create_document_table(self, name, primary_key, key_type=key_type,
                                     index_attributes=index_attributes, if_not_exists=if_not_exists)

    @guarded
    def ingest_jsonl(self, table: str, source: Any, *, batch_size: int = 10_000,
                     primary_key: str = "id", progress: Callable[[int], None] | None = None) -> int:
        """Loads a JSON-lines file (path or text/binary file object) into ``table``, created as a
        document table keyed by ``primary_key`` if missing; ``progress`` gets the running
        count after each batch.  Returns the number of documents.  A bad line raises
        DataError naming its line number; the rows go in the current transaction."""
        self._check()
        from .documents import ingest_jsonl
        report = (lambda docs, _read, _size: progress(docs)) if progress is not None else None
        return ingest_jsonl(self, table, source, batch_size=batch_size, primary_key=primary_key,
                            progress=report)

    @property
    def isolation_level(self) -> str | None:
        return self._session.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._check()
        if value is None and self._session.in_transaction:
            self._session.commit()    # sqlite3 commits when switching to autocommit
        self._session.isolation_level = value

    @property
    def autocommit(self) -> bool:
        return self._session.isolation_level is None

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self.isolation_level = None if value else ""

    @property
    def in_transaction(self) -> bool:
        self._check()
        return self._session.in_transaction

    @property
    def total_changes(self) -> int:
        self._check()
        return self._session.total_changes

    @property
    def node_id(self) -> str:
        """This database's stable replication node id (hex)."""
        return self._db.node_id.hex()

    def __enter__(self) -> "Connection":
        self._check()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # Like sqlite3: commit on success, roll back on error; the connection stays open.
        if self._closed:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self._session.close()
                self._db.release(finalizing=True)
            except Exception:
                pass
            self._closed = True


def connect(path: str | os.PathLike = ":memory:", **options: Any) -> Connection:
    """Opens (creating if needed) the database in directory ``path``; see Connection for options."""
    return Connection(path, **options)
