"""Schema statements: CREATE/DROP SCHEMA, TABLE, INDEX, VIEW and TRIGGER, run inside a write transaction.

Each function validates against the current Schema, writes catalog records,
creates or drops LMDB sub-databases, bumps the schema version and records a
DDL entry in the change collector (so replication sees schema changes in
commit order).  CREATE INDEX on a non-empty table builds the index in the
same transaction.

Names may be schema-qualified (``s.t``); ``Schema.lookup`` resolves them and
every new object records the schema it was created in.  An index or trigger
lives in its table's schema, as in SQLite.  Temporary objects (``CREATE TEMP``
or a ``temp.`` name) go to schema ``temp`` and record the creating session as
their owner (see engine/temp_objects.py); their DDL is never recorded for
replication.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from sqlglot import exp

from terndb._cext import _core as C

from .catalog import (
    INDEX_KEYS_FOLDED, MAIN, TEMP, Catalog, Check, Column, ForeignKey, Index, IndexPart, Namespace, Schema, Table, Trigger, View,
    affinity_of_type, canonical_schema,
)
from .errors import NotSupportedError, ObjectExistsError, NoSuchObjectError, ProgrammingError
from .exprcompile import literal_value
from .sqlparse import WithoutRowidProperty, qualifier_of, to_sql, type_name, without_created_qualifier

RESERVED_PREFIX = "sqlite_"


def column_default_constant(col: Column) -> Any:
    """The value of a constant DEFAULT (used for rows written before ADD COLUMN)."""
    if col.default_sql is None:
        return None
    from .sqlparse import parse_one
    try:
        node = parse_one("SELECT " + col.default_sql).expressions[0]
    except Exception:
        return None
    return _constant_value(node)


def table_defaults(table: Table) -> tuple | None:
    """Per-column constant defaults, for rows written before ADD COLUMN (None if all NULL)."""
    vals = tuple(column_default_constant(c) for c in table.columns)
    return vals if any(v is not None for v in vals) else None


def json_column_positions(table: Table) -> tuple[int, ...]:
    """Positions of the columns declared ``JSON`` (any case; SQLAlchemy's JSON type
    emits that name).  Their text values are stored as SQLite JSONB documents,
    recognised per value by their row cell code, so the catalog records nothing
    new and JSON columns of older databases, holding text cells, read unchanged."""
    return tuple(i for i, c in enumerate(table.columns) if c.decl_type.strip().upper() == "JSON")


def _constant_value(node: exp.Expression) -> Any:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal):
        return literal_value(node)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return C.sql_neg(literal_value(node.this))
    return None


def _check_name_free(schema: Schema, name: str, space: str = MAIN) -> None:
    kind = schema.name_taken(name, space)
    if kind is not None:
        raise ObjectExistsError(f"{kind} {name} already exists")
    if name.lower().startswith(RESERVED_PREFIX):
        raise ProgrammingError(f"object name reserved for internal use: {name}")


def _type_text(kind: exp.DataType | None) -> str:
    return type_name(kind) if kind is not None else ""


def build_table(node: exp.Create, sql: str, object_id: int, schema: Schema) -> Table:
    """Turns CREATE TABLE's AST into a catalog Table (validating constraints)."""
    schema_node = node.this
    if not isinstance(schema_node, exp.Schema):
        raise NotSupportedError("CREATE TABLE ... AS SELECT is not supported yet")
    qualifier = qualifier_of(schema_node.this)
    space = created_space(schema, node, qualifier)
    tname = schema_node.this.name
    columns: list[Column] = []
    pk_cols: list[str] = []
    autoinc = False
    checks: list[Check] = []
    fks: list[ForeignKey] = []
    uniques: list[tuple[str | None, list[str]]] = []
    pk_desc = False
    pk_declared = 0
    for item in schema_node.expressions:
        if isinstance(item, exp.ColumnDef):
            col, cpk, cauto, cchecks, cunique, cfk, cdesc = _column_def(item, space)
            if any(c.key == col.key for c in columns):
                raise ProgrammingError(f"duplicate column name: {col.name}")
            columns.append(col)
            if cpk:
                pk_declared += 1
                pk_cols = [col.name]
                pk_desc = cdesc
            autoinc = autoinc or cauto
            checks.extend(cchecks)
            if cunique:
                uniques.append((None, [col.name]))
            if cfk is not None:
                fks.append(cfk)
        elif isinstance(item, exp.Identifier):
            col = Column(item.name, "", affinity_of_type(""))
            if any(c.key == col.key for c in columns):
                raise ProgrammingError(f"duplicate column name: {col.name}")
            columns.append(col)
        else:
            name = None
            parts = [item]
            if isinstance(item, exp.Constraint):
                name = item.this.name
                parts = list(item.expressions)
            for part in parts:
                if isinstance(part, exp.PrimaryKey):
                    pk_declared += 1
                    pk_cols = [_ident_name(e) for e in part.expressions]
                elif isinstance(part, (exp.PrimaryKeyColumnConstraint,)):
                    pk_declared += 1
                    pk_cols = [_ident_name(e) for e in part.expressions] if part.expressions else pk_cols
                elif isinstance(part, exp.UniqueColumnConstraint):
                    target = part.this
                    cols = [_ident_name(e) for e in (target.expressions if target is not None else [])]
                    uniques.append((name, cols))
                elif isinstance(part, exp.CheckColumnConstraint):
                    checks.append(Check(name, to_sql(part.this)))
                elif isinstance(part, exp.ForeignKey):
                    fks.append(_foreign_key(part, name, space))
                else:
                    raise NotSupportedError(f"unsupported table constraint: {part.sql(dialect='sqlite')[:60]}")
    if pk_declared > 1:
        raise ProgrammingError(f'table "{tname}" has more than one primary key')
    if not columns:
        raise ProgrammingError("a table needs at least one column")
    if all(c.generated for c in columns):
        raise ProgrammingError("must have at least one non-generated column")
    table = Table(tname, object_id, columns, sql=stored_create_text(sql), checks=checks, foreign_keys=fks,
                  temporary=space == TEMP, schema_name=space, owner=_owner_in(schema, space))
    table.dynamic, table.index_attributes = _table_options(node)
    for name in pk_cols:
        table.pk.append(table.column_index(name))
    if any(table.columns[i].generated for i in table.pk):
        raise ProgrammingError("generated columns cannot be part of the PRIMARY KEY")
    if len(table.pk) == 1:
        c = table.columns[table.pk[0]]
        # SQLite: only a column declared exactly "INTEGER" (any case) aliases the rowid.
        if c.decl_type.upper() == "INTEGER" and not pk_desc:
            table.rowid_alias = table.pk[0]
    if _without_rowid(node):
        _make_without_rowid(table, autoinc)
    if autoinc:
        if table.rowid_alias is None:
            raise ProgrammingError("AUTOINCREMENT is only allowed on an INTEGER PRIMARY KEY")
        table.autoincrement = True
    table._pending_uniques = uniques  # type: ignore[attr-defined]
    for ck in checks:
        _validate_check(ck.sql, table)
    generation_order(table)
    return table


