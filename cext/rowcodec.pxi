# rowcodec.pxi - included by _core.pyx; do not compile on its own.
"""Compact row records: a table row (tuple of SQL values) <-> bytes.

Record format::

    varint(ncols)  cell_0  cell_1 ... cell_{ncols-1}

    cell := code [varint length] [payload]

``varint`` is unsigned LEB128 (7 bits a byte, low group first, high bit =
more).  Each cell is self-describing, so reading column i only *skips* the
cells before it (no objects made for them).  Type codes (one byte):

    0x00        NULL                               no payload
    0x01 0x02   integer constant 0 / 1             no payload
    0x03-0x0A   integer in 1..8 bytes              little-endian two's complement
    0x0B        REAL                               8 bytes IEEE-754 little-endian
    0x0C        TEXT, varint length follows        UTF-8 payload
    0x0D        BLOB, varint length follows        payload
    0x0E        JSON document, varint length follows  SQLite JSONB payload (jsonb.pxi)
    0x0F-0x3F   reserved
    0x40-0x7F   TEXT of length code-0x40 (0..63)   UTF-8 payload
    0x80-0xBF   BLOB of length code-0x80 (0..63)   payload
    0xC0-0xFF   reserved

Integers use the fewest bytes that hold them (-1..-128 and 2..127 take two
bytes with the code).  A float NaN is stored as NULL, as SQLite does; bool is
stored as integer 0/1; bytearray and memoryview are stored as BLOBs.

A 0x0E cell is written for a ``JsonbValue`` (a JSON-declared column's text,
encoded by the table writer) and read back as the document's minified text,
so every reader sees text; the bytes stay reachable to the compiled path
extractor (jsonb.pxi).  Text cells in JSON columns (rows written before
JSONB storage) read as they always did.

Rows written before ``ALTER TABLE ADD COLUMN`` hold fewer cells; readers pad
missing columns from a *defaults* tuple indexed by column number (None when
no defaults tuple, or it is shorter).  Every read is bounds-checked: damaged
records raise ``CorruptDatabaseError``, never read out of bounds.

C-level entry points for the executor (no Python call overhead):

* ``_decode_row_ptr(p, n, ncols, defaults) -> tuple``
* ``_decode_column_ptr(p, n, index, default) -> object``
* ``_rc_cell_number(p, n, pos, &ival, &dval) except -1``: a cell's integer or
  REAL value read in place (no object), or its kind when it is neither;
  ``_rc_numeric(code, payload, size, &ival, &dval)`` the same from a cell
  already read by ``_rc_payload``.
* ``_rc_cell_offsets(p, n, hi, offs) -> stored``: where the cells of columns
  ``0..hi`` start, found in one walk (then read any of them in any order).
* ``_decode_columns_into(p, n, idx, nidx, defaults, out) except -1``: writes
  new references for columns ``idx[0..nidx)`` into the ``PyObject*`` array
  ``out`` (e.g. a fresh tuple's items); on error every slot is left NULL.
* ``_encode_row_c(values) -> bytes``; ``_encode_row_into(values, &buf)`` into a reusable ``_RcBuf``;
  ``_encode_row_prefix_into(values, n, &buf)`` the same of the first ``n`` values
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8, PyUnicode_New
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from cpython.float cimport PyFloat_FromDouble, PyFloat_AS_DOUBLE
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM, PyTuple_GET_ITEM
from cpython.sequence cimport PySequence_Fast_ITEMS
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.string cimport memcpy
from libc.stdlib cimport malloc, free, realloc
from libc.stdint cimport int64_t, uint64_t

from terndb.engine.errors import CorruptDatabaseError, DataError, InterfaceError

cdef enum:
    _RC_NULL = 0x00
    _RC_ZERO = 0x01
    _RC_ONE = 0x02
    _RC_INT1 = 0x03           # 0x03 + (nbytes - 1), up to 0x0A for 8 bytes
    _RC_INT8 = 0x0A
    _RC_REAL = 0x0B
    _RC_TEXT = 0x0C
    _RC_BLOB = 0x0D
    _RC_JSON = 0x0E           # JSONB document of a JSON-declared column
    _RC_SHORT_TEXT = 0x40
    _RC_SHORT_BLOB = 0x80
    _RC_SHORT_MAX = 63
    _RC_STACK_CELLS = 32      # rows up to this width encode without malloc
    _RC_STACK_OFFS = 64


cdef struct _RcCell:
    unsigned char code
    unsigned char nint        # bytes of an integer payload
    Py_ssize_t size           # payload bytes
    long long ival
    double fval
    const char* ptr           # text/blob payload (borrowed from the value)


# ---------------------------------------------------------------- helpers

cdef inline int _rc_varint_len(uint64_t v) noexcept:
    cdef int n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline unsigned char* _rc_put_varint(unsigned char* out, uint64_t v) noexcept:
    while v >= 0x80:
        out[0] = <unsigned char>((v & 0x7F) | 0x80)
        v >>= 7
        out += 1
    out[0] = <unsigned char>v
    return out + 1


cdef inline int _rc_corrupt(str what, Py_ssize_t pos) except -1:
    raise CorruptDatabaseError(f"corrupt row record: {what} at byte {pos}")


cdef inline Py_ssize_t _rc_get_varint(const unsigned char* p, Py_ssize_t n,
                                      Py_ssize_t* ppos) except -1:
    """Read a length/count varint; it must fit comfortably in Py_ssize_t."""
    cdef Py_ssize_t pos = ppos[0]
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef unsigned char c
    while True:
        if pos >= n:
            _rc_corrupt("truncated varint", pos)
        c = p[pos]
        pos += 1
        v |= (<uint64_t>(c & 0x7F)) << shift
        if c < 0x80:
            break
        shift += 7
        if shift > 56:
            _rc_corrupt("varint too long", pos)
    ppos[0] = pos
    return <Py_ssize_t>v


cdef inline int _rc_int_bytes(long long v) noexcept:
    """Fewest little-endian two's complement bytes holding ``v``."""
    cdef int n = 1
    cdef long long lim = 0x80
    while n < 8 and not (-lim <= v < lim):
        n += 1
        lim <<= 8
    return n


