# Compiled SQL expressions.
#
# The planner (engine/planner.py) turns sqlglot's AST into a tree of these
# nodes once per statement; the executor then calls ``eval`` per row through
# C-level virtual calls, with no Python frames and no re-dispatch on the AST.
# A row is a Python tuple laid out by the planner (the columns of every table
# in the FROM clause, concatenated); column references are tuple positions.
# SQL semantics (affinity, comparison, arithmetic, NULL logic) come from
# values.pxi; functions and aggregates from functions.pxi.

from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE


cdef class ExecContext:
    """Per-execution state shared by every node of one plan run."""
    cdef public tuple params          # bound parameters, in slot order
    cdef public object txn            # the raw LMDB transaction reads and writes go through
    cdef public object wtxn           # the storage WriteTxn (sub-db handles), None when reading
    cdef public object session        # engine Session (functions like changes())
    cdef public list outer            # stack of outer rows for correlated subqueries
    cdef public dict subquery_cache   # uncorrelated subquery results, per execution
    cdef dict lookups                 # sub-db handle -> LmdbCursor for exact-key lookups
    cdef dict memos                   # sub-db handle -> {rowid: row or ()} (read-only runs)
    # The session's change collector as a statement's runner read it once for the whole
    # statement (PreparedWrite.execute), saving the Python attribute lookups of
    # ``session.changes`` per written row; when not set, _session_collector reads the
    # session each time, as every other path has always done.
    cdef object collector
    cdef bint collector_set

    def __init__(self, tuple params, object txn, object session, object wtxn=None):
        self.params = params
        self.txn = txn
        self.wtxn = wtxn
        self.session = session
        self.outer = []
        self.subquery_cache = {}

    cdef LmdbCursor lookup_cursor(self, object db):
        """This execution's cursor for exact-key lookups in ``db``, made once and reused.

        Reading, a lookup cursor (``lmdb_lookup``) needs no MDB_cursor: a point
        select pays one mdb_get, not a cursor open and close.  Writing (``wtxn`` set),
        it is a real cursor: the UPDATE that found a row through it rewrites the row
        in place (``replace_current``) without a second descent of the B-tree, and a
        prepared statement's context keeps it for every execution in the transaction.
        Every lookup on ``db`` in the plan shares it, so callers decode the entry
        found before anything else runs."""
        cdef LmdbCursor c
        if self.lookups is None:
            self.lookups = {}
        c = self.lookups.get(db)
        if c is None:
            c = lmdb_lookup(self.txn, db) if self.wtxn is None else lmdb_cursor(self.txn, db)
            self.lookups[db] = c
        return c

    cdef bint replace_found(self, object db, const char* kp, Py_ssize_t kn,
                            const char* vp, Py_ssize_t vn) except -1:
        """Stores ``vp[:vn]`` under key ``kp[:kn]`` of ``db`` through this execution's
        lookup cursor when it still stands on that key (see ``LmdbCursor.replace_current``);
        False when it does not and the caller must put the ordinary way."""
        if self.lookups is None:
            return False
        c = self.lookups.get(db)
        if c is None:
            return False
        return (<LmdbCursor>c).replace_current(self.txn, kp, kn, vp, vn) == 1

    cdef dict row_memo(self, object db):
        """Rows already fetched by rowid from ``db`` in this execution, or None.

        Only for executions in a read transaction: its snapshot cannot change,
        so a row fetched once is the row every later probe would fetch (an
        index nested-loop join probes the same inner rows over and over)."""
        cdef dict m
        if self.wtxn is not None:
            return None
        # None for the first probe of ``db``: a lone point select needs no memo.
        if self.memos is None:
            self.memos = {db: None}
            return None
        m = self.memos.get(db)
        if m is None:
            if db not in self.memos:
                self.memos[db] = None
                return None
            m = {}
            self.memos[db] = m
        return m


cdef class Expr:
    """Base class: ``eval`` computes the value for one row."""
    cdef object eval(self, tuple row, ExecContext ctx):
        raise NotImplementedError

    def evaluate(self, tuple row, ExecContext ctx):
        """Python entry point (plan-time folding, tests, Python-side operators)."""
        return self.eval(row, ctx)


cdef class Const(Expr):
    cdef public object value

    def __init__(self, value):
        self.value = value

    cdef object eval(self, tuple row, ExecContext ctx):
        return self.value


cdef class Param(Expr):
    cdef Py_ssize_t slot

    def __init__(self, Py_ssize_t slot):
        self.slot = slot

    cdef object eval(self, tuple row, ExecContext ctx):
        return <object>PyTuple_GET_ITEM(ctx.params, self.slot)


