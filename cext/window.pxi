# Window functions: one compiled operator per distinct window (PARTITION BY +
# ORDER BY), computing every function that shares it.
#
# ``WindowOp`` reads its whole input, sorts it by (partition key, order key)
# with the key codec (SQLite's order, DESC per key), then walks each
# partition once.  Peer groups (rows whose ORDER BY keys are equal) are found
# from the encoded order keys, so RANGE/GROUPS frames and the ranking
# functions work on group boundaries, never by re-comparing values.
#
# Frames are half-open index ranges [s, e) inside the partition.  Both ends
# only move forward as the current row advances (for every frame SQLite
# accepts), so an aggregate whose frame start stays put (the default frame
# RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW, or any UNBOUNDED
# PRECEDING start) is a running aggregate: each input row is stepped once.
# Frames whose start moves are re-aggregated from their start, which costs
# the frame's width per row (the Aggregate protocol has no inverse step).
# Rows with the same frame as the previous row reuse its value (peers).
# A frame with EXCLUDE CURRENT ROW / GROUP / TIES is computed afresh for each
# row over its frame's rows minus the excluded ones, as SQLite does (its
# full-scan path): no running or inverse state survives a hole in the frame.
#
# Output rows: the input row followed by one value per WindowFunc.

WIN_ROW_NUMBER = 1
WIN_RANK = 2
WIN_DENSE_RANK = 3
WIN_PERCENT_RANK = 4
WIN_CUME_DIST = 5
WIN_NTILE = 6
WIN_LAG = 7
WIN_LEAD = 8
WIN_FIRST_VALUE = 9
WIN_LAST_VALUE = 10
WIN_NTH_VALUE = 11
WIN_AGGREGATE = 12

FRAME_ROWS = 0
FRAME_RANGE = 1
FRAME_GROUPS = 2

BOUND_UNBOUNDED_PRECEDING = 0
BOUND_PRECEDING = 1
BOUND_CURRENT_ROW = 2
BOUND_FOLLOWING = 3
BOUND_UNBOUNDED_FOLLOWING = 4

# EXCLUDE clauses: rows taken out of each row's frame.
EXCLUDE_NO_OTHERS = 0
EXCLUDE_CURRENT_ROW = 1
EXCLUDE_GROUP = 2          # the current row and its peers
EXCLUDE_TIES = 3           # the current row's peers, not itself


cdef class WindowFunc:
    """One window function call: what it computes, its arguments and its frame."""
    cdef public int kind
    cdef public list args
    cdef public object factory        # aggregate state factory (WIN_AGGREGATE)
    cdef public bint star
    cdef public int frame_type
    cdef public int start_kind, end_kind
    cdef public Expr start_offset, end_offset
    cdef public int inverse_kind      # INV_* for aggregates SQLite computes with an inverse step
    cdef public int exclude           # EXCLUDE_*

    def __init__(self, int kind, list args, object factory=None, bint star=False,
                 int frame_type=FRAME_RANGE, int start_kind=BOUND_UNBOUNDED_PRECEDING,
                 Expr start_offset=None, int end_kind=BOUND_CURRENT_ROW, Expr end_offset=None,
                 int inverse_kind=0, int exclude=EXCLUDE_NO_OTHERS):
        self.kind = kind
        self.exclude = exclude
        self.inverse_kind = inverse_kind
        self.args = args
        self.factory = factory
        self.star = star
        self.frame_type = frame_type
        self.start_kind = start_kind
        self.end_kind = end_kind
        self.start_offset = start_offset
        self.end_offset = end_offset


INV_NONE = 0
INV_SUM = 1
INV_TOTAL = 2
INV_AVG = 3
INV_COUNT = 4
INV_COUNT_STAR = 5


