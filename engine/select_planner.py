"""Plans SELECT statements (and compounds) into trees of compiled operators.

The shape of a plan, bottom-up:

    access paths per FROM item (rowid lookup / rowid range / index range / scan)
    -> joins in FROM order (index nested loop, hash join, or nested loop)
    -> WHERE residue -> hash aggregate -> HAVING
    -> projection (+ ORDER BY keys) -> DISTINCT -> sort -> LIMIT/OFFSET -> trim

Every WHERE conjunct is kept as a filter even when an access path already
narrowed on it: the access path only has to return a superset, which keeps
SQLite's affinity and NULL corner cases in one place (the filter).

Index access: a term ``part = v``, ``part IN (...)``, a range or BETWEEN,
where ``part`` is an index column or an indexed expression written as in
CREATE INDEX (SQLite's matching rule, see _expression_signature), feeds an
equality prefix then an IN list or a range; an OR whose every term has an
access of its own becomes a union of them.  With one table, ORDER BY (and
MIN/MAX) may be delivered by reading an index forwards or backwards instead
of sorting.  A lookup join after a scanned table is planned as a hash join
too, and the tables' sizes pick one when it runs (AdaptiveJoin).
Join ordering by cost and the rest of the SQL surface grow here (issue 3).
"""
from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlglot import exp

from terndb._cext import _core as C

from .catalog import AFF_BLOB, AFF_INTEGER, AFF_NUMERIC, AFF_REAL, AFF_TEXT, MAIN, TEMP, Index, IndexPart, Schema, Table
from .errors import DataError, NoSuchObjectError, NotSupportedError, ProgrammingError
from .collation import collated_key, collation_code, index_key_folds, search_collation
from .ddl import json_column_positions
from .exprcompile import ROWID_NAMES, AggregateContext, ExprCompiler, Scope, Source, column_qualifier, contains_aggregate
from .jsonb_reads import is_count_star, json_columns_read_as_jsonb
from .params import ParamSpec
from .sqlparse import list_item_texts, parse_one, qualifier_of, qualify_tables, source_text, to_sql, type_name
from .window_planner import aggregate_calls_for_windows, collect_windows, named_windows, plan_windows

NUMERIC_AFFS = (AFF_INTEGER, AFF_REAL, AFF_NUMERIC)


@dataclass
class PlannedQuery:
    """A planned SELECT: the operator tree and what its output rows look like."""
    root: Any
    names: list[str]
    decl_types: list[str | None]
    affinities: list[int]
    explain: list[str] = field(default_factory=list)
    correlated: bool = False


@dataclass
class FromItem:
    source: Source
    table: Table | None = None
    producer: Any = None          # operator for subqueries/views (no access-path choice)
    join_kind: str = "inner"      # inner / left / right / full / cross; "coalesce" for a USING merge step
    on: exp.Expression | None = None
    using: list[str] | None = None
    natural: bool = False
    # For a "coalesce" step: (left source, right source, column) of each merged USING column.
    coalesce: list[tuple[str, str, str]] | None = None
    # A table-valued function (json_each / json_tree): (row builder, argument nodes).
    tvf: tuple[Any, list] | None = None
    # For a table: the column positions the statement may read (its scans decode
    # only those, and an index holding them all is read alone); None: every column.
    columns: tuple[int, ...] | None = None
    rowid_read: bool = True       # False: nothing reads its rowid (a table scan leaves it out)


class BoundScope(Scope):
    """Resolves names for expressions evaluated when an access path opens.

    Inside a join, the right side opens while the current left row sits on
    top of ``ctx.outer``: left columns become OuterRef(1, pos) and enclosing
    queries are one level further away.  The table being accessed itself is
    not visible (a bound cannot depend on the row it looks up).
    """

    def __init__(self, base: Scope, left_width: int, exclude: Source, bias: int) -> None:
        super().__init__(base.sources, base.parent)
        self.base = base
        self.left_width = left_width
        self.exclude = exclude
        self.bias = bias

    def lookup(self, name: str, table: str | None):
        hit = self.base.lookup(name, table)
        if hit is None:
            return None
        depth, pos, aff, coll = hit
        if depth == 0:
            ex = self.exclude
            if ex.offset <= pos < ex.offset + ex.width:
                raise _NotABound()
            if pos >= self.left_width:
                raise _NotABound()
            return (1, pos, aff, coll)
        return (depth + self.bias, pos, aff, coll)


class _NotABound(Exception):
    """Raised while compiling a candidate bound that depends on the looked-up row."""