cdef class ColRef(Expr):
    cdef public Py_ssize_t pos

    def __init__(self, Py_ssize_t pos):
        self.pos = pos

    cdef object eval(self, tuple row, ExecContext ctx):
        # Bounds-checked: a planning bug must raise, never read past the tuple.
        if self.pos >= PyTuple_GET_SIZE(row):
            raise InternalError(f"column position {self.pos} outside a row of {PyTuple_GET_SIZE(row)}")
        return <object>PyTuple_GET_ITEM(row, self.pos)


cdef class OuterRef(Expr):
    """A column of an enclosing query's row (correlated subqueries)."""
    cdef Py_ssize_t depth, pos

    def __init__(self, Py_ssize_t depth, Py_ssize_t pos):
        self.depth = depth
        self.pos = pos

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef Py_ssize_t level = len(ctx.outer) - self.depth
        if level < 0:
            raise InternalError("outer reference evaluated without an enclosing row")
        cdef tuple outer = <tuple>ctx.outer[level]
        if self.pos >= PyTuple_GET_SIZE(outer):
            raise InternalError(f"outer column position {self.pos} outside a row of {PyTuple_GET_SIZE(outer)}")
        return <object>PyTuple_GET_ITEM(outer, self.pos)


cdef class Affinity(Expr):
    """Applies a column affinity to a value (comparison affinity, inserts)."""
    cdef Expr arg
    cdef int aff

    def __init__(self, Expr arg, int aff):
        self.arg = arg
        self.aff = aff

    cdef object eval(self, tuple row, ExecContext ctx):
        return apply_affinity(self.arg.eval(row, ctx), self.aff)


# Binary operator codes (arithmetic and bitwise); comparisons use OP_* from values.pxi.
DEF B_ADD = 1
DEF B_SUB = 2
DEF B_MUL = 3
DEF B_DIV = 4
DEF B_MOD = 5
DEF B_CONCAT = 6
DEF B_BITAND = 7
DEF B_BITOR = 8
DEF B_LSHIFT = 9
DEF B_RSHIFT = 10

BINARY_OPS = {"add": B_ADD, "sub": B_SUB, "mul": B_MUL, "div": B_DIV, "mod": B_MOD,
              "concat": B_CONCAT, "bitand": B_BITAND, "bitor": B_BITOR,
              "lshift": B_LSHIFT, "rshift": B_RSHIFT}


cdef class Binary(Expr):
    cdef Expr left, right
    cdef int op

    def __init__(self, int op, Expr left, Expr right):
        self.op = op
        self.left = left
        self.right = right

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef object a = self.left.eval(row, ctx)
        cdef object b = self.right.eval(row, ctx)
        cdef int op = self.op
        if op == B_ADD:
            # Fast path: small ints, the common case in arithmetic.
            if type(a) is int and type(b) is int:
                r = a + b
                if -9223372036854775808 <= r <= 9223372036854775807:
                    return r
            return sql_add(a, b)
        if op == B_SUB:
            return sql_sub(a, b)
        if op == B_MUL:
            return sql_mul(a, b)
        if op == B_DIV:
            return sql_div(a, b)
        if op == B_MOD:
            return sql_mod(a, b)
        if op == B_CONCAT:
            return sql_concat(a, b)
        if op == B_BITAND:
            return sql_bitand(a, b)
        if op == B_BITOR:
            return sql_bitor(a, b)
        if op == B_LSHIFT:
            return sql_lshift(a, b)
        return sql_rshift(a, b)


cdef class Unary(Expr):
    cdef Expr arg
    cdef int op   # 1 neg, 2 bitnot, 3 not

    def __init__(self, int op, Expr arg):
        self.op = op
        self.arg = arg

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef object v = self.arg.eval(row, ctx)
        if self.op == 1:
            return sql_neg(v)
        if self.op == 2:
            return sql_bitnot(v)
        return sql_not(v)


cdef class Compare(Expr):
    """``= <> < <= > >=`` with three-valued logic; affinities applied by the planner."""
    cdef Expr left, right
    cdef int op
    cdef int coll

    def __init__(self, int op, Expr left, Expr right, int coll=0):
        self.op = op
        self.left = left
        self.right = right
        self.coll = coll

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef object a = self.left.eval(row, ctx)
        if a is None:
            return None
        cdef object b = self.right.eval(row, ctx)
        if b is None:
            return None
        cdef int c
        if self.coll == 0:
            if type(a) is int and type(b) is int:
                c = (a > b) - (a < b)
            else:
                c = sql_compare(a, b)
        else:
            c = sql_compare_coll(a, b, self.coll)
        return _cmp_result(self.op, c)


