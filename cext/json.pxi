# json.pxi - included by _core.pyx (after functions.pxi)
"""SQLite's JSON1 functions (as in SQLite 3.40), over Python values.

The parser is written here rather than borrowed from Python's ``json`` module
because SQLite's results depend on details that module throws away: a
document keeps the exact text of its numbers (``1.50`` and ``1e2`` come back
from ``json()`` unchanged) and of its escaped strings (``"\\u0041"`` stays
so), ``\\u0000`` ends a string when it is extracted, ``-0`` is an integer, and
SQLite's own validity rules (no leading zeros, no ``1.``, nesting limited to
2000 levels, text ending at a NUL) decide what is "malformed JSON".

A parsed document is a tree of plain Python objects:

  null/true/false -> None/True/False      string -> str (no escapes) or _JEsc
  integer -> int (int64) or _JRawInt      real   -> _JReal (its source text)
  array -> list                           object -> dict (see below for duplicates)

An object keeps every member in document order, as SQLite does: the first
member of a label is stored under the label itself (so dict lookups find it,
as SQLite's path lookups find the first match), each later member with the
same label under a fresh _JDupKey wrapping the label (unequal to anything
but itself).  _j_label() unwraps a key for rendering and json_each/json_tree.

``JsonText`` (a ``str`` subclass) marks values that SQLite would give the
JSON subtype: functions that build JSON embed such arguments as JSON rather
than quoting them as strings.  Everywhere else it is an ordinary ``str``.

Paths follow jsonLookupStep(): they are read step by step as the document is
walked, so a syntax error past a step that finds nothing is not reported
(as in SQLite).

Speed: json_extract/->/->>/json_type with a plain path ('$.a."b c"[2]') and
json() do not build the tree: one validating scan over the text records where
the wanted value lies and only that value is built (an array or object is
returned as its minified source, which is SQLite's rendering).  Other calls
parse into the tree; the last document parsed for read-only use is kept by
identity, so several functions over one row's column parse it once.

Known divergence from SQLite: the tree walk compares path keys with decoded
object keys (SQLite compares raw text, as the fast path does): only keys
written with escapes can tell.

Public names: JsonText; the scalar functions registered in SCALAR_FUNCTIONS
(json, json_valid, json_type, json_extract, ->, ->>, json_array, json_object,
json_array_length, json_set, json_insert, json_replace, json_remove,
json_patch, json_quote); JsonGroupArray/JsonGroupObject registered in
AGGREGATE_FUNCTIONS; json_parse(text) / json_render(tree);
json_each_rows(text, path=None) / json_tree_rows(text, path=None), the rows
of the table-valued json_each/json_tree.
"""

cdef extern from "Python.h":
    object PyUnicode_Substring(object s, Py_ssize_t start, Py_ssize_t end)
    void PyUnicode_WRITE(int kind, void* data, Py_ssize_t index, Py_UCS4 value)
    object PyUnicode_FromKindAndData(int kind, const void* buffer, Py_ssize_t size)

from terndb.engine.errors import DataError as _JDataError


class JsonText(str):
    """Text carrying SQLite's JSON subtype: embedded as JSON, not quoted."""
    __slots__ = ()


class _JReal(str):
    """A JSON real number, kept as its source text (rendered unchanged)."""
    __slots__ = ()


class _JRawInt(str):
    """A JSON integer whose text str(int) would not reproduce: ``-0`` and
    integers beyond int64 (SQLite reads those as reals)."""
    __slots__ = ()


class _JRaw(str):
    """Already-rendered JSON text spliced into a tree (a JSON-subtype argument
    of json_set() and friends).  It is a leaf: paths cannot descend into it,
    as SQLite cannot descend into a replaced node."""
    __slots__ = ()


class _JRawC(str):
    """An array or object found by the fast path, as its minified JSON text
    (never walked into: it is only returned or rendered)."""
    __slots__ = ()


class _JEsc(str):
    """A JSON string that had escapes: the value is the decoded text, ``raw``
    the source text between the quotes (what SQLite renders)."""

    def __new__(cls, value, raw):
        self = str.__new__(cls, value)
        self.raw = raw
        return self


class _JDupKey:
    """The dict key of an object member whose label an earlier member of the
    same object already has: distinct from every other key (identity
    equality), so the member keeps its place without shadowing the first."""
    __slots__ = ('label',)

    def __init__(self, label):
        self.label = label


cdef inline object _j_label(object k):
    """An object's dict key as the member's label (str or _JEsc)."""
    return (<object>k).label if type(k) is _JDupKey else k


cdef inline int _j_add_member(dict d, object k, object v) except -1:
    """Add member ``k``: ``v`` in document order, keeping earlier members of the same label."""
    if k in d:
        d[_JDupKey(k)] = v
    else:
        d[k] = v
    return 0


cdef int _J_MAX_DEPTH = 2000


class _JMalformed(Exception):
    """Internal: the text is not well-formed JSON."""


cdef inline bint _j_isdigit(Py_UCS4 c):
    return c >= 48 and c <= 57


cdef inline bint _j_isalnum(Py_UCS4 c):
    return (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122)


cdef inline int _j_hex(Py_UCS4 c):
    if c >= 48 and c <= 57:
        return <int>c - 48
    if c >= 97 and c <= 102:
        return <int>c - 87
    if c >= 65 and c <= 70:
        return <int>c - 55
    return -1


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

@cython.final
cdef class _JPathTrie:
    """Simple paths merged on their common steps: ``children`` maps a key
    (str) or an index (int) to the subtrie; ``target`` numbers the path that
    ends here (-1: none)."""
    cdef dict children
    cdef Py_ssize_t target

    def __cinit__(self):
        self.children = {}
        self.target = -1


