"""The document API of a connection: ``con.documents("dogs")`` and JSON-lines ingest.

A :class:`Collection` reads and writes Python dicts in one table by primary
key, alongside SQL on the same connection and inside its transaction: writes
open the DB-API transaction as DML does (``commit()``/``rollback()`` end it;
with ``autocommit`` each call commits).  On a table created dynamic
(``con.create_document_table`` or ``CREATE TABLE ... WITH (dynamic = true)``)
new top-level attributes become columns, indexed by default.  The engine side
(schema growth, the INSERT/UPSERT statements) is terndb/engine/documents.py.

``ingest_jsonl`` streams a JSON-lines file (one object per line) into a
document table in batches through the same writer.
"""
from __future__ import annotations

import io
import itertools
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from terndb.engine import errors as E
from terndb.engine.documents import DocumentTable, document_table_sql

from .cursor import guarded

if TYPE_CHECKING:
    from .connection import Connection

#: Documents per write of ingest_jsonl (bounded memory, one executemany each).
JSONL_BATCH = 10_000


class Collection:
    """Dicts in one table, by primary key.  Get one with ``connection.documents(table)``."""

    def __init__(self, connection: "Connection", table: str) -> None:
        connection._check()
        self.connection = connection
        self._docs = DocumentTable(connection._session, table)
        self.name = self._docs.name

    def __repr__(self) -> str:
        return f"<terndb.Collection {self.name!r}>"

    def _engine(self) -> DocumentTable:
        self.connection._check()
        return self._docs

    # -- writes -----------------------------------------------------------------------

    @guarded
    def insert(self, docs: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> Any:
        """Inserts a document (returns its primary key, generated for a missing INTEGER
        PRIMARY KEY) or a list of them (returns how many).  An existing key is an
        IntegrityError and nothing of the call is written."""
        count, last_key = self._engine().write(_as_list(docs), upsert=False)
        return last_key if isinstance(docs, Mapping) else count

    @guarded
    def upsert(self, docs: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> Any:
        """Inserts documents, or merges their attributes into the stored documents with
        the same primary key (attributes a document does not carry are kept).
        Returns like insert()."""
        count, last_key = self._engine().write(_as_list(docs), upsert=True)
        return last_key if isinstance(docs, Mapping) else count

    @guarded
    def delete(self, keys: Any) -> int:
        """Deletes by primary key (one key, or a list of keys); returns how many existed.
        A composite key is a tuple."""
        return self._engine().delete(_key_list(keys))

    # -- reads ------------------------------------------------------------------------

    @guarded
    def get(self, key: Any) -> dict | None:
        """The document with this primary key, or None."""
        return self.get_many([key])[0]

    @guarded
    def get_many(self, keys: Sequence[Any]) -> list[dict | None]:
        """The documents with these keys, in the same order (None where missing)."""
        return self._engine().get_many(keys)

    @guarded
    def find(self, where: str | None = None, params: Any = (), **equals: Any) -> list[dict]:
        """Documents matching ``attr=value`` keywords (None matches a missing attribute)
        and/or a SQL condition with its parameters:
        ``find(breed="lab")``, ``find("age > ? AND owner ->> '$.city' = ?", (3, "Oslo"))``."""
        return self._engine().find(where, params, equals)

    @guarded
    def count(self, where: str | None = None, params: Any = (), **equals: Any) -> int:
        """How many documents match (all of them without arguments); arguments as find()."""
        return self._engine().count(where, params, equals)

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[dict]:
        return iter(self.find())


def _as_list(docs: Any) -> list:
    if isinstance(docs, Mapping):
        return [docs]
    if isinstance(docs, (str, bytes)) or not isinstance(docs, Iterable):
        raise E.ProgrammingError(f"expected a document (dict) or a list of them, not {type(docs).__name__}")
    return docs if isinstance(docs, list) else list(docs)


def _key_list(keys: Any) -> list:
    if isinstance(keys, list):
        return keys
    return [keys]


# -- creating tables and ingesting JSON lines ---------------------------------------------

def create_document_table(connection: "Connection", name: str, primary_key: str | Sequence[str] = "id",
                          *, key_type: str = "INTEGER", index_attributes: bool = True,
                          if_not_exists: bool = False) -> Collection:
    connection.execute(document_table_sql(name, primary_key, key_type, index_attributes, if_not_exists))
    return Collection(connection, name)


def _table_exists(connection: "Connection", name: str) -> bool:
    return name.lower() in connection._session.current_schema().tables


def _jsonl_documents(stream: Iterable[str | bytes], source: str,
                     done: list[int]) -> Iterator[dict]:
    """The document of each non-blank line; bad JSON or a non-object is a DataError naming
    the line.  ``done[0]`` counts the bytes (characters for text streams) consumed."""
    for number, line in enumerate(stream, 1):
        done[0] += len(line)
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as err:     # JSONDecodeError, UnicodeDecodeError
            raise E.DataError(f"{source} line {number}: bad JSON: {err}") from err
        if type(doc) is not dict:
            raise E.DataError(f"{source} line {number}: expected a JSON object, not {type(doc).__name__}")
        yield doc


def ingest_jsonl(connection: "Connection", table: str, source: str | os.PathLike | io.IOBase | Any, *,
                 batch_size: int = JSONL_BATCH, primary_key: str = "id",
                 progress: Callable[[int, int, int | None], None] | None = None) -> int:
    """Loads JSON lines into ``table``, creating it as a document table when missing;
    returns the number of documents.  The whole file is one transaction: the caller's
    when one is open, else one begun here (committed at the end under autocommit, left
    open for ``commit()`` otherwise, as DML) and rolled back if a line is bad.

    ``progress(documents, bytes_read, total_bytes)`` runs after each batch
    (``total_bytes`` is None for a stream of unknown size).
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise E.ProgrammingError(f"batch_size must be a positive integer, not {batch_size!r}")
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            stream: Any = open(name, "rb")
            size: int | None = os.fstat(stream.fileno()).st_size
        except OSError as err:
            raise E.ProgrammingError(f"cannot read {name!r}: {err}") from err
    elif hasattr(source, "__iter__"):
        name, stream, size = str(getattr(source, "name", "<stream>")), source, None
    else:
        raise E.ProgrammingError(f"ingest_jsonl() reads a path or a file object, not {type(source).__name__}")
    # One transaction for the whole file, the table's creation included, so a bad
    # line leaves nothing behind when this call began it.
    began = not connection.in_transaction
    try:
        if began:
            connection.execute("BEGIN")
        if not _table_exists(connection, table):
            create_document_table(connection, table, primary_key)
        collection = Collection(connection, table)
        done = [0]
        lines = _jsonl_documents(stream, name, done)
        total = 0
        while batch := list(itertools.islice(lines, batch_size)):
            total += collection.insert(batch)
            if progress is not None:
                progress(total, done[0], size)
    except BaseException:
        if began:
            connection.rollback()
        raise
    finally:
        if stream is not source:
            stream.close()
    if began and connection.isolation_level is None:
        connection.commit()
    return total
