# functions.pxi - included by _core.pyx (after values.pxi)
"""SQLite's built-in scalar and aggregate functions over Python values.

It relies on values.pxi, whose conversions (to_integer,
to_real, to_text, real_to_text, sql_compare, sql_cast...) are used here.

Values are None, int (int64), float, str and bytes.  Every function follows
SQLite 3.40's C implementation (func.c, printf.c), quirks included: text
arguments read as C strings stop at the first NUL, substr()'s start/length
are 32-bit, printf widths count bytes, a NaN result becomes NULL, and so on.

Date and time functions (date, time, datetime, julianday, unixepoch,
strftime) follow date.c, modifiers included ('localtime'/'utc' go through
C's localtime() like SQLite).

Public names:
  ScalarFunction, SCALAR_FUNCTIONS      name -> ScalarFunction (callable, arity)
  Aggregate (+ subclasses), DistinctAggregate
  AggregateFunction, AGGREGATE_FUNCTIONS name -> AggregateFunction (factory)
  sql_printf(fmt, *args)                 SQLite's printf()
  format_real(value, conv, precision, ...)  SQLite's %f/%e/%g engine
"""

cimport cython
from libc.math cimport (
    ceil as c_ceil, floor as c_floor, trunc as c_trunc, sqrt as c_sqrt,
    exp as c_exp, log as c_log,
    pow as c_pow, fmod as c_fmod, sin as c_sin, cos as c_cos, tan as c_tan,
    asin as c_asin, acos as c_acos, atan as c_atan, atan2 as c_atan2,
    sinh as c_sinh, cosh as c_cosh, tanh as c_tanh, asinh as c_asinh,
    acosh as c_acosh, atanh as c_atanh, isnan, M_PI, M_LN10, M_LN2,
)
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from libc.stdint cimport int64_t, uint64_t, INT64_MIN, INT64_MAX
from cpython.bytes cimport PyBytes_FromStringAndSize
import binascii as _binascii
import os as _os
import random as _random

from terndb.engine.errors import DataError as _FnDataError
from terndb.engine.errors import ProgrammingError as _FnProgrammingError
from terndb.engine.errors import OperationalError as _FnOperationalError
import re as _re

# SQLite's default SQLITE_LIMIT_LENGTH: the largest string or blob.
cdef int64_t _MAX_LENGTH = 1000000000


# ---------------------------------------------------------------------------
# Argument conversions, mirroring sqlite3_value_*() on a Python value
# ---------------------------------------------------------------------------

cdef inline object _value_text(object v):
    """sqlite3_value_text() with its full byte length: None stays None."""
    if v is None or type(v) is str:
        return v
    return v_to_text(v)


cdef inline object _value_cstr(object v):
    """sqlite3_value_text() read as a C string: stops at the first NUL."""
    cdef Py_ssize_t i
    if v is None:
        return None
    if type(v) is not str:
        v = v_to_text(v)
    i = (<str>v).find('\x00')
    return v if i < 0 else (<str>v)[:i]


cdef inline int64_t _value_int64(object v) except? -1:
    """sqlite3_value_int64(): NULL is 0, text and reals convert as CAST does."""
    if type(v) is int and _v_fits_i64(v):
        return v
    if v is None:
        return 0
    return v_to_integer(v)


cdef inline int _value_int(object v) except? -1:
    """sqlite3_value_int(): the int64 conversion truncated to 32 bits, as C's cast."""
    return <int>_value_int64(v)


cdef inline double _value_double(object v) except? -1.0:
    """sqlite3_value_double(): NULL is 0.0, text and blobs parse a numeric prefix."""
    if type(v) is float:
        return v
    if type(v) is int and _v_fits_i64(v):
        return <double><int64_t>v
    if v is None:
        return 0.0
    return v_to_real(v)


cdef inline object _numeric_value(object v):
    """sqlite3_value_numeric_type(): the value as int/float if it is (or its
    text looks like) a number, else None.  Blobs are never numbers."""
    cdef object t = type(v)
    if t is float or (t is int and _v_fits_i64(v)):
        return v
    if t is int:
        return v_to_numeric(v)     # beyond int64: SQLite would hold a REAL
    if t is str:
        # applyNumericAffinity(v, 0): only text that is wholly a number converts.
        r = _v_text_numeric_affinity(v, 0)
        if type(r) is not str:
            return r
    return None


cdef inline object _result_double(double d):
    """sqlite3_result_double(): a NaN result is stored as NULL."""
    if isnan(d):
        return None
    return d


cdef inline _too_big():
    raise _FnDataError("string or blob too big")


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

cdef class ScalarFunction:
    """One scalar SQL function: its implementation and how it may be called.

    ``func`` takes the SQL arguments as positional Python values and returns a
    Python value.  ``max_args`` is -1 for variadic functions.  A deterministic
    function called on constants may be folded at plan time.
    """
    cdef readonly str name
    cdef readonly object func
    cdef readonly int min_args
    cdef readonly int max_args
    cdef readonly bint deterministic

    def __init__(self, str name, object func, int min_args, int max_args,
                 bint deterministic=True):
        self.name = name
        self.func = func
        self.min_args = min_args
        self.max_args = max_args
        self.deterministic = deterministic

    cpdef bint accepts(self, Py_ssize_t nargs):
        """Whether the function can be called with ``nargs`` arguments."""
        return nargs >= self.min_args and (self.max_args < 0 or nargs <= self.max_args)

    cpdef check_arity(self, Py_ssize_t nargs):
        """Raise SQLite's error when called with the wrong number of arguments."""
        if not self.accepts(nargs):
            raise _FnProgrammingError(f"wrong number of arguments to function {self.name}()")

    def __call__(self, *args):
        self.check_arity(len(args))
        return self.func(*args)

    def __repr__(self) -> str:
        return f"ScalarFunction({self.name!r}, {self.min_args}..{self.max_args})"


SCALAR_FUNCTIONS = {}


cdef _scalar(names, func, int min_args, int max_args, bint deterministic=True):
    """Register ``func`` under each of ``names`` (a name or a tuple of aliases)."""
    if isinstance(names, str):
        names = (names,)
    for n in names:
        SCALAR_FUNCTIONS[n] = ScalarFunction(n, func, min_args, max_args, deterministic)


# ---------------------------------------------------------------------------
# NULL handling and conditionals
# ---------------------------------------------------------------------------

def fn_coalesce(*args):
    """coalesce(X, Y, ...): the first non-NULL argument."""
    for a in args:
        if a is not None:
            return a
    return None


def fn_ifnull(a, b):
    """ifnull(X, Y): X unless it is NULL."""
    return b if a is None else a


def fn_nullif(a, b):
    """nullif(X, Y): NULL when X = Y (SQLite comparison, no affinity), else X."""
    if a is None or b is None:
        return a
    return None if v_compare(a, b) == 0 else a


cdef inline bint _truthy(object v) except -1:
    """The truth of a value in a WHEN clause: NULL and 0 are false, text reads
    as a number ('1abc' is true, 'abc' false)."""
    return v_truth(v) == 1


def fn_iif(c, a, b):
    """iif(C, X, Y): X if C is true, else Y."""
    return a if _truthy(c) else b


def fn_likelihood(x, p):
    """likelihood(X, P): X; P is only a planner hint."""
    return x


def fn_likely(x):
    """likely(X) / unlikely(X): X; planner hints only."""
    return x


# ---------------------------------------------------------------------------
# Text and blob functions
# ---------------------------------------------------------------------------

def fn_typeof(v):
    """typeof(X): 'null', 'integer', 'real', 'text' or 'blob'."""
    if v is None:
        return 'null'
    t = type(v)
    if t is int or isinstance(v, int):
        return 'integer' if _v_fits_i64(v) else 'real'     # SQLite has no wider ints
    if t is float:
        return 'real'
    if t is str:
        return 'text'
    return 'blob'


def fn_length(v):
    """length(X): characters before the first NUL for text, bytes for blobs,
    characters of the rendering for numbers."""
    cdef Py_ssize_t i
    t = type(v)
    if t is str:
        i = (<str>v).find('\x00')
        return len(<str>v) if i < 0 else i
    if t is bytes:
        return len(<bytes>v)
    if v is None:
        return None
    if t is int and _v_fits_i64(v):
        return len(str(v))
    return len(v_to_text(v))


def fn_octet_length(v):
    """octet_length(X): bytes of X's UTF-8 text (or of the blob)."""
    t = type(v)
    if t is str:
        return len(v) if (<str>v).isascii() else len((<str>v).encode('utf-8'))
    if t is bytes:
        return len(<bytes>v)
    if v is None:
        return None
    return len(v_to_text(v))


# SQLite folds case for ASCII letters only (no ICU).
_ASCII_LOWER = {c: c + 32 for c in range(65, 91)}
_ASCII_UPPER = {c: c - 32 for c in range(97, 123)}


def fn_lower(v):
    """lower(X): X as text with ASCII letters lowered."""
    s = _value_text(v)
    if s is None:
        return None
    if (<str>s).isascii():
        return (<str>s).lower()
    return (<str>s).translate(_ASCII_LOWER)


def fn_upper(v):
    """upper(X): X as text with ASCII letters raised."""
    s = _value_text(v)
    if s is None:
        return None
    if (<str>s).isascii():
        return (<str>s).upper()
    return (<str>s).translate(_ASCII_UPPER)


# ---------------------------------------------------------------------------
# Regular expressions: X REGEXP P is regexp(P, X) (SQLite's rule); SQLite
# leaves the function to the application, terndb provides it with Python's re.
# ---------------------------------------------------------------------------

# Compiled patterns by text: a statement usually applies one pattern to many
# rows, and re's own cache is small and shared with the whole process.
_REGEXP_CACHE = {}
cdef Py_ssize_t _REGEXP_CACHE_MAX = 256