cdef inline object _rc_default(tuple defaults, Py_ssize_t i):
    if defaults is None or i >= len(defaults):
        return None
    return <object>defaults[i]


# ---------------------------------------------------------------- encoding

cdef int _rc_classify(object v, _RcCell* cell) except -1:
    """Fill ``cell`` for ``v``; returns header+payload size, or -2 to ask the
    caller to convert a buffer object (bytearray, memoryview) to bytes first."""
    cdef int overflow = 0
    cdef long long iv
    cdef double dv
    cdef Py_ssize_t n
    if v is None:
        cell.code = _RC_NULL
        cell.size = 0
        return 1
    if type(v) is int or isinstance(v, int):         # bool included: True -> 1
        iv = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow:
            raise DataError(f"integer out of the 64-bit range: {v!r}")
        cell.ival = iv
        if iv == 0 or iv == 1:
            cell.code = _RC_ZERO + <int>iv
            cell.size = 0
            return 1
        cell.nint = <unsigned char>_rc_int_bytes(iv)
        cell.code = _RC_INT1 + cell.nint - 1
        cell.size = cell.nint
        return 1 + cell.nint
    if isinstance(v, float):
        dv = PyFloat_AS_DOUBLE(v)
        if dv != dv:                                 # NaN is NULL, as in SQLite
            cell.code = _RC_NULL
            cell.size = 0
            return 1
        cell.code = _RC_REAL
        cell.fval = dv
        cell.size = 8
        return 9
    if isinstance(v, str):
        try:
            cell.ptr = PyUnicode_AsUTF8AndSize(v, &n)
        except UnicodeEncodeError as exc:
            raise DataError(f"text is not encodable as UTF-8: {exc}") from None
        cell.size = n
        if n <= _RC_SHORT_MAX:
            cell.code = _RC_SHORT_TEXT + <int>n
            return 1 + n
        cell.code = _RC_TEXT
        return 1 + _rc_varint_len(n) + n
    if isinstance(v, bytes):
        n = PyBytes_GET_SIZE(v)
        cell.ptr = PyBytes_AS_STRING(v)
        cell.size = n
        if n <= _RC_SHORT_MAX:
            cell.code = _RC_SHORT_BLOB + <int>n
            return 1 + n
        cell.code = _RC_BLOB
        return 1 + _rc_varint_len(n) + n
    if type(v) is JsonbValue:
        n = PyBytes_GET_SIZE((<JsonbValue>v).blob)
        cell.ptr = PyBytes_AS_STRING((<JsonbValue>v).blob)
        cell.size = n
        cell.code = _RC_JSON
        return 1 + _rc_varint_len(n) + n
    if isinstance(v, (bytearray, memoryview)):
        return -2
    raise DataError(f"cannot store a value of type {type(v).__name__} in a row")