class SelectPlanner:
    def __init__(self, store: Any, schema: Schema, params: ParamSpec, sql: str | None = None) -> None:
        self.store = store
        self.schema = schema
        self.params = params
        self.sql = sql            # the statement text, for naming expression columns
        self._named_top = False   # the first (outermost) SELECT list takes its names from the text
        self.explain: list[str] = []
        self._view_depth = 0
        # Common table expressions visible here: name -> definition (WITH scopes nest).
        self.ctes: dict[str, _CTE] = {}
        # (FROM item, operator) of each table reader planned, for read_json_docs (jsonb_reads.py).
        self._table_readers: list[tuple[FromItem, Any]] = []

    def _sub_planner(self, ctes: dict[str, "_CTE"] | None = None) -> "SelectPlanner":
        """A planner for a nested query of this statement (FROM subquery, CTE body)."""
        sub = SelectPlanner(self.store, self.schema, self.params, self.sql)
        sub._named_top = True      # only the statement's own SELECT list names from the text
        sub.ctes = self.ctes if ctes is None else ctes
        sub.explain = self.explain
        return sub

    # -- entry points ------------------------------------------------------------------

    def plan(self, node: exp.Expression, parent: Scope | None = None) -> PlannedQuery:
        if isinstance(node, exp.Subquery):
            node = node.this
        with_ = node.args.get("with_")
        if with_ is not None:
            saved = self.ctes
            self.ctes = dict(saved)
            try:
                for cte in with_.expressions:
                    self._define_cte(cte)
                return self._plan_body(node, parent)
            finally:
                self.ctes = saved
        return self._plan_body(node, parent)

    def _plan_body(self, node: exp.Expression, parent: Scope | None) -> PlannedQuery:
        if isinstance(node, (exp.Union, exp.Except, exp.Intersect)):
            return self._plan_compound(node, parent)
        if isinstance(node, exp.Values):
            return self._plan_values(node, parent)
        if not isinstance(node, exp.Select):
            raise NotSupportedError(f"unsupported query: {node.sql(dialect='sqlite')[:60]}")
        return self._plan_select(node, parent)

    # -- common table expressions -------------------------------------------------------

    def _define_cte(self, cte: exp.CTE) -> None:
        """Registers one WITH entry; it sees the entries before it (and itself, if recursive)."""
        name = cte.alias_or_name.lower()
        if not name:
            raise ProgrammingError("a common table expression needs a name")
        alias = cte.args.get("alias")
        columns = [c.name for c in alias.columns] if alias is not None and alias.columns else None
        body = cte.this
        refs = sum(1 for t in body.find_all(exp.Table) if t.name.lower() == name and not t.args.get("db"))
        entry = _CTE(name, body, columns, recursive=refs > 0, visible=dict(self.ctes))
        self.ctes[name] = entry

    def _cte_item(self, entry: "_CTE", alias: str, offset: int, parent: Scope | None) -> FromItem:
        """A FROM reference to a WITH entry.

        An entry whose body reads no enclosing query is planned once and its
        rows shared by every reference.  One that does (``WITH q AS (SELECT
        t2.a) ...`` inside a correlated subquery) is, as in SQLite, a subquery
        expanded where it is referenced: planned per reference against that
        reference's enclosing scopes, and run afresh for each outer row.
        """
        if entry.planned is not None:
            return self._cte_source(entry.planned, alias, offset, C.Materialized(entry.rows))
        if entry.planning:
            raise ProgrammingError(f"circular reference: {entry.name}")
        probe = _CorrelationProbe(parent) if parent is not None else None
        entry.planning = True
        try:
            planned = self._plan_recursive_cte(entry, probe) if entry.recursive else self._plan_cte(entry, probe)
        finally:
            entry.planning = False
        if probe is not None and probe.used:
            producer = entry.producer
            entry.producer = None
            return self._cte_source(planned, alias, offset, C.Materialized(producer))
        entry.planned = planned
        return self._cte_source(planned, alias, offset, C.Materialized(entry.rows))

    @staticmethod
    def _cte_source(planned: PlannedQuery, alias: str, offset: int, producer: Any) -> FromItem:
        cols = [n.lower() for n in planned.names]
        src = Source(alias.lower(), cols, planned.affinities, offset, None, planned.names)
        src.decl_types = planned.decl_types  # type: ignore[attr-defined]
        return FromItem(src, producer=producer)

    def _plan_cte(self, entry: "_CTE", outer: Scope | None) -> PlannedQuery:
        planned = self._sub_planner(entry.visible).plan(entry.body, outer)
        _rename_cte_columns(entry, planned)
        root = planned.root
        entry.producer = lambda ctx: C.run_operator(root, ctx, -1)
        return planned

    def _plan_recursive_cte(self, entry: "_CTE", outer: Scope | None) -> PlannedQuery:
        """``initial UNION [ALL] recursive``: SQLite's queue algorithm, one row at a time."""
        body = entry.body
        name = entry.name
        if not isinstance(body, exp.Union):
            raise ProgrammingError(f"circular reference: {name}")
        initial, step = body.this, body.expression
        if any(t.name.lower() == name for t in initial.find_all(exp.Table)):
            raise ProgrammingError(f"circular reference: {name}")
        if sum(1 for t in step.find_all(exp.Table) if t.name.lower() == name) > 1:
            raise ProgrammingError(f"multiple references to recursive table: {name}")
        if body.args.get("order") is not None:
            raise NotSupportedError("ORDER BY in a recursive common table expression is not supported")
        first = self._sub_planner(entry.visible).plan(initial, outer)
        _rename_cte_columns(entry, first)
        # The recursive SELECT reads the "queue" row through a working-table entry.
        work = _CTE(name, body, list(first.names), recursive=False, visible={})
        work.planned = first
        work.cacheable = False
        current: list[tuple] = []
        work.producer = lambda ctx: current
        step_ctes = dict(entry.visible)
        step_ctes[name] = work
        rec = self._sub_planner(step_ctes).plan(step, outer)
        if len(rec.names) != len(first.names):
            raise ProgrammingError("SELECTs to the left and right of UNION do not have the same number of "
                                   "result columns")
        distinct = bool(body.args.get("distinct", True))
        comp = ExprCompiler(Scope([], None), self.params, self.subquery_runner)
        limit_node, offset_node = body.args.get("limit"), body.args.get("offset")
        lim = comp.compile(limit_node.expression) if limit_node is not None else None
        off = comp.compile(offset_node.expression) if offset_node is not None else None
        init_root, rec_root = first.root, rec.root

        def rows(ctx: Any) -> list:
            limit = _count_value(lim.evaluate((), ctx), "LIMIT") if lim is not None else -1
            skip = _count_value(off.evaluate((), ctx), "OFFSET") if off is not None else 0
            seen: set = set()
            queue: deque = deque()
            for r in C.run_operator(init_root, ctx, -1):
                if distinct:
                    if r in seen:
                        continue
                    seen.add(r)
                queue.append(r)
            out: list = []
            while queue and limit != 0:
                r = queue.popleft()
                if skip > 0:
                    skip -= 1
                else:
                    out.append(r)
                    if 0 <= limit <= len(out):
                        break
                current[:] = [r]
                for nr in C.run_operator(rec_root, ctx, -1):
                    if distinct:
                        if nr in seen:
                            continue
                        seen.add(nr)
                    queue.append(nr)
            current.clear()
            return out
        entry.producer = rows
        return PlannedQuery(C.Materialized(rows), first.names, first.decl_types, first.affinities, self.explain)

    def subquery_runner(self, node: exp.Expression, scope: Scope) -> tuple[Callable, bool]:
        """Plans a subquery with ``scope`` as its parent; returns (runner, correlated)."""
        probe = _CorrelationProbe(scope)
        planned = self.plan(node, probe)
        root = planned.root

        def run(ctx: Any, limit: int) -> list:
            return C.run_operator(root, ctx, limit)
        run.width = len(planned.names)  # type: ignore[attr-defined]  (checked by scalar/IN users)
        return run, probe.used

    # -- SELECT ------------------------------------------------------------------------

    def _plan_select(self, node: exp.Select, parent: Scope | None) -> PlannedQuery:
        readers_mark = len(self._table_readers)
        items = self._from_items(node, parent)
        self._items = items
        self._mark_used_columns(node, items)
        where = node.args.get("where")
        conjuncts = _split_and(where.this) if where is not None else []
        physical = self._join_order(items, conjuncts, parent)
        scope = Scope([it.source for it in physical], parent)

        select_nodes = self._expand_stars(node.expressions, items)
        group = node.args.get("group")
        group_nodes = list(group.expressions) if group is not None else []
        having = node.args.get("having")
        order = node.args.get("order")
        order_nodes = list(order.expressions) if order is not None else []
        aggregating = bool(group_nodes) or any(contains_aggregate(n) for n in select_nodes) or (
            having is not None)
        if not aggregating and any(contains_aggregate(o.this) for o in order_nodes):
            aggregating = True

        names = self._names(node, select_nodes, parent)
        resolved_order = [self._resolve_order(o.this, select_nodes, names, i) for i, o in enumerate(order_nodes)]
        windows = collect_windows([_unalias(n) for n in select_nodes] + resolved_order)
        hint = None
        if not (aggregating or windows or node.args.get("distinct") is not None):
            hint = _order_hint(order_nodes, resolved_order, physical, scope, node.args.get("limit") is not None)
        root = None
        if aggregating and not (group_nodes or having is not None or conjuncts or windows):
            root = self._min_max_scan(physical, scope, select_nodes)
        if root is None:
            root = self._plan_joins(physical, scope, conjuncts, hint)
        if aggregating:
            # GROUP BY terms may name a result column by position or alias.
            group_nodes = [self._resolve_alias_or_position(g, select_nodes, names, "GROUP BY", i)
                           for i, g in enumerate(group_nodes)]
            pre = ExprCompiler(scope, self.params, self.subquery_runner)
            group_exprs = pre.compile_list(group_nodes)
            for g in group_nodes:
                if contains_aggregate(g):
                    raise ProgrammingError("aggregate functions are not allowed in the GROUP BY clause")
            agg = AggregateContext(scope, group_nodes)
            post = ExprCompiler(scope, self.params, self.subquery_runner, agg)
            if having is not None:
                having = exp.Having(this=self._having_aliases(having.this, select_nodes, names, scope))
            if windows:
                # Register every aggregate first: the grouped row's width (where
                # window columns start) must be final before anything refers past it.
                extra_nodes = [having.this] if having is not None else []
                for a in aggregate_calls_for_windows([_unalias(n) for n in select_nodes] + resolved_order
                                                     + extra_nodes):
                    post.compile(a)
            n_specs = len(agg.specs)
            having_expr = post.compile(having.this) if having is not None else None
            folds = [pre.collation(g) for g in group_nodes]
            root = C.HashAggregate(root, group_exprs, agg.specs, scope.width, folds if any(folds) else None,
                                   agg.min_max, [pre.row_span([g]) for g in group_nodes])
            self.explain.append("USE TEMP B-TREE FOR GROUP BY" if group_nodes else "AGGREGATE")
            if having_expr is not None:
                root = C.Filter(root, having_expr)
            if windows:
                root, post.windows = plan_windows(root, windows, named_windows(node), post,
                                                  scope.width + len(group_nodes) + n_specs, parent)
                self.explain.append("WINDOW")
            select_exprs = post.compile_list([_unalias(n) for n in select_nodes])
            order_exprs = [post.compile(o) for o in resolved_order]
            if windows and len(agg.specs) != n_specs:
                # Cannot happen when the pre-registration walk saw every call; guard the layout.
                raise NotSupportedError("aggregate call not found before planning window functions")
        else:
            comp = ExprCompiler(scope, self.params, self.subquery_runner)
            if windows:
                root, comp.windows = plan_windows(root, windows, named_windows(node), comp, scope.width, parent)
                self.explain.append("WINDOW")
            select_exprs = comp.compile_list([_unalias(n) for n in select_nodes])
            order_exprs = [comp.compile(o) for o in resolved_order]

        nsel = len(select_exprs)
        distinct = node.args.get("distinct") is not None
        sort_keys: list = []
        desc = bytearray()
        extra: list = []
        key_comp = ExprCompiler(scope, self.params, self.subquery_runner)
        for o, e, ro in zip(order_nodes, order_exprs, resolved_order):
            pos = self._select_position(o.this, select_nodes, names)
            key_expr = C.ColRef(pos) if pos is not None else None
            if key_expr is None:
                if distinct:
                    # Sorting happens after DISTINCT, so the key must be a result column.
                    extra.append(e)
                    key_expr = C.ColRef(nsel + len(extra) - 1)
                else:
                    extra.append(e)
                    key_expr = C.ColRef(nsel + len(extra) - 1)
            # The key codec orders by bytes: fold NOCASE/RTRIM text so such terms sort as SQLite does.
            key_expr = collated_key(key_expr, key_comp.collation(ro))
            is_desc = bool(o.args.get("desc"))
            nulls_first = o.args.get("nulls_first")
            default_nulls_first = not is_desc
            if nulls_first is not None and bool(nulls_first) != default_nulls_first:
                sort_keys.append(C.IsNull(key_expr, False))
                desc.append(1 if nulls_first else 0)
            sort_keys.append(key_expr)
            desc.append(1 if is_desc else 0)
        root = C.Project(root, select_exprs + extra)
        if distinct:
            if extra:
                raise NotSupportedError("ORDER BY terms of a SELECT DISTINCT must appear in its result columns")
            folds = [key_comp.collation(_unalias(n)) for n in select_nodes]
            root = C.Distinct(root, folds if any(folds) else None)
        if sort_keys and not (hint is not None and hint.satisfied):
            root = C.Sort(root, sort_keys, bytes(desc))
            self.explain.append("USE TEMP B-TREE FOR ORDER BY")
        root = self._limit(node, root, scope)
        if extra:
            root = C.Project(root, [C.ColRef(i) for i in range(nsel)])
        decl, affs = self._output_types(select_nodes, scope)
        self._read_json_docs(node, items, readers_mark)
        return PlannedQuery(root, names, decl, affs, self.explain)

    def _read_json_docs(self, node: exp.Select, items: list[FromItem], mark: int) -> None:
        """Lets this level's table readers hand JSON columns read only through
        path extractors on as JSONB documents (no text rendering per row)."""
        readers, self._table_readers[mark:] = self._table_readers[mark:], []
        columns: dict[int, list[int]] = {}
        for it, op in readers:
            if it.table is None or not isinstance(op, C.TableReader) or not any(it is i for i in items):
                continue
            if id(it) not in columns:
                columns[id(it)] = json_columns_read_as_jsonb(node, it.source.name, it.table)
            if columns[id(it)]:
                op.read_json_docs(columns[id(it)])

    def _mark_used_columns(self, node: exp.Select, items: list[FromItem]) -> None:
        """Sets each table item's ``columns``: those the statement may read (projection pushdown).

        Deliberately syntactic and conservative: a column counts as read when
        its name appears as any identifier anywhere in this SELECT (select
        list, WHERE, GROUP BY, HAVING, ORDER BY, ON, window specs, nested and
        correlated subqueries) or in a WITH body it can see (a correlated CTE
        is expanded where it is referenced).  Same-named columns of other
        tables, aliases and table names only over-approximate.  A ``*`` of
        this SELECT, or USING/NATURAL (their conditions are built from names
        not written), keep every column.  A table scan leaves the rowid out
        too when no ``rowid``/``oid``/``_rowid_`` is written (``rowid_read``).
        """
        if any(it.natural or it.using or it.join_kind == "coalesce" for it in items):
            return
        names: set[str] = set()
        for tree in [node] + [cte.body for cte in self.ctes.values()]:
            for n in tree.find_all(exp.Identifier, exp.Var, exp.Star):
                if isinstance(n, exp.Star):
                    if not is_count_star(n) and n.find_ancestor(exp.Select) is node:
                        return
                else:
                    names.add(n.name.lower())
        rowid_read = not names.isdisjoint(ROWID_NAMES)
        for it in items:
            table = it.table
            if table is None or it.tvf is not None or it.producer is not None:
                continue
            used = tuple(i for i, c in enumerate(table.columns) if c.key in names)
            if len(used) < len(table.columns) or not rowid_read:
                it.columns = used
                it.rowid_read = rowid_read

    def _names(self, node: exp.Select, select_nodes: list[exp.Expression], parent: Scope | None) -> list[str]:
        """Result column names as SQLite gives them: alias, column name, or the text as written."""
        texts = None
        if parent is None and self.sql is not None and not self._named_top:
            self._named_top = True
            texts = list_item_texts(self.sql, "SELECT")
            if texts is not None and len(texts) != len(node.expressions):
                texts = None
        by_node = {id(n): t for n, t in zip(node.expressions, texts)} if texts else {}
        names = []
        for n in select_nodes:
            if id(n) in by_node and not isinstance(n, (exp.Alias, exp.Column)):
                names.append(by_node[id(n)])
            elif isinstance(n, exp.Column) and n.name.lower() in ROWID_NAMES:
                names.append(self._rowid_name(n) or n.name)
            else:
                names.append(_output_name(n, self.sql))
        return names

    def _rowid_name(self, node: exp.Column) -> str | None:
        """SQLite names ``rowid`` after the INTEGER PRIMARY KEY column it aliases."""
        for it in self._items:
            t = it.table
            if t is None or (node.table and not it.source.answers_to(column_qualifier(node).lower())):
                continue
            if t.find_column(node.name) is None and t.rowid_alias is not None:
                return t.columns[t.rowid_alias].name
        return None

    def _limit(self, node: exp.Expression, root: Any, scope: Scope | None) -> Any:
        limit = node.args.get("limit")
        offset = node.args.get("offset")
        if limit is None and offset is None:
            return root
        comp = ExprCompiler(Scope([], scope.parent if scope else None), self.params, self.subquery_runner)
        lim = comp.compile(limit.expression) if limit is not None else None
        if limit is not None and limit.args.get("offset") is not None:
            offset_expr = comp.compile(limit.args["offset"])
        else:
            offset_expr = comp.compile(offset.expression) if offset is not None else None
        return C.Limit(root, lim, offset_expr)

    def _output_types(self, select_nodes: list[exp.Expression], scope: Scope) -> tuple[list, list]:
        decl: list[str | None] = []
        affs: list[int] = []
        for n in select_nodes:
            inner = _unalias(n)
            d, a = None, AFF_BLOB
            if isinstance(inner, exp.Column):
                src_col = self._column_source(inner, scope)
                if src_col is not None:
                    d, a = src_col
            elif isinstance(inner, exp.Cast):
                d = type_name(inner.to)
            decl.append(d)
            affs.append(a)
        return decl, affs

    def _column_source(self, node: exp.Column, scope: Scope) -> tuple[str | None, int] | None:
        low = node.name.lower()
        tlow = (column_qualifier(node) or "").lower() or None
        for src in scope.sources:
            if tlow is not None and not src.answers_to(tlow):
                continue
            if low in src.columns:
                i = src.columns.index(low)
                decl = getattr(src, "decl_types", None)
                return (decl[i] if decl else None), src.affinities[i]
            if low in ROWID_NAMES and src.rowid_pos is not None and not src.rowid_hidden:
                return "INTEGER", AFF_INTEGER
        return None

    # -- FROM --------------------------------------------------------------------------

    def _from_items(self, node: exp.Select, parent: Scope | None) -> list[FromItem]:
        items: list[FromItem] = []
        offset = 0
        frm = node.args.get("from_")
        if frm is None:
            return items
        tables = _flatten_join_groups([(frm.this, None)] + [(j.this, j) for j in node.args.get("joins") or []])
        for tnode, join in tables:
            item = self._from_item(tnode, offset, parent)
            if join is not None:
                side = (join.side or "").upper()
                kind = (join.kind or "").upper()
                if side in ("LEFT", "RIGHT", "FULL"):
                    item.join_kind = side.lower()
                else:
                    item.join_kind = "cross" if kind == "CROSS" else "inner"
                item.on = join.args.get("on")
                using = join.args.get("using")
                if using:
                    item.using = [u.name.lower() for u in using]
                if join.method and join.method.upper() == "NATURAL" or kind == "NATURAL":
                    item.natural = True
            _check_distinct_name(items, item)
            items.append(item)
            offset += item.source.width
            if item.natural or item.using:
                merged = self._using_conditions(items)
                if merged is not None:
                    items.append(merged)
                    offset += merged.source.width
        return items

    def _using_conditions(self, items: list[FromItem]) -> FromItem | None:
        """USING / NATURAL of the last item become ON conditions, in the written order.

        The right side's copy of each column is hidden from unqualified names.
        For RIGHT and FULL joins the column is coalesce(left, right) (the left
        copy is NULL on unmatched right rows): a "coalesce" step appended after
        the join computes it, and unqualified names and ``*`` read that.
        """
        it = items[-1]
        left = items[:-1]

        def visible(p: FromItem, c: str) -> bool:
            return c in p.source.columns and c not in p.source.using_hidden

        if it.using:
            cols = it.using
        else:
            cols = [c for c in it.source.columns if any(visible(p, c) for p in left)]
        conds = []
        pairs: list[tuple[str, str, str]] = []
        for c in cols:
            left_src = next((p.source for p in left if visible(p, c)), None)
            if left_src is None or c not in it.source.columns:
                raise ProgrammingError(f"cannot join using column {c} - column not present in both tables")
            conds.append(exp.EQ(this=exp.column(c, table=left_src.name, quoted=True),
                                expression=exp.column(c, table=it.source.name, quoted=True)))
            it.source.using_hidden.add(c)
            pairs.append((left_src.name, it.source.name, c))
        if conds:
            cond = _and_all(conds)
            it.on = cond if it.on is None else exp.And(this=it.on, expression=cond)
        if it.join_kind not in ("right", "full") or not pairs:
            return None
        name = f" using#{len(items)}"     # cannot collide with a written table name
        offset = it.source.offset + it.source.width
        affs, display = [], []
        by_name = {p.source.name: p.source for p in left}
        for lname, _rname, c in pairs:
            lsrc = by_name[lname]
            k = lsrc.columns.index(c)
            affs.append(lsrc.affinities[k])
            display.append((lsrc.display or lsrc.columns)[k])
            lsrc.using_hidden.add(c)
            lsrc.coalesced_by[c] = name
        src = Source(name, [c for _l, _r, c in pairs], affs, offset, None, display)
        return FromItem(src, join_kind="coalesce", coalesce=pairs)

    def _from_item(self, tnode: exp.Expression, offset: int, parent: Scope | None) -> FromItem:
        if isinstance(tnode, exp.Table) and not isinstance(tnode.this, exp.Anonymous):
            item, space = self._named_item(tnode, offset, parent)
            if space is not None:
                # s.t.c names an unaliased s.t too, and s.x.c names s.t AS x (as in SQLite).
                item.source.aka = (f"{space}.{item.source.name}".lower(),)
            return item
        if isinstance(tnode, exp.Subquery):
            alias = tnode.alias or f"subquery_{offset}"
            planned = self._sub_planner().plan(tnode.this, parent)
            return self._derived_item(planned, alias, offset)
        if isinstance(tnode, exp.Table) and isinstance(tnode.this, exp.Anonymous):
            return self._table_function_item(tnode, offset)
        raise NotSupportedError(f"unsupported FROM item: {tnode.sql(dialect='sqlite')[:60]}")

    def _named_item(self, tnode: exp.Table, offset: int, parent: Scope | None) -> tuple[FromItem, str | None]:
        """A FROM item named by a (possibly qualified) name: a CTE, table, view or
        sqlite_master; with the schema it lives in (None for a CTE)."""
        name = tnode.name
        qualifier = qualifier_of(tnode)
        alias = tnode.alias or name
        cte = self.ctes.get(name.lower()) if qualifier is None else None
        if cte is not None:
            return self._cte_item(cte, alias, offset, parent), None
        table = self.schema.lookup("tables", name, qualifier)
        if table is not None:
            src = Source(alias.lower(), [c.key for c in table.columns], [c.affinity for c in table.columns],
                         offset, offset + len(table.columns), [c.name for c in table.columns],
                         [collation_code(c.collation) for c in table.columns])
            src.decl_types = [c.decl_type or None for c in table.columns]  # type: ignore[attr-defined]
            src.rowid_hidden = table.without_rowid
            return FromItem(src, table=table), table.schema_name
        view = self.schema.lookup("views", name, qualifier)
        if view is not None:
            return self._view_item(view, alias, offset), view.schema_name
        known_schema = self.schema.has_schema(qualifier or MAIN)
        if name.lower() in ("sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema") \
                and known_schema:
            space = self.schema.resolve_schema(qualifier)
            return self._master_item(alias, offset, temp=name.lower().startswith("sqlite_temp"),
                                     space=space), space
        if name.lower() == "pragma_database_list" and known_schema:
            return self._database_list_item(alias, offset), None
        raise NoSuchObjectError(f"no such table: {qualifier + '.' if qualifier else ''}{name}")

    # -- table-valued functions (json_each, json_tree) --------------------------------------

    TABLE_FUNCTION_COLUMNS = ["key", "value", "type", "atom", "id", "parent", "fullkey", "path"]

    def _table_function_item(self, tnode: exp.Table, offset: int) -> FromItem:
        fn = tnode.this
        name = fn.name.lower()
        builder = {"json_each": C.json_each_rows, "json_tree": C.json_tree_rows}.get(name)
        if builder is None:
            raise NotSupportedError(f"no such table-valued function: {fn.name}")
        args = list(fn.expressions)
        if not 1 <= len(args) <= 2:
            raise ProgrammingError(f"wrong number of arguments to table-valued function {name}()")
        cols = self.TABLE_FUNCTION_COLUMNS
        alias = (tnode.alias or name).lower()
        src = Source(alias, list(cols), [AFF_BLOB] * len(cols), offset, None, list(cols))
        src.decl_types = [None] * len(cols)  # type: ignore[attr-defined]
        return FromItem(src, tvf=(builder, args))

    def _table_function_operator(self, it: FromItem, scope: Scope, left_width: int, bias: int) -> Any:
        """Rows of the function, computed when the item opens (per left row inside a join)."""
        builder, arg_nodes = it.tvf
        bcomp = ExprCompiler(BoundScope(scope, left_width, it.source, bias), self.params, self.subquery_runner)
        try:
            args = [bcomp.compile(a) for a in arg_nodes]
        except _NotABound:
            raise ProgrammingError("a table-valued function's arguments may only use earlier FROM items") from None
        self.explain.append(f"SCAN {it.source.name} VIRTUAL TABLE INDEX 0:")

        def rows(ctx: Any) -> list:
            values = [a.evaluate((), ctx) for a in args]
            return builder(*values)
        return C.Materialized(rows)

    def _derived_item(self, planned: PlannedQuery, alias: str, offset: int) -> FromItem:
        cols = [n.lower() for n in planned.names]
        src = Source(alias.lower(), cols, planned.affinities, offset, None, planned.names)
        src.decl_types = planned.decl_types  # type: ignore[attr-defined]
        root = planned.root
        return FromItem(src, producer=C.Materialized(lambda ctx, r=root: C.run_operator(r, ctx, -1)))

    def _view_item(self, view: Any, alias: str, offset: int) -> FromItem:
        if self._view_depth > 32:
            raise ProgrammingError(f"view {view.name} is circularly defined")
        sub = SelectPlanner(self.store, self.schema, self.params)
        sub._view_depth = self._view_depth + 1
        # Views see only the database, never the query that uses them.
        tree = parse_one(view.select_sql)
        if view.schema_name not in (MAIN, TEMP):
            # Temp views resolve names like any statement (temp first, then main), as in SQLite.
            qualify_tables(tree, view.schema_name)
        planned = sub.plan(tree, None)
        if view.columns:
            planned.names = list(view.columns)
        return self._derived_item(planned, alias, offset)

    def _master_item(self, alias: str, offset: int, temp: bool, space: str) -> FromItem:
        schema = self.schema
        names = ["type", "name", "tbl_name", "rootpage", "sql"]

        if temp:
            space = TEMP            # sqlite_temp_master is temp.sqlite_master

        def rows(ctx: Any) -> list:
            out = []
            for kind, obj in schema.objects_in(space):
                if kind == "table":
                    out.append(("table", obj.name, obj.name, obj.object_id, obj.sql))
                elif kind == "index":
                    out.append(("index", obj.name, obj.table, obj.object_id, obj.sql))
                elif kind == "view":
                    out.append(("view", obj.name, obj.name, 0, obj.sql))
                elif kind == "trigger":
                    out.append(("trigger", obj.name, obj.table, 0, obj.sql))
            return out
        src = Source(alias.lower(), names, [AFF_TEXT, AFF_TEXT, AFF_TEXT, AFF_INTEGER, AFF_TEXT], offset, None, names)
        src.decl_types = ["TEXT", "TEXT", "TEXT", "INT", "TEXT"]  # type: ignore[attr-defined]
        return FromItem(src, producer=C.Materialized(rows))

    def _database_list_item(self, alias: str, offset: int) -> FromItem:
        """SQLite's ``pragma_database_list``: (seq, name, file), main first, schemas from 2.

        Schemas live in the database's own directory, so ``file`` is '' (as
        SQLite shows for in-memory databases).
        """
        names = ["seq", "name", "file"]
        rows = [(0, "main", "")] + [(i + 2, n, "") for i, n in enumerate(self.schema.schema_names()[1:])]
        src = Source(alias.lower(), names, [AFF_INTEGER, AFF_TEXT, AFF_TEXT], offset, None, names)
        src.decl_types = [None, None, None]  # type: ignore[attr-defined]
        return FromItem(src, producer=C.Materialized(lambda ctx: rows))

    # -- joins and access paths ------------------------------------------------------------

    def _join_order(self, items: list[FromItem], conjuncts: list[exp.Expression],
                    parent: Scope | None) -> list[FromItem]:
        """Greedy join order for inner/cross joins; reassigns row offsets to match.

        Start from the item with the most selective constant equality (its rowid
        or an indexed column), then repeatedly add the item best connected to
        those already joined, preferring connections that hit its rowid or an
        index: each step then is a lookup rather than a scan or cross product.
        LEFT joins keep the written order.
        """
        if len(items) < 3 or any(it.join_kind not in ("inner", "cross") or it.tvf is not None for it in items):
            return items
        conj = list(conjuncts)
        for it in items:
            conj.extend(_split_and(it.on) if it.on is not None else [])
        names = {it.source.name: it for it in items}
        refs: list[tuple[exp.Expression, set[str], dict[str, set[str]]]] = []
        for c in conj:
            tables: set[str] = set()
            cols: dict[str, set[str]] = {}
            ok = True
            for col in _local_columns(c):
                owner = self._owner(col, items)
                if owner is None:
                    if not col.table:
                        continue        # an outer reference or unknown: not a join edge
                    ok = False
                    break
                tables.add(owner)
                cols.setdefault(owner, set()).add(col.name.lower())
            if ok:
                refs.append((c, tables, cols))

        def keyed(it: FromItem, colnames: set[str]) -> int:
            t = it.table
            if t is None:
                return 0
            keys = {"rowid", "oid", "_rowid_"}
            if t.rowid_alias is not None:
                keys.add(t.columns[t.rowid_alias].key)
            if colnames & keys:
                return 3
            for ix in self.schema.indexes_of(t):
                first = ix.parts[0].column
                if first is not None and t.columns[first].key in colnames:
                    return 2
            return 0

        def score(it: FromItem, joined: set[str]) -> int:
            best = 0
            for c, tables, cols in refs:
                if it.source.name not in tables or not isinstance(c, exp.EQ):
                    continue
                others = tables - {it.source.name}
                if not others <= joined:
                    continue
                k = keyed(it, cols.get(it.source.name, set()))
                best = max(best, (4 if not others else 2) + k)
            return best

        order: list[FromItem] = []
        joined: set[str] = set()
        remaining = list(items)
        while remaining:
            best = max(remaining, key=lambda it: (score(it, joined), -remaining.index(it)))
            order.append(best)
            joined.add(best.source.name)
            remaining.remove(best)
        del names
        offset = 0
        for it in order:
            src = it.source
            if src.rowid_pos is not None:
                src.rowid_pos = offset + (src.rowid_pos - src.offset)
            src.offset = offset
            offset += src.width
            if it is not order[0] and it.join_kind == "inner" and it.on is None:
                it.join_kind = "cross"
        # The written ON conditions move to WHERE-like conjuncts (all inner joins).
        for it in order:
            if it.on is not None:
                conjuncts.extend(_split_and(it.on))
                it.on = None
        return order

    def _owner(self, col: exp.Column, items: list[FromItem]) -> str | None:
        low = col.name.lower()
        if col.table:
            t = column_qualifier(col).lower()
            owners = [it.source.name for it in items if it.source.answers_to(t)]
            return owners[0] if len(owners) == 1 else None
        owners = [it.source.name for it in items if low in it.source.columns]
        return owners[0] if len(owners) == 1 else None

    def _plan_joins(self, items: list[FromItem], scope: Scope, conjuncts: list[exp.Expression],
                    order: "_OrderHint | None" = None) -> Any:
        if not items:
            comp = ExprCompiler(scope, self.params, self.subquery_runner)
            root = C.SingleRow()
            if conjuncts:
                root = C.Filter(root, comp.compile(_and_all(conjuncts)))
            return root
        # Below a RIGHT or FULL join every earlier row may come back NULL-padded:
        # WHERE then filters only the joined result, never an input.
        outer_right = any(it.join_kind in ("right", "full") for it in items)
        where_pending = list(conjuncts)
        root = None
        first_access = None
        left_width = 0
        for i, it in enumerate(items):
            if it.join_kind == "coalesce":
                root = self._coalesce_step(root, it, scope, left_width)
                left_width += it.source.width
                continue
            on_conj = _split_and(it.on) if it.on is not None else []
            if it.join_kind in ("right", "full"):
                root = self._outer_join(root, it, scope, items[:i], on_conj, left_width)
                left_width += it.source.width
                continue
            if it.join_kind == "left" or outer_right:
                local_pool = on_conj
            else:
                local_pool = on_conj + where_pending
            visible = {id(s.source) for s in items[: i + 1]}
            usable = [c for c in local_pool if self._refs_within(c, scope, items[: i + 1])]
            if it.join_kind != "left" and not outer_right:
                where_pending = [c for c in where_pending if not any(c is u for u in usable)]
            # Conjuncts that only involve this item (and outer/left rows) guide its access path.
            access, residual = self._access_path(it, scope, usable, left_width, bias=1 if i > 0 else 0,
                                                 order=order if i == 0 else None)
            self._table_readers.append((it, access))
            if root is None:
                first_access = access
                root = access
                if residual:
                    root = C.Filter(root, ExprCompiler(scope, self.params, self.subquery_runner)
                                    .compile(_and_all(residual)))
            else:
                # Keyed lookups, and table functions whose arguments read the left row,
                # run per left row (nested loop) rather than through a hash table.
                indexed = isinstance(access, (C.RowidLookup, C.IndexScan, C.RowidRange, C.IndexUnion)) or (
                    it.tvf is not None)
                hash_keys = None if indexed else self._hash_keys(residual, scope, items[:i], it)
                if hash_keys is not None:
                    lk, rk, keyed = hash_keys
                    root = C.HashJoin(root, access, lk, rk, self._unkeyed_cond(residual, keyed, scope),
                                      it.join_kind == "left", it.source.width)
                    self.explain.append(f"HASH JOIN {it.source.name}")
                else:
                    cond = (ExprCompiler(scope, self.params, self.subquery_runner).compile(_and_all(residual))
                            if residual else None)
                    nl = C.NestedLoopJoin(root, access, cond, it.join_kind == "left", it.source.width)
                    root = self._adaptive_join(nl, root, first_access, items[:i], it, residual, scope, cond)
            left_width += it.source.width
            del visible
        if where_pending:
            comp = ExprCompiler(scope, self.params, self.subquery_runner)
            root = C.Filter(root, comp.compile(_and_all(where_pending)))
        return root

    def _adaptive_join(self, nl: Any, left: Any, first_access: Any, left_items: list[FromItem], it: FromItem,
                       residual: list[exp.Expression], scope: Scope, cond: Any) -> Any:
        """A lookup join after one scanned table, planned as a hash join too.

        Without statistics the planner cannot tell whether one B-tree lookup
        per left row beats one scan of the right table; AdaptiveJoin reads
        both tables' row counts when it runs and picks.  Other joins keep the
        nested loop ``nl``.
        """
        table = it.table
        if (table is None or it.tvf is not None or len(left_items) != 1 or left_items[0].table is None
                or not isinstance(first_access, C.TableScan)):
            return nl
        keys = self._hash_keys(residual, scope, left_items, it)
        if keys is None:
            return nl
        right = C.TableScan(self.store, table.db_name, len(table.columns), self._defaults(table), columns=it.columns,
                            rowid=it.rowid_read)
        self._table_readers.append((it, right))
        hashed = C.HashJoin(left, right, keys[0], keys[1], self._unkeyed_cond(residual, keys[2], scope),
                            it.join_kind == "left", it.source.width)
        return C.AdaptiveJoin(nl, hashed, self.store, left_items[0].table.db_name, table.db_name)

    def _outer_join(self, root: Any, it: FromItem, scope: Scope, left_items: list[FromItem],
                    on_conj: list[exp.Expression], left_width: int) -> Any:
        """RIGHT / FULL JOIN: the right item is read whole (its unmatched rows are kept)."""
        if root is None:
            raise ProgrammingError(f"{it.join_kind.upper()} JOIN needs a left operand")
        access, _ = self._access_path(it, scope, [], left_width, bias=1)
        cond = None
        if on_conj:
            cond = ExprCompiler(scope, self.params, self.subquery_runner).compile(_and_all(on_conj))
        keys = self._hash_keys(on_conj, scope, left_items, it) or ([], [], [])
        self.explain.append(f"{it.join_kind.upper()} JOIN {it.source.name}")
        return C.OuterJoin(root, access, keys[0], keys[1], cond, it.join_kind == "full", True,
                           left_width, it.source.width)

    def _coalesce_step(self, root: Any, it: FromItem, scope: Scope, left_width: int) -> Any:
        """Appends coalesce(left.c, right.c) for each USING column of a RIGHT/FULL join."""
        exprs: list = [C.ColRef(j) for j in range(left_width)]
        for lname, rname, col in it.coalesce or []:
            lhit = scope.lookup(col, lname)
            rhit = scope.lookup(col, rname)
            assert lhit is not None and rhit is not None
            exprs.append(C.Coalesce([C.ColRef(lhit[1]), C.ColRef(rhit[1])]))
        return C.Project(root, exprs)

    def _refs_within(self, node: exp.Expression, scope: Scope, items: list[FromItem]) -> bool:
        """True if every local column reference of ``node`` resolves into ``items``."""
        limit = sum(it.source.width for it in items)
        for col in _local_columns(node):
            try:
                hit = scope.lookup(col.name, column_qualifier(col))
            except ProgrammingError:
                return False
            if hit is None:
                continue
            if hit[0] == 0 and hit[1] >= limit:
                return False
        return True

    def _access_path(self, it: FromItem, scope: Scope, conj: list[exp.Expression], left_width: int,
                     bias: int, order: "_OrderHint | None" = None,
                     consume_key: bool = False) -> tuple[Any, list[exp.Expression]]:
        """Chooses how to read one FROM item; returns (operator, conjuncts still to apply).

        With ``order`` (the query's ORDER BY, for its only table), records in
        ``order.satisfied`` whether the rows come out in that order already;
        with a LIMIT, an index in that order is read rather than sorting.

        With ``consume_key``, a single-row rowid lookup leaves out of the
        conjuncts the ``rowid = expr`` it probes with: RowidLookup converts the
        probe value as that comparison does (rowid_probe_value: numeric
        affinity, exact integer equality, NULL matches nothing), so the filter
        could only repeat the answer.  Callers that mine the conjuncts for join
        keys (hash or adaptive joins) keep the default and see every conjunct.
        """
        if it.tvf is not None:
            return self._table_function_operator(it, scope, left_width, bias), conj
        if it.producer is not None:
            return it.producer, conj
        table = it.table
        assert table is not None
        src = it.source
        ncols = len(table.columns)
        defaults = self._defaults(table)
        indexes, expr_affs = self._searchable_indexes(table)
        bcomp = ExprCompiler(BoundScope(scope, left_width, src, bias), self.params, self.subquery_runner)
        terms = _IndexTerms()
        ccomp = ExprCompiler(scope, self.params)        # comparison collations only
        for c in conj:
            for key, op, bound, coll in _index_terms(c, scope, src, expr_affs, ccomp):
                terms.add(_search_key(key, coll), op, bound, bcomp, expr_affs, c)
        eqs, ranges, ins = terms.eqs, terms.ranges, terms.ins
        rowid_col = ncols  # the rowid's slot in the source
        key_cols = {rowid_col}
        if table.rowid_alias is not None:
            key_cols.add(table.rowid_alias)
        store = self.store
        wanted = order.keys(scope, src, expr_affs) if order is not None else None
        rowid_order = wanted is not None and _rowid_ordered(wanted, key_cols)
        for kc in key_cols:
            if kc in eqs:
                self.explain.append(f"SEARCH {src.name} USING INTEGER PRIMARY KEY (rowid=?)")
                op = C.RowidLookup(store, table.db_name, ncols, defaults, eqs[kc][0], columns=it.columns)
                if order is not None:
                    order.satisfied = True        # at most one row
                if consume_key:
                    probed = terms.eq_sources[kc]
                    return op, [c for c in conj if c is not probed]
                return op, conj
        # The index with the longest equality prefix, then an IN list or a range on the next part.
        best = None
        for ix in indexes:
            keys = _search_keys(table, ix)
            n_eq = 0
            for k in keys:
                if k not in eqs:
                    break
                n_eq += 1
            in_terms = rng = None
            if n_eq < len(keys):
                if keys[n_eq] in ins:
                    in_terms = ins[keys[n_eq]]
                elif keys[n_eq] in ranges and not ix.parts[n_eq].desc:
                    rng = ranges[keys[n_eq]]
            score = (n_eq * 10 + (8 if in_terms else 0) + (1 if rng else 0)
                     + (5 if ix.unique and n_eq == len(keys) else 0))
            if score > 0 and (best is None or score > best[0]):
                best = (score, ix, keys, n_eq, in_terms, rng)
        for kc in key_cols:
            if kc in ins and (best is None or best[0] < 10):
                self.explain.append(f"SEARCH {src.name} USING INTEGER PRIMARY KEY (rowid=?)")
                if order is not None:
                    order.satisfied = rowid_order     # the keys are probed in ascending order
                return C.RowidLookup(store, table.db_name, ncols, defaults, [b for b, _n in ins[kc]],
                                     columns=it.columns), conj
        for kc in key_cols:
            if kc in ranges and (best is None or best[0] < 10):
                lo, lo_incl, hi, hi_incl = _range_bounds(ranges[kc])
                self.explain.append(f"SEARCH {src.name} USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)")
                if order is not None:
                    order.satisfied = rowid_order
                return C.RowidRange(store, table.db_name, ncols, defaults, lo, lo_incl, hi, hi_incl,
                                    columns=it.columns), conj
        if wanted is not None and not rowid_order and (best is None or best[0] < 10) and order.limited:
            # ORDER BY ... LIMIT: read an index in that order and stop early, rather than sort all rows.
            for ix in indexes:
                keys = _search_keys(table, ix)
                if _index_ordered(wanted, ix, keys, 0, key_cols):
                    rng = ranges.get(keys[0]) if not ix.parts[0].desc else None
                    best = (0, ix, keys, 0, None, rng)
                    break
        if best is not None:
            direction = _index_ordered(wanted, best[1], best[2], best[3], key_cols)
            if order is not None:
                order.satisfied = direction != 0
            return self._index_scan(src, table, defaults, best, eqs, bcomp, reverse=direction < 0,
                                    columns=it.columns), conj
        if order is not None:
            order.satisfied = rowid_order
        union = self._or_union(it, scope, conj, left_width, bias)
        if union is not None:
            if order is not None:
                order.satisfied = False
            return union, conj
        if table.without_rowid:
            # SQLite stores such a table in its key's order: read the key's index.
            pk_index = self._primary_key_index(table)
            keys = _search_keys(table, pk_index)
            return self._index_scan(src, table, defaults, (0, pk_index, keys, 0, None, None), eqs, bcomp,
                                    columns=it.columns), conj
        self.explain.append(f"SCAN {src.name}")
        return C.TableScan(store, table.db_name, ncols, defaults, columns=it.columns, rowid=it.rowid_read), conj

    def _primary_key_index(self, table: Table) -> Index:
        """The unique index CREATE TABLE made for ``table``'s PRIMARY KEY."""
        for ix in self.schema.table_indexes.get(table.key, []):
            if ix.origin == "pk":
                return ix
        raise NotSupportedError(f"table {table.name} has lost its PRIMARY KEY index")

    def _or_union(self, it: FromItem, scope: Scope, conj: list[exp.Expression], left_width: int,
                  bias: int) -> Any:
        """For ``x OR y ...`` whose every term has an index or rowid access of its
        own: the union of those accesses (IndexUnion), else None."""
        for c in conj:
            terms = _split_or(c)
            if len(terms) < 2:
                continue
            mark = len(self.explain)
            self.explain.append("MULTI-INDEX OR")
            parts = []
            for n, term in enumerate(terms, 1):
                self.explain.append(f"INDEX {n}")
                op, _ = self._access_path(it, scope, _split_and(term), left_width, bias)
                if isinstance(op, C.TableScan):
                    break
                parts.append(op)
            if len(parts) == len(terms):
                return C.IndexUnion(parts)
            del self.explain[mark:]
        return None

    def _searchable_indexes(self, table: Table) -> tuple[list[Index], dict[str, int | None]]:
        """The table's indexes a probe can search, and its index expressions (signature -> affinity)."""
        indexes = [ix for ix in self.schema.indexes_of(table) if _searchable(table, ix)]
        expr_affs = {key[1]: _index_part_affinity(table, p) for ix in indexes for p in ix.parts
                     if isinstance(key := _part_key(table, p), tuple)}
        return indexes, expr_affs

    def _min_max_scan(self, items: list[FromItem], scope: Scope, select_nodes: list[exp.Expression]) -> Any:
        """``SELECT min(x)`` / ``max(x)`` FROM one table, x the first part of an index:
        the first non-NULL entry from the matching end of the index, so the
        aggregate above sees one row instead of the table.  None otherwise."""
        if len(items) != 1 or len(select_nodes) != 1 or items[0].table is None or items[0].tvf is not None:
            return None
        call = _unalias(select_nodes[0])
        if not (isinstance(call, exp.Anonymous) and call.name.lower() in ("min", "max")
                and len(call.expressions) == 1):
            return None
        table, src = items[0].table, items[0].source
        indexes, expr_affs = self._searchable_indexes(table)
        key = _term_key(call.expressions[0], scope, src, expr_affs)
        comp = ExprCompiler(scope, self.params, self.subquery_runner)
        for ix in indexes:
            # A NOCASE/RTRIM part's first entry holds a folded value, not min()'s answer.
            if key is None or _search_keys(table, ix)[0] != key or comp.collation(call.expressions[0]):
                continue
            reverse = (call.name.lower() == "max") != ix.parts[0].desc
            columns = items[0].columns
            cover = _covering_shape(table, ix, columns)
            op = C.IndexScan(self.store, table.db_name, ix.db_name, len(table.columns), self._defaults(table),
                             ix.desc_flags, [], True, [], True, None, None, reverse, columns=columns, cover=cover)
            self.explain.append(f"SEARCH {src.name} USING {_index_words(table, ix, cover)}")
            not_null = C.IsNull(comp.compile(call.expressions[0]), True)
            return C.Limit(C.Filter(op, not_null), C.Const(1), None)
        return None

    def _index_scan(self, src: Source, table: Table, defaults: tuple | None, best: tuple,
                    eqs: dict, bcomp: ExprCompiler, reverse: bool = False,
                    columns: tuple[int, ...] | None = None) -> Any:
        """The IndexScan for the chosen index: equality prefix, then an IN list or a range.

        When the index holds every column the query reads (``columns``), the
        scan reads the index alone (a covering index, as SQLite says)."""
        _score, ix, keys, n_eq, in_terms, rng = best
        labels = [_part_label(table, p) for p in ix.parts]
        folds = index_key_folds(table, ix)
        eq_vals = [self._probe(*eqs[k], _index_part_affinity(table, p), bcomp, fold)
                   for k, p, fold in zip(keys[:n_eq], ix.parts, folds)]
        lo_list, hi_list = list(eq_vals), list(eq_vals)
        lo_incl = hi_incl = True
        desc = [f"{label}=?" for label in labels[:n_eq]]
        in_list = None
        if in_terms:
            aff = _index_part_affinity(table, ix.parts[n_eq])
            in_list = [self._probe(b, n, aff, bcomp, folds[n_eq]) for b, n in in_terms]
            desc.append(f"{labels[n_eq]}=?")
        elif rng:
            aff = _index_part_affinity(table, ix.parts[n_eq])
            lo, lo_i, hi, hi_i = _range_bounds(rng)
            lo_node, hi_node = _range_bound_nodes(rng)
            # Bounds take the comparison affinity the filter applies (a TEXT
            # column turns a bare 0 into '0'), or the range would miss rows.
            if lo is not None:
                lo_list.append(self._probe(lo, lo_node, aff, bcomp, folds[n_eq]))
                lo_incl = lo_i
                desc.append(f"{labels[n_eq]}>?")
            if hi is not None:
                hi_list.append(self._probe(hi, hi_node, aff, bcomp, folds[n_eq]))
                hi_incl = hi_i
                desc.append(f"{labels[n_eq]}<?")
        cover = _covering_shape(table, ix, columns)
        if desc:
            self.explain.append(f"SEARCH {src.name} USING {_index_words(table, ix, cover)} ({' AND '.join(desc)})")
        else:
            self.explain.append(f"SCAN {src.name} USING {_index_words(table, ix, cover)}")
        return C.IndexScan(self.store, table.db_name, ix.db_name, len(table.columns), defaults, ix.desc_flags,
                           lo_list, lo_incl, hi_list, hi_incl, None, in_list, reverse, columns=columns, cover=cover)

    def _probe(self, bound: Any, bound_node: exp.Expression, aff: int | None, comp: ExprCompiler,
               fold: int) -> Any:
        """Converts a probe value to what the index stores: the comparison affinity
        the filter applies, given the affinity of the index part (None: none),
        then the folding of the part's collation (engine/collation.py)."""
        other = comp.affinity(bound_node)
        if aff in NUMERIC_AFFS and other not in NUMERIC_AFFS:
            bound = C.Affinity(bound, AFF_NUMERIC)
        elif aff == AFF_TEXT and other is None:
            bound = C.Affinity(bound, AFF_TEXT)
        return collated_key(bound, fold)

    def _unkeyed_cond(self, residual: list[exp.Expression], keyed: list[exp.Expression], scope: Scope) -> Any:
        """A hash join's condition: the conjuncts its keys do not already decide.

        A hash match is SQLite equality for the keys (same values after
        comparison affinity, no collation, NULL never matches), so checking
        them again per joined row would only cost time."""
        rest = [c for c in residual if not any(c is k for k in keyed)]
        return ExprCompiler(scope, self.params, self.subquery_runner).compile(_and_all(rest)) if rest else None

    def _hash_keys(self, residual: list[exp.Expression], scope: Scope, left_items: list[FromItem],
                   right: FromItem) -> tuple[list, list, list] | None:
        """Equality conjuncts usable as hash-join keys: (left key exprs, right key exprs, those conjuncts)."""
        left_limit = sum(it.source.width for it in left_items)
        r0, r1 = right.source.offset, right.source.offset + right.source.width
        lkeys, rkeys, keyed = [], [], []
        comp = ExprCompiler(scope, self.params, self.subquery_runner)
        # Right keys are evaluated on the right input's rows alone: compile them
        # against a scope where the right source starts at position 0.
        from dataclasses import replace as dc_replace
        rsrc = dc_replace(right.source, offset=0,
                          rowid_pos=(right.source.rowid_pos - r0) if right.source.rowid_pos is not None else None)
        rsrc.decl_types = getattr(right.source, "decl_types", None)  # type: ignore[attr-defined]
        rcomp = ExprCompiler(Scope([rsrc], scope.parent), self.params, self.subquery_runner)
        for c in residual:
            if not isinstance(c, exp.EQ):
                continue
            sides = []
            for operand in (c.this, c.expression):
                cols = list(_local_columns(operand))
                if not cols or _has_subquery(operand):
                    sides.append(None)
                    continue
                positions = set()
                for col in cols:
                    hit = scope.lookup(col.name, column_qualifier(col))
                    positions.add("L" if hit and hit[0] == 0 and hit[1] < left_limit else
                                  "R" if hit and hit[0] == 0 and r0 <= hit[1] < r1 else "X")
                sides.append(positions.pop() if len(positions) == 1 else None)
            if sides in (["L", "R"], ["R", "L"]):
                lnode, rnode = (c.this, c.expression) if sides[0] == "L" else (c.expression, c.this)
                if comp.collation(lnode) or comp.collation(rnode):
                    continue
                # Python's hash equality matches SQLite's for values of one storage
                # class (1 == 1.0); comparison affinity normalises the classes first.
                lk, rk = comp.compile(lnode), rcomp.compile(rnode)
                la, ra = comp.affinity(lnode), comp.affinity(rnode)
                lk, rk = _apply_comparison_affinity(lk, la, rk, ra)
                lkeys.append(lk)
                rkeys.append(rk)
                keyed.append(c)
        return (lkeys, rkeys, keyed) if lkeys else None

    def _defaults(self, table: Table) -> tuple | None:
        """Values for columns added by ALTER TABLE after a row was written."""
        from .ddl import table_defaults
        return table_defaults(table)

    # -- select list helpers -------------------------------------------------------------

    def _expand_stars(self, nodes: list[exp.Expression], items: list[FromItem]) -> list[exp.Expression]:
        out: list[exp.Expression] = []
        for n in nodes:
            if isinstance(n, exp.Star):
                if not items:
                    raise ProgrammingError("no tables specified")
                for it in items:
                    if it.join_kind != "coalesce":
                        out.extend(self._source_columns(it, hide_using=True, items=items))
            elif isinstance(n, exp.Column) and isinstance(n.this, exp.Star):
                # Every item the qualifier names: t.* over s.t AS t JOIN main.t is
                # both tables' columns, as in SQLite.
                qualifier = column_qualifier(n)
                match = [it for it in items if it.source.answers_to(qualifier.lower())]
                if not match:
                    raise NoSuchObjectError(f"no such table: {qualifier}")
                for it in match:
                    out.extend(self._source_columns(it, hide_using=False, items=items))
            else:
                out.append(n)
        return out

    def _source_columns(self, it: FromItem, hide_using: bool,
                        items: list[FromItem] | None = None) -> list[exp.Expression]:
        cols = []
        by_name = {p.source.name: p.source for p in items or []}
        for name, display in zip(it.source.columns, it.source.display or it.source.columns):
            table = it.source.name
            target = it.source.coalesced_by.get(name)
            if target is not None and target in by_name:
                # A RIGHT/FULL USING column shows its merged value where the left
                # copy stood, in ``*`` and in ``left.*`` alike (as SQLite does).
                while name in by_name[target].coalesced_by:
                    target = by_name[target].coalesced_by[name]
                table = target
            elif hide_using and name in it.source.using_hidden:
                continue
            col = exp.column(display, table=table, quoted=True)
            cols.append(exp.alias_(col, display, quoted=True))
        return cols

    def _having_aliases(self, node: exp.Expression, select_nodes: list, names: list[str],
                        scope: Scope) -> exp.Expression:
        """HAVING may name a result column by its alias when no FROM column has that name (as in SQLite)."""
        aliases = {name.lower(): sn.this for sn, name in zip(select_nodes, names) if isinstance(sn, exp.Alias)}
        if not aliases:
            return node

        def substitute(n: exp.Expression) -> exp.Expression:
            if isinstance(n, exp.Column) and not n.table and n.name.lower() in aliases:
                try:
                    if scope.lookup(n.name, None) is not None:
                        return n
                except ProgrammingError:
                    return n              # ambiguous among the FROM columns: let compilation say so
                return aliases[n.name.lower()].copy()
            return n
        return node.transform(substitute)

    def _resolve_order(self, node: exp.Expression, select_nodes: list, names: list[str],
                       index: int = 0) -> exp.Expression:
        return self._resolve_alias_or_position(node, select_nodes, names, "ORDER BY", index)

    def _resolve_alias_or_position(self, node: exp.Expression, select_nodes: list, names: list[str],
                                   clause: str, index: int = 0) -> exp.Expression:
        """The expression an ORDER BY / GROUP BY term (the ``index``-th, from 0)
        stands for: a result column named by alias or by integer position, else
        the term itself.  ``ORDER BY 2 COLLATE NOCASE`` keeps its collation."""
        if isinstance(node, exp.Column) and not node.table:
            low = node.name.lower()
            for sn, name in zip(select_nodes, names):
                if isinstance(sn, exp.Alias) and name.lower() == low:
                    return sn.this
        pos = _term_position(node, len(select_nodes), clause, index)
        if pos is None:
            return node
        target = _unalias(select_nodes[pos]).copy()
        if isinstance(node, exp.Collate):
            return exp.Collate(this=target, expression=node.expression.copy())
        return target

    def _select_position(self, node: exp.Expression, select_nodes: list, names: list[str]) -> int | None:
        if isinstance(node, exp.Column) and not node.table:
            low = node.name.lower()
            for i, (sn, name) in enumerate(zip(select_nodes, names)):
                if isinstance(sn, exp.Alias) and name.lower() == low:
                    return i
        if _integer_term(node) is not None:
            # Validated by _resolve_alias_or_position; a collated position sorts by its own key.
            return None if isinstance(node, exp.Collate) else _integer_term(node) - 1
        key = node.sql(dialect="sqlite").lower()
        for i, sn in enumerate(select_nodes):
            if _unalias(sn).sql(dialect="sqlite").lower() == key:
                return i
        return None

    # -- compounds and VALUES --------------------------------------------------------------

    def _plan_compound(self, node: exp.Expression, parent: Scope | None) -> PlannedQuery:
        left = self.plan(node.this, parent)
        right = self.plan(node.expression, parent)
        if len(left.names) != len(right.names):
            kind = type(node).__name__.upper()
            raise ProgrammingError(f"SELECTs to the left and right of {kind} do not have the same number of result columns")
        distinct = bool(node.args.get("distinct", True))
        kind = type(node).__name__.lower()
        lroot, rroot = left.root, right.root

        def rows(ctx: Any) -> list:
            a = C.run_operator(lroot, ctx, -1)
            b = C.run_operator(rroot, ctx, -1)
            if kind == "union" and not distinct:
                return a + b
            # SQLite builds each set in an index whose inserts replace an equal
            # row, so of rows equal but for type (1 and 1.0) the LAST one read
            # is returned: from both sides for UNION, from the left for
            # INTERSECT and EXCEPT.
            if kind == "union":
                kept = _last_of_equals(a + b)
            else:
                bs = set(b)
                keep_if = kind == "intersect"
                kept = {k: r for k, r in _last_of_equals(a).items() if (k in bs) == keep_if}
            return sorted(kept.values(), key=C.encode_key)
        root = C.Materialized(rows)
        order = node.args.get("order")
        names = left.names
        if order is not None:
            keys, desc = [], bytearray()
            for o in order.expressions:
                pos = self._compound_position(o.this, names, node, len(keys))
                keys.append(C.ColRef(pos))
                desc.append(1 if o.args.get("desc") else 0)
            root = C.Sort(root, keys, bytes(desc))
        root = self._limit(node, root, Scope([], parent))
        return PlannedQuery(root, names, left.decl_types, left.affinities, self.explain)

    def _compound_position(self, node: exp.Expression, names: list[str], compound: exp.Expression,
                           index: int) -> int:
        pos = _term_position(node, len(names), "ORDER BY", index)
        if pos is not None:
            return pos
        if isinstance(node, exp.Column):
            low = node.name.lower()
            for i, n in enumerate(names):
                if n.lower() == low:
                    return i
        # An expression matching a result column of the left-most SELECT.
        first = compound
        while isinstance(first, (exp.Union, exp.Except, exp.Intersect)):
            first = first.this
        if isinstance(first, exp.Select):
            key = node.sql(dialect="sqlite").lower()
            for i, sn in enumerate(first.expressions):
                if _unalias(sn).sql(dialect="sqlite").lower() == key:
                    return i
        raise ProgrammingError(f"{_ordinal(index + 1)} ORDER BY term does not match any column in the result set")

    def _plan_values(self, node: exp.Values, parent: Scope | None) -> PlannedQuery:
        comp = ExprCompiler(Scope([], parent), self.params, self.subquery_runner)
        rows = [comp.compile_list(list(t.expressions)) for t in node.expressions]
        width = len(rows[0]) if rows else 0
        if any(len(r) != width for r in rows):
            raise ProgrammingError("all VALUES must have the same number of terms")
        names = [f"column{i + 1}" for i in range(width)]
        return PlannedQuery(C.ValuesScan(rows), names, [None] * width, [AFF_BLOB] * width, self.explain)


