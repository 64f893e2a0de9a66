# Compiled query operators (pull-based, one row per ``next`` call).
#
# Each operator is a cdef class; ``next`` is a C-level virtual call returning
# a row tuple or None at the end.  The planner builds the tree once per
# statement and caches it; ``open`` resets per-execution state, so a cached
# plan is reused without any Python-level planning.
#
# Row layout from a table scan: the table's columns in declaration order,
# then the rowid (so DML and ``rowid`` references find it at a known place).

cdef class Operator:
    cdef void open(self, ExecContext ctx) except *:
        pass

    cdef tuple next(self):
        return None

    cdef void close(self):
        pass


cdef tuple _table_row(bytes key, bytes value, Py_ssize_t ncols, tuple defaults):
    """``_table_row_ptr`` over bytes objects (point lookups through py-lmdb)."""
    return _table_row_ptr(<const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                          <const unsigned char*>PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                          ncols, defaults, 0)


cdef tuple _table_row_ptr(const unsigned char* kp, Py_ssize_t kn, const unsigned char* p, Py_ssize_t n,
                          Py_ssize_t ncols, tuple defaults, unsigned long long json_docs):
    """Decodes a stored row straight into a tuple with the rowid in the last slot.

    Reads the key and record where they lie (LMDB's map, through LmdbCursor)
    and makes one allocation per row (not a decoded tuple plus a
    concatenation): this is the innermost step of every scan.  Columns whose
    bit is set in ``json_docs`` give their JSON document cells as JsonbDoc
    (TableReader.read_json_docs).
    """
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t stored = _rc_header(p, n, &pos)
    cdef Py_ssize_t i
    cdef Py_ssize_t upto = ncols if ncols < stored else stored
    cdef tuple row
    cdef object v
    if kn != 8:
        raise CorruptDatabaseError(f"rowid key must be 8 bytes, got {kn}")
    row = PyTuple_New(ncols + 1)     # NULL slots are safe if we raise midway
    for i in range(upto):
        v = _rc_read_col_cell(p, n, &pos, json_docs, i)
        Py_INCREF(v)
        PyTuple_SET_ITEM(row, i, v)
    if upto == stored and pos != n:
        _rc_corrupt("trailing bytes after the last cell", pos)
    for i in range(upto, ncols):
        v = _rc_default(defaults, i)
        Py_INCREF(v)
        PyTuple_SET_ITEM(row, i, v)
    v = PyLong_FromLongLong(_kc_get_rowid(kp))
    Py_INCREF(v)
    PyTuple_SET_ITEM(row, ncols, v)
    return row



cdef class RowShape:
    """Which stored columns a scan decodes into its rows (projection pushdown).

    Rows keep the table's layout (columns in declaration order, then the
    rowid) so column positions stay those the planner compiled against; a
    column the query never reads is left None without being decoded (its
    cell is skipped, no object is made).  ``columns`` None decodes all.
    With ``columns``, ``rowid`` False leaves the rowid slot None too.
    """
    cdef readonly Py_ssize_t ncols
    cdef readonly tuple defaults
    cdef readonly bytes want          # one byte per column: 1 = decode; None = decode all
    cdef readonly bint rowid
    cdef Py_ssize_t upto              # cells after this one are never walked
    cdef public unsigned long long json_docs  # bit i: column i's JSON documents as JsonbDoc

    def __init__(self, Py_ssize_t ncols, tuple defaults, columns=None, bint rowid=True):
        cdef bytearray want
        self.ncols = ncols
        self.defaults = defaults
        self.rowid = rowid
        if columns is None:
            self.rowid = True
            return
        want = bytearray(ncols)
        for c in columns:
            if not 0 <= c < ncols:
                raise InternalError(f"scan column {c} outside the table's {ncols} columns")
            want[c] = 1
            if c + 1 > self.upto:
                self.upto = c + 1
        self.want = bytes(want)

    @property
    def columns(self):
        """The decoded column positions (None: all)."""
        if self.want is None:
            return None
        return tuple(i for i in range(self.ncols) if self.want[i])

    cdef tuple decode(self, const unsigned char* kp, Py_ssize_t kn, const unsigned char* p, Py_ssize_t n):
        """The executor row for a stored (rowid key, record) pair."""
        if self.want is None:
            return _table_row_ptr(kp, kn, p, n, self.ncols, self.defaults, self.json_docs)
        cdef const unsigned char* w = <const unsigned char*>PyBytes_AS_STRING(self.want)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t stored = _rc_header(p, n, &pos)
        cdef Py_ssize_t i, ncols = self.ncols
        cdef tuple row
        cdef object v
        if kn != 8:
            raise CorruptDatabaseError(f"rowid key must be 8 bytes, got {kn}")
        row = PyTuple_New(ncols + 1)     # NULL slots are safe if we raise midway
        for i in range(ncols):
            if not w[i]:
                v = None
                if i < stored and i < self.upto:
                    pos = _rc_skip_cell(p, n, pos)
            elif i < stored:
                v = _rc_read_col_cell(p, n, &pos, self.json_docs, i)
            else:
                v = _rc_default(self.defaults, i)
            Py_INCREF(v)
            PyTuple_SET_ITEM(row, i, v)
        v = PyLong_FromLongLong(_kc_get_rowid(kp)) if self.rowid else None
        Py_INCREF(v)
        PyTuple_SET_ITEM(row, ncols, v)
        return row


cdef long long _KEY_ROW_INT_MIN = -9223372036854775807 - 1


cdef class KeyRowShape:
    """Rows of a covering-index scan: the table columns read from index keys.

    ``positions[k]`` is the table column that key part ``k`` holds (-1: not
    wanted); ``affinities`` one key-codec letter (I R N T) per part up to
    the last wanted one; ``rowid_alias`` the INTEGER PRIMARY KEY column (-1:
    none), filled from the key's rowid suffix.  Other columns are None, as
    with ``RowShape``.  The planner only covers BINARY plain-column parts
    whose affinity makes the key round-trip exact (keycodec.pxi's header).
    """
    cdef readonly Py_ssize_t ncols
    cdef readonly tuple positions
    cdef readonly bytes affinities
    cdef readonly bytes desc
    cdef readonly Py_ssize_t rowid_alias
    cdef tuple part_of               # per table column: its key part, or -1

    def __init__(self, Py_ssize_t ncols, tuple positions, bytes affinities, bytes desc,
                 Py_ssize_t rowid_alias=-1):
        cdef list part_of = [-1] * ncols
        if len(affinities) != len(positions):
            raise InternalError("covering index shape: one affinity per key part")
        for k, col in enumerate(positions):
            if col >= ncols or col == rowid_alias and col >= 0:
                raise InternalError(f"covering index shape: bad column {col}")
            if col >= 0:
                part_of[col] = k
        self.ncols = ncols
        self.positions = positions
        self.affinities = affinities
        self.desc = desc
        self.rowid_alias = rowid_alias
        self.part_of = tuple(part_of)

    cdef tuple decode(self, const unsigned char* kp, Py_ssize_t kn):
        """The row for an index entry (key parts + 8-byte rowid suffix), or None
        when a value's type cannot be told from the key (the caller then
        reads the table row)."""
        cdef Py_ssize_t i, k
        cdef Py_ssize_t ndesc
        cdef const unsigned char* desc = _kc_desc_ptr(self.desc, &ndesc)
        cdef tuple parts
        cdef tuple row
        cdef object v, rowid
        if kn < 8:
            raise CorruptDatabaseError(f"index key too short for a rowid suffix ({kn} bytes)")
        parts = _decode_key_ptr(kp, kn - 8, PyBytes_AS_STRING(self.affinities), PyBytes_GET_SIZE(self.affinities),
                                desc, ndesc)
        for v in parts:
            # An INTEGER/NUMERIC column keeps the REAL -2**63 as REAL (SQLite's
            # ticket #3922), but its key reads back as that int: ask the table.
            if type(v) is int and v == _KEY_ROW_INT_MIN:
                return None
        rowid = PyLong_FromLongLong(_kc_get_rowid(kp + kn - 8))
        row = PyTuple_New(self.ncols + 1)
        for i in range(self.ncols):
            k = <Py_ssize_t>self.part_of[i]
            if k >= 0 and k < len(parts):
                v = parts[k]
            elif i == self.rowid_alias:
                v = rowid
            else:
                v = None
            Py_INCREF(v)
            PyTuple_SET_ITEM(row, i, v)
        Py_INCREF(rowid)
        PyTuple_SET_ITEM(row, self.ncols, rowid)
        return row