cdef inline unsigned char* _rc_put_cell(unsigned char* out, _RcCell* cell) noexcept:
    cdef int k
    cdef uint64_t u
    cdef unsigned char code = cell.code
    out[0] = code
    out += 1
    if code == _RC_NULL or code == _RC_ZERO or code == _RC_ONE:
        return out
    if code <= _RC_INT8:
        u = <uint64_t>cell.ival
        for k in range(cell.nint):
            out[k] = <unsigned char>((u >> (8 * k)) & 0xFF)
        return out + cell.nint
    if code == _RC_REAL:
        memcpy(&u, &cell.fval, 8)
        for k in range(8):
            out[k] = <unsigned char>((u >> (8 * k)) & 0xFF)
        return out + 8
    if code == _RC_TEXT or code == _RC_BLOB or code == _RC_JSON:
        out = _rc_put_varint(out, <uint64_t>cell.size)
    memcpy(out, cell.ptr, cell.size)
    return out + cell.size


# A reusable record buffer (``_encode_row_into``): malloc'd, grown on demand,
# owned and freed (``_rc_buf_free``) by whoever holds it.
cdef struct _RcBuf:
    unsigned char* data
    Py_ssize_t cap
    Py_ssize_t len            # length of the record last encoded into it


cdef inline void _rc_buf_free(_RcBuf* buf) noexcept:
    free(buf.data)
    buf.data = NULL
    buf.cap = 0
    buf.len = 0


cdef unsigned char* _rc_buf_room(_RcBuf* buf, Py_ssize_t total) except NULL:
    """The buffer's storage with room for ``total`` bytes (grown geometrically)."""
    cdef Py_ssize_t cap
    cdef unsigned char* grown
    if total > buf.cap or buf.data == NULL:
        cap = buf.cap * 2 if buf.cap * 2 > total else total + 64
        grown = <unsigned char*>realloc(buf.data, cap)
        if grown == NULL:
            raise MemoryError("out of memory while encoding a row")
        buf.data = grown
        buf.cap = cap
    return buf.data


cdef object _rc_encode(tuple values, _RcBuf* into):
    """Size every cell, then write the record once: into ``into`` (returns None,
    ``into.len`` is the length) or, when ``into`` is NULL, into a new bytes."""
    return _rc_encode_n(values, PyTuple_GET_SIZE(values), into)


cdef object _rc_encode_n(tuple values, Py_ssize_t ncols, _RcBuf* into):
    """``_rc_encode`` of the first ``ncols`` values (the writers' rows carry the rowid
    after the columns: it is the key, not a cell)."""
    cdef _RcCell stack[_RC_STACK_CELLS]
    cdef _RcCell* cells = stack
    cdef Py_ssize_t total, i
    cdef int size
    cdef object out = None
    cdef unsigned char* w
    if ncols > _RC_STACK_CELLS:
        cells = <_RcCell*>malloc(ncols * sizeof(_RcCell))
        if cells == NULL:
            raise MemoryError("out of memory while encoding a row")
    try:
        total = _rc_varint_len(<uint64_t>ncols)
        for i in range(ncols):
            size = _rc_classify(<object>PyTuple_GET_ITEM(values, i), &cells[i])
            if size == -2:
                # Rare: buffer objects; re-run with them copied to bytes so the
                # payload pointers stay valid without holding buffer views.
                return _rc_encode_n(tuple([
                    bytes(v) if isinstance(v, (bytearray, memoryview)) else v
                    for v in values[:ncols]]), ncols, into)
            total += size
        if into == NULL:
            out = PyBytes_FromStringAndSize(NULL, total)
            w = <unsigned char*>PyBytes_AS_STRING(out)
        else:
            w = _rc_buf_room(into, total)
            into.len = total
        w = _rc_put_varint(w, <uint64_t>ncols)
        for i in range(ncols):
            w = _rc_put_cell(w, &cells[i])
        return out
    finally:
        if cells != stack:
            free(cells)


cdef bytes _encode_row_c(tuple values):
    """C entry point of ``encode_row``."""
    return <bytes>_rc_encode(values, NULL)