cdef object _compiled_regexp(object pattern):
    cdef str text = _value_text(pattern)
    rx = _REGEXP_CACHE.get(text)
    if rx is None:
        try:
            rx = _re.compile(text)
        except _re.error as err:
            raise _FnOperationalError(f"invalid regular expression {text!r}: {err}") from err
        if len(_REGEXP_CACHE) >= _REGEXP_CACHE_MAX:
            _REGEXP_CACHE.clear()
        _REGEXP_CACHE[text] = rx
    return rx


def fn_regexp(pattern, value):
    """regexp(P, X): 1 if P matches somewhere in X (re.search), else 0; NULL if either is NULL."""
    if pattern is None or value is None:
        return None
    return 1 if _compiled_regexp(pattern).search(_value_text(value)) is not None else 0


def fn_regexp_replace(value, pattern, replacement):
    """regexp_replace(X, P, R): X with every match of P replaced by R (re.sub; \\1 names a group)."""
    if value is None or pattern is None or replacement is None:
        return None
    rx = _compiled_regexp(pattern)
    try:
        return rx.sub(_value_text(replacement), _value_text(value))
    except _re.error as err:
        raise _FnOperationalError(f"invalid regexp_replace replacement {_value_text(replacement)!r}: {err}") from err


# Marks an omitted optional argument (substr's two-argument form, log(X)).
_ABSENT = object()


def fn_substr(x, y, z=_ABSENT):
    """substr(X, Y[, Z]) / substring(): SQLite's rules for a 1-based start Y
    (0 and negatives count back from the end) and a length Z (negative: the
    characters before Y).  Blobs slice bytes, everything else slices text."""
    cdef int64_t p1, p2, n
    cdef bint neg = False
    if x is None or y is None or z is None:
        return None
    p1 = _value_int(y)
    if z is _ABSENT:
        p2 = _MAX_LENGTH
    else:
        p2 = _value_int(z)
        if p2 < 0:
            p2 = -p2
            neg = True
    if type(x) is bytes:
        n = len(<bytes>x)
        if n == 0:
            return None     # sqlite3_value_blob() of an empty blob is a NULL pointer
    else:
        x = _value_cstr(x)
        n = len(<str>x)
    if p1 < 0:
        p1 += n
        if p1 < 0:
            p2 += p1
            if p2 < 0:
                p2 = 0
            p1 = 0
    elif p1 > 0:
        p1 -= 1
    elif p2 > 0:
        p2 -= 1
    if neg:
        p1 -= p2
        if p1 < 0:
            p2 += p1
            p1 = 0
    if type(x) is bytes:
        return (<bytes>x)[p1:p1 + p2]
    return (<str>x)[p1:p1 + p2]


def _trim(x, y, bint left, bint right):
    """Shared body of trim/ltrim/rtrim: Y's characters (default a space) are
    removed from the chosen ends of X.  Y is read up to its first NUL."""
    s = _value_text(x)
    if s is None:
        return None
    chars = _value_cstr(y)
    if chars is None:
        return None
    if left and right:
        return (<str>s).strip(chars)
    if left:
        return (<str>s).lstrip(chars)
    return (<str>s).rstrip(chars)


def fn_trim(x, y=' '):
    """trim(X[, Y]): X without leading and trailing characters of Y."""
    return _trim(x, y, True, True)


def fn_ltrim(x, y=' '):
    """ltrim(X[, Y]): X without leading characters of Y."""
    return _trim(x, y, True, False)


def fn_rtrim(x, y=' '):
    """rtrim(X[, Y]): X without trailing characters of Y."""
    return _trim(x, y, False, True)


def fn_replace(x, y, z):
    """replace(X, Y, Z): X with every Y replaced by Z.  An empty Y (or one
    starting with NUL) returns X itself, type and all."""
    s = _value_text(x)
    if s is None:
        return None
    pattern = _value_text(y)
    if pattern is None:
        return None
    if not pattern or (<str>pattern)[0] == '\x00':
        # X comes back as is; a blob has been read as text by then and SQLite
        # hands back the text.
        return s if type(x) is bytes else x
    rep = _value_text(z)
    if rep is None:
        return None
    return (<str>s).replace(<str>pattern, <str>rep)


def fn_instr(x, y):
    """instr(X, Y): 1-based position of the first Y in X (bytes for two
    blobs, characters otherwise), 0 if absent."""
    if x is None or y is None:
        return None
    if type(x) is bytes and type(y) is bytes:
        return (<bytes>x).find(<bytes>y) + 1
    if type(x) is not bytes and type(y) is not bytes:
        return (<str>_value_text(x)).find(<str>_value_text(y)) + 1
    # One blob, one text: SQLite matches the raw bytes and counts characters
    # as the bytes that do not continue a UTF-8 sequence.
    hay = x if type(x) is bytes else (<str>_value_text(x)).encode('utf-8')
    needle = y if type(y) is bytes else (<str>_value_text(y)).encode('utf-8')
    return _instr_text_bytes(<bytes>hay, <bytes>needle)


cdef Py_ssize_t _instr_text_bytes(bytes hay, bytes needle):
    """instrFunc's scan over text bytes: step one byte, then past any UTF-8
    continuation bytes, counting steps; only step starts can match."""
    cdef Py_ssize_t pos = 0, count = 1, n = len(hay), k = len(needle)
    while k <= n - pos and not hay.startswith(needle, pos):
        count += 1
        pos += 1
        while pos < n and (hay[pos] & 0xC0) == 0x80:
            pos += 1
    return count if k <= n - pos else 0


def fn_hex(v):
    """hex(X): upper-case hex of X's bytes (UTF-8 for text); '' for NULL."""
    if v is None:
        return ''
    if type(v) is bytes:
        return (<bytes>v).hex().upper()
    return (<str>_value_text(v)).encode('utf-8').hex().upper()


_HEX_DIGITS = frozenset('0123456789abcdefABCDEF')


def fn_unhex(x, y=''):
    """unhex(X[, Y]): the blob X's hex digit pairs spell, or NULL if X holds
    anything but pairs and (between pairs) characters of Y."""
    s = _value_cstr(x)
    if s is None:
        return None
    passing = _value_text(y)
    if passing is None:
        return None
    if (<str>s).isascii():
        try:    # the common case: nothing but pairs of digits
            return _binascii.unhexlify(s)
        except (ValueError, _binascii.Error):
            pass
    return _unhex_slow(<str>s, <str>passing)


cdef object _unhex_slow(str s, str passing):
    cdef Py_ssize_t i = 0, n = len(s)
    cdef bytearray out = bytearray()
    while i < n:
        c = s[i]
        while c not in _HEX_DIGITS:
            if c not in passing:
                return None
            i += 1
            if i >= n:
                return bytes(out)
            c = s[i]
        i += 1
        if i >= n or s[i] not in _HEX_DIGITS:
            return None
        out.append(int(c + s[i], 16))
        i += 1
    return bytes(out)


def fn_quote(v):
    """quote(X): X as an SQL literal."""
    if v is None:
        return 'NULL'
    t = type(v)
    if t is int and _v_fits_i64(v):
        return str(v)
    if t is float or t is int:
        return _quote_real(v)
    if t is bytes:
        return "X'" + (<bytes>v).hex().upper() + "'"
    s = _value_cstr(v)
    return "'" + (<str>s).replace("'", "''") + "'"


cdef str _quote_real(double r):
    """15 significant digits when they read back exactly, else 20 in exponent form."""
    cdef str text = format_real(r, 'g', 15, alt2=True)
    if v_to_real(text) == r:     # read back with SQLite's own parser
        return text
    return format_real(r, 'e', 20, alt2=True)


def fn_char(*args):
    """char(X1, ...): the text of the code points X1...; out-of-range ones
    (and surrogates, which Python text cannot hold) become U+FFFD."""
    cdef int64_t c
    cdef list out = []
    for a in args:
        c = _value_int64(a)
        if c < 0 or c > 0x10FFFF or 0xD800 <= c <= 0xDFFF:
            c = 0xFFFD
        out.append(chr(c))
    return ''.join(out)


def fn_unicode(v):
    """unicode(X): the code point of X's first character; NULL if none.  A
    blob's bytes are decoded leniently, as SQLite's UTF-8 reader does."""
    if type(v) is bytes:
        return _first_code_point(<bytes>v)
    s = _value_text(v)
    if not s or (<str>s)[0] == '\x00':
        return None
    return ord((<str>s)[0])


cdef object _first_code_point(bytes b):
    """sqlite3Utf8Read() on raw bytes: a lead byte's payload plus any
    continuation bytes; overlong, surrogate and U+FFFE/F results are U+FFFD."""
    cdef Py_ssize_t i = 1, n = len(b)
    cdef unsigned int c, lead
    if n == 0 or b[0] == 0:
        return None
    c = b[0]
    if c < 0xC0:
        return c
    lead = c
    if lead < 0xE0:
        c = lead - 0xC0
    elif lead < 0xF0:
        c = lead - 0xE0
    elif lead < 0xF8:
        c = lead - 0xF0
    elif lead < 0xFC:
        c = lead - 0xF8
    else:
        c = (lead - 0xFC) if lead < 0xFE else 0
    while i < n and (b[i] & 0xC0) == 0x80:
        c = (c << 6) + (b[i] & 0x3F)
        i += 1
    if c < 0x80 or (c & 0xFFFFF800) == 0xD800 or (c & 0xFFFFFFFE) == 0xFFFE:
        c = 0xFFFD
    return c


def fn_zeroblob(n):
    """zeroblob(N): N zero bytes."""
    cdef int64_t size = _value_int64(n)
    if size < 0:
        size = 0
    if size > _MAX_LENGTH:
        _too_big()
    return bytes(size)


def fn_random():
    """random(): a pseudo-random integer (never -2**63, as SQLite)."""
    cdef int64_t r = <int64_t><uint64_t>_random.getrandbits(64)
    if r < 0:
        r = -(r & INT64_MAX)
    return r


