# values.pxi - included by _core.pyx
"""SQLite value semantics over Python values.

The executor evaluates SQL expressions over five kinds of Python value -
None (NULL), int (INTEGER, int64), float (REAL), str (TEXT) and bytes (BLOB) -
and must give exactly the answers of the SQLite build behind Python's
``sqlite3`` module (3.40, compiled with LIKE_DOESNT_MATCH_BLOBS).  This part
holds the primitives it calls:

* text -> number parsing that reproduces SQLite's own parsers bit for bit
  (``_v_atof`` uses 80-bit long double like ``sqlite3AtoF``; ``_v_atoi64``
  mirrors ``sqlite3Atoi64``'s prefix and overflow rules),
* REAL -> text rendering (SQLite's ``%!.15g``), also with long double,
* column affinity, CAST, comparison (with BINARY / NOCASE / RTRIM),
  arithmetic, bitwise operators, truth values, LIKE and GLOB.

Every operation has a C-level ``v_*`` function (for the executor, no Python
call overhead) and a Python-visible ``sql_*`` / named wrapper (for tests and
for Python callers).
"""

from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from cpython.float cimport PyFloat_FromDouble, PyFloat_AS_DOUBLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint64_t, uint32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcmp
from libc.math cimport INFINITY
cimport cython

from terndb.engine.errors import DataError as _VDataError

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    int PyUnicode_KIND(object s)
    void* PyUnicode_DATA(object s)
    Py_UCS4 PyUnicode_READ(int kind, void* data, Py_ssize_t index) nogil
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    object PyUnicode_FromStringAndSize(const char* s, Py_ssize_t size)
    object PyUnicode_Concat(object left, object right)
    Py_ssize_t PyUnicode_FindChar(object s, Py_UCS4 ch, Py_ssize_t start, Py_ssize_t end, int direction) except -2
    int PyUnicode_Compare(object left, object right) except? -1

cdef extern from *:
    """
    /* Overflow-checked int64 arithmetic (GCC/Clang builtins). */
    static inline int tern_v_add_ovf(long long a, long long b, long long *r) {
        return __builtin_add_overflow(a, b, r);
    }
    static inline int tern_v_sub_ovf(long long a, long long b, long long *r) {
        return __builtin_sub_overflow(a, b, r);
    }
    static inline int tern_v_mul_ovf(long long a, long long b, long long *r) {
        return __builtin_mul_overflow(a, b, r);
    }
    /* Read an int object as int64 without exception machinery: the
       single-digit ("compact") case inline, the rest via the C API.
       Returns 0 when the value does not fit in int64. */
    static inline int tern_v_as_i64(PyObject *o, long long *out) {
    #if PY_VERSION_HEX >= 0x030C0000
        if (PyUnstable_Long_IsCompact((PyLongObject *)o)) {
            *out = (long long)PyUnstable_Long_CompactValue((PyLongObject *)o);
            return 1;
        }
    #else
        Py_ssize_t size = Py_SIZE(o);
        if (size == 0) { *out = 0; return 1; }
        if (size == 1) { *out = (long long)((PyLongObject *)o)->ob_digit[0]; return 1; }
        if (size == -1) { *out = -(long long)((PyLongObject *)o)->ob_digit[0]; return 1; }
    #endif
        {
            int overflow = 0;
            long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
            *out = v;
            return overflow == 0;
        }
    }
    #define TERN_V_I64_MAX INT64_MAX
    #define TERN_V_I64_MIN INT64_MIN
    #define TERN_V_2P51 INT64_C(2251799813685248)
    """
    bint tern_v_as_i64(object o, long long* out)
    const int64_t TERN_V_I64_MAX
    const int64_t TERN_V_I64_MIN
    const int64_t TERN_V_2P51
    bint tern_v_add_ovf(long long a, long long b, long long* r) nogil
    bint tern_v_sub_ovf(long long a, long long b, long long* r) nogil
    bint tern_v_mul_ovf(long long a, long long b, long long* r) nogil


# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

#: "No affinity": expressions that are not column references or CASTs.
AFF_NONE = 0
AFF_BLOB = 1
AFF_TEXT = 2
AFF_NUMERIC = 3
AFF_INTEGER = 4
AFF_REAL = 5
DEF _AFF_NONE = 0
DEF _AFF_BLOB = 1
DEF _AFF_TEXT = 2
DEF _AFF_NUMERIC = 3
DEF _AFF_INTEGER = 4
DEF _AFF_REAL = 5

#: One-letter codes of the affinities (the key codec stores these letters).
AFF_CODES = {AFF_BLOB: b'B', AFF_TEXT: b'T', AFF_NUMERIC: b'N',
             AFF_INTEGER: b'I', AFF_REAL: b'R'}
AFF_FROM_CODE = {code: aff for aff, code in AFF_CODES.items()}

OP_EQ = 0
OP_NE = 1
OP_LT = 2
OP_LE = 3
OP_GT = 4
OP_GE = 5
DEF _OP_EQ = 0
DEF _OP_NE = 1
DEF _OP_LT = 2
DEF _OP_LE = 3
DEF _OP_GT = 4
DEF _OP_GE = 5

COLL_BINARY = 0
COLL_NOCASE = 1
COLL_RTRIM = 2
DEF _COLL_BINARY = 0
DEF _COLL_NOCASE = 1
DEF _COLL_RTRIM = 2

# Storage classes, in SQLite's sort order.
DEF _CLS_NULL = 0
DEF _CLS_NUM = 1
DEF _CLS_TEXT = 2
DEF _CLS_BLOB = 3


# Numeric kinds of a VNum.
DEF _NK_NULL = 0
DEF _NK_INT = 1
DEF _NK_REAL = 2


cdef struct VNum:
    # One operand as SQLite's VDBE sees it: its numeric type (what
    # numericType() decides), its integer value (sqlite3VdbeIntValue) and its
    # real value (sqlite3VdbeRealValue).  Text keeps both parses because
    # SQLite uses either depending on the operator (e.g. % truncates text
    # with Atoi64 even when the text looked like a real).
    int kind
    int64_t i
    double r


# ---------------------------------------------------------------------------
# Value classification
# ---------------------------------------------------------------------------

cdef object _v_canon(object v):
    """Map an unusual Python value onto one of the five exact types."""
    if isinstance(v, bool) or isinstance(v, int):
        iv = int(v)
        if -9223372036854775808 <= iv <= 9223372036854775807:
            return iv
        return float(iv)  # SQLite has no integers beyond int64
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise _VDataError(f"unsupported SQL value of type {type(v).__name__}")


cdef inline int _v_class(object v) except -1:
    t = type(v)
    if v is None:
        return _CLS_NULL
    if t is int or t is float:
        return _CLS_NUM
    if t is str:
        return _CLS_TEXT
    if t is bytes:
        return _CLS_BLOB
    return _v_class(_v_canon(v))


cdef inline const unsigned char* _v_text_ptr(object v, Py_ssize_t* n) except NULL:
    """Raw UTF-8 (str) or raw bytes (bytes) of a text or blob value."""
    if type(v) is bytes:
        n[0] = PyBytes_GET_SIZE(v)
        return <const unsigned char*>PyBytes_AS_STRING(v)
    try:
        return <const unsigned char*>PyUnicode_AsUTF8AndSize(v, n)
    except UnicodeEncodeError:
        raise _VDataError("text value is not valid Unicode (lone surrogate)") from None


