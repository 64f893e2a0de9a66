"""The schema catalog: tables, columns, indexes and views, stored in LMDB.

Every schema object is one JSON record in the ``_catalog`` sub-database, keyed
by ``b"<kind>:<lowercased name>"``.  A ``schema_version`` counter in the meta
sub-database is bumped by every DDL statement in the same LMDB transaction as
the change; connections compare it to their in-memory copy at the start of
each statement and reload when it moved (another connection or process ran
DDL).  Cached plans carry the version they were planned against.

Names are case-insensitive as in SQLite: lookups use the lowercased name,
while the original spelling is kept for display and reflection.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from terndb._cext import _core as C

from .errors import NoSuchObjectError

CATALOG_DB = b"_catalog"
META_SCHEMA_VERSION = b"schema_version"
META_NEXT_OBJECT_ID = b"next_object_id"

# SQLite type affinities and the declared-type rules live in the compiled
# core (values.pxi), the single source of truth for value semantics.
AFF_NONE, AFF_BLOB, AFF_TEXT, AFF_NUMERIC, AFF_INTEGER, AFF_REAL = (
    C.AFF_NONE, C.AFF_BLOB, C.AFF_TEXT, C.AFF_NUMERIC, C.AFF_INTEGER, C.AFF_REAL)
affinity_of_type = C.affinity_of_type


@dataclass
class Column:
    name: str
    decl_type: str = ""            # as declared (may be empty)
    affinity: int = AFF_BLOB
    notnull: bool = False
    default_sql: str | None = None  # SQL text of the DEFAULT expression
    collation: str | None = None
    hidden: bool = False

    @property
    def key(self) -> str:
        return self.name.lower()


@dataclass
class Check:
    name: str | None
    sql: str                       # the CHECK expression, SQLite dialect


@dataclass
class ForeignKey:
    name: str | None
    columns: list[str]
    ref_table: str
    ref_columns: list[str]
    on_delete: str | None = None
    on_update: str | None = None


@dataclass
class IndexPart:
    """One key part of an index: a column position, or an expression."""
    column: int | None             # position in the table's columns, or None
    expr_sql: str | None = None    # for expression indexes
    desc: bool = False
    collation: str | None = None


@dataclass
class Index:
    name: str
    table: str
    object_id: int
    parts: list[IndexPart]
    unique: bool = False
    origin: str = "c"              # 'c' CREATE INDEX, 'u' UNIQUE constraint, 'pk' PRIMARY KEY
    sql: str | None = None         # CREATE INDEX text (None for automatic indexes)
    where_sql: str | None = None   # partial index predicate

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def db_name(self) -> bytes:
        return b"i%d" % self.object_id

    @property
    def desc_flags(self) -> bytes:
        return bytes(1 if p.desc else 0 for p in self.parts)


@dataclass
class Table:
    name: str
    object_id: int
    columns: list[Column]
    pk: list[int] = field(default_factory=list)   # column positions of the PRIMARY KEY
    rowid_alias: int | None = None                # INTEGER PRIMARY KEY column
    autoincrement: bool = False
    checks: list[Check] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    sql: str = ""
    temporary: bool = False
    # A document table (engine/documents.py): rows may bring top-level attributes
    # it has not seen, which become columns; ``index_attributes`` gives each
    # scalar attribute its own index.  Set by CREATE TABLE ... WITH (dynamic = true).
    dynamic: bool = False
    index_attributes: bool = False

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def db_name(self) -> bytes:
        return b"t%d" % self.object_id

    def column_index(self, name: str) -> int:
        low = name.lower()
        for i, c in enumerate(self.columns):
            if c.key == low:
                return i
        raise NoSuchObjectError(f"table {self.name} has no column named {name}")

    def find_column(self, name: str) -> int | None:
        low = name.lower()
        for i, c in enumerate(self.columns):
            if c.key == low:
                return i
        return None


@dataclass
class View:
    name: str
    sql: str                       # the whole CREATE VIEW text
    select_sql: str                # the SELECT it stands for
    columns: list[str] | None = None
    temporary: bool = False

    @property
    def key(self) -> str:
        return self.name.lower()


@dataclass
class Trigger:
    name: str
    table: str
    sql: str

    @property
    def key(self) -> str:
        return self.name.lower()


_KINDS = {"table": Table, "index": Index, "view": View, "trigger": Trigger}


def _encode(kind: str, obj: Any) -> bytes:
    return json.dumps({"kind": kind, "obj": asdict(obj)}, separators=(",", ":")).encode()


def _decode(data: bytes) -> tuple[str, Any]:
    rec = json.loads(data)
    kind, raw = rec["kind"], rec["obj"]
    if kind == "table":
        raw["columns"] = [Column(**c) for c in raw["columns"]]
        raw["checks"] = [Check(**c) for c in raw["checks"]]
        raw["foreign_keys"] = [ForeignKey(**f) for f in raw["foreign_keys"]]
    elif kind == "index":
        raw["parts"] = [IndexPart(**p) for p in raw["parts"]]
    return kind, _KINDS[kind](**raw)


class Schema:
    """An immutable-by-convention snapshot of the catalog at one version."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.tables: dict[str, Table] = {}
        self.indexes: dict[str, Index] = {}
        self.views: dict[str, View] = {}
        self.triggers: dict[str, Trigger] = {}
        self.table_indexes: dict[str, list[Index]] = {}
        self.by_object_id: dict[int, Table] = {}

    def add(self, kind: str, obj: Any) -> None:
        if kind == "table":
            self.tables[obj.key] = obj
            self.by_object_id[obj.object_id] = obj
            self.table_indexes.setdefault(obj.key, [])
        elif kind == "index":
            self.indexes[obj.key] = obj
            self.table_indexes.setdefault(obj.table.lower(), []).append(obj)
        elif kind == "view":
            self.views[obj.key] = obj
        elif kind == "trigger":
            self.triggers[obj.key] = obj

    def table(self, name: str) -> Table:
        t = self.tables.get(name.lower())
        if t is None:
            raise NoSuchObjectError(f"no such table: {name}")
        return t

    def indexes_of(self, table: Table) -> list[Index]:
        return self.table_indexes.get(table.key, [])

    def name_taken(self, name: str) -> str | None:
        """The kind of object already using ``name`` (tables, views and indexes share a namespace)."""
        low = name.lower()
        for kind, space in (("table", self.tables), ("view", self.views),
                            ("index", self.indexes), ("trigger", self.triggers)):
            if low in space:
                return kind
        return None

    def objects(self) -> Iterator[tuple[str, Any]]:
        for t in self.tables.values():
            yield "table", t
        for i in self.indexes.values():
            yield "index", i
        for v in self.views.values():
            yield "view", v
        for tr in self.triggers.values():
            yield "trigger", tr