cdef inline object _cmp_result(int op, int c):
    if op == OP_EQ:
        return 1 if c == 0 else 0
    if op == OP_NE:
        return 1 if c != 0 else 0
    if op == OP_LT:
        return 1 if c < 0 else 0
    if op == OP_LE:
        return 1 if c <= 0 else 0
    if op == OP_GT:
        return 1 if c > 0 else 0
    return 1 if c >= 0 else 0


cdef class IsCompare(Expr):
    """``IS`` / ``IS NOT``: NULL-safe equality, never NULL."""
    cdef Expr left, right
    cdef bint negate

    def __init__(self, Expr left, Expr right, bint negate):
        self.left = left
        self.right = right
        self.negate = negate

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef object a = self.left.eval(row, ctx)
        cdef object b = self.right.eval(row, ctx)
        cdef bint same
        if a is None or b is None:
            same = a is None and b is None
        else:
            same = sql_compare(a, b) == 0
        return 0 if same == self.negate else 1


cdef class IsNull(Expr):
    cdef Expr arg
    cdef bint negate

    def __init__(self, Expr arg, bint negate):
        self.arg = arg
        self.negate = negate

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef bint isnull = self.arg.eval(row, ctx) is None
        return 0 if isnull == self.negate else 1


cdef class And(Expr):
    cdef list args

    def __init__(self, list args):
        self.args = args

    cdef object eval(self, tuple row, ExecContext ctx):
        # SQL three-valued AND: any false -> 0, else any NULL -> NULL, else 1.
        cdef bint saw_null = False
        cdef Expr e
        for e in self.args:
            t = sql_truth(e.eval(row, ctx))
            if t is None:
                saw_null = True
            elif not t:
                return 0
        return None if saw_null else 1


cdef class Or(Expr):
    cdef list args

    def __init__(self, list args):
        self.args = args

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef bint saw_null = False
        cdef Expr e
        for e in self.args:
            t = sql_truth(e.eval(row, ctx))
            if t is None:
                saw_null = True
            elif t:
                return 1
        return None if saw_null else 0


cdef class Between(Expr):
    cdef Expr arg, low, high
    cdef bint negate

    def __init__(self, Expr arg, Expr low, Expr high, bint negate):
        self.arg = arg
        self.low = low
        self.high = high
        self.negate = negate

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef object v = self.arg.eval(row, ctx)
        cdef object lo = self.low.eval(row, ctx)
        cdef object hi = self.high.eval(row, ctx)
        # x BETWEEN a AND b  ==  x >= a AND x <= b, with NULL logic.
        cdef object ge = None if (v is None or lo is None) else (1 if sql_compare(v, lo) >= 0 else 0)
        cdef object le = None if (v is None or hi is None) else (1 if sql_compare(v, hi) <= 0 else 0)
        cdef object r
        if ge == 0 or le == 0:
            r = 0
        elif ge is None or le is None:
            r = None
        else:
            r = 1
        if self.negate and r is not None:
            return 1 - r
        return r


cdef class InList(Expr):
    """``x IN (v1, v2, ...)``; a constant list is matched through a set."""
    cdef Expr arg
    cdef list items
    cdef object const_set     # frozenset of non-NULL constants, or None
    cdef bint list_has_null
    cdef bint negate

    def __init__(self, Expr arg, list items, bint negate, object const_values=None):
        self.arg = arg
        self.items = items
        self.negate = negate
        self.const_set = None
        self.list_has_null = False
        if const_values is not None:
            self.list_has_null = any(v is None for v in const_values)
            self.const_set = frozenset(v for v in const_values if v is not None)

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef object v = self.arg.eval(row, ctx)
        cdef object r
        cdef Expr e
        cdef bint saw_null
        if not self.items:
            return 1 if self.negate else 0      # x IN () is false even for NULL x
        if v is None:
            return None
        if self.const_set is not None:
            # Python's hash/eq agree with SQLite equality for int/float/str/bytes.
            if v in self.const_set:
                r = 1
            else:
                r = None if self.list_has_null else 0
        else:
            r = 0
            saw_null = False
            for e in self.items:
                w = e.eval(row, ctx)
                if w is None:
                    saw_null = True
                elif sql_compare(v, w) == 0:
                    r = 1
                    break
            if r == 0 and saw_null:
                r = None
        if self.negate and r is not None:
            return 1 - r
        return r