# ---------------------------------------------------------------------------
# Text -> number parsers (SQLite's sqlite3AtoF and sqlite3Atoi64 rules)
# ---------------------------------------------------------------------------

cdef inline bint _v_isspace(unsigned char c) noexcept nogil:
    # SQLite's notion of space: ' ', \t, \n, \v, \f, \r (ASCII only).
    return c == 32 or (c >= 9 and c <= 13)


cdef inline bint _v_isdigit(unsigned char c) noexcept nogil:
    return c >= 48 and c <= 57


cdef long double _v_pow10(int e) noexcept nogil:
    # Power of ten built like SQLite 3.40 does (10^e mod 22 in tens, then
    # 1e22 steps) so that the long double roundings match.
    cdef long double scale = 1.0
    while e % 22:
        scale *= 1.0e+1
        e -= 1
    while e > 0:
        scale *= 1.0e+22
        e -= 22
    return scale


@cython.cdivision(True)
cdef int _v_atof(const unsigned char* z, Py_ssize_t n, double* out) noexcept nogil:
    """Parse a number prefix of z[0:n] into *out.

    Returns 1 for a pure integer, 2 or 3 for a pure real (decimal point and/or
    exponent), -1 when only a prefix with a point/exponent parsed, 0 when the
    text is not a number (a prefix value may still be stored).
    """
    cdef const unsigned char* end = z + n
    cdef int sign = 1
    cdef int64_t s = 0
    cdef int d = 0
    cdef int esign = 1
    cdef int e = 0
    cdef bint e_valid = 1
    cdef int e_type = 1
    cdef int n_digit = 0
    cdef double result
    cdef long double scale
    out[0] = 0.0
    if n == 0:
        return 0
    while z < end and _v_isspace(z[0]):
        z += 1
    if z >= end:
        return 0
    if z[0] == 45:  # '-'
        sign = -1
        z += 1
    elif z[0] == 43:  # '+'
        z += 1
    # Integer digits: keep about 18 significant ones, count the rest as a
    # decimal shift (SQLite truncates, it does not round, here).
    while z < end and _v_isdigit(z[0]):
        s = s * 10 + (z[0] - 48)
        z += 1
        n_digit += 1
        if s >= (TERN_V_I64_MAX - 9) // 10:
            while z < end and _v_isdigit(z[0]):
                z += 1
                d += 1
    if z < end and z[0] == 46:  # '.'
        z += 1
        e_type += 1
        while z < end and _v_isdigit(z[0]):
            if s < (TERN_V_I64_MAX - 9) // 10:
                s = s * 10 + (z[0] - 48)
                d -= 1
                n_digit += 1
            z += 1
    if z < end and (z[0] == 101 or z[0] == 69):  # 'e' / 'E'
        z += 1
        e_valid = 0
        e_type += 1
        if z < end:
            if z[0] == 45:
                esign = -1
                z += 1
            elif z[0] == 43:
                z += 1
            while z < end and _v_isdigit(z[0]):
                e = e * 10 + (z[0] - 48) if e < 10000 else 10000
                z += 1
                e_valid = 1
    while z < end and _v_isspace(z[0]):
        z += 1

    e = e * esign + d
    if e < 0:
        esign = -1
        e = -e
    else:
        esign = 1
    if s == 0:
        result = -0.0 if sign < 0 else 0.0
    else:
        # Fold as much of the exponent into the significand as is exact.
        while e > 0:
            if esign > 0:
                if s >= TERN_V_I64_MAX // 10:
                    break
                s *= 10
            else:
                if s % 10 != 0:
                    break
                s //= 10
            e -= 1
        if sign < 0:
            s = -s
        if e == 0:
            result = <double>s
        elif e > 307:
            if e < 342:
                scale = _v_pow10(e - 308)
                if esign < 0:
                    result = <double>(<long double>s / scale)
                    result /= 1.0e+308
                else:
                    result = <double>(<long double>s * scale)
                    result *= 1.0e+308
            elif esign < 0:
                result = 0.0 * s
            else:
                result = INFINITY * s  # infinity with the sign of s
        else:
            scale = _v_pow10(e)
            if esign < 0:
                result = <double>(<long double>s / scale)
            else:
                result = <double>(<long double>s * scale)
    out[0] = result
    if z == end and n_digit > 0 and e_valid and e_type > 0:
        return e_type
    if e_type >= 2 and (e_type == 3 or e_valid) and n_digit > 0:
        return -1
    return 0


cdef int _v_cmp_2pow63(const unsigned char* z) noexcept nogil:
    # Compare 19 digits at z with "9223372036854775808".
    cdef const char* two63 = b"922337203685477580"
    cdef int c = 0
    cdef int i
    for i in range(18):
        c = (z[i] - two63[i]) * 10
        if c != 0:
            return c
    return z[18] - 56  # '8'


cdef int _v_atoi64(const unsigned char* z, Py_ssize_t n, int64_t* out) noexcept nogil:
    """Parse an integer prefix of z[0:n] into *out (clamped to int64).

    Returns 0 for a pure integer that fits, 1 when text follows the digits,
    -1 when there are no digits, 2 on overflow, 3 for exactly 2**63.
    """
    cdef const unsigned char* end = z + n
    cdef const unsigned char* start
    cdef const unsigned char* digits
    cdef uint64_t u = 0
    cdef bint neg = 0
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t jj
    cdef int rc = 0
    cdef int c
    while z < end and _v_isspace(z[0]):
        z += 1
    if z < end:
        if z[0] == 45:
            neg = 1
            z += 1
        elif z[0] == 43:
            z += 1
    start = z
    while z < end and z[0] == 48:  # leading zeros carry no digits
        z += 1
    digits = z
    while digits + i < end and _v_isdigit(digits[i]):
        u = u * 10 + (digits[i] - 48)
        i += 1
    if u > <uint64_t>TERN_V_I64_MAX:
        out[0] = TERN_V_I64_MIN if neg else TERN_V_I64_MAX
    elif neg:
        out[0] = -<int64_t>u
    else:
        out[0] = <int64_t>u
    if i == 0 and start == digits:
        rc = -1
    elif digits + i < end:
        jj = i
        while digits + jj < end:
            if not _v_isspace(digits[jj]):
                rc = 1
                break
            jj += 1
    if i < 19:
        return rc
    c = 1 if i > 19 else _v_cmp_2pow63(digits)
    if c < 0:
        return rc
    out[0] = TERN_V_I64_MIN if neg else TERN_V_I64_MAX
    if c > 0:
        return 2
    return rc if neg else 3


cdef inline int64_t _v_d2i(double r) noexcept nogil:
    """REAL -> INTEGER as SQLite does it: truncate, clamp to int64."""
    if r <= -9223372036854775808.0:
        return TERN_V_I64_MIN
    if r >= 9223372036854775807.0:
        return TERN_V_I64_MAX
    if r != r:
        return 0
    return <int64_t>r