@cython.final
cdef class _JParser:
    """One pass of SQLite's jsonParseValue() over a str, building the tree."""
    cdef object text
    cdef int kind
    cdef void* data
    cdef Py_ssize_t n
    cdef Py_ssize_t i
    cdef int depth
    cdef Py_ssize_t target
    cdef Py_ssize_t target_end
    cdef list t_start, t_end          # skip_many(): each target's value span (-1: not found)


    cdef inline Py_UCS4 at(self, Py_ssize_t j):
        # 0 past the end: the text is a C string to SQLite, a NUL ends it too.
        if j < self.n:
            return PyUnicode_READ(self.kind, self.data, j)
        return 0

    cdef inline void ws(self):
        cdef Py_UCS4 c
        while self.i < self.n:
            c = PyUnicode_READ(self.kind, self.data, self.i)
            if c == 32 or c == 9 or c == 10 or c == 13:
                self.i += 1
            else:
                break

    cdef object document(self):
        self.ws()
        v = self.value()
        self.ws()
        if self.at(self.i) != 0:
            raise _JMalformed()
        return v

    cdef object value(self):
        cdef Py_UCS4 c = self.at(self.i)
        if c == 34:                                   # "
            return self.string()
        if c == 123:                                  # {
            return self.obj()
        if c == 91:                                   # [
            return self.arr()
        if c == 45 or _j_isdigit(c):
            return self.number()
        if c == 110 and self.word("null"):
            return None
        if c == 116 and self.word("true"):
            return True
        if c == 102 and self.word("false"):
            return False
        raise _JMalformed()

    cdef bint word(self, str w):
        cdef Py_ssize_t k, m = len(w)
        for k in range(m):
            if self.at(self.i + k) != <Py_UCS4>w[k]:
                return False
        if _j_isalnum(self.at(self.i + m)):
            return False
        self.i += m
        return True

    cdef object obj(self):
        cdef dict d = {}
        cdef Py_UCS4 c
        self.i += 1
        self.depth += 1
        if self.depth > _J_MAX_DEPTH:
            raise _JMalformed()
        self.ws()
        if self.at(self.i) == 125:                    # }
            self.i += 1
            self.depth -= 1
            return d
        while True:
            self.ws()
            if self.at(self.i) != 34:
                raise _JMalformed()
            k = self.string()
            self.ws()
            if self.at(self.i) != 58:                 # :
                raise _JMalformed()
            self.i += 1
            self.ws()
            _j_add_member(d, k, self.value())
            self.ws()
            c = self.at(self.i)
            self.i += 1
            if c == 44:                               # ,
                continue
            if c == 125:
                break
            raise _JMalformed()
        self.depth -= 1
        return d

    cdef object arr(self):
        cdef list a = []
        cdef Py_UCS4 c
        self.i += 1
        self.depth += 1
        if self.depth > _J_MAX_DEPTH:
            raise _JMalformed()
        self.ws()
        if self.at(self.i) == 93:                     # ]
            self.i += 1
            self.depth -= 1
            return a
        while True:
            self.ws()
            a.append(self.value())
            self.ws()
            c = self.at(self.i)
            self.i += 1
            if c == 44:
                continue
            if c == 93:
                break
            raise _JMalformed()
        self.depth -= 1
        return a

    cdef Py_ssize_t str_end(self, Py_ssize_t j, bint* esc) except -1:
        """Validate a string body from ``j`` (just past the opening quote);
        the index of the closing quote.  ``esc`` tells whether it had escapes."""
        cdef Py_UCS4 c
        cdef const unsigned char* d
        if self.kind == 1:
            # One-byte text (the common case): run over plain characters without
            # the per-character kind switch; anything special takes the loop below.
            d = <const unsigned char*>self.data
            while j < self.n:
                c = d[j]
                if c == 34:
                    return j
                if c == 92 or c < 0x20:
                    break
                j += 1
        while True:
            c = self.at(j)
            if c < 0x20:                              # control characters, end of text
                raise _JMalformed()
            if c == 92:                               # backslash
                c = self.at(j + 1)
                if (c == 34 or c == 92 or c == 47 or c == 98 or c == 102
                        or c == 110 or c == 114 or c == 116):
                    j += 2
                elif (c == 117 and _j_hex(self.at(j + 2)) >= 0 and _j_hex(self.at(j + 3)) >= 0
                        and _j_hex(self.at(j + 4)) >= 0 and _j_hex(self.at(j + 5)) >= 0):
                    j += 6
                else:
                    raise _JMalformed()
                esc[0] = True
                continue
            if c == 34:
                return j
            j += 1

    cdef object string(self):
        cdef Py_ssize_t start = self.i + 1, j
        cdef bint esc = False
        j = self.str_end(start, &esc)
        self.i = j + 1
        raw = PyUnicode_Substring(self.text, start, j)
        if not esc:
            return raw
        return _JEsc(_j_unescape(raw), raw)

    cdef bint key_is(self, Py_ssize_t start, Py_ssize_t end, str key):
        """Whether the raw key text [start, end) is ``key`` (SQLite compares
        raw label text with the path's key)."""
        cdef Py_ssize_t k, m = PyUnicode_GET_LENGTH(key)
        cdef int kk = PyUnicode_KIND(key)
        cdef void* kd = PyUnicode_DATA(key)
        if end - start != m:
            return False
        for k in range(m):
            if PyUnicode_READ(self.kind, self.data, start + k) != PyUnicode_READ(kk, kd, k):
                return False
        return True

    cdef int skip(self, tuple steps, Py_ssize_t k) except -1:
        """Validate the value at the cursor and move past it, without building
        it.  ``k`` >= 0 says the value was reached through ``steps[:k]``; the
        value ``steps`` leads to (the first match, as SQLite finds it) gets
        its start recorded in ``self.target``."""
        cdef Py_UCS4 c = self.at(self.i)
        cdef Py_ssize_t nsteps = len(steps), ks, ke, count
        cdef bint esc = False, matched = False, is_target = False
        if k == nsteps:
            self.target = self.i
            is_target = True
            k = -1
        if c == 34:
            self.i = self.str_end(self.i + 1, &esc) + 1
        elif c == 123:                                # {
            step = steps[k] if k >= 0 else None
            self.i += 1
            self.depth += 1
            if self.depth > _J_MAX_DEPTH:
                raise _JMalformed()
            self.ws()
            if self.at(self.i) == 125:
                self.i += 1
            else:
                while True:
                    self.ws()
                    if self.at(self.i) != 34:
                        raise _JMalformed()
                    ks = self.i + 1
                    ke = self.str_end(ks, &esc)
                    self.i = ke + 1
                    self.ws()
                    if self.at(self.i) != 58:
                        raise _JMalformed()
                    self.i += 1
                    self.ws()
                    if not matched and type(step) is str and self.key_is(ks, ke, <str>step):
                        matched = True
                        self.skip(steps, k + 1)
                    else:
                        self.skip(steps, -1)
                    self.ws()
                    c = self.at(self.i)
                    self.i += 1
                    if c == 44:
                        continue
                    if c == 125:
                        break
                    raise _JMalformed()
            self.depth -= 1
        elif c == 91:                                 # [
            step = steps[k] if k >= 0 else None
            count = -1 if type(step) is not int else step
            self.i += 1
            self.depth += 1
            if self.depth > _J_MAX_DEPTH:
                raise _JMalformed()
            self.ws()
            if self.at(self.i) == 93:
                self.i += 1
            else:
                while True:
                    self.ws()
                    self.skip(steps, k + 1 if count == 0 else -1)
                    count -= 1
                    self.ws()
                    c = self.at(self.i)
                    self.i += 1
                    if c == 44:
                        continue
                    if c == 93:
                        break
                    raise _JMalformed()
            self.depth -= 1
        elif c == 45 or _j_isdigit(c):
            self.number(False)
        else:
            self.value()                              # a literal
        if is_target:
            self.target_end = self.i
        return 0

    cdef int skip_many(self, _JPathTrie node) except -1:
        """skip() looking for several paths at once: ``node`` is where the
        value at the cursor sits in the trie of wanted paths (None: nothing
        wanted below it).  Each path's value span (the first match, as
        SQLite finds it) is recorded in t_start/t_end."""
        cdef Py_UCS4 c = self.at(self.i)
        cdef Py_ssize_t start = self.i, ks, ke, count
        cdef bint esc = False
        cdef dict children = node.children if node is not None else None
        cdef list matched
        cdef _JPathTrie child
        if c == 34:
            self.i = self.str_end(self.i + 1, &esc) + 1
        elif c == 123:                                # {
            self.i += 1
            self.depth += 1
            if self.depth > _J_MAX_DEPTH:
                raise _JMalformed()
            self.ws()
            matched = None
            if self.at(self.i) == 125:
                self.i += 1
            else:
                while True:
                    self.ws()
                    if self.at(self.i) != 34:
                        raise _JMalformed()
                    ks = self.i + 1
                    ke = self.str_end(ks, &esc)
                    self.i = ke + 1
                    self.ws()
                    if self.at(self.i) != 58:
                        raise _JMalformed()
                    self.i += 1
                    self.ws()
                    child = None
                    if children:
                        for key, sub in children.items():
                            if (type(key) is str and self.key_is(ks, ke, <str>key)
                                    and (matched is None or key not in matched)):
                                child = <_JPathTrie>sub
                                if matched is None:
                                    matched = []
                                matched.append(key)    # later duplicates of a key are not looked in
                                break
                    self.skip_many(child)
                    self.ws()
                    c = self.at(self.i)
                    self.i += 1
                    if c == 44:
                        continue
                    if c == 125:
                        break
                    raise _JMalformed()
            self.depth -= 1
        elif c == 91:                                 # [
            self.i += 1
            self.depth += 1
            if self.depth > _J_MAX_DEPTH:
                raise _JMalformed()
            self.ws()
            count = 0
            if self.at(self.i) == 93:
                self.i += 1
            else:
                while True:
                    self.ws()
                    self.skip_many(children.get(count) if children else None)
                    count += 1
                    self.ws()
                    c = self.at(self.i)
                    self.i += 1
                    if c == 44:
                        continue
                    if c == 93:
                        break
                    raise _JMalformed()
            self.depth -= 1
        elif c == 45 or _j_isdigit(c):
            self.number(False)
        else:
            self.value()                              # a literal
        if node is not None and node.target >= 0 and <Py_ssize_t>self.t_start[node.target] < 0:
            self.t_start[node.target] = start
            self.t_end[node.target] = self.i
        return 0

    cdef object number(self, bint build=True):
        # SQLite's number grammar, test for test (json.c jsonParseValue).
        cdef Py_ssize_t start = self.i, j
        cdef Py_UCS4 c = self.at(start), p
        cdef bint seen_dp = False, seen_e = False
        cdef long long acc = 0
        cdef int ndig = 0
        if c <= 48:                                   # '-' or '0'
            j = start + 1 if c == 45 else start
            if self.at(j) == 48 and _j_isdigit(self.at(j + 1)):
                raise _JMalformed()
        j = start + 1
        if c != 45:
            acc = <int>c - 48
            ndig = 1
        while True:
            c = self.at(j)
            if _j_isdigit(c):
                if ndig < 18:
                    acc = acc * 10 + (<int>c - 48)
                ndig += 1
                j += 1
                continue
            if c == 46:                               # .
                if self.at(j - 1) == 45 or seen_dp:
                    raise _JMalformed()
                seen_dp = True
                j += 1
                continue
            if c == 101 or c == 69:                   # e E
                if self.at(j - 1) < 48 or seen_e:
                    raise _JMalformed()
                seen_dp = seen_e = True
                c = self.at(j + 1)
                if c == 43 or c == 45:
                    j += 1
                    c = self.at(j + 1)
                if not _j_isdigit(c):
                    raise _JMalformed()
                j += 1
                continue
            break
        p = self.at(j - 1)
        if p < 48 or p > 57:
            raise _JMalformed()
        self.i = j
        if not build:
            return None
        if seen_dp:
            return _JReal(PyUnicode_Substring(self.text, start, j))
        if ndig <= 18:
            if self.at(start) == 45:
                if acc == 0:
                    return _JRawInt("-0")
                return -acc
            return acc
        text = PyUnicode_Substring(self.text, start, j)
        iv = int(text)
        if -9223372036854775808 <= iv <= 9223372036854775807:
            return iv
        return _JRawInt(text)