cdef class TableReader(Operator):
    """An operator reading a table's stored rows (scan, rowid or index access)."""
    cdef readonly RowShape shape       # which columns it decodes, and how

    def read_json_docs(self, columns):
        """Hand the JSON document cells of ``columns`` (positions below 64) on as
        JsonbDoc, not text: for columns the statement reads only through path
        extractors and tree-walking JSON functions, or not at all (the planner's
        engine/jsonb_reads.py decides)."""
        cdef unsigned long long mask = 0
        for c in columns:
            if 0 <= c < 64:
                mask |= (<unsigned long long>1) << <int>c
        self.shape.json_docs = mask


cdef class TableScan(TableReader):
    """Full scan of a table B-tree in rowid order, with an optional pushed-down filter.

    ``columns`` (every scan operator takes it): the column positions the
    query reads, the only ones decoded (RowShape); None decodes all.
    ``rowid`` False: nothing reads the rowid slot either.
    """
    cdef object dbname, store, handle
    cdef Expr predicate
    cdef LmdbCursor cursor
    cdef ExecContext ctx

    def __init__(self, store, bytes dbname, Py_ssize_t ncols, tuple defaults, Expr predicate=None,
                 columns=None, bint rowid=True):
        self.store = store
        self.dbname = dbname
        self.shape = RowShape(ncols, defaults, columns, rowid)
        self.predicate = predicate

    cdef void open(self, ExecContext ctx) except *:
        self.ctx = ctx
        if self.handle is None:      # stable for the plan's life (a schema change replans)
            self.handle = self.store.db(self.dbname, txn=ctx.wtxn)
        self.cursor = lmdb_cursor(ctx.txn, self.handle)

    cdef tuple next(self):
        cdef tuple row
        cdef LmdbCursor c = self.cursor
        while True:
            if c is None or not c.next():
                return None
            row = self.shape.decode(c.kp, c.kn, c.vp, c.vn)
            if self.predicate is None or sql_truth(self.predicate.eval(row, self.ctx)):
                return row

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        if self.cursor is not None:
            self.cursor.close()
            self.cursor = None


# Rows one execution keeps per probed table (ExecContext.row_memo): bounds the
# memory an index nested-loop join spends to skip repeated B-tree probes.
cdef Py_ssize_t _ROW_MEMO_MAX = 1 << 15


cdef class RowidLookup(TableReader):
    """``rowid = expr`` (or INTEGER PRIMARY KEY = expr): one B-tree get.

    Given a list of key expressions (``rowid IN (...)``), one get per distinct
    key, in ascending rowid order as SQLite returns them.
    """
    cdef object dbname, store, handle
    cdef object memo_key             # rows of one shape share a memo
    cdef Expr key_expr, predicate
    cdef list key_exprs
    cdef list keys                   # the keys of a key list, ascending; None for one key_expr
    cdef object key                  # the one key_expr's key (no list per execution)
    cdef Py_ssize_t key_i, nkeys
    cdef ExecContext ctx

    def __init__(self, store, bytes dbname, Py_ssize_t ncols, tuple defaults, key_expr, Expr predicate=None,
                 columns=None):
        self.store = store
        self.dbname = dbname
        self.shape = RowShape(ncols, defaults, columns)
        if isinstance(key_expr, list):
            self.key_exprs = key_expr
        else:
            self.key_expr = <Expr?>key_expr
        self.predicate = predicate

    cdef void open(self, ExecContext ctx) except *:
        self.ctx = ctx
        self.key_i = 0
        cdef set seen
        if self.key_exprs is None:
            self.key = rowid_probe_value(self.key_expr.eval((), ctx))
            self.nkeys = self.key is not None
        else:
            seen = set()
            for e in self.key_exprs:
                k = rowid_probe_value((<Expr>e).eval((), ctx))
                if k is not None:
                    seen.add(k)
            self.keys = sorted(seen)
            self.nkeys = len(self.keys)
        if self.nkeys and self.handle is None:   # stable for the plan's life (a schema change replans)
            self.handle = self.store.db(self.dbname, txn=ctx.wtxn)
            # Rows of one shape share a memo (JsonbDoc cells differ from text ones too).
            self.memo_key = (self.handle if self.shape.want is None and not self.shape.json_docs
                             else (self.handle, self.shape.want, self.shape.json_docs))

    cdef tuple next(self):
        cdef tuple row
        cdef unsigned char key[8]
        cdef LmdbCursor c
        cdef dict memo = self.ctx.row_memo(self.memo_key)
        while self.key_i < self.nkeys:
            k = self.key if self.keys is None else self.keys[self.key_i]
            self.key_i += 1
            # Probes repeated within one execution (a nested-loop join) hit the row memo.
            row = memo.get(k) if memo is not None else None
            if row is None:
                c = self.ctx.lookup_cursor(self.handle)
                _kc_put_rowid(key, k)
                row = self.shape.decode(c.kp, c.kn, c.vp, c.vn) if c.find(key, 8) else ()
                if memo is not None and len(memo) < _ROW_MEMO_MAX:
                    memo[k] = row
            if len(row) and (self.predicate is None or sql_truth(self.predicate.eval(row, self.ctx))):
                return row
        return None

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        self.keys = None
        self.key = None
        self.nkeys = 0


cdef object rowid_probe_value(object v):
    """The int64 rowid a probe value designates, or None if it can match no row."""
    if v is None:
        return None
    if type(v) is int:
        return v
    if type(v) is float:
        return _real_rowid(v)
    if type(v) is str:
        n = apply_affinity(v, AFF_INTEGER)
        if type(n) is int:
            return n
        if type(n) is float:
            return _real_rowid(n)
    return None


cdef object _real_rowid(double d):
    """The rowid a real probe designates: an integral value strictly inside the
    int64 range, as SQLite's rowid seek takes it (-2**63 as a real finds no row
    there, though it is exact); None otherwise (NaN and infinities included).
    The range test comes first: casting a double outside it to C is undefined."""
    if -9223372036854775808.0 < d < 9223372036854775808.0 and d == <double><long long>d:
        return <long long>d
    return None


cdef class RowidRange(TableReader):
    """Range scan over rowids: lo/hi expressions (None = open), inclusive flags."""
    cdef object dbname, store, handle
    cdef Expr lo, hi, predicate
    cdef bint lo_incl, hi_incl
    cdef LmdbCursor cursor
    cdef bytes lo_key, hi_key
    cdef bint done, started
    cdef ExecContext ctx

    def __init__(self, store, bytes dbname, Py_ssize_t ncols, tuple defaults, Expr lo, bint lo_incl,
                 Expr hi, bint hi_incl, Expr predicate=None, columns=None):
        self.store = store
        self.dbname = dbname
        self.shape = RowShape(ncols, defaults, columns)
        self.lo = lo
        self.hi = hi
        self.lo_incl = lo_incl
        self.hi_incl = hi_incl
        self.predicate = predicate

    cdef void open(self, ExecContext ctx) except *:
        self.ctx = ctx
        self.done = False
        self.started = False
        self.lo_key = None
        self.hi_key = None
        if self.lo is not None:
            b = _numeric_bound(self.lo.eval((), ctx), True, self.lo_incl)
            if b is None:
                self.done = True
                return
            self.lo_key = encode_rowid(b) if b is not _UNBOUNDED else None
        if self.hi is not None:
            b = _numeric_bound(self.hi.eval((), ctx), False, self.hi_incl)
            if b is None:
                self.done = True
                return
            self.hi_key = encode_rowid(b) if b is not _UNBOUNDED else None
        if self.handle is None:      # stable for the plan's life (a schema change replans)
            self.handle = self.store.db(self.dbname, txn=ctx.wtxn)
        self.cursor = lmdb_cursor(ctx.txn, self.handle)

    cdef tuple next(self):
        cdef tuple row
        cdef LmdbCursor c = self.cursor
        cdef int found
        if self.done:
            return None
        while True:
            if not self.started:
                self.started = True
                found = c.first() if self.lo_key is None else c.seek(self.lo_key)
            else:
                found = c.next()
            if not found or (self.hi_key is not None and c.key_cmp(self.hi_key) > 0):
                self.done = True
                return None
            row = self.shape.decode(c.kp, c.kn, c.vp, c.vn)
            if self.predicate is None or sql_truth(self.predicate.eval(row, self.ctx)):
                return row

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        if self.cursor is not None:
            self.cursor.close()
            self.cursor = None