cdef inline bint _v_real_same_as_int(double r, int64_t i) noexcept nogil:
    # SQLite's sqlite3RealSameAsInt: only |i| < 2**51 counts as "the same".
    cdef double r2 = <double>i
    return r == 0.0 or (memcmp(&r, &r2, sizeof(double)) == 0
                        and i >= -TERN_V_2P51 and i < TERN_V_2P51)


cdef int _v_text_num(object v, VNum* out) except -1:
    """Numeric view of a text or blob (SQLite's computeNumericType)."""
    cdef Py_ssize_t n
    cdef const unsigned char* z = _v_text_ptr(v, &n)
    cdef int rcf = _v_atof(z, n, &out.r)
    cdef int rci = _v_atoi64(z, n, &out.i)
    if rcf <= 0:
        out.kind = _NK_INT if (rcf == 0 and rci <= 1) else _NK_REAL
    elif rcf == 1 and rci == 0:
        out.kind = _NK_INT
    else:
        out.kind = _NK_REAL
    return 0


cdef int _v_num(object v, VNum* out) except -1:
    """Fill *out with the numeric view of any SQL value."""
    cdef long long i
    t = type(v)
    if t is int:
        if tern_v_as_i64(v, &i):
            out.i = i
            out.kind = _NK_INT
            out.r = <double>i
            return 0
        out.kind = _NK_REAL
        out.r = float(v)
        out.i = _v_d2i(out.r)
        return 0
    if t is float:
        out.kind = _NK_REAL
        out.r = PyFloat_AS_DOUBLE(v)
        out.i = _v_d2i(out.r)
        return 0
    if v is None:
        out.kind = _NK_NULL
        out.i = 0
        out.r = 0.0
        return 0
    if t is str or t is bytes:
        return _v_text_num(v, out)
    return _v_num(_v_canon(v), out)


cdef inline object _v_num_object(VNum* n):
    if n.kind == _NK_INT:
        return PyLong_FromLongLong(n.i)
    if n.kind == _NK_REAL:
        return PyFloat_FromDouble(n.r)
    return None


# ---------------------------------------------------------------------------
# REAL -> text (SQLite's "%!.15g")
# ---------------------------------------------------------------------------

cdef char _v_next_digit(long double* val, int* budget) noexcept nogil:
    # One decimal digit off the front of *val (1 <= *val < 10), as SQLite's
    # printf does; after `budget` significant digits it only emits zeros.
    cdef int digit
    if budget[0] <= 0:
        return 48
    budget[0] -= 1
    digit = <int>val[0]
    val[0] = (val[0] - digit) * 10.0
    return <char>(digit + 48)


@cython.cdivision(True)
cdef Py_ssize_t _v_format_real(double r, char* buf) noexcept nogil:
    """Render r into buf (>= 64 bytes) like SQLite; returns the length."""
    cdef long double value = r
    cdef long double scale = 1.0
    cdef double rounder = 5.0e-05 * 1.0e-10  # half a unit in the 15th digit
    cdef int precision = 14                   # %g counts the leading digit
    cdef int exp10 = 0
    cdef int e2
    cdef int budget = 26
    cdef bint use_exp
    cdef Py_ssize_t p = 0
    if r != r:
        buf[0] = 78; buf[1] = 97; buf[2] = 78  # "NaN"
        return 3
    if value < 0.0:
        value = -value
        buf[p] = 45
        p += 1
    if value > 0.0:
        while value >= 1e100 * scale and exp10 <= 350:
            scale *= 1e100
            exp10 += 100
        while value >= 1e10 * scale and exp10 <= 350:
            scale *= 1e10
            exp10 += 10
        while value >= 10.0 * scale and exp10 <= 350:
            scale *= 10.0
            exp10 += 1
        value /= scale
        while value < 1e-8:
            value *= 1e8
            exp10 -= 8
        while value < 1.0:
            value *= 10.0
            exp10 -= 1
        if exp10 > 350:
            buf[p] = 73; buf[p + 1] = 110; buf[p + 2] = 102  # "Inf"
            return p + 3
    value += rounder
    if value >= 10.0:
        value *= 0.1
        exp10 += 1
    use_exp = exp10 < -4 or exp10 > precision
    if use_exp:
        e2 = 0
    else:
        precision = precision - exp10
        e2 = exp10
    if e2 < 0:
        buf[p] = 48
        p += 1
    else:
        while e2 >= 0:
            buf[p] = _v_next_digit(&value, &budget)
            p += 1
            e2 -= 1
    buf[p] = 46  # '.'
    p += 1
    e2 += 1
    while e2 < 0:
        buf[p] = 48
        p += 1
        precision -= 1
        e2 += 1
    while precision > 0:
        buf[p] = _v_next_digit(&value, &budget)
        p += 1
        precision -= 1
    # Drop trailing zeros but keep one digit after the point ("1.0").
    while buf[p - 1] == 48:
        p -= 1
    if buf[p - 1] == 46:
        buf[p] = 48
        p += 1
    if use_exp:
        buf[p] = 101
        p += 1
        if exp10 < 0:
            buf[p] = 45
            exp10 = -exp10
        else:
            buf[p] = 43
        p += 1
        if exp10 >= 100:
            buf[p] = <char>(exp10 // 100 + 48)
            p += 1
            exp10 %= 100
        buf[p] = <char>(exp10 // 10 + 48)
        buf[p + 1] = <char>(exp10 % 10 + 48)
        p += 2
    return p


cdef str v_real_to_text(double r):
    cdef char buf[80]
    cdef Py_ssize_t n
    cdef long long i
    if -1e15 < r < 1e15:
        i = <long long>r
        if <double>i == r:
            # Integral and at most 15 digits: SQLite prints the digits + ".0".
            return PyUnicode_Concat(str(i), ".0")
    n = _v_format_real(r, buf)
    return PyUnicode_FromStringAndSize(buf, n)


cpdef str real_to_text(double r):
    """SQLite's text form of a REAL: 15 significant digits, always a '.'
    (1.0 -> '1.0', 1e20 -> '1.0e+20', inf -> 'Inf', -0.0 -> '0.0')."""
    return v_real_to_text(r)


# ---------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------

cdef object v_to_numeric(object v):
    """SQLite's arithmetic view of a value: int or float (None for NULL)."""
    cdef VNum n
    t = type(v)
    if t is float or v is None:
        return v
    if t is int and _v_fits_i64(v):
        return v
    _v_num(v, &n)
    return _v_num_object(&n)


cdef inline bint _v_fits_i64(object v):
    cdef long long ignored
    return tern_v_as_i64(v, &ignored)


cdef object v_to_integer(object v):
    """sqlite3VdbeIntValue: CAST(v AS INTEGER) (None for NULL)."""
    cdef VNum n
    if type(v) is int and _v_fits_i64(v):
        return v
    if v is None:
        return None
    _v_num(v, &n)
    return PyLong_FromLongLong(n.i)


cdef object v_to_real(object v):
    """sqlite3VdbeRealValue: CAST(v AS REAL) (None for NULL)."""
    cdef VNum n
    if type(v) is float:
        return v
    if v is None:
        return None
    _v_num(v, &n)
    return PyFloat_FromDouble(n.r)


cdef object v_to_text(object v):
    """Text form of a value: ints as digits, reals as SQLite renders them,
    blobs decoded as UTF-8 (invalid bytes replaced); None for NULL."""
    t = type(v)
    if t is str:
        return v
    if t is int:
        return str(v) if _v_fits_i64(v) else v_real_to_text(float(v))
    if t is float:
        return v_real_to_text(PyFloat_AS_DOUBLE(v))
    if v is None:
        return None
    if t is bytes:
        return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), "replace")
    return v_to_text(_v_canon(v))