cdef _JParser _j_parser(str text):
    cdef _JParser ps = _JParser.__new__(_JParser)
    ps.text = text
    ps.kind = PyUnicode_KIND(text)
    ps.data = PyUnicode_DATA(text)
    ps.n = PyUnicode_GET_LENGTH(text)
    return ps


cdef str _j_unescape(str raw):
    """The value of an escaped JSON string, as SQLite's jsonReturn() decodes
    it: a \\u0000 ends the string, surrogate pairs combine."""
    cdef list out = []
    cdef Py_ssize_t i = 0, n = len(raw), start = 0
    cdef Py_UCS4 c
    cdef int v, lo
    while i < n:
        c = raw[i]
        if c != 92:
            i += 1
            continue
        if i > start:
            out.append(raw[start:i])
        c = raw[i + 1]
        if c == 117:
            v = int(raw[i + 2:i + 6], 16)
            i += 6
            if v == 0:
                start = n
                break
            if (v & 0xfc00) == 0xd800 and i + 6 <= n and raw[i] == '\\' and raw[i + 1] == 'u':
                lo = int(raw[i + 2:i + 6], 16) if all(_j_hex(x) >= 0 for x in raw[i + 2:i + 6]) else 0
                if (lo & 0xfc00) == 0xdc00:
                    v = ((v & 0x3ff) << 10) + (lo & 0x3ff) + 0x10000
                    i += 6
            out.append(chr(v))
        else:
            out.append(_J_SIMPLE_UNESCAPE.get(raw[i + 1], raw[i + 1]))
            i += 2
        start = i
    if start < n:
        out.append(raw[start:])
    return ''.join(out)


