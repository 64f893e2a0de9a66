"""Plans window function calls (``f(...) OVER (...)``) into compiled WindowOp operators.

A SELECT's window calls are collected from its result columns and ORDER BY
(never from inside subqueries).  Calls sharing PARTITION BY and ORDER BY
share one ``WindowOp``, which sorts its input once and appends one column
per call; several distinct windows chain operators, each seeing the columns
appended below it.  The planner then compiles the result columns with each
window call replaced by a reference to its appended column.

Named windows (``WINDOW w AS (...)``) are merged with the call's own
definition by SQLite's rules: a call may add ORDER BY to a window without
one and may give a frame, never a second PARTITION BY.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from terndb._cext import _core as C

from .errors import NoSuchObjectError, NotSupportedError, ProgrammingError
from .collation import collated_key
from .exprcompile import ExprCompiler, Scope, contains_aggregate, filter_as_case

# Built-in window functions: name -> (kind constant name in the compiled core, min args, max args).
# Constants are looked up when planning, so importing this module never needs a newer core.
_BUILTINS = {
    "row_number": ("WIN_ROW_NUMBER", 0, 0),
    "rank": ("WIN_RANK", 0, 0),
    "dense_rank": ("WIN_DENSE_RANK", 0, 0),
    "percent_rank": ("WIN_PERCENT_RANK", 0, 0),
    "cume_dist": ("WIN_CUME_DIST", 0, 0),
    "ntile": ("WIN_NTILE", 1, 1),
    "lag": ("WIN_LAG", 1, 3),
    "lead": ("WIN_LEAD", 1, 3),
    "first_value": ("WIN_FIRST_VALUE", 1, 1),
    "last_value": ("WIN_LAST_VALUE", 1, 1),
    "nth_value": ("WIN_NTH_VALUE", 2, 2),
}
WINDOW_ONLY_NAMES = frozenset(_BUILTINS)

# Aggregates SQLite computes over moving frames with an inverse step (their
# results carry that history, e.g. sum() stays real once a real left the frame).
_INVERSE_KINDS = {"sum": "INV_SUM", "total": "INV_TOTAL", "avg": "INV_AVG", "count": "INV_COUNT",
                  "count*": "INV_COUNT_STAR"}

_FRAME_TYPES = {"rows": "FRAME_ROWS", "range": "FRAME_RANGE", "groups": "FRAME_GROUPS"}


@dataclass
class WindowDef:
    """A window definition after merging with the named window it refers to."""
    partition: list[exp.Expression]
    order: list[exp.Ordered]
    spec: exp.WindowSpec | None

    def key(self) -> str:
        parts = [p.sql(dialect="sqlite") for p in self.partition]
        orders = [o.sql(dialect="sqlite") for o in self.order]
        return "P:" + ",".join(parts) + "|O:" + ",".join(orders)


def window_key(node: exp.Window) -> str:
    """What identifies one window call (two identical calls share a column)."""
    return node.sql(dialect="sqlite").lower()


def collect_windows(nodes: list[exp.Expression]) -> list[exp.Window]:
    """Window calls at this query level, in first-appearance order, without duplicates."""
    out: list[exp.Window] = []
    seen: set[str] = set()
    for node in nodes:
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, exp.Window):
                k = window_key(n)
                if k not in seen:
                    seen.add(k)
                    out.append(n)
                continue
            if isinstance(n, (exp.Subquery, exp.Select, exp.Exists)) and n is not node:
                continue
            stack.extend(reversed(list(n.iter_expressions())))
    return out


def window_inner_nodes(win: exp.Window) -> list[exp.Expression]:
    """The expressions a window call evaluates per input row (arguments, keys)."""
    fn = win.this
    nodes: list[exp.Expression] = list(fn.expressions) if isinstance(fn, exp.Anonymous) else []
    nodes.extend(win.args.get("partition_by") or [])
    order = win.args.get("order")
    if order is not None:
        nodes.extend(o.this for o in order.expressions)
    return nodes


def named_windows(select: exp.Select) -> dict[str, exp.Window]:
    out: dict[str, exp.Window] = {}
    for w in select.args.get("windows") or []:
        name = w.name.lower() if isinstance(w.this, exp.Identifier) else str(w.this).lower()
        out[name] = w
    return out


def resolve_window(win: exp.Window, named: dict[str, exp.Window], depth: int = 0) -> WindowDef:
    """Merges a window call's definition with the named window it refers to, if any."""
    partition = list(win.args.get("partition_by") or [])
    order_node = win.args.get("order")
    order = list(order_node.expressions) if order_node is not None else []
    spec = win.args.get("spec")
    base_name = win.args.get("alias")
    if base_name is None or depth > 32:
        return WindowDef(partition, order, spec)
    name = base_name.name.lower() if isinstance(base_name, exp.Identifier) else str(base_name).lower()
    base_node = named.get(name)
    if base_node is None:
        raise ProgrammingError(f"no such window: {name}")
    base = resolve_window(base_node, named, depth + 1)
    if partition:
        raise ProgrammingError(f"cannot override PARTITION clause of window: {name}")
    if order and base.order:
        raise ProgrammingError(f"cannot override ORDER BY clause of window: {name}")
    if spec is not None and base.spec is not None:
        raise ProgrammingError(f"cannot override frame specification of window: {name}")
    return WindowDef(base.partition, order or base.order, spec if spec is not None else base.spec)