cpdef object to_numeric(object v):
    """Text/blob -> number as SQLite arithmetic sees it: the longest numeric
    prefix after leading spaces ('12abc' -> 12, ' 3.5e2x' -> 350.0,
    'abc' -> 0, '1e999' -> inf); int stays int, float stays float; None
    stays None.  Integer text overflowing int64 becomes a float."""
    return v_to_numeric(v)


cpdef object to_integer(object v):
    """CAST(v AS INTEGER): reals truncate toward zero and clamp to int64;
    text/blob parse an integer prefix only ('1e3' -> 1, '12.9' -> 12,
    'abc' -> 0, overflow clamps); None stays None."""
    return v_to_integer(v)


cpdef object to_real(object v):
    """CAST(v AS REAL): ints -> float, text/blob -> the float value of the
    numeric prefix ('abc' -> 0.0); None stays None."""
    return v_to_real(v)


cpdef object to_text(object v):
    """CAST(v AS TEXT) for display/concat: see ``v_to_text``."""
    return v_to_text(v)


# ---------------------------------------------------------------------------
# Affinity
# ---------------------------------------------------------------------------

cpdef int affinity_of_type(str declared_type):
    """Column affinity of a declared type name (datatype3 section 3.1)."""
    if declared_type is None or not declared_type.strip():
        return _AFF_BLOB
    return cast_affinity_of_type(declared_type)


cpdef int cast_affinity_of_type(str type_name):
    """Affinity named by a type: INT -> INTEGER; CHAR/CLOB/TEXT -> TEXT;
    BLOB -> BLOB; REAL/FLOA/DOUB -> REAL; anything else (including an empty
    CAST type) -> NUMERIC.  Same rules as columns except the empty name."""
    cdef str up = (type_name or "").upper()
    if "INT" in up:
        return _AFF_INTEGER
    if "CHAR" in up or "CLOB" in up or "TEXT" in up:
        return _AFF_TEXT
    if "BLOB" in up:
        return _AFF_BLOB
    if "REAL" in up or "FLOA" in up or "DOUB" in up:
        return _AFF_REAL
    return _AFF_NUMERIC


cdef object _v_integer_affinity(double r):
    # A REAL that is exactly an int64 (but not one of the two extremes,
    # SQLite ticket #3922) is stored as INTEGER under numeric affinity.
    cdef int64_t ix = _v_d2i(r)
    if r == <double>ix and ix > TERN_V_I64_MIN and ix < TERN_V_I64_MAX:
        return PyLong_FromLongLong(ix)
    return PyFloat_FromDouble(r)


cdef object _v_text_numeric_affinity(object v, bint try_for_int):
    """applyNumericAffinity: convert text that is wholly a number."""
    cdef Py_ssize_t n
    cdef const unsigned char* z = _v_text_ptr(v, &n)
    cdef double r
    cdef int64_t ix
    cdef int rc = _v_atof(z, n, &r)
    if rc <= 0:
        return v
    if rc == 1 and _v_atoi64(z, n, &ix) == 0:
        return PyLong_FromLongLong(ix)
    if try_for_int:
        return _v_integer_affinity(r)
    return PyFloat_FromDouble(r)


cdef object _V_REAL_ZERO = 0.0


cdef object v_apply_affinity(object v, int aff):
    """The value SQLite stores for v in a column of affinity aff."""
    t = type(v)
    if v is None or aff <= _AFF_BLOB or t is bytes:
        return v
    if aff == _AFF_TEXT:
        if t is str:
            return v
        return v_to_text(v)
    # NUMERIC, INTEGER, REAL
    if t is str:
        v = _v_text_numeric_affinity(v, 1)
        if type(v) is str:
            return v
    elif t is float:
        if aff == _AFF_REAL:
            # What the integer round trip below gives a REAL column: the same
            # value, except -0.0, which comes back as 0.0.  Skipping it saves
            # two float objects per value (executemany binds many).
            return v if PyFloat_AS_DOUBLE(v) != 0.0 else _V_REAL_ZERO
        # Integral reals are stored as integers (REAL columns read them back
        # as reals, which turns -0.0 into 0.0).
        v = _v_integer_affinity(PyFloat_AS_DOUBLE(v))
    elif t is not int or not _v_fits_i64(v):
        return v_apply_affinity(_v_canon(v), aff)
    if aff == _AFF_REAL:
        return float(v)  # REAL columns hand back integral values as reals
    return v


cpdef object apply_affinity(object v, int aff):
    """What SQLite stores when v is inserted into a column of affinity aff."""
    return v_apply_affinity(v, aff)


cpdef tuple comparison_affinity(int aff_left, int aff_right):
    """Affinities to apply to (left, right) before comparing them.

    Pass AFF_NONE for operands that are neither column references nor CASTs
    (literals, parameters, other expressions).  Rules (datatype3 4.2):
    numeric (NUMERIC/INTEGER/REAL) on either side converts text on both
    sides with NUMERIC; otherwise TEXT against no affinity converts the
    numbers to text; BLOB against no affinity, and everything else, applies
    nothing (AFF_NONE).  Apply with ``apply_affinity``.
    """
    cdef int chosen
    if aff_left >= _AFF_NUMERIC or aff_right >= _AFF_NUMERIC:
        chosen = _AFF_NUMERIC
    elif aff_left == _AFF_NONE and aff_right == _AFF_TEXT:
        chosen = _AFF_TEXT
    elif aff_right == _AFF_NONE and aff_left == _AFF_TEXT:
        chosen = _AFF_TEXT
    else:
        chosen = _AFF_NONE
    return (chosen, chosen)


# ---------------------------------------------------------------------------
# CAST
# ---------------------------------------------------------------------------

cdef object _v_numerify(object v):
    """CAST(text/blob AS NUMERIC) (sqlite3VdbeMemNumerify)."""
    cdef Py_ssize_t n
    cdef const unsigned char* z = _v_text_ptr(v, &n)
    cdef double r
    cdef int64_t ix = 0
    cdef int rc = _v_atof(z, n, &r)
    if (rc == 0 or rc == 1) and _v_atoi64(z, n, &ix) <= 1:
        return PyLong_FromLongLong(ix)
    if -2251799813685248.0 <= r < 2251799813685248.0:
        ix = <int64_t>r
        if _v_real_same_as_int(r, ix):
            return PyLong_FromLongLong(ix)
    return PyFloat_FromDouble(r)