cdef int _encode_row_into(tuple values, _RcBuf* buf) except -1:
    """Encodes the record into ``buf`` (its ``len`` says how long): the row writers'
    path, which hands the record to LMDB and the change set without a bytes object."""
    _rc_encode(values, buf)
    return 0


cdef int _encode_row_prefix_into(tuple values, Py_ssize_t ncols, _RcBuf* buf) except -1:
    """``_encode_row_into`` of ``values[:ncols]``, without that slice."""
    if ncols > PyTuple_GET_SIZE(values):
        raise InternalError(f"{PyTuple_GET_SIZE(values)} values for {ncols} columns")
    _rc_encode_n(values, ncols, buf)
    return 0


cpdef bytes encode_row(tuple values):
    """Encode a row (tuple of None/int/float/str/bytes) as a compact record."""
    return _encode_row_c(values)


# ---------------------------------------------------------------- decoding

cdef inline Py_ssize_t _rc_payload(const unsigned char* p, Py_ssize_t n, Py_ssize_t* ppos,
                                   unsigned char* pcode) except -1:
    """Read a cell's code (and length); returns its payload size and leaves
    ``ppos`` at the payload, checked to lie inside the buffer."""
    cdef Py_ssize_t pos = ppos[0]
    cdef unsigned char code
    cdef Py_ssize_t size = 0
    if pos >= n:
        _rc_corrupt("truncated record (missing cell)", pos)
    code = p[pos]
    pos += 1
    if code <= _RC_ONE:
        size = 0
    elif code <= _RC_INT8:
        size = code - _RC_INT1 + 1
    elif code == _RC_REAL:
        size = 8
    elif code == _RC_TEXT or code == _RC_BLOB or code == _RC_JSON:
        size = _rc_get_varint(p, n, &pos)
    elif _RC_SHORT_TEXT <= code < _RC_SHORT_BLOB + _RC_SHORT_MAX + 1:
        size = code & 0x3F
    else:
        _rc_corrupt(f"unknown type code 0x{code:02x}", pos - 1)
    if size > n - pos:
        _rc_corrupt("cell runs past the end of the record", pos)
    ppos[0] = pos
    pcode[0] = code
    return size


cdef Py_ssize_t _RC_ASCII_FAST_MAX = 64


cdef inline bint _rc_is_ascii(const unsigned char* q, Py_ssize_t size) noexcept:
    cdef unsigned char acc = 0
    cdef Py_ssize_t k
    for k in range(size):
        acc |= q[k]
    return acc < 0x80


cdef inline int _rc_numeric(unsigned char code, const unsigned char* q, Py_ssize_t size,
                            int64_t* ival, double* dval) noexcept:
    """The number in a cell's payload ``q[:size]`` (``code`` and ``size`` as read by
    ``_rc_payload``, which checked the payload lies in the record): 1 an integer
    (into ``ival``), 2 a REAL (into ``dval``), 0 not a number (NULL, text, blob, JSON).

    The one decoder of numeric cells, shared by every reader (objects, in-place
    aggregates, Arrow buffers) so they cannot disagree on a value."""
    cdef uint64_t u = 0
    cdef int k, shift
    if code == _RC_NULL or code > _RC_REAL:
        return 0
    if code <= _RC_ONE:                      # 0 and 1 have no payload
        ival[0] = code - _RC_ZERO
        return 1
    if code == _RC_REAL:
        for k in range(8):                   # constant count: foldable into one 8-byte load
            u |= (<uint64_t>q[k]) << (8 * k)
        memcpy(dval, &u, 8)
        return 2
    for k in range(size):                    # 1..8 bytes, little-endian
        u |= (<uint64_t>q[k]) << (8 * k)
    # Sign-extend a short integer: its sign bit to the top, arithmetic shift back
    # (shift is 0..56 here, never the undefined 64).
    shift = 64 - 8 * <int>size
    ival[0] = (<int64_t>(u << shift)) >> shift
    return 1