def created_space(schema: Schema, node: exp.Create, qualifier: str | None) -> str:
    """The schema a CREATE puts its object in: temp for CREATE TEMP, else the qualifier's (main if none)."""
    if _is_temp(node, qualifier):
        if qualifier is not None and qualifier.lower() != TEMP:
            raise ProgrammingError("temporary table name must be unqualified")
        return TEMP
    return schema.resolve_schema(qualifier)


_TEMP_WORD = re.compile(r"^(\s*CREATE\s+)(?:TEMP|TEMPORARY)\s+", re.I)


def stored_create_text(sql: str) -> str:
    """CREATE text as SQLite keeps it in sqlite_master: no schema qualifier, no TEMP keyword."""
    return without_created_qualifier(_TEMP_WORD.sub(r"\1", sql, count=1))


def _owner_in(schema: Schema, space: str) -> str | None:
    """The owner a new object in ``space`` records: the creating session for temp objects."""
    if space != TEMP:
        return None
    if schema.owner is None:
        raise ProgrammingError("temporary objects need a connection to own them")
    return schema.owner


def _without_rowid(node: exp.Create) -> bool:
    props = node.args.get("properties")
    return props is not None and any(isinstance(p, WithoutRowidProperty) for p in props.expressions)


def _make_without_rowid(table: Table, autoinc: bool) -> None:
    """SQLite's rules for WITHOUT ROWID: a PRIMARY KEY is required, AUTOINCREMENT
    is refused, the key columns are NOT NULL and an INTEGER key is no rowid alias."""
    if autoinc:
        raise ProgrammingError("AUTOINCREMENT not allowed on WITHOUT ROWID tables")
    if not table.pk:
        raise ProgrammingError(f"PRIMARY KEY missing on table {table.name}")
    table.without_rowid = True
    table.rowid_alias = None
    for i in table.pk:
        table.columns[i].notnull = True


