"""Compiles sqlglot expression nodes into the executor's compiled Expr trees.

Name resolution happens here, once, at plan time: a column reference becomes
a tuple position (``ColRef``), or an ``OuterRef`` into an enclosing query's
row for correlated subqueries.  SQLite's comparison affinity rules are applied
by wrapping operands in ``Affinity`` nodes, so the executor compares plain
values.  Aggregate calls are collected into an ``AggregateContext`` and
replaced by references to the aggregate operator's output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sqlglot import exp

from terndb._cext import _core as C

from .catalog import AFF_BLOB, AFF_INTEGER, AFF_NONE, AFF_NUMERIC, AFF_REAL, AFF_TEXT, affinity_of_type
from .collation import collated_key, collation_code
from .errors import NoSuchObjectError, NotSupportedError, ProgrammingError
from .params import ParamSpec, slot_of
from .sqlparse import type_name

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
ROWID_NAMES = ("rowid", "oid", "_rowid_")


@dataclass
class Source:
    """One FROM item as seen by name resolution."""
    name: str                      # alias or table name, lowercased
    columns: list[str]             # lowercased column names
    affinities: list[int]
    offset: int                    # position of its first column in the row
    rowid_pos: int | None = None   # absolute position of the rowid, for tables
    display: list[str] = field(default_factory=list)   # column names as declared
    collations: list[int] = field(default_factory=list)
    using_hidden: set = field(default_factory=set)     # columns merged away by USING/NATURAL
    coalesced_by: dict = field(default_factory=dict)   # column -> source holding its RIGHT/FULL USING merge
    json_groups: dict = field(default_factory=dict)    # column -> JsonPathGroup of the statement's paths on it
    rowid_hidden: bool = False     # a WITHOUT ROWID table: the rowid slot exists but has no name
    # Other qualifiers a column reference may name this source by: "schema.table"
    # for an unaliased table (SQLite's s.t.c), or the bare table name when two
    # such tables of different schemas share it and ``name`` is the qualified one.
    aka: tuple = ()

    @property
    def width(self) -> int:
        return len(self.columns) + (1 if self.rowid_pos is not None else 0)

    def answers_to(self, qualifier: str) -> bool:
        """Whether a column reference qualified ``qualifier`` (lowercased) may mean this source."""
        return self.name == qualifier or qualifier in self.aka


def column_qualifier(node: exp.Column) -> str | None:
    """The qualifier of a column reference as sources answer to it: ``t``, or ``s.t`` for s.t.c."""
    if not node.table:
        return None
    return f"{node.db}.{node.table}" if node.db else node.table


class Scope:
    """The sources visible at one query level, with a link to the enclosing level."""

    def __init__(self, sources: list[Source], parent: "Scope | None" = None) -> None:
        self.sources = sources
        self.parent = parent
        self.correlated = False        # set when an inner query referenced this level's parent

    @property
    def width(self) -> int:
        return sum(s.width for s in self.sources)

    def lookup(self, name: str, table: str | None) -> tuple[int, int, int, int] | None:
        """(depth, position, affinity, collation) of a column, searching outward.

        Each enclosing level is asked through its own ``lookup`` so that wrappers
        (correlation probes, bound scopes) see the references that reach them.
        """
        hit = self._local(name.lower(), table.lower() if table else None, name, table)
        if hit is not None:
            return (0,) + hit
        if self.parent is None:
            return None
        up = self.parent.lookup(name, table)
        if up is None:
            return None
        return (up[0] + 1,) + up[1:]

    def _local(self, low: str, tlow: str | None, name: str, table: str | None) -> tuple[int, int, int] | None:
        found: list[tuple[int, int, int]] = []
        for src in self.sources:
            if tlow is not None and not src.answers_to(tlow):
                continue
            if low in src.columns:
                i = src.columns.index(low)
                if tlow is None and low in src.using_hidden:
                    continue
                coll = src.collations[i] if src.collations else 0
                found.append((src.offset + i, src.affinities[i], coll))
            elif low in ROWID_NAMES and src.rowid_pos is not None and not src.rowid_hidden:
                found.append((src.rowid_pos, AFF_INTEGER, 0))
        if len(found) > 1:
            # With a qualifier: t.c where main.t and s.t are both in FROM and both have c.
            raise ProgrammingError(f"ambiguous column name: {table + '.' if table else ''}{name}")
        if tlow is not None and not found and not any(s.answers_to(tlow) for s in self.sources):
            return None
        if tlow is not None and not found:
            raise NoSuchObjectError(f"no such column: {table}.{name}")
        return found[0] if found else None


class AggregateContext:
    """Collects aggregate calls and GROUP BY terms for one aggregating query level."""

    def __init__(self, input_scope: Scope, group_nodes: list[exp.Expression]) -> None:
        self.input_scope = input_scope
        self.group_keys = [_node_key(g) for g in group_nodes]
        self.specs: list[Any] = []
        self.spec_keys: list[str] = []
        self.input_width = input_scope.width
        # (spec index, +1 for max / -1 for min, collation) of each one-argument min()/max():
        # when there is exactly one, bare columns read the row it came from (SQLite's rule).
        self.min_max: list[tuple[int, int, int]] = []

    def group_position(self, node: exp.Expression) -> int | None:
        key = _node_key(node)
        if key in self.group_keys:
            return self.input_width + self.group_keys.index(key)
        return None

    def aggregate_position(self, i: int) -> int:
        return self.input_width + len(self.group_keys) + i


def _node_key(node: exp.Expression) -> str:
    return node.sql(dialect="sqlite").lower()


AGGREGATE_NAMES = {"count", "sum", "total", "avg", "min", "max", "group_concat", "string_agg"}


def is_aggregate_call(node: exp.Expression) -> bool:
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name in ("min", "max"):
            return len(node.expressions) == 1
        return name in AGGREGATE_NAMES or name in C.AGGREGATE_FUNCTIONS
    return isinstance(node, exp.Filter) and is_aggregate_call(node.this)


def contains_aggregate(node: exp.Expression) -> bool:
    """True if the node uses an aggregate at this query level (not inside subqueries)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if is_aggregate_call(n):
            return True
        if isinstance(n, (exp.Subquery, exp.Select, exp.Exists)) and n is not node:
            continue
        if isinstance(n, exp.Window):
            # ``sum(x) OVER (...)`` is a window call, not an aggregate; only its
            # arguments and keys may hold aggregates of this level.
            fn = n.this
            stack.extend(fn.expressions if isinstance(fn, exp.Anonymous) else [])
            stack.extend(n.args.get("partition_by") or [])
            order = n.args.get("order")
            if order is not None:
                stack.extend(o.this for o in order.expressions)
            continue
        stack.extend(n.iter_expressions())
    return False