_UNBOUNDED = object()


cdef object _numeric_bound(object v, bint is_lower, bint inclusive):
    """Turns a comparison bound on an integer key into an inclusive int64 bound.

    Returns None when no row can satisfy it (NULL bound, text above all
    numbers for a lower bound...), _UNBOUNDED when the side is open.
    """
    import math
    if v is None:
        return None
    if type(v) is str or type(v) is bytes:
        n = apply_affinity(v, AFF_NUMERIC) if type(v) is str else v
        if type(n) is str or type(n) is bytes:
            # Text/blob sorts above every number: rowid < 'x' is always true.
            return None if is_lower else _UNBOUNDED
        v = n
    if type(v) is float:
        if v != v:
            return None
        if is_lower:
            b = math.ceil(v) if v == v else None
            if not inclusive and b == v:
                b += 1
        else:
            b = math.floor(v)
            if not inclusive and b == v:
                b -= 1
    else:
        b = v + (0 if inclusive else (1 if is_lower else -1))
    if b > 9223372036854775807:
        return None if is_lower else _UNBOUNDED
    if b < -9223372036854775808:
        return _UNBOUNDED if is_lower else None
    return int(b)


cdef class IndexScan(TableReader):
    """Scan of index key ranges fetching the table rows by rowid.

    ``lo``/``hi`` are lists of expressions for a prefix of the index columns;
    bounds are built per execution with the key codec.  With ``in_list`` (the
    ``x IN (...)`` of the index part after the ``lo`` == ``hi`` equality
    prefix), every distinct value is one exact-prefix range, visited in key
    order (so each row comes once, in index order, as SQLite gives it).
    With ``reverse``, ranges and keys are visited last to first.  With
    ``cover`` (a KeyRowShape) rows are read from the index keys alone: a
    covering-index scan, no table lookups.
    """
    cdef object store, table_db, index_db
    cdef readonly KeyRowShape cover
    cdef list lo, hi, in_list
    cdef bint lo_incl, hi_incl
    cdef bytes desc
    cdef Expr predicate
    cdef object table_handle, index_handle
    cdef LmdbCursor cursor           # walks the index forwards (the C path)
    cdef object back, it             # py-lmdb cursor and iterator walking it backwards (reverse)
    cdef LmdbCursor rows             # fetches table rows by rowid (the execution's lookup cursor)
    cdef bytes hi_key, lo_key        # the current range
    cdef list ranges                 # pending (lo_key or None, hi_key or None), in key order
    cdef Py_ssize_t range_i
    cdef bint done, reverse, seek_pending
    cdef const unsigned char* kp     # the current index key (valid until the next LMDB call)
    cdef Py_ssize_t kn
    cdef bytes back_key              # holds it on the reverse path
    cdef ExecContext ctx

    def __init__(self, store, bytes table_db, bytes index_db, Py_ssize_t ncols, tuple defaults,
                 bytes desc, list lo, bint lo_incl, list hi, bint hi_incl, Expr predicate=None,
                 list in_list=None, bint reverse=False, columns=None, KeyRowShape cover=None):
        self.store = store
        self.table_db = table_db
        self.index_db = index_db
        self.shape = RowShape(ncols, defaults, columns)
        self.cover = cover
        self.desc = desc
        self.lo = lo
        self.hi = hi
        self.lo_incl = lo_incl
        self.hi_incl = hi_incl
        self.predicate = predicate
        self.in_list = in_list
        self.reverse = reverse

    cdef list _single_range(self, ExecContext ctx):
        cdef bytes lo_key = None, hi_key = None
        if self.lo:
            vals = eval_list(self.lo, (), ctx)
            if None in vals:
                return []
            lo_key = encode_key(vals, self.desc[:len(vals)])
            if not self.lo_incl:
                lo_key = prefix_successor(lo_key)
                if lo_key is None:
                    return []
        if self.hi:
            vals = eval_list(self.hi, (), ctx)
            if None in vals:
                return []
            hi_key = encode_key(vals, self.desc[:len(vals)])
            if self.hi_incl:
                hi_key = prefix_successor(hi_key)
        return [(lo_key, hi_key)]

    cdef list _in_ranges(self, ExecContext ctx):
        prefix = eval_list(self.lo, (), ctx) if self.lo else ()
        if None in prefix:
            return []
        cdef Py_ssize_t n = len(prefix) + 1
        cdef set keys = set()
        for e in self.in_list:
            v = (<Expr>e).eval((), ctx)
            if v is not None:       # x IN (NULL) matches nothing
                keys.add(encode_key(tuple(prefix) + (v,), self.desc[:n]))
        return [(k, prefix_successor(k)) for k in sorted(keys)]

    cdef void open(self, ExecContext ctx) except *:
        self.ctx = ctx
        self.done = False
        self.ranges = self._in_ranges(ctx) if self.in_list is not None else self._single_range(ctx)
        if self.reverse:
            self.ranges.reverse()
        self.range_i = 0
        if self.index_handle is None:
            self.index_handle = self.store.db(self.index_db, txn=ctx.wtxn)
            self.table_handle = self.store.db(self.table_db, txn=ctx.wtxn)
        self.rows = ctx.lookup_cursor(self.table_handle)
        if self.reverse:
            self.back = ctx.txn.cursor(db=self.index_handle)
        else:
            self.cursor = lmdb_cursor(ctx.txn, self.index_handle)
        self._next_range()

    cdef void _next_range(self):
        """Takes the next pending range; done when none is left.

        Forwards, the C cursor seeks lazily (in ``next``); backwards, the
        py-lmdb cursor is placed on the range's last key here, and a range
        with no keys is skipped.
        """
        cdef tuple bounds
        while self.range_i < len(self.ranges):
            bounds = <tuple>self.ranges[self.range_i]
            self.lo_key = <bytes>bounds[0]
            self.hi_key = <bytes>bounds[1]
            self.range_i += 1
            if not self.reverse:
                self.seek_pending = True
                return
            # The last key below hi_key: step back from the first key at or above it.
            if self.hi_key is not None and self.back.set_range(self.hi_key):
                ok = self.back.prev()
            else:
                ok = self.back.last()
            if ok:
                self.it = self.back.iterprev(keys=True, values=False)
                return
        self.done = True

    cdef bint _next_index_key(self, unsigned char* rk) except -1:
        """Moves to the next index entry within the current ranges; its rowid suffix into ``rk``."""
        cdef LmdbCursor c
        cdef bytes key
        cdef int found
        while not self.done:
            if self.reverse:
                key = next(self.it, None)
                if key is None or (self.lo_key is not None and key < self.lo_key):
                    self._next_range()
                    continue
                if len(key) < 8:
                    raise CorruptDatabaseError(f"index key too short for a rowid suffix ({len(key)} bytes)")
                memcpy(rk, PyBytes_AS_STRING(key) + len(key) - 8, 8)
                self.back_key = key
                self.kp = <const unsigned char*>PyBytes_AS_STRING(key)
                self.kn = len(key)
                return True
            c = self.cursor
            if self.seek_pending:
                self.seek_pending = False
                found = c.first() if self.lo_key is None else c.seek(self.lo_key)
            else:
                found = c.next()
            if not found or (self.hi_key is not None and c.key_cmp(self.hi_key) >= 0):
                self._next_range()
                continue
            if c.kn < 8:
                raise CorruptDatabaseError(f"index key too short for a rowid suffix ({c.kn} bytes)")
            memcpy(rk, c.kp + c.kn - 8, 8)      # the rowid suffix is the table key
            self.kp = c.kp
            self.kn = c.kn
            return True
        return False

    cdef tuple next(self):
        cdef LmdbCursor rows = self.rows
        cdef tuple row
        cdef unsigned char rk[8]
        while self._next_index_key(rk):
            row = self.cover.decode(self.kp, self.kn) if self.cover is not None else None
            if row is None:
                if not rows.find(rk, 8):
                    continue
                row = self.shape.decode(rows.kp, rows.kn, rows.vp, rows.vn)
            if self.predicate is None or sql_truth(self.predicate.eval(row, self.ctx)):
                return row
        return None

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        if self.cursor is not None:
            self.cursor.close()
            self.cursor = None
        if self.back is not None:
            self.back.close()
            self.back = None
        self.it = None
        self.back_key = None
        self.rows = None


