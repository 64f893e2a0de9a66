"""The SQLAlchemy dialect for terndb: ``create_engine("terndb:///path/to/dir")``.

URLs
    ``terndb://`` or ``terndb:///:memory:``  a temporary in-memory database
    ``terndb:///relative/dir``               a database directory relative to the cwd
    ``terndb:////absolute/dir``              an absolute directory
    Query options become ``terndb.connect()`` options: ``timeout`` (seconds),
    ``durability`` (full/normal/off), ``map_size`` (bytes), ``readonly``,
    ``isolation_level`` (deferred/immediate/exclusive, or ``autocommit``/``none``)
    and ``check_same_thread`` (default False: the pool hands a connection to
    one thread at a time).

Transactions
    terndb runs like Python's sqlite3 in its legacy transaction mode: DML opens
    a transaction implicitly and reads outside one see the latest commit.  The
    dialect adds one thing: DDL executed inside a SQLAlchemy transaction first
    issues ``BEGIN``, so schema changes commit or roll back with the
    transaction (Alembic's ``transactional_ddl``).  Plain reads never take the
    database's single writer lock.  Isolation levels: ``SERIALIZABLE`` (the
    default: LMDB gives every transaction a snapshot and there is one writer)
    and ``AUTOCOMMIT`` (each statement commits on its own).  SAVEPOINTs work,
    so ``Session.begin_nested()`` does.

Capabilities are declared for what the engine runs today: RETURNING (and
insertmanyvalues), ALTER TABLE for columns but not constraints, schemas
(``CREATE SCHEMA``; ``main`` is the default, ``Table(..., schema="s")`` works
as with SQLite's attached databases, foreign keys may cross schemas), no
sequences, no native boolean/decimal/uuid/JSON.
Reflection reads terndb's catalog (``reflection.py``), not PRAGMAs.
"""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import pool
from sqlalchemy import schema as sa_schema
from sqlalchemy import exc
from sqlalchemy.engine import default, reflection
from sqlalchemy.engine.url import URL

from terndb.engine.catalog import TEMP

from . import reflection as terndb_reflection
from .compiler import TerndbCompiler, TerndbDDLCompiler, TerndbIdentifierPreparer, TerndbTypeCompiler
from .types import colspecs, ischema_names

try:  # Alembic finds its implementation by dialect name once the module is imported.
    from . import alembic_impl  # noqa: F401
except ImportError:  # alembic is optional
    pass

MEMORY = ":memory:"

# URL query option -> converter for terndb.connect()
_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}


def _as_bool(value: str) -> bool:
    try:
        return _BOOL_WORDS[str(value).lower()]
    except KeyError:
        raise exc.ArgumentError(f"invalid boolean value in URL: {value!r}") from None


def _as_isolation(value: str) -> str | None:
    word = str(value).strip().lower()
    if word in ("none", "autocommit"):
        return None
    if word in ("", "deferred", "immediate", "exclusive"):
        return word.upper()
    raise exc.ArgumentError(f"invalid isolation_level in URL: {value!r}")


_URL_OPTIONS = {
    "timeout": float,
    "durability": str,
    "map_size": int,
    "readonly": _as_bool,
    "isolation_level": _as_isolation,
    "check_same_thread": _as_bool,
}


def _dbapi_connection(connection: Any) -> Any:
    """The terndb.Connection under a SQLAlchemy Connection."""
    return connection.connection.dbapi_connection


# Schema statements given as text (exec_driver_sql, text(), Alembic's op.execute).
_DDL_TEXT = re.compile(r"\s*(CREATE|DROP|ALTER)\b", re.I)


class TerndbExecutionContext(default.DefaultExecutionContext):

    def pre_exec(self) -> None:
        # Make DDL transactional: legacy-mode DB-API connections (sqlite3's and
        # terndb's) autocommit DDL issued outside an open transaction.
        if self.isddl or (not (self.isinsert or self.isupdate or self.isdelete)
                          and isinstance(self.statement, str) and _DDL_TEXT.match(self.statement)):
            dbapi_con = self._dbapi_connection.dbapi_connection
            if dbapi_con.isolation_level is not None and not dbapi_con.in_transaction:
                self.cursor.execute("BEGIN")