_BOUND_KINDS = {
    ("UNBOUNDED", "PRECEDING"): "BOUND_UNBOUNDED_PRECEDING",
    ("UNBOUNDED", "FOLLOWING"): "BOUND_UNBOUNDED_FOLLOWING",
    ("CURRENT ROW", None): "BOUND_CURRENT_ROW",
}


def _bound(value: Any, side: str | None, const: ExprCompiler) -> tuple[int, Any]:
    """(bound kind, compiled offset or None) of one frame boundary."""
    side_u = side.upper() if isinstance(side, str) else None
    if isinstance(value, str):
        kind = _BOUND_KINDS.get((value.upper(), side_u))
        if kind is None:
            raise ProgrammingError(f"unsupported frame specification: {value} {side or ''}".strip())
        return getattr(C, kind), None
    if side_u not in ("PRECEDING", "FOLLOWING") or value is None:
        raise ProgrammingError("unsupported frame specification")
    offset = const.compile(value)
    return (C.BOUND_PRECEDING if side_u == "PRECEDING" else C.BOUND_FOLLOWING), offset


def _frame(spec: exp.WindowSpec | None, wdef: WindowDef, const: ExprCompiler) -> dict[str, Any]:
    """The WindowFunc frame arguments for one definition; SQLite's validity rules."""
    if spec is None:
        return {}
    exclude = _exclude_kind(spec.args.get("exclude"))
    ftype = getattr(C, _FRAME_TYPES[str(spec.args.get("kind")).lower()])
    start_kind, start_off = _bound(spec.args.get("start"), spec.args.get("start_side"), const)
    if spec.args.get("end") is None:
        end_kind, end_off = C.BOUND_CURRENT_ROW, None
    else:
        end_kind, end_off = _bound(spec.args.get("end"), spec.args.get("end_side"), const)
    if start_kind == C.BOUND_UNBOUNDED_FOLLOWING or end_kind == C.BOUND_UNBOUNDED_PRECEDING:
        raise ProgrammingError("unsupported frame specification")
    if start_kind > end_kind:      # e.g. FOLLOWING ... PRECEDING, CURRENT ROW ... PRECEDING
        raise ProgrammingError("unsupported frame specification")
    if ftype == C.FRAME_RANGE and (start_off is not None or end_off is not None) and len(wdef.order) != 1:
        raise ProgrammingError("RANGE with offset PRECEDING/FOLLOWING requires one ORDER BY expression")
    if ftype == C.FRAME_GROUPS and not wdef.order:
        raise NotSupportedError("GROUPS frames without ORDER BY are not supported")
    return {"frame_type": ftype, "start_kind": start_kind, "start_offset": start_off,
            "end_kind": end_kind, "end_offset": end_off, "exclude": exclude}


_EXCLUDE_KINDS = {"NO OTHERS": "EXCLUDE_NO_OTHERS", "CURRENT ROW": "EXCLUDE_CURRENT_ROW",
                  "GROUP": "EXCLUDE_GROUP", "TIES": "EXCLUDE_TIES"}


def _exclude_kind(node: Any) -> int:
    """The C.EXCLUDE_* code of a frame's EXCLUDE clause (NO OTHERS when absent)."""
    if node is None:
        return C.EXCLUDE_NO_OTHERS
    text = " ".join(str(node.name if hasattr(node, "name") else node).upper().split())
    kind = _EXCLUDE_KINDS.get(text)
    if kind is None:
        raise ProgrammingError(f"unsupported frame specification: EXCLUDE {text}")
    return getattr(C, kind)