cdef class Case(Expr):
    """Searched CASE (operand None) or simple CASE (operand compared with ``=``)."""
    cdef Expr operand
    cdef list whens     # list of (Expr cond, Expr result)
    cdef Expr default

    def __init__(self, Expr operand, list whens, Expr default):
        self.operand = operand
        self.whens = whens
        self.default = default

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef tuple pair
        cdef object base
        if self.operand is not None:
            base = self.operand.eval(row, ctx)
            for pair in self.whens:
                if base is not None:
                    w = (<Expr>pair[0]).eval(row, ctx)
                    if w is not None and sql_compare(base, w) == 0:
                        return (<Expr>pair[1]).eval(row, ctx)
        else:
            for pair in self.whens:
                if sql_truth((<Expr>pair[0]).eval(row, ctx)):
                    return (<Expr>pair[1]).eval(row, ctx)
        if self.default is None:
            return None
        return self.default.eval(row, ctx)


cdef class Cast(Expr):
    cdef Expr arg
    cdef int aff

    def __init__(self, Expr arg, int aff):
        self.arg = arg
        self.aff = aff

    cdef object eval(self, tuple row, ExecContext ctx):
        return sql_cast(self.arg.eval(row, ctx), self.aff)


cdef class Like(Expr):
    """LIKE / GLOB; a constant pattern is compiled once at plan time."""
    cdef Expr arg, pattern, escape
    cdef object matcher     # compiled matcher for a constant pattern, or None
    cdef bint glob, negate

    def __init__(self, Expr arg, Expr pattern, Expr escape, bint glob, bint negate, object matcher=None):
        self.arg = arg
        self.pattern = pattern
        self.escape = escape
        self.glob = glob
        self.negate = negate
        self.matcher = matcher

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef object v = self.arg.eval(row, ctx)
        cdef object r
        if self.matcher is not None:
            # SQLite's rules for non-text subjects (blobs never match, numbers by
            # their text form) live in the matcher.
            r = (<_VPattern>self.matcher).match_value(v)
            if r is None:
                return None
        else:
            p = self.pattern.eval(row, ctx)
            if self.glob:
                r = sql_glob(v, p)
            elif self.escape is not None:
                esc = self.escape.eval(row, ctx)
                if esc is None:
                    return None          # ESCAPE NULL makes the whole LIKE NULL
                r = sql_like(v, p, esc)
            else:
                r = sql_like(v, p, None)
        if r is None:
            return None
        return (1 - r) if self.negate else r


cdef class Call(Expr):
    """A scalar function call; ``fn`` is a Python-callable from functions.pxi."""
    cdef object fn
    cdef list args
    cdef Py_ssize_t nargs

    def __init__(self, object fn, list args):
        self.fn = fn
        self.args = args
        self.nargs = len(args)

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef Expr e
        if self.nargs == 1:
            return self.fn((<Expr>self.args[0]).eval(row, ctx))
        if self.nargs == 2:
            return self.fn((<Expr>self.args[0]).eval(row, ctx), (<Expr>self.args[1]).eval(row, ctx))
        return self.fn(*[e.eval(row, ctx) for e in self.args])


cdef class JsonPathExtract(Expr):
    """``doc -> 'p'``, ``doc ->> 'p'``, ``json_extract(doc, 'p')`` or
    ``json_type(doc, 'p')`` with a constant simple path.  A JSON column's
    document read as a JsonbDoc is walked in its JSONB bytes to the leaf;
    text is read through a JsonPathGroup (one scan per document for all the
    statement's paths on that column).  Other values, and documents whose
    tree is already cached, take the general function, so results are those
    of the function in every case."""
    cdef Expr doc
    cdef JsonPathGroup group
    cdef Py_ssize_t target
    cdef tuple steps
    cdef int mode                     # 0 json_extract, 1 ->, 2 ->>, 3 json_type
    cdef object fn, path

    def __init__(self, Expr doc, JsonPathGroup group, tuple steps, int mode, fn, path):
        self.doc = doc
        self.group = group
        self.target = group.add(steps)
        self.steps = steps
        self.mode = mode
        self.fn = fn
        self.path = path

    cdef object eval(self, tuple row, ExecContext ctx):
        x = self.doc.eval(row, ctx)
        if x is None:
            return None
        if type(x) is JsonbDoc:
            return _jb_extract((<JsonbDoc>x).blob, self.steps, self.mode)
        if type(x) is not str or x is _j_last_text:
            return self.fn(x, self.path)
        return _j_path_result(self.group.node(<str>x, self.target), self.mode)