def _is_temp(node: exp.Create, qualifier: str | None = None) -> bool:
    """CREATE TEMP ... or an object named ``temp.x``."""
    if qualifier is not None and qualifier.lower() == TEMP:
        return True
    props = node.args.get("properties")
    if props is None:
        return False
    return any(isinstance(p, exp.TemporaryProperty) for p in props.expressions)


# terndb's CREATE TABLE options, ``WITH (name = value, ...)``; see engine/documents.py.
TABLE_OPTIONS = ("dynamic", "index_attributes")
_TRUE_WORDS = {"true": True, "on": True, "yes": True, "1": True,
               "false": False, "off": False, "no": False, "0": False}


def _table_options(node: exp.Create) -> tuple[bool, bool]:
    """(dynamic, index_attributes) from ``WITH (dynamic = true, index_attributes = false)``.

    ``index_attributes`` defaults to true on a dynamic table and is refused on
    any other (it only governs the columns that documents add).
    """
    props = node.args.get("properties")
    given: dict[str, bool] = {}
    for prop in props.expressions if props is not None else []:
        if type(prop) is not exp.Property:     # TEMPORARY & co. are Property subclasses
            continue
        name = prop.name.lower()
        if name not in TABLE_OPTIONS:
            raise ProgrammingError(f"unknown table option: {prop.name} (terndb knows {', '.join(TABLE_OPTIONS)})")
        given[name] = _option_bool(name, prop.args.get("value"))
    dynamic = given.get("dynamic", False)
    if "index_attributes" in given and not dynamic:
        raise ProgrammingError("table option index_attributes needs dynamic = true")
    return dynamic, given.get("index_attributes", dynamic)


def _option_bool(name: str, value: exp.Expression | None) -> bool:
    if isinstance(value, exp.Boolean):
        return bool(value.this)
    text = value.name.lower() if value is not None else ""
    if text not in _TRUE_WORDS:
        shown = value.sql(dialect="sqlite") if value is not None else ""
        raise ProgrammingError(f"table option {name} takes true or false, not {shown}")
    return _TRUE_WORDS[text]


def _validate_check(sql: str, table: Table) -> None:
    from .exprcompile import ExprCompiler, Scope, Source
    from .params import ParamSpec
    from .sqlparse import parse_one
    node = parse_one("SELECT " + sql).expressions[0]
    src = Source(table.key, [c.key for c in table.columns], [c.affinity for c in table.columns], 0,
                 len(table.columns), rowid_hidden=table.without_rowid)
    ExprCompiler(Scope([src]), ParamSpec.EMPTY).compile(node)


def _ident_name(e: exp.Expression) -> str:
    if isinstance(e, exp.Ordered):
        e = e.this
    if isinstance(e, (exp.Identifier, exp.Column)):
        return e.name
    raise NotSupportedError(f"expressions are not allowed here: {e.sql(dialect='sqlite')}")


def _reference_actions(ref: exp.Expression | None) -> tuple[str | None, str | None]:
    """(ON DELETE action, ON UPDATE action) of a REFERENCES clause."""
    on_delete = on_update = None
    for opt in (ref.args.get("options") or []) if ref is not None else []:
        text = opt if isinstance(opt, str) else opt.sql(dialect="sqlite")
        upper = text.upper().strip()
        if upper.startswith("ON DELETE "):
            on_delete = upper[len("ON DELETE "):]
        elif upper.startswith("ON UPDATE "):
            on_update = upper[len("ON UPDATE "):]
    return on_delete, on_update


def _reference_target(ref: exp.Expression | None, space: str) -> tuple[str, list[str], str | None]:
    """(table, columns, schema) a REFERENCES clause names; the schema is None for main.

    An unqualified target lives in the referencing table's own schema (SQLite's rule).
    """
    target = ref.this if ref is not None else None
    columns: list[str] = []
    if isinstance(target, exp.Schema):
        columns = [e.name for e in target.expressions]
        target = target.this
    if target is None:
        return "", columns, None
    ref_space = canonical_schema(qualifier_of(target) or space)
    return target.name, columns, (None if ref_space == MAIN else ref_space)


