"""Plans INSERT, UPDATE and DELETE into runs of the compiled TableWriter.

The writer (cext/dml.pxi) does the per-row work: affinities, NOT NULL and
CHECK constraints, rowid allocation, unique checks, index maintenance and
change capture.  This module resolves names and builds the expressions that
feed it; UPDATE and DELETE first collect the target rows through the same
access paths as SELECT (so a WHERE on the primary key is a single lookup),
then modify them, which also keeps a statement from seeing its own writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from terndb._cext import _core as C

from .catalog import Schema, Table
from .collation import collated_key, collation_code, index_key_folds
from .errors import NoSuchObjectError, NotSupportedError, ProgrammingError
from .exprcompile import ExprCompiler, Scope, Source
from .params import ParamSpec
from .select_planner import FromItem, SelectPlanner, _split_and
from .sqlparse import list_item_texts, parse_one, qualifier_of, source_text
from .triggers import TriggerSet
from .ddl import generation_order, json_column_positions, table_defaults
from .view_dml import ViewTarget, ViewWriter, has_instead_of, view_rows_query, view_target


def table_source(table: Table, name: str | None = None, offset: int = 0) -> Source:
    """The name-resolution view of a table whose row starts at ``offset`` (rowid after its columns)."""
    src = Source((name or table.name).lower(), [c.key for c in table.columns],
                 [c.affinity for c in table.columns], offset, offset + len(table.columns),
                 [c.name for c in table.columns],
                 [collation_code(c.collation) for c in table.columns])
    src.decl_types = [c.decl_type or None for c in table.columns]  # type: ignore[attr-defined]
    src.rowid_hidden = getattr(table, "without_rowid", False)    # views and document targets have none
    return src


def _writer_and_triggers(store: Any, schema: Schema, table: Table, params: ParamSpec, event: str,
                         assigned: set[str] | None = None) -> tuple[Any, TriggerSet | None]:
    """The writer of a DML statement and its row triggers (None when there are none).

    A view's writer fires its INSTEAD OF triggers; its TriggerSet is always
    returned so that the statement takes the per-row loop, never the compiled
    many-row fast paths, which need a real TableWriter.
    """
    triggers = TriggerSet(store, schema, table, event, assigned)
    if isinstance(table, ViewTarget):
        return ViewWriter(triggers), triggers
    return build_writer(store, schema, table, params), triggers or None


def build_writer(store: Any, schema: Schema, table: Table, params: ParamSpec) -> Any:
    """A TableWriter for ``table`` with its checks and index key expressions compiled."""
    scope = Scope([table_source(table)])
    comp = ExprCompiler(scope, params)
    checks = []
    for ck in table.checks:
        node = parse_one("SELECT " + ck.sql).expressions[0]
        checks.append((comp.compile(node), ck.name or ck.sql))
    writers = []
    for ix in schema.indexes_of(table):
        parts = []
        labels = []
        # A part collated NOCASE/RTRIM stores its folded value (engine/collation.py).
        for p, fold in zip(ix.parts, index_key_folds(table, ix)):
            if p.column is not None:
                parts.append(collated_key(C.ColRef(p.column), fold))
                labels.append(f"{table.name}.{table.columns[p.column].name}")
            else:
                parts.append(collated_key(comp.compile(parse_one("SELECT " + p.expr_sql).expressions[0]), fold))
                labels.append(f"index '{ix.name}'")
        writers.append(C.IndexWriter(ix.db_name, ix.name, parts, ix.desc_flags, ix.unique, ", ".join(labels)))
    # A generated column's NOT NULL is checked when it is computed (TableWriter.generated).
    notnull = [i for i, c in enumerate(table.columns) if c.notnull and not c.generated]
    rowid_alias = table.rowid_alias if table.rowid_alias is not None else -1
    pk = [] if table.rowid_alias is not None else list(table.pk)
    writer = C.TableWriter(store, table.db_name, table.name, table.object_id, [c.name for c in table.columns],
                           [c.affinity for c in table.columns], notnull, checks, writers, rowid_alias, pk,
                           table.autoincrement)
    writer.defaults = table_defaults(table)
    writer.generated = [(pos, comp.compile(parse_one("SELECT " + table.columns[pos].generated_sql).expressions[0]),
                         table.columns[pos].affinity, table.columns[pos].notnull)
                        for pos in generation_order(table)]
    writer.json_columns = json_column_positions(table)
    return writer


def _target_table(store: Any, schema: Schema, node: exp.Expression, event: str,
                  assigned: set[str] | None = None) -> Table:
    """The table ``node`` names, or a ViewTarget for a view with an INSTEAD OF ``event`` trigger."""
    tnode = node.this if isinstance(node, exp.Schema) else node
    name = tnode.name
    qualifier = qualifier_of(tnode)
    view = schema.lookup("views", name, qualifier)
    if view is not None:
        if has_instead_of(schema, view, event, assigned):
            return view_target(store, schema, view)
        raise ProgrammingError(f"cannot modify {name} because it is a view")
    if name.lower().startswith("sqlite_"):
        raise ProgrammingError(f"table {name} may not be modified")
    return schema.table(name, qualifier)


def _default_expr(comp: ExprCompiler, col: Any) -> Any:
    if col.default_sql is None:
        return C.Const(None)
    return comp.compile(parse_one("SELECT " + col.default_sql).expressions[0])


@dataclass
class Returning:
    """A RETURNING clause: expressions over the written row (rowid last) and their names."""
    exprs: list
    names: list[str]


@dataclass
class Upsert:
    """ON CONFLICT ... DO NOTHING / DO UPDATE SET ... [WHERE ...].

    Assignments and WHERE see the existing row followed by the ``excluded`` row
    (the one that could not be inserted), each with its rowid slot.
    """
    do_update: bool
    assignments: list | None = None     # Expr per table column
    where: Any = None


@dataclass
class InsertPlan:
    writer: Any
    value_rows: list[list] | None      # per VALUES row: one Expr per table column
    select: Any                        # PlannedQuery for INSERT ... SELECT
    column_map: list[int] | None       # for SELECT: table column -> select output position (-1 default)
    defaults: list                     # default Expr per table column
    mode: int
    table: Table
    returning: Returning | None = None
    upsert: Upsert | None = None
    triggers: Any = None                 # TriggerSet for INSERT, or None
    # INSERT INTO t(rowid, ...) on a table without INTEGER PRIMARY KEY: each
    # source row carries the rowid after the columns (NULL: allocate one).
    explicit_rowid: bool = False


def plan_returning(table: Table, node: exp.Expression, params: ParamSpec, alias: str | None = None,
                   sql: str | None = None) -> Returning | None:
    """Compiles a RETURNING list over the table's row (``*`` and ``t.*`` expand to its columns)."""
    ret = node.args.get("returning")
    if ret is None:
        return None
    scope = Scope([table_source(table, alias)])
    comp = ExprCompiler(scope, params)
    exprs, names = [], []
    texts = list_item_texts(sql, "RETURNING") if sql else None
    if texts is not None and len(texts) != len(ret.expressions):
        texts = None
    for k, item in enumerate(ret.expressions):
        inner = item.this if isinstance(item, exp.Alias) else item
        if isinstance(inner, exp.Star) or (isinstance(inner, exp.Column) and isinstance(inner.this, exp.Star)):
            for i, c in enumerate(table.columns):
                exprs.append(C.ColRef(i))
                names.append(c.name)
            continue
        exprs.append(comp.compile(inner))
        if isinstance(item, exp.Alias):
            names.append(item.alias)
        elif isinstance(inner, exp.Column):
            names.append(_column_display_name(table, inner.name))
        else:
            names.append(texts[k] if texts else (source_text(inner, sql) or inner.sql(dialect="sqlite")))
    return Returning(exprs, names)