cdef object v_cast(object v, int aff):
    t = type(v)
    if v is None:
        return None
    if aff == _AFF_INTEGER:
        return v_to_integer(v)
    if aff == _AFF_REAL:
        return v_to_real(v)
    if aff == _AFF_TEXT:
        return v_to_text(v)
    if aff == _AFF_BLOB:
        if t is bytes:
            return v
        return v_to_text(v).encode("utf-8", "surrogatepass")
    if aff == _AFF_NUMERIC:
        if t is float or (t is int and _v_fits_i64(v)):
            return v
        if t is str or t is bytes:
            return _v_numerify(v)
        return v_cast(_v_canon(v), aff)
    raise _VDataError(f"unknown affinity code {aff} in CAST")


cpdef object sql_cast(object v, int aff):
    """CAST(v AS <type of affinity aff>) with SQLite's CAST semantics."""
    return v_cast(v, aff)


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------

cdef inline int _v_sign_i(int64_t a, int64_t b) noexcept nogil:
    return (a > b) - (a < b)


cdef inline int _v_cmp_int_real(int64_t i, double r) noexcept nogil:
    # long double holds every int64 exactly, so this is an exact comparison.
    cdef long double x = <long double>i
    if x < r:
        return -1
    if x > r:
        return 1
    return 0


cdef int _v_cmp_num(object a, object b) except? -9:
    cdef VNum x
    cdef VNum y
    if type(a) not in (int, float) or type(b) not in (int, float):
        return _v_cmp_num(_v_canon(a), _v_canon(b))
    _v_num(a, &x)
    _v_num(b, &y)
    if x.kind == _NK_INT:
        if y.kind == _NK_INT:
            return _v_sign_i(x.i, y.i)
        if type(b) is int:  # beyond int64 (not a SQL value): Python is exact
            return (a > b) - (a < b)
        return _v_cmp_int_real(x.i, y.r)
    if y.kind == _NK_INT:
        if type(a) is int:
            return (a > b) - (a < b)
        return -_v_cmp_int_real(y.i, x.r)
    if x.r < y.r:
        return -1
    if x.r > y.r:
        return 1
    return 0


cdef inline Py_UCS4 _v_fold_ascii(Py_UCS4 c) noexcept nogil:
    # Py_UCS4 arithmetic in Cython yields str; go through a plain integer.
    cdef uint32_t u = <uint32_t>c
    if u >= 65 and u <= 90:
        return <Py_UCS4>(u + 32)
    return c


cdef int _v_cmp_text_nocase(str a, str b) except? -9:
    # SQLite's NOCASE folds ASCII letters only; other characters compare by
    # code point, which is also their UTF-8 byte order.
    cdef Py_ssize_t na = PyUnicode_GET_LENGTH(a)
    cdef Py_ssize_t nb = PyUnicode_GET_LENGTH(b)
    cdef int ka = PyUnicode_KIND(a)
    cdef int kb = PyUnicode_KIND(b)
    cdef void* da = PyUnicode_DATA(a)
    cdef void* db = PyUnicode_DATA(b)
    cdef Py_ssize_t i
    cdef Py_UCS4 ca, cb
    for i in range(na if na < nb else nb):
        ca = _v_fold_ascii(PyUnicode_READ(ka, da, i))
        cb = _v_fold_ascii(PyUnicode_READ(kb, db, i))
        if ca != cb:
            return -1 if ca < cb else 1
    return (na > nb) - (na < nb)


cdef inline Py_ssize_t _v_rtrim_len(str s):
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    cdef int k = PyUnicode_KIND(s)
    cdef void* d = PyUnicode_DATA(s)
    while n > 0 and PyUnicode_READ(k, d, n - 1) == 32:
        n -= 1
    return n


cdef int _v_cmp_text(str a, str b, int coll) except? -9:
    cdef Py_ssize_t na, nb
    if coll == _COLL_NOCASE:
        return _v_cmp_text_nocase(a, b)
    if coll == _COLL_RTRIM:
        na = _v_rtrim_len(a)
        nb = _v_rtrim_len(b)
        if na != PyUnicode_GET_LENGTH(a) or nb != PyUnicode_GET_LENGTH(b):
            a = a[:na]
            b = b[:nb]
    # Code point order of str equals the memcmp order of its UTF-8 bytes.
    return PyUnicode_Compare(a, b)


cdef int v_compare_coll(object a, object b, int coll) except? -9:
    """Total order of SQL values: NULL < numbers < text < blob."""
    cdef int ca, cb, r
    cdef long long ia, ib
    cdef double ra, rb
    ta = type(a)
    tb = type(b)
    if ta is int and tb is int:
        if tern_v_as_i64(a, &ia) and tern_v_as_i64(b, &ib):
            return (ia > ib) - (ia < ib)
    elif ta is float:
        if tb is float:
            ra = PyFloat_AS_DOUBLE(a)
            rb = PyFloat_AS_DOUBLE(b)
            return (ra > rb) - (ra < rb)
        if tb is int and tern_v_as_i64(b, &ib):
            return -_v_cmp_int_real(ib, PyFloat_AS_DOUBLE(a))
    elif ta is int and tb is float and tern_v_as_i64(a, &ia):
        return _v_cmp_int_real(ia, PyFloat_AS_DOUBLE(b))
    ca = _v_class(a)
    cb = _v_class(b)
    if ca != cb:
        return -1 if ca < cb else 1
    if ca == _CLS_NULL:
        return 0
    if ca == _CLS_NUM:
        return _v_cmp_num(a, b)
    if ca == _CLS_TEXT:
        if type(a) is not str or type(b) is not str:
            return v_compare_coll(_v_canon(a), _v_canon(b), coll)
        r = _v_cmp_text(a, b, coll)
        return (r > 0) - (r < 0)
    if type(a) is not bytes or type(b) is not bytes:
        return v_compare_coll(_v_canon(a), _v_canon(b), coll)
    return (a > b) - (a < b)


cdef int v_compare(object a, object b) except? -9:
    return v_compare_coll(a, b, _COLL_BINARY)


cpdef int sql_compare(object a, object b) except? -9:
    """-1/0/1 in SQLite's sort order (ORDER BY, DISTINCT, GROUP BY, MIN/MAX):
    NULL < INTEGER/REAL (numerically, exactly) < TEXT (BINARY) < BLOB."""
    return v_compare_coll(a, b, _COLL_BINARY)


cpdef int sql_compare_coll(object a, object b, int coll) except? -9:
    """sql_compare with a collation for text: COLL_BINARY, COLL_NOCASE
    (ASCII letters only are folded) or COLL_RTRIM (trailing spaces ignored)."""
    if coll < _COLL_BINARY or coll > _COLL_RTRIM:
        raise _VDataError(f"unknown collation code {coll}")
    return v_compare_coll(a, b, coll)


cdef inline bint _v_op_holds(int c, int op) noexcept nogil:
    if op == _OP_EQ:
        return c == 0
    if op == _OP_NE:
        return c != 0
    if op == _OP_LT:
        return c < 0
    if op == _OP_LE:
        return c <= 0
    if op == _OP_GT:
        return c > 0
    return c >= 0


cdef object v_compare_op(object a, object b, int op, int coll):
    """= <> < <= > >= with three-valued logic: None if either is NULL."""
    if a is None or b is None:
        return None
    return 1 if _v_op_holds(v_compare_coll(a, b, coll), op) else 0