cdef class Filter(Operator):
    cdef Operator child
    cdef Expr predicate
    cdef ExecContext ctx

    def __init__(self, Operator child, Expr predicate):
        self.child = child
        self.predicate = predicate

    cdef void open(self, ExecContext ctx) except *:
        self.ctx = ctx
        self.child.open(ctx)

    cdef tuple next(self):
        cdef tuple row
        while True:
            row = self.child.next()
            if row is None:
                return None
            if sql_truth(self.predicate.eval(row, self.ctx)):
                return row

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        self.child.close()


cdef class Project(Operator):
    cdef Operator child
    cdef list exprs
    cdef ExecContext ctx

    def __init__(self, Operator child, list exprs):
        self.child = child
        self.exprs = exprs

    cdef void open(self, ExecContext ctx) except *:
        self.ctx = ctx
        self.child.open(ctx)

    cdef tuple next(self):
        cdef tuple row = self.child.next()
        if row is None:
            return None
        return eval_list(self.exprs, row, self.ctx)

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        self.child.close()


cdef class SingleRow(Operator):
    """The one empty row of a SELECT without FROM."""
    cdef bint done

    cdef void open(self, ExecContext ctx) except *:
        self.done = False

    cdef tuple next(self):
        if self.done:
            return None
        self.done = True
        return ()


cdef class NestedLoopJoin(Operator):
    """For each left row, re-open the right side; LEFT JOIN pads with NULLs."""
    cdef Operator left, right
    cdef Expr cond
    cdef bint left_outer, matched
    cdef Py_ssize_t right_width
    cdef tuple cur_left
    cdef ExecContext ctx

    def __init__(self, Operator left, Operator right, Expr cond, bint left_outer, Py_ssize_t right_width):
        self.left = left
        self.right = right
        self.cond = cond
        self.left_outer = left_outer
        self.right_width = right_width

    cdef void open(self, ExecContext ctx) except *:
        self.ctx = ctx
        self.left.open(ctx)
        self.cur_left = None

    cdef tuple next(self):
        cdef tuple r, row
        while True:
            if self.cur_left is None:
                self.cur_left = self.left.next()
                if self.cur_left is None:
                    return None
                self.matched = False
                # The right side may reference the left row (correlation of
                # the join condition pushed into an index probe).
                self.ctx.outer.append(self.cur_left)
                try:
                    self.right.open(self.ctx)
                finally:
                    self.ctx.outer.pop()
            r = self.right.next()
            if r is None:
                self.right.close()
                left = self.cur_left
                self.cur_left = None
                if self.left_outer and not self.matched:
                    return left + (None,) * self.right_width
                continue
            row = self.cur_left + r
            if self.cond is None or sql_truth(self.cond.eval(row, self.ctx)):
                self.matched = True
                return row

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        self.left.close()
        self.right.close()


cdef extern from "Python.h":
    int PyGC_Enable()
    int PyGC_Disable()


@cython.no_gc        # never in a reference cycle (see below): no GC tracking, no traversal
cdef class _JoinMatch:
    """One row of a hash join's right input in the join's table.

    The rows of one key form a chain through ``next``, in input order (a
    duplicate key's rows join in the order SQLite's scan would give them);
    the chain's head keeps its tail in ``last`` for appends (None while the
    head is the tail: no reference cycle).  ``entry`` is
    free for a consumer of the table: HashAggregate._aggregate_join keeps
    there the aggregate group this right row's joined rows fall in.  Nothing
    these refer to refers back to a match: chains point forward only, and
    rows, groups and aggregate states hold SQL values.
    """
    cdef tuple row
    cdef _JoinMatch next
    cdef _JoinMatch last
    cdef list entry

    def __cinit__(self, tuple row):
        self.row = row

    def __dealloc__(self):
        # Freed naively, a chain (one key, many right rows) would free each next match
        # from inside the previous one's dealloc: one C stack frame per row, a crash on
        # a low-cardinality key.  Unlink it here in a loop instead: each successor this
        # chain alone holds is cut from its own next, then freed with nothing to recurse
        # into.  A successor held elsewhere too (a join's current match) is left to that
        # holder, whose release runs this same loop.
        cdef _JoinMatch cur = self.next
        cdef _JoinMatch nxt
        self.next = None
        self.last = None
        while cur is not None and Py_REFCNT(cur) == 1:
            nxt = cur.next
            cur.next = None
            cur = nxt
            nxt = None


from libc.stdlib cimport calloc


cdef struct _IntSlot:
    int64_t key
    PyObject* head        # the key's chain, borrowed from HashJoin.table; NULL: an empty slot


cdef inline size_t _int_slot_of(int64_t key, int shift):
    """Fibonacci hashing: the top bits of key * 2**64/phi spread consecutive keys."""
    return <size_t>((<uint64_t>key * <uint64_t>0x9E3779B97F4A7C15ULL) >> shift)


cdef class HashJoin(Operator):
    """Equi-join: builds a hash table on the right input, probes with left rows.

    Keys are values (tuples of them for several keys); Python's hash/eq agree with SQLite equality
    for same-class values (1 == 1.0), and the planner inserts affinity
    conversions so that values compared across classes are normalised first.
    Rows with a NULL key never match.  The table maps a key to the chain of
    its right rows (_JoinMatch); HashAggregate may drive ``build`` and
    ``probe`` itself and skip the joined rows (``_aggregate_join``).
    """
    cdef Operator left, right
    cdef list left_keys, right_keys
    cdef Expr residual
    cdef bint left_outer
    cdef Py_ssize_t right_width
    cdef dict table
    cdef tuple cur_left
    cdef _JoinMatch match             # the next right row to try with cur_left
    cdef bint matched
    cdef ExecContext ctx
    # When the table's keys are all integers (``_index_int_keys``): an
    # open-addressing copy of it over int64 keys, 2**(64 - int_shift) slots.
    cdef _IntSlot* int_slots
    cdef int int_shift

    def __init__(self, Operator left, Operator right, list left_keys, list right_keys,
                 Expr residual, bint left_outer, Py_ssize_t right_width):
        self.left = left
        self.right = right
        self.left_keys = left_keys
        self.right_keys = right_keys
        self.residual = residual
        self.left_outer = left_outer
        self.right_width = right_width

    cdef object _key(self, list exprs, tuple row):
        """The hash key of a row: the value itself for one key (no tuple to
        build), else the tuple of values; None when a key is NULL."""
        if len(exprs) == 1:
            return (<Expr>exprs[0]).eval(row, self.ctx)
        k = eval_list(exprs, row, self.ctx)
        return None if None in k else k

    cdef void build(self, ExecContext ctx) except *:
        """Reads the whole right input into ``table``: key -> chain of its rows.

        The cyclic GC is paused meanwhile: the table's rows and matches form
        no cycles, yet allocating many objects that all stay alive makes the
        GC run pass after pass over them (measured: ~9% of a join of 10k right
        rows with 100k left rows).  Collection is postponed, never skipped: it
        runs at the next allocation once enabled again."""
        cdef tuple r
        cdef _JoinMatch m, head
        cdef dict table = {}
        cdef int gc_was_enabled
        self.ctx = ctx
        self._drop_int_keys()
        self.table = table
        self.right.open(ctx)
        gc_was_enabled = PyGC_Disable()
        try:
            while True:
                r = self.right.next()
                if r is None:
                    break
                if PyTuple_GET_SIZE(r) != self.right_width:
                    raise InternalError(f"hash join: right row of {PyTuple_GET_SIZE(r)} columns, "
                                        f"planned {self.right_width}")
                k = self._key(self.right_keys, r)
                if k is None:
                    continue
                m = _JoinMatch(r)
                head = <_JoinMatch>table.get(k)
                if head is None:
                    table[k] = m
                else:
                    (head if head.last is None else head.last).next = m
                    head.last = m
        finally:
            if gc_was_enabled:
                PyGC_Enable()
            self.right.close()
        self._index_int_keys()

    cdef _JoinMatch probe(self, tuple left_row):
        """The chain of right rows matching ``left_row`` (None: no match)."""
        cdef int overflow = 0
        cdef int64_t ikey
        cdef double d
        k = self._key(self.left_keys, left_row)
        if k is None:
            return None
        if self.int_slots != NULL:
            # Only numbers equal integers (as in the dict: 3.0 == 3); any other
            # class still asks the dict, so the two agree on every value.
            if type(k) is int:
                ikey = PyLong_AsLongLongAndOverflow(k, &overflow)
                return None if overflow else self._int_probe(ikey)
            if type(k) is float:
                d = PyFloat_AS_DOUBLE(k)
                if -9223372036854775808.0 <= d < 9223372036854775808.0 and d == <double>(<int64_t>d):
                    return self._int_probe(<int64_t>d)
                return None
        return <_JoinMatch>self.table.get(k)

    cdef _JoinMatch _int_probe(self, int64_t key):
        cdef size_t mask = (<size_t>1 << (64 - self.int_shift)) - 1
        cdef size_t i = _int_slot_of(key, self.int_shift)
        cdef _IntSlot* slot
        while True:
            slot = &self.int_slots[i]
            if slot.head == NULL:
                return None
            if slot.key == key:
                return <_JoinMatch><object>slot.head
            i = (i + 1) & mask

    cdef void _index_int_keys(self) except *:
        """Indexes a one-key table whose keys are all integers within int64 in
        ``int_slots``: probing it hashes and compares C integers, and touches
        one slot rather than the dict's entry and its key object (the probe
        of a large right side is bound by those memory reads)."""
        cdef Py_ssize_t n = len(self.table)
        cdef int bits = 1
        cdef int overflow = 0
        cdef int64_t ikey
        cdef size_t i, mask
        if len(self.right_keys) != 1 or n == 0:
            return
        while (<Py_ssize_t>1 << bits) < 2 * n:      # at most half full
            bits += 1
        self.int_shift = 64 - bits
        mask = (<size_t>1 << bits) - 1
        self.int_slots = <_IntSlot*>calloc(<size_t>1 << bits, sizeof(_IntSlot))
        if self.int_slots == NULL:
            raise MemoryError("out of memory while building a hash join")
        for k, head in self.table.items():
            if type(k) is int:
                ikey = PyLong_AsLongLongAndOverflow(k, &overflow)
            if type(k) is not int or overflow:
                self._drop_int_keys()           # the dict serves this table
                return
            i = _int_slot_of(ikey, self.int_shift)
            while self.int_slots[i].head != NULL:
                i = (i + 1) & mask
            self.int_slots[i].key = ikey
            self.int_slots[i].head = <PyObject*>head

    cdef void _drop_int_keys(self):
        free(self.int_slots)
        self.int_slots = NULL

    def __dealloc__(self):
        self._drop_int_keys()

    cdef void open(self, ExecContext ctx) except *:
        self.build(ctx)
        self.left.open(ctx)
        self.cur_left = None
        self.match = None

    cdef tuple next(self):
        cdef tuple row
        cdef _JoinMatch m
        while True:
            m = self.match
            if m is not None:
                self.match = m.next
                row = self.cur_left + m.row
                if self.residual is None or sql_truth(self.residual.eval(row, self.ctx)):
                    self.matched = True
                    return row
                continue
            if self.cur_left is not None and self.left_outer and not self.matched:
                row = self.cur_left + (None,) * self.right_width
                self.cur_left = None
                return row
            self.cur_left = self.left.next()
            if self.cur_left is None:
                return None
            self.matched = False
            self.match = self.probe(self.cur_left)

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        self.left.close()
        self._drop_int_keys()
        self.table = None
        self.match = None