def _column_display_name(table: Table, name: str) -> str:
    """SQLite names ``rowid`` after the INTEGER PRIMARY KEY column it aliases."""
    if name.lower() in ("rowid", "oid", "_rowid_") and table.find_column(name) is None \
            and table.rowid_alias is not None:
        return table.columns[table.rowid_alias].name
    return name


def _plan_upsert(table: Table, node: exp.OnConflict, params: ParamSpec) -> Upsert:
    action = str(node.args.get("action") or "").upper()
    if node.args.get("duplicate"):
        raise NotSupportedError("ON DUPLICATE KEY is MySQL syntax; use ON CONFLICT")
    if "NOTHING" in action:
        return Upsert(False)
    if "UPDATE" not in action:
        raise NotSupportedError(f"unsupported ON CONFLICT action: {action}")
    ncols = len(table.columns)
    existing = table_source(table)
    excluded = table_source(table, "excluded", offset=ncols + 1)
    # Unqualified names mean the existing row; the proposed one is only "excluded.x".
    excluded.using_hidden = set(excluded.columns)
    comp = ExprCompiler(Scope([existing, excluded]), params)
    assigns = [C.ColRef(i) for i in range(ncols)]
    for eq in node.expressions:
        pos = table.find_column(eq.this.name)
        if pos is None:
            raise NoSuchObjectError(f"no such column: {eq.this.name}")
        _refuse_generated(table, pos, "UPDATE")
        assigns[pos] = comp.compile(eq.expression)
    where = node.args.get("where")
    return Upsert(True, assigns, comp.compile(where.this) if where is not None else None)