@dataclass
class _CTE:
    """One WITH entry.  Its rows are computed once per execution and shared by
    every reference (``rows`` keeps them in the execution's subquery cache)."""
    name: str
    body: exp.Expression
    columns: list[str] | None
    recursive: bool
    visible: dict
    planned: PlannedQuery | None = None
    planning: bool = False
    producer: Callable | None = None
    cacheable: bool = True          # False for a recursive CTE's working table (one queue row)
    key: object = field(default_factory=object)

    def rows(self, ctx: Any) -> list:
        assert self.producer is not None
        if not self.cacheable:
            return self.producer(ctx)
        cache = ctx.subquery_cache
        hit = cache.get(self.key)
        if hit is None:
            hit = self.producer(ctx)
            cache[self.key] = hit
        return hit


def _rename_cte_columns(entry: _CTE, planned: PlannedQuery) -> None:
    if entry.columns is None:
        return
    if len(entry.columns) != len(planned.names):
        raise ProgrammingError(f"table {entry.name} has {len(planned.names)} values for "
                               f"{len(entry.columns)} columns")
    planned.names = list(entry.columns)


def _count_value(v: Any, what: str) -> int:
    """A LIMIT/OFFSET value as SQLite reads it (integer-valued; negative LIMIT = none)."""
    n = C.apply_affinity(v, AFF_NUMERIC) if v is not None else None
    if isinstance(n, float) and n == int(n):
        n = int(n)
    if not isinstance(n, int):
        raise DataError(f"datatype mismatch: {what} must be an integer")
    return n


