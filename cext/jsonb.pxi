# jsonb.pxi - included by _core.pyx after json.pxi; do not compile on its own.
"""Binary JSON documents for columns declared ``JSON``: SQLite's JSONB format.

The bytes are SQLite's documented JSONB (sqlite.org/jsonb.html), so they mean
something outside terndb too.  Every element is a header then a payload::

    header byte: low nibble = element type, high nibble = payload size
                 (0..11 the size itself; 12/13/14/15: the size follows as a
                 1/2/4/8-byte big-endian integer)

    types written here: 0 null, 1 true, 2 false, 3 INT and 5 FLOAT (payload:
    the number's text as written), 7 TEXT (string without escapes) and
    8 TEXTJ (string with JSON escapes, payload as written), 11 ARRAY and
    12 OBJECT (payload: the elements, or key/value pairs, back to back).

A container's payload is a run of complete elements, so a path lookup steps
over a sibling by its header's size without decoding it: reading
``$.user.id`` touches the headers on the way and the one leaf, never the rest
of the document.

Where it is used: a column declared JSON stores a text value that is valid
JSON as a row cell of code 0x0E (see rowcodec.pxi) holding these bytes,
validated once at write time by json.pxi's parser (``_jb_encode_text``).
Reading such a cell renders the canonical (minified) text, as SQLite's json()
does, and remembers the pair (text object, bytes) in a small identity ring,
so the compiled path extractor (JsonPathGroup.node in json.pxi) given that
very text object looks the path up in the bytes instead of parsing the text.
Anything else just sees the text.

Where a query reads a JSON column only through path extractors (``->``,
``->>``, json_extract, json_type with a constant path), the planner asks the
table's readers for the cell as a ``JsonbDoc`` instead (the bytes, no text
at all): the extractor (JsonPathExtract in exprs.pxi) walks the bytes to the
leaf and builds only the leaf's SQL value (``_jb_extract``).
"""
from libc.string cimport memcmp, memcpy, memmove
from libc.stdlib cimport free, realloc
from cpython.list cimport PyList_GET_ITEM
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8, PyUnicode_New
from cpython.long cimport PyLong_FromLongLong
from cpython.float cimport PyFloat_FromDouble
from cpython.object cimport PyObject

cdef extern from "Python.h":
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) except? -1.0

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object s)

from terndb.engine.errors import CorruptDatabaseError as _JbCorrupt

cdef enum:
    _JB_NULL = 0
    _JB_TRUE = 1
    _JB_FALSE = 2
    _JB_INT = 3
    _JB_FLOAT = 5
    _JB_TEXT = 7
    _JB_TEXTJ = 8
    _JB_ARRAY = 11
    _JB_OBJECT = 12
    _JB_MAX_HEADER = 9


# ---------------------------------------------------------------- buffer

cdef struct _JbBuf:
    unsigned char* p
    Py_ssize_t n
    Py_ssize_t cap