class Catalog:
    """Reads and writes catalog records inside caller-supplied LMDB transactions."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _db(self, wtxn: Any = None, create: bool = False) -> Any:
        """The catalog sub-database; None before the first DDL created it."""
        from .errors import NoSuchObjectError as Missing
        try:
            return self.store.db(CATALOG_DB, txn=wtxn, create=create)
        except Missing:
            return None

    def version(self, txn: Any) -> int:
        raw = self.store.meta_get(txn, META_SCHEMA_VERSION)
        return int(raw) if raw else 0

    def load(self, txn: Any, wtxn: Any = None) -> Schema:
        """Reads every record in ``txn`` (raw LMDB txn); ``wtxn`` when it is a write txn."""
        schema = Schema(self.version(txn))
        db = self._db(wtxn)
        if db is None:
            return schema
        with txn.cursor(db=db) as cur:
            for _key, value in cur:
                kind, obj = _decode(value)
                schema.add(kind, obj)
        return schema

    # Writers take the storage WriteTxn (``wtxn``): creating the catalog's
    # sub-database needs it, and ``wtxn.txn`` is the innermost LMDB txn.

    def next_object_id(self, wtxn: Any) -> int:
        raw = self.store.meta_get(wtxn.txn, META_NEXT_OBJECT_ID)
        oid = int(raw) if raw else 1
        self.store.meta_put(wtxn.txn, META_NEXT_OBJECT_ID, str(oid + 1).encode())
        return oid

    def put(self, wtxn: Any, kind: str, obj: Any) -> None:
        db = self._db(wtxn, create=True)
        wtxn.txn.put(f"{kind}:{obj.key}".encode(), _encode(kind, obj), db=db)

    def delete(self, wtxn: Any, kind: str, key: str) -> None:
        db = self._db(wtxn, create=True)
        wtxn.txn.delete(f"{kind}:{key}".encode(), db=db)

    def bump_version(self, wtxn: Any) -> int:
        v = self.version(wtxn.txn) + 1
        self.store.meta_put(wtxn.txn, META_SCHEMA_VERSION, str(v).encode())
        return v