def plan_insert(store: Any, schema: Schema, node: exp.Insert, params: ParamSpec, mode_name: str | None,
                sql: str | None = None, parent: Scope | None = None) -> InsertPlan:
    """``parent`` is the scope of an enclosing trigger (NEW/OLD), when planning a trigger body."""
    target = node.this
    table = _target_table(store, schema, target, "INSERT")
    writer, triggers = _writer_and_triggers(store, schema, table, params, "INSERT")
    returning = plan_returning(table, node, params, None, sql)
    conflict = node.args.get("conflict")
    upsert = _plan_upsert(table, conflict, params) if conflict is not None else None
    ncols = len(table.columns)
    if isinstance(target, exp.Schema) and target.expressions:
        positions = []
        for ident in target.expressions:
            name = ident.name
            pos = table.find_column(name)
            if pos is None:
                if name.lower() in ("rowid", "oid", "_rowid_") and table.rowid_alias is not None:
                    pos = table.rowid_alias
                elif name.lower() in ("rowid", "oid", "_rowid_") and not isinstance(table, ViewTarget) \
                        and not getattr(table, "without_rowid", False):
                    pos = ncols                  # the hidden rowid, carried after the columns
                else:
                    raise NoSuchObjectError(f"table {table.name} has no column named {name}")
            else:
                _refuse_generated(table, pos, "INSERT into")
            positions.append(pos)
    else:
        # Generated columns take no value: VALUES rows list the others, in order.
        positions = [i for i, c in enumerate(table.columns) if not c.generated]
    explicit_columns = isinstance(target, exp.Schema) and bool(target.expressions)
    empty = ExprCompiler(Scope([], parent), params)
    defaults = [_default_expr(ExprCompiler(Scope([]), params), c) for c in table.columns]
    explicit_rowid = ncols in positions
    if explicit_rowid:
        defaults.append(C.Const(None))           # no rowid given in a row: allocate one
    mode = C.CONFLICT_MODES[(mode_name or node.args.get("alternative") or "ABORT").upper()]
    if upsert is not None:
        if isinstance(table, ViewTarget):
            raise ProgrammingError(f"cannot UPSERT a view: {table.name}")
        mode = C.CONFLICT_MODES["UPSERT"]
    source = node.expression
    if node.args.get("default") or source is None:
        return InsertPlan(writer, [list(defaults)], None, None, defaults, mode, table, returning, upsert, triggers,
                          explicit_rowid)
    if isinstance(source, exp.Values):
        rows = []
        for tup in source.expressions:
            vals = list(tup.expressions) if isinstance(tup, exp.Tuple) else [tup]
            if len(vals) != len(positions):
                raise ProgrammingError(
                    f"{len(vals)} values for {len(positions)} columns" if explicit_columns
                    else f"table {table.name} has {len(positions)} columns but {len(vals)} values were supplied")
            exprs = list(defaults)
            for pos, v in zip(positions, vals):
                exprs[pos] = empty.compile(v)
            rows.append(exprs)
        return InsertPlan(writer, rows, None, None, defaults, mode, table, returning, upsert, triggers,
                          explicit_rowid)
    with_ = node.args.get("with_")
    if with_ is not None:
        # WITH ... INSERT INTO t SELECT ...: the CTEs belong to the SELECT.
        if not isinstance(source, (exp.Select, exp.Union, exp.Except, exp.Intersect)):
            raise NotSupportedError("WITH before INSERT ... VALUES is not supported")
        source = source.copy()
        inner = source.args.get("with_")
        merged = with_.copy()
        if inner is not None:
            merged.set("expressions", list(merged.expressions) + list(inner.expressions))
        source.set("with_", merged)
    planner = SelectPlanner(store, schema, params)
    planned = planner.plan(source, parent)
    if len(planned.names) != len(positions):
        raise ProgrammingError(f"table {table.name} has {len(positions)} columns but {len(planned.names)} values were supplied")
    column_map = [-1] * len(defaults)
    for out_pos, pos in enumerate(positions):
        column_map[pos] = out_pos
    return InsertPlan(writer, None, planned, column_map, defaults, mode, table, returning, upsert, triggers,
                      explicit_rowid)