cdef inline object _rc_read_cell(const unsigned char* p, Py_ssize_t n, Py_ssize_t* ppos):
    """Decode the cell at ``ppos[0]`` and advance past it."""
    cdef object v
    cdef unsigned char code
    cdef Py_ssize_t size = _rc_payload(p, n, ppos, &code)
    cdef Py_ssize_t pos = ppos[0]
    cdef const unsigned char* q = p + pos
    cdef int64_t ival
    cdef double dval
    ppos[0] = pos + size
    if code == _RC_NULL:
        return None
    if code <= _RC_REAL:
        if _rc_numeric(code, q, size, &ival, &dval) == 1:
            return PyLong_FromLongLong(ival)
        return PyFloat_FromDouble(dval)
    if code == _RC_TEXT or (code & 0xC0) == _RC_SHORT_TEXT:
        if size <= _RC_ASCII_FAST_MAX and _rc_is_ascii(q, size):
            # Short ASCII text (most keys and labels): copy into a compact str
            # directly, skipping the UTF-8 decoder's setup.
            v = PyUnicode_New(size, 127)
            memcpy(PyUnicode_DATA(v), q, size)
            return v
        try:
            return PyUnicode_DecodeUTF8(<char*>q, size, NULL)
        except UnicodeDecodeError:
            raise CorruptDatabaseError(
                f"corrupt row record: invalid UTF-8 text at byte {pos}") from None
    if code == _RC_JSON:
        return _jb_cell_text(q, size)
    return PyBytes_FromStringAndSize(<char*>q, size)


cdef inline object _rc_read_doc_cell(const unsigned char* p, Py_ssize_t n, Py_ssize_t* ppos):
    """``_rc_read_cell``, except that a JSON document cell comes back as a
    JsonbDoc (its JSONB bytes, not its text: see jsonb.pxi)."""
    cdef unsigned char code
    cdef Py_ssize_t size
    if ppos[0] < n and p[ppos[0]] == _RC_JSON:
        size = _rc_payload(p, n, ppos, &code)
        ppos[0] += size
        return _jb_cell_doc(p + ppos[0] - size, size)
    return _rc_read_cell(p, n, ppos)


cdef inline object _rc_read_col_cell(const unsigned char* p, Py_ssize_t n, Py_ssize_t* ppos,
                                     unsigned long long json_docs, Py_ssize_t i):
    """The cell of column ``i``: a JsonbDoc when its bit is set in ``json_docs``
    (TableReader.read_json_docs), else the plain value."""
    if json_docs and i < 64 and (json_docs >> i) & 1:
        return _rc_read_doc_cell(p, n, ppos)
    return _rc_read_cell(p, n, ppos)


cdef int _rc_cell_number(const unsigned char* p, Py_ssize_t n, Py_ssize_t pos,
                         int64_t* ival, double* dval) except -1:
    """Classifies the cell at ``pos`` without making an object (aggregates read
    numbers in place): 0 NULL, 1 an integer (into ``ival``), 2 a REAL (into
    ``dval``), 3 anything else (text, blob, JSON: decode it)."""
    cdef unsigned char code
    cdef Py_ssize_t size = _rc_payload(p, n, &pos, &code)
    cdef int cls = _rc_numeric(code, p + pos, size, ival, dval)
    if cls or code == _RC_NULL:
        return cls
    return 3


cdef inline Py_ssize_t _rc_skip_cell(const unsigned char* p, Py_ssize_t n,
                                     Py_ssize_t pos) except -1:
    cdef unsigned char code
    cdef Py_ssize_t size = _rc_payload(p, n, &pos, &code)
    return pos + size


cdef inline Py_ssize_t _rc_header(const unsigned char* p, Py_ssize_t n,
                                  Py_ssize_t* ppos) except -1:
    """Read the stored column count; every cell takes at least one byte."""
    cdef Py_ssize_t stored = _rc_get_varint(p, n, ppos)
    if stored > n - ppos[0]:
        _rc_corrupt(f"column count {stored} exceeds the record size", 0)
    return stored


cdef inline Py_ssize_t _rc_cell_offsets(const unsigned char* p, Py_ssize_t n, Py_ssize_t hi,
                                        Py_ssize_t* offs) except -1:
    """Reads the record's header, then sets ``offs[i]`` to where cell ``i`` starts
    for every stored column ``i <= hi``, in one pass (cells are skipped, never
    decoded, and none after ``hi`` is walked).  Returns the stored column count:
    columns from it on are not in the record (pad them from the defaults).

    The walk of readers that want several columns in any order (decode_columns,
    the in-place aggregate, the Arrow scan): they then read ``offs[col]``.
    ``offs`` needs room for ``min(hi + 1, stored)`` entries; every cell takes a
    byte, so ``min(hi + 1, n)`` always suffices.
    """
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t stored = _rc_header(p, n, &pos)
    cdef Py_ssize_t last = hi if hi < stored else stored - 1
    cdef Py_ssize_t i
    for i in range(last):
        offs[i] = pos
        pos = _rc_skip_cell(p, n, pos)
    if last >= 0:
        offs[last] = pos                 # the last wanted cell: its start is enough
    return stored


