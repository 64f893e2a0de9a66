# keycodec.pxi - included by _core.pyx; do not compile on its own.
"""Order-preserving key encoding: ``memcmp`` order of the bytes == SQLite ORDER BY order.

LMDB orders keys with ``memcmp``.  An index key is a tuple of SQL values; this
file turns it into bytes whose ``memcmp`` order is SQLite's BINARY-collation
order: NULL < numbers < text < blob, numbers compared numerically across
INTEGER and REAL, text and blobs by their bytes with a shorter prefix first.

Key format (one *component* per value, concatenated; every component is
self-delimiting and no component is a proper prefix of another, so a tuple's
order is lexicographic by component and a prefix of the values encodes to a
byte prefix of the key):

    NULL    0x05
    number  0x15  D  0x00 M  [O1 O2]
    text    0x25  escaped UTF-8 bytes  0x00 0x01
    blob    0x35  escaped bytes        0x00 0x01

Tags leave gaps (0x45.. e.g. for JSON documents later).  *Escaping*: each 0x00
byte is written as 0x00 0xFF; the terminator 0x00 0x01 then sorts before any
escaped NUL or other byte, so 'a' < 'a\\x00' < 'a\\x01' < 'ab'.

Numbers: ``d`` is the value as a double (ints: the nearest double).  ``D`` is
``d`` as an order-preserving unsigned 64-bit big-endian integer (sign bit
flipped for positives, all bits flipped for negatives) with its trailing zero
bytes dropped and the rest escaped like text (small ints and simple reals take
2-4 bytes).  ``M`` tells how the exact value differs from ``d``: 0x02 equal
(all reals and all ints exactly representable as doubles), 0x01 / 0x03 an int
below / above ``d``; then ``O1 O2`` is ``v - d + 0x8000`` big-endian (|v - d|
is at most 512 for int64).  So 5 and 5.0 give the same bytes (SQLite's UNIQUE
treats them as equal), every int64 and double orders exactly, -0.0 == 0.0, and
NaN is stored as NULL as SQLite does.

DESC columns: the component's bytes are inverted (x ^ 0xFF).  Inverted tags
(0xFA, 0xEA, 0xDA, 0xCA) differ from the plain ones, so a decoder recognises a
DESC component by its tag; NULL then sorts last for that column, as in SQLite.

Index entries: ``encode_key_with_rowid`` appends a FIXED 8-byte rowid suffix
(``encode_rowid``, always ascending) after the components;
``key_rowid_suffix`` reads it back from the last 8 bytes.

Decoding cannot tell 5 from 5.0, so ``decode_key`` takes one affinity letter
per column: b'R' gives float; b'I', b'N' give int when the number is integral
and fits int64, else float; b'B' (BLOB/none) and b'T' do the same as b'I' -
a documented limitation: a REAL 5.0 in a column without affinity reads back
from an index key as int 5 (read the row when the exact type matters).
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from cpython.float cimport PyFloat_FromDouble, PyFloat_AS_DOUBLE
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.ref cimport Py_INCREF
from libc.string cimport memcpy
from libc.stdlib cimport malloc, realloc, free
from libc.stdint cimport uint64_t

from terndb.engine.errors import CorruptDatabaseError, DataError

# Component tags (ascending form).  Gaps are left for future types.
cdef enum:
    _KC_TAG_NULL = 0x05
    _KC_TAG_NUM = 0x15
    _KC_TAG_TEXT = 0x25
    _KC_TAG_BLOB = 0x35
    # Number markers: how the exact value relates to its double approximation.
    _KC_NUM_BELOW = 0x01
    _KC_NUM_EXACT = 0x02
    _KC_NUM_ABOVE = 0x03
    _KC_END = 0x01          # terminator of text/blob: 0x00 0x01
    _KC_ESC = 0xFF          # escaped NUL: 0x00 0xFF
    _KC_STACK = 256         # keys are short (LMDB caps them at 511 bytes)

cdef double _KC_TWO63 = 9223372036854775808.0


# ---------------------------------------------------------------- growable buffer

cdef struct _KcBuf:
    unsigned char* data
    Py_ssize_t len
    Py_ssize_t cap
    bint heap


cdef inline void _kc_buf_init(_KcBuf* b, unsigned char* stack, Py_ssize_t cap) noexcept:
    b.data = stack
    b.len = 0
    b.cap = cap
    b.heap = False


cdef inline void _kc_buf_free(_KcBuf* b) noexcept:
    if b.heap:
        free(b.data)
        b.heap = False


cdef int _kc_buf_grow(_KcBuf* b, Py_ssize_t extra) except -1:
    """Make room for ``extra`` more bytes; moves from the stack to the heap once."""
    cdef Py_ssize_t cap = b.cap * 2
    cdef unsigned char* p
    if cap < b.len + extra:
        cap = b.len + extra
    if b.heap:
        p = <unsigned char*>realloc(b.data, cap)
    else:
        p = <unsigned char*>malloc(cap)
        if p != NULL:
            memcpy(p, b.data, b.len)
    if p == NULL:
        raise MemoryError("out of memory while encoding a key")
    b.data = p
    b.cap = cap
    b.heap = True
    return 0


cdef inline int _kc_reserve(_KcBuf* b, Py_ssize_t extra) except -1:
    if b.len + extra > b.cap:
        _kc_buf_grow(b, extra)
    return 0


# ---------------------------------------------------------------- encoding

cdef inline uint64_t _kc_sortable_bits(double d) noexcept:
    """Map a double to a uint64 whose unsigned order is the numeric order."""
    cdef uint64_t bits
    if d == 0.0:
        d = 0.0                  # -0.0 and 0.0 must give the same key
    memcpy(&bits, &d, 8)
    if bits >> 63:
        return ~bits             # negatives: larger magnitude sorts lower
    return bits ^ (<uint64_t>1 << 63)


cdef inline double _kc_unsortable_bits(uint64_t bits) noexcept:
    cdef double d
    if bits >> 63:
        bits ^= (<uint64_t>1 << 63)
    else:
        bits = ~bits
    memcpy(&d, &bits, 8)
    return d


cdef inline void _kc_put_escaped(_KcBuf* b, const unsigned char* s, Py_ssize_t n) noexcept:
    """Write ``s`` with 0x00 escaped; the caller reserved 2*n bytes."""
    cdef Py_ssize_t i
    cdef unsigned char* out = b.data + b.len
    cdef unsigned char c
    for i in range(n):
        c = s[i]
        out[0] = c
        if c == 0:
            out[1] = _KC_ESC
            out += 2
        else:
            out += 1
    b.len = out - b.data


cdef int _kc_put_number(_KcBuf* b, double d, int offset) except -1:
    """Write a number component: the double ``d`` plus the int's exact ``offset``."""
    cdef uint64_t bits = _kc_sortable_bits(d)
    cdef int nbytes = 8
    cdef int i
    cdef unsigned char c
    cdef unsigned char* out
    while nbytes > 0 and ((bits >> (64 - 8 * nbytes)) & 0xFF) == 0:
        nbytes -= 1            # trailing zero bytes carry no order information
    _kc_reserve(b, 1 + 2 * 8 + 2 + 2)
    out = b.data + b.len
    out[0] = _KC_TAG_NUM
    out += 1
    for i in range(nbytes):
        c = <unsigned char>((bits >> (56 - 8 * i)) & 0xFF)
        out[0] = c
        if c == 0:
            out[1] = _KC_ESC
            out += 2
        else:
            out += 1
    out[0] = 0
    if offset == 0:
        out[1] = _KC_NUM_EXACT
        out += 2
    else:
        out[1] = _KC_NUM_BELOW if offset < 0 else _KC_NUM_ABOVE
        out[2] = <unsigned char>(((offset + 0x8000) >> 8) & 0xFF)
        out[3] = <unsigned char>((offset + 0x8000) & 0xFF)
        out += 4
    b.len = out - b.data
    return 0


