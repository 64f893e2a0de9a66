"""Document tables: Python dicts in and out of a table by primary key, with dynamic schema.

A *document table* is an ordinary table created with the table option
``WITH (dynamic = true)`` (``index_attributes`` defaults to true), e.g.::

    CREATE TABLE dogs (id INTEGER PRIMARY KEY) WITH (dynamic = true, index_attributes = true)

Each top-level attribute of a document is a column.  When a write brings
attributes the table has not seen, :class:`DocumentTable` first adds them
with ``ALTER TABLE ... ADD COLUMN "attr"`` (no declared type: no affinity,
so values keep their types, as in a SQLite column declared without a type)
and, with ``index_attributes``, ``CREATE INDEX "<table>__<attr>"`` on each
attribute whose first value is a scalar.  Attributes holding objects or
arrays are stored as JSON text (by the parameter binder) and left unindexed:
query them by path (``doc ->> '$.a.b'``) and give a path an expression index
if it needs one.  Because those are ordinary DDL statements run in the
writer's transaction, the schema version moves (cached plans re-plan),
``.schema`` and reflection see the new columns, rollback removes them, and
replication ships them like any ALTER.

Rows go in through the session's ``executemany`` (the compiled insert loop):
a batch of documents becomes one INSERT per run of documents that need the
same column list, normally one for the whole batch.  Upserts are
``INSERT ... ON CONFLICT (pk) DO UPDATE SET`` the attributes each document
carries, so an upsert merges into the stored document (HarperDB's model).

Reading back, NULL attributes are left out of the dict (a document reads
back as written) and, in a dynamic table, text in an untyped column that is
a JSON object or array is parsed back into a dict or list.
"""
from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable

from .catalog import Schema, Table
from .errors import DataError, Error, ProgrammingError
from .sqlparse import quote_name

#: Savepoint that makes one document write atomic inside a caller's transaction.
_SAVEPOINT = "terndb_documents"


def attribute_index_name(table: str, attribute: str) -> str:
    """The name of the default index of a document table's attribute."""
    return f"{table}__{attribute}"


def document_table_sql(name: str, primary_key: str | Sequence[str] = "id", key_type: str = "INTEGER",
                       index_attributes: bool = True, if_not_exists: bool = False) -> str:
    """The CREATE TABLE statement of a document table keyed by ``primary_key``.

    ``key_type`` INTEGER on a single key makes it the rowid alias, so
    documents without a key get one generated (as SQLite numbers rows).
    """
    keys = [primary_key] if isinstance(primary_key, str) else list(primary_key)
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ProgrammingError(f"primary_key must be a column name or a list of them, not {primary_key!r}")
    if not isinstance(key_type, str) or not key_type.replace(" ", "").replace("(", "").replace(")", "").isalnum():
        raise ProgrammingError(f"key_type must be a SQL type name, not {key_type!r}")
    if len(keys) == 1:
        body = f"{quote_name(keys[0])} {key_type} PRIMARY KEY"
    else:
        body = (", ".join(f"{quote_name(k)} {key_type}" for k in keys)
                + f", PRIMARY KEY ({', '.join(map(quote_name, keys))})")
    exists = "IF NOT EXISTS " if if_not_exists else ""
    flag = "true" if index_attributes else "false"
    return f"CREATE TABLE {exists}{quote_name(name)} ({body}) WITH (dynamic = true, index_attributes = {flag})"


def _is_nested(value: Any) -> bool:
    return isinstance(value, (dict, list))


class _Batch:
    """A batch of documents checked against a table: the attributes it adds."""

    __slots__ = ("docs", "new")

    def __init__(self, docs: list[dict], new: dict[str, list]) -> None:
        self.docs = docs           # the documents, with keys spelled as the columns are
        self.new = new             # lower name -> [spelling, first non-NULL value]