class _CorrelationProbe(Scope):
    """Wraps a parent scope and records whether a subquery reached into it."""

    def __init__(self, parent: Scope) -> None:
        super().__init__(parent.sources, parent.parent)
        self.inner = parent
        self.used = False

    def lookup(self, name: str, table: str | None):
        hit = self.inner.lookup(name, table)
        if hit is not None:
            self.used = True
        return hit

    @property
    def width(self) -> int:
        return self.inner.width


# -- small AST helpers -----------------------------------------------------------------------

def _apply_comparison_affinity(a: Any, la: int | None, b: Any, ra: int | None) -> tuple[Any, Any]:
    """SQLite datatype3 4.2: numeric affinity wins over text/none; text over none."""
    if la in NUMERIC_AFFS and ra not in NUMERIC_AFFS:
        return a, C.Affinity(b, AFF_NUMERIC)
    if ra in NUMERIC_AFFS and la not in NUMERIC_AFFS:
        return C.Affinity(a, AFF_NUMERIC), b
    if la == AFF_TEXT and ra is None:
        return a, C.Affinity(b, AFF_TEXT)
    if ra == AFF_TEXT and la is None:
        return C.Affinity(a, AFF_TEXT), b
    return a, b


def _is_inner(join: exp.Join | None) -> bool:
    return join is None or not (join.side or "") or (join.side or "").upper() == "INNER"