cdef class IndexUnion(Operator):
    """``a OR b OR ...`` over one table: the rows of each term's own access
    path (index or rowid lookups), each table row once (by rowid, the last
    slot).  The whole WHERE clause is still applied above."""
    cdef list parts
    cdef Py_ssize_t part_i
    cdef set seen

    def __init__(self, list parts):
        self.parts = parts

    cdef void open(self, ExecContext ctx) except *:
        self.seen = set()
        self.part_i = 0
        for op in self.parts:            # each part opens now: its probes see this execution's values
            (<Operator>op).open(ctx)

    cdef tuple next(self):
        cdef tuple row
        while self.part_i < len(self.parts):
            row = (<Operator>self.parts[self.part_i]).next()
            if row is None:
                (<Operator>self.parts[self.part_i]).close()
                self.part_i += 1
                continue
            rowid = row[len(row) - 1]
            if rowid in self.seen:
                continue
            self.seen.add(rowid)
            return row
        return None

    cdef void close(self):
        while self.part_i < len(self.parts):
            (<Operator>self.parts[self.part_i]).close()
            self.part_i += 1
        self.seen = None


cdef class AdaptiveJoin(Operator):
    """A join planned both ways, chosen per execution from the tables' sizes.

    ``lookup`` is a nested loop doing one keyed lookup in the right table per
    left row, ``hashed`` a hash join building on a scan of the right table.
    When the left input (a scan of ``left_db``) has at least half as many
    rows as ``right_db`` (entry counts are O(1) in LMDB), one scan of the
    right table costs less than that many B-tree lookups, so the hash join
    runs; else the lookups.  Sizes are read at execution, so a cached plan
    follows the data.
    """
    cdef Operator lookup, hashed, chosen
    cdef object store, left_db, right_db, left_handle, right_handle

    def __init__(self, Operator lookup, Operator hashed, store, bytes left_db, bytes right_db):
        self.lookup = lookup
        self.hashed = hashed
        self.store = store
        self.left_db = left_db
        self.right_db = right_db

    cdef Operator choose(self, ExecContext ctx):
        """The plan this execution runs (not opened)."""
        if self.left_handle is None:       # stable for the plan's life (a schema change replans)
            self.left_handle = self.store.db(self.left_db, txn=ctx.wtxn)
            self.right_handle = self.store.db(self.right_db, txn=ctx.wtxn)
        left_rows = ctx.txn.stat(self.left_handle)["entries"]
        right_rows = ctx.txn.stat(self.right_handle)["entries"]
        return self.hashed if left_rows * 2 >= right_rows else self.lookup

    cdef void open(self, ExecContext ctx) except *:
        self.chosen = self.choose(ctx)
        self.chosen.open(ctx)

    cdef tuple next(self):
        return self.chosen.next()

    cdef void close(self):
        if self.chosen is not None:
            self.chosen.close()
        self.chosen = None


cdef class Sort(Operator):
    """Full sort by memcmp-ordered keys from the key codec (SQLite's order, DESC per key).

    ``limit`` (evaluated by the planner's Limit above) lets a top-N keep only
    the best rows: rows are decorated with their encoded key and sorted once.
    """
    cdef Operator child
    cdef list keys
    cdef bytes desc
    cdef list rows
    cdef Py_ssize_t pos
    cdef ExecContext ctx

    def __init__(self, Operator child, list keys, bytes desc):
        self.child = child
        self.keys = keys
        self.desc = desc

    cdef void open(self, ExecContext ctx) except *:
        cdef tuple row
        cdef list decorated = []
        cdef Py_ssize_t seq = 0
        self.ctx = ctx
        self.child.open(ctx)
        while True:
            row = self.child.next()
            if row is None:
                break
            decorated.append((encode_key(eval_list(self.keys, row, ctx), self.desc), seq, row))
            seq += 1
        self.child.close()
        decorated.sort()
        self.rows = [d[2] for d in decorated]
        self.pos = 0

    cdef tuple next(self):
        if self.pos >= len(self.rows):
            return None
        r = self.rows[self.pos]
        self.pos += 1
        return r

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        self.rows = None


cdef class Limit(Operator):
    """LIMIT/OFFSET; a negative limit means no limit, as in SQLite."""
    cdef Operator child
    cdef Expr limit, offset
    cdef long long remaining, skip
    cdef bint unlimited

    def __init__(self, Operator child, Expr limit, Expr offset):
        self.child = child
        self.limit = limit
        self.offset = offset

    cdef void open(self, ExecContext ctx) except *:
        self.unlimited = True
        self.skip = 0
        if self.limit is not None:
            v = _limit_value(self.limit.eval((), ctx), "LIMIT")
            if v >= 0:
                self.unlimited = False
                self.remaining = v
        if self.offset is not None:
            v = _limit_value(self.offset.eval((), ctx), "OFFSET")
            self.skip = v if v > 0 else 0
        self.child.open(ctx)

    cdef tuple next(self):
        cdef tuple r
        if not self.unlimited and self.remaining <= 0:
            return None
        while self.skip > 0:
            if self.child.next() is None:
                self.skip = 0
                return None
            self.skip -= 1
        r = self.child.next()
        if r is not None and not self.unlimited:
            self.remaining -= 1
        return r

    cdef void close(self):
        self.child.close()


cdef long long _limit_value(object v, str what) except? -2:
    n = apply_affinity(v, AFF_NUMERIC) if v is not None else None
    if type(n) is int:
        return n
    if type(n) is float and n == <double><long long>n:
        return <long long>n
    raise DataError(f"datatype mismatch: {what} must be an integer")