cpdef object compare_op(object a, object b, int op, int coll=0):
    """``a <op> b`` -> 1, 0 or None (NULL operand).  No affinity is applied
    here: the planner applies ``comparison_affinity`` first."""
    if op < _OP_EQ or op > _OP_GE:
        raise _VDataError(f"unknown comparison operator code {op}")
    return v_compare_op(a, b, op, coll)


cdef int v_is(object a, object b, int coll) except -1:
    if a is None or b is None:
        return (a is None) and (b is None)
    return v_compare_coll(a, b, coll) == 0


cpdef int is_op(object a, object b, int coll=0) except -1:
    """``a IS b``: like = but NULL IS NULL is 1 and never returns NULL."""
    return v_is(a, b, coll)


cpdef int is_not_op(object a, object b, int coll=0) except -1:
    """``a IS NOT b``."""
    return 1 - v_is(a, b, coll)


# ---------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------

DEF _AR_ADD = 0
DEF _AR_SUB = 1
DEF _AR_MUL = 2
DEF _AR_DIV = 3
DEF _AR_MOD = 4


cdef object _v_arith_int(int64_t a, int64_t b, int op):
    """int64 op int64; None for /0 and %0; falls back to REAL on overflow."""
    cdef long long r
    if op == _AR_ADD:
        if not tern_v_add_ovf(a, b, &r):
            return PyLong_FromLongLong(r)
    elif op == _AR_SUB:
        if not tern_v_sub_ovf(a, b, &r):
            return PyLong_FromLongLong(r)
    elif op == _AR_MUL:
        if not tern_v_mul_ovf(a, b, &r):
            return PyLong_FromLongLong(r)
    elif op == _AR_DIV:
        if b == 0:
            return None
        if not (b == -1 and a == TERN_V_I64_MIN):
            # C division truncates toward zero, as SQLite's does.
            return PyLong_FromLongLong(_v_cdiv(a, b))
    else:
        if b == 0:
            return None
        if b == -1:
            return 0
        return PyLong_FromLongLong(_v_cmod(a, b))
    return _v_arith_real(<double>a, <double>b, a, b, op)


@cython.cdivision(True)
cdef inline int64_t _v_cdiv(int64_t a, int64_t b) noexcept nogil:
    # C division truncates toward zero (callers exclude b == 0, MIN / -1).
    return a // b


@cython.cdivision(True)
cdef inline int64_t _v_cmod(int64_t a, int64_t b) noexcept nogil:
    # C remainder takes the sign of the dividend (callers exclude b == 0, -1).
    return a % b


@cython.cdivision(True)
cdef object _v_arith_real(double ra, double rb, int64_t ia, int64_t ib, int op):
    cdef double r
    if op == _AR_ADD:
        r = ra + rb
    elif op == _AR_SUB:
        r = ra - rb
    elif op == _AR_MUL:
        r = ra * rb
    elif op == _AR_DIV:
        if rb == 0.0:
            return None
        r = ra / rb
    else:
        # SQLite's % on reals works on the operands truncated to int64.
        if ib == 0:
            return None
        if ib == -1:
            ib = 1
        r = <double>_v_cmod(ia, ib)
    if r != r:  # NaN is NULL in SQLite (inf - inf, 0 * inf, ...)
        return None
    return PyFloat_FromDouble(r)


cdef object _v_arith(object a, object b, int op):
    """Generic path of + - * / % on any two values (SQLite's OP_Add...)."""
    cdef VNum x
    cdef VNum y
    if a is None or b is None:
        return None
    _v_num(a, &x)
    _v_num(b, &y)
    if x.kind == _NK_INT and y.kind == _NK_INT:
        return _v_arith_int(x.i, y.i, op)
    return _v_arith_real(x.r, y.r, x.i, y.i, op)


cdef inline bint _v_both_i64(object a, object b, long long* ia, long long* ib):
    return (type(a) is int and type(b) is int
            and tern_v_as_i64(a, ia) and tern_v_as_i64(b, ib))


cdef object v_add(object a, object b):
    cdef long long ia, ib, r
    cdef double d
    if _v_both_i64(a, b, &ia, &ib):
        if not tern_v_add_ovf(ia, ib, &r):
            return PyLong_FromLongLong(r)
    elif type(a) is float and type(b) is float:
        d = PyFloat_AS_DOUBLE(a) + PyFloat_AS_DOUBLE(b)
        return PyFloat_FromDouble(d) if d == d else None
    return _v_arith(a, b, _AR_ADD)


cdef object v_sub(object a, object b):
    cdef long long ia, ib, r
    cdef double d
    if _v_both_i64(a, b, &ia, &ib):
        if not tern_v_sub_ovf(ia, ib, &r):
            return PyLong_FromLongLong(r)
    elif type(a) is float and type(b) is float:
        d = PyFloat_AS_DOUBLE(a) - PyFloat_AS_DOUBLE(b)
        return PyFloat_FromDouble(d) if d == d else None
    return _v_arith(a, b, _AR_SUB)


cdef object v_mul(object a, object b):
    cdef long long ia, ib, r
    cdef double d
    if _v_both_i64(a, b, &ia, &ib):
        if not tern_v_mul_ovf(ia, ib, &r):
            return PyLong_FromLongLong(r)
    elif type(a) is float and type(b) is float:
        d = PyFloat_AS_DOUBLE(a) * PyFloat_AS_DOUBLE(b)
        return PyFloat_FromDouble(d) if d == d else None
    return _v_arith(a, b, _AR_MUL)


cdef object v_div(object a, object b):
    return _v_arith(a, b, _AR_DIV)


cdef object v_mod(object a, object b):
    return _v_arith(a, b, _AR_MOD)


cdef object v_neg(object a):
    # SQLite compiles -x (x not a literal) as 0 - x: -'abc' is 0, -(-0.0)
    # is 0.0 and -(-2**63) overflows to a REAL.
    return _v_arith(0, a, _AR_SUB)


cpdef object sql_add(object a, object b):
    """a + b."""
    return v_add(a, b)


cpdef object sql_sub(object a, object b):
    """a - b."""
    return v_sub(a, b)


cpdef object sql_mul(object a, object b):
    """a * b."""
    return v_mul(a, b)


cpdef object sql_div(object a, object b):
    """a / b: integer division truncates toward zero; /0 is NULL."""
    return v_div(a, b)


cpdef object sql_mod(object a, object b):
    """a % b: on int64 values (reals truncated); %0 is NULL; REAL result if
    either operand is REAL."""
    return v_mod(a, b)


cpdef object sql_neg(object a):
    """-a (0 - a)."""
    return v_neg(a)


cpdef object sql_pos(object a):
    """+a: the operand unchanged, whatever its type."""
    return a


cdef object v_concat(object a, object b):
    if a is None or b is None:
        return None
    if type(a) is str and type(b) is str:
        return PyUnicode_Concat(a, b)
    if type(a) is bytes and type(b) is bytes:
        # Concatenate the raw bytes first so a multi-byte character split
        # across the operands survives decoding.
        return v_to_text(<bytes>a + <bytes>b)
    return PyUnicode_Concat(v_to_text(a), v_to_text(b))


cpdef object sql_concat(object a, object b):
    """a || b: text concatenation of the operands' text forms; NULL if
    either is NULL."""
    return v_concat(a, b)