def _flatten_join_groups(items: list[tuple[exp.Expression, exp.Join | None]]) -> list[tuple[exp.Expression, Any]]:
    """Expands parenthesised join groups "(a JOIN b ON ...)" into the FROM list.

    For inner and cross joins the grouping does not change the result, so the
    group's tables join in order and its ON conditions move onto them.
    """
    out: list[tuple[exp.Expression, Any]] = []
    for tnode, join in items:
        group = tnode.this if isinstance(tnode, exp.Subquery) and not tnode.alias else None
        if not (isinstance(group, exp.Table) and group.args.get("joins")):
            out.append((tnode, join))
            continue
        inner_joins = list(group.args["joins"])
        if not _is_inner(join) or not all(_is_inner(j) for j in inner_joins):
            raise NotSupportedError("parenthesised joins with LEFT/RIGHT/FULL are not supported yet")
        first = group.copy()
        first.set("joins", None)
        on = join.args.get("on") if join is not None else None
        outer = exp.Join(this=first, on=on) if join is not None else None
        out.extend(_flatten_join_groups([(first, outer)] + [(j.this, j) for j in inner_joins]))
    return out


def _split_and(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    out: list[exp.Expression] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, exp.Paren) and isinstance(n.this, exp.And):
            n = n.this
        if isinstance(n, exp.And):
            stack.append(n.expression)
            stack.append(n.this)
        else:
            out.append(n)
    return out