cdef dict _ASCII_FOLD = {c: c + 32 for c in range(65, 91)}


cdef tuple collation_fold(tuple values, list fold):
    """``values`` as compared under per-position collations (0 BINARY, 1 NOCASE, 2 RTRIM).

    Equal folded tuples are equal under the collations, so they hash and group
    together; NOCASE folds ASCII letters only, as SQLite does.
    """
    cdef Py_ssize_t i, n = len(values)
    cdef list out = list(values)
    cdef int coll
    for i in range(n):
        coll = <int>fold[i]
        v = out[i]
        if coll == 0 or type(v) is not str:
            continue
        out[i] = (<str>v).translate(_ASCII_FOLD) if coll == 1 else (<str>v).rstrip(" ")
    return tuple(out)


cdef class Distinct(Operator):
    """Drops repeated rows; ``fold`` gives per-column collations when any is not BINARY."""
    cdef Operator child
    cdef set seen
    cdef list fold

    def __init__(self, Operator child, list fold=None):
        self.child = child
        self.fold = fold

    cdef void open(self, ExecContext ctx) except *:
        self.seen = set()
        self.child.open(ctx)

    cdef tuple next(self):
        cdef tuple r
        while True:
            r = self.child.next()
            if r is None:
                return None
            key = r if self.fold is None else collation_fold(r, self.fold)
            if key not in self.seen:
                self.seen.add(key)
                return r

    cdef void close(self):
        self.child.close()
        self.seen = None


cdef class Materialized(Operator):
    """Rows computed by a Python callable at open (subqueries in FROM, views, compounds)."""
    cdef object producer
    cdef list rows
    cdef Py_ssize_t pos

    def __init__(self, producer):
        self.producer = producer

    cdef void open(self, ExecContext ctx) except *:
        self.rows = self.producer(ctx)
        self.pos = 0

    cdef tuple next(self):
        if self.pos >= len(self.rows):
            return None
        r = self.rows[self.pos]
        self.pos += 1
        return r

    cdef void close(self):
        self.rows = None


cdef class ValuesScan(Operator):
    """A VALUES list: each row a list of expressions."""
    cdef list rows
    cdef Py_ssize_t pos
    cdef ExecContext ctx

    def __init__(self, list rows):
        self.rows = rows

    cdef void open(self, ExecContext ctx) except *:
        self.ctx = ctx
        self.pos = 0

    cdef tuple next(self):
        if self.pos >= len(self.rows):
            return None
        r = eval_list(<list>self.rows[self.pos], (), self.ctx)
        self.pos += 1
        return r

    cdef void close(self):
        self.ctx = None


cdef class AggSpec:
    """One aggregate call: its factory, argument expressions and DISTINCT flag.

    ``span``: the (lowest, highest) input-row positions the arguments read,
    (-1, -1) for none, None when unknown (the planner's ExprCompiler.row_span);
    HashAggregate._aggregate_join evaluates them on one side of a join by it.
    """
    cdef public object factory
    cdef public list args
    cdef public bint distinct
    cdef public bint star
    cdef public object span

    def __init__(self, factory, list args, bint distinct, bint star, span=None):
        self.factory = factory
        self.args = args
        self.distinct = distinct
        self.star = star
        self.span = span


cdef enum:
    _AGG_OTHER = 0
    _AGG_COUNT_STAR = 1
    _AGG_COUNT = 2
    _AGG_SUM = 3       # sum / total / avg: _SumBase reads integers and reals in place
    _AGG_MIN_MAX = 4   # min / max: a value that cannot win is compared in place, not decoded


cdef int _agg_kind(object agg):
    """Which in-place path ``HashAggregate._aggregate_records`` may use for a state."""
    if type(agg) is CountStar:
        return _AGG_COUNT_STAR
    if type(agg) is Count:
        return _AGG_COUNT
    if type(agg) is Sum or type(agg) is Total or type(agg) is Avg:
        return _AGG_SUM
    if type(agg) is Min or type(agg) is Max:
        return _AGG_MIN_MAX
    return _AGG_OTHER


# Where HashAggregate._aggregate_join evaluates an expression of the joined row.
cdef enum:
    _SIDE_LEFT = 0        # reads only left-row positions: evaluated on the left row
    _SIDE_RIGHT_COL = 1   # a bare right-side column: read from the right row
    _SIDE_ROW = 2         # reads both sides (or unknown): evaluated on the joined row


cdef int _join_side(Expr e, object span, Py_ssize_t left_width):
    """The _SIDE_ code of ``e`` (reading input positions ``span``) over a join whose
    left rows are ``left_width`` wide: the joined row is left + right, so an
    expression that reads only positions below ``left_width`` gives the same
    value on the left row alone."""
    if span is None:
        return _SIDE_ROW
    if <Py_ssize_t>span[1] < left_width:
        return _SIDE_LEFT
    if type(e) is ColRef and (<ColRef>e).pos >= left_width:
        return _SIDE_RIGHT_COL
    return _SIDE_ROW


cdef bint _min_max_keeps(_MinMax mm, const unsigned char* p, Py_ssize_t n, Py_ssize_t at) except -1:
    """True when the cell at ``at`` cannot replace ``mm``'s best (then ``mm.improved``
    is cleared, as its step would): text against text by UTF-8 bytes (BINARY
    order), integers against an integer and reals against a real as numbers.
    False when the value may win or the classes differ: decode and step it."""
    cdef object best = mm.best
    cdef unsigned char code
    cdef Py_ssize_t size, bn
    cdef const char* bp
    cdef int c, cls
    cdef int64_t ival, bi
    cdef double dval, bd
    if best is None or mm.coll != 0:
        return False
    if type(best) is str:
        size = _rc_payload(p, n, &at, &code)
        if not (code == _RC_TEXT or (code & 0xC0) == _RC_SHORT_TEXT):
            return False
        bp = PyUnicode_AsUTF8AndSize(best, &bn)
        c = memcmp(p + at, bp, size if size < bn else bn)
        if c == 0:
            c = (size > bn) - (size < bn)
    elif type(best) is int or type(best) is float:
        cls = _rc_cell_number(p, n, at, &ival, &dval)
        if cls == 1 and type(best) is int and _v_fits_i64(best):
            bi = <int64_t>best
            c = (ival > bi) - (ival < bi)
        elif cls == 2 and type(best) is float:
            bd = <double>best
            c = (dval > bd) - (dval < bd)
        else:
            return False
    else:
        return False
    if (c > 0) if mm.is_max else (c < 0):
        return False
    mm.improved = False                      # ties keep the first, as the step does
    return True


