"""Schema statements: CREATE/DROP TABLE, INDEX and VIEW, run inside a write transaction.

Each function validates against the current Schema, writes catalog records,
creates or drops LMDB sub-databases, bumps the schema version and records a
DDL entry in the change collector (so replication sees schema changes in
commit order).  CREATE INDEX on a non-empty table builds the index in the
same transaction.
"""
from __future__ import annotations

import json
from typing import Any

from sqlglot import exp

from terndb._cext import _core as C

from .catalog import (
    Catalog, Check, Column, ForeignKey, Index, IndexPart, Schema, Table, Trigger, View,
    affinity_of_type,
)
from .errors import NotSupportedError, ObjectExistsError, NoSuchObjectError, ProgrammingError
from .exprcompile import literal_value
from .sqlparse import reject_schema_qualifier, to_sql, type_name

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


def _check_name_free(schema: Schema, name: str) -> None:
    kind = schema.name_taken(name)
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
    reject_schema_qualifier(schema_node.this)
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
            col, cpk, cauto, cchecks, cunique, cfk, cdesc = _column_def(item)
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
                    fks.append(_foreign_key(part, name))
                else:
                    raise NotSupportedError(f"unsupported table constraint: {part.sql(dialect='sqlite')[:60]}")
    if pk_declared > 1:
        raise ProgrammingError(f'table "{tname}" has more than one primary key')
    if not columns:
        raise ProgrammingError("a table needs at least one column")
    table = Table(tname, object_id, columns, sql=sql, checks=checks, foreign_keys=fks,
                  temporary=bool(node.args.get("temporary")) or _is_temp(node))
    for name in pk_cols:
        table.pk.append(table.column_index(name))
    if len(table.pk) == 1:
        c = table.columns[table.pk[0]]
        # SQLite: only a column declared exactly "INTEGER" (any case) aliases the rowid.
        if c.decl_type.upper() == "INTEGER" and not pk_desc:
            table.rowid_alias = table.pk[0]
    if autoinc:
        if table.rowid_alias is None:
            raise ProgrammingError("AUTOINCREMENT is only allowed on an INTEGER PRIMARY KEY")
        table.autoincrement = True
    table._pending_uniques = uniques  # type: ignore[attr-defined]
    for ck in checks:
        _validate_check(ck.sql, table)
    return table


def _is_temp(node: exp.Create) -> bool:
    props = node.args.get("properties")
    if props is None:
        return False
    return any(isinstance(p, exp.TemporaryProperty) for p in props.expressions)


def _validate_check(sql: str, table: Table) -> None:
    from .exprcompile import ExprCompiler, Scope, Source
    from .params import ParamSpec
    from .sqlparse import parse_one
    node = parse_one("SELECT " + sql).expressions[0]
    src = Source(table.key, [c.key for c in table.columns], [c.affinity for c in table.columns], 0,
                 len(table.columns))
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


def _reference_target(ref: exp.Expression | None) -> tuple[str, list[str]]:
    ref_schema = ref.this if ref is not None else None
    if isinstance(ref_schema, exp.Schema):
        return ref_schema.this.name, [e.name for e in ref_schema.expressions]
    return (ref_schema.name if ref_schema is not None else ""), []


def _foreign_key(node: exp.ForeignKey, name: str | None) -> ForeignKey:
    ref = node.args.get("reference")
    ref_table, ref_cols = _reference_target(ref)
    on_delete, on_update = _reference_actions(ref)
    return ForeignKey(name, [e.name for e in node.expressions], ref_table, ref_cols, on_delete, on_update)


def _column_def(item: exp.ColumnDef):
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
            ref_table, ref_cols = _reference_target(kind)
            on_delete, on_update = _reference_actions(kind)
            fk = ForeignKey(cname, [name], ref_table, ref_cols, on_delete, on_update)
        elif isinstance(kind, exp.NotForReplicationColumnConstraint):
            pass
        elif kind is None:
            continue
        else:
            raise NotSupportedError(f"unsupported column constraint: {cc.sql(dialect='sqlite')[:60]}")
    return col, is_pk, autoinc, checks, unique, fk, desc


def _collation_name(node: Any) -> str:
    coll = (node.name if hasattr(node, "name") and node.name else str(node)).lower()
    if coll not in ("binary", "nocase", "rtrim"):
        raise ProgrammingError(f"no such collation sequence: {coll}")
    return coll