class _Shape:
    """What one schema version says about the table, worked out once per version."""

    __slots__ = ("schema", "table", "columns", "exact", "pk", "pk_positions", "required", "defaulted",
                 "get_sql", "decodable", "row_of")

    def __init__(self, schema: Schema, name: str) -> None:
        table = schema.table(name)
        if not table.pk:
            raise ProgrammingError(f"table {table.name} has no PRIMARY KEY: documents need one")
        self.schema = schema
        self.table = table
        self.columns = [c.name for c in table.columns if not c.hidden]
        self.exact = frozenset(self.columns)
        self.pk = [table.columns[i].name for i in table.pk]
        self.pk_positions = [self.columns.index(k) for k in self.pk]
        # Only an INTEGER PRIMARY KEY is generated for a document without one.
        self.required = [] if table.rowid_alias is not None else self.pk_positions
        self.defaulted = [c.name for c in table.columns if c.default_sql is not None and not c.hidden]
        self.get_sql = (f"SELECT * FROM {quote_name(table.name)} WHERE "
                        + " AND ".join(f"{quote_name(k)} = ?" for k in self.pk))
        self.decodable = self._decodable(self.columns)
        getter = operator.itemgetter(*self.columns)
        self.row_of = getter if len(self.columns) > 1 else (lambda d: (getter(d),))

    def _decodable(self, names: list[str]) -> frozenset[int]:
        """Positions of ``names`` whose text may be a stored object or array."""
        if not self.table.dynamic:
            return frozenset()
        table = self.table
        return frozenset(pos for pos, name in enumerate(names)
                         if (col := table.find_column(name)) is not None
                         and table.columns[col].decl_type.upper() in ("", "JSON"))

    def builder(self, names: list[str]) -> Callable[[tuple], dict]:
        """Turns rows with these column names into dicts.

        NULL attributes are left out (a document reads back as it was written);
        in a dynamic table, text in an untyped (or JSON) column that is a JSON
        object or array is parsed back into the dict or list it was stored from.
        """
        decodable = self.decodable if names == self.columns else self._decodable(names)

        def build(row: tuple) -> dict:
            doc = {}
            for pos, value in enumerate(row):
                if value is None:
                    continue
                if pos in decodable and type(value) is str and value[:1] in ("{", "[") \
                        and value[-1:] in ("}", "]"):
                    try:
                        value = json.loads(value)
                    except ValueError:
                        pass       # text that only looks like JSON stays text
                doc[names[pos]] = value
            return doc
        return build