cdef class HashAggregate(Operator):
    """GROUP BY with aggregates; also the no-GROUP-BY case (one group, even if empty).

    Output rows: the group's first input row (SQLite lets bare columns appear
    beside aggregates, and they read it) -- or, when the query has exactly one
    min()/max() (``min_max`` = (spec index, +1 max / -1 min, collation)), the
    row that aggregate's value came from, as SQLite documents -- then the
    group values (read from that same row: of rows that group together, 1 and
    1.0 or 'a' and 'A' under NOCASE, SQLite shows the one bare columns read),
    then the aggregate results.  Groups
    come out ordered by their key, as SQLite's sorter-based GROUP BY does.
    With ``fold`` (per-term collations, when a term is NOCASE or RTRIM) rows
    group by their folded values and the group shows the first row's values,
    as SQLite does.
    """
    cdef Operator child
    cdef list group_exprs
    cdef list specs
    cdef Py_ssize_t input_width
    cdef list out
    cdef Py_ssize_t pos
    cdef ExecContext ctx
    cdef list fold
    cdef list min_max
    cdef Py_ssize_t mm_index
    cdef int mm_sign, mm_coll
    cdef list group_spans     # per GROUP BY term: input positions it reads (AggSpec.span); None: unknown

    def __init__(self, Operator child, list group_exprs, list specs, Py_ssize_t input_width, list fold=None,
                 list min_max=None, list group_spans=None):
        self.child = child
        self.group_exprs = group_exprs
        self.specs = specs
        self.input_width = input_width
        self.fold = fold
        self.group_spans = group_spans
        # The planner keeps adding aggregates (select list, ORDER BY) after building
        # this operator, so the lone-min/max rule is settled at open, not here.
        self.min_max = min_max

    cdef list _new_state(self):
        cdef AggSpec s
        cdef list st = []
        for s in self.specs:
            st.append(s.factory())
        return st

    cdef void open(self, ExecContext ctx) except *:
        cdef dict groups = {}
        # One GROUP BY expression: the value itself is the dict key (no 1-tuple per
        # row; a value and its 1-tuple hash and compare alike), wrapped at the end.
        cdef bint single = len(self.group_exprs) == 1
        self.ctx = ctx
        self.mm_index = -1
        if self.min_max is not None and len(self.min_max) == 1:
            self.mm_index, self.mm_sign, self.mm_coll = self.min_max[0]
        join = self._input_join(ctx)
        if join is not None:
            self._aggregate_join(ctx, groups, join)
        elif self._reads_records():
            self._aggregate_records(ctx, groups)
        else:
            self._aggregate_rows(ctx, groups)
        self.out = []
        if not groups and not self.group_exprs:
            # An aggregate without GROUP BY yields one row even over no input.
            state = self._new_state()
            self.out.append((None,) * self.input_width + tuple([(<Aggregate>a).final() for a in state]))
        else:
            items = list(groups.items())
            if single:
                items = [((k,), e) for k, e in items]
            if len(items) > 1:
                items.sort(key=lambda kv: encode_key(kv[0]))
            for _hkey, entry in items:
                values = (entry[2],) if single else <tuple>entry[2]
                self.out.append(<tuple>entry[1] + values + tuple([(<Aggregate>a).final() for a in entry[0]]))
        self.pos = 0

    cdef object _hash_key(self, object key, bint single):
        """The dict key grouping ``key``: the key itself, or folded under the terms' collations."""
        if self.fold is None:
            return key
        if single:
            return collation_fold((key,), self.fold)[0]
        return collation_fold(<tuple>key, self.fold)

    cdef bint _takes_row(self, list entry, object agg, object v) except -1:
        """After the lone min()/max() stepped ``v``: whether the group's bare
        columns now come from this row.  SQLite's rule: the row that set the
        min/max (the first of ties); until a non-NULL value is seen, the latest row."""
        if isinstance(agg, _MinMax):
            # The aggregate just compared v with its best: reuse its verdict.
            return (<_MinMax>agg).improved or (<_MinMax>agg).best is None
        if v is None:
            return entry[3] is None
        if entry[3] is None or self.mm_sign * v_compare_coll(v, entry[3], self.mm_coll) > 0:
            entry[3] = v
            return True
        return False

    cdef void _aggregate_rows(self, ExecContext ctx, dict groups) except *:
        """The general path: evaluates the GROUP BY terms and arguments on each input row."""
        cdef tuple row
        cdef object key, hkey
        cdef list state, entry
        cdef AggSpec s
        cdef Py_ssize_t i, nspecs = len(self.specs)
        cdef bint single = len(self.group_exprs) == 1
        cdef Expr single_expr = <Expr>self.group_exprs[0] if single else None
        self.child.open(ctx)
        while True:
            row = self.child.next()
            if row is None:
                break
            key = single_expr.eval(row, ctx) if single else eval_list(self.group_exprs, row, ctx)
            hkey = self._hash_key(key, single)
            entry = <list>groups.get(hkey)
            if entry is None:
                state = self._new_state()
                entry = [state, row, key, None]      # state, bare-column row, group values, best min/max
                groups[hkey] = entry
            else:
                state = <list>entry[0]
            for i in range(nspecs):
                s = <AggSpec>self.specs[i]
                if s.star:
                    (<Aggregate>state[i]).step(None)
                elif len(s.args) == 1:
                    v = (<Expr>s.args[0]).eval(row, ctx)
                    (<Aggregate>state[i]).step(v)
                    if i == self.mm_index and self._takes_row(entry, state[i], v):
                        entry[1] = row
                        entry[2] = key
                else:
                    (<Aggregate>state[i]).step(eval_list(s.args, row, ctx))
        self.child.close()

    cdef HashJoin _input_join(self, ExecContext ctx):
        """The hash join this execution reads directly (through an AdaptiveJoin's
        choice too), for ``_aggregate_join``; None otherwise."""
        cdef Operator child = self.child
        if type(child) is AdaptiveJoin:
            child = (<AdaptiveJoin>child).choose(ctx)
        if type(child) is not HashJoin or (<HashJoin>child).right_width > self.input_width:
            return None
        return <HashJoin>child

    cdef void _aggregate_join(self, ExecContext ctx, dict groups, HashJoin join) except *:
        """``_aggregate_rows`` over a hash join, without building its joined rows.

        Probes the join's table with each left row and steps the aggregates
        from the left row and each matching right row: a term that reads one
        side only is evaluated on that side's row (``_join_side``); the joined
        row (left + right) is built only for terms reading both, for the join's
        residual condition, and once per group for its bare columns.  When
        every GROUP BY term is a right-side column, a right row's group is
        looked up once and kept on its table entry (_JoinMatch.entry) rather
        than once per joined row.  Same results, in the same order, as
        ``_aggregate_rows`` reading the joined rows.
        """
        cdef Py_ssize_t lw = self.input_width - join.right_width
        cdef Py_ssize_t ngroup = len(self.group_exprs), nspecs = len(self.specs), i
        cdef int* sides = <int*>malloc((ngroup + nspecs + 1) * sizeof(int))
        cdef int* spec_sides = sides + ngroup
        cdef bint need_row = join.residual is not None
        cdef bint cache_groups = True
        cdef bint matched
        cdef AggSpec s
        cdef tuple left_row, row
        cdef _JoinMatch m, pad = None
        if sides == NULL:
            raise MemoryError("out of memory while aggregating")
        try:
            for i in range(ngroup):
                sides[i] = _join_side(<Expr>self.group_exprs[i],
                                      self.group_spans[i] if self.group_spans is not None else None, lw)
                cache_groups = cache_groups and sides[i] == _SIDE_RIGHT_COL
                need_row = need_row or sides[i] == _SIDE_ROW
            for i in range(nspecs):
                s = <AggSpec>self.specs[i]
                spec_sides[i] = _SIDE_LEFT if s.star else _join_side(
                    <Expr>s.args[0] if len(s.args) == 1 else None, s.span, lw)
                need_row = need_row or spec_sides[i] == _SIDE_ROW
            if join.left_outer:
                pad = _JoinMatch((None,) * join.right_width)
            join.build(ctx)
            join.left.open(ctx)
            while True:
                left_row = join.left.next()
                if left_row is None:
                    break
                if PyTuple_GET_SIZE(left_row) != lw:
                    raise InternalError(f"hash join: left row of {PyTuple_GET_SIZE(left_row)} columns, "
                                        f"planned {lw}")
                matched = False
                m = join.probe(left_row)
                while m is not None:
                    row = left_row + m.row if need_row else None
                    if join.residual is None or sql_truth(join.residual.eval(row, ctx)):
                        matched = True
                        self._step_joined(ctx, groups, left_row, m, row, lw, sides, spec_sides, cache_groups)
                    m = m.next
                if pad is not None and not matched:
                    row = left_row + pad.row if need_row else None
                    self._step_joined(ctx, groups, left_row, pad, row, lw, sides, spec_sides, cache_groups)
        finally:
            free(sides)
            join.close()

    cdef object _joined_value(self, Expr e, int side, tuple left_row, _JoinMatch m, tuple row,
                              Py_ssize_t lw, ExecContext ctx):
        """``e``'s value on the joined row, read from the side ``side`` names."""
        if side == _SIDE_LEFT:
            return e.eval(left_row, ctx)
        if side == _SIDE_RIGHT_COL:
            return <object>PyTuple_GET_ITEM(m.row, (<ColRef>e).pos - lw)
        return e.eval(row, ctx)

    cdef object _joined_key(self, tuple left_row, _JoinMatch m, tuple row, Py_ssize_t lw, int* sides,
                            ExecContext ctx):
        """The GROUP BY value(s) of a joined row (the value itself for one term)."""
        cdef Py_ssize_t i
        if len(self.group_exprs) == 1:
            return self._joined_value(<Expr>self.group_exprs[0], sides[0], left_row, m, row, lw, ctx)
        return tuple([self._joined_value(<Expr>self.group_exprs[i], sides[i], left_row, m, row, lw, ctx)
                      for i in range(len(self.group_exprs))])

    cdef void _step_joined(self, ExecContext ctx, dict groups, tuple left_row, _JoinMatch m, tuple row,
                           Py_ssize_t lw, int* sides, int* spec_sides, bint cache_groups) except *:
        """Steps the aggregates with one joined row (``left_row`` + ``m.row``;
        ``row`` is that concatenation when a term needs it, else None).  The
        right row is read only by terms that need it: with the group cached
        and left-side arguments, a match costs no read of it at all."""
        cdef Py_ssize_t i, ngroup = len(self.group_exprs), nspecs = len(self.specs)
        cdef bint single = ngroup == 1
        cdef list entry = m.entry if cache_groups else None
        cdef list state
        cdef AggSpec s
        cdef object key, hkey, v
        if entry is None:
            key = self._joined_key(left_row, m, row, lw, sides, ctx)
            hkey = self._hash_key(key, single)
            entry = <list>groups.get(hkey)
            if entry is None:
                # state, bare-column row, group values, best min/max (as in _aggregate_rows)
                entry = [self._new_state(), row if row is not None else left_row + m.row, key, None]
                groups[hkey] = entry
            if cache_groups:
                m.entry = entry
        state = <list>entry[0]
        for i in range(nspecs):
            s = <AggSpec>self.specs[i]
            if s.star:
                (<Aggregate>state[i]).step(None)
            elif len(s.args) == 1:
                v = self._joined_value(<Expr>s.args[0], spec_sides[i], left_row, m, row, lw, ctx)
                (<Aggregate>state[i]).step(v)
                if i == self.mm_index and self._takes_row(entry, state[i], v):
                    entry[1] = row if row is not None else left_row + m.row
                    entry[2] = self._joined_key(left_row, m, row, lw, sides, ctx)
            else:
                (<Aggregate>state[i]).step(eval_list(s.args, row if spec_sides[i] == _SIDE_ROW else left_row, ctx))

    cdef bint _reads_records(self):
        """Whether the input is a plain table scan and every GROUP BY term and
        aggregate argument a bare column: then ``_aggregate_records`` reads
        them from the stored records (no row tuple per input row)."""
        cdef AggSpec s
        if type(self.child) is not TableScan or (<TableScan>self.child).predicate is not None:
            return False
        for e in self.group_exprs:
            if type(e) is not ColRef:
                return False
        for s in self.specs:
            if not s.star and (len(s.args) != 1 or type(s.args[0]) is not ColRef):
                return False
        return True

    cdef object _cell(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t* offs, Py_ssize_t stored,
                      Py_ssize_t col, LmdbCursor c, RowShape shape):
        """The value at row position ``col`` of the current record (``ncols``: the rowid)."""
        cdef Py_ssize_t at
        if col == shape.ncols:
            return PyLong_FromLongLong(_kc_get_rowid(c.kp))
        if col < stored:
            at = offs[col]
            return _rc_read_cell(p, n, &at)
        return _rc_default(shape.defaults, col)

    cdef void _aggregate_records(self, ExecContext ctx, dict groups) except *:
        """``_aggregate_rows`` for a TableScan input, reading its records in place.

        Integers and reals summed or averaged, values only counted, and min/max
        candidates that do not win are read without making objects; a group's
        bare-column row is decoded once (and again when the lone min/max
        moves).  Same results as the row path.
        """
        cdef TableScan scan = <TableScan>self.child
        cdef RowShape shape = scan.shape
        cdef Py_ssize_t ncols = shape.ncols
        cdef Py_ssize_t nspecs = len(self.specs), ngroup = len(self.group_exprs)
        cdef bint single = ngroup == 1
        cdef list gpos = [(<ColRef>e).pos for e in self.group_exprs]
        cdef list apos = [-1 if (<AggSpec>s).star else (<ColRef>(<AggSpec>s).args[0]).pos for s in self.specs]
        cdef list kinds = None
        cdef Py_ssize_t hi = -1, i, col, stored
        cdef Py_ssize_t* offs = NULL
        cdef const unsigned char* p
        cdef Py_ssize_t n
        cdef int64_t ival
        cdef double dval
        cdef int kind, cls
        cdef object key, hkey, v, st
        cdef list state, entry
        cdef LmdbCursor c
        for col in gpos + apos:
            if col > ncols:
                raise InternalError(f"column position {col} outside a row of {ncols + 1}")
            if col < ncols and col > hi:
                hi = col
        offs = <Py_ssize_t*>malloc((hi + 2) * sizeof(Py_ssize_t))
        if offs == NULL:
            raise MemoryError("out of memory while aggregating")
        scan.open(ctx)
        try:
            c = scan.cursor
            while c is not None and c.next():
                p = c.vp
                n = c.vn
                stored = _rc_cell_offsets(p, n, hi, offs)
                if single:
                    key = self._cell(p, n, offs, stored, <Py_ssize_t>gpos[0], c, shape)
                else:
                    key = tuple([self._cell(p, n, offs, stored, <Py_ssize_t>col, c, shape) for col in gpos])
                hkey = self._hash_key(key, single)
                entry = <list>groups.get(hkey)
                if entry is None:
                    state = self._new_state()
                    entry = [state, shape.decode(c.kp, c.kn, p, n), key, None]
                    groups[hkey] = entry
                    if kinds is None:
                        kinds = [_agg_kind(a) for a in state]
                else:
                    state = <list>entry[0]
                for i in range(nspecs):
                    st = state[i]
                    kind = <int>kinds[i]
                    if kind == _AGG_COUNT_STAR:
                        (<CountStar>st).n += 1
                        continue
                    col = <Py_ssize_t>apos[i]
                    if col < stored and col < ncols and (kind == _AGG_COUNT or kind == _AGG_SUM):
                        cls = _rc_cell_number(p, n, offs[col], &ival, &dval)
                        if kind == _AGG_COUNT and cls != 0:
                            (<Count>st).n += 1
                            continue
                        if kind == _AGG_SUM and cls != 3:
                            if cls == 1:
                                (<_SumBase>st).step_int(ival)
                            elif cls == 2:
                                (<_SumBase>st).step_double(dval)
                            continue
                        if kind == _AGG_COUNT:
                            continue                 # a NULL is not counted
                    elif (kind == _AGG_MIN_MAX and col < stored and col < ncols
                          and _min_max_keeps(<_MinMax>st, p, n, offs[col])):
                        continue
                    v = self._cell(p, n, offs, stored, col, c, shape)
                    (<Aggregate>st).step(v)
                    if i == self.mm_index and self._takes_row(entry, st, v):
                        entry[1] = shape.decode(c.kp, c.kn, p, n)
                        entry[2] = key
        finally:
            free(offs)
            scan.close()

    cdef tuple next(self):
        if self.pos >= len(self.out):
            return None
        r = self.out[self.pos]
        self.pos += 1
        return r

    cdef void close(self):
        self.ctx = None      # a cached plan must not pin the LMDB transaction
        self.out = None