# ---------------------------------------------------------------------------
# Bitwise operators (on int64 values; sqlite3VdbeIntValue conversions)
# ---------------------------------------------------------------------------

cdef inline int64_t _v_int_of(object v) except? -1:
    cdef VNum n
    cdef long long i
    if type(v) is int and tern_v_as_i64(v, &i):
        return i
    _v_num(v, &n)
    return n.i


cdef int64_t _v_shift(int64_t a, int64_t by, bint left) noexcept nogil:
    # Negative amounts shift the other way; 64 or more shifts everything out.
    cdef uint64_t u
    if by == 0:
        return a
    if by < 0:
        left = not left
        by = -by if by > -64 else 64
    if by >= 64:
        return 0 if (a >= 0 or left) else -1
    u = <uint64_t>a
    if left:
        u = u << by
    else:
        u = u >> by
        if a < 0:
            u |= (<uint64_t>0xffffffffffffffff) << (64 - by)
    return <int64_t>u


cdef object v_bitand(object a, object b):
    if a is None or b is None:
        return None
    return PyLong_FromLongLong(_v_int_of(a) & _v_int_of(b))


cdef object v_bitor(object a, object b):
    if a is None or b is None:
        return None
    return PyLong_FromLongLong(_v_int_of(a) | _v_int_of(b))


cdef object v_lshift(object a, object b):
    if a is None or b is None:
        return None
    return PyLong_FromLongLong(_v_shift(_v_int_of(a), _v_int_of(b), 1))


cdef object v_rshift(object a, object b):
    if a is None or b is None:
        return None
    return PyLong_FromLongLong(_v_shift(_v_int_of(a), _v_int_of(b), 0))


cdef object v_bitnot(object a):
    if a is None:
        return None
    return PyLong_FromLongLong(~_v_int_of(a))


cpdef object sql_bitand(object a, object b):
    """a & b."""
    return v_bitand(a, b)


cpdef object sql_bitor(object a, object b):
    """a | b."""
    return v_bitor(a, b)


cpdef object sql_lshift(object a, object b):
    """a << b (negative b shifts right; b >= 64 gives 0)."""
    return v_lshift(a, b)


cpdef object sql_rshift(object a, object b):
    """a >> b (arithmetic; negative b shifts left; b >= 64 gives 0 or -1)."""
    return v_rshift(a, b)


cpdef object sql_bitnot(object a):
    """~a."""
    return v_bitnot(a)


# ---------------------------------------------------------------------------
# Truth values and three-valued logic
# ---------------------------------------------------------------------------

cdef int v_truth(object v) except -2:
    """-1 for NULL, else 0/1 (sqlite3VdbeBooleanValue: non-zero is true;
    text and blobs by the real value of their numeric prefix)."""
    cdef VNum n
    cdef long long i
    t = type(v)
    if t is int:
        return i != 0 if tern_v_as_i64(v, &i) else 1
    if t is float:
        return PyFloat_AS_DOUBLE(v) != 0.0
    if v is None:
        return -1
    if t is not str and t is not bytes:
        return v_truth(_v_canon(v))
    _v_num(v, &n)
    return n.r != 0.0  # text: the real value of its numeric prefix


cdef inline object _v_tv(int t):
    if t < 0:
        return None
    return 1 if t else 0


cpdef object sql_truth(object v):
    """Truth value of v as WHERE / CASE WHEN see it: None, 0 or 1."""
    return _v_tv(v_truth(v))


cpdef object sql_not(object v):
    """NOT v: None for NULL."""
    cdef int t = v_truth(v)
    return None if t < 0 else 1 - t


cpdef object sql_and(object a, object b):
    """a AND b in three-valued logic (false wins over NULL)."""
    cdef int x = v_truth(a)
    cdef int y = v_truth(b)
    if x == 0 or y == 0:
        return 0
    if x < 0 or y < 0:
        return None
    return 1


cpdef object sql_or(object a, object b):
    """a OR b in three-valued logic (true wins over NULL)."""
    cdef int x = v_truth(a)
    cdef int y = v_truth(b)
    if x == 1 or y == 1:
        return 1
    if x < 0 or y < 0:
        return None
    return 0


# ---------------------------------------------------------------------------
# LIKE and GLOB
# ---------------------------------------------------------------------------

DEF _PT_ANY = 0      # % or *: any run of characters
DEF _PT_ONE = 1      # _ or ?: exactly one character
DEF _PT_CHAR = 2     # a literal character (already ASCII-folded for LIKE)
DEF _PT_SET = 3      # [...] : one character in (or not in) a set
DEF _PT_NEVER = 4    # a malformed tail (dangling escape, unclosed [): no match

DEF _LIKE_MAX_PATTERN = 50000  # SQLITE_MAX_LIKE_PATTERN_LENGTH (bytes)


cdef struct _VTok:
    int kind
    Py_UCS4 ch          # _PT_CHAR: the character
    int set_start       # _PT_SET: first range in the matcher's range array
    int set_count       # _PT_SET: number of ranges
    bint set_invert     # _PT_SET: [^...]


cdef class _VPattern:
    """A compiled LIKE/GLOB pattern: a token array matched by a greedy
    algorithm with one backtrack point (the last % / *), linear in practice."""
    cdef _VTok* toks
    cdef int ntok
    cdef Py_UCS4* ranges   # pairs (lo, hi)
    cdef int nrange
    cdef bint nocase

    def __dealloc__(self):
        free(self.toks)
        free(self.ranges)

    cdef int _alloc(self, Py_ssize_t n) except -1:
        self.toks = <_VTok*>malloc(sizeof(_VTok) * (n + 1))
        self.ranges = <Py_UCS4*>malloc(sizeof(Py_UCS4) * 2 * (n + 1))
        if self.toks == NULL or self.ranges == NULL:
            raise MemoryError()
        return 0

    cdef inline void _add(self, int kind, Py_UCS4 ch) noexcept:
        self.toks[self.ntok].kind = kind
        self.toks[self.ntok].ch = ch
        self.ntok += 1

    cdef inline bint _tok_matches(self, _VTok* t, Py_UCS4 c) noexcept nogil:
        cdef int k
        cdef bint seen = 0
        if t.kind == _PT_ONE:
            return 1
        if t.kind == _PT_CHAR:
            if self.nocase and c < 128:
                c = _v_fold_ascii(c)
            return c == t.ch
        if t.kind == _PT_SET:
            for k in range(t.set_start, t.set_start + t.set_count):
                if self.ranges[2 * k] <= c <= self.ranges[2 * k + 1]:
                    seen = 1
                    break
            return seen != t.set_invert
        return 0

    cdef int match(self, str s) except -1:
        """1 if s matches the whole pattern, else 0."""
        cdef int kind = PyUnicode_KIND(s)
        cdef void* data = PyUnicode_DATA(s)
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
        cdef Py_ssize_t nul = PyUnicode_FindChar(s, 0, 0, n, 1)
        if nul >= 0:
            n = nul  # SQLite sees C strings: text ends at the first NUL
        return self._match(kind, data, n)

    cdef int _match(self, int kind, void* data, Py_ssize_t n) noexcept nogil:
        cdef int ti = 0
        cdef Py_ssize_t si = 0
        cdef int star_ti = -1
        cdef Py_ssize_t star_si = 0
        cdef _VTok* t
        while True:
            if ti < self.ntok:
                t = &self.toks[ti]
                if t.kind == _PT_ANY:
                    star_ti = ti
                    star_si = si
                    ti += 1
                    continue
                if si < n and self._tok_matches(t, PyUnicode_READ(kind, data, si)):
                    ti += 1
                    si += 1
                    continue
            elif si == n:
                return 1
            # Mismatch: let the last % / * swallow one more character.
            if star_ti < 0 or star_si >= n:
                return 0
            star_si += 1
            si = star_si
            ti = star_ti + 1

    cdef object match_value(self, object v):
        """Match any SQL value as the subject: None for NULL, 0 for a blob
        (this SQLite build never LIKE/GLOB-matches blobs), numbers through
        their text form."""
        if type(v) is str:
            return self.match(v)
        if v is None:
            return None
        if type(v) is bytes:
            return 0
        return self.match(v_to_text(v))

    def matches(self, str s):
        """Python-visible match of a str."""
        return bool(self.match(s))

    def matches_value(self, v):
        """Python-visible ``match_value``: 1, 0 or None."""
        return self.match_value(v)