def _foreign_key(node: exp.ForeignKey, name: str | None, space: str) -> ForeignKey:
    ref = node.args.get("reference")
    ref_table, ref_cols, ref_schema = _reference_target(ref, space)
    on_delete, on_update = _reference_actions(ref)
    return ForeignKey(name, [e.name for e in node.expressions], ref_table, ref_cols, on_delete, on_update,
                      ref_schema)


def _column_def(item: exp.ColumnDef, space: str = MAIN):
    name = item.name
    decl = _type_text(item.args.get("kind"))
    col = Column(name, decl, affinity_of_type(decl))
    is_pk = autoinc = unique = desc = False
    checks: list[Check] = []
    fk = None
    for cc in item.args.get("constraints") or []:
        kind = cc.args.get("kind")
        cname = cc.this.name if cc.this is not None and hasattr(cc.this, "name") else None
        if isinstance(kind, exp.PrimaryKeyColumnConstraint):
            is_pk = True
            desc = bool(kind.args.get("desc"))
        elif isinstance(kind, exp.AutoIncrementColumnConstraint):
            autoinc = True
        elif isinstance(kind, exp.NotNullColumnConstraint):
            if not kind.args.get("allow_null"):
                col.notnull = True
        elif isinstance(kind, exp.DefaultColumnConstraint):
            default = kind.this
            if isinstance(default, exp.Collate):
                # sqlglot reads "DEFAULT 'x' COLLATE NOCASE" as a collated default;
                # in SQLite the COLLATE belongs to the column.
                col.collation = _collation_name(default.expression)
                default = default.this
            col.default_sql = to_sql(default)
        elif isinstance(kind, exp.UniqueColumnConstraint):
            unique = True
        elif isinstance(kind, exp.CheckColumnConstraint):
            checks.append(Check(cname, to_sql(kind.this)))
        elif isinstance(kind, exp.CollateColumnConstraint):
            col.collation = _collation_name(kind.this)
        elif isinstance(kind, exp.Reference):
            ref_table, ref_cols, ref_schema = _reference_target(kind, space)
            on_delete, on_update = _reference_actions(kind)
            fk = ForeignKey(cname, [name], ref_table, ref_cols, on_delete, on_update, ref_schema)
        elif isinstance(kind, exp.ComputedColumnConstraint):
            col.generated_sql = to_sql(_generated_expression(kind.this, col))
            col.generated_stored = bool(kind.args.get("persisted"))
        elif isinstance(kind, exp.NotForReplicationColumnConstraint):
            pass
        elif kind is None:
            continue
        else:
            raise NotSupportedError(f"unsupported column constraint: {cc.sql(dialect='sqlite')[:60]}")
    if col.generated:
        if col.default_sql is not None:
            raise ProgrammingError("cannot use DEFAULT on a generated column")
        if is_pk:
            raise ProgrammingError("generated columns cannot be part of the PRIMARY KEY")
    return col, is_pk, autoinc, checks, unique, fk, desc


def _generated_expression(node: exp.Expression, col: Column) -> exp.Expression:
    """The expression of ``AS ( expr )``, undoing sqlglot's reading of a trailing NOT NULL.

    sqlglot 30 keeps the parentheses of the short form ``AS ( expr )`` in
    the tree and then reads ``AS (a) NOT NULL`` as the expression
    ``NOT (a) IS NULL``.  (``GENERATED ALWAYS AS ((a) NOT NULL)``, the one
    spelling this also catches, would be a constant-true column.)
    """
    if isinstance(node, exp.Not) and isinstance(node.this, exp.Is) and isinstance(node.this.expression, exp.Null) \
            and isinstance(node.this.this, exp.Paren):
        col.notnull = True
        node = node.this.this
    return _unparen(node)


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


# Date and time functions are non-deterministic only when they read the clock
# ('now', no argument); SQLite accepts them in generated columns.
_CLOCK_FUNCTIONS = frozenset({"date", "time", "datetime", "julianday", "unixepoch", "strftime"})