def run_insert(plan: InsertPlan, ctx: Any, out: list | None = None) -> int:
    """Inserts the plan's rows; RETURNING rows are appended to ``out`` when given."""
    writer = plan.writer
    writer.begin(ctx)
    if plan.value_rows is not None:
        sources = (C.eval_exprs(exprs, (), ctx) for exprs in plan.value_rows)
    else:
        cmap = plan.column_map
        selected = C.run_operator(plan.select.root, ctx, -1)
        sources = (tuple(r[p] if p >= 0 else plan.defaults[i].evaluate((), ctx) for i, p in enumerate(cmap))
                   for r in selected)
    count = 0
    triggers = plan.triggers
    given_rowid = None
    for vals in sources:
        if plan.explicit_rowid:
            vals, given_rowid = vals[:-1], vals[-1]
        if triggers is not None and triggers.before and \
                not triggers.fire(triggers.before, vals + (given_rowid,), None, ctx):
            continue
        if writer.insert(vals, ctx, plan.mode, given_rowid) is not None:
            count += 1
            if triggers is not None and triggers.after:
                triggers.fire(triggers.after, writer.last_row, None, ctx)
        elif plan.upsert is None or writer.conflict_rowid is None or not _do_upsert(plan, vals, ctx):
            continue
        else:
            count += 1        # an upsert's update counts as a change, as in SQLite
        if plan.returning is not None and out is not None:
            out.append(C.eval_exprs(plan.returning.exprs, writer.last_row, ctx))
    return _counted(plan, count)


def _do_upsert(plan: InsertPlan, vals: tuple, ctx: Any) -> bool:
    """Applies DO UPDATE to the row that blocked the insert; True if a row was updated."""
    upsert = plan.upsert
    if not upsert.do_update:
        return False
    writer = plan.writer
    old = C.fetch_row(writer, writer.conflict_rowid, ctx)
    if old is None:
        return False
    excluded = tuple(C.apply_affinity(v, c.affinity) if v is not None else None
                     for v, c in zip(vals, plan.table.columns)) + (None,)
    both = old + excluded
    if upsert.where is not None and not C.sql_truth(upsert.where.evaluate(both, ctx)):
        return False
    new_vals = C.eval_exprs(upsert.assignments, both, ctx)
    return bool(writer.update(old, new_vals, ctx, C.CONFLICT_MODES["ABORT"]))