def _is_literal(node: exp.Expression) -> bool:
    """A literal, NULL, or a signed numeric literal (constant-foldable IN items)."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Neg):
        return _is_literal(node.this)
    return isinstance(node, (exp.Literal, exp.Null))


def literal_value(node: exp.Literal) -> Any:
    text = node.this
    if node.is_string:
        return text
    return parse_number(text)


def parse_number(text: str) -> int | float:
    t = text.strip()
    low = t.lower()
    if low.startswith("0x"):
        v = int(low, 16)
        if v > 0xFFFFFFFFFFFFFFFF:
            raise ProgrammingError(f"hex literal too big: {text}")
        return v - (1 << 64) if v > INT64_MAX else v
    if all(ch.isdigit() for ch in t):
        v = int(t)
        return v if v <= INT64_MAX else float(t)
    return float(t)


class ExprCompiler:
    """Compiles expressions for one query level.

    ``subquery_planner(select_node, scope) -> (runner, correlated)`` is given by
    the SELECT planner so that subqueries are planned with this scope as
    their parent.
    """

    def __init__(self, scope: Scope, params: ParamSpec,
                 subquery_planner: Callable[[exp.Expression, Scope], tuple[Callable, bool]] | None = None,
                 agg: AggregateContext | None = None) -> None:
        self.scope = scope
        self.params = params
        self.subquery_planner = subquery_planner
        self.agg = agg
        self.uses_outer = False
        # Window calls already computed by WindowOps below: key -> row position.
        self.windows: dict[str, int] | None = None

    # -- affinity and collation of operands (SQLite datatype3, section 4.2) ----------

    def affinity(self, node: exp.Expression) -> int | None:
        """The affinity of an operand: a column's, a CAST's target, else None (no affinity)."""
        while isinstance(node, (exp.Paren, exp.Collate)):
            node = node.this
        if isinstance(node, exp.Column):
            hit = self._lookup_quiet(node)
            if hit is not None:
                aff = hit[2]
                return None if aff in (AFF_BLOB, AFF_NONE) else aff
            return None
        if isinstance(node, exp.Cast):
            return affinity_of_type(type_name(node.to))
        return None

    def collation(self, node: exp.Expression) -> int:
        if isinstance(node, exp.Collate):
            name = node.expression.name.lower() if hasattr(node.expression, "name") else str(node.expression).lower()
            return collation_code(name)
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Column):
            hit = self._lookup_quiet(node)
            if hit is not None:
                return hit[3]
        return 0

    def comparison_collation(self, left: exp.Expression, right: exp.Expression) -> int:
        """The collation ``left <op> right`` compares under (SQLite datatype3, section 7.1):
        an explicit COLLATE (the left one first), else a column operand's own
        collation (the left one first; CAST and unary + keep a column a column),
        else BINARY."""
        for side in (left, right):
            node = _unparen(side)
            if isinstance(node, exp.Collate):
                return self.collation(node)
        for side in (left, right):
            node = _unparen(side)
            while isinstance(node, (exp.Cast, exp.Paren)):
                node = node.this
            if isinstance(node, exp.Column) and (hit := self._lookup_quiet(node)) is not None:
                return hit[3]
        return 0

    def row_span(self, nodes: list[exp.Expression]) -> tuple[int, int] | None:
        """The lowest and highest positions of this level's row that ``nodes`` read;
        (-1, -1) when they read none.  None when the syntax cannot tell: a
        subquery or window call may read the row by other means.  Lets an
        operator evaluate an expression on part of a row (a join's left row)."""
        positions: list[int] = []
        stack = list(nodes)
        while stack:
            n = stack.pop()
            if isinstance(n, (exp.Subquery, exp.Select, exp.Exists, exp.Window)):
                return None
            if isinstance(n, exp.Column):
                hit = self._lookup_quiet(n)
                if hit is not None and hit[0] == 0:
                    positions.append(hit[1])
                continue
            stack.extend(n.iter_expressions())
        return (min(positions), max(positions)) if positions else (-1, -1)

    def _lookup_quiet(self, node: exp.Column) -> tuple | None:
        try:
            return self.scope.lookup(node.name, column_qualifier(node))
        except ProgrammingError:
            return None

    # -- entry point ------------------------------------------------------------------

    def compile(self, node: exp.Expression) -> Any:
        if isinstance(node, exp.Window):
            return self._window_ref(node)
        if self.agg is not None:
            pos = self.agg.group_position(node)
            if pos is not None and not isinstance(node, exp.Literal):
                return C.ColRef(pos)
            if is_aggregate_call(node):
                return self._aggregate(node)
        method = getattr(self, "_c_" + type(node).__name__, None)
        if method is None:
            raise NotSupportedError(f"unsupported SQL expression: {node.sql(dialect='sqlite')[:80]}")
        return method(node)

    def compile_list(self, nodes: list[exp.Expression]) -> list:
        return [self.compile(n) for n in nodes]

    def _window_ref(self, node: exp.Window) -> Any:
        """A window call: the column its WindowOp appended (planned by the SELECT planner)."""
        key = node.sql(dialect="sqlite").lower()
        if self.windows is None or key not in self.windows:
            fn = node.this
            name = fn.name.lower() if isinstance(fn, exp.Anonymous) else "window"
            raise ProgrammingError(f"misuse of window function {name}()")
        return C.ColRef(self.windows[key])

    # -- leaves ----------------------------------------------------------------------

    def _c_Paren(self, node: exp.Paren) -> Any:
        return self.compile(node.this)

    def _c_Literal(self, node: exp.Literal) -> Any:
        return C.Const(literal_value(node))

    def _c_Null(self, node: exp.Null) -> Any:
        return C.Const(None)

    def _c_Boolean(self, node: exp.Boolean) -> Any:
        return C.Const(1 if node.this else 0)

    def _c_HexString(self, node: exp.HexString) -> Any:
        # X'ABCD' is a blob literal in SQLite.
        try:
            return C.Const(bytes.fromhex(node.this))
        except ValueError as err:
            raise ProgrammingError(f"malformed blob literal: X'{node.this}'") from err

    def _c_Placeholder(self, node: exp.Placeholder) -> Any:
        # Placeholders were renamed to their slots (params.rewrite_placeholders).
        return C.Param(slot_of(node.name or ""))

    def _c_Column(self, node: exp.Column) -> Any:
        if node.table == "" and isinstance(node.this, exp.Identifier) and node.this.quoted is False \
                and node.name.lower() in ("true", "false"):
            return C.Const(1 if node.name.lower() == "true" else 0)
        hit = self.scope.lookup(node.name, column_qualifier(node))
        if hit is None:
            if isinstance(node.this, exp.Identifier) and node.this.quoted and not node.table:
                # SQLite's quirk: a double-quoted identifier that names no column is a string.
                return C.Const(node.name)
            full = f"{node.table}.{node.name}" if node.table else node.name
            raise NoSuchObjectError(f"no such column: {full}")
        depth, pos, _aff, _coll = hit
        if depth == 0:
            # (Beside aggregates, a bare column reads the group's last input row,
            # which the aggregate operator places first in its output: same position.)
            return C.ColRef(pos)
        self.uses_outer = True
        return C.OuterRef(depth, pos)

    def _c_Star(self, node: exp.Star) -> Any:
        raise ProgrammingError("'*' is only allowed in a SELECT list or count(*)")

    # -- operators -------------------------------------------------------------------

    def _binary(self, op: str, node: exp.Expression) -> Any:
        return C.Binary(C.BINARY_OPS[op], self.compile(node.this), self.compile(node.expression))

    def _c_Add(self, n): return self._binary("add", n)
    def _c_Sub(self, n): return self._binary("sub", n)
    def _c_Mul(self, n): return self._binary("mul", n)
    def _c_Div(self, n): return self._binary("div", n)
    def _c_Mod(self, n): return self._binary("mod", n)
    def _c_DPipe(self, n): return self._binary("concat", n)
    def _c_BitwiseAnd(self, n): return self._binary("bitand", n)
    def _c_BitwiseOr(self, n): return self._binary("bitor", n)
    def _c_BitwiseLeftShift(self, n): return self._binary("lshift", n)
    def _c_BitwiseRightShift(self, n): return self._binary("rshift", n)

    def _c_Neg(self, node: exp.Neg) -> Any:
        inner = node.this
        while isinstance(inner, exp.Paren):
            inner = inner.this
        if isinstance(inner, exp.Literal) and not inner.is_string:
            text = inner.this
            if text.strip() == "9223372036854775808":
                return C.Const(INT64_MIN)
            value = literal_value(inner)
            # SQLite folds a negated numeric literal: reals negate in IEEE terms (-0.0).
            return C.Const(-value if isinstance(value, float) else C.sql_neg(value))
        return C.Unary(1, self.compile(node.this))

    def _c_BitwiseNot(self, node):
        return C.Unary(2, self.compile(node.this))

    def _c_Not(self, node: exp.Not) -> Any:
        inner = node.this
        while isinstance(inner, exp.Paren):
            inner = inner.this
        if isinstance(inner, exp.Is):
            return self._is(inner, negate=True)
        if isinstance(inner, exp.In):
            return self._in(inner, negate=True)
        if isinstance(inner, exp.Between):
            return self._between(inner, negate=True)
        if isinstance(inner, (exp.Like, exp.Glob, exp.Escape)):
            return self._like(inner, negate=True)
        if isinstance(inner, exp.Exists):
            return self._exists(inner, negate=True)
        return C.Unary(3, self.compile(inner))

    def _flatten(self, node: exp.Expression, cls: type) -> list[exp.Expression]:
        out: list[exp.Expression] = []
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, cls):
                stack.append(n.expression)
                stack.append(n.this)
            else:
                out.append(n)
        return out

    def _c_And(self, node):
        return C.And(self.compile_list(self._flatten(node, exp.And)))

    def _c_Or(self, node):
        return C.Or(self.compile_list(self._flatten(node, exp.Or)))

    def compare_operands(self, left: exp.Expression, right: exp.Expression) -> tuple[Any, Any, int]:
        """Compiles both operands with SQLite's comparison affinity applied; returns collation too."""
        a, b = self.compile(left), self.compile(right)
        la, ra = self.affinity(left), self.affinity(right)
        numeric = (AFF_INTEGER, AFF_REAL, AFF_NUMERIC)
        if la in numeric and ra not in numeric:
            b = C.Affinity(b, AFF_NUMERIC)
        elif ra in numeric and la not in numeric:
            a = C.Affinity(a, AFF_NUMERIC)
        elif la == AFF_TEXT and ra is None:
            b = C.Affinity(b, AFF_TEXT)
        elif ra == AFF_TEXT and la is None:
            a = C.Affinity(a, AFF_TEXT)
        return a, b, self.comparison_collation(left, right)

    def _compare(self, op: int, node: exp.Expression) -> Any:
        left, right = _unparen(node.this), _unparen(node.expression)
        if isinstance(left, exp.Tuple) or isinstance(right, exp.Tuple):
            return self._row_compare(op, left, right)
        a, b, coll = self.compare_operands(node.this, node.expression)
        return C.Compare(op, a, b, coll)

    # -- row values ------------------------------------------------------------------

    def _c_Tuple(self, node: exp.Tuple) -> Any:
        raise ProgrammingError("row value misused")

    @staticmethod
    def _row_items(left: exp.Expression, right: exp.Expression) -> tuple[list, list]:
        if not (isinstance(left, exp.Tuple) and isinstance(right, exp.Tuple)):
            raise NotSupportedError("row values compare only with row values written as (x, y, ...)")
        if len(left.expressions) != len(right.expressions):
            raise ProgrammingError("row value misused")
        return list(left.expressions), list(right.expressions)

    def _row_equal(self, left: list, right: list) -> Any:
        """(a, b) = (x, y) as a = x AND b = y: SQLite's three-valued result exactly."""
        return C.And([self._compare(C.OP_EQ, exp.EQ(this=a, expression=b)) for a, b in zip(left, right)])

    def _row_compare(self, op: int, left_node: exp.Expression, right_node: exp.Expression) -> Any:
        """Row-value comparison: element by element, the first unequal pair decides.

        (a, b) < (x, y) is a < x OR (a = x AND b < y); the three-valued
        AND/OR give SQLite's NULL wherever a NULL is met before the decision.
        """
        if isinstance(left_node, (exp.Subquery, exp.Select)) or isinstance(right_node, (exp.Subquery, exp.Select)):
            return self._row_compare_subquery(op, left_node, right_node)
        left, right = self._row_items(left_node, right_node)
        if op == C.OP_EQ:
            return self._row_equal(left, right)
        if op == C.OP_NE:
            return C.Unary(3, self._row_equal(left, right))
        strict = {C.OP_LE: C.OP_LT, C.OP_GE: C.OP_GT}.get(op, op)
        last = len(left) - 1
        result = self._compare(op, exp.EQ(this=left[last], expression=right[last]))
        for i in range(last - 1, -1, -1):
            pair = exp.EQ(this=left[i], expression=right[i])
            result = C.Or([self._compare(strict, pair), C.And([self._compare(C.OP_EQ, pair), result])])
        return result

    def row_subquery(self, node: exp.Expression, width: int) -> Any:
        """A sub-select yielding one row value: an Expr giving its first row (None when empty)."""
        select = node.this if isinstance(node, exp.Subquery) else node
        runner, correlated = self._plan_subquery(select)
        got = getattr(runner, "width", 1)
        if got != width:
            raise ProgrammingError(f"sub-select returns {got} columns - expected {width}")
        return C.SubqueryExpr(_first_row(runner), 0, correlated)

    def row_subquery_item(self, row: Any, index: int) -> Any:
        """Element ``index`` of a ``row_subquery`` (NULL when the sub-select had no row)."""
        return C.Call(_row_item, [row, C.Const(index)])

    def _row_compare_subquery(self, op: int, left_node: exp.Expression, right_node: exp.Expression) -> Any:
        """(a, b) <op> (SELECT x, y ...): compared with the sub-select's first row."""
        flipped = not isinstance(left_node, exp.Tuple)
        values = right_node if flipped else left_node
        query = left_node if flipped else right_node
        if not isinstance(values, exp.Tuple):
            raise NotSupportedError("comparing two row-valued sub-selects is not supported")
        row = self.row_subquery(query, len(values.expressions))
        if flipped:
            op = _MIRRORED_OPS.get(op, op)
        return C.Call(_compare_row_values, [C.Const(op), row] + self.compile_list(values.expressions))

    def _row_in(self, node: exp.In, negate: bool) -> Any:
        """(a, b) IN ((x, y), ...) as OR of row equalities; IN (SELECT x, y ...) through its rows."""
        target = _unparen(node.this)
        query = node.args.get("query")
        if query is None:
            result = C.Or([self._row_equal(*self._row_items(target, _unparen(it))) for it in node.expressions]) \
                if node.expressions else C.Const(0)
            return C.Unary(3, result) if negate else result
        select = query.this if isinstance(query, exp.Subquery) else query
        runner, correlated = self._plan_subquery(select)
        width = getattr(runner, "width", 1)
        if width != len(target.expressions):
            raise ProgrammingError(f"sub-select returns {width} columns - expected {len(target.expressions)}")
        rows = C.SubqueryExpr(_packed_rows(runner), 0, correlated)
        return C.Call(_row_in_rows_negated if negate else _row_in_rows,
                      [rows] + self.compile_list(target.expressions))

    def _c_EQ(self, n): return self._compare(C.OP_EQ, n)
    def _c_NEQ(self, n): return self._compare(C.OP_NE, n)
    def _c_LT(self, n): return self._compare(C.OP_LT, n)
    def _c_LTE(self, n): return self._compare(C.OP_LE, n)
    def _c_GT(self, n): return self._compare(C.OP_GT, n)
    def _c_GTE(self, n): return self._compare(C.OP_GE, n)

    def _is_compare(self, left: exp.Expression, right: exp.Expression, negate: bool) -> Any:
        """IS / IS NOT: equality under the comparison collation (folded operands), NULLs equal."""
        a, b, coll = self.compare_operands(left, right)
        return C.IsCompare(collated_key(a, coll), collated_key(b, coll), negate)

    def _c_NullSafeEQ(self, node):
        return self._is_compare(node.this, node.expression, False)

    def _c_NullSafeNEQ(self, node):
        return self._is_compare(node.this, node.expression, True)

    def _is(self, node: exp.Is, negate: bool) -> Any:
        if isinstance(node.expression, exp.Null):
            return C.IsNull(self.compile(node.this), negate)
        return self._is_compare(node.this, node.expression, negate)

    def _c_Is(self, node):
        return self._is(node, False)

    def _between(self, node: exp.Between, negate: bool) -> Any:
        """x BETWEEN lo AND hi == x >= lo AND x <= hi, with comparison affinity per pair."""
        x, lo_node, hi_node = node.this, node.args["low"], node.args["high"]
        a1, low, coll1 = self.compare_operands(x, lo_node)
        a2, high, coll2 = self.compare_operands(x, hi_node)
        if not isinstance(a1, C.Affinity) and not isinstance(a2, C.Affinity) and not (coll1 or coll2):
            return C.Between(a1, low, high, negate)
        # The affinity lands on x itself for a pair, or a pair compares under a
        # collation (each its own): evaluate as two comparisons.
        both = C.And([C.Compare(C.OP_GE, a1, low, coll1), C.Compare(C.OP_LE, a2, high, coll2)])
        return C.Unary(3, both) if negate else both

    def _c_Between(self, node):
        return self._between(node, False)

    def _in(self, node: exp.In, negate: bool) -> Any:
        if isinstance(_unparen(node.this), exp.Tuple):
            return self._row_in(node, negate)
        query = node.args.get("query")
        if query is not None:
            select = query.this if isinstance(query, exp.Subquery) else query
            runner, correlated = self._plan_subquery(select)
            self._expect_one_column(runner)
            arg = self.compile(node.this)
            return C.SubqueryExpr(runner, 2, correlated, arg, negate)
        items = node.expressions
        # x IN (...) compares under x's collation; equality under NOCASE/RTRIM is
        # equality of the folded values, so both sides are folded.
        coll = self.collation(node.this)
        arg = collated_key(self.compile(node.this), coll)
        aff = self.affinity(node.this)
        compiled = []
        for it in items:
            e = self.compile(it)
            if aff in (AFF_INTEGER, AFF_REAL, AFF_NUMERIC) and self.affinity(it) not in (AFF_INTEGER, AFF_REAL, AFF_NUMERIC):
                e = C.Affinity(e, AFF_NUMERIC)
            elif aff == AFF_TEXT and self.affinity(it) is None:
                e = C.Affinity(e, AFF_TEXT)
            compiled.append(collated_key(e, coll))
        consts = None
        if all(isinstance(e, C.Const) for e in compiled):
            consts = [e.value for e in compiled]
        elif all(_is_literal(it) for it in items):
            consts = [e.evaluate((), None) for e in compiled]
        return C.InList(arg, compiled, negate, consts)

    def _c_In(self, node):
        return self._in(node, False)

    def _like(self, node: exp.Expression, negate: bool) -> Any:
        escape = None
        if isinstance(node, exp.Escape):
            escape = node.expression
            node = node.this
        if node.args.get("negate"):
            negate = not negate       # sqlglot 30 writes NOT LIKE as Like(negate=True)
        glob = isinstance(node, exp.Glob)
        arg = self.compile(node.this)
        pat_node = node.expression
        pattern = self.compile(pat_node)
        esc = self.compile(escape) if escape is not None else None
        matcher = None
        if isinstance(pattern, C.Const) and isinstance(pattern.value, str) and (
                esc is None or (isinstance(esc, C.Const) and esc.value is not None)):
            if glob:
                matcher = C.GlobMatcher(pattern.value)
            else:
                matcher = C.LikeMatcher(pattern.value, esc.value if esc is not None else None)
        return C.Like(arg, pattern, esc, glob, negate, matcher)

    def _c_Like(self, n): return self._like(n, False)
    def _c_Glob(self, n): return self._like(n, False)
    def _c_Escape(self, n): return self._like(n, False)

    def _c_RegexpLike(self, node: exp.RegexpLike) -> Any:
        # SQLite's rule: X REGEXP Y calls regexp(Y, X).
        return self._call("regexp", [self.compile(node.expression), self.compile(node.this)])

    def _c_ILike(self, node):
        return self._like(exp.Like(this=node.this, expression=node.expression), False)

    def _c_Case(self, node: exp.Case) -> Any:
        if node.this is not None and self._case_needs_operand_affinity(node):
            # "CASE x WHEN y" compares like x = y, and here a WHEN value's affinity must
            # convert x itself (x has none, y is numeric or text): write it as CASE WHEN x = y ...,
            # which _compare handles.  x has no function calls, so evaluating it per WHEN
            # gives the same result as evaluating it once.
            searched = exp.Case(ifs=[exp.If(this=exp.EQ(this=node.this.copy(), expression=i.this.copy()),
                                            true=i.args["true"]) for i in node.args.get("ifs") or []],
                                default=node.args.get("default"))
            return self._c_Case(searched)
        operand = self.compile(node.this) if node.this is not None else None
        whens = []
        for i in node.args.get("ifs") or []:
            cond = self.compile(i.this)
            if operand is not None:
                # "CASE x WHEN y" compares like x = y: the WHEN side takes x's affinity.
                oa, wa = self.affinity(node.this), self.affinity(i.this)
                numeric = (AFF_INTEGER, AFF_REAL, AFF_NUMERIC)
                if oa in numeric and wa not in numeric:
                    cond = C.Affinity(cond, AFF_NUMERIC)
                elif oa == AFF_TEXT and wa is None:
                    cond = C.Affinity(cond, AFF_TEXT)
            whens.append((cond, self.compile(i.args["true"])))
        default = node.args.get("default")
        return C.Case(operand, whens, self.compile(default) if default is not None else None)

    def _case_needs_operand_affinity(self, node: exp.Case) -> bool:
        if self.affinity(node.this) is not None or any(isinstance(n, (exp.Anonymous, exp.Func, exp.Subquery))
                                                       for n in node.this.walk()):
            return False
        converting = (AFF_INTEGER, AFF_REAL, AFF_NUMERIC, AFF_TEXT)
        return any(self.affinity(i.this) in converting for i in node.args.get("ifs") or [])

    def _c_If(self, node: exp.If) -> Any:
        false = node.args.get("false")
        return C.Case(None, [(self.compile(node.this), self.compile(node.args["true"]))],
                      self.compile(false) if false is not None else None)

    def _c_Cast(self, node: exp.Cast) -> Any:
        # CAST's type rule differs from a column's: an empty/unknown name is NUMERIC.
        aff = C.cast_affinity_of_type(type_name(node.to))
        return C.Cast(self.compile(node.this), aff)

    def _c_Collate(self, node):
        return self.compile(node.this)

    def _c_CurrentTimestamp(self, node):
        return self._call("datetime", [C.Const("now")])

    def _c_CurrentDate(self, node):
        return self._call("date", [C.Const("now")])

    def _c_CurrentTime(self, node):
        return self._call("time", [C.Const("now")])

    # -- JSON operators -------------------------------------------------------------

    def _json_arrow(self, node: exp.Expression, fname: str) -> Any:
        """``x -> p`` / ``x ->> p``: the JSON functions registered as "->" and "->>".

        sqlglot turns a literal right operand into a JSONPath; its rendering is
        the equivalent SQLite path ('x' -> '$.x', 2 -> '$[2]').
        """
        rhs = node.expression
        if isinstance(rhs, exp.JSONPath):
            text = rhs.sql(dialect="sqlite")
            path: Any = C.Const(text[1:-1].replace("''", "'") if text[:1] == "'" else text)
        else:
            path = self.compile(rhs)
        return self._json_path_call(fname, node.this, [self.compile(node.this), path])

    def _json_path_call(self, name: str, doc_node: exp.Expression, args: list) -> Any:
        """A JSON read with a constant path (``doc ->> '$.a'``, ``json_extract(doc, '$.a')``).

        Simple paths compile to a JsonPathExtract sharing the column's
        JsonPathGroup, so a row's document is scanned once for all the
        statement's paths on it; anything else is a plain function call.
        """
        if len(args) == 2 and isinstance(args[1], C.Const) and not isinstance(args[0], C.Const):
            fast = C.json_path_extract(name, args[0], args[1].value, self._json_group(doc_node))
            if fast is not None:
                return fast
        return self._call(name, args)

    def _json_group(self, node: exp.Expression) -> Any:
        """The JsonPathGroup of the column ``node`` reads (a private one for other expressions)."""
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Column):
            low, table = node.name.lower(), node.table.lower() if node.table else None
            scope: Scope | None = self.scope
            while scope is not None:
                for src in scope.sources:
                    if (table is None or src.name == table) and low in src.columns:
                        return src.json_groups.setdefault(low, C.JsonPathGroup())
                scope = scope.parent
        return C.JsonPathGroup()

    def _c_JSONExtract(self, node):
        return self._json_arrow(node, "->")

    def _c_JSONExtractScalar(self, node):
        return self._json_arrow(node, "->>")

    # -- subqueries ------------------------------------------------------------------

    def _plan_subquery(self, select: exp.Expression) -> tuple[Callable, bool]:
        if self.subquery_planner is None:
            raise NotSupportedError("subqueries are not supported here")
        return self.subquery_planner(select, self.scope)

    def _c_Subquery(self, node: exp.Subquery) -> Any:
        runner, correlated = self._plan_subquery(node.this)
        self._expect_one_column(runner)
        return C.SubqueryExpr(runner, 0, correlated)

    @staticmethod
    def _expect_one_column(runner: Any) -> None:
        width = getattr(runner, "width", 1)
        if width != 1:
            raise ProgrammingError(f"sub-select returns {width} columns - expected 1")

    def _c_Select(self, node):
        runner, correlated = self._plan_subquery(node)
        return C.SubqueryExpr(runner, 0, correlated)

    def _c_Union(self, node):
        return self._c_Select(node)

    _c_Except = _c_Union
    _c_Intersect = _c_Union

    def _exists(self, node: exp.Exists, negate: bool) -> Any:
        select = node.this.this if isinstance(node.this, exp.Subquery) else node.this
        runner, correlated = self._plan_subquery(select)
        return C.SubqueryExpr(runner, 1, correlated, None, negate)

    def _c_Exists(self, node):
        return self._exists(node, False)

    # -- functions -------------------------------------------------------------------

    def _c_Anonymous(self, node: exp.Anonymous) -> Any:
        name = node.name.lower()
        args = node.expressions
        if any(isinstance(a, exp.Distinct) for a in args) or is_aggregate_call(node):
            raise ProgrammingError(f"misuse of aggregate function {name}()")
        if name in ("coalesce", "ifnull"):
            if (name == "ifnull" and len(args) != 2) or len(args) < 2:
                raise ProgrammingError(f"wrong number of arguments to function {name}()")
            return C.Coalesce(self.compile_list(args))
        if name == "iif":
            if len(args) != 3:
                raise ProgrammingError("wrong number of arguments to function iif()")
            return C.Case(None, [(self.compile(args[0]), self.compile(args[1]))], self.compile(args[2]))
        if name in ("like", "glob"):
            if len(args) not in (2, 3):
                raise ProgrammingError(f"wrong number of arguments to function {name}()")
            # like(pattern, value[, escape]) has its arguments the other way round.
            inner = (exp.Glob if name == "glob" else exp.Like)(this=args[1], expression=args[0])
            if len(args) == 3:
                inner = exp.Escape(this=inner, expression=args[2])
            return self._like(inner, False)
        if name in WINDOW_ONLY_FUNCTIONS:
            raise ProgrammingError(f"misuse of window function {name}()")
        ctxfn = CONTEXT_FUNCTIONS.get(name)
        if ctxfn is not None:
            if args:
                raise ProgrammingError(f"wrong number of arguments to function {name}()")
            return C.ContextCall(ctxfn)
        if name in ("json_extract", "json_type") and len(args) == 2:
            return self._json_path_call(name, args[0], self.compile_list(args))
        if name == "json_type" and len(args) == 1:
            # json_type(X) is json_type(X, '$'): the path extractor then reads JSONB documents too.
            return self._json_path_call(name, args[0], [self.compile(args[0]), C.Const("$")])
        return self._call(name, self.compile_list(args))

    def _call(self, name: str, args: list) -> Any:
        fn = C.SCALAR_FUNCTIONS.get(name)
        if fn is None:
            raise NoSuchObjectError(f"no such function: {name}")
        lo, hi = fn.min_args, fn.max_args
        if len(args) < lo or (hi >= 0 and len(args) > hi):
            raise ProgrammingError(f"wrong number of arguments to function {name}()")
        if fn.deterministic and all(isinstance(a, C.Const) for a in args):
            try:
                return C.Const(fn.func(*[a.value for a in args]))
            except Exception:
                pass   # let the error surface at execution, as SQLite does
        return C.Call(fn.func, args)

    def _aggregate(self, node: exp.Expression, coll: int | None = None) -> Any:
        """``coll`` overrides the argument's collation (a FILTER's CASE keeps its column's)."""
        assert self.agg is not None
        key = _node_key(node)
        if key in self.agg.spec_keys:
            return C.AggRef(self.agg.aggregate_position(self.agg.spec_keys.index(key)))
        if isinstance(node, exp.Filter):
            first = node.this.expressions[0] if node.this.expressions else None
            if isinstance(first, exp.Distinct):
                first = first.expressions[0]
            inner_coll = ExprCompiler(self.agg.input_scope, self.params).collation(first) \
                if first is not None and not isinstance(first, exp.Star) else 0
            return self._aggregate(filter_as_case(node), inner_coll)
        name = node.name.lower()
        args = list(node.expressions)
        distinct = False
        if len(args) == 1 and isinstance(args[0], exp.Distinct):
            distinct = True
            args = list(args[0].expressions)
        star = len(args) == 1 and isinstance(args[0], exp.Star)
        if star and name != "count":
            raise ProgrammingError(f"wrong number of arguments to function {name}()")
        fn = C.AGGREGATE_FUNCTIONS.get(name)
        if fn is None:
            raise NoSuchObjectError(f"no such function: {name}")
        nargs = 0 if star else len(args)
        if not fn.accepts(nargs) and not star:
            raise ProgrammingError(f"wrong number of arguments to function {name}()")
        if distinct and nargs != 1:
            raise ProgrammingError("DISTINCT aggregates must have exactly one argument")
        if any(contains_aggregate(a) for a in args):
            raise ProgrammingError(f"misuse of aggregate function {name}()")
        inner = ExprCompiler(self.agg.input_scope, self.params, self.subquery_planner, None)
        compiled = [] if star else inner.compile_list(args)
        self.uses_outer = self.uses_outer or inner.uses_outer
        if coll is None:
            coll = inner.collation(args[0]) if args and not star else 0
        factory = fn.factory(nargs, star, coll, distinct)
        spec = C.AggSpec(factory, compiled, False, star, (-1, -1) if star else inner.row_span(args))
        if name in ("min", "max") and nargs == 1:
            self.agg.min_max.append((len(self.agg.specs), 1 if name == "max" else -1, coll))
        self.agg.specs.append(spec)
        self.agg.spec_keys.append(key)
        return C.AggRef(self.agg.aggregate_position(len(self.agg.specs) - 1))