_JSON_PATH_MODES = {"json_extract": 0, "->": 1, "->>": 2, "json_type": 3}


def json_path_extract(str name, Expr doc, object path, JsonPathGroup group):
    """A JsonPathExtract for function ``name`` (json_extract, ->, ->>, json_type) with
    the constant ``path``, or None when the path is not a simple one (the
    general function then keeps SQLite's exact error behaviour)."""
    mode = _JSON_PATH_MODES.get(name)
    if mode is None or type(path) is not str:
        return None
    p = _j_abbrev_path(path) if mode == 1 or mode == 2 else path
    if p is None or not (<str>p).startswith('$'):
        return None
    steps = _j_simple_steps(<str>p)
    if steps is None:
        return None
    return JsonPathExtract(doc, group, <tuple>steps, mode, SCALAR_FUNCTIONS[name].func, path)


cdef class Coalesce(Expr):
    """coalesce/ifnull: short-circuits, so later arguments are evaluated only when needed."""
    cdef list args

    def __init__(self, list args):
        self.args = args

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef Expr e
        for e in self.args:
            v = e.eval(row, ctx)
            if v is not None:
                return v
        return None


cdef class ContextCall(Expr):
    """A function that needs the execution context (changes(), last_insert_rowid())."""
    cdef object fn

    def __init__(self, object fn):
        self.fn = fn

    cdef object eval(self, tuple row, ExecContext ctx):
        return self.fn(ctx.session)


cdef class SubqueryExpr(Expr):
    """Scalar subquery, EXISTS, or ``x IN (SELECT ...)``.

    ``run(ctx)`` is a Python callable from the planner returning the rows of
    the subquery; the current row is pushed on ``ctx.outer`` while it runs so
    that correlated references (OuterRef) can read it.  Uncorrelated
    subqueries are evaluated once per execution and cached.
    """
    cdef object run
    cdef int kind         # 0 scalar, 1 exists, 2 in
    cdef bint correlated, negate
    cdef Expr arg
    cdef object key

    def __init__(self, object run, int kind, bint correlated, Expr arg=None, bint negate=False):
        self.run = run
        self.kind = kind
        self.correlated = correlated
        self.arg = arg
        self.negate = negate
        self.key = object()

    cdef object _result(self, tuple row, ExecContext ctx):
        cdef object res
        if not self.correlated:
            res = ctx.subquery_cache.get(self.key, self)
            if res is not self:
                return res
        ctx.outer.append(row)
        try:
            if self.kind == 0:
                rows = self.run(ctx, 1)
                res = rows[0][0] if rows else None
            elif self.kind == 1:
                res = 1 if self.run(ctx, 1) else 0
            else:
                vals = [r[0] for r in self.run(ctx, -1)]
                has_null = any(v is None for v in vals)
                res = (frozenset(v for v in vals if v is not None), has_null, len(vals))
        finally:
            ctx.outer.pop()
        if not self.correlated:
            ctx.subquery_cache[self.key] = res
        return res

    cdef object eval(self, tuple row, ExecContext ctx):
        cdef object v, r
        if self.kind == 2:
            v = self.arg.eval(row, ctx)
            s, has_null, n = self._result(row, ctx)
            if n == 0:
                r = 0
            elif v is None:
                r = None
            elif v in s:
                r = 1
            else:
                r = None if has_null else 0
            if self.negate and r is not None:
                return 1 - r
            return r
        r = self._result(row, ctx)
        if self.kind == 1 and self.negate:
            return 1 - r
        return r


cdef class AggRef(Expr):
    """Reads a finished aggregate's value from the aggregate operator's output row."""
    cdef Py_ssize_t pos

    def __init__(self, Py_ssize_t pos):
        self.pos = pos

    cdef object eval(self, tuple row, ExecContext ctx):
        if self.pos >= PyTuple_GET_SIZE(row):
            raise InternalError(f"aggregate position {self.pos} outside a row of {PyTuple_GET_SIZE(row)}")
        return <object>PyTuple_GET_ITEM(row, self.pos)


cdef inline tuple eval_list(list exprs, tuple row, ExecContext ctx):
    """Evaluates a list of expressions into a new tuple (projections, keys)."""
    cdef Py_ssize_t i, n = len(exprs)
    cdef tuple out = PyTuple_New(n)
    cdef object v
    for i in range(n):
        v = (<Expr>exprs[i]).eval(row, ctx)
        Py_INCREF(v)
        PyTuple_SET_ITEM(out, i, v)
    return out


def eval_exprs(list exprs, tuple row, ExecContext ctx):
    return eval_list(exprs, row, ctx)