@dataclass
class ModifyPlan:
    """UPDATE or DELETE: an access path yielding target rows, then per-row writes."""
    writer: Any
    source: Any                    # operator producing full table rows (rowid last)
    assignments: list | None       # UPDATE: Expr per table column (identity for unchanged)
    mode: int
    table: Table
    returning: Returning | None = None
    triggers: Any = None                 # TriggerSet for UPDATE/DELETE, or None
    # UPDATE ... FROM: source rows are the target row (this many values, rowid
    # last) followed by the assigned values, possibly several per target row.
    joined_width: int | None = None


def _modify_target(store: Any, schema: Schema, node: exp.Expression, params: ParamSpec,
                   parent: Scope | None) -> tuple[Table, str | None, Any, Scope]:
    """UPDATE/DELETE: (table, alias, operator yielding the target rows, the row's scope)."""
    if node.args.get("with_") is not None:
        raise NotSupportedError(f"WITH before {node.key.upper()} is not supported yet")
    tnode = node.this
    if isinstance(node, exp.Update):
        table = _target_table(store, schema, tnode, "UPDATE", _assigned_names(node))
    else:
        table = _target_table(store, schema, tnode, "DELETE")
    alias = tnode.alias or None
    where = node.args.get("where")
    if isinstance(table, ViewTarget):
        # The view's rows (a NULL rowid slot last), filtered by WHERE, shaped like a table's rows.
        query = view_rows_query(table, alias, where.this if where else None, [])
        planned = SelectPlanner(store, schema, params).plan(query, parent)
        return table, alias, planned.root, Scope([table_source(table, alias)], parent)
    op, scope = _target_rows_operator(store, schema, table, alias, where.this if where else None, params, parent)
    return table, alias, op, scope


def _target_rows_operator(store: Any, schema: Schema, table: Table, alias: str | None,
                          where: exp.Expression | None, params: ParamSpec,
                          parent: Scope | None = None) -> tuple[Any, Scope]:
    planner = SelectPlanner(store, schema, params)
    src = table_source(table, alias)
    scope = Scope([src], parent)
    item = FromItem(src, table=table)
    conj = _split_and(where) if where is not None else []
    op, residual = planner._access_path(item, scope, conj, 0, 0, consume_key=True)
    if residual:
        comp = ExprCompiler(scope, params, planner.subquery_runner)
        cond = comp.compile(residual[0] if len(residual) == 1 else exp.and_(*residual))
        op = C.Filter(op, cond)
    return op, scope


@dataclass(frozen=True)
class RowItem:
    """Element ``index`` of a row-valued sub-select assigned by ``SET (a, b) = (SELECT x, y ...)``."""
    query: exp.Expression
    index: int
    width: int


def _assignment_pairs(node: exp.Update) -> list[tuple[exp.Expression, Any]]:
    """(column, value) per assigned column; ``SET (a, b) = (x, y)`` gives one pair per column.

    The value is an expression, or a RowItem for a row-valued sub-select.
    """
    pairs: list[tuple[exp.Expression, Any]] = []
    for eq in node.expressions:
        if not isinstance(eq.this, exp.Tuple):
            pairs.append((eq.this, eq.expression))
            continue
        targets = eq.this.expressions
        value = eq.expression
        while isinstance(value, exp.Paren):
            value = value.this
        if isinstance(value, (exp.Subquery, exp.Select)):
            pairs.extend((t, RowItem(value, i, len(targets))) for i, t in enumerate(targets))
            continue
        if not isinstance(value, exp.Tuple):
            raise ProgrammingError("row value misused")
        if len(value.expressions) != len(targets):
            raise ProgrammingError(f"{len(targets)} columns assigned {len(value.expressions)} values")
        pairs.extend(zip(targets, value.expressions))
    return pairs