cdef class RowSource:
    """Python-facing iterator over an operator tree's output (the cursor pulls from it)."""
    cdef Operator root
    cdef ExecContext ctx
    cdef bint opened, finished

    def __init__(self, Operator root, ExecContext ctx):
        self.root = root
        self.ctx = ctx
        self.opened = False
        self.finished = False

    def __iter__(self):
        return self

    def __next__(self):
        cdef tuple r
        if self.finished:
            raise StopIteration
        if not self.opened:
            self.opened = True
            self.root.open(self.ctx)
        r = self.root.next()
        if r is None:
            self.finished = True
            self.root.close()
            self.ctx = None
            raise StopIteration
        return r

    def fetch(self, Py_ssize_t n):
        """Up to ``n`` rows (n < 0: all remaining) as a list."""
        cdef list out = []
        cdef tuple r
        if self.finished:
            return out
        if not self.opened:
            self.opened = True
            self.root.open(self.ctx)
        while n < 0 or len(out) < n:
            r = self.root.next()
            if r is None:
                self.finished = True
                self.root.close()
                self.ctx = None
                break
            out.append(r)
        return out

    def close(self):
        if self.opened and not self.finished:
            self.root.close()
        self.finished = True
        self.ctx = None


def run_operator(Operator root, ExecContext ctx, Py_ssize_t limit=-1):
    """Runs a tree to completion (subqueries, INSERT ... SELECT); ``limit`` < 0 = all rows."""
    return collect_rows(root, ctx, limit)


cdef list collect_rows(Operator root, ExecContext ctx, Py_ssize_t limit):
    """``run_operator`` for compiled callers, without a Python-level call."""
    cdef list out = []
    cdef tuple r
    root.open(ctx)
    try:
        while limit < 0 or len(out) < limit:
            r = root.next()
            if r is None:
                break
            out.append(r)
    finally:
        root.close()
    return out