def _split_or(node: exp.Expression) -> list[exp.Expression]:
    """The terms of an OR chain (a single term if ``node`` is not an OR)."""
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Or):
        return [node]
    return _split_or(node.this) + _split_or(node.expression)


def _and_all(nodes: list[exp.Expression]) -> exp.Expression:
    result = nodes[0]
    for n in nodes[1:]:
        result = exp.And(this=result, expression=n)
    return result



_INT32_MAX = 2**31 - 1


def _integer_term(node: exp.Expression) -> int | None:
    """The integer an ORDER BY / GROUP BY term folds to, by SQLite's rule, else None.

    SQLite (sqlite3ExprIsInteger) takes a term as a column position when it is
    an integer literal that fits 32 bits, possibly parenthesised, negated or
    collated; its parser also folds ``x AND 0`` / ``0 AND x`` to the literal 0
    (a literal zero only: ``x AND -0`` or ``x AND false`` stay expressions).
    """
    node = _strip_parens(node.this if isinstance(node, exp.Collate) else node)
    if isinstance(node, exp.Neg):
        inner = _integer_term(node.this)
        return -inner if inner is not None else None
    if isinstance(node, exp.And):
        return 0 if _folds_to_zero(node) else None
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            value = int(node.this, 0) if node.this.lower().startswith("0x") else int(node.this)
        except ValueError:
            return None
        return value if value <= _INT32_MAX else None
    return None


