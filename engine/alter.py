"""ALTER TABLE: RENAME TO, RENAME COLUMN, ADD COLUMN and DROP COLUMN.

Follows SQLite's rules (sqlite.org/lang_altertable.html): a renamed table or
column is renamed everywhere it is referenced (its indexes, CHECK and index
expressions, views), ADD COLUMN may not add a PRIMARY KEY or UNIQUE column or
a NOT NULL column without a default, and DROP COLUMN refuses columns that a
key, index, CHECK, foreign key or view depends on.  Rows written before an
ADD COLUMN read the new column's DEFAULT (the row codec pads short rows), so
adding a column never rewrites the table; dropping one does.

Everything runs in the caller's write transaction and bumps the schema version.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Callable

from sqlglot import exp

from terndb._cext import _core as C

from .catalog import MAIN, Catalog, Schema, Table, View, affinity_of_type, canonical_schema
from .ddl import _column_def, generation_order, table_defaults
from .errors import NoSuchObjectError, NotNullViolation, NotSupportedError, ObjectExistsError, ProgrammingError
from .exprcompile import ExprCompiler, Scope
from .params import ParamSpec
from .sqlparse import parse_one, qualifier_of, to_sql


def _rename_identifiers(sql: str, rename: Callable[[exp.Expression], None], statement: bool) -> str:
    """Parses ``sql`` (a statement, or an expression when not ``statement``), renames, re-renders."""
    if statement:
        tree = parse_one(sql)
        tree = tree.transform(lambda n: (rename(n), n)[1])
        return to_sql(tree)
    tree = parse_one("SELECT " + sql).expressions[0]
    tree = tree.transform(lambda n: (rename(n), n)[1])
    return to_sql(tree)


class AlterExecutor:
    def __init__(self, store: Any, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog

    def run(self, session: Any, wtxn: Any, schema: Schema, node: exp.Alter) -> None:
        if (node.args.get("kind") or "").upper() != "TABLE":
            raise NotSupportedError(f"ALTER {node.args.get('kind')} is not supported")
        found = schema.table(node.this.name, qualifier_of(node.this))
        # Cached Schema objects are shared with other connections and must stay
        # as committed: every change below is made on copies.
        schema = copy.deepcopy(schema)
        table = schema.tables[found.key]
        actions = node.args.get("actions") or []
        if len(actions) != 1:
            raise NotSupportedError("ALTER TABLE takes exactly one action")
        action = actions[0]
        if isinstance(action, exp.AlterRename):
            self._rename_table(wtxn, schema, table, action.this.name)
        elif isinstance(action, exp.RenameColumn):
            self._rename_column(wtxn, schema, table, action.this.name, action.args["to"].name)
        elif isinstance(action, exp.ColumnDef):
            self._add_column(wtxn, schema, table, action)
        elif isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
            targets = action.args.get("tables") or []
            self._drop_column(wtxn, schema, table, targets[0].name)
        else:
            raise NotSupportedError(f"unsupported ALTER TABLE action: {action.sql(dialect='sqlite')[:60]}")
        self.catalog.bump_version(wtxn)
        if session.changes is not None:
            payload = {"op": "alter_table", "name": table.name, "sql": node.sql(dialect="sqlite")}
            if table.schema_name != MAIN:
                payload["schema"] = table.schema_name
            session.changes.ddl(json.dumps(payload, separators=(",", ":")).encode())

    # -- RENAME TO ----------------------------------------------------------------------

    def _rename_table(self, wtxn: Any, schema: Schema, table: Table, new: str) -> None:
        taken = schema.name_taken(new, table.schema_name)
        if taken is not None and new.lower() != table.name.lower():
            raise ObjectExistsError(f"there is already another table or index with this name: {new}")
        if new.lower().startswith("sqlite_"):
            raise ProgrammingError(f"object name reserved for internal use: {new}")
        old_key = table.key
        old_low = table.name.lower()
        indexes = list(schema.indexes_of(table))

        def renamer(default_space: str) -> Callable[[exp.Expression], None]:
            # Unqualified names are in the schema of the text they appear in:
            # the table's own, its indexes', or a view's.
            def rename(n: exp.Expression) -> None:
                if isinstance(n, exp.Table) and n.name.lower() == old_low and \
                        canonical_schema(qualifier_of(n) or default_space) == table.schema_name:
                    n.set("this", exp.to_identifier(new))
                elif isinstance(n, exp.Column) and n.table and n.table.lower() == old_low:
                    n.set("table", exp.to_identifier(new))
            return rename
        rename = renamer(table.schema_name)
        self.catalog.delete(wtxn, "table", old_key)
        table.sql = _rename_identifiers(table.sql, rename, statement=True)
        table.name = new
        self.catalog.put(wtxn, "table", table)
        for ix in indexes:
            ix.table = new
            if ix.sql:
                ix.sql = _rename_identifiers(ix.sql, rename, statement=True)
            if ix.origin != "c" and ix.name.lower().startswith(f"sqlite_autoindex_{old_key}_"):
                # SQLite keeps autoindex names; so do we (they stay unique by object id).
                pass
            self.catalog.put(wtxn, "index", ix)
        self._rewrite_views(wtxn, schema, lambda view: renamer(view.schema_name))

    # -- RENAME COLUMN ----------------------------------------------------------------

    def _rename_column(self, wtxn: Any, schema: Schema, table: Table, old: str, new: str) -> None:
        pos = table.find_column(old)
        if pos is None:
            raise NoSuchObjectError(f"no such column: \"{old}\"")
        if table.find_column(new) is not None and new.lower() != old.lower():
            raise ProgrammingError(f"duplicate column name: {new}")
        old_low = old.lower()
        tkey = table.name.lower()

        def rename(n: exp.Expression) -> None:
            if isinstance(n, exp.Column) and n.name.lower() == old_low and (
                    not n.table or n.table.lower() == tkey):
                n.set("this", exp.to_identifier(new))
            elif isinstance(n, exp.ColumnDef) and n.name.lower() == old_low:
                n.set("this", exp.to_identifier(new))
            elif isinstance(n, exp.Identifier) and n.name.lower() == old_low and isinstance(
                    n.parent, (exp.Schema, exp.PrimaryKey, exp.UniqueColumnConstraint, exp.ForeignKey)):
                n.set("this", new)
        table.columns[pos].name = new
        table.sql = _rename_identifiers(table.sql, rename, statement=True)
        for ck in table.checks:
            ck.sql = _rename_identifiers(ck.sql, rename, statement=False)
        for col in table.columns:
            if col.generated:
                col.generated_sql = _rename_identifiers(col.generated_sql, rename, statement=False)
        for fk in table.foreign_keys:
            fk.columns = [new if c.lower() == old_low else c for c in fk.columns]
        self.catalog.put(wtxn, "table", table)
        for ix in schema.indexes_of(table):
            changed = False
            for part in ix.parts:
                if part.expr_sql is not None:
                    part.expr_sql = _rename_identifiers(part.expr_sql, rename, statement=False)
                    changed = True
            if ix.sql:
                ix.sql = _rename_identifiers(ix.sql, rename, statement=True)
                changed = True
            if changed:
                self.catalog.put(wtxn, "index", ix)
        # Foreign keys of other tables that point at this column.
        for other in schema.tables.values():
            touched = False
            for fk in other.foreign_keys:
                if fk.ref_table.lower() == tkey and (fk.ref_schema or MAIN) == table.schema_name:
                    fk.ref_columns = [new if c.lower() == old_low else c for c in fk.ref_columns]
                    touched = True
            if touched and other is not table:
                self.catalog.put(wtxn, "table", other)
        self._rewrite_views(wtxn, schema, lambda view: rename)

    def _rewrite_views(self, wtxn: Any, schema: Schema,
                       rename_for: Callable[[View], Callable[[exp.Expression], None]]) -> None:
        for view in schema.views.values():
            rename = rename_for(view)
            new_sql = _rename_identifiers(view.sql, rename, statement=True)
            if new_sql != to_sql(parse_one(view.sql)):
                view.sql = new_sql
                view.select_sql = _rename_identifiers(view.select_sql, rename, statement=True)
                self.catalog.put(wtxn, "view", view)

    # -- ADD COLUMN -------------------------------------------------------------------

    def _add_column(self, wtxn: Any, schema: Schema, table: Table, coldef: exp.ColumnDef) -> None:
        col, is_pk, autoinc, checks, unique, fk, _desc = _column_def(coldef, table.schema_name)
        if table.find_column(col.name) is not None:
            raise ProgrammingError(f"duplicate column name: {col.name}")
        if is_pk or autoinc:
            raise ProgrammingError("Cannot add a PRIMARY KEY column")
        if unique:
            raise ProgrammingError("Cannot add a UNIQUE column")
        if col.generated and col.generated_stored:
            raise ProgrammingError("cannot add a STORED column")
        if col.notnull and col.default_sql is None and not col.generated:
            raise ProgrammingError("Cannot add a NOT NULL column with default value NULL")
        if col.default_sql is not None:
            default = parse_one("SELECT " + col.default_sql).expressions[0]
            while isinstance(default, exp.Paren):
                default = default.this
            if not isinstance(default, (exp.Literal, exp.Null, exp.Neg, exp.Boolean, exp.HexString)):
                raise ProgrammingError("Cannot add a column with non-constant default")
        col.affinity = affinity_of_type(col.decl_type)
        table.columns.append(col)
        if col.generated:
            try:
                generation_order(table)
                self._fill_generated(wtxn, table, len(table.columns) - 1)
            except Exception:
                table.columns.pop()
                raise
        table.checks.extend(checks)
        if fk is not None:
            table.foreign_keys.append(fk)
        # Keep the stored CREATE TABLE text in step (what sqlite_master shows).
        tree = parse_one(table.sql)
        if isinstance(tree.this, exp.Schema):
            # After the last column definition, before table constraints, as SQLite writes it.
            items = list(tree.this.expressions)
            # (an untyped column parses as a bare Identifier)
            last_col = max((i for i, e in enumerate(items) if isinstance(e, (exp.ColumnDef, exp.Identifier))),
                           default=-1)
            items.insert(last_col + 1, coldef)
            tree.this.set("expressions", items)
            table.sql = to_sql(tree)
        self.catalog.put(wtxn, "table", table)

    def _fill_generated(self, wtxn: Any, table: Table, pos: int) -> None:
        """Stores a just-added VIRTUAL column's value in every existing row.

        terndb stores generated columns of both kinds, so rows written before
        the ADD COLUMN get the value they would have had.
        """
        from .dml_planner import table_source      # dml_planner imports the planners, which import this
        col = table.columns[pos]
        expr = ExprCompiler(Scope([table_source(table)]), ParamSpec.EMPTY).compile(
            parse_one("SELECT " + col.generated_sql).expressions[0])
        ctx = C.ExecContext((), wtxn.txn, None, wtxn)
        older = table_defaults(Table(table.name, table.object_id, table.columns[:pos]))
        txn = wtxn.txn
        handle = self.store.db(table.db_name, txn=wtxn)
        rewritten = []
        with txn.cursor(db=handle) as cur:
            for key, value in cur.iternext(keys=True, values=True):
                row = C.decode_row(value, pos, older) + (C.decode_rowid(key),)
                v = expr.evaluate(row, ctx)
                if v is not None:
                    v = C.apply_affinity(v, col.affinity)
                elif col.notnull:
                    raise NotNullViolation(f"NOT NULL constraint failed: {table.name}.{col.name}",
                                           f"{table.name}.{col.name}")
                # The other cells are copied as stored (a JSON column's JSONB stays JSONB).
                rewritten.append((key, C.row_with_cell(value, pos, v, older)))
        for key, value in rewritten:
            txn.put(key, value, db=handle)

    # -- DROP COLUMN ------------------------------------------------------------------

    def _drop_column(self, wtxn: Any, schema: Schema, table: Table, name: str) -> None:
        pos = table.find_column(name)
        if pos is None:
            raise NoSuchObjectError(f"no such column: \"{name}\"")
        low = name.lower()
        if len(table.columns) == 1:
            raise ProgrammingError(f"cannot drop column \"{name}\": no other columns exist")
        if pos in table.pk or table.rowid_alias == pos:
            raise ProgrammingError(f"cannot drop PRIMARY KEY column: \"{name}\"")
        for ix in schema.indexes_of(table):
            uses = any(p.column == pos for p in ix.parts) or any(
                p.expr_sql and _mentions(p.expr_sql, low) for p in ix.parts)
            if uses:
                kind = "UNIQUE" if ix.origin == "u" else "indexed"
                raise ProgrammingError(f"cannot drop {kind} column: \"{name}\"")
        if any(_mentions(ck.sql, low) for ck in table.checks):
            raise ProgrammingError(f"cannot drop column \"{name}\": used in a CHECK constraint")
        for col in table.columns:
            if col.generated and col.key != low and _mentions(col.generated_sql, low):
                raise ProgrammingError(f"cannot drop column \"{name}\": used in generated column \"{col.name}\"")
        if any(low in (c.lower() for c in fk.columns) for fk in table.foreign_keys):
            raise ProgrammingError(f"cannot drop column \"{name}\": used in a foreign key")
        for view in schema.views.values():
            if _mentions(view.select_sql, low):
                raise ProgrammingError(f"cannot drop column \"{name}\": used in view {view.name}")
        txn = wtxn.txn
        handle = self.store.db(table.db_name, txn=wtxn)
        rewritten = []
        with txn.cursor(db=handle) as cur:
            for key, value in cur.iternext(keys=True, values=True):
                # The other cells are copied as stored (a JSON column's JSONB stays JSONB).
                record = C.drop_row_column(value, pos)
                if record is not value:
                    rewritten.append((key, record))
        for key, value in rewritten:
            txn.put(key, value, db=handle)
        del table.columns[pos]
        table.pk = [p - 1 if p > pos else p for p in table.pk]
        if table.rowid_alias is not None and table.rowid_alias > pos:
            table.rowid_alias -= 1
        tree = parse_one(table.sql)
        if isinstance(tree.this, exp.Schema):
            tree.this.set("expressions", [e for e in tree.this.expressions
                                          if not (isinstance(e, (exp.ColumnDef, exp.Identifier)) and e.name.lower() == low)])
            table.sql = to_sql(tree)
        self.catalog.put(wtxn, "table", table)
        for ix in schema.indexes_of(table):
            for p in ix.parts:
                if p.column is not None and p.column > pos:
                    p.column -= 1
            self.catalog.put(wtxn, "index", ix)


def _mentions(sql: str, column: str) -> bool:
    try:
        tree = parse_one("SELECT " + sql) if not sql.lstrip().upper().startswith(("SELECT", "WITH", "VALUES")) \
            else parse_one(sql)
    except Exception:
        return True        # when in doubt, refuse to drop
    return any(isinstance(n, exp.Column) and n.name.lower() == column for n in tree.walk())