class DDLExecutor:
    """Runs schema statements; ``session`` supplies the write transaction and change capture."""

    def __init__(self, store: Any, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog

    def _record(self, session: Any, payload: dict) -> None:
        if session.changes is not None:
            session.changes.ddl(json.dumps(payload, separators=(",", ":")).encode())

    def create_table(self, session: Any, txn: Any, schema: Schema, node: exp.Create, sql: str) -> None:
        schema_node = node.this
        name = schema_node.this.name if isinstance(schema_node, exp.Schema) else schema_node.name
        if schema.name_taken(name):
            if node.args.get("exists"):
                return
            _check_name_free(schema, name)
        _check_name_free(schema, name)
        table = build_table(node, sql, self.catalog.next_object_id(txn), schema)
        uniques = table._pending_uniques  # type: ignore[attr-defined]
        del table._pending_uniques  # type: ignore[attr-defined]
        self.store.db(table.db_name, txn=txn, create=True)
        self.catalog.put(txn, "table", table)
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
        self._record(session, {"op": "create_table", "name": table.name, "sql": sql})

    def _auto_index(self, txn: Any, table: Table, name: str, cols: list[str], origin: str) -> None:
        parts = [IndexPart(table.column_index(c)) for c in cols]
        ix = Index(name, table.name, self.catalog.next_object_id(txn), parts, unique=True, origin=origin)
        self.store.db(ix.db_name, txn=txn, create=True)
        self.catalog.put(txn, "index", ix)

    def create_index(self, session: Any, txn: Any, schema: Schema, node: exp.Create, sql: str,
                     build: Any) -> None:
        inode = node.this
        name = inode.name
        if schema.name_taken(name):
            if node.args.get("exists"):
                return
        _check_name_free(schema, name)
        table_node = inode.args.get("table")
        table = schema.table(table_node.name)
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
                   unique=bool(node.args.get("unique")), origin="c", sql=sql,
                   where_sql=to_sql(where.this) if where is not None else None)
        if ix.where_sql is not None:
            raise NotSupportedError("partial indexes are not supported yet")
        self.store.db(ix.db_name, txn=txn, create=True)
        self.catalog.put(txn, "index", ix)
        self.catalog.bump_version(txn)
        build(table, ix)
        self._record(session, {"op": "create_index", "name": ix.name, "sql": sql})

    def create_view(self, session: Any, txn: Any, schema: Schema, node: exp.Create, sql: str) -> None:
        target = node.this
        name = target.name if not isinstance(target, exp.Schema) else target.this.name
        columns = [e.name for e in target.expressions] if isinstance(target, exp.Schema) else None
        if schema.name_taken(name):
            if node.args.get("exists"):
                return
        _check_name_free(schema, name)
        select = node.expression
        view = View(name, sql, to_sql(select), columns, temporary=_is_temp(node))
        self.catalog.put(txn, "view", view)
        self.catalog.bump_version(txn)
        self._record(session, {"op": "create_view", "name": name, "sql": sql})

    def create_trigger(self, session: Any, txn: Any, schema: Schema, defn: Any) -> None:
        from .triggers import check_trigger_target
        if defn.name.lower() in schema.triggers:
            if defn.if_not_exists:
                return
            raise ObjectExistsError(f"trigger {defn.name} already exists")
        if defn.name.lower().startswith(RESERVED_PREFIX):
            raise ProgrammingError(f"object name reserved for internal use: {defn.name}")
        check_trigger_target(schema, defn)
        low = defn.table.lower()
        target = schema.tables.get(low) or schema.views[low]     # INSTEAD OF triggers sit on views
        self.catalog.put(txn, "trigger", Trigger(defn.name, target.name, defn.sql))
        self.catalog.bump_version(txn)
        self._record(session, {"op": "create_trigger", "name": defn.name, "sql": defn.sql})

    def drop(self, session: Any, txn: Any, schema: Schema, node: exp.Drop) -> None:
        kind = (node.args.get("kind") or "").upper()
        targets = node.args.get("tables") or ([node.this] if node.this is not None else [])
        for tnode in targets:
            reject_schema_qualifier(tnode)
            name = tnode.name
            low = name.lower()
            if kind == "TABLE":
                table = schema.tables.get(low)
                if table is None:
                    if node.args.get("exists"):
                        continue
                    if low in schema.views:
                        raise ProgrammingError(f"use DROP VIEW to delete view {name}")
                    raise NoSuchObjectError(f"no such table: {name}")
                for ix in schema.indexes_of(table):
                    self.store.drop_db(txn, ix.db_name)
                    self.catalog.delete(txn, "index", ix.key)
                for trig in [t for t in schema.triggers.values() if t.table.lower() == low]:
                    self.catalog.delete(txn, "trigger", trig.key)
                self.store.drop_db(txn, table.db_name)
                self.catalog.delete(txn, "table", low)
            elif kind == "INDEX":
                ix = schema.indexes.get(low)
                if ix is None:
                    if node.args.get("exists"):
                        continue
                    raise NoSuchObjectError(f"no such index: {name}")
                if ix.origin != "c":
                    raise ProgrammingError("index associated with UNIQUE or PRIMARY KEY constraint cannot be dropped")
                self.store.drop_db(txn, ix.db_name)
                self.catalog.delete(txn, "index", low)
            elif kind == "TRIGGER":
                if low not in schema.triggers:
                    if node.args.get("exists"):
                        continue
                    raise NoSuchObjectError(f"no such trigger: {name}")
                self.catalog.delete(txn, "trigger", low)
            elif kind == "VIEW":
                if low not in schema.views:
                    if node.args.get("exists"):
                        continue
                    if low in schema.tables:
                        raise ProgrammingError(f"use DROP TABLE to delete table {name}")
                    raise NoSuchObjectError(f"no such view: {name}")
                for trig in [t for t in schema.triggers.values() if t.table.lower() == low]:
                    self.catalog.delete(txn, "trigger", trig.key)      # its INSTEAD OF triggers go with it
                self.catalog.delete(txn, "view", low)
            else:
                raise NotSupportedError(f"DROP {kind} is not supported")
            self.catalog.bump_version(txn)
            self._record(session, {"op": "drop", "kind": kind.lower(), "name": name})