def fn_randomblob(n):
    """randomblob(N): N random bytes (at least one)."""
    cdef int64_t size = _value_int64(n)
    if size < 1:
        size = 1
    if size > _MAX_LENGTH:
        _too_big()
    return _os.urandom(size)


def fn_min(*args):
    """min(X, Y, ...): the least argument, NULL if any is NULL.  On ties the
    later argument wins (so min(1, 1.0) is 1.0), as in SQLite."""
    cdef Py_ssize_t i, best = 0
    if args[0] is None:
        return None
    for i in range(1, len(args)):
        if args[i] is None:
            return None
        if v_compare(args[best], args[i]) >= 0:
            best = i
    return args[best]


def fn_max(*args):
    """max(X, Y, ...): the greatest argument, NULL if any is NULL; on ties
    the earlier argument wins."""
    cdef Py_ssize_t i, best = 0
    if args[0] is None:
        return None
    for i in range(1, len(args)):
        if args[i] is None:
            return None
        if v_compare(args[best], args[i]) < 0:
            best = i
    return args[best]


def fn_concat(*args):
    """concat(X, ...): the text of the non-NULL arguments, joined."""
    return ''.join([_value_text(a) for a in args if a is not None])


def fn_concat_ws(sep, *args):
    """concat_ws(SEP, X, ...): the non-NULL arguments' text joined by SEP."""
    if sep is None:
        return None
    return (<str>_value_text(sep)).join([_value_text(a) for a in args if a is not None])


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------

def fn_abs(v):
    """abs(X): integers stay integers (abs(-2**63) overflows); anything else
    is read as a real."""
    if type(v) is int and _v_fits_i64(v):
        if <int64_t>v == INT64_MIN:
            raise _FnDataError("integer overflow")
        return -v if v < 0 else v
    if v is None:
        return None
    r = _value_double(v)
    return -r if r < 0.0 else r     # not fabs(): -0.0 stays -0.0, as in SQLite


def fn_sign(v):
    """sign(X): -1, 0 or +1 for a numeric X (or numeric-looking text), else NULL."""
    cdef double d
    n = _numeric_value(v)
    if n is None:
        return None
    d = _value_double(n)
    return -1 if d < 0.0 else (1 if d > 0.0 else 0)


def fn_round(x, y=0):
    """round(X[, N]): X rounded half away from zero to N (0..30) decimals, a real."""
    cdef int n = 0
    cdef double r
    if y is None:
        return None
    n = _value_int(y)
    if n > 30:
        n = 30
    if n < 0:
        n = 0
    if x is None:
        return None
    r = _value_double(x)
    if r < -4503599627370496.0 or r > 4503599627370496.0:
        return r    # no fractional part to round
    if n == 0:
        return <double>(<int64_t>(r + (-0.5 if r < 0 else 0.5)))
    return v_to_real(format_real(r, 'f', n))   # SQLite 3.40: printf('%.*f') then AtoF


ctypedef double (*_math1_t)(double) noexcept nogil
ctypedef double (*_math2_t)(double, double) noexcept nogil


cdef double _deg_to_rad(double x) noexcept nogil:
    return x * (M_PI / 180.0)


cdef double _rad_to_deg(double x) noexcept nogil:
    return x * (180.0 / M_PI)


cdef class _Math1:
    """A one-argument math function: NULL unless the argument is numeric, NULL
    for a NaN result (a domain error)."""
    cdef _math1_t f

    def __call__(self, v):
        n = _numeric_value(v)
        if n is None:
            return None
        return _result_double(self.f(_value_double(n)))


cdef class _Math2:
    """A two-argument math function (atan2, pow, mod), NULL on non-numbers."""
    cdef _math2_t f

    def __call__(self, a, b):
        na = _numeric_value(a)
        if na is None:
            return None
        nb = _numeric_value(b)
        if nb is None:
            return None
        return _result_double(self.f(_value_double(na), _value_double(nb)))


cdef class _Rounding:
    """ceil/floor/trunc: integers come back unchanged, reals rounded as reals."""
    cdef _math1_t f

    def __call__(self, v):
        n = _numeric_value(v)
        if n is None or type(n) is int:
            return n
        return _result_double(self.f(<double>n))


cdef _Math1 _math1(_math1_t f):
    cdef _Math1 m = _Math1.__new__(_Math1)
    m.f = f
    return m


cdef _Math2 _math2(_math2_t f):
    cdef _Math2 m = _Math2.__new__(_Math2)
    m.f = f
    return m


cdef _Rounding _rounding(_math1_t f):
    cdef _Rounding m = _Rounding.__new__(_Rounding)
    m.f = f
    return m


cdef object _log_arg(object v):
    """The argument of ln/log as a positive double, or None (NULL result)."""
    n = _numeric_value(v)
    if n is None:
        return None
    d = _value_double(n)
    return d if d > 0.0 else None


def fn_ln(v):
    """ln(X): natural logarithm; NULL for X <= 0 or non-numbers."""
    d = _log_arg(v)
    return None if d is None else _result_double(c_log(d))


def fn_log10(v):
    """log10(X): base-10 logarithm, computed as SQLite 3.40 does (ln(X)/ln(10)),
    which can differ from C's log10() in the last bit."""
    d = _log_arg(v)
    return None if d is None else _result_double(c_log(d) / M_LN10)


def fn_log2(v):
    """log2(X): base-2 logarithm, as ln(X)/ln(2) (SQLite 3.40)."""
    d = _log_arg(v)
    return None if d is None else _result_double(c_log(d) / M_LN2)


def fn_log(a, b=_ABSENT):
    """log(X) is log10(X); log(B, X) is the base-B logarithm of X.  As in
    SQLite, X of log(B, X) is read as a real even if it is not numeric."""
    cdef double base, x
    if b is _ABSENT:
        return fn_log10(a)
    d = _log_arg(a)
    if d is None:
        return None
    base = c_log(<double>d)
    if base <= 0.0:
        return None
    x = _value_double(b) if b is not None else 0.0
    if x <= 0.0:
        return None
    return _result_double(c_log(x) / base)


def fn_pi():
    """pi(): 3.141592653589793."""
    return M_PI


# ---------------------------------------------------------------------------
# printf() / format()
# ---------------------------------------------------------------------------

# Conversion kinds of SQLite's printf.
cdef enum:
    _ET_RADIX = 1
    _ET_DECIMAL
    _ET_FLOAT
    _ET_EXP
    _ET_GENERIC
    _ET_STRING
    _ET_CHARX
    _ET_SQLESCAPE      # %q
    _ET_SQLESCAPE2     # %Q
    _ET_SQLESCAPE3     # %w
    _ET_PERCENT
    _ET_SIZE           # %n: consumes nothing, prints nothing
    _ET_POINTER
    _ET_ORDINAL

cdef bytes _DIGITS = b"0123456789ABCDEF0123456789abcdef"

# conversion char -> (kind, base, signed, offset of digits/exponent char in
# _DIGITS, alternate-form prefix).
cdef dict _CONVERSIONS = {
    ord('d'): (_ET_DECIMAL, 10, True, 0, b''),
    ord('i'): (_ET_DECIMAL, 10, True, 0, b''),
    ord('u'): (_ET_DECIMAL, 10, False, 0, b''),
    ord('s'): (_ET_STRING, 0, False, 0, b''),
    ord('z'): (_ET_STRING, 0, False, 0, b''),
    ord('g'): (_ET_GENERIC, 0, True, 30, b''),
    ord('G'): (_ET_GENERIC, 0, True, 14, b''),
    ord('e'): (_ET_EXP, 0, True, 30, b''),
    ord('E'): (_ET_EXP, 0, True, 14, b''),
    ord('f'): (_ET_FLOAT, 0, True, 0, b''),
    ord('q'): (_ET_SQLESCAPE, 0, False, 0, b''),
    ord('Q'): (_ET_SQLESCAPE2, 0, False, 0, b''),
    ord('w'): (_ET_SQLESCAPE3, 0, False, 0, b''),
    ord('c'): (_ET_CHARX, 0, False, 0, b''),
    ord('o'): (_ET_RADIX, 8, False, 0, b'0'),
    ord('x'): (_ET_RADIX, 16, False, 16, b'0x'),
    ord('X'): (_ET_RADIX, 16, False, 0, b'0X'),
    ord('n'): (_ET_SIZE, 0, False, 0, b''),
    ord('%'): (_ET_PERCENT, 0, False, 0, b''),
    ord('p'): (_ET_POINTER, 16, False, 0, b'0x'),
    ord('r'): (_ET_ORDINAL, 10, True, 0, b''),
}

# 0.5 * 10**-k for k = 0..9: the rounding added before digits are extracted.
cdef double[10] _AR_ROUND = [5.0e-01, 5.0e-02, 5.0e-03, 5.0e-04, 5.0e-05,
                             5.0e-06, 5.0e-07, 5.0e-08, 5.0e-09, 5.0e-10]


cdef inline char _next_digit(long double *val, int *cnt) noexcept nogil:
    """Peel the leading decimal digit off *val (in [0, 10)); after *cnt
    significant digits only zeros come out, as in SQLite."""
    cdef int digit
    if cnt[0] <= 0:
        return 48
    cnt[0] -= 1
    digit = <int>val[0]
    val[0] = (val[0] - digit) * 10.0
    return <char>(48 + digit)