def _assigned_names(node: exp.Update) -> set[str]:
    """Lowercased names of the columns an UPDATE assigns (for UPDATE OF triggers)."""
    return {target.name.lower() for target, _value in _assignment_pairs(node)}


def _refuse_generated(table: Table, pos: int, verb: str) -> None:
    """SQLite's error for writing a generated column directly."""
    if pos < len(table.columns) and table.columns[pos].generated:
        raise ProgrammingError(f'cannot {verb} generated column "{table.columns[pos].name}"')


def _assigned_positions(table: Table, node: exp.Update) -> list[tuple[int, exp.Expression]]:
    """(column position, value expression) of each SET assignment, in the written order."""
    out = []
    for target, value in _assignment_pairs(node):
        name = target.name
        pos = table.find_column(name)
        if pos is None:
            if name.lower() in ("rowid", "oid", "_rowid_"):
                if table.rowid_alias is None:
                    raise NotSupportedError("updating the rowid of a table without INTEGER PRIMARY KEY is not supported")
                pos = table.rowid_alias
            else:
                raise NoSuchObjectError(f"no such column: {name}")
        _refuse_generated(table, pos, "UPDATE")
        out.append((pos, value))
    return out


def plan_update(store: Any, schema: Schema, node: exp.Update, params: ParamSpec, mode_name: str | None,
                sql: str | None = None, parent: Scope | None = None) -> ModifyPlan:
    if node.args.get("from_") is not None:
        return _plan_update_from(store, schema, node, params, mode_name, sql, parent)
    table, alias, op, scope = _modify_target(store, schema, node, params, parent)
    comp = ExprCompiler(scope, params, SelectPlanner(store, schema, params).subquery_runner)
    assigns = [C.ColRef(i) for i in range(len(table.columns))]
    rows: dict[int, Any] = {}       # one compiled row sub-select per (a, b) = (SELECT ...)
    for pos, value in _assigned_positions(table, node):
        if isinstance(value, RowItem):
            row = rows.get(id(value.query))
            if row is None:
                row = rows[id(value.query)] = comp.row_subquery(value.query, value.width)
            assigns[pos] = comp.row_subquery_item(row, value.index)
        else:
            assigns[pos] = comp.compile(value)
    mode = C.CONFLICT_MODES[(mode_name or "ABORT").upper()]
    returning = plan_returning(table, node, params, alias, sql)
    writer, triggers = _writer_and_triggers(store, schema, table, params, "UPDATE", _assigned_names(node))
    return ModifyPlan(writer, op, assigns, mode, table, returning, triggers)


