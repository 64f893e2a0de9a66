# arrow.pxi - included by _core.pyx
"""Result rows -> Arrow column buffers, built in compiled code.

``ArrowColumnsBuilder`` pulls row tuples from a fetch callable (the engine's
``Result.fetch``) a chunk at a time and appends each value straight into
per-column buffers laid out as Arrow expects them:

* a validity bitmap (bit i set = row i is not NULL, LSB first),
* INT64 / FLOAT64 columns: 8 bytes per row (0 under a NULL),
* TEXT (utf8) / BLOB (binary) columns: int32 offsets (n + 1 entries) + data.

The buffers are ``bytearray`` objects that grow geometrically and are handed
over as they are (``take``): ``pyarrow.Array.from_buffers`` wraps them
without a copy.  pyarrow itself is never imported here, so the core builds
and imports without it; ``terndb/arrow.py`` turns the buffers into arrays.

Column kinds (SQLite columns can mix storage classes, so each column has a
kind that only moves up as values arrive):

=========  =====================================================================
NULL       only NULLs so far
INT        INTEGERs (and NULLs)
FLOAT      REALs, or INTEGERs and REALs: the INT buffer is converted in place
           (integers beyond 2**53 round, as SQLite's own arithmetic would)
BLOB       a BLOB together with numbers or BLOBs: numbers become the bytes of
           their text form (what ``CAST(x AS BLOB)`` gives)
TEXT       any TEXT value: numbers render as SQLite renders them
           (``to_text``: 1.0 -> '1.0'), BLOBs decode as UTF-8 (invalid bytes
           replaced)
=========  =====================================================================

A *locked* column keeps its kind: a value of another class is converted into
it when that is exact (an integral REAL into INT, an INTEGER into FLOAT, any
value into TEXT/BLOB) and raises DataError otherwise.  Streaming readers lock
every column after the first batch, since an Arrow stream has one schema.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_Resize
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.string cimport memcpy, memset
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdio cimport snprintf
from libc.stdlib cimport malloc, free
from libc.stdint cimport uint64_t

from terndb.engine.errors import DataError as _ArrowDataError

ARROW_NULL = 0
ARROW_INT = 1
ARROW_FLOAT = 2
ARROW_BLOB = 3
ARROW_TEXT = 4

cdef enum:
    _AK_NULL = 0
    _AK_INT = 1
    _AK_FLOAT = 2
    _AK_BLOB = 3
    _AK_TEXT = 4

# A batch is cut before any TEXT/BLOB data buffer passes this size, so int32
# offsets never overflow (Arrow's utf8/binary types).
cdef Py_ssize_t _ARROW_DATA_SOFT_LIMIT = 1 << 30
cdef Py_ssize_t _ARROW_DATA_HARD_LIMIT = 0x7FFFFFFF

cdef tuple _ARROW_KIND_NAMES = ("NULL", "INTEGER", "REAL", "BLOB", "TEXT")


cdef inline bint _arrow_ascii(const unsigned char* q, Py_ssize_t n) noexcept:
    """True when the bytes are 7-bit ASCII (valid UTF-8 without a decode)."""
    cdef Py_ssize_t k
    for k in range(n):
        if q[k] & 0x80:
            return False
    return True


cdef str _arrow_class_name(object v):
    t = type(v)
    if v is None:
        return "NULL"
    if t is int:
        return "INTEGER"
    if t is float:
        return "REAL"
    if t is str:
        return "TEXT"
    return "BLOB"


cdef class _ArrowBuf:
    """A growable byte buffer backed by a bytearray (handed to Arrow without a copy)."""
    cdef bytearray obj
    cdef char* ptr
    cdef Py_ssize_t size, cap
    cdef bint zeroed       # new capacity is zero-filled (validity bitmaps)

    def __cinit__(self, bint zeroed=False):
        self.zeroed = zeroed
        self._fresh()

    cdef void _fresh(self):
        self.obj = bytearray()
        self.ptr = PyByteArray_AS_STRING(self.obj)
        self.size = 0
        self.cap = 0

    cdef inline int reserve(self, Py_ssize_t extra) except -1:
        if self.size + extra > self.cap:
            self._grow(self.size + extra)
        return 0

    cdef int _grow(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t newcap = self.cap * 2
        if newcap < need:
            newcap = need
        if newcap < 64:
            newcap = 64
        PyByteArray_Resize(self.obj, newcap)
        self.ptr = PyByteArray_AS_STRING(self.obj)
        if self.zeroed:
            memset(self.ptr + self.cap, 0, newcap - self.cap)
        self.cap = newcap
        return 0

    cdef inline int append(self, const char* src, Py_ssize_t n) except -1:
        if self.size + n > self.cap:
            self._grow(self.size + n)
        memcpy(self.ptr + self.size, src, n)
        self.size += n
        return 0

    cdef bytearray take(self):
        """The content (trimmed to size) as a bytearray; the buffer starts empty again."""
        cdef bytearray out = self.obj
        PyByteArray_Resize(out, self.size)
        self._fresh()
        return out


cdef class _ArrowColumn:
    """One result column's buffers and kind."""
    cdef int kind
    cdef bint locked
    cdef Py_ssize_t length, null_count
    cdef _ArrowBuf validity, values, offsets, data
    # An unlocked FLOAT column that has received INTEGERs keeps them as int64 bits, flagged
    # here (bit i = row i is an integer), until take(): if TEXT/BLOB arrives first they
    # render exactly as integers ('7', not '7.0').
    cdef _ArrowBuf intflags
    cdef bint mixed

    def __cinit__(self):
        self.kind = _AK_NULL
        self.locked = False
        self.validity = _ArrowBuf(True)
        self.values = _ArrowBuf(False)
        self.offsets = _ArrowBuf(False)
        self.data = _ArrowBuf(False)
        self.intflags = _ArrowBuf(True)
        self._reset()

    cdef void _reset(self):
        cdef int32_t zero = 0
        self.length = 0
        self.null_count = 0
        self.mixed = False
        self.intflags.size = 0
        memset(self.intflags.ptr, 0, self.intflags.cap)
        self.offsets.append(<char*>&zero, 4)

    # -- appending ---------------------------------------------------------------

    cdef inline int _mark(self, bint valid) except -1:
        """Records row ``length``'s validity and counts it."""
        if (self.length & 7) == 0:
            self.validity.reserve(1)
            self.validity.size += 1
            if self.mixed:
                self.intflags.reserve(1)
                self.intflags.size += 1
        if valid:
            (<uint8_t*>self.validity.ptr)[self.length >> 3] |= <uint8_t>(1 << (self.length & 7))
        else:
            self.null_count += 1
        self.length += 1
        return 0

    cdef inline int _put8(self, const void* src) except -1:
        if self.values.size + 8 > self.values.cap:
            self.values._grow(self.values.size + 8)
        memcpy(self.values.ptr + self.values.size, src, 8)
        self.values.size += 8
        return 0

    cdef inline int _put_var(self, const char* src, Py_ssize_t n) except -1:
        cdef int32_t end
        if self.data.size + n > _ARROW_DATA_HARD_LIMIT:
            raise _ArrowDataError("a TEXT/BLOB column exceeds 2 GiB within one Arrow batch")
        self.data.append(src, n)
        end = <int32_t>self.data.size
        self.offsets.append(<char*>&end, 4)
        return 0

    cdef int append(self, object v) except -1:
        cdef long long i
        cdef double d
        t = type(v)
        if v is None:
            return self._append_null()
        if t is int:
            if not tern_v_as_i64(v, &i):
                return self.append(float(v))     # SQLite has no integers beyond int64
            if self.kind == _AK_INT:
                self._put8(&i)
                return self._mark(True)
            if self.kind == _AK_FLOAT:
                if self.locked:          # can never turn into TEXT: convert now
                    d = <double>i
                    self._put8(&d)
                    return self._mark(True)
                self._start_mixed()
                self._put8(&i)
                self._mark(True)
                (<uint8_t*>self.intflags.ptr)[(self.length - 1) >> 3] |= <uint8_t>(1 << ((self.length - 1) & 7))
                return 0
            if self.kind == _AK_NULL:
                self._become(_AK_INT, v)
                return self.append(v)
            return self._append_rendered_int(i)
        if t is float:
            d = PyFloat_AS_DOUBLE(v)
            if self.kind == _AK_FLOAT:
                self._put8(&d)
                return self._mark(True)
            if self.kind == _AK_INT:
                if self.locked:
                    return self._append_float_into_int(d)
                self._become(_AK_FLOAT, v)
                return self.append(v)
            if self.kind == _AK_NULL:
                self._become(_AK_FLOAT, v)
                return self.append(v)
            return self._append_str(v_real_to_text(d))
        if t is str:
            if self.kind == _AK_TEXT or (self.kind == _AK_BLOB and self.locked):
                return self._append_str(v)
            self._become(_AK_TEXT, v)
            return self.append(v)
        if t is bytes:
            if self.kind == _AK_BLOB:
                self._put_var(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v))
                return self._mark(True)
            if self.kind == _AK_TEXT:
                return self._append_str(PyUnicode_DecodeUTF8(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), "replace"))
            self._become(_AK_BLOB, v)
            return self.append(v)
        return self.append(_v_canon(v))

    cdef int append_cell(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t* ppos) except -1:
        """Appends the row-record cell at ``ppos[0]`` (advancing past it) without making a
        Python object when the cell's class matches the column's kind."""
        cdef unsigned char code
        cdef Py_ssize_t at = ppos[0]
        cdef Py_ssize_t size = _rc_payload(p, n, &at, &code)
        cdef const unsigned char* q = p + at
        cdef int64_t i
        cdef double d
        if code == _RC_NULL:
            ppos[0] = at
            return self._append_null()
        if code <= _RC_INT8 and self.kind == _AK_INT:
            _rc_numeric(code, q, size, &i, &d)
            self._put8(&i)
        elif code == _RC_REAL and self.kind == _AK_FLOAT:
            _rc_numeric(code, q, size, &i, &d)
            self._put8(&d)
        elif (code == _RC_TEXT or (code & 0xC0) == _RC_SHORT_TEXT) and self.kind == _AK_TEXT \
                and _arrow_ascii(q, size):
            self._put_var(<const char*>q, size)
        elif (code == _RC_BLOB or (code & 0xC0) == _RC_SHORT_BLOB) and self.kind == _AK_BLOB:
            self._put_var(<const char*>q, size)
        else:
            # Kind changes, non-ASCII text (validated by decoding) and the rest: the object path.
            return self.append(_rc_read_cell(p, n, ppos))
        ppos[0] = at + size
        return self._mark(True)

    cdef int _append_null(self) except -1:
        cdef int64_t zero = 0
        if self.kind == _AK_INT or self.kind == _AK_FLOAT:
            self._put8(&zero)
        elif self.kind == _AK_TEXT or self.kind == _AK_BLOB:
            self._put_var(NULL, 0)
        return self._mark(False)

    cdef int _append_str(self, str s) except -1:
        cdef const char* p
        cdef Py_ssize_t n
        try:
            p = PyUnicode_AsUTF8AndSize(s, &n)
        except UnicodeEncodeError:
            raise _ArrowDataError("text value is not valid Unicode (lone surrogate): "
                                  "cannot be stored in an Arrow utf8 column") from None
        self._put_var(p, n)
        return self._mark(True)

    cdef int _append_rendered_int(self, long long i) except -1:
        cdef char buf[32]
        cdef int n = snprintf(buf, sizeof(buf), "%lld", i)
        self._put_var(buf, n)
        return self._mark(True)

    cdef int _append_float_into_int(self, double d) except -1:
        cdef long long i
        if d == d and -9223372036854775808.0 <= d < 9223372036854775808.0:
            i = <long long>d
            if <double>i == d:
                self._put8(&i)
                return self._mark(True)
        raise _ArrowDataError(
            f"REAL value {v_real_to_text(d)} does not fit this stream's INTEGER column "
            f"(fixed by its first batch): CAST the column in SQL or use fetch_arrow_table()")

    cdef int _start_mixed(self) except -1:
        """Begins flagging integer rows of a FLOAT column (flags sized like the validity)."""
        if not self.mixed:
            self.intflags.size = 0
            self.intflags.reserve(self.validity.size)
            memset(self.intflags.ptr, 0, self.intflags.cap)
            self.intflags.size = self.validity.size
            self.mixed = True
        return 0

    cdef void _settle_mixed(self) noexcept:
        """Converts flagged integer rows to doubles in place (before Arrow sees the buffer)."""
        cdef Py_ssize_t k
        cdef const uint8_t* flags = <const uint8_t*>self.intflags.ptr
        cdef int64_t* iv = <int64_t*>self.values.ptr
        cdef double* dv = <double*>self.values.ptr
        if self.mixed:
            for k in range(self.length):
                if (flags[k >> 3] >> (k & 7)) & 1:
                    dv[k] = <double>iv[k]
            self.mixed = False

    # -- kind changes -------------------------------------------------------------

    cdef int _become(self, int kind, object v) except -1:
        """Moves the column to ``kind`` (or refuses, when locked), converting what it holds."""
        if self.locked:
            raise _ArrowDataError(
                f"{_arrow_class_name(v)} value {v!r:.60} does not fit this stream's "
                f"{_ARROW_KIND_NAMES[self.kind]} column (its type was fixed by the first batch): "
                f"CAST the column in SQL or use fetch_arrow_table()")
        self._convert(kind)
        return 0

    cdef int _convert(self, int kind) except -1:
        cdef Py_ssize_t k
        cdef int64_t* iv
        cdef double* dv
        if kind == self.kind:
            return 0
        if self.kind == _AK_NULL:
            # Earlier rows are all NULL: zero values, or empty strings.
            if kind == _AK_INT or kind == _AK_FLOAT:
                self.values.reserve(8 * self.length)
                memset(self.values.ptr, 0, 8 * self.length)
                self.values.size = 8 * self.length
            else:
                self.offsets.reserve(4 * self.length)
                memset(self.offsets.ptr + 4, 0, 4 * self.length)
                self.offsets.size = 4 * (self.length + 1)
        elif self.kind == _AK_INT and kind == _AK_FLOAT:
            if self.locked:
                iv = <int64_t*>self.values.ptr
                dv = <double*>self.values.ptr
                for k in range(self.length):
                    dv[k] = <double>iv[k]
            else:
                self._start_mixed()
                for k in range(self.length):
                    (<uint8_t*>self.intflags.ptr)[k >> 3] |= <uint8_t>(1 << (k & 7))
        elif kind == _AK_TEXT or kind == _AK_BLOB:
            self._rerender(kind)
        else:
            raise _ArrowDataError(f"cannot convert a {_ARROW_KIND_NAMES[self.kind]} column to "
                                  f"{_ARROW_KIND_NAMES[kind]}")
        self.kind = kind      # (_rerender has set it already)
        return 0

    cdef int _rerender(self, int kind) except -1:
        """Rewrites the rows held so far as TEXT/BLOB (numbers as text, blobs decoded)."""
        cdef _ArrowBuf old_validity = self.validity
        cdef _ArrowBuf old_values = self.values
        cdef _ArrowBuf old_offsets = self.offsets
        cdef _ArrowBuf old_data = self.data
        cdef _ArrowBuf old_flags = self.intflags
        cdef bint old_mixed = self.mixed
        cdef Py_ssize_t n = self.length, k
        cdef int old_kind = self.kind
        cdef const uint8_t* bits
        cdef const int32_t* offs
        cdef const char* data
        self.validity = _ArrowBuf(True)
        self.values = _ArrowBuf(False)
        self.offsets = _ArrowBuf(False)
        self.data = _ArrowBuf(False)
        self.intflags = _ArrowBuf(True)
        self.kind = kind
        self._reset()
        bits = <const uint8_t*>old_validity.ptr
        offs = <const int32_t*>old_offsets.ptr
        data = <const char*>old_data.ptr
        for k in range(n):
            if not (bits[k >> 3] >> (k & 7)) & 1:
                self._append_null()
            elif old_kind == _AK_INT or (old_mixed and ((<const uint8_t*>old_flags.ptr)[k >> 3] >> (k & 7)) & 1):
                self._append_rendered_int((<const int64_t*>old_values.ptr)[k])
            elif old_kind == _AK_FLOAT:
                self._append_str(v_real_to_text((<const double*>old_values.ptr)[k]))
            else:   # BLOB -> TEXT
                self._append_str(PyUnicode_DecodeUTF8(data + offs[k], offs[k + 1] - offs[k], "replace"))
        return 0

    # -- handing over -------------------------------------------------------------

    cdef tuple take(self, bint presize=False):
        """(kind, length, null_count, validity or None, buffer 1, buffer 2 or None).

        ``presize``: give the next batch's buffers the capacity this batch ended with, so
        a stream of equal batches grows no buffer by doubling (no 2x capacity slack)."""
        cdef Py_ssize_t nvalues = self.values.size, noffsets = self.offsets.size, ndata = self.data.size
        cdef Py_ssize_t nvalidity = self.validity.size
        out = self._take()
        if presize:
            self.values.reserve(nvalues)
            self.offsets.reserve(noffsets)
            self.data.reserve(ndata + ndata // 8)
            self.validity.reserve(nvalidity)
        return out

    cdef tuple _take(self):
        cdef object validity
        cdef object b1 = None
        cdef object b2 = None
        if self.null_count:
            validity = self.validity.take()
        else:
            validity = None
            self.validity.size = 0
            memset(self.validity.ptr, 0, self.validity.cap)
        if self.kind == _AK_INT or self.kind == _AK_FLOAT:
            self._settle_mixed()
            b1 = self.values.take()
        elif self.kind == _AK_TEXT or self.kind == _AK_BLOB:
            b1 = self.offsets.take()
            b2 = self.data.take()
        else:
            self.offsets.size = 0
        out = (self.kind, self.length, self.null_count, validity, b1, b2)
        self._reset()
        return out


cdef class _ArrowScan:
    """Direct table scan for ``Project(TableScan)`` plans with plain column references:
    records are decoded cell by cell into the builder's buffers (no row tuples)."""
    cdef RowSource source
    cdef TableScan scan
    cdef Py_ssize_t ncols          # the table's column count (position ncols = rowid)
    cdef tuple defaults
    cdef Py_ssize_t* want          # table position of each output column
    cdef Py_ssize_t* offs          # cell offsets of the current record
    cdef Py_ssize_t nwant, hi

    def __dealloc__(self):
        free(self.want)
        free(self.offs)

    cdef int setup(self, RowSource source, TableScan scan, list exprs) except -1:
        cdef Py_ssize_t k
        self.source = source
        self.scan = scan
        self.ncols = scan.shape.ncols
        self.defaults = scan.shape.defaults
        self.nwant = len(exprs)
        self.want = <Py_ssize_t*>malloc((self.nwant + 1) * sizeof(Py_ssize_t))
        self.offs = <Py_ssize_t*>malloc((self.ncols + 1) * sizeof(Py_ssize_t))
        if self.want == NULL or self.offs == NULL:
            raise MemoryError("out of memory for an Arrow scan")
        self.hi = -1
        for k in range(self.nwant):
            self.want[k] = (<ColRef>exprs[k]).pos
            if self.want[k] < 0 or self.want[k] > self.ncols:
                raise InternalError(f"column position {self.want[k]} outside a table of {self.ncols}")
            if self.want[k] < self.ncols and self.want[k] > self.hi:
                self.hi = self.want[k]
        source.opened = True
        scan.open(source.ctx)
        return 0

    cdef int finish(self):
        self.source.finished = True
        self.scan.close()
        self.source.ctx = None
        return 0

    cdef int append_record(self, list columns, const unsigned char* kp, Py_ssize_t kn,
                           const unsigned char* p, Py_ssize_t n) except -1:
        """Appends the stored row at ``p[:n]`` (key ``kp[:kn]``), read where LmdbCursor found it."""
        cdef Py_ssize_t stored, k, col, at
        cdef long long rowid
        cdef _ArrowColumn c
        stored = _rc_cell_offsets(p, n, self.hi, self.offs)
        for k in range(self.nwant):
            c = <_ArrowColumn>PyList_GET_ITEM(columns, k)
            col = self.want[k]
            if col == self.ncols:
                if kn != 8:
                    raise CorruptDatabaseError(f"rowid key must be 8 bytes, got {kn}")
                rowid = _kc_get_rowid(kp)
                if c.kind == _AK_INT:
                    c._put8(&rowid)
                    c._mark(True)
                else:
                    c.append(PyLong_FromLongLong(rowid))
            elif col < stored:
                at = self.offs[col]
                c.append_cell(p, n, &at)
            else:
                c.append(_rc_default(self.defaults, col))
        return 0


cdef _ArrowScan _arrow_direct_scan(object source):
    """An _ArrowScan for an unopened RowSource of a plain projected table scan, else None."""
    cdef RowSource src
    cdef Project proj
    cdef _ArrowScan out
    if type(source) is not RowSource:
        return None
    src = <RowSource>source
    if src.opened or src.finished or src.ctx is None or type(src.root) is not Project:
        return None
    proj = <Project>src.root
    if type(proj.child) is not TableScan or (<TableScan>proj.child).predicate is not None:
        return None
    for e in proj.exprs:
        if type(e) is not ColRef:
            return None
    out = _ArrowScan()
    out.setup(src, <TableScan>proj.child, proj.exprs)
    return out


cdef class ArrowColumnsBuilder:
    """Accumulates result rows into per-column Arrow buffers (see the module notes).

    ``fill(fetch, max_rows)`` pulls rows through ``fetch(n)`` (a callable
    returning a list of up to ``n`` tuples, fewer only at the end) until the
    batch has ``max_rows`` rows, the source ends, or a TEXT/BLOB buffer
    nears Arrow's 2 GiB int32-offset limit; ``take()`` hands the batch over.
    Only one chunk of row tuples is alive at a time.
    """
    cdef list columns
    cdef Py_ssize_t ncols, length
    cdef list pending          # rows fetched but not yet appended (a batch was cut)
    cdef _ArrowScan scan       # direct table scan, when attached
    cdef Py_ssize_t pending_pos
    cdef public bint exhausted

    def __init__(self, Py_ssize_t ncols):
        if ncols < 0:
            raise ValueError("ncols must be >= 0")
        self.ncols = ncols
        self.columns = [_ArrowColumn() for _ in range(ncols)]
        self.length = 0
        self.pending = None
        self.pending_pos = 0
        self.exhausted = False

    @property
    def length(self):
        """Rows in the current (untaken) batch."""
        return self.length

    @property
    def kinds(self):
        """Current kind of every column (ARROW_NULL ... ARROW_TEXT)."""
        return [(<_ArrowColumn>c).kind for c in self.columns]

    def set_kind(self, Py_ssize_t col, int kind, bint locked=True):
        """Moves column ``col`` to ``kind`` (converting what it holds) and optionally locks it."""
        cdef _ArrowColumn c = self._column(col)
        if kind < _AK_NULL or kind > _AK_TEXT:
            raise ValueError(f"unknown Arrow column kind {kind}")
        c.locked = False
        c._convert(kind)
        c.locked = locked

    def lock(self):
        """Fixes every column's kind (an Arrow stream keeps its first batch's schema)."""
        for c in self.columns:
            (<_ArrowColumn>c).locked = True

    cdef _ArrowColumn _column(self, Py_ssize_t col):
        if col < 0 or col >= self.ncols:
            raise IndexError(f"column {col} out of range")
        return <_ArrowColumn>self.columns[col]

    cdef bint _near_limit(self):
        cdef _ArrowColumn c
        for c in self.columns:
            if c.data.size > _ARROW_DATA_SOFT_LIMIT:
                return True
        return False

    cdef int _append_row(self, object row) except -1:
        cdef Py_ssize_t j
        if type(row) is not tuple or PyTuple_GET_SIZE(row) != self.ncols:
            raise _ArrowDataError(f"expected a row tuple of {self.ncols} values, got {row!r:.80}")
        for j in range(self.ncols):
            (<_ArrowColumn>PyList_GET_ITEM(self.columns, j)).append(<object>PyTuple_GET_ITEM(row, j))
        self.length += 1
        return 0

    cdef bint _drain(self, list rows, Py_ssize_t pos, Py_ssize_t max_rows) except -1:
        """Appends rows[pos:] while there is room; leaves the rest pending. True when all went in."""
        cdef Py_ssize_t n = PyList_GET_SIZE(rows)
        while pos < n:
            if self.length >= max_rows or self._near_limit():
                self.pending = rows
                self.pending_pos = pos
                return False
            self._append_row(<object>PyList_GET_ITEM(rows, pos))
            pos += 1
        self.pending = None
        return True

    def attach(self, source):
        """Reads ``source`` (an engine RowSource not yet started) directly when its plan is a
        plain table scan with column references; returns True then (``fill`` ignores its fetch
        argument from now on).  Other plans return False and go through ``fill(fetch)``."""
        if self.scan is not None or self.length:
            raise ValueError("attach() must come before any row")
        self.scan = _arrow_direct_scan(source)
        return self.scan is not None

    cdef Py_ssize_t _fill_scan(self, Py_ssize_t max_rows) except -1:
        cdef _ArrowScan scan = self.scan
        cdef LmdbCursor c = scan.scan.cursor
        cdef Py_ssize_t before = self.length
        if scan.nwant != self.ncols:
            raise InternalError(f"scan of {scan.nwant} columns into a builder of {self.ncols}")
        while not self.exhausted and self.length < max_rows:
            if (self.length & 1023) == 0 and self._near_limit():
                break
            if c is None or not c.next():
                self.exhausted = True
                scan.finish()
                break
            scan.append_record(self.columns, c.kp, c.kn, c.vp, c.vn)
            self.length += 1
        return self.length - before

    def fill(self, fetch, Py_ssize_t max_rows, Py_ssize_t chunk=8192):
        """Adds rows from ``fetch`` until the batch holds ``max_rows``; returns rows added.

        Sets ``exhausted`` when ``fetch`` returned fewer rows than asked for."""
        cdef Py_ssize_t before = self.length, want
        cdef list rows
        if max_rows <= 0 or chunk <= 0:
            raise ValueError("max_rows and chunk must be positive")
        if self.scan is not None:
            return self._fill_scan(max_rows)
        if self.pending is not None:
            if not self._drain(self.pending, self.pending_pos, max_rows):
                return self.length - before
        while not self.exhausted and self.length < max_rows and not self._near_limit():
            want = max_rows - self.length
            if want > chunk:
                want = chunk
            rows = fetch(want)
            if PyList_GET_SIZE(rows) < want:
                self.exhausted = True
            if not self._drain(rows, 0, max_rows):
                break
        return self.length - before

    @property
    def done(self):
        """True when the source is exhausted and no fetched row is waiting."""
        return self.exhausted and self.pending is None

    def append_rows(self, rows):
        """Appends an iterable of row tuples."""
        for row in rows:
            self._append_row(row)

    def append_column_values(self, Py_ssize_t col, values):
        """Appends values to one column only (for single-column builders: conversions)."""
        cdef _ArrowColumn c = self._column(col)
        if self.ncols != 1:
            raise ValueError("append_column_values needs a one-column builder")
        for v in values:
            c.append(v)
            self.length += 1

    def take(self, bint presize=False):
        """The current batch, one tuple per column:
        (kind, length, null_count, validity bitmap or None, buffer 1, buffer 2 or None)
        where the buffers are values (INT/FLOAT) or offsets + data (TEXT/BLOB).
        ``presize``: reserve the next batch's buffers at this batch's sizes (streams)."""
        out = [(<_ArrowColumn>c).take(presize) for c in self.columns]
        self.length = 0
        return out