def compile_window_function(win: exp.Window, wdef: WindowDef, comp: ExprCompiler,
                            const: ExprCompiler) -> Any:
    """A C.WindowFunc for one call; its arguments compiled against the window's input."""
    fn = win.this
    if isinstance(fn, exp.Filter):
        fn = filter_as_case(fn)
    if not isinstance(fn, exp.Anonymous):
        raise NotSupportedError(f"unsupported window function: {fn.sql(dialect='sqlite')[:60]}")
    name = fn.name.lower()
    args = list(fn.expressions)
    if any(isinstance(a, exp.Distinct) for a in args):
        raise ProgrammingError("DISTINCT is not supported for window functions")
    for a in args:
        if any(isinstance(n, exp.Window) for n in a.walk()):
            raise ProgrammingError(f"misuse of window function {name}()")
    frame = _frame(wdef.spec, wdef, const)
    builtin = _BUILTINS.get(name)
    if builtin is not None:
        kind, lo, hi = builtin
        if not lo <= len(args) <= hi:
            raise ProgrammingError(f"wrong number of arguments to function {name}()")
        return C.WindowFunc(getattr(C, kind), comp.compile_list(args), None, False, **frame)
    agg = C.AGGREGATE_FUNCTIONS.get(name)
    if agg is None:
        if name in C.SCALAR_FUNCTIONS:
            raise ProgrammingError(f"{name}() may not be used as a window function")
        raise NoSuchObjectError(f"no such function: {name}")
    star = len(args) == 1 and isinstance(args[0], exp.Star)
    if star and name != "count":
        raise ProgrammingError(f"wrong number of arguments to function {name}()")
    nargs = 0 if star else len(args)
    if not agg.accepts(nargs):
        raise ProgrammingError(f"wrong number of arguments to function {name}()")
    coll = comp.collation(args[0]) if args and not star else 0
    factory = agg.factory(nargs, star, coll, False)
    compiled = [] if star else comp.compile_list(args)
    inverse = _INVERSE_KINDS.get("count*" if name == "count" and nargs == 0 else name)
    inverse_kind = getattr(C, inverse) if inverse else 0
    return C.WindowFunc(C.WIN_AGGREGATE, compiled, factory, star, inverse_kind=inverse_kind, **frame)


def _order_keys(order: list[exp.Ordered], comp: ExprCompiler) -> tuple[list, bytes]:
    """Sort keys for ORDER BY terms, with extra IS NULL keys for non-default NULLS placement."""
    keys: list = []
    desc = bytearray()
    for o in order:
        key = collated_key(comp.compile(o.this), comp.collation(o.this))
        is_desc = bool(o.args.get("desc"))
        nulls_first = o.args.get("nulls_first")
        if nulls_first is not None and bool(nulls_first) != (not is_desc):
            keys.append(C.IsNull(key, False))
            desc.append(1 if nulls_first else 0)
        keys.append(key)
        desc.append(1 if is_desc else 0)
    return keys, bytes(desc)


def plan_windows(root: Any, windows: list[exp.Window], named: dict[str, exp.Window], comp: ExprCompiler,
                 input_width: int, parent: Scope | None) -> tuple[Any, dict[str, int]]:
    """Stacks WindowOps over ``root``; returns the new root and window key -> column position.

    ``comp`` compiles expressions over the window input's rows (the rows
    below: joined rows, or grouped rows with their aggregates).
    """
    const = ExprCompiler(Scope([], parent), comp.params, comp.subquery_planner)
    # Calls with the same PARTITION BY and ORDER BY share one sort; each keeps its own frame.
    groups: dict[str, list[tuple[exp.Window, WindowDef]]] = {}
    for w in windows:
        wdef = resolve_window(w, named)
        groups.setdefault(wdef.key(), []).append((w, wdef))
    positions: dict[str, int] = {}
    width = input_width
    for members in groups.values():
        wdef = members[0][1]
        calls = [w for w, _ in members]
        funcs = [compile_window_function(w, d, comp, const) for w, d in members]
        partition = [collated_key(comp.compile(p), comp.collation(p)) for p in wdef.partition]
        order_keys, desc = _order_keys(wdef.order, comp)
        range_expr = None
        range_desc = False
        if len(wdef.order) == 1:
            range_expr = comp.compile(wdef.order[0].this)
            range_desc = bool(wdef.order[0].args.get("desc"))
        root = C.WindowOp(root, partition, order_keys, desc, funcs, range_expr, range_desc)
        for w in calls:
            positions[window_key(w)] = width
            width += 1
    return root, positions


def aggregate_calls_for_windows(nodes: list[exp.Expression]) -> list[exp.Expression]:
    """Aggregate calls at this level, looking through window calls into their arguments.

    ``sum(x) OVER ()`` is a window call, not an aggregate; ``sum(sum(x)) OVER ()``
    contains the aggregate ``sum(x)``.
    """
    from .exprcompile import is_aggregate_call
    out: list[exp.Expression] = []
    for node in nodes:
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, exp.Window):
                stack.extend(window_inner_nodes(n))
                continue
            if is_aggregate_call(n):
                out.append(n)
                continue
            if isinstance(n, (exp.Subquery, exp.Select, exp.Exists)) and n is not node:
                continue
            stack.extend(n.iter_expressions())
    return out


__all__ = ["WINDOW_ONLY_NAMES", "collect_windows", "plan_windows", "named_windows", "window_key",
           "aggregate_calls_for_windows", "contains_aggregate"]