cdef class _SlidingSum:
    """sum/total/avg/count over a moving frame, the way SQLite's window code does it.

    Rows entering the frame are added and rows leaving it subtracted (SQLite's
    xStep/xInverse), so the state carries SQLite's history: once a real value
    has passed through, sum() stays real ("approx") even after that value left
    the frame, and an integer overflow stays an error.
    """
    cdef int kind
    cdef double rsum
    cdef int64_t isum
    cdef int64_t cnt
    cdef bint approx, overflow

    def __init__(self, int kind):
        self.kind = kind

    cdef inline object _classify(self, object v):
        """v as an int64 (exact path), a float (approximate path), or None (skip)."""
        t = type(v)
        if t is int:
            return v if _v_fits_i64(v) else float(v)
        if t is float or v is None:
            return v
        n = _numeric_value(v)
        if type(n) is int and _v_fits_i64(n):
            return n
        return _value_double(v if n is None else n)

    cdef void add(self, object v) except *:
        cdef int64_t i
        if self.kind == INV_COUNT_STAR:
            self.cnt += 1
            return
        v = self._classify(v)
        if v is None:
            return
        self.cnt += 1
        if type(v) is int:
            i = v
            self.rsum += <double>i
            if not (self.approx or self.overflow):
                if (i > 0 and self.isum > INT64_MAX - i) or (i < 0 and self.isum < INT64_MIN - i):
                    self.approx = self.overflow = True
                else:
                    self.isum += i
        else:
            self.rsum += <double>v
            self.approx = True

    cdef void remove(self, object v) except *:
        cdef int64_t i
        if self.kind == INV_COUNT_STAR:
            self.cnt -= 1
            return
        v = self._classify(v)
        if v is None:
            return
        self.cnt -= 1
        if type(v) is int and not self.approx:
            i = v
            self.rsum -= <double>i
            self.isum -= i
        else:
            self.rsum -= <double>v

    cdef object value(self):
        if self.kind == INV_COUNT or self.kind == INV_COUNT_STAR:
            return self.cnt
        if self.kind == INV_TOTAL:
            return _nan_to_null(self.rsum)
        if self.cnt <= 0:
            return None
        if self.kind == INV_AVG:
            return _nan_to_null(self.rsum / <double>self.cnt)
        if self.overflow:
            raise DataError("integer overflow")
        if self.approx:
            return _nan_to_null(self.rsum)
        return self.isum


cdef object _frame_offset(Expr e, int frame_type, str which, ExecContext ctx):
    """A frame offset's value, checked as SQLite does (non-negative; integer unless RANGE)."""
    if e is None:
        return 0
    v = e.eval((), ctx)
    if frame_type == FRAME_RANGE:
        n = apply_affinity(v, AFF_NUMERIC) if type(v) is str else v
        if (type(n) is int or type(n) is float) and n >= 0:
            return n
        raise DataError(f"frame {which} offset must be a non-negative number")
    n = apply_affinity(v, AFF_NUMERIC) if type(v) is str else v
    if type(n) is float and n == <double><long long>n:
        n = int(n)
    if type(n) is int and n >= 0:
        return n
    raise DataError(f"frame {which} offset must be a non-negative integer")


cdef inline bint _is_number(object v):
    return type(v) is int or type(v) is float


cdef class _Partition:
    """One sorted partition: rows, peer groups and (for RANGE offsets) order values."""
    cdef list rows
    cdef Py_ssize_t n
    cdef list gid          # peer group index of each row
    cdef list gstart       # first row of each group
    cdef list gend         # one past the last row of each group
    cdef list ovals        # the single ORDER BY value of each row (RANGE with offset)
    cdef Py_ssize_t num_lo, num_hi   # the rows whose order value is a number
    cdef bint desc

    cdef Py_ssize_t first_at_least(self, object x):
        """First numeric-region row whose value is >= x (<= x when DESC)."""
        cdef Py_ssize_t lo = self.num_lo, hi = self.num_hi, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if (self.ovals[mid] < x) if not self.desc else (self.ovals[mid] > x):
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef Py_ssize_t first_beyond(self, object x):
        """First numeric-region row whose value is > x (< x when DESC)."""
        cdef Py_ssize_t lo = self.num_lo, hi = self.num_hi, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if (self.ovals[mid] <= x) if not self.desc else (self.ovals[mid] >= x):
                lo = mid + 1
            else:
                hi = mid
        return lo