@cython.cdivision(True)
cdef bytes _format_real_bytes(double value, int xtype, int precision, int width,
                              char prefix_flag, bint alt, bint alt2, bint zeropad,
                              bint leftjust, char echar):
    """SQLite 3.40's %f/%e/%g conversion of ``value``, without the final
    space padding to ``width`` (zero padding is done here)."""
    cdef long double realvalue = value
    cdef long double scale
    cdef double rounder, rx
    cdef uint64_t u
    cdef int ex, idx, exp = 0, e2, nsd, i, npad
    cdef char prefix
    cdef bint flag_dp, flag_rtz
    cdef int64_t size, length
    cdef char *buf
    cdef char *p
    if precision < 0:
        precision = 6
    if precision > 100000000:
        precision = 100000000   # SQLITE_FP_PRECISION_LIMIT
    if realvalue < 0.0:
        realvalue = -realvalue
        prefix = 45     # '-'
    else:
        prefix = prefix_flag
    if xtype == _ET_GENERIC and precision > 0:
        precision -= 1
    idx = precision & 0xfff
    rounder = _AR_ROUND[idx % 10]
    while idx >= 10:
        rounder *= 1.0e-10
        idx -= 10
    if xtype == _ET_FLOAT:
        rx = <double>realvalue
        memcpy(&u, &rx, sizeof(u))
        ex = -1023 + <int>((u >> 52) & 0x7ff)
        if precision + (ex / 3) < 15:
            rounder += realvalue * 3e-16
        realvalue += rounder
    if isnan(<double>realvalue):
        return b"NaN"
    if realvalue > 0.0:
        scale = 1.0
        while realvalue >= 1e100 * scale and exp <= 350:
            scale *= 1e100
            exp += 100
        while realvalue >= 1e10 * scale and exp <= 350:
            scale *= 1e10
            exp += 10
        while realvalue >= 10.0 * scale and exp <= 350:
            scale *= 10.0
            exp += 1
        realvalue /= scale
        while realvalue < 1e-8:
            realvalue *= 1e8
            exp -= 8
        while realvalue < 1.0:
            realvalue *= 10.0
            exp -= 1
        if exp > 350:
            return (bytes([prefix]) if prefix else b"") + b"Inf"
    if xtype != _ET_FLOAT:
        realvalue += rounder
        if realvalue >= 10.0:
            realvalue *= 0.1
            exp += 1
    if xtype == _ET_GENERIC:
        flag_rtz = not alt
        if exp < -4 or exp > precision:
            xtype = _ET_EXP
        else:
            precision = precision - exp
            xtype = _ET_FLOAT
    else:
        flag_rtz = alt2
    e2 = 0 if xtype == _ET_EXP else exp
    size = <int64_t>(e2 if e2 > 0 else 0) + precision + width + 15
    if size > _MAX_LENGTH:
        _too_big()
    buf = <char *>malloc(size)
    if buf == NULL:
        raise MemoryError()
    try:
        p = buf
        nsd = 16 + alt2 * 10
        flag_dp = precision > 0 or alt or alt2
        if prefix:
            p[0] = prefix
            p += 1
        if e2 < 0:
            p[0] = 48
            p += 1
        else:
            while e2 >= 0:
                p[0] = _next_digit(&realvalue, &nsd)
                p += 1
                e2 -= 1
        if flag_dp:
            p[0] = 46   # '.'
            p += 1
        e2 += 1
        while e2 < 0:
            p[0] = 48
            p += 1
            precision -= 1
            e2 += 1
        while precision > 0:
            p[0] = _next_digit(&realvalue, &nsd)
            p += 1
            precision -= 1
        if flag_rtz and flag_dp:
            while (p - 1)[0] == 48:
                p -= 1
            if (p - 1)[0] == 46:
                if alt2:
                    p[0] = 48
                    p += 1
                else:
                    p -= 1
        if xtype == _ET_EXP:
            p[0] = echar
            p += 1
            if exp < 0:
                p[0] = 45
                exp = -exp
            else:
                p[0] = 43   # '+'
            p += 1
            if exp >= 100:
                p[0] = <char>(48 + exp / 100)
                p += 1
                exp %= 100
            p[0] = <char>(48 + exp / 10)
            p[1] = <char>(48 + exp % 10)
            p += 2
        length = p - buf
        if zeropad and not leftjust and length < width:
            # Zeros go between the sign and the digits.
            npad = width - length
            i = width
            while i >= npad:
                buf[i] = buf[i - npad]
                i -= 1
            i = 1 if prefix else 0
            while npad > 0:
                buf[i] = 48
                i += 1
                npad -= 1
            length = width
        return PyBytes_FromStringAndSize(buf, length)
    finally:
        free(buf)


cpdef str format_real(double value, str conv='g', int precision=-1, int width=0,
                      bint alt2=False, bint alt=False, str sign=''):
    """One real formatted as SQLite's printf does (``conv`` is 'f', 'e', 'E',
    'g' or 'G'; ``alt2`` is the '!' flag: 26 significant digits instead of 16).
    ``format_real(x, 'g', 15, alt2=True)`` is SQLite's '%!.15g'."""
    cdef tuple info = _CONVERSIONS[ord(conv)]
    cdef char prefix = ord(sign) if sign else 0
    return _format_real_bytes(value, info[0], precision, width, prefix, alt, alt2,
                              False, False, _DIGITS[<int>info[3]]).decode('ascii')


cdef class _PrintfArgs:
    """The SQL arguments after the format, consumed left to right; missing
    ones read as 0, 0.0 or NULL text, as in SQLite."""
    cdef tuple args
    cdef Py_ssize_t pos

    cdef object next_value(self):
        if self.pos >= len(self.args):
            return None
        v = self.args[self.pos]
        self.pos += 1
        return v

    cdef int64_t next_int(self) except? -1:
        return _value_int64(self.next_value())

    cdef double next_double(self) except? -1.0:
        return _value_double(self.next_value())

    cdef object next_text(self):
        """The argument as UTF-8 up to its first NUL, or None for NULL."""
        s = _value_cstr(self.next_value())
        return None if s is None else (<str>s).encode('utf-8')


cdef inline int _at(bytes f, Py_ssize_t i):
    return f[i] if i < len(f) else 0


cdef Py_ssize_t _utf8_continuations(bytes s):
    """Bytes of ``s`` that continue a UTF-8 character (width in characters
    for the '!' flag adds these back)."""
    cdef Py_ssize_t n = 0
    cdef unsigned char b
    for b in s:
        if (b & 0xC0) == 0x80:
            n += 1
    return n


def sql_printf(*args):
    """printf(FORMAT, ...) / format(): SQLite's own printf, with widths and
    precisions counted in bytes unless the '!' flag is given."""
    if not args:
        return None
    fmt = _value_cstr(args[0])
    if fmt is None:
        return None
    cdef bytes f = (<str>fmt).encode('utf-8')
    cdef _PrintfArgs pa = _PrintfArgs.__new__(_PrintfArgs)
    pa.args = args
    pa.pos = 1
    cdef bytearray out = bytearray()
    cdef Py_ssize_t i = 0, j, n = len(f)
    # SQLite's result is NULL when nothing was ever appended (an empty format,
    # or one that starts with an unknown conversion), '' when only empty
    # pieces were.
    cdef bint appended = False
    while i < n:
        if f[i] != 37:      # '%'
            appended = True
            j = f.find(b'%', i)
            if j < 0:
                out += f[i:]
                break
            out += f[i:j]
            i = j
        i += 1
        if i >= n:
            out += b'%'
            appended = True
            break
        try:
            i = _printf_one(f, i, pa, out)
        except _FnDataError:
            return None     # output over SQLite's length limit: NULL, not an error
        if i < 0:
            break       # an unknown conversion ends the output, as in SQLite
        appended = True
    if not appended:
        return None
    return out.decode('utf-8', 'replace')


cdef Py_ssize_t _printf_one(bytes f, Py_ssize_t i, _PrintfArgs pa, bytearray out) except -2:
    """Format the conversion whose flags start at f[i]; append it to ``out``.
    Returns the index after the conversion, or -1 to stop all output."""
    cdef int c = f[i]
    cdef bint leftjust = False, alt = False, alt2 = False, zeropad = False
    cdef bint thousands = False, done = False
    cdef char prefix_flag = 0
    cdef int64_t width = 0, precision = -1, w
    cdef uint64_t wx
    while True:
        if c == 45:       # '-'
            leftjust = True
        elif c == 43:     # '+'
            prefix_flag = 43
        elif c == 32:     # ' '
            prefix_flag = 32
        elif c == 35:     # '#'
            alt = True
        elif c == 33:     # '!'
            alt2 = True
        elif c == 48:     # '0'
            zeropad = True
        elif c == 44:     # ','
            thousands = True
        elif c == 108:    # 'l': length modifiers mean nothing for SQL values
            i += 1
            c = _at(f, i)
            if c == 108:
                i += 1
                c = _at(f, i)
            done = True
        elif 49 <= c <= 57:
            wx = c - 48
            i += 1
            c = _at(f, i)
            while 48 <= c <= 57:
                wx = (wx * 10 + c - 48) & 0xFFFFFFFF
                i += 1
                c = _at(f, i)
            width = wx & 0x7FFFFFFF
            if c != 46 and c != 108:
                done = True
            else:
                i -= 1
        elif c == 42:     # '*': width from the arguments
            w = <int>pa.next_int()
            if w < 0:
                leftjust = True
                w = -w if w >= -2147483647 else 0
            width = w
            c = _at(f, i + 1)
            if c != 46 and c != 108:
                i += 1
                done = True
        elif c == 46:     # '.': precision
            i += 1
            c = _at(f, i)
            if c == 42:
                w = <int>pa.next_int()
                if w < 0:
                    w = -w if w >= -2147483647 else -1
                precision = w
                i += 1
                c = _at(f, i)
            else:
                wx = 0
                while 48 <= c <= 57:
                    wx = (wx * 10 + c - 48) & 0xFFFFFFFF
                    i += 1
                    c = _at(f, i)
                precision = wx & 0x7FFFFFFF
            if c == 108:
                i -= 1
            else:
                done = True
        else:
            done = True
        if done:
            break
        i += 1
        c = _at(f, i)
        if c == 0:
            break
    info = _CONVERSIONS.get(c)
    if info is None:
        return -1
    if width > _MAX_LENGTH:
        _too_big()
    cdef int xtype = info[0]
    cdef bytes body
    if xtype == _ET_FLOAT or xtype == _ET_EXP or xtype == _ET_GENERIC:
        body = _format_real_bytes(pa.next_double(), xtype, precision, width, prefix_flag,
                                  alt, alt2, zeropad, leftjust, _DIGITS[<int>info[3]])
    elif xtype == _ET_STRING:
        body, width = _printf_string(pa.next_text(), precision, width, alt2)
    elif xtype == _ET_SQLESCAPE or xtype == _ET_SQLESCAPE2 or xtype == _ET_SQLESCAPE3:
        body, width = _printf_escape(pa.next_text(), xtype, precision, width, alt2)
    elif xtype == _ET_CHARX:
        body, width = _printf_char(pa.next_text(), precision, width, leftjust, out)
    elif xtype == _ET_PERCENT:
        body = b'%'
    elif xtype == _ET_SIZE:
        body = b''
        width = 0
    else:
        body = _printf_integer(pa.next_int(), info, precision, width, prefix_flag,
                               alt, zeropad, thousands and xtype == _ET_DECIMAL)
    _pad_into(out, body, width, leftjust)
    return i + 1