def _plan_update_from(store: Any, schema: Schema, node: exp.Update, params: ParamSpec, mode_name: str | None,
                      sql: str | None, parent: Scope | None) -> ModifyPlan:
    """UPDATE ... FROM: the target joined with the FROM list, planned as one SELECT.

    The SELECT yields the target row (its columns and rowid) followed by the new
    value of every assigned column, so the join order, index use and subqueries
    are the SELECT planner's.  As in SQLite, a target row matched by several
    joined rows is updated once, from the first of them.
    """
    if node.args.get("with_") is not None:
        raise NotSupportedError("WITH before UPDATE is not supported yet")
    tnode = node.this
    table = _target_table(store, schema, tnode, "UPDATE")
    if isinstance(table, ViewTarget):
        raise NotSupportedError("UPDATE ... FROM on a view is not supported")
    qualifier = exp.to_identifier(tnode.alias or table.name, quoted=True)
    target_cols: list[exp.Expression] = [exp.Column(this=exp.to_identifier(c.name, quoted=True),
                                                    table=qualifier.copy()) for c in table.columns]
    target_cols.append(exp.Column(this=exp.to_identifier("rowid"), table=qualifier.copy()))
    assigned = _assigned_positions(table, node)
    if any(isinstance(value, RowItem) for _pos, value in assigned):
        raise NotSupportedError("UPDATE ... FROM cannot assign a row-valued sub-select yet")
    query = exp.Select(expressions=target_cols + [value.copy() for _pos, value in assigned])
    query.set("from_", exp.From(this=tnode.copy()))
    first = node.args["from_"].this.copy()
    joins = list(first.args.get("joins") or [])
    first.set("joins", None)
    query.set("joins", [exp.Join(this=first)] + joins)
    if node.args.get("where") is not None:
        query.set("where", node.args["where"].copy())
    planner = SelectPlanner(store, schema, params)
    planned = planner.plan(query, parent)
    width = len(table.columns) + 1
    assigns = [C.ColRef(i) for i in range(len(table.columns))]
    for k, (pos, _value) in enumerate(assigned):
        assigns[pos] = C.ColRef(width + k)
    mode = C.CONFLICT_MODES[(mode_name or "ABORT").upper()]
    returning = plan_returning(table, node, params, tnode.alias or None, sql)
    writer, triggers = _writer_and_triggers(store, schema, table, params, "UPDATE", _assigned_names(node))
    return ModifyPlan(writer, planned.root, assigns, mode, table, returning, triggers, joined_width=width)


def plan_delete(store: Any, schema: Schema, node: exp.Delete, params: ParamSpec, sql: str | None = None,
                parent: Scope | None = None) -> ModifyPlan:
    table, alias, op, _scope = _modify_target(store, schema, node, params, parent)
    returning = plan_returning(table, node, params, alias, sql)
    writer, triggers = _writer_and_triggers(store, schema, table, params, "DELETE")
    return ModifyPlan(writer, op, None, C.CONFLICT_MODES["ABORT"], table, returning, triggers)


def run_modify(plan: ModifyPlan, ctx: Any, out: list | None = None) -> int:
    """Updates or deletes the target rows; RETURNING rows are appended to ``out`` when given."""
    writer = plan.writer
    rows = C.run_operator(plan.source, ctx, -1)
    writer.begin(ctx)
    count = 0
    ret = plan.returning if out is not None else None
    triggers = plan.triggers
    if plan.assignments is None:
        for r in rows:
            if triggers is not None and not triggers.fire(triggers.before, None, r, ctx):
                continue
            writer.delete(r, ctx)
            count += 1
            if ret is not None:
                out.append(C.eval_exprs(ret.exprs, r, ctx))
            if triggers is not None:
                triggers.fire(triggers.after, None, r, ctx)
        return _counted(plan, count)
    width = plan.joined_width
    if width is not None:
        rows = _first_per_target(rows, width)
    for joined in rows:
        # UPDATE ... FROM assignments read the joined row; the write sees the target row.
        new_vals = C.eval_exprs(plan.assignments, joined, ctx)
        r = joined if width is None else joined[:width]
        if triggers is not None and not triggers.fire(triggers.before, new_vals + (r[-1],), r, ctx):
            continue
        if writer.update(r, new_vals, ctx, plan.mode):
            count += 1
            if ret is not None:
                out.append(C.eval_exprs(ret.exprs, writer.last_row, ctx))
            if triggers is not None:
                triggers.fire(triggers.after, writer.last_row, r, ctx)
    return _counted(plan, count)


def _counted(plan: Any, count: int) -> int:
    """Rows a statement changed, as changes() reports it: rows handled by INSTEAD OF triggers do not count."""
    return 0 if isinstance(plan.table, ViewTarget) else count


def _first_per_target(rows: list, width: int) -> list[tuple]:
    """The first joined row of each target row (the target's rowid is at ``width - 1``)."""
    seen: set = set()
    out = []
    for r in rows:
        rowid = r[width - 1]
        if rowid not in seen:
            seen.add(rowid)
            out.append(r)
    return out