_J_SIMPLE_UNESCAPE = {'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}


cdef object _j_parse_text(object text):
    """Parse ``text`` (a str) or raise DataError('malformed JSON')."""
    try:
        return _j_parser(text).document()
    except _JMalformed:
        raise _JDataError("malformed JSON") from None


cdef object _j_last_text = None
cdef object _j_last_tree = None


cdef object _j_doc_text(object v):
    """The text SQLite's jsonParse() reads for a document argument."""
    if type(v) is str:
        return v
    if type(v) is JsonbDoc:
        return (<JsonbDoc>v).text()
    if type(v) is bytes:
        return _value_cstr((<bytes>v).decode('utf-8', 'replace'))
    return _value_text(v)


cdef object _j_parse_ro(object v):
    """The tree of document argument ``v`` for read-only use (None for NULL).

    The last document parsed is kept by identity: ``SELECT doc->>'a',
    doc->>'b'`` parses each row's document once.  Holding a reference makes
    identity safe (the object cannot be freed and its address reused)."""
    global _j_last_text, _j_last_tree
    if v is None:
        return None
    if v is _j_last_text:
        return _j_last_tree
    if type(v) is JsonbDoc:
        tree = (<JsonbDoc>v).tree()
    else:
        tree = _j_parse_text(_j_doc_text(v))
    _j_last_text = v
    _j_last_tree = tree
    return tree


cdef object _j_parse_rw(object v):
    """A fresh tree of document argument ``v``, free to modify."""
    if v is None:
        return None
    if type(v) is JsonbDoc:
        return (<JsonbDoc>v).tree()
    return _j_parse_text(_j_doc_text(v))


def json_parse(text):
    """The tree of a JSON text (see the module docstring); DataError if malformed."""
    return _j_parse_rw(text)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

cdef str _J_HEX = "0123456789abcdef"


cdef str _j_quote(str s):
    """A string as a JSON string literal, as SQLite's jsonAppendString()."""
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(s)
    cdef Py_UCS4 c
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c < 0x20 or c == 34 or c == 92:
            break
    else:
        return '"' + s + '"'
    cdef list out = ['"']
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c == 34 or c == 92:
            out.append('\\')
            out.append(chr(c))
        elif c < 0x20:
            if c == 8:
                out.append('\\b')
            elif c == 9:
                out.append('\\t')
            elif c == 10:
                out.append('\\n')
            elif c == 12:
                out.append('\\f')
            elif c == 13:
                out.append('\\r')
            else:
                out.append('\\u00' + _J_HEX[<int>c >> 4] + _J_HEX[<int>c & 15])
        else:
            out.append(chr(c))
    out.append('"')
    return ''.join(out)


cdef int _j_render(object v, list out) except -1:
    t = type(v)
    if t is str:
        out.append(_j_quote(<str>v))
    elif t is int:
        out.append(str(v))
    elif t is dict:
        if not v:
            out.append('{}')
            return 0
        sep = '{'
        for k, x in (<dict>v).items():
            out.append(sep)
            sep = ','
            k = _j_label(k)
            if type(k) is _JEsc:
                out.append('"' + k.raw + '"')
            else:
                out.append(_j_quote(str(k)))
            out.append(':')
            _j_render(x, out)
        out.append('}')
    elif t is list:
        if not v:
            out.append('[]')
            return 0
        sep = '['
        for x in <list>v:
            out.append(sep)
            sep = ','
            _j_render(x, out)
        out.append(']')
    elif v is None:
        out.append('null')
    elif v is True:
        out.append('true')
    elif v is False:
        out.append('false')
    elif t is _JEsc:
        out.append('"' + v.raw + '"')
    else:                           # _JReal, _JRawInt, _JRaw: their text
        out.append(v)
    return 0


cdef object _j_render_text(object v):
    """The minified JSON text of a tree, with the JSON subtype."""
    cdef list out
    t = type(v)
    if t is int:
        return JsonText(str(v))
    if t is str:
        return JsonText(_j_quote(<str>v))
    if t is _JRawC:
        return JsonText(v)
    out = []
    _j_render(v, out)
    return JsonText(''.join(out))


def json_render(tree):
    """The minified JSON text of a tree as SQLite renders it."""
    return str(_j_render_text(tree))


# ---------------------------------------------------------------------------
# SQL values <-> tree nodes
# ---------------------------------------------------------------------------

cdef object _j_sql_value(object v):
    """jsonReturn(): the SQL value of a node (arrays and objects as JSON text)."""
    t = type(v)
    if t is int or t is str or v is None:
        return v
    if v is True:
        return 1
    if v is False:
        return 0
    if t is _JReal:
        # strtod(), correctly rounded: SQLite's JSON reals do not go through
        # the sqlite3AtoF() that CAST uses (the two differ in the last bit).
        return float(v)
    if t is _JEsc:
        return str(v)
    if t is _JRawInt:
        if v == "-0":
            return 0
        return float(v)
    if t is _JRawC:
        return JsonText(v)
    return _j_render_text(v)


cdef object _j_path_result(object node, int mode):
    """A path extractor's result for the node found (_J_MISSING: NULL); mode 0
    json_extract, 1 ->, 2 ->>, 3 json_type, as the functions return it."""
    if node is _J_MISSING:
        return None
    if mode == 3:
        return _j_type_name(node)
    if mode == 1:
        return _j_render_text(node)
    v = _j_sql_value(node)
    if mode == 2 and type(v) is JsonText:
        return str(v)                     # ->> drops the subtype
    return v


cdef str _j_type_name(object v):
    t = type(v)
    if t is int or t is _JRawInt:
        return 'integer'
    if t is str or t is _JEsc:
        return 'text'
    if t is dict:
        return 'object'
    if t is list:
        return 'array'
    if v is None:
        return 'null'
    if v is True:
        return 'true'
    if v is False:
        return 'false'
    if t is _JRawC:
        return 'object' if v.startswith('{') else 'array'
    return 'real'


cdef str _j_value_json(object v):
    """jsonAppendValue(): a SQL value as JSON text (JSON-subtype text as is)."""
    t = type(v)
    if v is None:
        return 'null'
    if t is JsonText:
        return str(v)
    if t is str:
        return _j_quote(<str>v)
    if t is int:
        return str(v) if _v_fits_i64(v) else v_real_to_text(float(v))
    if t is float:
        return v_real_to_text(v)
    if t is bytes or t is bytearray or t is memoryview:
        raise _JDataError("JSON cannot hold BLOB values")
    if isinstance(v, str):
        return _j_quote(str(v))
    return _j_value_json(_v_canon(v))


cdef object _j_value_node(object v):
    """A SQL value as a tree leaf, for json_set() and friends."""
    return _JRaw(_j_value_json(v))


# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------

cdef object _J_MISSING = object()
# Fills a slot that a json_set/json_insert lookup has just created; the
# caller replaces it with the value at once.
cdef object _J_NEW_SLOT = object()


cdef inline _j_path_error(str rest):
    raise _JDataError(f"JSON path error near '{rest}'")


@cython.final
cdef class _JLoc:
    """Where a path led: ``node`` (or _J_MISSING), the container holding it
    and its key there (``parent`` None for the root)."""
    cdef object node
    cdef object parent
    cdef object key


cdef _JLoc _j_walk(object node, str path, Py_ssize_t pos, bint append, list trail,
                   list chunks=None):
    """jsonLookupStep(): follow ``path`` from ``pos`` down from ``node``.

    With ``append`` (json_set/json_insert), a missing last object key or the
    array slot one past the end is created - with missing intermediate
    objects/arrays for the rest of the path - holding _J_NEW_SLOT for the
    caller to fill.  ``trail`` (when given) collects the (container, key) steps taken."""
    cdef _JLoc loc = _JLoc()
    cdef Py_ssize_t n = len(path), j, end
    cdef Py_UCS4 c
    cdef object parent = None, key = None, idx
    while True:
        if pos >= n:
            loc.node = node
            loc.parent = parent
            loc.key = key
            return loc
        if type(node) is _JRaw:
            break                 # a value set by this call: no way into it
        c = path[pos]
        if c == 46:                                   # .
            if type(node) is not dict:
                break
            pos += 1
            if pos < n and path[pos] == '"':
                end = path.find('"', pos + 1)
                if end < 0:
                    _j_path_error(path[pos:])
                k = path[pos + 1:end]
                end += 1
            else:
                end = pos
                while end < n and path[end] != '.' and path[end] != '[':
                    end += 1
                if end == pos:
                    _j_path_error(path[pos:])
                k = path[pos:end]
            x = (<dict>node).get(k, _J_MISSING)
            if x is _J_MISSING:
                if append:
                    return _j_append(node, k, path, end, trail, chunks)
                break
            if trail is not None:
                trail.append((node, k))
            parent, key, node = node, k, x
            pos = end
        elif c == 91:                                 # [
            j = pos + 1
            idx = 0
            while j < n and _j_isdigit(path[j]):
                idx = idx * 10 + (ord(path[j]) - 48)
                j += 1
            if j < pos + 2 or j >= n or path[j] != ']':
                if pos + 1 < n and path[pos + 1] == '#':
                    if type(node) is not list:
                        break
                    idx = len(<list>node)
                    j = pos + 2
                    if j + 1 < n and path[j] == '-' and _j_isdigit(path[j + 1]):
                        x = 0
                        j += 1
                        while j < n and _j_isdigit(path[j]):
                            x = x * 10 + (ord(path[j]) - 48)
                            j += 1
                        if x > idx:
                            break
                        idx -= x
                    if j >= n or path[j] != ']':
                        _j_path_error(path[pos:])
                else:
                    _j_path_error(path[pos:])
            if type(node) is not list:
                break
            pos = j + 1
            if chunks:
                idx = _j_chunked_index(chunks, <list>node, idx)
            if idx < len(<list>node):
                if trail is not None:
                    trail.append((node, idx))
                parent, key, node = node, idx, (<list>node)[idx]
                continue
            if idx == len(<list>node) and append:
                return _j_append(node, idx, path, pos, trail, chunks)
            break
        else:
            _j_path_error(path[pos:])
    loc.node = _J_MISSING
    return loc


cdef _JLoc _j_append(object container, object key, str path, Py_ssize_t pos, list trail,
                     list chunks=None):
    """jsonLookupAppend(): create what the rest of ``path`` names under
    ``container[key]`` (attached only if the whole rest could be created)."""
    cdef _JLoc loc
    if pos >= len(path):
        if type(container) is list:
            _j_note_append(chunks, <list>container)
            (<list>container).append(_J_NEW_SLOT)
        else:
            container[key] = _J_NEW_SLOT
        loc = _JLoc()
        loc.node = _J_NEW_SLOT
        loc.parent = container
        loc.key = key
        return loc
    if path[pos] == '.':
        fresh = {}
    elif path.startswith('[0]', pos):
        fresh = []
    else:
        loc = _JLoc()
        loc.node = _J_MISSING
        return loc
    loc = _j_walk(fresh, path, pos, True, trail, chunks)
    if loc.node is not _J_MISSING:
        if type(container) is list:
            _j_note_append(chunks, <list>container)
            (<list>container).append(fresh)
        else:
            container[key] = fresh
    return loc


cdef void _j_note_append(list chunks, list arr) except *:
    """Record in ``chunks`` that ``arr`` gets one element appended (see
    _j_chunked_index)."""
    if chunks is None:
        return
    for entry in chunks:
        if (<list>entry)[0] is arr:
            (<list>(<list>entry)[1]).append(1)
            return
    chunks.append([arr, [len(arr), 1]])


cdef object _j_chunked_index(list chunks, list arr, object idx):
    """Where SQLite's array lookup lands in an array that json_set/json_insert
    appended to earlier in the same call.  SQLite keeps each append as a
    separate chunk and always follows the chain of chunks to its last one, so
    an index already reached in an earlier chunk resolves to the last chunk
    (json_set('[1]', '$[1]', 2, '$[0]', 3) is [1,3]).  Returns the list index,
    len(arr) when SQLite would append, or more when nothing is found."""
    cdef list lens = None
    for entry in chunks:
        if (<list>entry)[0] is arr:
            lens = (<list>entry)[1]
            break
    if lens is None:
        return idx
    cdef Py_ssize_t m, last = len(lens) - 1, base = 0
    i = idx
    for m in range(last + 1):
        c = lens[m]
        skip = i if i < c else c
        i -= skip
        if m == last:
            if skip < c:
                return base + skip
            return len(arr) if i == 0 else len(arr) + 1
        base += c
    return idx


cdef inline str _j_path_arg(object p):
    """A path argument as the C string SQLite reads (None for NULL)."""
    if p is None:
        return None
    return _value_cstr(p)


cdef _JLoc _j_lookup(object tree, object path, bint append, list trail=None,
                     list chunks=None):
    """jsonLookup(): resolve a whole path ('$...'); node _J_MISSING if absent."""
    cdef str p = _j_path_arg(path)
    cdef _JLoc loc
    if p is None:
        loc = _JLoc()
        loc.node = _J_MISSING
        return loc
    if not p.startswith('$'):
        _j_path_error(p)
    return _j_walk(tree, p, 1, append, trail, chunks)


# ---------------------------------------------------------------------------
# The fast path: one validating scan, only the target built
# ---------------------------------------------------------------------------

cdef dict _J_SIMPLE_PATHS = {}


cdef object _j_simple_steps(str p):
    """The steps of a path made only of keys and [N] indexes ('$.a."b c"[2]'):
    a tuple of str (key) / int (index), or None for anything else (other
    paths take the general walk, which has SQLite's exact error timing)."""
    r = _J_SIMPLE_PATHS.get(p, _J_MISSING)
    if r is not _J_MISSING:
        return r
    cdef list steps = []
    cdef Py_ssize_t pos = 1, n = len(p), end
    r = None
    if p.startswith('$'):
        while True:
            if pos >= n:
                r = tuple(steps)
                break
            c = p[pos]
            if c == '.':
                pos += 1
                if pos < n and p[pos] == '"':
                    end = p.find('"', pos + 1)
                    if end < 0:
                        break
                    steps.append(p[pos + 1:end])
                    pos = end + 1
                    if pos < n and p[pos] != '.' and p[pos] != '[':
                        break
                else:
                    end = pos
                    while end < n and p[end] != '.' and p[end] != '[':
                        end += 1
                    if end == pos:
                        break
                    steps.append(p[pos:end])
                    pos = end
            elif c == '[':
                end = pos + 1
                while end < n and _j_isdigit(p[end]):
                    end += 1
                if end == pos + 1 or end >= n or p[end] != ']' or end - pos > 10:
                    break
                steps.append(int(p[pos + 1:end]))
                pos = end + 1
            else:
                break
    if len(_J_SIMPLE_PATHS) > 512:
        _J_SIMPLE_PATHS.clear()
    _J_SIMPLE_PATHS[p] = r
    return r


cdef str _j_minify(_JParser ps, Py_ssize_t start, Py_ssize_t end):
    """The validated JSON text [start, end) without whitespace outside strings."""
    cdef Py_ssize_t i = start, j = 0
    cdef Py_UCS4 c
    cdef bint in_str = False, esc = False
    cdef char* buf
    # Most stored documents are compact: then the span is the answer.
    while i < end:
        c = PyUnicode_READ(ps.kind, ps.data, i)
        if esc:
            esc = False
        elif in_str:
            if c == 92:
                esc = True
            elif c == 34:
                in_str = False
        elif c == 34:
            in_str = True
        elif c == 32 or c == 9 or c == 10 or c == 13:
            break
        i += 1
    if i >= end:
        return PyUnicode_Substring(ps.text, start, end)
    buf = <char*>malloc((end - start) * ps.kind)
    if buf == NULL:
        raise MemoryError()
    try:
        j = 0
        for i in range(start, end):
            c = PyUnicode_READ(ps.kind, ps.data, i)
            if esc:
                esc = False
            elif in_str:
                if c == 92:
                    esc = True
                elif c == 34:
                    in_str = False
            elif c == 34:
                in_str = True
            elif c == 32 or c == 9 or c == 10 or c == 13:
                continue
            PyUnicode_WRITE(ps.kind, buf, j, c)
            j += 1
        return PyUnicode_FromKindAndData(ps.kind, buf, j)
    finally:
        free(buf)


cdef object _j_fast_find(str text, tuple steps):
    """The node ``steps`` lead to in ``text`` (_J_MISSING if none), after
    validating all of ``text`` as SQLite does, but building only that node."""
    cdef _JParser ps = _j_parser(text)
    try:
        ps.target = -1
        ps.ws()
        ps.skip(steps, 0)
        ps.ws()
        if ps.at(ps.i) != 0:
            raise _JMalformed()
        if ps.target < 0:
            return _J_MISSING
        c = ps.at(ps.target)
        if c == 123 or c == 91:
            # An array/object is wanted as JSON text: its source, minified,
            # is exactly SQLite's rendering (numbers and strings as written).
            return _JRawC(_j_minify(ps, ps.target, ps.target_end))
        ps.i = ps.target
        ps.depth = 0
        return ps.value()
    except _JMalformed:
        raise _JDataError("malformed JSON") from None


cdef object _j_find(object x, object path):
    """The node at ``path`` in document ``x`` (not NULL), _J_MISSING if absent."""
    cdef str p
    if type(x) is str and x is not _j_last_text:
        p = _j_path_arg(path)
        if p is not None:
            steps = _j_simple_steps(p)
            if steps is not None:
                return _j_fast_find(<str>x, <tuple>steps)
    return _j_lookup(_j_parse_ro(x), path, False).node


cdef list _j_fast_find_many(str text, _JPathTrie trie, Py_ssize_t ntargets):
    """_j_fast_find() for every path of ``trie`` in one validating scan: the
    node of each target (in target order), _J_MISSING where absent."""
    cdef _JParser ps = _j_parser(text)
    cdef list out = []
    cdef Py_ssize_t t, start
    ps.t_start = [-1] * ntargets
    ps.t_end = [-1] * ntargets
    try:
        ps.ws()
        ps.skip_many(trie)
        ps.ws()
        if ps.at(ps.i) != 0:
            raise _JMalformed()
        for t in range(ntargets):
            start = ps.t_start[t]
            if start < 0:
                out.append(_J_MISSING)
                continue
            c = ps.at(start)
            if c == 123 or c == 91:
                out.append(_JRawC(_j_minify(ps, start, ps.t_end[t])))
            else:
                ps.i = start
                ps.depth = 0
                out.append(ps.value())
        return out
    except _JMalformed:
        raise _JDataError("malformed JSON") from None


@cython.final
cdef class JsonPathGroup:
    """The constant simple paths a statement reads from one document column.

    The first read of a row's document scans it once for all of them and
    keeps the nodes found; the other reads of that same document (the same
    str object: the group holds it, so identity cannot be reused) take
    theirs from there.  A statement reading ``$.user.id`` and ``$.total``
    from each row so parses each document once, as SQLite's parse cache
    does, instead of once per path.
    """
    cdef _JPathTrie trie
    cdef Py_ssize_t n
    cdef dict numbers                 # steps tuple -> target number
    cdef list targets                 # steps tuple of each target number
    cdef object last_text
    cdef list last_nodes

    def __cinit__(self):
        self.trie = _JPathTrie()
        self.n = 0
        self.numbers = {}
        self.targets = []

    cdef Py_ssize_t add(self, tuple steps):
        cdef _JPathTrie node = self.trie, sub
        t = self.numbers.get(steps)
        if t is not None:
            return t
        for step in steps:
            sub = node.children.get(step)
            if sub is None:
                sub = _JPathTrie()
                node.children[step] = sub
            node = sub
        node.target = self.n
        self.numbers[steps] = self.n
        self.targets.append(steps)
        self.n += 1
        self.last_text = None         # cached nodes lack the new path
        return self.n - 1

    cdef object node(self, str text, Py_ssize_t t):
        cdef object blob
        if text is not self.last_text:
            blob = _jb_blob_of(text)
            if blob is not None:
                # A JSON column's document just read from its row: look the
                # paths up in its JSONB (validated when written), no text parse.
                self.last_nodes = [_jb_find(<bytes>blob, <tuple>steps) for steps in self.targets]
            else:
                self.last_nodes = _j_fast_find_many(text, self.trie, self.n)
            self.last_text = text
        return self.last_nodes[t]

    def release(self):
        """Forgets the cached document (so a cached plan does not keep it alive)."""
        self.last_text = None
        self.last_nodes = None


# ---------------------------------------------------------------------------
# Scalar functions
# ---------------------------------------------------------------------------

def fn_json(x):
    """json(X): X minified (DataError if not well-formed)."""
    if x is None:
        return None
    if type(x) is str and x is not _j_last_text:
        return _j_render_text(_j_fast_find(<str>x, ()))
    return _j_render_text(_j_parse_ro(x))


def fn_json_valid(x):
    """json_valid(X): 1 if X is well-formed JSON, else 0 (also for NULL)."""
    if x is None:
        return 0
    try:
        _j_parse_ro(x)
    except _JDataError:
        return 0
    return 1


def fn_json_type(x, path=_J_MISSING):
    """json_type(X[, P]): the JSON type name of X (or of the element at P)."""
    if x is None:
        return None
    if path is _J_MISSING:
        return _j_type_name(_j_parse_ro(x))
    node = _j_find(x, path)
    return None if node is _J_MISSING else _j_type_name(node)


def fn_json_array_length(x, path=_J_MISSING):
    """json_array_length(X[, P]): the length of the array (0 for a non-array)."""
    tree = _j_parse_ro(x)
    if x is None:
        return None
    node = tree if path is _J_MISSING else _j_lookup(tree, path, False).node
    if node is _J_MISSING:
        return None
    return len(<list>node) if type(node) is list else 0


def fn_json_extract(x, *paths):
    """json_extract(X, P1, ...): the SQL value at P1; with several paths, a
    JSON array of the elements found (null where absent)."""
    if not paths or x is None:
        return None
    if len(paths) == 1:
        node = _j_find(x, paths[0])
        return None if node is _J_MISSING else _j_sql_value(node)
    tree = _j_parse_ro(x)
    cdef list out = ['[']
    for i, p in enumerate(paths):
        if i:
            out.append(',')
        node = _j_lookup(tree, p, False).node
        if node is _J_MISSING:
            out.append('null')
        else:
            _j_render(node, out)
    out.append(']')
    return JsonText(''.join(out))


cdef object _j_abbrev_path(object p):
    """The -> and ->> operators' short paths: N is $[N], LABEL is $.LABEL."""
    cdef str s = _j_path_arg(p)
    if s is None or s.startswith('$'):
        return s
    if s and _j_isdigit(s[0]):
        return '$[' + s + ']'
    if s.startswith('['):
        return '$' + s
    return '$.' + s


def fn_json_arrow(x, path):
    """X -> P: the JSON text of the element at P (NULL when absent)."""
    if x is None:
        return None
    p = _j_abbrev_path(path)
    if p is None:
        _j_parse_ro(x)                # still "malformed JSON" for bad text
        return None
    node = _j_find(x, p)
    return None if node is _J_MISSING else _j_render_text(node)


def fn_json_arrow2(x, path):
    """X ->> P: the SQL value of the element at P (arrays/objects as text)."""
    if x is None:
        return None
    p = _j_abbrev_path(path)
    if p is None:
        _j_parse_ro(x)                # still "malformed JSON" for bad text
        return None
    node = _j_find(x, p)
    if node is _J_MISSING:
        return None
    v = _j_sql_value(node)
    return str(v) if type(v) is JsonText else v     # ->> drops the subtype


def fn_json_quote(x):
    """json_quote(X): X as a JSON value (text quoted, JSON text as is)."""
    return JsonText(_j_value_json(x))


def fn_json_array(*args):
    """json_array(...): a JSON array of the arguments."""
    return JsonText('[' + ','.join([_j_value_json(a) for a in args]) + ']')


def fn_json_object(*args):
    """json_object(K1, V1, ...): a JSON object of the label/value pairs."""
    cdef Py_ssize_t i, n = len(args)
    if n & 1:
        raise _FnProgrammingError("json_object() requires an even number of arguments")
    cdef list out = []
    for i in range(0, n, 2):
        k = args[i]
        if not isinstance(k, str):
            raise _JDataError("json_object() labels must be TEXT")
        out.append(_j_quote(str(k)) + ':' + _j_value_json(args[i + 1]))
    return JsonText('{' + ','.join(out) + '}')


def fn_json_set(*args):
    """json_set(X, P1, V1, ...): set or create each path's value."""
    return _j_edit('set', args, True, True)


def fn_json_insert(*args):
    """json_insert(X, P1, V1, ...): create each path that does not exist."""
    return _j_edit('insert', args, True, False)


def fn_json_replace(*args):
    """json_replace(X, P1, V1, ...): overwrite each path that exists."""
    return _j_edit('replace', args, False, True)


cdef object _j_edit(str name, tuple args, bint do_append, bint do_replace):
    """json_set/json_insert/json_replace: for each (path, value) pair, set
    the value where the path exists (``do_replace``) and/or create it where
    it does not (``do_append``), in order, on one tree.

    A value put in the tree is a _JRaw leaf: later paths of the same call
    cannot descend into it (SQLite's JNODE_REPLACE).  When the root itself is
    replaced, SQLite returns that argument as it is (a SQL value, not JSON)."""
    cdef Py_ssize_t i, n = len(args)
    cdef _JLoc loc
    cdef bint root_replaced = False
    cdef str p
    cdef list chunks = [] if do_append else None
    if n == 0:
        return None
    if not n & 1:
        raise _FnProgrammingError(f"json_{name}() needs an odd number of arguments")
    tree = _j_parse_rw(args[0])
    if args[0] is None:
        return None
    for i in range(1, n, 2):
        if root_replaced:
            p = _j_path_arg(args[i])
            if p is None:
                continue
            if not p.startswith('$'):
                _j_path_error(p)
            if p == '$' and do_replace:
                tree = args[i + 1]
            continue
        loc = _j_lookup(tree, args[i], do_append, None, chunks)
        if loc.node is _J_MISSING:
            continue
        if loc.node is not _J_NEW_SLOT and not do_replace:
            continue
        if loc.parent is None:
            tree = args[i + 1]
            root_replaced = True
        else:
            loc.parent[loc.key] = _j_value_node(args[i + 1])
    if root_replaced:
        return tree
    return _j_render_text(tree)


def fn_json_remove(*args):
    """json_remove(X, P, ...): X without the elements at the paths."""
    cdef _JLoc loc
    if not args:
        return None
    tree = _j_parse_rw(args[0])
    if args[0] is None:
        return None
    # SQLite only flags removed nodes: later paths skip removed array
    # elements when counting, but still find (and walk into) removed object
    # members.  So array elements go at once, object members at the end.
    cdef bint root_removed = False
    cdef list members = []
    for p in args[1:]:
        if p is None:
            return None
        loc = _j_lookup(tree, p, False)
        if loc.node is _J_MISSING:
            continue
        if loc.parent is None:
            root_removed = True        # the result is NULL; later paths are still checked
        elif type(loc.parent) is list:
            del loc.parent[loc.key]
        else:
            members.append((loc.parent, loc.key))
    if root_removed:
        return None
    for d, k in members:
        (<dict>d).pop(k, None)           # the first member of that label (a later one stays)
    return _j_render_text(tree)


cdef object _j_strip_nulls(object patch):
    """jsonRemoveAllNulls(): an object patch without null members, recursively
    through nested objects (arrays are left alone)."""
    return {k: (_j_strip_nulls(v) if type(v) is dict else v)
            for k, v in (<dict>patch).items() if v is not None}


cdef class _JPatchState:
    """What SQLite's jsonMergePatch() flags while one json_patch() runs: the
    target members it removed or replaced (a later patch member of the same
    label leaves them alone), the members each merge appended to a target
    object (a later merge into that object that appends too detaches them,
    as SQLite relinks the object's append chain) and the removals, made at
    the end."""
    cdef set flagged                  # (id(target object), label)
    cdef dict appended                # id(target object) -> dict keys appended
    cdef list removals                # (target object, label)

    def __init__(self):
        self.flagged = set()
        self.appended = {}
        self.removals = []


cdef object _j_merge_patch(object target, object patch, _JPatchState st):
    """RFC 7396 MergePatch, as SQLite's jsonMergePatch() (3.40), duplicate
    labels included: a patch member finds the target's first member of its
    label among the members the target had at the start (never one this
    merge appended)."""
    if type(patch) is not dict:
        return patch
    if type(target) is not dict:
        return _j_strip_nulls(patch)
    cdef dict t = <dict>target
    cdef list added = []
    cdef list before = st.appended.get(id(t))     # what an earlier merge appended to t
    for k, v in (<dict>patch).items():
        label = _j_label(k)
        if label in t and label not in added and (before is None or label not in before):
            if (id(t), label) in st.flagged:
                continue
            if v is None:
                st.flagged.add((id(t), label))
                st.removals.append((t, label))
                continue
            old = t[label]
            if type(old) is dict and type(v) is dict:
                _j_merge_patch(old, v, st)       # in place: the member stays open to later labels
            else:
                t[label] = _j_merge_patch(old, v, st)
                st.flagged.add((id(t), label))
        elif v is not None:
            if before is not None:
                # SQLite links this merge's first append in place of the
                # earlier merge's chain: those members drop out.
                for key in before:
                    del t[key]
                del st.appended[id(t)]
                before = None
            key = _JDupKey(label) if label in t else label
            t[key] = _j_strip_nulls(v) if type(v) is dict else v
            added.append(key)
    if added:
        st.appended[id(t)] = added
    return t


def fn_json_patch(x, p):
    """json_patch(T, P): T with the RFC 7396 merge patch P applied."""
    target = _j_parse_rw(x)
    if x is None:
        return None
    patch = _j_parse_rw(p)
    if p is None:
        return None
    cdef _JPatchState st = _JPatchState()
    result = _j_merge_patch(target, patch, st)
    for d, label in st.removals:
        (<dict>d).pop(label, None)       # the first member of that label
    return _j_render_text(result)


# ---------------------------------------------------------------------------
# Aggregates
# ---------------------------------------------------------------------------

cdef class JsonGroupArray(Aggregate):
    """json_group_array(X): a JSON array of every row's X (NULLs included)."""
    cdef list parts

    def __init__(self):
        self.parts = []

    cdef int step(self, object v) except -1:
        self.parts.append(_j_value_json(v))
        return 0

    cdef object final(self):
        return JsonText('[' + ','.join(self.parts) + ']')


cdef class JsonGroupObject(Aggregate):
    """json_group_object(K, V): a JSON object of every row's K: V (a NULL K
    gives an empty, unquoted label - SQLite's output, invalid as it is)."""
    cdef list parts

    def __init__(self):
        self.parts = []

    cdef int step(self, object v) except -1:
        k = (<tuple>v)[0]
        if k is None:
            key = ''
        else:
            if type(k) is bytes:
                k = _value_cstr(k)
            key = _j_quote(_value_text(k) if type(k) is not str else k)
        self.parts.append(key + ':' + _j_value_json((<tuple>v)[1]))
        return 0

    cdef object final(self):
        return JsonText('{' + ','.join(self.parts) + '}')


# ---------------------------------------------------------------------------
# json_each / json_tree rows
# ---------------------------------------------------------------------------

cdef Py_ssize_t _j_size(object v):
    """How many nodes SQLite's parse gives ``v``: its ids are node indexes
    (an object member is a label node followed by its value's nodes)."""
    cdef Py_ssize_t n = 1
    t = type(v)
    if t is list:
        for x in <list>v:
            n += _j_size(x)
    elif t is dict:
        for x in (<dict>v).values():
            n += 1 + _j_size(x)
    return n


cdef Py_ssize_t _j_child_id(object container, object key, Py_ssize_t cid):
    """The node id of ``container[key]``, ``cid`` being the container's id."""
    cdef Py_ssize_t i = cid + 1
    if type(container) is list:
        for x in (<list>container)[:key]:
            i += _j_size(x)
        return i
    for k, x in (<dict>container).items():
        if k == key:
            return i + 1
        i += 1 + _j_size(x)
    raise AssertionError("key not in container")


cdef str _j_key_step(object k):
    """A path step for an object key: .key when it is a plain identifier
    (an ASCII letter then letters/digits), else ."key" (raw text)."""
    raw = k.raw if type(k) is _JEsc else str(k)
    if raw and raw[0].isascii() and raw[0].isalpha() and all(
            ch.isascii() and ch.isalnum() for ch in raw):
        return '.' + raw
    return '."' + raw + '"'


cdef tuple _j_root(object text, object path):
    """(tree, root node, root id, trail of (container, key) steps) for
    json_each/json_tree; root is _J_MISSING when the path finds nothing."""
    cdef _JLoc loc
    cdef list trail = []
    tree = _j_parse_ro(text)
    if path is None:
        return tree, tree, 0, trail
    loc = _j_lookup(tree, path, False, trail)
    if loc.node is _J_MISSING:
        return tree, _J_MISSING, 0, trail
    cdef Py_ssize_t rid = 0
    for container, key in trail:
        rid = _j_child_id(container, key, rid)
    return tree, loc.node, rid, trail


cdef inline object _j_atom(object v):
    return None if type(v) is list or type(v) is dict else _j_sql_value(v)


def json_each_rows(text, path=None):
    """The rows of SQLite's ``json_each(text[, path])``: tuples of (key,
    value, type, atom, id, parent, fullkey, path).  NULL text gives no rows."""
    if text is None:
        return []
    tree, root, rid, trail = _j_root(text, path)
    if root is _J_MISSING:
        return []
    zroot = '$' if path is None else _j_path_arg(path)
    cdef list rows = []
    cdef Py_ssize_t i = rid + 1
    if type(root) is list:
        for k, v in enumerate(<list>root):
            rows.append((k, _j_sql_value(v), _j_type_name(v), _j_atom(v), i, None,
                         f"{zroot}[{k}]", zroot))
            i += _j_size(v)
    elif type(root) is dict:
        for k, v in (<dict>root).items():
            k = _j_label(k)
            rows.append((str(k), _j_sql_value(v), _j_type_name(v), _j_atom(v), i + 1, None,
                         zroot + _j_key_step(k), zroot))
            i += 1 + _j_size(v)
    else:
        rows.append((None, _j_sql_value(root), _j_type_name(root), _j_atom(root), rid, None,
                     zroot, zroot))
    return rows


def json_tree_rows(text, path=None):
    """The rows of SQLite's ``json_tree(text[, path])`` (same columns as
    json_each), the root first then every descendant in document order."""
    if text is None:
        return []
    tree, root, rid, trail = _j_root(text, path)
    if root is _J_MISSING:
        return []
    # Paths above the root: SQLite prints an array ancestor's index as the
    # array's (never advanced) iteration counter, i.e. [0].
    prefix = '$'
    cdef Py_ssize_t ntrail = len(trail)
    for container, key in trail[:ntrail - 1] if ntrail else ():
        prefix += '[0]' if type(container) is list else _j_key_step(key)
    if ntrail:
        container, key = trail[ntrail - 1]
        if type(container) is dict:
            # SQLite steps back onto the label only for an array/object root.
            root_key = str(key) if type(root) is list or type(root) is dict else None
            root_full = prefix + _j_key_step(key)
        else:
            root_key = None
            root_full = prefix + '[0]'
        root_path = prefix
    else:
        root_key = None
        root_full = root_path = '$'
    cdef list rows = [(root_key, _j_sql_value(root), _j_type_name(root), _j_atom(root),
                       rid, None, root_full, root_path)]
    _j_tree_children(root, rid, root_full, rows)
    return rows


cdef void _j_tree_children(object node, Py_ssize_t nid, str full, list rows) except *:
    cdef Py_ssize_t i = nid + 1
    if type(node) is list:
        for k, v in enumerate(<list>node):
            sub = f"{full}[{k}]"
            rows.append((k, _j_sql_value(v), _j_type_name(v), _j_atom(v), i, nid, sub, full))
            _j_tree_children(v, i, sub, rows)
            i += _j_size(v)
    elif type(node) is dict:
        for k, v in (<dict>node).items():
            k = _j_label(k)
            sub = full + _j_key_step(k)
            rows.append((str(k), _j_sql_value(v), _j_type_name(v), _j_atom(v), i + 1, nid,
                         sub, full))
            _j_tree_children(v, i + 1, sub, rows)
            i += 1 + _j_size(v)


# ---------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------

_scalar('json', fn_json, 1, 1)
_scalar('json_valid', fn_json_valid, 1, 1)
_scalar('json_type', fn_json_type, 1, 2)
_scalar('json_array_length', fn_json_array_length, 1, 2)
_scalar('json_extract', fn_json_extract, 1, -1)
_scalar('->', fn_json_arrow, 2, 2)
_scalar('->>', fn_json_arrow2, 2, 2)
_scalar('json_quote', fn_json_quote, 1, 1)
_scalar('json_array', fn_json_array, 0, -1)
_scalar('json_object', fn_json_object, 0, -1)
_scalar('json_set', fn_json_set, 0, -1)
_scalar('json_insert', fn_json_insert, 0, -1)
_scalar('json_replace', fn_json_replace, 0, -1)
_scalar('json_remove', fn_json_remove, 0, -1)
_scalar('json_patch', fn_json_patch, 2, 2)

AGGREGATE_FUNCTIONS['json_group_array'] = AggregateFunction('json_group_array', JsonGroupArray, 1, 1)
AGGREGATE_FUNCTIONS['json_group_object'] = AggregateFunction('json_group_object', JsonGroupObject, 2, 2)