cdef inline void _pad_into(bytearray out, bytes body, int64_t width, bint leftjust):
    cdef int64_t pad = width - len(body)
    if pad > 0 and not leftjust:
        out += b' ' * pad
    out += body
    if pad > 0 and leftjust:
        out += b' ' * pad


cdef bytes _printf_integer(int64_t v, tuple info, int64_t precision, int64_t width,
                           char prefix_flag, bint alt, bint zeropad, bint thousands):
    """%d %i %u %x %X %o %p %r: digits, zero padding, thousands separators,
    sign and the '#' prefix, in SQLite's order."""
    cdef int xtype = info[0], base = info[1]
    cdef uint64_t mag
    cdef char prefix = 0
    cdef bytes digitset = _DIGITS[<int>info[3]:<int>info[3] + 16]
    if info[2]:
        if v < 0:
            mag = <uint64_t>0 - <uint64_t>v
            prefix = 45
        else:
            mag = <uint64_t>v
            prefix = prefix_flag
    else:
        mag = <uint64_t>v
    if mag == 0:
        alt = False
    if zeropad and precision < width - (prefix != 0):
        precision = width - (prefix != 0)
    if precision > _MAX_LENGTH:
        _too_big()
    cdef list rev = []
    if xtype == _ET_ORDINAL:
        d = mag % 10
        if d >= 4 or (mag // 10) % 10 == 1:
            d = 0
        rev.append(b"thstndrd"[d * 2 + 1:d * 2 + 2])
        rev.append(b"thstndrd"[d * 2:d * 2 + 1])
    while True:
        rev.append(digitset[mag % base:mag % base + 1])
        mag //= base
        if mag == 0:
            break
    cdef bytes digits = b''.join(reversed(rev))
    if precision > len(digits):
        digits = b'0' * (precision - len(digits)) + digits
    if thousands:
        digits = _group_thousands(digits)
    if prefix:
        digits = bytes([prefix]) + digits
    if alt and info[4]:
        digits = <bytes>info[4] + digits
    return digits


cdef bytes _group_thousands(bytes digits):
    cdef Py_ssize_t n = len(digits), head = (n - 1) % 3 + 1
    cdef list parts = [digits[:head]]
    cdef Py_ssize_t k
    for k in range(head, n, 3):
        parts.append(digits[k:k + 3])
    return b','.join(parts)


cdef tuple _printf_string(object s, int64_t precision, int64_t width, bint alt2):
    """%s: precision caps the bytes taken (characters with '!')."""
    cdef bytes body = b'' if s is None else <bytes>s
    if precision >= 0:
        if alt2:
            body = _first_chars(body, precision)
        else:
            body = body[:precision]
    if alt2 and width > 0:
        width += _utf8_continuations(body)
    return body, width


cdef bytes _first_chars(bytes s, int64_t count):
    """The bytes of the first ``count`` UTF-8 characters of ``s``."""
    cdef Py_ssize_t i = 0, n = len(s)
    while count > 0 and i < n:
        i += 1
        while i < n and (s[i] & 0xC0) == 0x80:
            i += 1
        count -= 1
    return s[:i]


cdef tuple _printf_escape(object s, int xtype, int64_t precision, int64_t width, bint alt2):
    """%q (double the quotes), %Q (also enclose in quotes; NULL unquoted) and
    %w (double the double quotes)."""
    cdef bytes q = b'"' if xtype == _ET_SQLESCAPE3 else b"'"
    cdef bint isnull = s is None
    cdef bytes text
    if isnull:
        text = b"NULL" if xtype == _ET_SQLESCAPE2 else b"(NULL)"
    else:
        text = <bytes>s
    if precision >= 0:
        text = _first_chars(text, precision) if alt2 else text[:precision]
    text = text.replace(q, q + q)
    if not isnull and xtype == _ET_SQLESCAPE2:
        text = q + text + q
    if alt2 and width > 0:
        width += _utf8_continuations(text)
    return text, width


cdef tuple _printf_char(object s, int64_t precision, int64_t width, bint leftjust,
                        bytearray out):
    """%c: the first character of the argument (a NUL byte for NULL or ''),
    repeated ``precision`` times."""
    cdef bytes ch
    if s is None or not s:
        ch = b'\x00'
    else:
        ch = _first_chars(<bytes>s, 1)
    if precision > 1:
        if precision > _MAX_LENGTH:
            _too_big()
        width -= precision - 1
        if width > 1 and not leftjust:
            out += b' ' * (width - 1)
            width = 0
        out += ch * (precision - 1)
    if width > 0:
        width += _utf8_continuations(ch)
    return ch, width


# ---------------------------------------------------------------------------
# Aggregates
# ---------------------------------------------------------------------------

cdef class Aggregate:
    """State of one aggregate over one group.

    The executor calls ``step(v)`` once per row - with the argument value, or
    a tuple of the values for multi-argument aggregates (group_concat(X, SEP))
    - then ``final()`` once.  ``step_py``/``final_py`` are the same from Python.
    """

    cdef int step(self, object v) except -1:
        raise NotImplementedError

    cdef object final(self):
        raise NotImplementedError

    def step_py(self, *args):
        """Feed one row's argument(s)."""
        self.step(args[0] if len(args) == 1 else args)

    def final_py(self):
        """The aggregate's result."""
        return self.final()


cdef class CountStar(Aggregate):
    """count(*): rows, NULL or not."""
    cdef int64_t n

    cdef int step(self, object v) except -1:
        self.n += 1
        return 0

    cdef object final(self):
        return self.n


cdef class Count(Aggregate):
    """count(X): non-NULL values."""
    cdef int64_t n

    cdef int step(self, object v) except -1:
        if v is not None:
            self.n += 1
        return 0

    cdef object final(self):
        return self.n


cdef class _SumBase(Aggregate):
    """SQLite's SumCtx: an exact int64 sum while every input is an integer,
    and a plain double sum of everything alongside."""
    cdef double rsum
    cdef int64_t isum
    cdef int64_t cnt
    cdef bint overflow
    cdef bint approx

    cdef void step_int(self, int64_t i) noexcept:
        """``step`` for an integer value (the executor's path for stored integers)."""
        self.cnt += 1
        self.rsum += <double>i
        if not (self.approx or self.overflow):
            if (i > 0 and self.isum > INT64_MAX - i) or (i < 0 and self.isum < INT64_MIN - i):
                self.approx = self.overflow = True
            else:
                self.isum += i

    cdef void step_double(self, double d) noexcept:
        """``step`` for a REAL value."""
        self.cnt += 1
        self.rsum += d
        self.approx = True

    cdef int step(self, object v) except -1:
        t = type(v)
        if t is int and _v_fits_i64(v):
            self.step_int(<int64_t>v)
        elif t is float:
            self.step_double(<double>v)
        elif v is not None:
            n = _numeric_value(v)
            if type(n) is int:
                return self.step(n)
            # Text that is not wholly numeric, and blobs, add their numeric prefix.
            self.cnt += 1
            self.rsum += _value_double(v if n is None else n)
            self.approx = True
        return 0


cdef class Sum(_SumBase):
    """sum(X): an integer if every input was one (overflow is an error), a
    real otherwise, NULL over no non-NULL input."""

    cdef object final(self):
        if self.cnt == 0:
            return None
        if self.overflow:
            raise _FnDataError("integer overflow")
        if self.approx:
            return _nan_to_null(self.rsum)
        return self.isum


cdef inline object _nan_to_null(double r):
    """SQLite never yields NaN: inf + -inf and the like come back as NULL."""
    return None if r != r else r


cdef class Total(_SumBase):
    """total(X): the sum as a real, 0.0 over no input."""

    cdef object final(self):
        return _nan_to_null(self.rsum)


cdef class Avg(_SumBase):
    """avg(X): the real mean of the non-NULL values, NULL over none."""

    cdef object final(self):
        if self.cnt == 0:
            return None
        return _nan_to_null(self.rsum / <double>self.cnt)


cdef class _MinMax(Aggregate):
    """min(X)/max(X): the least/greatest non-NULL value in SQLite's order
    (under the collation ``coll``); the first one wins ties.  ``improved``
    tells whether the latest row became the best (SQLite takes bare columns
    from that row)."""
    cdef object best
    cdef int coll
    cdef bint is_max
    cdef readonly bint improved

    def __init__(self, int coll=0):
        self.coll = coll

    cdef int step(self, object v) except -1:
        cdef int c
        self.improved = False
        if v is None:
            return 0
        if self.best is None:
            self.best = v
            self.improved = True
            return 0
        c = v_compare(self.best, v) if self.coll == 0 else v_compare_coll(self.best, v, self.coll)
        if (c < 0) if self.is_max else (c > 0):
            self.best = v
            self.improved = True
        return 0

    cdef object final(self):
        return self.best


cdef class Min(_MinMax):
    """min(X) over a group."""


cdef class Max(_MinMax):
    """max(X) over a group."""

    def __init__(self, int coll=0):
        self.coll = coll
        self.is_max = True


cdef class GroupConcat(Aggregate):
    """group_concat(X[, SEP]) / string_agg(X, SEP): the text of the non-NULL
    values; each is preceded (but the first) by that row's separator, ','
    by default.  NULL over no non-NULL value."""
    cdef list parts
    cdef bint started

    def __init__(self):
        self.parts = []

    cdef int step(self, object v) except -1:
        if type(v) is tuple:
            x = (<tuple>v)[0]
            sep = (<tuple>v)[1]
        else:
            x = v
            sep = ','
        if x is None:
            return 0
        if self.started:
            if sep is not None:
                self.parts.append(sep if type(sep) is str else _value_text(sep))
        else:
            self.started = True
        self.parts.append(x if type(x) is str else _value_text(x))
        return 0

    cdef object final(self):
        if not self.started:
            return None
        return ''.join(self.parts)


cdef object _distinct_key(object v, int coll):
    """What makes two values the same for DISTINCT.  Python's equality already
    matches SQLite's between numbers (1 == 1.0) and keeps text, blobs and
    numbers apart; only text under NOCASE/RTRIM needs folding."""
    if coll == 0 or type(v) is not str:
        return v
    if coll == _COLL_NOCASE:
        return ('\x00nocase', (<str>v).translate(_ASCII_LOWER))
    if coll == _COLL_RTRIM:
        return ('\x00rtrim', (<str>v).rstrip(' '))
    return v


cdef class DistinctAggregate(Aggregate):
    """agg(DISTINCT X): feeds ``inner`` each distinct non-NULL value once (the
    first of equal values, so sum(DISTINCT) of 1 and 1.0 is the integer 1)."""
    cdef Aggregate inner
    cdef set seen
    cdef int coll

    def __init__(self, Aggregate inner, int coll=0):
        self.inner = inner
        self.seen = set()
        self.coll = coll

    cdef int step(self, object v) except -1:
        if v is None:
            return 0
        key = _distinct_key(v, self.coll)
        if key in self.seen:
            return 0
        self.seen.add(key)
        return self.inner.step(v)

    cdef object final(self):
        return self.inner.final()


cdef class AggregateFunction:
    """One aggregate SQL function: builds a fresh state per group.

    Calling it with no arguments returns a new ``Aggregate`` (so it can serve
    as a zero-argument factory); ``factory(nargs, star, coll)`` returns such a
    factory for one particular call (count(*) vs count(X), a collation)."""
    cdef readonly str name
    cdef readonly object cls
    cdef readonly int min_args
    cdef readonly int max_args

    def __init__(self, str name, object cls, int min_args, int max_args):
        self.name = name
        self.cls = cls
        self.min_args = min_args
        self.max_args = max_args

    cpdef bint accepts(self, Py_ssize_t nargs):
        return nargs >= self.min_args and (self.max_args < 0 or nargs <= self.max_args)

    cpdef check_arity(self, Py_ssize_t nargs):
        if not self.accepts(nargs):
            raise _FnProgrammingError(f"wrong number of arguments to function {self.name}()")

    def __call__(self):
        return self.cls()

    def factory(self, Py_ssize_t nargs=1, bint star=False, int coll=0, bint distinct=False):
        """A zero-argument callable making states for one call of this
        aggregate: count(*) (or count()) gets CountStar, min/max compare
        under ``coll``, ``distinct`` wraps each state in DistinctAggregate."""
        self.check_arity(0 if star else nargs)
        cls = self.cls
        if cls is Count and (star or nargs == 0):
            cls = CountStar
        if coll and (cls is Min or cls is Max):
            make = lambda: cls(coll)
        else:
            make = cls
        if distinct:
            return lambda: DistinctAggregate(make(), coll)
        return make

    def __repr__(self) -> str:
        return f"AggregateFunction({self.name!r}, {self.min_args}..{self.max_args})"


AGGREGATE_FUNCTIONS = {
    'count': AggregateFunction('count', Count, 0, 1),
    'sum': AggregateFunction('sum', Sum, 1, 1),
    'total': AggregateFunction('total', Total, 1, 1),
    'avg': AggregateFunction('avg', Avg, 1, 1),
    'min': AggregateFunction('min', Min, 1, 1),
    'max': AggregateFunction('max', Max, 1, 1),
    'group_concat': AggregateFunction('group_concat', GroupConcat, 1, 2),
    'string_agg': AggregateFunction('string_agg', GroupConcat, 2, 2),
}


# ---------------------------------------------------------------------------
# Scalar registry
# ---------------------------------------------------------------------------

_scalar('coalesce', fn_coalesce, 2, -1)
_scalar('ifnull', fn_ifnull, 2, 2)
_scalar('nullif', fn_nullif, 2, 2)
_scalar('iif', fn_iif, 3, 3)
_scalar('likelihood', fn_likelihood, 2, 2)
_scalar(('likely', 'unlikely'), fn_likely, 1, 1)
_scalar('typeof', fn_typeof, 1, 1)
_scalar('length', fn_length, 1, 1)
_scalar('octet_length', fn_octet_length, 1, 1)
_scalar('lower', fn_lower, 1, 1)
_scalar('upper', fn_upper, 1, 1)
_scalar(('substr', 'substring'), fn_substr, 2, 3)
_scalar('trim', fn_trim, 1, 2)
_scalar('ltrim', fn_ltrim, 1, 2)
_scalar('rtrim', fn_rtrim, 1, 2)
_scalar('replace', fn_replace, 3, 3)
_scalar('instr', fn_instr, 2, 2)
_scalar('hex', fn_hex, 1, 1)
_scalar('unhex', fn_unhex, 1, 2)
_scalar('quote', fn_quote, 1, 1)
_scalar('char', fn_char, 0, -1)
_scalar('unicode', fn_unicode, 1, 1)
_scalar('zeroblob', fn_zeroblob, 1, 1)
_scalar('random', fn_random, 0, 0, False)
_scalar('randomblob', fn_randomblob, 1, 1, False)
_scalar(('printf', 'format'), sql_printf, 0, -1)
_scalar('min', fn_min, 2, -1)
_scalar('max', fn_max, 2, -1)
_scalar('concat', fn_concat, 1, -1)
_scalar('concat_ws', fn_concat_ws, 2, -1)
_scalar('abs', fn_abs, 1, 1)
_scalar('sign', fn_sign, 1, 1)
_scalar('round', fn_round, 1, 2)
_scalar(('ceil', 'ceiling'), _rounding(c_ceil), 1, 1)
_scalar('floor', _rounding(c_floor), 1, 1)
_scalar('trunc', _rounding(c_trunc), 1, 1)
_scalar('ln', fn_ln, 1, 1)
_scalar('log10', fn_log10, 1, 1)
_scalar('log2', fn_log2, 1, 1)
_scalar('log', fn_log, 1, 2)
_scalar('pi', fn_pi, 0, 0)
_scalar('exp', _math1(c_exp), 1, 1)
_scalar('sqrt', _math1(c_sqrt), 1, 1)
_scalar('sin', _math1(c_sin), 1, 1)
_scalar('cos', _math1(c_cos), 1, 1)
_scalar('tan', _math1(c_tan), 1, 1)
_scalar('asin', _math1(c_asin), 1, 1)
_scalar('acos', _math1(c_acos), 1, 1)
_scalar('atan', _math1(c_atan), 1, 1)
_scalar('sinh', _math1(c_sinh), 1, 1)
_scalar('cosh', _math1(c_cosh), 1, 1)
_scalar('tanh', _math1(c_tanh), 1, 1)
_scalar('asinh', _math1(c_asinh), 1, 1)
_scalar('acosh', _math1(c_acosh), 1, 1)
_scalar('atanh', _math1(c_atanh), 1, 1)
_scalar('radians', _math1(_deg_to_rad), 1, 1)
_scalar('degrees', _math1(_rad_to_deg), 1, 1)
_scalar('atan2', _math2(c_atan2), 2, 2)
_scalar(('pow', 'power'), _math2(c_pow), 2, 2)
_scalar('mod', _math2(c_fmod), 2, 2)


# ---------------------------------------------------------------------------
# Date and time functions (SQLite 3.40's date.c): date, time, datetime,
# julianday, unixepoch, strftime.  Times are held as SQLite does, as a Julian
# day number in milliseconds (iJD) and/or broken-down fields.
# ---------------------------------------------------------------------------
import struct as _struct
import time as _time


# The largest valid iJD: 9999-12-31 23:59:59.999.
cdef int64_t _MAX_IJD = 464269060799999


cdef double _as_float32(double x):
    # SQLite keeps the "+NNN unit" limits and factors in C floats.
    return _struct.unpack('f', _struct.pack('f', x))[0]


# (name, largest |NNN|, milliseconds per unit / 1000) of "+NNN unit" modifiers.
cdef list _XFORMS = [(u, _as_float32(lim), _as_float32(mul)) for u, lim, mul in [
    ('second', 4.6427e+14, 1.0), ('minute', 7.7379e+12, 60.0),
    ('hour', 1.2897e+11, 3600.0), ('day', 5373485.0, 86400.0),
    ('month', 176546.0, 2592000.0), ('year', 14713.0, 31536000.0)]]


cdef inline bint _is_space(int c) noexcept:
    return c == 32 or 9 <= c <= 13


cdef inline bint _is_digit(int c) noexcept:
    return 48 <= c <= 57


cdef int _atof_full(bytes z, double *out):
    """sqlite3AtoF's return code on all of z (> 0: z is wholly a number)."""
    return _v_atof(<const unsigned char *>(<char *>z), len(z), out)


cdef class _DateTime:
    """SQLite's DateTime: a Julian day in ms and/or Y-M-D h:m:s fields."""
    cdef int64_t ijd
    cdef int Y, M, D, h, m, tz
    cdef double s
    cdef bint valid_jd, raw_s, valid_ymd, valid_hms, valid_tz, is_error
    cdef bint tz_set       # a timezone suffix was given: 'utc' is then a no-op

    @cython.cdivision(True)
    cdef void compute_jd(self):
        cdef int Y, M, D, A, B, X1, X2
        if self.valid_jd:
            return
        if self.valid_ymd:
            Y, M, D = self.Y, self.M, self.D
        else:
            Y, M, D = 2000, 1, 1
        if Y < -4713 or Y > 9999 or self.raw_s:
            self.error()
            return
        if M <= 2:
            Y -= 1
            M += 12
        A = Y // 100
        B = 2 - A + (A // 4)
        X1 = 36525 * (Y + 4716) // 100
        X2 = 306001 * (M + 1) // 10000
        self.ijd = <int64_t>((X1 + X2 + D + B - 1524.5) * 86400000)
        self.valid_jd = True
        if self.valid_hms:
            self.ijd += self.h * 3600000 + self.m * 60000 + <int64_t>(self.s * 1000 + 0.5)
            if self.valid_tz:
                self.ijd -= self.tz * 60000
                self.valid_ymd = self.valid_hms = self.valid_tz = False

    cdef _DateTime copy(self):
        cdef _DateTime c = _DateTime()
        c.ijd, c.Y, c.M, c.D, c.h, c.m, c.tz, c.s = self.ijd, self.Y, self.M, self.D, self.h, self.m, self.tz, self.s
        c.valid_jd, c.raw_s, c.valid_ymd, c.valid_hms = self.valid_jd, self.raw_s, self.valid_ymd, self.valid_hms
        c.valid_tz, c.is_error, c.tz_set = self.valid_tz, self.is_error, self.tz_set
        return c

    cdef void reset(self):
        self.ijd = 0
        self.Y = self.M = self.D = self.h = self.m = self.tz = 0
        self.s = 0.0
        self.valid_jd = self.raw_s = self.valid_ymd = self.valid_hms = False
        self.valid_tz = self.is_error = self.tz_set = False

    cdef void error(self):
        self.reset()
        self.is_error = True

    @cython.cdivision(True)
    cdef void compute_ymd(self, bint check=True):
        cdef int Z, A, B, C, D, E, X1
        if self.valid_ymd:
            return
        if not self.valid_jd:
            self.Y, self.M, self.D = 2000, 1, 1
        elif check and not (0 <= self.ijd <= _MAX_IJD):
            self.error()
            return
        else:
            Z = <int>((self.ijd + 43200000) // 86400000)
            A = <int>((Z - 1867216.25) / 36524.25)
            A = Z + 1 + A - (A // 4)
            B = A + 1524
            C = <int>((B - 122.1) / 365.25)
            D = (36525 * (C & 32767)) // 100
            E = <int>((B - D) / 30.6001)
            X1 = <int>(30.6001 * E)
            self.D = B - D - X1
            self.M = E - 1 if E < 14 else E - 13
            self.Y = C - 4716 if self.M > 2 else C - 4715
        self.valid_ymd = True

    @cython.cdivision(True)
    cdef void compute_hms(self):
        cdef int s
        if self.valid_hms:
            return
        self.compute_jd()
        s = <int>((self.ijd + 43200000) % 86400000)
        self.s = s / 1000.0
        s = <int>self.s
        self.s -= s
        self.h = s // 3600
        s -= self.h * 3600
        self.m = s // 60
        self.s += s - self.m * 60
        self.raw_s = False
        self.valid_hms = True

    cdef void clear_fields(self):
        self.valid_ymd = self.valid_hms = self.valid_tz = False

    cdef void set_raw_number(self, double r):
        self.s = r
        self.raw_s = True
        if 0.0 <= r < 5373484.5:
            self.ijd = <int64_t>(r * 86400000.0 + 0.5)
            self.valid_jd = True


cdef int _get_digits(bytes z, Py_ssize_t i, int ndigits, int lo, int hi, int sep) except -2:
    """One fixed-width field of SQLite's getDigits(): ``ndigits`` digits at
    z[i] in [lo, hi], followed by ``sep`` (0: anything).  -1 if absent."""
    cdef int val = 0, k
    for k in range(ndigits):
        if i + k >= len(z) or not _is_digit(z[i + k]):
            return -1
        val = val * 10 + z[i + k] - 48
    if val < lo or val > hi:
        return -1
    if sep and (i + ndigits >= len(z) or z[i + ndigits] != sep):
        return -1
    return val


cdef bint _parse_timezone(bytes z, Py_ssize_t i, _DateTime p):
    """Trailing '[+-]HH:MM' or 'Z' after a time; True on failure."""
    cdef int sgn, hr, mn, c
    cdef Py_ssize_t n = len(z)
    while i < n and _is_space(z[i]):
        i += 1
    p.tz = 0
    if i >= n:
        return False
    c = z[i]
    if c == 45 or c == 43:
        sgn = -1 if c == 45 else 1
        i += 1
        hr = _get_digits(z, i, 2, 0, 14, 58)
        mn = _get_digits(z, i + 3, 2, 0, 59, 0)
        if hr < 0 or mn < 0:
            return True
        i += 5
        p.tz = sgn * (mn + hr * 60)
    elif c == 90 or c == 122:    # 'Z', 'z'
        i += 1
    else:
        return True
    p.tz_set = True
    while i < n and _is_space(z[i]):
        i += 1
    return i < n


cdef bint _parse_hms(bytes z, Py_ssize_t i, _DateTime p):
    """'HH:MM[:SS[.fff]][tz]' at z[i]; True on failure."""
    cdef int h, m, s = 0
    cdef double ms = 0.0, scale = 1.0
    cdef Py_ssize_t n = len(z)
    h = _get_digits(z, i, 2, 0, 24, 58)
    m = _get_digits(z, i + 3, 2, 0, 59, 0)
    if h < 0 or m < 0:
        return True
    i += 5
    if i < n and z[i] == 58:
        s = _get_digits(z, i + 1, 2, 0, 59, 0)
        if s < 0:
            return True
        i += 3
        if i + 1 < n and z[i] == 46 and _is_digit(z[i + 1]):
            i += 1
            while i < n and _is_digit(z[i]):
                ms = ms * 10.0 + z[i] - 48
                scale *= 10.0
                i += 1
            ms /= scale
    p.valid_jd = False
    p.raw_s = False
    p.valid_hms = True
    p.h, p.m, p.s = h, m, s + ms
    if _parse_timezone(z, i, p):
        return True
    p.valid_tz = p.tz != 0
    return False


cdef bint _parse_ymd(bytes z, _DateTime p):
    """'[-]YYYY-MM-DD[( |T)+time]'; True on failure."""
    cdef Py_ssize_t i = 0, n = len(z)
    cdef bint neg = False
    cdef int Y, M, D
    if n and z[0] == 45:
        neg = True
        i = 1
    Y = _get_digits(z, i, 4, 0, 9999, 45)
    M = _get_digits(z, i + 5, 2, 1, 12, 45)
    D = _get_digits(z, i + 8, 2, 1, 31, 0)
    if Y < 0 or M < 0 or D < 0:
        return True
    i += 10
    while i < n and (_is_space(z[i]) or z[i] == 84):   # 'T'
        i += 1
    if not _parse_hms(z, i, p):
        pass
    elif i >= n:
        p.valid_hms = False
    else:
        return True
    p.valid_jd = False
    p.valid_ymd = True
    p.Y = -Y if neg else Y
    p.M, p.D = M, D
    if p.valid_tz:
        p.compute_jd()
    return False


cdef void _set_now(_DateTime p):
    p.ijd = <int64_t>(_time.time() * 1000.0) + 210866760000000
    p.valid_jd = True


cdef bint _parse_date_or_time(bytes z, _DateTime p):
    cdef double r
    if not _parse_ymd(z, p):
        return False
    if not _parse_hms(z, 0, p):
        return False
    if z.lower() == b'now':
        _set_now(p)
        return False
    if _atof_full(z, &r) > 0:
        p.set_raw_number(r)
        return False
    return True


@cython.cdivision(True)
cdef bint _apply_modifier(bytes z, _DateTime p, int idx) except -1:
    """One modifier; True if it is not a valid one here (NULL result)."""
    cdef double r, rounder, limit, mul
    cdef int64_t Z, day
    cdef int n, x, y
    cdef Py_ssize_t k, zn = len(z)
    cdef bytes low = z.lower()
    cdef _DateTime tx
    if not z:
        return True
    c = low[0]
    if low == b'auto':
        if idx > 1:
            return True
        if not p.raw_s or p.valid_jd:
            p.raw_s = False
            return False
        if -210866760000.0 <= p.s <= 253402300799.0:   # Julian day 0 .. 9999-12-31
            r = p.s * 1000.0 + 210866760000000.0
            p.clear_fields()
            p.ijd = <int64_t>(r + 0.5)
            p.valid_jd = True
            p.raw_s = False
            return False
        return True
    if low == b'julianday':
        if idx > 1:
            return True
        if p.valid_jd and p.raw_s:
            p.raw_s = False
            return False
        return True
    if low == b'unixepoch' and p.raw_s:
        if idx > 1:
            return True
        r = p.s * 1000.0 + 210866760000000.0
        if 0.0 <= r < 464269060800000.0:
            p.clear_fields()
            p.ijd = <int64_t>(r + 0.5)
            p.valid_jd = True
            p.raw_s = False
            return False
        return True
    if low == b'localtime':
        _to_localtime(p)
        return False
    if low == b'utc':
        if not p.tz_set:
            _to_utc(p)
        return False
    if low.startswith(b'weekday '):
        if _atof_full(low[8:], &r) > 0 and r == <int>r and r >= 0 and r < 7:
            n = <int>r
            p.compute_ymd()
            p.compute_hms()
            p.valid_tz = False
            p.valid_jd = False
            p.compute_jd()
            Z = ((p.ijd + 129600000) // 86400000) % 7
            if Z > n:
                Z -= 7
            p.ijd += (n - Z) * 86400000
            p.clear_fields()
            return False
        return True
    if low.startswith(b'start of '):
        if not p.valid_jd and not p.valid_ymd and not p.valid_hms:
            return True
        p.compute_ymd()
        p.valid_hms = True
        p.h = p.m = 0
        p.s = 0.0
        p.raw_s = False
        p.valid_tz = False
        p.valid_jd = False
        rest = low[9:]
        if rest == b'month':
            p.D = 1
            return False
        if rest == b'year':
            p.M = 1
            p.D = 1
            return False
        return rest != b'day'
    if c == 43 or c == 45 or _is_digit(c):
        k = 1
        while k < zn and z[k] != 0 and z[k] != 58 and not _is_space(z[k]):
            k += 1
        if _atof_full(z[:k], &r) <= 0:
            return True
        if k < zn and z[k] == 58:
            # (+|-)HH:MM[:SS.FFF]: shift by a time of day.
            tx = _DateTime()
            if _parse_hms(z, 0 if _is_digit(c) else 1, tx):
                return True
            tx.compute_jd()
            tx.ijd -= 43200000
            day = tx.ijd // 86400000
            tx.ijd -= day * 86400000
            if c == 45:
                tx.ijd = -tx.ijd
            p.compute_jd()
            p.clear_fields()
            p.ijd += tx.ijd
            return False
        rest = low[k:].lstrip(b' \t\n\v\f\r')
        if len(rest) > 10 or len(rest) < 3:
            return True
        if rest.endswith(b's'):
            rest = rest[:-1]
        p.compute_jd()
        rounder = -0.5 if r < 0 else 0.5
        for unit, limit, mul in _XFORMS:
            if rest == unit.encode() and -limit < r < limit:
                if unit == 'month':
                    p.compute_ymd()
                    p.compute_hms()
                    p.M += <int>r
                    x = (p.M - 1) // 12 if p.M > 0 else (p.M - 12) // 12
                    p.Y += x
                    p.M -= x * 12
                    p.valid_jd = False
                    r -= <int>r
                elif unit == 'year':
                    y = <int>r
                    p.compute_ymd()
                    p.compute_hms()
                    p.Y += y
                    p.valid_jd = False
                    r -= <int>r
                p.compute_jd()
                p.ijd += <int64_t>(r * 1000.0 * mul + rounder)
                p.clear_fields()
                return False
        p.clear_fields()
        return True
    return True


@cython.cdivision(True)
cdef int _to_localtime(_DateTime p) except -1:
    """Turn p (UTC) into local broken-down time with C's localtime().  Times
    outside 1970-2038 are shifted by whole years into it and back, as SQLite
    does; an erroneous p is judged as 2000-01-01 (SQLite clears the error)."""
    cdef _DateTime x
    cdef int year_diff = 0
    cdef int64_t t
    p.compute_jd()
    if p.ijd < <int64_t>210866760000000 or p.ijd > <int64_t>213014145600000:
        x = p.copy()
        x.compute_ymd()
        x.compute_hms()
        year_diff = (2000 + x.Y % 4) - x.Y
        x.Y += year_diff
        x.valid_jd = False
        x.compute_jd()
        t = x.ijd // 1000 - <int64_t>210866760000
    else:
        t = p.ijd // 1000 - <int64_t>210866760000
    try:
        lt = _time.localtime(t)
    except (OverflowError, OSError, ValueError) as e:
        raise _FnDataError("local time unavailable") from e
    p.Y = lt.tm_year - year_diff
    p.M, p.D, p.h, p.m = lt.tm_mon, lt.tm_mday, lt.tm_hour, lt.tm_min
    p.s = lt.tm_sec + (p.ijd % 1000) * 0.001
    p.valid_ymd = p.valid_hms = True
    p.valid_jd = p.raw_s = p.valid_tz = p.is_error = False
    return 0


cdef int _to_utc(_DateTime p) except -1:
    """'utc': the UTC time whose local time is p, found by correcting a guess
    (at most four rounds, as SQLite)."""
    cdef int64_t orig, guess, err = 0
    cdef int cnt = 0
    cdef _DateTime probe
    p.compute_jd()
    guess = orig = p.ijd
    while True:
        probe = _DateTime()
        guess -= err
        probe.ijd = guess
        probe.valid_jd = True
        _to_localtime(probe)
        probe.compute_jd()
        err = probe.ijd - orig
        if not err or cnt >= 3:
            break
        cnt += 1
    p.reset()
    p.ijd = guess
    p.valid_jd = True
    p.tz_set = True
    return 0


cdef _DateTime _is_date(tuple args):
    """Parse the time value and modifiers; None when the result is NULL."""
    cdef _DateTime p = _DateTime()
    cdef Py_ssize_t i
    if not args:
        _set_now(p)
        return p
    v = args[0]
    if type(v) is int or type(v) is float:
        p.set_raw_number(_value_double(v))
    else:
        z = _value_cstr(v)
        if z is None or _parse_date_or_time((<str>z).encode('utf-8'), p):
            return None
    for i in range(1, len(args)):
        z = _value_cstr(args[i])
        if z is None or _apply_modifier((<str>z).encode('utf-8'), p, <int>i):
            return None
    p.compute_jd()
    if p.is_error or not (0 <= p.ijd <= _MAX_IJD):
        return None
    return p


cdef str _ymd_text(_DateTime p):
    """'YYYY-MM-DD'; a year before 1 keeps four digits after its sign."""
    if p.Y < 0:
        return f"-{-p.Y:04d}-{p.M:02d}-{p.D:02d}"
    return f"{p.Y:04d}-{p.M:02d}-{p.D:02d}"


def fn_julianday(*args):
    """julianday(TIME, MOD...): the Julian day number, a real."""
    cdef _DateTime p = _is_date(args)
    return None if p is None else p.ijd / 86400000.0


@cython.cdivision(True)
def fn_unixepoch(*args):
    """unixepoch(TIME, MOD...): seconds since 1970-01-01, an integer."""
    cdef _DateTime p = _is_date(args)
    return None if p is None else p.ijd // 1000 - <int64_t>210866760000


def fn_date(*args):
    """date(TIME, MOD...): 'YYYY-MM-DD'."""
    cdef _DateTime p = _is_date(args)
    if p is None:
        return None
    p.compute_ymd()
    return _ymd_text(p)


def fn_time(*args):
    """time(TIME, MOD...): 'HH:MM:SS'."""
    cdef _DateTime p = _is_date(args)
    if p is None:
        return None
    p.compute_hms()
    return f"{p.h:02d}:{p.m:02d}:{<int>p.s:02d}"


def fn_datetime(*args):
    """datetime(TIME, MOD...): 'YYYY-MM-DD HH:MM:SS'."""
    cdef _DateTime p = _is_date(args)
    if p is None:
        return None
    p.compute_ymd()
    p.compute_hms()
    return f"{_ymd_text(p)} {p.h:02d}:{p.m:02d}:{<int>p.s:02d}"


@cython.cdivision(True)
def fn_strftime(*args):
    """strftime(FORMAT, TIME, MOD...): %d %f %H %j %J %m %M %s %S %w %W %Y %%;
    any other conversion makes the result NULL."""
    cdef _DateTime p, y
    cdef int nday, wd
    cdef Py_ssize_t i, n
    cdef double sec
    if not args:
        return None
    fmt = _value_cstr(args[0])
    if fmt is None:
        return None
    p = _is_date(args[1:])
    if p is None:
        return None
    p.compute_jd()
    p.compute_ymd()
    p.compute_hms()
    cdef list out = []
    cdef str f = <str>fmt
    n = len(f)
    i = 0
    while i < n:
        ch = f[i]
        if ch != '%':
            out.append(ch)
            i += 1
            continue
        i += 1
        code = f[i] if i < n else ''
        i += 1
        if code == 'd':
            out.append(f"{p.D:02d}")
        elif code == 'f':
            sec = p.s if p.s <= 59.999 else 59.999
            out.append(sql_printf('%06.3f', sec))
        elif code == 'H':
            out.append(f"{p.h:02d}")
        elif code == 'W' or code == 'j':
            y = _DateTime()
            y.Y, y.M, y.D = p.Y, 1, 1
            y.h, y.m, y.s = p.h, p.m, p.s
            y.valid_ymd = y.valid_hms = True
            y.compute_jd()
            nday = <int>((p.ijd - y.ijd + 43200000) // 86400000)
            if code == 'W':
                wd = <int>(((p.ijd + 43200000) // 86400000) % 7)
                out.append(f"{(nday + 7 - wd) // 7:02d}")
            else:
                out.append(f"{nday + 1:03d}")
        elif code == 'J':
            out.append(sql_printf('%.16g', p.ijd / 86400000.0))
        elif code == 'm':
            out.append(f"{p.M:02d}")
        elif code == 'M':
            out.append(f"{p.m:02d}")
        elif code == 's':
            out.append(str(p.ijd // 1000 - <int64_t>210866760000))
        elif code == 'S':
            out.append(f"{<int>p.s:02d}")
        elif code == 'w':
            out.append(str(((p.ijd + 129600000) // 86400000) % 7))
        elif code == 'Y':
            out.append(f"{p.Y:04d}")
        elif code == '%':
            out.append('%')
        else:
            return None
    return ''.join(out)


# Not deterministic: 'now' and the 'localtime'/'utc' modifiers depend on when
# and where the statement runs, so calls must not be folded into cached plans.
_scalar('date', fn_date, 0, -1, False)
_scalar('time', fn_time, 0, -1, False)
_scalar('datetime', fn_datetime, 0, -1, False)
_scalar('julianday', fn_julianday, 0, -1, False)
_scalar('unixepoch', fn_unixepoch, 0, -1, False)
_scalar('strftime', fn_strftime, 1, -1, False)
_scalar('regexp', fn_regexp, 2, 2)
_scalar('regexp_replace', fn_regexp_replace, 3, 3)