cdef tuple _decode_row_ptr(const unsigned char* p, Py_ssize_t n, Py_ssize_t ncols,
                           tuple defaults):
    """C entry point: decode ``ncols`` columns (-1: as stored), padding from defaults."""
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t stored = _rc_header(p, n, &pos)
    cdef Py_ssize_t i, upto
    cdef object v
    cdef tuple row
    if ncols < 0:
        ncols = stored
    upto = ncols if ncols < stored else stored
    row = PyTuple_New(ncols)       # NULL slots are safe if we raise midway
    for i in range(upto):
        v = _rc_read_cell(p, n, &pos)
        Py_INCREF(v)               # PyTuple_SET_ITEM steals a reference
        PyTuple_SET_ITEM(row, i, v)
    if upto == stored and pos != n:
        _rc_corrupt("trailing bytes after the last cell", pos)
    for i in range(upto, ncols):
        v = _rc_default(defaults, i)
        Py_INCREF(v)
        PyTuple_SET_ITEM(row, i, v)
    return row


cdef object _decode_column_ptr(const unsigned char* p, Py_ssize_t n, Py_ssize_t index,
                               object default):
    """C entry point: decode one column, skipping the cells before it."""
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t stored = _rc_header(p, n, &pos)
    cdef Py_ssize_t i
    if index < 0:
        raise InterfaceError(f"column index must be >= 0, got {index}")
    if index >= stored:
        return default
    for i in range(index):
        pos = _rc_skip_cell(p, n, pos)
    return _rc_read_cell(p, n, &pos)


cdef int _decode_columns_into(const unsigned char* p, Py_ssize_t n, const Py_ssize_t* idx,
                              Py_ssize_t nidx, tuple defaults, PyObject** out) except -1:
    """C entry point: new references to columns ``idx[k]`` into ``out[k]``.

    Any order and repeats are allowed; the record is walked once to find the
    cell offsets up to the highest wanted column.  On error all slots are NULL.
    """
    cdef Py_ssize_t offs_stack[_RC_STACK_OFFS]
    cdef Py_ssize_t* offs = offs_stack
    cdef Py_ssize_t hi = -1
    cdef Py_ssize_t k, col, at, stored
    cdef object v
    for k in range(nidx):
        out[k] = NULL
    for k in range(nidx):
        if idx[k] < 0:
            raise InterfaceError(f"column index must be >= 0, got {idx[k]}")
        if idx[k] > hi:
            hi = idx[k]
    # A record of n bytes holds at most n cells: bounds offs before the header is read.
    if hi >= n:
        hi = n - 1
    if hi + 1 > _RC_STACK_OFFS:
        offs = <Py_ssize_t*>malloc((hi + 1) * sizeof(Py_ssize_t))
        if offs == NULL:
            raise MemoryError("out of memory while decoding a row")
    try:
        stored = _rc_cell_offsets(p, n, hi, offs)
        for k in range(nidx):
            col = idx[k]
            if col < stored:
                at = offs[col]
                v = _rc_read_cell(p, n, &at)
            else:
                v = _rc_default(defaults, col)
            Py_INCREF(v)
            out[k] = <PyObject*>v
    except BaseException:
        for k in range(nidx):
            Py_XDECREF(out[k])
            out[k] = NULL
        raise
    finally:
        if offs != offs_stack:
            free(offs)
    return 0


cpdef tuple decode_row(bytes data, int ncols=-1, tuple defaults=None):
    """Decode a record; ``ncols`` > stored pads with ``defaults[i]`` (or None)."""
    return _decode_row_ptr(<const unsigned char*>PyBytes_AS_STRING(data),
                           PyBytes_GET_SIZE(data), ncols, defaults)


cpdef object decode_column(bytes data, int index, object default=None):
    """Decode column ``index`` only; ``default`` when the record is shorter."""
    return _decode_column_ptr(<const unsigned char*>PyBytes_AS_STRING(data),
                              PyBytes_GET_SIZE(data), index, default)


