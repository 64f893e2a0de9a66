"""The schema catalog: schemas, tables, columns, indexes, views and triggers, stored in LMDB.

Every schema object is one JSON record in the ``_catalog`` sub-database, keyed
by ``b"<kind>:<object key>"`` (see ``object_key``).  A ``schema_version`` counter in the meta
sub-database is bumped by every DDL statement in the same LMDB transaction as
the change; connections compare it to their in-memory copy at the start of
each statement and reload when it moved (another connection or process ran
DDL).  Cached plans carry the version they were planned against.

Names are case-insensitive as in SQLite: lookups use the lowercased name,
while the original spelling is kept for display and reflection.

Schemas (``CREATE SCHEMA s``) are namespaces, like SQLite's attached
databases: each table, view, index and trigger records the schema it lives in
(``schema_name``, ``"main"`` when absent, so catalogs written before schemas
existed load unchanged).  Main-schema objects are keyed by their bare
lowercased name; objects of another schema are keyed ``"<schema>\x1f<name>"``.
The unit separator cannot appear in an identifier SQLite accepts, so no
main-schema name (even a quoted ``"s.t"``) collides with a qualified one.
``Schema.lookup`` is the one place qualified and unqualified names are resolved.

Temporary objects (``CREATE TEMP ...``, schema ``temp``) belong to the
connection that made them; see ``engine/temp_objects.py`` for the design.  They
are stored like any other object but keyed ``"temp\x1f<owner>\x1f<name>"``,
``owner`` being the creating session's token, so every connection's temp
objects coexist in the catalog without clashing.  A shared ``Schema`` holds
them all; ``Schema.for_owner`` gives one session its view, in which schema
``temp`` means that session's objects only and unqualified names search temp
first, then main, as in SQLite (a temp table may shadow a main one).
"""
from __future__ import annotations

import copy
import json
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from terndb._cext import _core as C

from .errors import NoSuchObjectError

CATALOG_DB = b"_catalog"
META_SCHEMA_VERSION = b"schema_version"
META_NEXT_OBJECT_ID = b"next_object_id"

MAIN = "main"
TEMP = "temp"
_KEY_SEP = "\x1f"


def object_key(schema_name: str | None, name: str, owner: str | None = None) -> str:
    """The catalog key of object ``name`` in a schema: its lowercased name, qualified unless main.

    Temp objects are qualified by their owning session's token too.
    """
    low = name.lower()
    space = (schema_name or MAIN).lower()
    if space == MAIN:
        return low
    if space == TEMP:
        return f"{TEMP}{_KEY_SEP}{owner or ''}{_KEY_SEP}{low}"
    return f"{space}{_KEY_SEP}{low}"


def canonical_schema(schema_name: str | None) -> str:
    """The stored schema name of an object: lowercased, ``main`` when absent."""
    return (schema_name or MAIN).lower()

# SQLite type affinities and the declared-type rules live in the compiled
# core (values.pxi), the single source of truth for value semantics.
AFF_NONE, AFF_BLOB, AFF_TEXT, AFF_NUMERIC, AFF_INTEGER, AFF_REAL = (
    C.AFF_NONE, C.AFF_BLOB, C.AFF_TEXT, C.AFF_NUMERIC, C.AFF_INTEGER, C.AFF_REAL)
affinity_of_type = C.affinity_of_type

# Index.key_format: how the index stores key parts that are not BINARY-collated
# (engine/collation.py).  Records written before the field existed lack it and
# load as RAW; every index created now is FOLDED.
INDEX_KEYS_RAW = 0        # the column's value as is
INDEX_KEYS_FOLDED = 1     # the value folded under the part's collation


class _Placed:
    """A catalog object named in a schema (temp objects also by their owning session).

    Mixed into the dataclasses below, which have ``name``, ``schema_name`` and ``owner``.
    """

    @property
    def key(self) -> str:
        return object_key(self.schema_name, self.name, self.owner)  # type: ignore[attr-defined]


class _OnTable(_Placed):
    """A catalog object that belongs to a table (``table``) in its own schema."""

    @property
    def table_key(self) -> str:
        return object_key(self.schema_name, self.table, self.owner)  # type: ignore[attr-defined]


@dataclass
class Column:
    name: str
    decl_type: str = ""            # as declared (may be empty)
    affinity: int = AFF_BLOB
    notnull: bool = False
    default_sql: str | None = None  # SQL text of the DEFAULT expression
    collation: str | None = None
    hidden: bool = False
    # GENERATED ALWAYS AS (expr): the expression's SQL text, and whether it was
    # declared STORED (else VIRTUAL).  terndb computes and stores both kinds on
    # write; the flag is kept for reflection and SQLite's ADD COLUMN rule.
    generated_sql: str | None = None
    generated_stored: bool = False

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def generated(self) -> bool:
        return self.generated_sql is not None


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
    ref_schema: str | None = None   # schema of the referenced table (None: main)