cdef inline str _v_cut_nul(str p):
    cdef Py_ssize_t nul = p.find("\0")
    return p if nul < 0 else p[:nul]


cdef class LikeMatcher(_VPattern):
    """A compiled ``LIKE pattern [ESCAPE esc]``: % any run, _ one character,
    ASCII letters case-insensitive; esc makes the next character literal."""

    def __init__(self, str pattern, escape=None):
        cdef bint has_esc = escape is not None
        cdef Py_UCS4 esc = _v_like_escape(escape) if has_esc else 0
        cdef Py_UCS4 any_ch = 37   # '%'
        cdef Py_UCS4 one_ch = 95   # '_'
        cdef Py_UCS4 c
        cdef Py_ssize_t i = 0
        cdef Py_ssize_t n
        # An escape character that is also a wildcard loses its wildcard role.
        if has_esc and esc == any_ch:
            any_ch = 0x110000
        if has_esc and esc == one_ch:
            one_ch = 0x110000
        _v_check_pattern_length(pattern)
        pattern = _v_cut_nul(pattern)
        n = len(pattern)
        self.nocase = 1
        self._alloc(n)
        while i < n:
            c = pattern[i]
            i += 1
            if c == any_ch:
                self._add(_PT_ANY, 0)
            elif has_esc and c == esc:
                if i >= n:
                    self._add(_PT_NEVER, 0)
                    break
                self._add(_PT_CHAR, _v_fold_ascii(pattern[i]))
                i += 1
            elif c == one_ch:
                self._add(_PT_ONE, 0)
            else:
                self._add(_PT_CHAR, _v_fold_ascii(c))


cdef class GlobMatcher(_VPattern):
    """A compiled ``GLOB pattern``: * any run, ? one character, [...] / [^...]
    sets with a-z ranges (']' first is literal); case-sensitive."""

    def __init__(self, str pattern):
        cdef Py_ssize_t i = 0
        cdef Py_ssize_t n
        cdef Py_UCS4 c
        _v_check_pattern_length(pattern)
        pattern = _v_cut_nul(pattern)
        n = len(pattern)
        self.nocase = 0
        self._alloc(n)
        while i < n:
            c = pattern[i]
            i += 1
            if c == 42:    # '*'
                self._add(_PT_ANY, 0)
            elif c == 63:  # '?'
                self._add(_PT_ONE, 0)
            elif c == 91:  # '['
                i = self._compile_set(pattern, i, n)
                if i < 0:
                    self._add(_PT_NEVER, 0)
                    break
            else:
                self._add(_PT_CHAR, c)

    cdef Py_ssize_t _compile_set(self, str p, Py_ssize_t i, Py_ssize_t n) except -2:
        """Compile a set starting after '['; returns the index after ']' or
        -1 if the set is never closed."""
        cdef _VTok* t = &self.toks[self.ntok]
        cdef Py_UCS4 c
        cdef Py_UCS4 prior = 0
        t.kind = _PT_SET
        t.set_start = self.nrange
        t.set_invert = 0
        if i < n and p[i] == "^":
            t.set_invert = 1
            i += 1
        if i < n and p[i] == "]":
            self._add_range(93, 93)
            i += 1
        while i < n and p[i] != "]":
            c = p[i]
            i += 1
            if c == 45 and i < n and p[i] != "]" and prior > 0:  # a-z range
                # 'prior' itself is already in the set; a reversed range
                # (z-a) adds nothing more.
                self._add_range(prior, p[i])
                i += 1
                prior = 0
            else:
                self._add_range(c, c)
                prior = c
        if i >= n:
            return -1
        t.set_count = self.nrange - t.set_start
        self.ntok += 1
        return i + 1

    cdef inline void _add_range(self, Py_UCS4 lo, Py_UCS4 hi) noexcept:
        self.ranges[2 * self.nrange] = lo
        self.ranges[2 * self.nrange + 1] = hi
        self.nrange += 1


cdef int _v_check_pattern_length(str pattern) except -1:
    # The limit is in UTF-8 bytes; only long patterns need the encoding.
    if len(pattern) * 4 > _LIKE_MAX_PATTERN and len(pattern.encode("utf-8", "surrogatepass")) > _LIKE_MAX_PATTERN:
        raise _VDataError("LIKE or GLOB pattern too complex")
    return 0


cdef Py_UCS4 _v_like_escape(object escape) except 0xFFFFFFFF:
    """The ESCAPE character: exactly one character (text up to a NUL)."""
    cdef str e = _v_cut_nul(v_to_text(escape))
    if len(e) != 1:
        raise _VDataError("ESCAPE expression must be a single character")
    return e[0]


cdef object v_like(object value, object pattern, object escape):
    """LIKE in SQLite's order of checks: blobs, pattern length, ESCAPE, NULL."""
    if type(value) is bytes or type(pattern) is bytes:
        return 0  # this SQLite build (LIKE_DOESNT_MATCH_BLOBS): never matches
    if pattern is not None:
        pattern = v_to_text(pattern)
        _v_check_pattern_length(pattern)
    if escape is not None:
        _v_like_escape(escape)
        escape = v_to_text(escape)
    if value is None or pattern is None:
        return None
    return LikeMatcher(pattern, escape).match(v_to_text(value))


cpdef object sql_like(object value, object pattern, object escape=None):
    """``value LIKE pattern [ESCAPE escape]`` -> 1, 0 or None (NULL value or
    pattern).  Numbers match through their text form; blobs never match.
    (With an explicit ESCAPE that is NULL, SQL gives NULL: check that before
    calling, as None here means "no ESCAPE clause".)"""
    return v_like(value, pattern, escape)


cpdef object sql_glob(object value, object pattern):
    """``value GLOB pattern`` -> 1, 0 or None (NULL operand)."""
    if type(value) is bytes or type(pattern) is bytes:
        return 0
    if pattern is not None:
        pattern = v_to_text(pattern)
        _v_check_pattern_length(pattern)
    if value is None or pattern is None:
        return None
    return GlobMatcher(pattern).match(v_to_text(value))