def _folds_to_zero(node: exp.Expression) -> bool:
    """True for a literal integer 0 or an AND that SQLite's parser folds to one."""
    node = _strip_parens(node)
    if isinstance(node, exp.And):
        return _folds_to_zero(node.this) or _folds_to_zero(node.expression)
    return isinstance(node, exp.Literal) and not node.is_string and _integer_term(node) == 0


def _strip_parens(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _term_position(node: exp.Expression, width: int, clause: str, index: int) -> int | None:
    """The 0-based result column an integer ORDER BY / GROUP BY term names, None
    for other terms; an integer outside 1..width is SQLite's out-of-range error."""
    k = _integer_term(node)
    if k is None:
        return None
    if not 1 <= k <= width:
        raise ProgrammingError(
            f"{_ordinal(index + 1)} {clause} term out of range - should be between 1 and {width}")
    return k - 1


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st: SQLite's %r format."""
    if n % 100 in (11, 12, 13):
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def _last_of_equals(rows: list) -> dict:
    """Each distinct row (Python equality: 1 == 1.0) mapped to its last occurrence."""
    last: dict = {}
    for r in rows:
        last[r] = r
    return last


def _unalias(node: exp.Expression) -> exp.Expression:
    return node.this if isinstance(node, exp.Alias) else node


def _output_name(node: exp.Expression, sql: str | None = None) -> str:
    if isinstance(node, exp.Alias):
        return node.alias
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        return node.name
    return source_text(node, sql) or node.sql(dialect="sqlite")


def _check_distinct_name(items: list[FromItem], item: FromItem) -> None:
    """A FROM item's name must be new at its level, unless a schema can tell the
    two same-named items apart: ``FROM s.t JOIN main.t`` (or ``FROM s.t AS t JOIN
    main.t``, or a subquery named t beside main.t).  Each of them that lives in a
    schema is then named ``schema.name`` and still answers to the bare name, so
    ``main.t.c`` picks one and a bare ``t.c`` means whichever of them has c
    (both having it is SQLite's "ambiguous column name")."""
    for it in items:
        if it.source.name != item.source.name:
            continue
        pair = (it.source, item.source)
        placed = [s for s in pair if _schema_qualified(s)]
        if not placed or pair[0].aka == pair[1].aka:
            raise ProgrammingError(f"ambiguous table name in FROM: {item.source.name}")
        for src in placed:
            src.name, src.aka = src.aka[0], (src.name,)


def _schema_qualified(src: Source) -> bool:
    """Whether ``src`` (a table or view) also answers to ``schema.name``."""
    return bool(src.aka) and "." in src.aka[0]


def _local_columns(node: exp.Expression):
    """Column nodes of ``node`` that belong to this query level (not inside subqueries)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, exp.Column):
            yield n
            continue
        if isinstance(n, (exp.Subquery, exp.Select, exp.Exists)):
            continue
        stack.extend(n.iter_expressions())


def _has_subquery(node: exp.Expression) -> bool:
    return any(isinstance(n, (exp.Subquery, exp.Select, exp.Exists)) for n in node.walk())


def _column_position(node: exp.Expression, scope: Scope) -> int | None:
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Column):
        return None
    try:
        hit = scope.lookup(node.name, column_qualifier(node))
    except ProgrammingError:
        return None
    if hit is None or hit[0] != 0:
        return None
    return hit[1]


_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq"}
_OPS = {exp.EQ: "eq", exp.LT: "lt", exp.LTE: "le", exp.GT: "gt", exp.GTE: "ge"}


# Part keys: an index part is known to the planner's term tables by the table
# column position of a column part, or ("x", signature) of an expression part.


def _index_terms(node: exp.Expression, scope: Scope, src: Source, expr_affs: dict[str, int | None],
                 comp: ExprCompiler) -> list[tuple[Any, str, Any, int]]:
    """(part key, op, bound node(s), collation) terms of a conjunct that an index or rowid access can use.

    ``op`` is eq / lt / le / gt / ge, or "in" with a list of bound nodes.  The
    keyed side is a column of ``src`` or an expression some index of it is
    defined on; whether the bound side is computable before the row is read
    is decided when it is compiled (BoundScope).  The collation is the one the
    comparison uses (SQLite's rule, as ExprCompiler.compare_operands applies it).
    """
    coll = comp.comparison_collation
    op = _OPS.get(type(node))
    if op is not None:
        lk = _term_key(_uncollated(node.this), scope, src, expr_affs)
        rk = _term_key(_uncollated(node.expression), scope, src, expr_affs)
        if lk is not None and rk is None:
            return [(lk, op, node.expression, coll(node.this, node.expression))]
        if rk is not None and lk is None:
            return [(rk, _FLIP[op], node.this, coll(node.this, node.expression))]
        return []
    if isinstance(node, exp.Between):
        k = _term_key(_uncollated(node.this), scope, src, expr_affs)
        low, high = node.args["low"], node.args["high"]
        return [] if k is None else [(k, "ge", low, coll(node.this, low)), (k, "le", high, coll(node.this, high))]
    if isinstance(node, exp.In) and node.expressions and not any(
            node.args.get(a) for a in ("query", "unnest", "field")):
        k = _term_key(_uncollated(node.this), scope, src, expr_affs)
        return [] if k is None else [(k, "in", list(node.expressions), comp.collation(node.this))]
    return []


def _uncollated(node: exp.Expression) -> exp.Expression:
    """``x COLLATE c`` as the keyed side of a term is ``x`` (the term records the collation)."""
    return node.this if isinstance(node, exp.Collate) else node


def _term_key(side: exp.Expression, scope: Scope, src: Source, expr_affs: dict[str, int | None]) -> Any:
    """The part key ``side`` designates in ``src``: a column position (the rowid
    is the slot after the columns), an index expression's key, or None."""
    pos = _column_position(side, scope)
    if pos is not None:
        return pos - src.offset if src.offset <= pos < src.offset + src.width else None
    if not expr_affs or isinstance(side, (exp.Literal, exp.Placeholder, exp.Parameter)):
        return None

    def resolve(col: exp.Column) -> int | None:
        try:
            hit = scope.lookup(col.name, column_qualifier(col))
        except ProgrammingError:
            return None
        if hit is None or hit[0] != 0 or not src.offset <= hit[1] < src.offset + len(src.columns):
            return None
        return hit[1] - src.offset

    sig = _expression_signature(side, resolve)
    return ("x", sig) if sig is not None and sig in expr_affs else None


def _expression_signature(node: exp.Expression, resolve: Callable[[exp.Column], int | None]) -> str | None:
    """Canonical text of an expression over one table's columns, or None.

    Column references become the column's position (so ``o.doc`` in a query
    and ``doc`` in CREATE INDEX agree), redundant parentheses go and function
    names are lower-cased; nothing else is rewritten.  That is SQLite's rule
    for using an expression index: the query must spell the indexed
    expression itself (``doc ->> '$.a'`` does not match an index on
    ``json_extract(doc, '$.a')``).  None when a column is not the table's or
    the expression holds a subquery.
    """
    while isinstance(node, exp.Paren):
        node = node.this
    if _has_subquery(node):
        return None
    tree = node.copy()
    for col in list(tree.find_all(exp.Column)):
        pos = resolve(col)
        if pos is None:
            return None
        col.replace(exp.Column(this=exp.Identifier(this=f"#{pos}", quoted=True)))
    for paren in list(tree.find_all(exp.Paren)):
        paren.replace(paren.this)
    for fn in tree.find_all(exp.Anonymous):
        fn.set("this", fn.name.lower())
    return to_sql(tree)


@functools.lru_cache(maxsize=512)
def _stored_expression_signature(expr_sql: str, table_name: str, column_keys: tuple[str, ...]) -> str | None:
    """The signature of an index's expression (its stored SQL) over its table."""
    node = parse_one("SELECT " + expr_sql).expressions[0]

    def resolve(col: exp.Column) -> int | None:
        if col.table and col.table.lower() != table_name:
            return None
        low = col.name.lower()
        return column_keys.index(low) if low in column_keys else None

    return _expression_signature(node, resolve)


def _part_key(table: Table, part: IndexPart) -> Any:
    if part.column is not None:
        return part.column
    sig = _stored_expression_signature(part.expr_sql or "", table.key, tuple(c.key for c in table.columns))
    return ("x", sig) if sig is not None else None


def _part_label(table: Table, part: IndexPart) -> str:
    """How EXPLAIN QUERY PLAN names an index part (SQLite writes <expr> for expressions)."""
    return table.columns[part.column].name if part.column is not None else "<expr>"


def _index_part_affinity(table: Table, part: IndexPart) -> int | None:
    """The affinity index entries of this part were compared with (None: none)."""
    if part.column is not None:
        return table.columns[part.column].affinity
    return _stored_expression_affinity(part.expr_sql or "NULL")


@functools.lru_cache(maxsize=512)
def _stored_expression_affinity(expr_sql: str) -> int | None:
    # Only a CAST gives an expression an affinity; column references do not matter.
    return ExprCompiler(Scope([]), ParamSpec.EMPTY).affinity(parse_one("SELECT " + expr_sql).expressions[0])


# Key-codec affinity letters for the column affinities whose values come back
# exactly from an index key (keycodec.pxi): TEXT columns hold no numbers, REAL
# ones no integers, INTEGER/NUMERIC ones store integral reals as integers.
# A column without affinity may hold 5 and 5.0, which share one key.
_KEY_AFFINITY = {AFF_INTEGER: ord("I"), AFF_REAL: ord("R"), AFF_NUMERIC: ord("N"), AFF_TEXT: ord("T")}


def _covering_shape(table: Table, ix: Index, columns: tuple[int, ...] | None) -> Any:
    """A KeyRowShape reading ``columns`` of ``table`` from ``ix``'s keys, or None
    when the index does not hold them all.

    Only plain-column BINARY parts can give a column's value (a collated part
    may be stored folded; an expression part is not a column); JSON columns
    are stored as JSONB documents in rows but not in keys; the rowid (and its
    INTEGER PRIMARY KEY alias) is every entry's suffix.
    """
    if columns is None:
        return None
    json_cols = set(json_column_positions(table))
    positions: list[int] = []
    letters = bytearray()
    covered: set[int] = set()
    for p in ix.parts:
        col = p.column
        letter = None
        if col is not None and not p.collation and not table.columns[col].collation and col not in json_cols:
            letter = _KEY_AFFINITY.get(table.columns[col].affinity)
        positions.append(col if letter is not None and col in columns and col not in covered
                         and col != table.rowid_alias else -1)
        letters.append(letter or ord("B"))
        if letter is not None:
            covered.add(col)
    if not set(columns) - {table.rowid_alias} <= covered:
        return None
    while positions and positions[-1] < 0:
        positions.pop()
        letters.pop()
    alias = table.rowid_alias if table.rowid_alias is not None else -1
    return C.KeyRowShape(len(table.columns), tuple(positions), bytes(letters), ix.desc_flags[:len(positions)], alias)


def _index_words(table: Table, ix: Index, cover: Any) -> str:
    """EXPLAIN QUERY PLAN's words for an index access, as SQLite writes them
    (a WITHOUT ROWID table is its PRIMARY KEY's B-tree there)."""
    if table.without_rowid and ix.origin == "pk":
        return "PRIMARY KEY"
    return f"{'COVERING ' if cover is not None else ''}INDEX {ix.name}"


def _searchable(table: Table, ix: Index) -> bool:
    """Whether probes can search the index: each part is ordered by the
    collation its terms compare under (a raw-key index on a NOCASE column is
    not), and each expression part is one a query can spell."""
    for p in ix.parts:
        if search_collation(table, ix, p) is None:
            return False
        if p.column is None and _part_key(table, p) is None:
            return False
    return True


@dataclass(frozen=True)
class _CollatedKey:
    """The search key of a part (or a term) under a collation other than BINARY."""
    part: Any           # the part key: column position or ("x", expression signature)
    coll: int


def _search_key(key: Any, coll: int) -> Any:
    """What a term on part ``key`` compared under ``coll`` is filed under: the
    part key for BINARY, else a _CollatedKey, so that it only meets index parts
    ordered (and folded) by that same collation."""
    return key if coll == 0 else _CollatedKey(key, coll)


def _search_keys(table: Table, ix: Index) -> list[Any]:
    """The search key of each part of a searchable index."""
    return [_search_key(_part_key(table, p), search_collation(table, ix, p) or 0) for p in ix.parts]


def _index_affinity_ok(index_aff: int | None, bound_aff: int | None) -> bool:
    """SQLite's sqlite3IndexAffinityOk(): an index on a part of affinity
    ``index_aff`` can serve ``part = bound`` only if the comparison affinity
    would not convert the stored values (they are in the index unconverted)."""
    if index_aff is not None and bound_aff is not None:
        cmp = AFF_NUMERIC if index_aff in NUMERIC_AFFS or bound_aff in NUMERIC_AFFS else None
    else:
        cmp = index_aff if index_aff is not None else bound_aff
    if cmp is None or cmp == AFF_BLOB:
        return True
    if cmp == AFF_TEXT:
        return index_aff == AFF_TEXT
    return index_aff in NUMERIC_AFFS


@dataclass
class _OrderHint:
    """A query's ORDER BY as its only table's access path may deliver it."""
    terms: list[tuple[exp.Expression, bool]]     # (resolved term, DESC)
    limited: bool                                # the query has a LIMIT
    satisfied: bool = False                      # set by the access path: no sort needed

    def keys(self, scope: Scope, src: Source, expr_affs: dict[str, int | None]) -> list[tuple[Any, bool]] | None:
        """(part key, DESC) per term, or None if a term is not a column or index expression."""
        out = []
        for node, desc in self.terms:
            key = _term_key(node, scope, src, expr_affs)
            if key is None:
                return None
            out.append((key, desc))
        return out


def _order_hint(order_nodes: list[exp.Expression], resolved: list[exp.Expression], items: list[FromItem],
                scope: Scope, limited: bool) -> _OrderHint | None:
    """The ORDER BY an access path could satisfy: one table, BINARY collation,
    NULLs where the direction puts them by default."""
    if not order_nodes or len(items) != 1 or items[0].table is None or items[0].tvf is not None:
        return None
    comp = ExprCompiler(scope, ParamSpec.EMPTY)
    terms = []
    for o, node in zip(order_nodes, resolved):
        desc = bool(o.args.get("desc"))
        nulls_first = o.args.get("nulls_first")
        if nulls_first is not None and bool(nulls_first) == desc:
            return None
        try:
            if comp.collation(node):
                return None
        except ProgrammingError:
            return None
        terms.append((node, desc))
    return _OrderHint(terms, limited)


def _rowid_ordered(wanted: list[tuple[Any, bool]], key_cols: set[int]) -> bool:
    """Whether rowid order is the wanted order (ORDER BY rowid ASC)."""
    return len(wanted) == 1 and wanted[0][0] in key_cols and not wanted[0][1]


def _index_ordered(wanted: list[tuple[Any, bool]] | None, ix: Index, keys: list, n_eq: int,
                   key_cols: set[int]) -> int:
    """Whether reading ``ix`` with its first ``n_eq`` parts fixed yields the
    wanted order: 1 read forward, -1 read backward, 0 neither.

    Entries are ordered by the parts (each in its own direction), then by
    rowid; fixed parts do not vary, so the wanted terms must follow the
    remaining parts and may end with the rowid.  An IN list on the next part
    keeps the order (its values are visited in key order).
    """
    if wanted is None:
        return 0
    fixed = set(keys[:n_eq])
    wanted = [w for w in wanted if w[0] not in fixed]     # ORDER BY a, b with a = ?: only b varies
    if not wanted:
        return 1
    free = [(k, p.desc) for k, p in zip(keys[n_eq:], ix.parts[n_eq:])]
    flips = set()
    for i, (key, desc) in enumerate(wanted):
        if i < len(free):
            if free[i][0] != key:
                return 0
            flips.add(free[i][1] != desc)
        elif i == len(free) and key in key_cols:
            flips.add(desc)                                # the rowid suffix is ascending
        else:
            return 0
    if len(flips) != 1:
        return 0
    return -1 if flips.pop() else 1


class _IndexTerms:
    """The usable terms of one access path, by part key: equalities, IN lists and range terms."""

    def __init__(self) -> None:
        self.eqs: dict[Any, tuple[Any, exp.Expression]] = {}
        self.ins: dict[Any, list[tuple[Any, exp.Expression]]] = {}
        self.ranges: dict[Any, list[tuple[str, Any, exp.Expression]]] = {}
        # The conjunct each entry of ``eqs`` came from (a plain ``=``: one term per conjunct).
        self.eq_sources: dict[Any, exp.Expression] = {}

    def add(self, key: Any, op: str, bound: Any, bcomp: ExprCompiler, expr_affs: dict[str, int | None],
            source: exp.Expression) -> None:
        nodes = bound if op == "in" else [bound]
        try:
            compiled = [bcomp.compile(n) for n in nodes]
        except _NotABound:
            return
        part = key.part if isinstance(key, _CollatedKey) else key
        if isinstance(part, tuple) and not all(_index_affinity_ok(expr_affs[part[1]], bcomp.affinity(n))
                                               for n in nodes):
            return
        if op == "eq":
            if key not in self.eqs:
                self.eqs[key] = (compiled[0], nodes[0])
                self.eq_sources[key] = source
        elif op == "in":
            self.ins.setdefault(key, list(zip(compiled, nodes)))
        else:
            self.ranges.setdefault(key, []).append((op, compiled[0], nodes[0]))


def _range_bound_nodes(terms: list) -> tuple[Any, Any]:
    """The AST nodes of the bounds _range_bounds picks (for their affinity)."""
    lo = hi = None
    for op, _bound, node in terms:
        if op in ("gt", "ge") and lo is None:
            lo = node
        elif op in ("lt", "le") and hi is None:
            hi = node
    return lo, hi


def _range_bounds(terms: list) -> tuple[Any, bool, Any, bool]:
    """Picks one lower and one upper bound from range terms (the filter keeps the rest)."""
    lo = hi = None
    lo_incl = hi_incl = True
    for op, bound, _node in terms:
        if op in ("gt", "ge") and lo is None:
            lo, lo_incl = bound, op == "ge"
        elif op in ("lt", "le") and hi is None:
            hi, hi_incl = bound, op == "le"
    return lo, lo_incl, hi, hi_incl