class TerndbDialect(default.DefaultDialect):
    """terndb's dialect, on DefaultDialect with terndb's own reflection."""

    name = "terndb"
    driver = "terndb"
    supports_statement_cache = True

    default_paramstyle = "qmark"
    execution_ctx_cls = TerndbExecutionContext
    statement_compiler = TerndbCompiler
    ddl_compiler = TerndbDDLCompiler
    type_compiler_cls = TerndbTypeCompiler
    preparer = TerndbIdentifierPreparer
    colspecs = colspecs
    ischema_names = ischema_names

    # What the engine runs today.
    supports_schemas = True
    supports_alter = False
    supports_comments = False
    inline_comments = False
    supports_sequences = False
    supports_identity_columns = False
    supports_native_boolean = False
    supports_native_decimal = False
    supports_native_enum = False
    supports_native_uuid = False
    supports_server_side_cursors = False
    supports_for_update_of = False
    insert_returning = True
    update_returning = True
    delete_returning = True
    update_returning_multifrom = False
    delete_returning_multifrom = False
    # Multi-row INSERT ... VALUES ... RETURNING batches executemany (SQLAlchemy 2's
    # "insertmanyvalues"), as on SQLite.
    use_insertmanyvalues = True
    supports_default_values = True
    supports_default_metavalue = True
    default_metavalue_token = "NULL"
    supports_empty_insert = False
    supports_multivalues_insert = True
    supports_simple_order_by_label = True
    supports_cast = True
    tuple_in_values = False
    supports_sane_rowcount = True
    supports_sane_multi_rowcount = True
    postfetch_lastrowid = True
    insert_null_pk_still_autoincrements = True
    div_is_floordiv = True
    max_identifier_length = 9999

    construct_arguments = [
        (sa_schema.Table, {"autoincrement": False, "with_rowid": True}),
        (sa_schema.Index, {"where": None}),
    ]

    _isolation_levels = ("SERIALIZABLE", "AUTOCOMMIT")

    def __init__(self, json_serializer: Any = None, json_deserializer: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._json_serializer = json_serializer
        self._json_deserializer = json_deserializer

    # -- DB-API module and connecting ----------------------------------------------------

    @classmethod
    def import_dbapi(cls) -> Any:
        import terndb
        return terndb

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        # Every terndb.connect(":memory:") is a new private database: one
        # connection per thread keeps a memory engine on one database per thread.
        if cls._is_memory(url):
            return pool.SingletonThreadPool
        return pool.QueuePool

    @staticmethod
    def _is_memory(url: URL) -> bool:
        return url.database in (None, "", MEMORY)

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        if url.username or url.password or url.host or url.port:
            raise exc.ArgumentError(
                "terndb URLs name a local directory: terndb:///relative/dir or terndb:////absolute/dir")
        database = MEMORY if self._is_memory(url) else url.database
        opts: dict[str, Any] = {"check_same_thread": False}
        for key, value in url.query.items():
            if key not in _URL_OPTIONS:
                raise exc.ArgumentError(f"unknown terndb URL option {key!r} "
                                        f"(known: {', '.join(sorted(_URL_OPTIONS))})")
            if isinstance(value, tuple):
                value = value[-1]
            opts[key] = _URL_OPTIONS[key](value)
        return [database], opts

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        version = getattr(self.dbapi, "__version__", "0")
        return tuple(int(p) for p in re.findall(r"\d+", version))

    def _get_default_schema_name(self, connection: Any) -> str:
        return "main"

    def do_ping(self, dbapi_connection: Any) -> bool:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finally:
            cursor.close()
        return True

    def is_disconnect(self, e: Exception, connection: Any, cursor: Any) -> bool:
        # An embedded database has no network to lose; a closed connection is the one "disconnect".
        dbapi = self.loaded_dbapi
        return isinstance(e, dbapi.ProgrammingError) and "closed database" in str(e)

    # -- isolation -------------------------------------------------------------------------

    def get_isolation_level_values(self, dbapi_connection: Any) -> list[str]:
        return list(self._isolation_levels)

    def set_isolation_level(self, dbapi_connection: Any, level: str) -> None:
        if level == "AUTOCOMMIT":
            dbapi_connection.autocommit = True
        elif level == "SERIALIZABLE":
            dbapi_connection.autocommit = False
        else:  # pragma: no cover - SQLAlchemy validates against get_isolation_level_values
            raise exc.ArgumentError(f"invalid isolation level for terndb: {level!r}")

    def get_isolation_level(self, dbapi_connection: Any) -> str:
        return "AUTOCOMMIT" if dbapi_connection.isolation_level is None else "SERIALIZABLE"

    def detect_autocommit_setting(self, dbapi_conn: Any) -> bool:
        return dbapi_conn.isolation_level is None

    # -- reflection ------------------------------------------------------------------------

    def _schema(self, connection: Any, schema: str | None) -> tuple[Any, str | None]:
        """(catalog snapshot, stored schema name); the name is None when the schema does not exist."""
        cat = terndb_reflection.catalog_schema(_dbapi_connection(connection))
        space = schema or "main"
        return cat, (space.lower() if cat.has_schema(space) else None)

    def _lookup_space(self, connection: Any, schema: str | None) -> tuple[Any, str | None, bool]:
        """(catalog, qualifier to look names up with, whether the schema exists).

        Without a schema a name is looked up as SQL would: the connection's
        temp objects first, then main (SQLite's dialect reads both masters).
        """
        cat, space = self._schema(connection, schema)
        return cat, (space if schema is not None else None), space is not None

    def _table(self, connection: Any, table_name: str, schema: str | None) -> tuple[Any, Any]:
        """(table, catalog) for a table; (None, catalog) for a view, which has no constraints."""
        cat, space, exists = self._lookup_space(connection, schema)
        if exists:
            table = terndb_reflection.find_table(cat, table_name, space)
            if table is not None:
                return table, cat
            if terndb_reflection.find_view(cat, table_name, space) is not None:
                return None, cat
        raise exc.NoSuchTableError(f"{schema}.{table_name}" if schema else table_name)

    @reflection.cache
    def get_schema_names(self, connection: Any, **kw: Any) -> list[str]:
        cat, _ = self._schema(connection, None)
        return cat.schema_names()

    @reflection.cache
    def get_table_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        cat, space = self._schema(connection, schema)
        return terndb_reflection.table_names(cat, space) if space is not None else []

    @reflection.cache
    def get_temp_table_names(self, connection: Any, **kw: Any) -> list[str]:
        cat, _ = self._schema(connection, None)
        return terndb_reflection.table_names(cat, TEMP)

    @reflection.cache
    def get_view_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        cat, space = self._schema(connection, schema)
        return terndb_reflection.view_names(cat, space) if space is not None else []

    @reflection.cache
    def get_temp_view_names(self, connection: Any, **kw: Any) -> list[str]:
        cat, _ = self._schema(connection, None)
        return terndb_reflection.view_names(cat, TEMP)

    @reflection.cache
    def get_view_definition(self, connection: Any, view_name: str, schema: str | None = None,
                            **kw: Any) -> str:
        cat, space, exists = self._lookup_space(connection, schema)
        view = terndb_reflection.find_view(cat, view_name, space) if exists else None
        if view is None:
            raise exc.NoSuchTableError(f"{schema}.{view_name}" if schema else view_name)
        return view.sql

    @reflection.cache
    def has_table(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> bool:
        self._ensure_has_table_connection(connection)
        cat, space, exists = self._lookup_space(connection, schema)
        if not exists:
            return False
        return (terndb_reflection.find_table(cat, table_name, space) is not None
                or terndb_reflection.find_view(cat, table_name, space) is not None)

    @reflection.cache
    def has_index(self, connection: Any, table_name: str, index_name: str, schema: str | None = None,
                  **kw: Any) -> bool:
        cat, space, exists = self._lookup_space(connection, schema)
        table = terndb_reflection.find_table(cat, table_name, space) if exists else None
        return table is not None and any(ix.name.lower() == index_name.lower() for ix in cat.indexes_of(table))

    @reflection.cache
    def get_columns(self, connection: Any, table_name: str, schema: str | None = None,
                    **kw: Any) -> list[dict[str, Any]]:
        table, cat = self._table(connection, table_name, schema)
        if table is None:
            return self._view_columns(connection, terndb_reflection.find_view(cat, table_name, schema))
        return terndb_reflection.describe_columns(table)

    def _view_columns(self, connection: Any, view: Any) -> list[dict[str, Any]]:
        # The catalog keeps a view's SELECT, not its result columns: plan it
        # (LIMIT 0 reads no rows) and take names and declared types from the cursor.
        cursor = _dbapi_connection(connection).cursor()
        quote = self.identifier_preparer.quote_identifier
        try:
            cursor.execute(f"SELECT * FROM {quote(view.schema_name)}.{quote(view.name)} LIMIT 0")
            description = cursor.description or ()
        finally:
            cursor.close()
        return [{"name": d[0], "type": terndb_reflection.resolve_type(d[1] if isinstance(d[1], str) else ""),
                 "nullable": True, "default": None, "primary_key": 0} for d in description]

    @reflection.cache
    def get_pk_constraint(self, connection: Any, table_name: str, schema: str | None = None,
                          **kw: Any) -> dict[str, Any]:
        table, _ = self._table(connection, table_name, schema)
        if table is None:
            return {"constrained_columns": [], "name": None}
        return terndb_reflection.describe_pk(table)

    @reflection.cache
    def get_foreign_keys(self, connection: Any, table_name: str, schema: str | None = None,
                         **kw: Any) -> list[dict[str, Any]]:
        table, cat = self._table(connection, table_name, schema)
        return terndb_reflection.describe_foreign_keys(table, cat) if table is not None else []

    @reflection.cache
    def get_indexes(self, connection: Any, table_name: str, schema: str | None = None,
                    include_auto_indexes: bool = False, **kw: Any) -> list[dict[str, Any]]:
        table, cat = self._table(connection, table_name, schema)
        if table is None:
            return []
        return terndb_reflection.describe_indexes(table, cat, include_auto=include_auto_indexes)

    @reflection.cache
    def get_unique_constraints(self, connection: Any, table_name: str, schema: str | None = None,
                               **kw: Any) -> list[dict[str, Any]]:
        table, cat = self._table(connection, table_name, schema)
        return terndb_reflection.describe_unique_constraints(table, cat) if table is not None else []

    @reflection.cache
    def get_check_constraints(self, connection: Any, table_name: str, schema: str | None = None,
                              **kw: Any) -> list[dict[str, Any]]:
        table, _ = self._table(connection, table_name, schema)
        return terndb_reflection.describe_check_constraints(table) if table is not None else []


dialect = TerndbDialect