# Aggregates that skip NULL arguments: for them ``agg(x) FILTER (WHERE c)`` is
# exactly ``agg(CASE WHEN c THEN x END)``, since a filtered-out row feeds NULL.
NULL_SKIPPING_AGGREGATES = frozenset({"count", "sum", "total", "avg", "min", "max", "group_concat", "string_agg"})


def filter_as_case(node: exp.Filter) -> exp.Expression:
    """Rewrites ``agg(x, ...) FILTER (WHERE c)`` to ``agg(CASE WHEN c THEN x END, ...)``.

    ``count(*)`` becomes ``count(CASE WHEN c THEN 1 END)``.  Aggregates that
    see NULL arguments (json_group_array, user-defined ones) would change
    meaning, so they are refused rather than answered wrongly.
    """
    call = node.this
    name = call.name.lower() if isinstance(call, exp.Anonymous) else ""
    if name not in NULL_SKIPPING_AGGREGATES:
        raise NotSupportedError(f"FILTER on aggregate {name or call.sql()}() is not supported")
    cond = node.expression.this if isinstance(node.expression, exp.Where) else node.expression
    call = call.copy()
    args = list(call.expressions)
    if not args:
        raise ProgrammingError(f"wrong number of arguments to function {name}()")
    first = args[0]
    distinct = isinstance(first, exp.Distinct)
    inner = first.expressions[0] if distinct else first
    if isinstance(inner, exp.Star):
        inner = exp.Literal.number(1)
    case = exp.Case(ifs=[exp.If(this=cond.copy(), true=inner.copy())])
    args[0] = exp.Distinct(expressions=[case]) if distinct else case
    call.set("expressions", args)
    return call