@dataclass
class IndexPart:
    """One key part of an index: a column position, or an expression."""
    column: int | None             # position in the table's columns, or None
    expr_sql: str | None = None    # for expression indexes
    desc: bool = False
    collation: str | None = None


@dataclass
class Index(_OnTable):
    name: str
    table: str
    object_id: int
    parts: list[IndexPart]
    unique: bool = False
    origin: str = "c"              # 'c' CREATE INDEX, 'u' UNIQUE constraint, 'pk' PRIMARY KEY
    sql: str | None = None         # CREATE INDEX text (None for automatic indexes)
    where_sql: str | None = None   # partial index predicate
    schema_name: str = MAIN        # always its table's schema
    owner: str | None = None       # temp objects: the owning session's token
    key_format: int = INDEX_KEYS_FOLDED

    @property
    def db_name(self) -> bytes:
        return b"i%d" % self.object_id

    @property
    def desc_flags(self) -> bytes:
        return bytes(1 if p.desc else 0 for p in self.parts)


@dataclass
class Table(_Placed):
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
    schema_name: str = MAIN
    # A document table (engine/documents.py): rows may bring top-level attributes
    # it has not seen, which become columns; ``index_attributes`` gives each
    # scalar attribute its own index.  Set by CREATE TABLE ... WITH (dynamic = true).
    dynamic: bool = False
    index_attributes: bool = False
    owner: str | None = None       # temp objects: the owning session's token
    # CREATE TABLE ... WITHOUT ROWID: rows still carry a hidden rowid (the storage
    # key), but it is never a column, and full scans read the PRIMARY KEY's index
    # so rows come out in key order as SQLite's clustered table gives them.
    without_rowid: bool = False


    @property
    def qualified_name(self) -> str:
        """``schema.name`` outside main, else the name (for messages)."""
        return self.name if self.schema_name == MAIN else f"{self.schema_name}.{self.name}"

    @property
    def db_name(self) -> bytes:
        return b"t%d" % self.object_id

    def column_index(self, name: str) -> int:
        i = self.find_column(name)
        if i is None:
            raise NoSuchObjectError(f"table {self.name} has no column named {name}")
        return i

    def find_column(self, name: str) -> int | None:
        low = name.lower()
        for i, c in enumerate(self.columns):
            if c.key == low:
                return i
        return None


@dataclass
class View(_Placed):
    name: str
    sql: str                       # the whole CREATE VIEW text
    select_sql: str                # the SELECT it stands for
    columns: list[str] | None = None
    temporary: bool = False
    schema_name: str = MAIN
    owner: str | None = None       # temp objects: the owning session's token



@dataclass
class Trigger(_OnTable):
    name: str
    table: str
    sql: str
    schema_name: str = MAIN        # its table's schema, or temp for every TEMP trigger
    owner: str | None = None       # temp objects: the owning session's token
    # A TEMP trigger on a table (or view) of another schema, as SQLite allows:
    # that table's schema.  None when the table is in the trigger's own schema.
    table_schema: str | None = None

    @property
    def table_key(self) -> str:
        if self.table_schema is None:
            return super().table_key
        return object_key(self.table_schema, self.table)    # not a temp table: no owner



@dataclass
class Namespace:
    """A schema created with CREATE SCHEMA (main and temp always exist and have no record)."""
    name: str

    @property
    def key(self) -> str:
        return self.name.lower()


_KINDS = {"table": Table, "index": Index, "view": View, "trigger": Trigger, "schema": Namespace}


def _encode(kind: str, obj: Any) -> bytes:
    raw = asdict(obj)
    for optional in ("owner", "table_schema"):
        if raw.get(optional, "") is None:
            del raw[optional]     # records keep the format they had before these fields existed
    return json.dumps({"kind": kind, "obj": raw}, separators=(",", ":")).encode()


def _decode(data: bytes) -> tuple[str, Any]:
    rec = json.loads(data)
    kind, raw = rec["kind"], rec["obj"]
    if kind == "table":
        raw["columns"] = [Column(**c) for c in raw["columns"]]
        raw["checks"] = [Check(**c) for c in raw["checks"]]
        raw["foreign_keys"] = [ForeignKey(**f) for f in raw["foreign_keys"]]
    elif kind == "index":
        raw["parts"] = [IndexPart(**p) for p in raw["parts"]]
        raw.setdefault("key_format", INDEX_KEYS_RAW)      # written before keys were folded
    return kind, _KINDS[kind](**raw)