cdef int _jb_reserve(_JbBuf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap = b.cap
    cdef unsigned char* q
    if b.n + extra <= cap:
        return 0
    if cap < 64:
        cap = 64
    while cap < b.n + extra:
        cap *= 2
    q = <unsigned char*>realloc(b.p, cap)
    if q == NULL:
        raise MemoryError("out of memory while encoding JSON")
    b.p = q
    b.cap = cap
    return 0


cdef inline int _jb_header_len(Py_ssize_t size) noexcept:
    if size <= 11:
        return 1
    if size <= 0xFF:
        return 2
    if size <= 0xFFFF:
        return 3
    if size <= 0xFFFFFFFF:
        return 5
    return 9


cdef inline void _jb_put_header(unsigned char* out, int etype, Py_ssize_t size) noexcept:
    cdef int hl = _jb_header_len(size), k
    if hl == 1:
        out[0] = <unsigned char>((size << 4) | etype)
        return
    out[0] = <unsigned char>(((11 + (hl == 2) + 2 * (hl == 3) + 3 * (hl == 5) + 4 * (hl == 9)) << 4) | etype)
    for k in range(hl - 1):
        out[hl - 1 - k] = <unsigned char>((<unsigned long long>size >> (8 * k)) & 0xFF)


cdef int _jb_put_leaf(_JbBuf* b, int etype, const char* payload, Py_ssize_t size) except -1:
    cdef int hl = _jb_header_len(size)
    _jb_reserve(b, hl + size)
    _jb_put_header(b.p + b.n, etype, size)
    if size:
        memcpy(b.p + b.n + hl, payload, size)
    b.n += hl + size
    return 0


# ---------------------------------------------------------------- encoding (text -> JSONB)

cdef class _JbEncoder:
    """Text -> JSONB in one pass of json.pxi's parser (its validation, its
    SQLite grammar: what json_valid() accepts is what a JSON column accepts)."""
    cdef _JParser ps
    cdef _JbBuf b
    cdef bint ascii
    cdef const char* utf8          # the text's UTF-8 when ASCII (index == byte offset)

    def __dealloc__(self):
        free(self.b.p)

    cdef int span(self, int etype, Py_ssize_t start, Py_ssize_t end) except -1:
        """A leaf whose payload is the source characters [start, end)."""
        cdef Py_ssize_t size
        cdef const char* s
        if self.ascii:
            return _jb_put_leaf(&self.b, etype, self.utf8 + start, end - start)
        piece = PyUnicode_Substring(self.ps.text, start, end)
        s = PyUnicode_AsUTF8AndSize(piece, &size)
        return _jb_put_leaf(&self.b, etype, s, size)

    cdef int value(self) except -1:
        cdef _JParser ps = self.ps
        cdef Py_UCS4 c = ps.at(ps.i)
        cdef Py_ssize_t start, j
        cdef bint esc = False
        if c == 34:                                   # "
            start = ps.i + 1
            j = ps.str_end(start, &esc)
            ps.i = j + 1
            return self.span(_JB_TEXTJ if esc else _JB_TEXT, start, j)
        if c == 123 or c == 91:                       # { [
            return self.container(c == 123)
        if c == 45 or _j_isdigit(c):
            start = ps.i
            ps.number(False)
            for j in range(start, ps.i):
                c = ps.at(j)
                if c == 46 or c == 101 or c == 69:
                    return self.span(_JB_FLOAT, start, ps.i)
            return self.span(_JB_INT, start, ps.i)
        if c == 110 and ps.word("null"):
            return _jb_put_leaf(&self.b, _JB_NULL, NULL, 0)
        if c == 116 and ps.word("true"):
            return _jb_put_leaf(&self.b, _JB_TRUE, NULL, 0)
        if c == 102 and ps.word("false"):
            return _jb_put_leaf(&self.b, _JB_FALSE, NULL, 0)
        raise _JMalformed()

    cdef int container(self, bint is_obj) except -1:
        """An array or object, mirroring _JParser.arr()/obj(); the payload is
        written after a maximal header gap, which is then closed."""
        cdef _JParser ps = self.ps
        cdef Py_UCS4 c, close = 125 if is_obj else 93
        cdef Py_ssize_t at = self.b.n, size
        cdef int hl
        _jb_reserve(&self.b, _JB_MAX_HEADER)
        self.b.n += _JB_MAX_HEADER
        ps.i += 1
        ps.depth += 1
        if ps.depth > _J_MAX_DEPTH:
            raise _JMalformed()
        ps.ws()
        if ps.at(ps.i) == close:
            ps.i += 1
        else:
            while True:
                ps.ws()
                if is_obj:
                    if ps.at(ps.i) != 34:
                        raise _JMalformed()
                    self.value()
                    ps.ws()
                    if ps.at(ps.i) != 58:             # :
                        raise _JMalformed()
                    ps.i += 1
                    ps.ws()
                self.value()
                ps.ws()
                c = ps.at(ps.i)
                ps.i += 1
                if c == 44:                           # ,
                    continue
                if c == close:
                    break
                raise _JMalformed()
        ps.depth -= 1
        size = self.b.n - at - _JB_MAX_HEADER
        hl = _jb_header_len(size)
        _jb_put_header(self.b.p + at, _JB_OBJECT if is_obj else _JB_ARRAY, size)
        if hl != _JB_MAX_HEADER:
            memmove(self.b.p + at + hl, self.b.p + at + _JB_MAX_HEADER, size)
            self.b.n -= _JB_MAX_HEADER - hl
        return 0


cdef bytes _jb_encode_text(str text):
    """The JSONB of ``text``; raises _JMalformed when it is not well-formed JSON."""
    cdef _JbEncoder enc = _JbEncoder.__new__(_JbEncoder)
    cdef Py_ssize_t size
    enc.ps = _j_parser(text)
    enc.ascii = PyUnicode_IS_ASCII(text)
    if enc.ascii:
        enc.utf8 = PyUnicode_AsUTF8AndSize(text, &size)
    enc.ps.ws()
    enc.value()
    enc.ps.ws()
    if enc.ps.at(enc.ps.i) != 0:
        raise _JMalformed()
    return PyBytes_FromStringAndSize(<char*>enc.b.p, enc.b.n)


def jsonb_encode(text):
    """The JSONB bytes of JSON ``text`` (DataError if it is not well-formed)."""
    try:
        return _jb_encode_text(text)
    except _JMalformed:
        raise _JDataError("malformed JSON") from None


# ---------------------------------------------------------------- reading

cdef inline Py_ssize_t _jb_element(const unsigned char* p, Py_ssize_t n, Py_ssize_t pos,
                                   int* etype, Py_ssize_t* payload) except -1:
    """Parse the header at ``pos``: element type, payload offset; returns the
    payload size, checked to lie inside ``n`` bytes."""
    cdef int code, extra, k
    cdef unsigned long long size
    if pos >= n:
        raise _JbCorrupt("corrupt JSON document (truncated element)")
    code = p[pos] >> 4
    etype[0] = p[pos] & 0x0F
    pos += 1
    if code <= 11:
        size = code
    else:
        extra = 1 << (code - 12)
        if pos + extra > n:
            raise _JbCorrupt("corrupt JSON document (truncated header)")
        size = 0
        for k in range(extra):
            size = (size << 8) | p[pos + k]
        pos += extra
    if size > <unsigned long long>(n - pos):
        raise _JbCorrupt("corrupt JSON document (element runs past its container)")
    payload[0] = pos
    return <Py_ssize_t>size


cdef int _jb_render(const unsigned char* p, Py_ssize_t n, Py_ssize_t pos, _JbBuf* out,
                    int depth) except -1:
    """Append the minified JSON text of the element at ``pos`` to ``out``."""
    cdef int etype
    cdef Py_ssize_t at, size = _jb_element(p, n, pos, &etype, &at), end = at + size, q, start
    cdef bint first = True, is_key = True
    if depth > _J_MAX_DEPTH:
        raise _JbCorrupt("corrupt JSON document (nested too deeply)")
    if etype == _JB_NULL:
        _jb_reserve(out, 4); memcpy(out.p + out.n, b"null", 4); out.n += 4
    elif etype == _JB_TRUE:
        _jb_reserve(out, 4); memcpy(out.p + out.n, b"true", 4); out.n += 4
    elif etype == _JB_FALSE:
        _jb_reserve(out, 5); memcpy(out.p + out.n, b"false", 5); out.n += 5
    elif etype == _JB_INT or etype == _JB_FLOAT:
        _jb_reserve(out, size); memcpy(out.p + out.n, p + at, size); out.n += size
    elif etype == _JB_TEXT or etype == _JB_TEXTJ:
        _jb_reserve(out, size + 2)
        out.p[out.n] = 34
        memcpy(out.p + out.n + 1, p + at, size)
        out.p[out.n + 1 + size] = 34
        out.n += size + 2
    elif etype == _JB_ARRAY or etype == _JB_OBJECT:
        _jb_reserve(out, 1)
        out.p[out.n] = 91 if etype == _JB_ARRAY else 123
        out.n += 1
        q = at
        while q < end:
            _jb_reserve(out, 1)
            if etype == _JB_OBJECT and not is_key:
                out.p[out.n] = 58                     # :
                out.n += 1
            elif not first:
                out.p[out.n] = 44                     # ,
                out.n += 1
            first = False
            start = q
            q = _jb_skip(p, end, q)
            _jb_render(p, end, start, out, depth + 1)
            if etype == _JB_OBJECT:
                is_key = not is_key
        _jb_reserve(out, 1)
        out.p[out.n] = 93 if etype == _JB_ARRAY else 125
        out.n += 1
    else:
        raise _JbCorrupt(f"corrupt JSON document (element type {etype} not written by terndb)")
    return 0


cdef inline Py_ssize_t _jb_skip(const unsigned char* p, Py_ssize_t n, Py_ssize_t pos) except -1:
    """The offset just past the element at ``pos``: its header says its size."""
    cdef int etype
    cdef Py_ssize_t at, size = _jb_element(p, n, pos, &etype, &at)
    return at + size


cdef inline bint _jb_is_ascii(const unsigned char* q, Py_ssize_t size) noexcept:
    cdef unsigned char acc = 0
    cdef Py_ssize_t k
    for k in range(size):
        acc |= q[k]
    return acc < 0x80


cdef _JbBuf _jb_scratch              # _jb_text_of()'s buffer, kept between calls (one per process:
                                     # rendering runs under the GIL and calls no Python code)


cdef object _jb_utf8_text(const unsigned char* q, Py_ssize_t size):
    """UTF-8 bytes as a str (ASCII, the common case, copied straight into a compact str)."""
    if _jb_is_ascii(q, size):
        v = PyUnicode_New(size, 127)
        memcpy(PyUnicode_DATA(v), q, size)
        return v
    try:
        return PyUnicode_DecodeUTF8(<const char*>q, size, NULL)
    except UnicodeDecodeError:
        raise _JbCorrupt("corrupt JSON document (invalid UTF-8)") from None


cdef object _jb_text_of(const unsigned char* p, Py_ssize_t n, Py_ssize_t pos):
    """The minified JSON text of the element at ``pos`` (as SQLite's json())."""
    _jb_scratch.n = 0
    _jb_reserve(&_jb_scratch, 2 * (n - pos) + 16)   # the text is rarely longer: one allocation
    _jb_render(p, n, pos, &_jb_scratch, 0)
    return _jb_utf8_text(_jb_scratch.p, _jb_scratch.n)


def jsonb_text(bytes blob):
    """The minified JSON text of a JSONB document (as SQLite's json(blob))."""
    return _jb_text_of(<const unsigned char*>PyBytes_AS_STRING(blob), PyBytes_GET_SIZE(blob), 0)


cdef Py_ssize_t _jb_locate(const unsigned char* p, Py_ssize_t n, tuple steps) except -2:
    """The offset of the element ``steps`` (str keys, int indexes) lead to, -1 if absent.
    Siblings are stepped over by their sizes; keys compare as raw text, as SQLite does."""
    cdef Py_ssize_t pos = 0, at, size, end, k, klen, kat, ksize, idx
    cdef int etype, ktype
    cdef const char* key
    for step in steps:
        size = _jb_element(p, n, pos, &etype, &at)
        end = at + size
        if type(step) is int:
            if etype != _JB_ARRAY:
                return -1
            idx = <Py_ssize_t>step
            pos = at
            while idx > 0 and pos < end:
                pos = _jb_skip(p, end, pos)
                idx -= 1
            if pos >= end:
                return -1
        else:
            if etype != _JB_OBJECT:
                return -1
            key = PyUnicode_AsUTF8AndSize(step, &klen)
            pos = at
            while True:
                if pos >= end:
                    return -1
                ksize = _jb_element(p, end, pos, &ktype, &kat)
                pos = kat + ksize                     # the value
                if ksize == klen and memcmp(p + kat, key, klen) == 0:
                    break
                pos = _jb_skip(p, end, pos)
        n = end
    return pos


cdef object _jb_node(const unsigned char* p, Py_ssize_t n, Py_ssize_t pos):
    """The element at ``pos`` as the node json.pxi's fast path would build
    from its text: containers as _JRawC text, strings as str/_JEsc, numbers
    as int/_JRawInt/_JReal, true/false/null as True/False/None."""
    cdef int etype
    cdef Py_ssize_t at, size = _jb_element(p, n, pos, &etype, &at)
    if etype == _JB_NULL:
        return None
    if etype == _JB_TRUE:
        return True
    if etype == _JB_FALSE:
        return False
    if etype == _JB_ARRAY or etype == _JB_OBJECT:
        return _JRawC(_jb_text_of(p, n, pos))
    if etype == _JB_INT:
        iv = _jb_small_int(p + at, size)
        if iv is not None:
            return iv
    text = _jb_utf8_text(p + at, size)
    if etype == _JB_TEXT:
        return text
    if etype == _JB_TEXTJ:
        return _JEsc(_j_unescape(text), text)
    cdef _JParser ps
    if etype == _JB_INT or etype == _JB_FLOAT:
        ps = _j_parser(text)
        return ps.number()
    raise _JbCorrupt(f"corrupt JSON document (element type {etype} not written by terndb)")


cdef object _jb_tree(const unsigned char* p, Py_ssize_t n, Py_ssize_t pos, int depth):
    """The element at ``pos`` as the tree json.pxi's parser builds from its
    text (objects as dicts, duplicate labels kept as json.pxi's parser keeps them, arrays as lists,
    leaves as _jb_node gives them): tree-walking functions read a JsonbDoc
    without rendering and re-parsing it."""
    cdef int etype
    cdef Py_ssize_t at, size = _jb_element(p, n, pos, &etype, &at), end = at + size, q
    cdef list items
    cdef dict members
    if depth > _J_MAX_DEPTH:
        raise _JbCorrupt("corrupt JSON document (nested too deeply)")
    if etype == _JB_ARRAY:
        items = []
        q = at
        while q < end:
            items.append(_jb_tree(p, end, q, depth + 1))
            q = _jb_skip(p, end, q)
        return items
    if etype == _JB_OBJECT:
        members = {}
        q = at
        while q < end:
            key = _jb_node(p, end, q)
            q = _jb_skip(p, end, q)
            if q >= end:
                raise _JbCorrupt("corrupt JSON document (object key without a value)")
            _j_add_member(members, key, _jb_tree(p, end, q, depth + 1))
            q = _jb_skip(p, end, q)
        return members
    return _jb_node(p, n, pos)


cdef object _jb_small_int(const unsigned char* q, Py_ssize_t size):
    """An INT payload of at most 18 digits as an int (None otherwise, and for
    '-0', which stays text as json.pxi's parser keeps it)."""
    cdef long long acc = 0
    cdef Py_ssize_t k = 1 if size and q[0] == 45 else 0
    cdef bint neg = k == 1
    if size - k < 1 or size - k > 18:
        return None
    while k < size:
        acc = acc * 10 + (q[k] - 48)
        k += 1
    if neg:
        if acc == 0:
            return None
        return PyLong_FromLongLong(-acc)
    return PyLong_FromLongLong(acc)


cdef object _jb_find(bytes blob, tuple steps):
    """The node at ``steps`` in JSONB ``blob``, _J_MISSING if absent."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(blob)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(blob)
    cdef Py_ssize_t pos = _jb_locate(p, n, steps)
    if pos < 0:
        return _J_MISSING
    return _jb_node(p, n, pos)


def jsonb_extract(bytes blob, str path):
    """The node a simple path ('$.a[2]."b c"') leads to in a JSONB document,
    rendered as json_extract() would return it (None when absent)."""
    steps = _j_simple_steps(path)
    if steps is None:
        raise _JDataError(f"not a simple JSON path: {path}")
    node = _jb_find(blob, <tuple>steps)
    return None if node is _J_MISSING else _j_sql_value(node)


# ---------------------------------------------------------------- identity ring

cdef enum:
    _JB_RING = 8

cdef list _jb_ring_text = [None] * _JB_RING
cdef list _jb_ring_blob = [None] * _JB_RING
cdef Py_ssize_t _jb_ring_at = 0


cdef inline void _jb_remember(object text, bytes blob):
    """Keep (text, blob): the text object is the document's rendering.  Holding
    the text makes identity safe (its address cannot be reused meanwhile)."""
    global _jb_ring_at
    _jb_ring_text[_jb_ring_at] = text
    _jb_ring_blob[_jb_ring_at] = blob
    _jb_ring_at = (_jb_ring_at + 1) % _JB_RING


cdef inline object _jb_blob_of(object text):
    """The JSONB whose rendering is this very text object, or None."""
    cdef Py_ssize_t k
    for k in range(_JB_RING):
        if <object>PyList_GET_ITEM(_jb_ring_text, k) is text:
            return _jb_ring_blob[k]
    return None


cdef object _jb_cell_text(const unsigned char* q, Py_ssize_t size):
    """A row cell's JSONB document as text (what readers see), remembered with its bytes."""
    blob = PyBytes_FromStringAndSize(<char*>q, size)
    text = _jb_text_of(q, size, 0)
    _jb_remember(text, blob)
    return text


@cython.final
cdef class JsonbValue:
    """A JSON column's value on its way to the row record: the JSONB bytes
    (stored, row cell 0x0E) and the canonical text (what the writer's
    constraints, indexes and RETURNING see, as later reads will)."""
    cdef readonly bytes blob
    cdef readonly object text


cdef object _jb_column_value(object v, str table, str column):
    """A value bound for column ``table.column`` declared JSON: text becomes a
    JsonbValue (DataError naming the column if it is not JSON); NULL, numbers
    (JSON numbers already) and BLOBs are stored as they are."""
    cdef JsonbValue jv
    if type(v) is not str and not isinstance(v, str):
        return v
    try:
        blob = _jb_encode_text(<str>v)
    except _JMalformed:
        shown = v if len(v) <= 40 else v[:37] + "..."
        raise _JDataError(f"malformed JSON for column {table}.{column}: {shown!r}") from None
    jv = JsonbValue.__new__(JsonbValue)
    jv.blob = blob
    jv.text = _jb_text_of(<const unsigned char*>PyBytes_AS_STRING(blob), PyBytes_GET_SIZE(blob), 0)
    _jb_remember(jv.text, blob)
    return jv


# ---------------------------------------------------------------- documents read for path extraction

@cython.final
cdef class JsonbDoc:
    """A JSON column's document as a reader hands it to path extractors: the
    JSONB bytes, never rendered as text.  Readers produce these only for the
    columns the planner found read through path extractors and tree-walking
    functions alone (engine/jsonb_reads.py); the JSON functions that walk a tree (json_each,
    json_tree, json_array_length, extractors whose path is not simple) build
    it from the bytes (_j_parse_ro), any other reads the text (_j_doc_text)."""
    cdef readonly bytes blob

    def __repr__(self):
        return f"JsonbDoc({self.text()!r})"

    cpdef str text(self):
        """The document's minified JSON text (what a plain read of the column gives)."""
        return _jb_text_of(<const unsigned char*>PyBytes_AS_STRING(self.blob), PyBytes_GET_SIZE(self.blob), 0)

    cdef object tree(self):
        """The document as json.pxi's parser would build it from its text."""
        return _jb_tree(<const unsigned char*>PyBytes_AS_STRING(self.blob), PyBytes_GET_SIZE(self.blob), 0, 0)


cdef object _jb_cell_doc(const unsigned char* q, Py_ssize_t size):
    """A row cell's JSONB document as a JsonbDoc (a copy of the bytes: rows outlive cursor positions)."""
    cdef JsonbDoc d = JsonbDoc.__new__(JsonbDoc)
    d.blob = PyBytes_FromStringAndSize(<char*>q, size)
    return d


cdef enum:
    _JB_FLOAT_BUF = 64


cdef object _jb_float(const unsigned char* q, Py_ssize_t size):
    """A FLOAT payload as a Python float, parsed as float(text) would (strtod,
    correctly rounded: the value _j_sql_value gives a _JReal); None when too long."""
    cdef char buf[_JB_FLOAT_BUF]
    cdef char* end
    cdef double d
    if size >= _JB_FLOAT_BUF:
        return None
    memcpy(buf, q, size)
    buf[size] = 0                      # the payload is followed by the next element's header
    d = PyOS_string_to_double(buf, &end, NULL)     # NULL: overflow gives inf, as float() does
    if end != buf + size:
        return None
    return PyFloat_FromDouble(d)


cdef object _jb_extract(bytes blob, tuple steps, int mode):
    """What JsonPathExtract gives for ``steps`` in JSONB ``blob``: mode 0
    json_extract, 1 ->, 2 ->>, 3 json_type.  Common leaves become their SQL
    value straight from the bytes; the rest goes through the node json.pxi's
    fast path would build (_jb_node), so results are the text path's."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(blob)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(blob)
    cdef Py_ssize_t pos = _jb_locate(p, n, steps), at, size
    cdef int etype
    if pos < 0:
        return None
    size = _jb_element(p, n, pos, &etype, &at)
    if mode == 3:
        if etype == _JB_ARRAY:
            return 'array'
        if etype == _JB_OBJECT:
            return 'object'
    elif mode != 1:
        if etype == _JB_NULL:
            return None
        if etype == _JB_TRUE:
            return 1
        if etype == _JB_FALSE:
            return 0
        if etype == _JB_TEXT:
            return _jb_utf8_text(p + at, size)
        if etype == _JB_INT:
            v = _jb_small_int(p + at, size)
            if v is not None:
                return v
        elif etype == _JB_FLOAT:
            v = _jb_float(p + at, size)
            if v is not None:
                return v
    return _j_path_result(_jb_node(p, n, pos), mode)