def _changes(session: Any) -> int:
    return session.changes_count


def _total_changes(session: Any) -> int:
    return session.total_changes


def _last_insert_rowid(session: Any) -> int:
    return session.last_insert_rowid


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _packed_rows(runner: Callable) -> Callable:
    """A sub-select runner whose single row holds all the rows: lets SubqueryExpr cache them."""
    def run(ctx: Any, limit: int) -> list[tuple]:
        return [(tuple(tuple(r) for r in runner(ctx, -1)),)]
    return run


def _first_row(runner: Callable) -> Callable:
    """A sub-select runner whose single value is the whole first row (None when there is none)."""
    def run(ctx: Any, limit: int) -> list[tuple]:
        rows = runner(ctx, 1)
        return [(tuple(rows[0]) if rows else None,)]
    return run


def _row_item(row: tuple | None, index: int) -> Any:
    return None if row is None else row[index]


# (a, b) < (SELECT ...) seen from the sub-select's side.
_MIRRORED_OPS = {C.OP_LT: C.OP_GT, C.OP_LE: C.OP_GE, C.OP_GT: C.OP_LT, C.OP_GE: C.OP_LE}


def _compare_row_values(op: int, row: tuple | None, *values: Any) -> int | None:
    """``values <op> row`` with SQLite's row-value rules (an empty sub-select is all NULLs).

    Equality: a definitely unequal pair gives 0, else a NULL gives NULL.
    Ordering: pairs are read left to right; a NULL gives NULL, the first
    unequal pair decides, and all-equal rows satisfy only <=, >= and =.
    """
    other = row if row is not None else (None,) * len(values)
    if op in (C.OP_EQ, C.OP_NE):
        unknown = False
        for a, b in zip(values, other):
            if a is None or b is None:
                unknown = True
            elif C.sql_compare(a, b) != 0:
                return 1 if op == C.OP_NE else 0
        return None if unknown else (1 if op == C.OP_EQ else 0)
    for a, b in zip(values, other):
        if a is None or b is None:
            return None
        c = C.sql_compare(a, b)
        if c != 0:
            return int(c < 0) if op in (C.OP_LT, C.OP_LE) else int(c > 0)
    return int(op in (C.OP_LE, C.OP_GE))


def _row_in_rows(rows: tuple, *values: Any) -> int | None:
    """(a, b) IN (SELECT ...): 1 on an equal row, NULL if some row compared NULL, else 0."""
    unknown = False
    for row in rows:
        verdict = 1
        for v, w in zip(values, row):
            if v is None or w is None:
                verdict = None
            elif C.sql_compare(v, w) != 0:
                verdict = 0
                break
        if verdict == 1:
            return 1
        unknown = unknown or verdict is None
    return None if unknown else 0


def _row_in_rows_negated(rows: tuple, *values: Any) -> int | None:
    r = _row_in_rows(rows, *values)
    return None if r is None else 1 - r


# Functions that exist only with OVER (...); called without it they are a misuse.
WINDOW_ONLY_FUNCTIONS = frozenset({
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
    "first_value", "last_value", "nth_value",
})

CONTEXT_FUNCTIONS = {
    "changes": _changes,
    "total_changes": _total_changes,
    "last_insert_rowid": _last_insert_rowid,
}