class DocumentTable:
    """Document operations on one table through one engine session."""

    def __init__(self, session: Any, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ProgrammingError(f"a document table needs a table name, not {name!r}")
        self.session = session
        self.name = name
        self._cached: _Shape | None = None
        self.name = self.shape().table.name     # as declared; fails early on a missing table

    def shape(self) -> _Shape:
        """The table as the session sees it now."""
        schema = self.session.current_schema()
        if self._cached is None or self._cached.schema is not schema:
            self._cached = _Shape(schema, self.name)
        return self._cached

    # -- writes -----------------------------------------------------------------------

    def write(self, docs: list[Any], upsert: bool = False) -> tuple[int, Any]:
        """Inserts (or upserts) ``docs``; returns (documents written, key of the last one)."""
        if not docs:
            return 0, None
        shape = self.shape()
        done = self._write_plain(shape, docs, upsert)
        if done is not None:
            return done
        batch = self._check(shape, docs)
        if batch.new:
            def grow_then_write() -> tuple[int, Any]:
                self._add_attributes(shape.table, batch.new)
                return self._write_docs(batch.docs, upsert)
            return self._atomically(grow_then_write)
        return self._write_docs(batch.docs, upsert)

    def _write_plain(self, shape: _Shape, docs: list[Any], upsert: bool) -> tuple[int, Any] | None:
        """The bulk path: one INSERT of every column (see _plain_rows); None when the
        documents need the general path (upserts, DEFAULT columns, anything unusual)."""
        if upsert or shape.defaulted:
            return None
        rows = self._plain_rows(shape, docs)
        return None if rows is None else self._run(shape, shape.columns, rows, upsert=False)

    @staticmethod
    def _plain_rows(shape: _Shape, docs: list[Any]) -> list[tuple] | None:
        """Rows for documents whose keys are all columns spelled as declared, else None.

        Everything here runs at C speed: when every document has as many keys as
        the table has columns, an itemgetter that finds them all proves the keys
        are exactly the columns; otherwise a superset test per document, then
        ``dict.get`` for the missing ones.  Anything unusual (a new attribute,
        another spelling, a non-dict, a missing required key) returns None and
        goes through :meth:`_check`, which also words the errors.
        """
        columns = shape.columns
        try:
            if set(map(len, docs)) == {len(columns)}:
                rows = list(map(shape.row_of, docs))
            elif all(map(shape.exact.issuperset, docs)):
                rows = [tuple(map(d.get, columns)) for d in docs]
            else:
                return None
        except (KeyError, TypeError, AttributeError):
            return None
        for pos in shape.required:
            if None in map(operator.itemgetter(pos), rows):
                return None
        return rows

    def _check(self, shape: _Shape, docs: Iterable[Any]) -> _Batch:
        """Validates the documents, respells keys as the columns and finds new attributes.

        The scans run at C speed (map/compress over the list); Python code only
        visits the documents that bring an unseen or differently spelled key.
        """
        table = shape.table
        docs = list(docs)
        if set(map(type, docs)) != {dict}:
            for pos, doc in enumerate(docs):
                if type(doc) is not dict:
                    if not isinstance(doc, Mapping):
                        raise ProgrammingError(f"document {pos} is a {type(doc).__name__}, not a dict")
                    docs[pos] = dict(doc)
        spellings = {c.key: c.name for c in table.columns if not c.hidden}
        exact = set(shape.exact)
        new: dict[str, list] = {}
        unusual = list(itertools.compress(range(len(docs)), map(operator.not_, map(exact.issuperset, docs))))
        for pos in unusual:
            if not docs[pos].keys() <= exact:
                docs[pos] = self._respell(docs[pos], pos, spellings, exact, new)
        for key in (shape.columns[p] for p in shape.required):
            if None in map(operator.methodcaller("get", key), docs):
                pos = next(i for i, d in enumerate(docs) if d.get(key) is None)
                raise DataError(f"document {pos} has no primary key {key!r} "
                                f"(only an INTEGER PRIMARY KEY is generated)")
        if new and not table.dynamic:
            spelling = next(iter(new.values()))[0]
            raise ProgrammingError(f"table {table.name} has no column named {spelling} "
                                   f"(create it WITH (dynamic = true) to add attributes)")
        return _Batch(docs, new)

    @staticmethod
    def _respell(doc: dict, pos: int, spellings: dict[str, str], exact: set[str],
                 new: dict[str, list]) -> dict:
        """``doc`` with keys spelled as the columns; records unseen attributes in ``new``."""
        out: dict[str, Any] = {}
        for key, value in doc.items():
            if not isinstance(key, str) or not key:
                raise ProgrammingError(f"document {pos}: attribute names must be non-empty strings, not {key!r}")
            low = key.lower()
            name = spellings.get(low)
            if name is None:
                seen = new.get(low)
                if seen is None:
                    new[low] = seen = [key, None]
                name = seen[0]
                if seen[1] is None and value is not None:
                    seen[1] = value
                    exact.add(name)     # classified now: later documents take the fast path
            if name in out:
                raise DataError(f"document {pos} has attribute {name!r} twice (names ignore case)")
            out[name] = value
        return out

    def _add_attributes(self, table: Table, new: dict[str, list]) -> None:
        """ALTER TABLE ADD COLUMN (and CREATE INDEX) for each new attribute, in the open transaction."""
        run = self.session.execute
        for spelling, _first in new.values():
            run(f"ALTER TABLE {quote_name(table.name)} ADD COLUMN {quote_name(spelling)}")
        if not table.index_attributes:
            return
        schema = self.session.current_schema()
        for spelling, first in new.values():
            if _is_nested(first):
                continue
            name = attribute_index_name(table.name, spelling)
            suffix = 1
            while schema.name_taken(name):
                suffix += 1
                name = f"{attribute_index_name(table.name, spelling)}_{suffix}"
            run(f"CREATE INDEX {quote_name(name)} ON {quote_name(table.name)} ({quote_name(spelling)})")

    def _atomically(self, work: Callable[[], Any]) -> Any:
        """Runs ``work`` (DDL then rows) as one statement of the DB-API transaction.

        Schema statements alone would commit at once outside a transaction, so
        one is begun here as DML begins one (left open unless autocommit); in a
        caller's transaction a savepoint undoes a failed write entirely.
        """
        session = self.session
        began = session.write is None
        session.execute("BEGIN" if began else f"SAVEPOINT {_SAVEPOINT}")
        try:
            result = work()
        except BaseException:
            if began:
                session.rollback()
            elif session.write is not None:
                session.execute(f"ROLLBACK TO {_SAVEPOINT}")
                session.execute(f"RELEASE {_SAVEPOINT}")
            raise
        if began:
            if session.isolation_level is None:
                session.commit()
        else:
            session.execute(f"RELEASE {_SAVEPOINT}")
        return result

    def _write_docs(self, docs: list[dict], upsert: bool) -> tuple[int, Any]:
        """One executemany per run of (checked) documents sharing a column list."""
        shape = self.shape()
        done = self._write_plain(shape, docs, upsert)
        if done is not None:
            return done
        columns = shape.columns
        if upsert:
            group: Callable[[dict], Any] = frozenset   # SET lists what each document carries
        else:
            # Absent attributes are bound as NULL, except columns with a DEFAULT,
            # which must be left out of the INSERT to get it.
            defaulted = shape.defaulted
            group = lambda d: frozenset(k for k in defaulted if k in d)  # noqa: E731
        total, last = 0, None
        for key, run in itertools.groupby(docs, key=group):
            if upsert:
                names = [c for c in columns if c in key]
            else:
                names = [c for c in columns if c not in shape.defaulted or c in key]
            rows = [tuple(map(d.get, names)) for d in run]
            total, last = total + len(rows), self._run(shape, names, rows, upsert)[1]
        return total, last

    def _run(self, shape: _Shape, names: list[str], rows: list[tuple], upsert: bool) -> tuple[int, Any]:
        """executemany of one INSERT (or upsert) statement; (rows, key of the last row)."""
        target = quote_name(shape.table.name)
        sql = (f"INSERT INTO {target} ({', '.join(map(quote_name, names))}) "
               f"VALUES ({', '.join('?' * len(names))})")
        if upsert:
            assignments = [f"{quote_name(n)} = excluded.{quote_name(n)}" for n in names if n not in shape.pk]
            sql += (f" ON CONFLICT ({', '.join(map(quote_name, shape.pk))}) DO "
                    + ("UPDATE SET " + ", ".join(assignments) if assignments else "NOTHING"))
        try:
            result = self.session.executemany(sql, rows)
        except DataError as err:
            raise self._explain_bad_value(names, rows, err) from err
        last = rows[-1]
        key = tuple(last[names.index(k)] if k in names else None for k in shape.pk)
        if shape.table.rowid_alias is not None and key[0] is None:
            key = (result.lastrowid,)
        return len(rows), key[0] if len(key) == 1 else key

    @staticmethod
    def _explain_bad_value(names: list[str], rows: list[tuple], err: DataError) -> DataError:
        """A binder DataError restated with the attribute and document it is about."""
        for pos, row in enumerate(rows):
            for name, value in zip(names, row):
                if _is_nested(value):
                    try:
                        json.dumps(value, allow_nan=False)
                    except (TypeError, ValueError, RecursionError) as bad:
                        return DataError(f"attribute {name!r} of document {pos} cannot be stored as JSON: {bad}")
        return err

    def delete(self, keys: Iterable[Any]) -> int:
        """Deletes the documents with these primary keys; returns how many were found."""
        shape = self.shape()
        where = " AND ".join(f"{quote_name(k)} = ?" for k in shape.pk)
        params = [self._key_tuple(k, len(shape.pk)) for k in keys]
        if not params:
            return 0
        result = self.session.executemany(f"DELETE FROM {quote_name(shape.table.name)} WHERE {where}", params)
        return result.rowcount

    # -- reads ------------------------------------------------------------------------

    @staticmethod
    def _key_tuple(key: Any, width: int) -> tuple:
        if width == 1:
            return (key,)
        if not isinstance(key, (tuple, list)) or len(key) != width:
            raise ProgrammingError(f"this table's primary key has {width} columns: give a tuple of {width} values")
        return tuple(key)

    def get_many(self, keys: Iterable[Any]) -> list[dict | None]:
        """The document of each key, in order; None where no document has it."""
        # The session refreshes its schema at each statement: trust the shape of
        # the session's last schema, and plan again when the statement saw another.
        cached = self._cached
        shape = cached if cached is not None and cached.schema is self.session.schema else self.shape()
        build = None
        out: list[dict | None] = []
        for key in keys:
            row, names, shape = self._lookup(shape, self._key_tuple(key, len(shape.pk)))
            if row is None:
                out.append(None)
                continue
            build = build or shape.builder(names)
            out.append(build(row))
        return out

    def _lookup(self, shape: _Shape, key: tuple, retry: bool = True) -> tuple[tuple | None, list[str], _Shape]:
        """One point lookup (the planner searches the primary key for ``pk = ?``;
        an ``IN (?, ...)`` list would scan): (row or None, column names, shape used)."""
        try:
            result = self.session.execute(shape.get_sql, key)
        except Error:
            if not retry or self.session.schema is shape.schema:
                raise
            return self._lookup(self.shape(), key, retry=False)   # planned against an older schema
        if retry and self.session.schema is not shape.schema:
            result.close()
            return self._lookup(self.shape(), key, retry=False)
        rows = result.fetch(1)
        result.close()
        return (rows[0] if rows else None), result.names, shape

    def find(self, where: str | None = None, params: Any = (),
             equals: Mapping[str, Any] | None = None) -> list[dict]:
        """Documents matching ``equals`` (attribute -> value) and the SQL condition ``where``."""
        names, rows = self._select("*", where, params, equals)
        build = self.shape().builder(names)
        return [build(row) for row in rows]

    def count(self, where: str | None = None, params: Any = (), equals: Mapping[str, Any] | None = None) -> int:
        _names, rows = self._select("count(*)", where, params, equals)
        return rows[0][0] if rows else 0

    def _select(self, what: str, where: str | None, params: Any,
                equals: Mapping[str, Any] | None) -> tuple[list[str], list[tuple]]:
        """(column names, rows) of ``SELECT what FROM table WHERE ...``."""
        table = self.shape().table
        clauses: list[str] = [f"({where})"] if where else []
        named = isinstance(params, Mapping)
        bound: Any = dict(params) if named else list(params or ())
        for n, (attr, value) in enumerate((equals or {}).items()):
            if table.dynamic and table.find_column(attr) is None:
                # No document has this attribute: it equals only None.
                if value is None:
                    continue
                return [], [(0,)] if what == "count(*)" else []
            if value is None:
                clauses.append(f"{quote_name(attr)} IS NULL")
            elif named:
                bound[f"_eq{n}"] = value
                clauses.append(f"{quote_name(attr)} = :_eq{n}")
            else:
                bound.append(value)
                clauses.append(f"{quote_name(attr)} = ?")
        sql = f"SELECT {what} FROM {quote_name(table.name)}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        result = self.session.execute(sql, bound if named else tuple(bound))
        try:
            return list(result.names), result.fetch(-1)
        finally:
            result.close()