cdef class WindowOp(Operator):
    """Computes window functions over one window definition.

    ``partition``/``order`` are key expressions (``order_desc`` one flag per
    order key, the planner adds NULLS FIRST/LAST keys as in Sort);
    ``range_expr`` is the single ORDER BY expression that RANGE frames with
    an offset measure, with ``range_desc`` its direction.
    """
    cdef Operator child
    cdef list partition, order, funcs
    cdef bytes order_desc
    cdef Expr range_expr
    cdef bint range_desc
    cdef list out
    cdef Py_ssize_t pos
    cdef list starts, ends     # evaluated frame offsets per function
    cdef ExecContext ctx

    def __init__(self, Operator child, list partition, list order, bytes order_desc, list funcs,
                 Expr range_expr=None, bint range_desc=False):
        self.child = child
        self.partition = partition
        self.order = order
        self.order_desc = order_desc
        self.funcs = funcs
        self.range_expr = range_expr
        self.range_desc = range_desc

    cdef void open(self, ExecContext ctx) except *:
        cdef tuple row
        cdef tuple pvals, ovals
        cdef list decorated = []
        cdef Py_ssize_t seq = 0, np = len(self.partition), i, j, total
        cdef bytes pdesc = b"\x00" * np
        cdef WindowFunc f
        self.ctx = ctx
        self.starts = []
        self.ends = []
        for f in self.funcs:
            self.starts.append(_frame_offset(f.start_offset, f.frame_type, "starting", ctx))
            self.ends.append(_frame_offset(f.end_offset, f.frame_type, "ending", ctx))
        self.child.open(ctx)
        try:
            while True:
                row = self.child.next()
                if row is None:
                    break
                pvals = eval_list(self.partition, row, ctx) if np else ()
                ovals = eval_list(self.order, row, ctx) if self.order else ()
                decorated.append((encode_key(pvals + ovals, pdesc + self.order_desc), seq,
                                  encode_key(pvals, pdesc) if np else b"",
                                  encode_key(ovals, self.order_desc) if self.order else b"",
                                  row))
                seq += 1
        finally:
            self.child.close()
        decorated.sort()
        self.out = []
        total = len(decorated)
        i = 0
        while i < total:
            j = i + 1
            while j < total and decorated[j][2] == decorated[i][2]:
                j += 1
            self._partition(decorated, i, j)
            i = j
        self.pos = 0

    cdef void _partition(self, list decorated, Py_ssize_t lo, Py_ssize_t hi) except *:
        cdef _Partition p = _Partition()
        cdef Py_ssize_t i, g = -1, n = hi - lo, k
        cdef object prev_key = None, key
        cdef list results = []
        cdef WindowFunc f
        p.rows = [d[4] for d in decorated[lo:hi]]
        p.n = n
        p.gid = [0] * n
        p.gstart = []
        p.gend = []
        p.desc = self.range_desc
        for i in range(n):
            key = decorated[lo + i][3]
            if g < 0 or key != prev_key:
                if g >= 0:
                    p.gend.append(i)
                g += 1
                p.gstart.append(i)
                prev_key = key
            p.gid[i] = g
        if n:
            p.gend.append(n)
        if self.range_expr is not None:
            p.ovals = [self.range_expr.eval(r, self.ctx) for r in p.rows]
            p.num_lo = 0
            while p.num_lo < n and not _is_number(p.ovals[p.num_lo]):
                p.num_lo += 1
            p.num_hi = p.num_lo
            while p.num_hi < n and _is_number(p.ovals[p.num_hi]):
                p.num_hi += 1
        for k in range(len(self.funcs)):
            results.append(self._compute(<WindowFunc>self.funcs[k], self.starts[k], self.ends[k], p))
        for i in range(n):
            self.out.append(<tuple>p.rows[i] + tuple([(<list>r)[i] for r in results]))

    cdef list _args(self, WindowFunc f, _Partition p, Py_ssize_t which):
        """Values of argument ``which`` for every row of the partition."""
        cdef Expr e = <Expr>f.args[which]
        return [e.eval(<tuple>r, self.ctx) for r in p.rows]

    cdef list _compute(self, WindowFunc f, object soff, object eoff, _Partition p):
        cdef Py_ssize_t n = p.n, i, g
        cdef int kind = f.kind
        cdef list res
        if kind == WIN_ROW_NUMBER:
            return list(range(1, n + 1))
        if kind == WIN_RANK:
            return [<Py_ssize_t>p.gstart[<Py_ssize_t>p.gid[i]] + 1 for i in range(n)]
        if kind == WIN_DENSE_RANK:
            return [<Py_ssize_t>p.gid[i] + 1 for i in range(n)]
        if kind == WIN_PERCENT_RANK:
            if n <= 1:
                return [0.0] * n
            return [(<Py_ssize_t>p.gstart[<Py_ssize_t>p.gid[i]]) / <double>(n - 1) for i in range(n)]
        if kind == WIN_CUME_DIST:
            return [(<Py_ssize_t>p.gend[<Py_ssize_t>p.gid[i]]) / <double>n for i in range(n)]
        if kind == WIN_NTILE:
            return self._ntile(f, p)
        if kind == WIN_LAG or kind == WIN_LEAD:
            return self._lag_lead(f, p, kind == WIN_LEAD)
        return self._framed(f, soff, eoff, p)

    cdef list _ntile(self, WindowFunc f, _Partition p):
        cdef list nargs = self._args(f, p, 0)
        cdef list res = []
        cdef Py_ssize_t i, n = p.n, size, extra, big
        for i in range(n):
            v = nargs[i]
            if type(v) is float and v == <double><long long>v:
                v = int(v)
            if type(v) is not int or v <= 0:
                raise DataError("argument of ntile must be a positive integer")
            if v >= n:
                res.append(i + 1)
                continue
            size = n // v
            extra = n % v
            big = extra * (size + 1)
            if i < big:
                res.append(i // (size + 1) + 1)
            else:
                res.append(extra + (i - big) // size + 1)
        return res

    cdef list _lag_lead(self, WindowFunc f, _Partition p, bint lead):
        cdef list vals = self._args(f, p, 0)
        cdef list offs = self._args(f, p, 1) if len(f.args) > 1 else None
        cdef list defs = self._args(f, p, 2) if len(f.args) > 2 else None
        cdef list res = []
        cdef Py_ssize_t i, j, n = p.n
        cdef object off
        for i in range(n):
            off = 1 if offs is None else offs[i]
            if off is None:
                res.append(None)
                continue
            if type(off) is float and off == <double><long long>off:
                off = int(off)
            if type(off) is not int:
                off = apply_affinity(off, AFF_INTEGER) if type(off) is str else off
                if type(off) is not int:
                    raise DataError(f"second argument to {'lead' if lead else 'lag'} must be an integer")
            j = i + off if lead else i - off
            if 0 <= j < n:
                res.append(vals[j])
            else:
                res.append(defs[i] if defs is not None else None)
        return res

    cdef inline Py_ssize_t _bound(self, WindowFunc f, int kind, object off, Py_ssize_t i, _Partition p,
                                  bint is_end):
        """Start (inclusive) or end (exclusive) of row i's frame for one bound."""
        cdef Py_ssize_t g, n = p.n, t
        if kind == BOUND_UNBOUNDED_PRECEDING:
            return 0
        if kind == BOUND_UNBOUNDED_FOLLOWING:
            return n
        if f.frame_type == FRAME_ROWS:
            if kind == BOUND_CURRENT_ROW:
                t = i
            elif kind == BOUND_PRECEDING:
                t = i - off if off <= i else -1
            else:
                t = i + off if off < n else n
            if is_end:
                t += 1
            return 0 if t < 0 else (n if t > n else t)
        g = p.gid[i]
        if f.frame_type == FRAME_GROUPS or kind == BOUND_CURRENT_ROW:
            if kind == BOUND_PRECEDING:
                g = g - off if off <= g else -1
            elif kind == BOUND_FOLLOWING:
                g = g + off if off < len(p.gstart) else len(p.gstart)
            if g < 0:
                return 0
            if g >= len(p.gstart):
                return n
            return p.gend[g] if is_end else p.gstart[g]
        # RANGE with an offset: NULL and non-numeric order values frame their peers.
        v = p.ovals[i]
        if not _is_number(v):
            return p.gend[g] if is_end else p.gstart[g]
        target = (v - off if kind == BOUND_PRECEDING else v + off) if not p.desc else \
                 (v + off if kind == BOUND_PRECEDING else v - off)
        if is_end:
            return p.first_beyond(target)
        return p.first_at_least(target)

    cdef list _framed(self, WindowFunc f, object soff, object eoff, _Partition p):
        cdef Py_ssize_t n = p.n, i, s, e, cur_s = 0, cur_e = 0, last_s = -1, last_e = -1
        cdef list res = []
        cdef list vals, nth = None
        cdef Aggregate state = None
        cdef _SlidingSum acc = None
        cdef object last_val = None
        cdef int kind = f.kind
        if kind == WIN_AGGREGATE:
            if f.star:
                vals = [None] * n
            elif len(f.args) == 1:
                vals = self._args(f, p, 0)
            else:
                cols = [self._args(f, p, k) for k in range(len(f.args))]
                vals = [tuple([c[i] for c in cols]) for i in range(n)]
        else:
            vals = self._args(f, p, 0)
            if kind == WIN_NTH_VALUE:
                nth = self._args(f, p, 1)
        if kind == WIN_AGGREGATE and f.inverse_kind != INV_NONE and f.exclude == EXCLUDE_NO_OTHERS:
            acc = _SlidingSum(f.inverse_kind)
        for i in range(n):
            s = self._bound(f, f.start_kind, soff, i, p, False)
            e = self._bound(f, f.end_kind, eoff, i, p, True)
            if e < s:
                e = s
            if f.exclude != EXCLUDE_NO_OTHERS:
                res.append(self._excluded_value(f, vals, nth, self._frame_rows(f, i, s, e, p), i))
                continue
            if acc is not None:
                # Every row is added once when the frame end passes it and removed
                # once when the frame start does (SQLite's AGGSTEP / AGGINVERSE).
                while cur_e < e:
                    acc.add(vals[cur_e])
                    cur_e += 1
                while cur_s < s:
                    acc.remove(vals[cur_s])
                    cur_s += 1
                res.append(acc.value())
                continue
            if kind == WIN_FIRST_VALUE:
                res.append(vals[s] if s < e else None)
                continue
            if kind == WIN_LAST_VALUE:
                res.append(vals[e - 1] if s < e else None)
                continue
            if kind == WIN_NTH_VALUE:
                k = nth[i]
                if type(k) is float and k == <double><long long>k:
                    k = int(k)
                if type(k) is not int or k <= 0:
                    raise DataError("second argument to nth_value must be a positive integer")
                res.append(vals[s + k - 1] if s + k - 1 < e else None)
                continue
            if s == last_s and e == last_e:
                res.append(last_val)
                continue
            if state is None or s != cur_s or e < cur_e:
                # The frame start moved (or first row): aggregate afresh from it.
                state = <Aggregate>f.factory()
                cur_s = s
                cur_e = s
            while cur_e < e:
                state.step(vals[cur_e])
                cur_e += 1
            last_val = state.final()
            last_s = s
            last_e = e
            res.append(last_val)
        return res

    cdef list _frame_rows(self, WindowFunc f, Py_ssize_t i, Py_ssize_t s, Py_ssize_t e, _Partition p):
        """Row i's frame [s, e) without the rows its EXCLUDE clause takes out."""
        cdef Py_ssize_t g = p.gid[i]
        cdef Py_ssize_t xs = i, xe = i + 1       # EXCLUDE CURRENT ROW
        if f.exclude != EXCLUDE_CURRENT_ROW:
            xs = p.gstart[g]
            xe = p.gend[g]
        rows = [j for j in range(s, e) if not xs <= j < xe]
        if f.exclude == EXCLUDE_TIES and s <= i < e:
            rows.append(i)
            rows.sort()
        return rows

    cdef object _excluded_value(self, WindowFunc f, list vals, list nth, list rows, Py_ssize_t i):
        """A framed function over an explicit list of frame rows (the EXCLUDE case)."""
        cdef Aggregate state
        cdef int kind = f.kind
        if kind == WIN_FIRST_VALUE:
            return vals[rows[0]] if rows else None
        if kind == WIN_LAST_VALUE:
            # No negative indexing: the extension is built with wraparound off.
            return vals[rows[len(rows) - 1]] if rows else None
        if kind == WIN_NTH_VALUE:
            k = nth[i]
            if type(k) is float and k == <double><long long>k:
                k = int(k)
            if type(k) is not int or k <= 0:
                raise DataError("second argument to nth_value must be a positive integer")
            return vals[rows[k - 1]] if k <= len(rows) else None
        state = <Aggregate>f.factory()
        for j in rows:
            state.step(vals[j])
        return state.final()

    cdef tuple next(self):
        if self.pos >= len(self.out):
            return None
        r = self.out[self.pos]
        self.pos += 1
        return r

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        self.out = None


cdef class OuterJoin(Operator):
    """LEFT, RIGHT and FULL joins: the right input is read once into buckets.

    With equality keys (``left_keys``/``right_keys``) rows are bucketed by
    key (a NULL key matches nothing); without, every right row is one bucket
    and the join is a nested loop.  ``cond`` is the rest of the ON clause.
    Right rows never matched are emitted at the end, NULL-padded on the left,
    when ``keep_right`` (RIGHT/FULL); ``keep_left`` (LEFT/FULL) pads left rows.
    """
    cdef Operator left, right
    cdef list left_keys, right_keys
    cdef Expr cond
    cdef bint keep_left, keep_right
    cdef Py_ssize_t left_width, right_width
    cdef list right_rows
    cdef dict buckets
    cdef bytearray matched_right
    cdef tuple cur_left
    cdef list bucket
    cdef Py_ssize_t bucket_pos, tail_pos
    cdef bint matched, left_done
    cdef ExecContext ctx

    def __init__(self, Operator left, Operator right, list left_keys, list right_keys, Expr cond,
                 bint keep_left, bint keep_right, Py_ssize_t left_width, Py_ssize_t right_width):
        self.left = left
        self.right = right
        self.left_keys = left_keys
        self.right_keys = right_keys
        self.cond = cond
        self.keep_left = keep_left
        self.keep_right = keep_right
        self.left_width = left_width
        self.right_width = right_width

    cdef void open(self, ExecContext ctx) except *:
        cdef tuple r, k
        cdef Py_ssize_t idx = 0
        self.ctx = ctx
        self.right_rows = []
        self.buckets = {}
        self.right.open(ctx)
        try:
            while True:
                r = self.right.next()
                if r is None:
                    break
                self.right_rows.append(r)
                k = eval_list(self.right_keys, r, ctx) if self.right_keys else ()
                if None not in k:
                    b = self.buckets.get(k)
                    if b is None:
                        self.buckets[k] = [idx]
                    else:
                        b.append(idx)
                idx += 1
        finally:
            self.right.close()
        self.matched_right = bytearray(len(self.right_rows))
        self.left.open(ctx)
        self.cur_left = None
        self.bucket = None
        self.left_done = False
        self.tail_pos = 0

    cdef tuple next(self):
        cdef tuple row, k
        cdef Py_ssize_t idx
        while not self.left_done:
            if self.bucket is not None and self.bucket_pos < len(self.bucket):
                idx = self.bucket[self.bucket_pos]
                self.bucket_pos += 1
                row = self.cur_left + <tuple>self.right_rows[idx]
                if self.cond is None or sql_truth(self.cond.eval(row, self.ctx)):
                    self.matched = True
                    self.matched_right[idx] = 1
                    return row
                continue
            if self.cur_left is not None and self.keep_left and not self.matched:
                row = self.cur_left + (None,) * self.right_width
                self.cur_left = None
                return row
            self.cur_left = self.left.next()
            if self.cur_left is None:
                self.left_done = True
                break
            self.matched = False
            k = eval_list(self.left_keys, self.cur_left, self.ctx) if self.left_keys else ()
            self.bucket = None if None in k else self.buckets.get(k)
            self.bucket_pos = 0
        if not self.keep_right:
            return None
        while self.tail_pos < len(self.right_rows):
            idx = self.tail_pos
            self.tail_pos += 1
            if not self.matched_right[idx]:
                return (None,) * self.left_width + <tuple>self.right_rows[idx]
        return None

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        self.left.close()
        self.right_rows = None
        self.buckets = None