def _refuse_volatile(node: exp.Expression) -> None:
    """SQLite's rules: no sub-selects and no non-deterministic functions in a generated column."""
    from .exprcompile import CONTEXT_FUNCTIONS
    if node.find(exp.Select) is not None:
        raise ProgrammingError("subqueries prohibited in generated columns")
    for call in node.find_all(exp.Anonymous, exp.Rand):
        name = "random" if isinstance(call, exp.Rand) else call.name.lower()
        fn = C.SCALAR_FUNCTIONS.get(name)
        volatile = name in CONTEXT_FUNCTIONS or (fn is not None and not fn.deterministic)
        if volatile and name not in _CLOCK_FUNCTIONS:
            raise ProgrammingError("non-deterministic functions prohibited in generated columns")


def generation_order(table: Table) -> list[int]:
    """Positions of the generated columns, each after the generated columns it reads.

    Validates the expressions against the table (unknown columns, functions)
    and rejects a loop of generated columns reading each other.
    """
    from .sqlparse import parse_one
    reads: dict[int, set[int]] = {}
    for pos, col in enumerate(table.columns):
        if not col.generated:
            continue
        node = parse_one("SELECT " + col.generated_sql).expressions[0]
        _refuse_volatile(node)
        _validate_check(col.generated_sql, table)
        names = {c.name.lower() for c in node.find_all(exp.Column)}
        reads[pos] = {p for p, c in enumerate(table.columns) if c.key in names and c.generated}
    order: list[int] = []
    state: dict[int, int] = {}        # 1: being visited, 2: placed

    def visit(pos: int) -> None:
        if state.get(pos) == 2:
            return
        if state.get(pos) == 1:
            raise ProgrammingError(f'generated column loop on "{table.columns[pos].name}"')
        state[pos] = 1
        for dep in sorted(reads[pos]):
            visit(dep)
        state[pos] = 2
        order.append(pos)

    for pos in sorted(reads):
        visit(pos)
    return order


def _collation_name(node: Any) -> str:
    coll = (node.name if hasattr(node, "name") and node.name else str(node)).lower()
    if coll not in ("binary", "nocase", "rtrim"):
        raise ProgrammingError(f"no such collation sequence: {coll}")
    return coll


# DROP kind -> (catalog space, word in "no such ...", the space holding the other kind
# of relation and its DROP keyword, for SQLite's "use DROP VIEW to delete view v").
_DROP_SPACES: dict[str, tuple[str, str, str | None, str | None]] = {
    "TABLE": ("tables", "table", "views", "VIEW"),
    "VIEW": ("views", "view", "tables", "TABLE"),
    "INDEX": ("indexes", "index", None, None),
    "TRIGGER": ("triggers", "trigger", None, None),
}


def _drop_target(schema: Schema, kind: str, name: str, qualifier: str | None, if_exists: bool) -> Any:
    """The object a DROP names; None for IF EXISTS with nothing there; else SQLite's error."""
    space, label, other_space, other_kind = _DROP_SPACES[kind]
    found = schema.lookup(space, name, qualifier)
    if found is not None or if_exists:
        return found
    if other_space is not None and schema.lookup(other_space, name, qualifier) is not None:
        raise ProgrammingError(f"use DROP {other_kind} to delete {other_kind.lower()} {name}")
    raise NoSuchObjectError(f"no such {label}: {_qualified(qualifier, name)}")