cpdef tuple decode_columns(bytes data, tuple indexes, tuple defaults=None):
    """Decode the columns ``indexes`` (any order) into a tuple in that order.

    ``defaults`` is indexed by column number, like ``decode_row``'s.
    """
    cdef Py_ssize_t nidx = len(indexes)
    cdef Py_ssize_t idx_stack[_RC_STACK_OFFS]
    cdef Py_ssize_t* idx = idx_stack
    cdef Py_ssize_t k
    cdef tuple result
    if nidx > _RC_STACK_OFFS:
        idx = <Py_ssize_t*>malloc(nidx * sizeof(Py_ssize_t))
        if idx == NULL:
            raise MemoryError("out of memory while decoding a row")
    try:
        for k in range(nidx):
            try:
                idx[k] = <Py_ssize_t>indexes[k]
            except (TypeError, OverflowError):
                raise InterfaceError(
                    f"column indexes must be ints, got {indexes[k]!r}") from None
        result = PyTuple_New(nidx)
        _decode_columns_into(<const unsigned char*>PyBytes_AS_STRING(data),
                             PyBytes_GET_SIZE(data), idx, nidx, defaults,
                             PySequence_Fast_ITEMS(result))
        return result
    finally:
        if idx != idx_stack:
            free(idx)


cpdef int row_column_count(bytes data) except -1:
    """Number of columns stored in a record (before any ALTER TABLE padding)."""
    cdef Py_ssize_t pos = 0
    return <int>_rc_header(<const unsigned char*>PyBytes_AS_STRING(data),
                           PyBytes_GET_SIZE(data), &pos)


cpdef bytes drop_row_column(bytes data, Py_ssize_t index):
    """The record without column ``index``'s cell, the other cells copied as
    stored (JSONB documents stay JSONB: nothing is decoded).  A record written
    before ``index`` existed (ALTER TABLE ADD COLUMN) holds no such cell and
    comes back unchanged: its later columns read from the defaults, as before."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos = 0, head, start, end, i
    cdef Py_ssize_t stored = _rc_header(p, n, &pos)
    cdef bytes out
    cdef unsigned char* w
    if index < 0:
        raise InterfaceError(f"column index must be >= 0, got {index}")
    if index >= stored:
        return data
    head = pos
    for i in range(index):
        pos = _rc_skip_cell(p, n, pos)
    start = pos
    end = _rc_skip_cell(p, n, pos)
    out = PyBytes_FromStringAndSize(NULL, _rc_varint_len(<uint64_t>(stored - 1)) + (start - head) + (n - end))
    w = _rc_put_varint(<unsigned char*>PyBytes_AS_STRING(out), <uint64_t>(stored - 1))
    memcpy(w, p + head, start - head)
    memcpy(w + (start - head), p + end, n - end)
    return out


cpdef bytes row_with_cell(bytes data, Py_ssize_t index, object value, tuple defaults=None):
    """A record of columns ``0..index``: the cells of ``data`` before ``index``
    copied as stored (JSONB documents stay JSONB), padded from ``defaults``
    where ``data`` is shorter, then ``value`` as column ``index``."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos = 0, head, keep, i, tpos = 0
    cdef Py_ssize_t stored = _rc_header(p, n, &pos)
    cdef bytes tail, out
    cdef const unsigned char* t
    cdef unsigned char* w
    if index < 0:
        raise InterfaceError(f"column index must be >= 0, got {index}")
    head = pos
    keep = index if index < stored else stored
    for i in range(keep):
        pos = _rc_skip_cell(p, n, pos)
    # The padding and the new cell, encoded as a record whose cells are then appended.
    tail = _encode_row_c(tuple([_rc_default(defaults, i) for i in range(keep, index)]) + (value,))
    t = <const unsigned char*>PyBytes_AS_STRING(tail)
    _rc_header(t, PyBytes_GET_SIZE(tail), &tpos)
    out = PyBytes_FromStringAndSize(NULL, _rc_varint_len(<uint64_t>(index + 1)) + (pos - head)
                                    + PyBytes_GET_SIZE(tail) - tpos)
    w = _rc_put_varint(<unsigned char*>PyBytes_AS_STRING(out), <uint64_t>(index + 1))
    memcpy(w, p + head, pos - head)
    memcpy(w + (pos - head), t + tpos, PyBytes_GET_SIZE(tail) - tpos)
    return out