class Schema:
    """An immutable-by-convention snapshot of the catalog at one version."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.tables: dict[str, Table] = {}
        self.indexes: dict[str, Index] = {}
        self.views: dict[str, View] = {}
        self.triggers: dict[str, Trigger] = {}
        self.schemas: dict[str, Namespace] = {}
        self.table_indexes: dict[str, list[Index]] = {}
        self.by_object_id: dict[int, Table] = {}
        # The session whose temp objects schema ``temp`` means (None: nobody's).
        self.owner: str | None = None
        self.has_own_temp = False
        self._temp_owners: set[str] | None = None
        self._owner_views: weakref.WeakValueDictionary[str, Schema] = weakref.WeakValueDictionary()

    def add(self, kind: str, obj: Any) -> None:
        if kind == "table":
            self.tables[obj.key] = obj
            self.by_object_id[obj.object_id] = obj
            self.table_indexes.setdefault(obj.key, [])
        elif kind == "index":
            self.indexes[obj.key] = obj
            self.table_indexes.setdefault(obj.table_key, []).append(obj)
        elif kind == "view":
            self.views[obj.key] = obj
        elif kind == "trigger":
            self.triggers[obj.key] = obj
        elif kind == "schema":
            self.schemas[obj.key] = obj

    # -- temporary objects -------------------------------------------------------------

    def for_owner(self, owner: str | None) -> "Schema":
        """This schema as session ``owner`` sees it (one view per owner, so cached plans keep matching)."""
        if owner is None or owner == self.owner:
            return self
        view = self._owner_views.get(owner)
        if view is None:
            view = copy.copy(self)          # shares the (immutable by convention) object maps
            view.owner = owner
            view.has_own_temp = any(t.owner == owner for t in self.tables.values()) or \
                any(v.owner == owner for v in self.views.values()) or \
                any(t.owner == owner for t in self.triggers.values())
            view._owner_views = weakref.WeakValueDictionary()
            self._owner_views[owner] = view
        return view

    def temp_owners(self) -> set[str]:
        """Tokens of every session that has temp objects in this catalog (computed once per snapshot)."""
        if self._temp_owners is None:
            self._temp_owners = {obj.owner for _kind, obj in self.objects() if obj.schema_name == TEMP and obj.owner}
        return self._temp_owners

    def temp_objects_of(self, owner: str) -> list[tuple[str, Any]]:
        """Every (kind, object) session ``owner`` created in schema temp."""
        return [(kind, obj) for kind, obj in self.objects() if obj.schema_name == TEMP and obj.owner == owner]

    def _key(self, space: str, name: str) -> str:
        return object_key(space, name, self.owner if space == TEMP else None)

    # -- name resolution: every planner goes through these ----------------------------

    def schema_names(self) -> list[str]:
        """``main`` then the created schemas, by name."""
        return [MAIN] + sorted(ns.name for ns in self.schemas.values())

    def has_schema(self, name: str) -> bool:
        return name.lower() in (MAIN, TEMP) or name.lower() in self.schemas

    def resolve_schema(self, qualifier: str | None) -> str:
        """The stored schema name a qualifier (None: unqualified) refers to; unknown ones raise."""
        if qualifier is None:
            return MAIN
        if not self.has_schema(qualifier):
            raise NoSuchObjectError(f"unknown database {qualifier}")
        return canonical_schema(qualifier)

    def lookup(self, space: str, name: str, qualifier: str | None = None) -> Any:
        """The ``space`` object ("tables", "views", "indexes", "triggers") named ``[qualifier.]name``.

        Unqualified names search the session's temp objects, then main, as in
        SQLite; None when there is no such object, also when the schema does
        not exist (SQLite then reports "no such table: x.t"; only statements
        creating an object in it say "unknown database x").
        """
        if qualifier is not None and not self.has_schema(qualifier):
            return None
        objects: dict[str, Any] = getattr(self, space)
        if qualifier is None and self.has_own_temp:
            found = objects.get(self._key(TEMP, name))
            if found is not None:
                return found
        return objects.get(self._key(canonical_schema(qualifier), name))

    def table(self, name: str, qualifier: str | None = None) -> Table:
        t = self.lookup("tables", name, qualifier)
        if t is None:
            raise NoSuchObjectError(f"no such table: {qualifier + '.' if qualifier else ''}{name}")
        return t

    def indexes_of(self, table: Table) -> list[Index]:
        return self.table_indexes.get(table.key, [])

    def triggers_of(self, table: Table) -> list[Trigger]:
        """The triggers that fire on ``table`` for this schema's session: its own
        TEMP triggers on a main table fire, other sessions' do not."""
        return [t for t in self.all_triggers_of(table) if t.owner is None or t.owner == self.owner]

    def all_triggers_of(self, table: Table) -> list[Trigger]:
        """Every session's triggers on ``table`` (dropping the table drops them all)."""
        return [t for t in self.triggers.values() if t.table_key == table.key]

    def objects_in(self, schema_name: str) -> list[tuple[str, Any]]:
        """Every (kind, object) stored in one schema."""
        low = schema_name.lower()
        if low == TEMP:
            return self.temp_objects_of(self.owner) if self.owner else []
        return [(kind, obj) for kind, obj in self.objects() if obj.schema_name.lower() == low]

    def name_taken(self, name: str, schema_name: str = MAIN) -> str | None:
        """The kind of object already using ``name`` in a schema (tables, views, indexes and triggers share it)."""
        key = self._key(canonical_schema(schema_name), name)
        for kind, space in (("table", self.tables), ("view", self.views),
                            ("index", self.indexes), ("trigger", self.triggers)):
            if key in space:
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