class DDLExecutor:
    """Runs schema statements; ``session`` supplies the write transaction and change capture."""

    def __init__(self, store: Any, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog

    def _record(self, session: Any, payload: dict) -> None:
        # Temp objects are private to their connection: never replicated.
        if session.changes is not None and payload.get("schema") != TEMP:
            session.changes.ddl(json.dumps(payload, separators=(",", ":")).encode())

    def create_table(self, session: Any, txn: Any, schema: Schema, node: exp.Create, sql: str) -> None:
        schema_node = node.this
        tnode = schema_node.this if isinstance(schema_node, exp.Schema) else schema_node
        space = created_space(schema, node, qualifier_of(tnode))
        if schema.name_taken(tnode.name, space) and node.args.get("exists"):
            return
        _check_name_free(schema, tnode.name, space)
        table = build_table(node, sql, self.catalog.next_object_id(txn), schema)
        uniques = table._pending_uniques  # type: ignore[attr-defined]
        del table._pending_uniques  # type: ignore[attr-defined]
        self.store.db(table.db_name, txn=txn, create=True)
        self.catalog.put(txn, "table", table)
        if space == TEMP:
            session.temp_table_ids.add(table.object_id)   # its rows stay out of the binlog
            session.made_temp_objects = True
        auto_n = 0
        if table.pk and table.rowid_alias is None:
            auto_n += 1
            self._auto_index(txn, table, f"sqlite_autoindex_{table.name}_{auto_n}", [table.columns[i].name for i in table.pk], "pk")
        seen = set()
        for cname, cols in uniques:
            key = tuple(c.lower() for c in cols)
            if key in seen or (table.pk and key == tuple(table.columns[i].key for i in table.pk)):
                continue
            seen.add(key)
            auto_n += 1
            self._auto_index(txn, table, cname or f"sqlite_autoindex_{table.name}_{auto_n}", cols, "u")
        self.catalog.bump_version(txn)
        self._record(session, {"op": "create_table", "name": table.name, "sql": sql, **_schema_field(space)})

    def _auto_index(self, txn: Any, table: Table, name: str, cols: list[str], origin: str) -> None:
        parts = [IndexPart(table.column_index(c)) for c in cols]
        ix = Index(name, table.name, self.catalog.next_object_id(txn), parts, unique=True, origin=origin,
                   schema_name=table.schema_name, owner=table.owner)
        self.store.db(ix.db_name, txn=txn, create=True)
        self.catalog.put(txn, "index", ix)

    def create_index(self, session: Any, txn: Any, schema: Schema, node: exp.Create, sql: str,
                     build: Any) -> None:
        inode = node.this
        name = inode.name
        table_node = inode.args.get("table")
        # SQLite's form: CREATE INDEX s.ix ON t(...), with t in schema s.
        qualifier = qualifier_of(inode) or qualifier_of(table_node)
        schema.resolve_schema(qualifier)          # "unknown database" before "no such table"
        table = schema.table(table_node.name, qualifier)
        if schema.name_taken(name, table.schema_name) and node.args.get("exists"):
            return
        _check_name_free(schema, name, table.schema_name)
        params = inode.args.get("params")
        parts = []
        for col in params.args.get("columns") or []:
            desc = isinstance(col, exp.Ordered) and bool(col.args.get("desc"))
            target = col.this if isinstance(col, exp.Ordered) else col
            coll = None
            if isinstance(target, exp.Collate):
                coll = target.expression.name.lower()
                target = target.this
            if isinstance(target, (exp.Column, exp.Identifier)):
                parts.append(IndexPart(table.column_index(target.name), None, desc, coll))
            else:
                parts.append(IndexPart(None, to_sql(target), desc, coll))
        where = params.args.get("where")
        ix = Index(name, table.name, self.catalog.next_object_id(txn), parts,
                   unique=bool(node.args.get("unique")), origin="c", sql=without_created_qualifier(sql),
                   where_sql=to_sql(where.this) if where is not None else None,
                   schema_name=table.schema_name, owner=table.owner)
        if ix.where_sql is not None:
            raise NotSupportedError("partial indexes are not supported yet")
        self.store.db(ix.db_name, txn=txn, create=True)
        self.catalog.put(txn, "index", ix)
        self.catalog.bump_version(txn)
        build(table, ix)
        self._record(session, {"op": "create_index", "name": ix.name, "sql": sql,
                               **_schema_field(ix.schema_name)})

    def create_view(self, session: Any, txn: Any, schema: Schema, node: exp.Create, sql: str) -> None:
        target = node.this
        tnode = target.this if isinstance(target, exp.Schema) else target
        name = tnode.name
        qualifier = qualifier_of(tnode)
        space = created_space(schema, node, qualifier)
        columns = [e.name for e in target.expressions] if isinstance(target, exp.Schema) else None
        if schema.name_taken(name, space) and node.args.get("exists"):
            return
        _check_name_free(schema, name, space)
        select = node.expression
        view = View(name, stored_create_text(sql), to_sql(select), columns, temporary=space == TEMP,
                    schema_name=space, owner=_owner_in(schema, space))
        if space == TEMP:
            session.made_temp_objects = True
        self.catalog.put(txn, "view", view)
        self.catalog.bump_version(txn)
        self._record(session, {"op": "create_view", "name": name, "sql": sql, **_schema_field(space)})

    def create_trigger(self, session: Any, txn: Any, schema: Schema, defn: Any) -> None:
        from .triggers import check_trigger_target
        schema.resolve_schema(defn.qualifier)            # "unknown database" before anything else
        if defn.temporary and defn.qualifier is not None:
            raise ProgrammingError("temporary trigger may not have qualified name")
        target = check_trigger_target(schema, defn)      # a table, or a view for INSTEAD OF
        # A trigger lives in its table's schema; a TEMP one in temp, whatever its
        # table's (it fires for the creating connection only: Schema.triggers_of).
        space = TEMP if defn.temporary else target.schema_name
        if schema.lookup("triggers", defn.name, space) is not None:
            if defn.if_not_exists:
                return
            raise ObjectExistsError(f"trigger {defn.name} already exists")
        if defn.name.lower().startswith(RESERVED_PREFIX):
            raise ProgrammingError(f"object name reserved for internal use: {defn.name}")
        table_schema = target.schema_name if space != target.schema_name else None
        if space == TEMP:
            session.made_temp_objects = True
        self.catalog.put(txn, "trigger", Trigger(defn.name, target.name, stored_create_text(defn.sql),
                                                 schema_name=space, owner=_owner_in(schema, space),
                                                 table_schema=table_schema))
        self.catalog.bump_version(txn)
        self._record(session, {"op": "create_trigger", "name": defn.name, "sql": defn.sql,
                               **_schema_field(space)})

    def create_schema(self, session: Any, txn: Any, schema: Schema, node: exp.Create) -> None:
        name = node.this.args["db"].name
        if schema.has_schema(name):
            if node.args.get("exists"):
                return
            raise ObjectExistsError(f"schema {name} already exists")
        if name.lower().startswith(RESERVED_PREFIX):
            raise ProgrammingError(f"object name reserved for internal use: {name}")
        self.catalog.put(txn, "schema", Namespace(name))
        self.catalog.bump_version(txn)
        self._record(session, {"op": "create_schema", "name": name})

    def drop(self, session: Any, txn: Any, schema: Schema, node: exp.Drop) -> None:
        kind = (node.args.get("kind") or "").upper()
        targets = node.args.get("tables") or ([node.this] if node.this is not None else [])
        for tnode in targets:
            if kind == "SCHEMA":
                name = tnode.args["db"].name
                if not self._drop_schema(txn, schema, name, bool(node.args.get("exists")),
                                         bool(node.args.get("cascade"))):
                    continue
                self.catalog.bump_version(txn)
                self._record(session, {"op": "drop", "kind": "schema", "name": name})
                continue
            if kind not in _DROP_SPACES:
                raise NotSupportedError(f"DROP {kind} is not supported")
            name = tnode.name
            found = _drop_target(schema, kind, name, qualifier_of(tnode), bool(node.args.get("exists")))
            if found is None:
                continue
            if kind == "TABLE":
                self.drop_table_objects(txn, schema, found)
            elif kind == "INDEX":
                if found.origin != "c":
                    raise ProgrammingError("index associated with UNIQUE or PRIMARY KEY constraint cannot be dropped")
                self.store.drop_db(txn, found.db_name)
                self.catalog.delete(txn, "index", found.key)
            elif kind == "TRIGGER":
                self.catalog.delete(txn, "trigger", found.key)
            else:
                for trig in schema.all_triggers_of(found):
                    self.catalog.delete(txn, "trigger", trig.key)      # its INSTEAD OF triggers go with it
                self.catalog.delete(txn, "view", found.key)
            self.catalog.bump_version(txn)
            self._record(session, {"op": "drop", "kind": kind.lower(), "name": name,
                                   **_schema_field(found.schema_name)})

    def reindex(self, txn: Any, schema: Schema, target: "Reindex", build: Any) -> None:
        """REINDEX: rebuilds the named indexes from their tables' rows, in the current key format.

        Each index gets fresh storage (a new object id) and is filled by
        ``build`` like CREATE INDEX fills a new one, so an index written before
        collated key parts were folded (engine/collation.py) becomes a folded one.
        Not replicated: index storage is each node's own affair.
        """
        rebuilt = []
        for old in _reindex_targets(schema, target):
            ix = replace(old, object_id=self.catalog.next_object_id(txn), key_format=INDEX_KEYS_FOLDED)
            self.store.db(ix.db_name, txn=txn, create=True)
            self.catalog.put(txn, "index", ix)
            rebuilt.append((old, ix))
        if not rebuilt:
            return
        self.catalog.bump_version(txn)
        for old, ix in rebuilt:
            build(schema.tables[ix.table_key], ix)
            self.store.drop_db(txn, old.db_name)

    def drop_table_objects(self, txn: Any, schema: Schema, table: Table) -> None:
        """Drops a table's rows, indexes and triggers and its catalog record."""
        for ix in schema.indexes_of(table):
            self.store.drop_db(txn, ix.db_name)
            self.catalog.delete(txn, "index", ix.key)
        for trig in schema.all_triggers_of(table):
            self.catalog.delete(txn, "trigger", trig.key)
        self.store.drop_db(txn, table.db_name)
        self.catalog.delete(txn, "table", table.key)

    def _drop_schema(self, txn: Any, schema: Schema, name: str, if_exists: bool, cascade: bool) -> bool:
        """DROP SCHEMA: False when IF EXISTS found nothing; RESTRICT (the default) refuses a non-empty one."""
        low = name.lower()
        if low in (MAIN, TEMP):
            raise ProgrammingError(f"cannot drop schema {name}")
        if low not in schema.schemas:
            if if_exists:
                return False
            raise NoSuchObjectError(f"unknown database {name}")
        contents = schema.objects_in(low)
        if contents and not cascade:
            kinds = ", ".join(sorted({f"{kind} {obj.name}" for kind, obj in contents})[:5])
            raise ProgrammingError(f"cannot drop schema {name} because other objects depend on it ({kinds}); "
                                 "use DROP SCHEMA ... CASCADE")
        for kind, obj in contents:
            if kind == "table":
                self.drop_table_objects(txn, schema, obj)
            elif kind == "view":
                self.catalog.delete(txn, "view", obj.key)
        self.catalog.delete(txn, "schema", low)
        return True


def _qualified(qualifier: str | None, name: str) -> str:
    return f"{qualifier}.{name}" if qualifier else name


def _schema_field(space: str) -> dict[str, str]:
    """The change-log field naming a DDL statement's schema (absent for main, as before schemas)."""
    return {} if space == MAIN else {"schema": space}


@dataclass
class Reindex:
    """A parsed REINDEX: no name (every index), a collation name, or [schema.]table-or-index."""
    name: str | None = None
    qualifier: str | None = None


_REINDEX = re.compile(r"\s*REINDEX\b\s*(?P<rest>.*?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)


def parse_reindex(text: str) -> Reindex:
    """``REINDEX [collation-name | [schema.]table-or-index]`` (SQLite's grammar)."""
    rest = _REINDEX.match(text).group("rest")      # type: ignore[union-attr]  # the caller saw REINDEX
    if not rest:
        return Reindex()
    from .sqlparse import parse_one
    try:
        node = parse_one("SELECT 1 FROM " + rest).args["from_"].this
    except Exception as exc:
        raise ProgrammingError(f'near "{rest}": syntax error') from exc
    if not isinstance(node, exp.Table) or node.args.get("catalog") is not None:
        raise ProgrammingError(f'near "{rest}": syntax error')
    return Reindex(node.name, qualifier_of(node))


def _reindex_targets(schema: Schema, target: Reindex) -> list[Index]:
    """The indexes a REINDEX names, resolved as SQLite does: a collation, then a table, then an index."""
    from .collation import COLLATIONS, index_part_collation
    visible = [ix for ix in schema.indexes.values() if ix.owner is None or ix.owner == schema.owner]
    if target.name is None:
        return visible
    if target.qualifier is None and target.name.lower() in COLLATIONS:
        code = COLLATIONS[target.name.lower()]
        return [ix for ix in visible
                if any(index_part_collation(schema.tables[ix.table_key], p) == code for p in ix.parts)]
    schema.resolve_schema(target.qualifier)
    table = schema.lookup("tables", target.name, target.qualifier)
    if table is not None:
        return list(schema.indexes_of(table))
    ix = schema.lookup("indexes", target.name, target.qualifier)
    if ix is not None:
        return [ix]
    raise NoSuchObjectError("unable to identify the object to be reindexed")