cdef int _kc_put_int(_KcBuf* b, long long v) except -1:
    cdef double d = <double>v
    cdef long long offset
    if d >= _KC_TWO63:
        # (long long)2^63 is undefined; v - 2^63 computed without overflow.
        offset = (v - 9223372036854775807) - 1
    else:
        offset = v - <long long>d
    return _kc_put_number(b, d, <int>offset)


cdef int _kc_put_bytes(_KcBuf* b, unsigned char tag, const unsigned char* s,
                       Py_ssize_t n) except -1:
    _kc_reserve(b, 1 + 2 * n + 2)
    b.data[b.len] = tag
    b.len += 1
    _kc_put_escaped(b, s, n)
    b.data[b.len] = 0
    b.data[b.len + 1] = _KC_END
    b.len += 2
    return 0


cdef int _kc_put_value(_KcBuf* b, object v) except -1:
    """Append one value's ascending component."""
    cdef int overflow = 0
    cdef long long iv
    cdef double dv
    cdef const char* s
    cdef Py_ssize_t n
    cdef Py_buffer view
    if v is None:
        _kc_reserve(b, 1)
        b.data[b.len] = _KC_TAG_NULL
        b.len += 1
    elif type(v) is int or isinstance(v, int):      # bool is an int: True -> 1
        iv = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow:
            raise DataError(f"integer out of the 64-bit range: {v!r}")
        _kc_put_int(b, iv)
    elif isinstance(v, float):
        dv = PyFloat_AS_DOUBLE(v)
        if dv != dv:                                 # NaN is NULL, as in SQLite
            _kc_reserve(b, 1)
            b.data[b.len] = _KC_TAG_NULL
            b.len += 1
        else:
            _kc_put_number(b, dv, 0)
    elif isinstance(v, str):
        try:
            s = PyUnicode_AsUTF8AndSize(v, &n)
        except UnicodeEncodeError as exc:
            raise DataError(f"text is not encodable as UTF-8: {exc}") from None
        _kc_put_bytes(b, _KC_TAG_TEXT, <const unsigned char*>s, n)
    elif isinstance(v, bytes):
        _kc_put_bytes(b, _KC_TAG_BLOB, <const unsigned char*>PyBytes_AS_STRING(v),
                      PyBytes_GET_SIZE(v))
    elif isinstance(v, (bytearray, memoryview)):
        PyObject_GetBuffer(v, &view, PyBUF_SIMPLE)
        try:
            _kc_put_bytes(b, _KC_TAG_BLOB, <const unsigned char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
    else:
        raise DataError(f"cannot store a value of type {type(v).__name__} in a key")
    return 0


cdef inline void _kc_invert(_KcBuf* b, Py_ssize_t start) noexcept:
    cdef Py_ssize_t i
    for i in range(start, b.len):
        b.data[i] ^= 0xFF


cdef inline void _kc_put_rowid(unsigned char* out, long long rowid) noexcept:
    """8 bytes big-endian with the sign bit flipped: memcmp order == int order."""
    cdef uint64_t u = (<uint64_t>rowid) ^ (<uint64_t>1 << 63)
    cdef int i
    for i in range(8):
        out[i] = <unsigned char>((u >> (56 - 8 * i)) & 0xFF)


cdef inline long long _kc_get_rowid(const unsigned char* p) noexcept:
    cdef uint64_t u = 0
    cdef int i
    for i in range(8):
        u = (u << 8) | p[i]
    return <long long>(u ^ (<uint64_t>1 << 63))


cdef bytes _encode_key_c(tuple values, const unsigned char* desc, Py_ssize_t ndesc,
                         bint with_rowid, long long rowid):
    """C entry point: encode ``values`` (DESC flags in ``desc``), optionally + rowid."""
    cdef unsigned char stack[_KC_STACK]
    cdef _KcBuf b
    cdef Py_ssize_t i, start
    cdef Py_ssize_t n = len(values)
    stack[0] = 0                 # keeps gcc's uninitialised-read warning quiet
    _kc_buf_init(&b, stack, _KC_STACK)
    try:
        for i in range(n):
            start = b.len
            _kc_put_value(&b, <object>values[i])
            if i < ndesc and desc[i]:
                _kc_invert(&b, start)
        if with_rowid:
            _kc_reserve(&b, 8)
            _kc_put_rowid(b.data + b.len, rowid)
            b.len += 8
        return PyBytes_FromStringAndSize(<char*>b.data, b.len)
    finally:
        _kc_buf_free(&b)


cdef inline const unsigned char* _kc_desc_ptr(bytes desc, Py_ssize_t* ndesc):
    if desc is None:
        ndesc[0] = 0
        return NULL
    ndesc[0] = PyBytes_GET_SIZE(desc)
    return <const unsigned char*>PyBytes_AS_STRING(desc)


cpdef bytes encode_key(tuple values, bytes desc=None):
    """Encode a tuple of SQL values as a memcmp-ordered key.

    ``desc``: None, or bytes with one 0/1 per column (1 = DESC); missing
    trailing flags mean ASC.
    """
    cdef Py_ssize_t ndesc
    cdef const unsigned char* d = _kc_desc_ptr(desc, &ndesc)
    return _encode_key_c(values, d, ndesc, False, 0)


cpdef bytes encode_key_with_rowid(tuple values, long long rowid, bytes desc=None):
    """An index entry's key: ``encode_key(values, desc) + encode_rowid(rowid)``."""
    cdef Py_ssize_t ndesc
    cdef const unsigned char* d = _kc_desc_ptr(desc, &ndesc)
    return _encode_key_c(values, d, ndesc, True, rowid)


cpdef bytes encode_rowid(long long rowid):
    """Fixed 8-byte key of a rowid table entry; sorts like the integers."""
    cdef unsigned char out[8]
    _kc_put_rowid(out, rowid)
    return PyBytes_FromStringAndSize(<char*>out, 8)


cpdef long long decode_rowid(bytes key) except? -1:
    """Inverse of ``encode_rowid``."""
    if PyBytes_GET_SIZE(key) != 8:
        raise CorruptDatabaseError(
            f"rowid key must be 8 bytes, got {PyBytes_GET_SIZE(key)}")
    return _kc_get_rowid(<const unsigned char*>PyBytes_AS_STRING(key))


cpdef long long key_rowid_suffix(bytes key) except? -1:
    """The rowid stored in the last 8 bytes of an ``encode_key_with_rowid`` key."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(key)
    if n < 8:
        raise CorruptDatabaseError(f"index key too short for a rowid suffix ({n} bytes)")
    return _kc_get_rowid(<const unsigned char*>PyBytes_AS_STRING(key) + n - 8)


cpdef bytes prefix_successor(bytes prefix):
    """Smallest byte string greater than every string starting with ``prefix``.

    None when there is none (empty prefix or all 0xFF): scan to the end then.
    """
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(prefix)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(prefix)
    cdef bytes out
    cdef unsigned char* q
    while n > 0 and p[n - 1] == 0xFF:
        n -= 1                   # 0xFF cannot be incremented: carry left
    if n == 0:
        return None
    # Allocate with NULL: CPython shares 1-byte bytes objects made from a
    # pointer, and mutating that shared object would corrupt every b'\x05'.
    out = PyBytes_FromStringAndSize(NULL, n)
    q = <unsigned char*>PyBytes_AS_STRING(out)
    memcpy(q, p, n)
    q[n - 1] += 1
    return out


# ---------------------------------------------------------------- decoding

cdef inline int _kc_corrupt(str what, Py_ssize_t pos) except -1:
    raise CorruptDatabaseError(f"corrupt key: {what} at byte {pos}")


cdef Py_ssize_t _kc_scan_escaped(const unsigned char* p, Py_ssize_t n, Py_ssize_t pos,
                                 unsigned char x, Py_ssize_t* raw_len,
                                 unsigned char* term) except -2:
    """Find the 0x00 <term> terminator of an escaped run starting at ``pos``.

    Returns the position just past the terminator; ``raw_len`` gets the
    unescaped length and ``term`` the terminator's second byte.
    """
    cdef Py_ssize_t i = pos
    cdef Py_ssize_t length = 0
    cdef unsigned char c
    while True:
        if i >= n:
            _kc_corrupt("unterminated component", i)
        c = p[i] ^ x
        if c != 0:
            length += 1
            i += 1
            continue
        if i + 1 >= n:
            _kc_corrupt("truncated escape", i)
        c = p[i + 1] ^ x
        if c == _KC_ESC:
            length += 1
            i += 2
            continue
        raw_len[0] = length
        term[0] = c
        return i + 2


cdef void _kc_unescape(const unsigned char* p, Py_ssize_t pos, Py_ssize_t raw_len,
                       unsigned char x, unsigned char* out) noexcept:
    """Copy ``raw_len`` unescaped bytes (already validated by _kc_scan_escaped)."""
    cdef Py_ssize_t k
    cdef unsigned char c
    for k in range(raw_len):
        c = p[pos] ^ x
        out[k] = c
        pos += 2 if c == 0 else 1


cdef object _kc_number_value(double d, int marker, int offset, char affinity,
                             Py_ssize_t pos):
    """Turn a decoded number back into int or float following the affinity."""
    cdef long long v
    cdef bint integral = -_KC_TWO63 <= d < _KC_TWO63 and d == <double>(<long long>d)
    if marker == _KC_NUM_EXACT:
        if affinity != b'R' and integral:
            return PyLong_FromLongLong(<long long>d)
        return PyFloat_FromDouble(d)
    # An int that is not exactly representable: d is integral, 0 < |offset| <= 512.
    if not (integral or d == _KC_TWO63):
        _kc_corrupt("number offset on a non-integral value", pos)
    if offset == 0 or offset > 512 or offset < -512 or \
            (offset < 0) != (marker == _KC_NUM_BELOW):
        _kc_corrupt("number offset disagrees with its marker", pos)
    if affinity == b'R':
        return PyFloat_FromDouble(d)
    if d == _KC_TWO63:
        if offset > 0:
            _kc_corrupt("integer above the 64-bit range", pos)
        v = 9223372036854775807 + (offset + 1)
    else:
        if (d == -_KC_TWO63 and offset < 0):
            _kc_corrupt("integer below the 64-bit range", pos)
        v = <long long>d + offset
    return PyLong_FromLongLong(v)


cdef object _kc_read_component(const unsigned char* p, Py_ssize_t n, Py_ssize_t* ppos,
                               char affinity, int* is_desc):
    """Decode the component at ``ppos[0]``; advance it; report DESC in ``is_desc``."""
    cdef Py_ssize_t pos = ppos[0]
    cdef Py_ssize_t start, raw_len, end
    cdef unsigned char tag = p[pos]
    cdef unsigned char x = 0
    cdef unsigned char term
    cdef unsigned char tmp[8]
    cdef unsigned char* heap
    cdef uint64_t bits = 0
    cdef int marker, offset = 0, k
    cdef object result
    if tag > 0x80:               # inverted (DESC) tags are 0xCA..0xFA
        x = 0xFF
        tag ^= 0xFF
    is_desc[0] = x != 0
    start = pos + 1
    if tag == _KC_TAG_NULL:
        ppos[0] = start
        return None
    if tag == _KC_TAG_NUM:
        end = _kc_scan_escaped(p, n, start, x, &raw_len, &term)
        if raw_len > 8:
            _kc_corrupt("number longer than 8 bytes", start)
        _kc_unescape(p, start, raw_len, x, tmp)
        for k in range(raw_len):
            bits |= (<uint64_t>tmp[k]) << (56 - 8 * k)
        marker = term
        if marker != _KC_NUM_EXACT:
            if marker != _KC_NUM_BELOW and marker != _KC_NUM_ABOVE:
                _kc_corrupt("bad number marker", end - 1)
            if end + 2 > n:
                _kc_corrupt("truncated number offset", end)
            offset = ((((p[end] ^ x) << 8) | (p[end + 1] ^ x))) - 0x8000
            end += 2
        ppos[0] = end
        return _kc_number_value(_kc_unsortable_bits(bits), marker, offset, affinity, start)
    if tag == _KC_TAG_TEXT or tag == _KC_TAG_BLOB:
        end = _kc_scan_escaped(p, n, start, x, &raw_len, &term)
        if term != _KC_END:
            _kc_corrupt("bad string terminator", end - 1)
        if x == 0 and raw_len == end - 2 - start:
            # No escapes in an ASC component: decode straight from the key.
            heap = NULL
            if tag == _KC_TAG_TEXT:
                result = _kc_text(<const char*>p + start, raw_len, start)
            else:
                result = PyBytes_FromStringAndSize(<char*>p + start, raw_len)
        else:
            heap = <unsigned char*>malloc(raw_len + 1)
            if heap == NULL:
                raise MemoryError("out of memory while decoding a key")
            try:
                _kc_unescape(p, start, raw_len, x, heap)
                if tag == _KC_TAG_TEXT:
                    result = _kc_text(<const char*>heap, raw_len, start)
                else:
                    result = PyBytes_FromStringAndSize(<char*>heap, raw_len)
            finally:
                free(heap)
        ppos[0] = end
        return result
    _kc_corrupt(f"unknown component tag 0x{p[pos]:02x}", pos)


cdef object _kc_text(const char* s, Py_ssize_t n, Py_ssize_t pos):
    try:
        return PyUnicode_DecodeUTF8(<char*>s, n, NULL)
    except UnicodeDecodeError:
        raise CorruptDatabaseError(f"corrupt key: invalid UTF-8 text at byte {pos}") from None


cdef tuple _decode_key_ptr(const unsigned char* p, Py_ssize_t n, const char* aff,
                           Py_ssize_t naff, const unsigned char* desc, Py_ssize_t ndesc):
    """C entry point: decode up to ``naff`` components (fewer if the key ends)."""
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t count = 0
    cdef int is_desc
    cdef object v
    cdef tuple items = PyTuple_New(naff)     # NULL slots are safe if we raise
    while count < naff and pos < n:
        v = _kc_read_component(p, n, &pos, aff[count], &is_desc)
        if desc != NULL and count < ndesc and (desc[count] != 0) != (is_desc != 0):
            raise CorruptDatabaseError(
                f"corrupt key: component {count} is {'DESC' if is_desc else 'ASC'} "
                f"but its column is not")
        Py_INCREF(v)                          # PyTuple_SET_ITEM steals a reference
        PyTuple_SET_ITEM(items, count, v)
        count += 1
    if count < naff:
        return items[:count]                  # the key ended early (a prefix key)
    return items


cpdef tuple decode_key(bytes key, bytes affinities, bytes desc=None):
    """Decode a key's components; one affinity letter (I R N T B) per column.

    Stops after ``len(affinities)`` components or at the end of the key (so a
    trailing rowid suffix is left alone).  ``desc``, when given, is checked
    against the DESC flags found in the key.
    """
    cdef Py_ssize_t ndesc
    cdef const unsigned char* d = _kc_desc_ptr(desc, &ndesc)
    return _decode_key_ptr(<const unsigned char*>PyBytes_AS_STRING(key),
                           PyBytes_GET_SIZE(key), PyBytes_AS_STRING(affinities),
                           PyBytes_GET_SIZE(affinities), d, ndesc)


cpdef int key_component_count(bytes key) except -1:
    """Number of components in a key made by ``encode_key`` (no rowid suffix)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(key)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(key)
    cdef Py_ssize_t pos = 0
    cdef int count = 0
    cdef int is_desc
    while pos < n:
        _kc_read_component(p, n, &pos, b'B', &is_desc)
        count += 1
    return count
