# lmdbc.pxi - included by _core.pyx; do not compile on its own.
"""C-level LMDB access: scans that read entries without a Python object per entry, and
the row writers' puts, deletes and point lookups without py-lmdb's Python-level calls.

Why
---
py-lmdb's ``Cursor.iternext`` builds a bytes object for every key and value
plus a tuple for the pair: about 0.15 us per entry, a third of a whole
GROUP BY row.  ``LmdbCursor`` walks the same B-tree with LMDB's own
``mdb_cursor_get`` and hands the scan loops ``(pointer, length)`` pairs that
point straight into the memory map, so the row decoders read them in place.

How, and why it is safe
-----------------------
There must be ONE copy of LMDB in the process for an environment: LMDB keeps
per-process lock state (reader slots, the writer mutex, the mapping) inside
the library, and a second copy opening the same files breaks it.  So
terndb does not link LMDB.  It borrows what py-lmdb already has:

* The MDB_cursor is created by py-lmdb (``Transaction.cursor(db)``) and stays
  owned by that py-lmdb ``Cursor`` object, which we keep referenced.
  py-lmdb closes it when the transaction ends, is dropped or the map is
  resized, and marks the object invalid (``valid = 0``, ``curs = NULL``)
  while holding the GIL.  We hold the GIL for every LMDB call and re-check
  those two fields before each one, so we never touch a closed cursor.
  Dropping the py-lmdb object closes the MDB_cursor exactly once.
* The functions called are the ones py-lmdb itself calls for that cursor:
  the ``MdbApi`` engine table its ``Cursor`` points to (py-lmdb 3.0 bundles
  LMDB 0.9 and 1.0 side by side, symbol-prefixed ``mdb09_``/``mdb10_``, and
  picks one per environment by the data file's format; a "system LMDB"
  build has one table, ``lmdb_api_sys``).

That table and py-lmdb's object layouts are private (lmdb/cpython.c and
lmdb/mdb_api.h in the py-lmdb 3.0 sources; there is no capsule or C API for
other extensions), so everything is verified before use and the scan falls
back to py-lmdb's Python API when anything does not match:

1. at import (``_lmdbc_init``): py-lmdb 3.0.x on its CPython extension (not
   cffi); ``tp_basicsize`` of its Cursor type equals our mirror's size;
   the extension, found already loaded (``dlopen(RTLD_NOLOAD)``: never a
   second load), exports the engine tables, and each table's identity
   fields and the cursor/get entries we call equal the addresses of the
   exported ``mdb09_*``/``mdb10_*``/``mdb_*`` functions (which also proves the
   table layout up to those entries);
2. for every cursor (``lmdb_cursor``) on a transaction of exactly py-lmdb's
   Transaction type (anything else reads through its Python API): the cursor
   is exactly py-lmdb's Cursor type, its ``trans`` field is the Transaction
   object we asked, its engine pointer is one of the verified tables
   (pointer compares; nothing unverified is dereferenced), and it is valid
   with a non-NULL MDB_cursor.

A failure of (1) or (2) turns the C path off for the process (a py-lmdb
upgrade degrades to the old speed, never to a crash); ``lmdb_c_status()``
says why.  ``TERNDB_LMDB_C=0`` in the environment turns it off from the start.

Writes and point lookups (``lmdb_put``, ``lmdb_delete``, ``lmdb_get``, lookup cursors)
call the ``put``/``del``/``get`` entries of the same verified table (also checked against
the exported symbols at import) on the py-lmdb Transaction's MDB_txn and the _Database's
dbi, after the same kind of checks per call (``_lc_txn``: exact types, layouts
size-checked at import, both objects valid, the transaction not ended, the handle of the
same environment).  An UPDATE that found its row through a cursor in the write transaction
rewrites it through that cursor (``LmdbCursor.replace_current``: ``cursor_put`` with
MDB_CURRENT, checked against the export the same way) instead of a second descent of the
B-tree; only while the cursor still stands on that very key with no write since it got
there (the transaction's mutation counter), else the caller puts the ordinary way.  They do what py-lmdb's methods do around the call: the transaction's
mutation counter is bumped so its py-lmdb cursors re-read their entry, and an LMDB error
raises py-lmdb's own exception class with its message, so callers (map growth on
``MapFullError``, ``translate_lmdb_error``) cannot tell the paths apart.  The GIL is held
throughout: py-lmdb's remap (set_mapsize) runs under the GIL and marks transactions
invalid before it waits, so no remap can happen inside one of these calls.

Semantics: the cursor belongs to the caller's transaction, so reads see
exactly that transaction's snapshot (and, in a write transaction, its own
uncommitted writes).  Pointers returned by LMDB are valid only until the
next write in that transaction or its end: callers decode them before any
other LMDB call and never keep them.
"""

from cpython.object cimport PyObject, PyTypeObject
from libc.string cimport memcmp, memcpy

from terndb.engine.errors import OperationalError as _LcOperationalError


cdef extern from "<dlfcn.h>":
    void* dlopen(const char* filename, int flags)
    void* dlsym(void* handle, const char* symbol)
    int RTLD_LAZY
    int RTLD_NOLOAD


cdef extern from *:
    """
    /* Mirrors of py-lmdb 3.0 private structures (see lmdbc.pxi's header).
     * MDB_val: identical in LMDB 0.9 and 1.0 on the builds py-lmdb makes. */
    typedef struct { size_t mv_size; void *mv_data; } terndb_mdb_val;

    /* lmdb/mdb_api.h: struct MdbApi. */
    typedef struct terndb_mdb_api {
        int major, minor, patch;
        unsigned int data_version;
        void *env_fns[20];      /* env_create .. reader_list */
        void *txn_fns[6];       /* txn_begin .. txn_id */
        void *dbi_open, *dbi_flags, *dbi_close, *drop;
        int (*get)(void *txn, unsigned int dbi, terndb_mdb_val *key, terndb_mdb_val *data);
        int (*put)(void *txn, unsigned int dbi, terndb_mdb_val *key, terndb_mdb_val *data,
                   unsigned int flags);
        int (*del_fn)(void *txn, unsigned int dbi, terndb_mdb_val *key, terndb_mdb_val *data);
        void *stat;
        int (*cursor_open)(void *txn, unsigned int dbi, void **cursor);
        void (*cursor_close)(void *cursor);
        int (*cursor_get)(void *cursor, terndb_mdb_val *key, terndb_mdb_val *data, int op);
        int (*cursor_put)(void *cursor, terndb_mdb_val *key, terndb_mdb_val *data,
                          unsigned int flags);
        void *cursor_del, *cursor_count;
        char *(*strerror_fn)(int err);
        void *version_fn;
    } terndb_mdb_api;

    /* lmdb/cpython.c: struct CursorObject (LmdbObject_HEAD, then its fields). */
    typedef struct {
        PyObject_HEAD
        void *siblings_prev, *siblings_next, *children_prev, *children_next;
        int valid;
        PyObject *trans;
        const terndb_mdb_api *libv;
        int positioned;
        void *curs;
        terndb_mdb_val key, val;
        int last_mutation;
        unsigned int dbi_flags;
        unsigned int dbi;
    } terndb_pylmdb_cursor;

    /* lmdb/cpython.c: struct TransObject (built without HAVE_MEMSINK, as the
     * wheels are; the size check at import catches a memsink build). */
    typedef struct {
        PyObject_HEAD
        void *siblings_prev, *siblings_next, *children_prev, *children_next;
        int valid;
        PyObject *weaklist;
        void *env;
        void *parent;
        const terndb_mdb_api *libv;
        void *txn;
        int flags;
        void *db;
        int mutations;
    } terndb_pylmdb_txn;

    /* lmdb/cpython.c: struct DbObject (lmdb._Database). */
    typedef struct {
        PyObject_HEAD
        void *siblings_prev, *siblings_next, *children_prev, *children_next;
        int valid;
        void *env;
        unsigned int dbi;
        unsigned int flags;
    } terndb_pylmdb_db;

    /* lmdb.h (0.9 and 1.0 agree): MDB_cursor_op values and error codes we use. */
    enum { TERNDB_MDB_FIRST = 0, TERNDB_MDB_NEXT = 8, TERNDB_MDB_SET_KEY = 16,
           TERNDB_MDB_SET_RANGE = 17 };
    enum { TERNDB_MDB_KEYEXIST = -30799, TERNDB_MDB_NOTFOUND = -30798,
           TERNDB_MDB_PAGE_NOTFOUND = -30797, TERNDB_MDB_CORRUPTED = -30796,
           TERNDB_MDB_MAP_FULL = -30792, TERNDB_MDB_NOOVERWRITE = 0x10,
           TERNDB_MDB_CURRENT = 0x40, TERNDB_MDB_APPEND = 0x20000 };
    """
    ctypedef struct terndb_mdb_val:
        size_t mv_size
        void* mv_data

    ctypedef struct terndb_mdb_api:
        int major, minor, patch
        unsigned int data_version
        int (*get)(void*, unsigned int, terndb_mdb_val*, terndb_mdb_val*)
        int (*put)(void*, unsigned int, terndb_mdb_val*, terndb_mdb_val*, unsigned int)
        int (*del_fn)(void*, unsigned int, terndb_mdb_val*, terndb_mdb_val*)
        int (*cursor_open)(void*, unsigned int, void**)
        void (*cursor_close)(void*)
        int (*cursor_get)(void*, terndb_mdb_val*, terndb_mdb_val*, int)
        int (*cursor_put)(void*, terndb_mdb_val*, terndb_mdb_val*, unsigned int)
        char* (*strerror_fn)(int)

    ctypedef struct terndb_pylmdb_cursor:
        int valid
        PyObject* trans
        const terndb_mdb_api* libv
        void* curs

    ctypedef struct terndb_pylmdb_txn:
        int valid
        void* env
        const terndb_mdb_api* libv
        void* txn
        int mutations

    ctypedef struct terndb_pylmdb_db:
        int valid
        void* env
        unsigned int dbi

    enum:
        TERNDB_MDB_FIRST, TERNDB_MDB_NEXT, TERNDB_MDB_SET_KEY, TERNDB_MDB_SET_RANGE
        TERNDB_MDB_KEYEXIST, TERNDB_MDB_NOTFOUND, TERNDB_MDB_PAGE_NOTFOUND, TERNDB_MDB_CORRUPTED
        TERNDB_MDB_MAP_FULL, TERNDB_MDB_NOOVERWRITE, TERNDB_MDB_CURRENT, TERNDB_MDB_APPEND


# The verified engine tables (at most three: v09, v10, sys).
cdef const terndb_mdb_api* _lc_engines[3]
cdef int _lc_nengines = 0
cdef bint _lc_enabled = False
cdef object _lc_cursor_type = None     # py-lmdb's Cursor type, exactly
cdef object _lc_txn_type = None        # py-lmdb's Transaction type, exactly
cdef object _lc_db_type = None         # py-lmdb's _Database type, exactly
cdef dict _lc_errors = {}              # LMDB error code -> the py-lmdb exception class
cdef str _lc_reason = "not initialised"
# Rows rewritten in place through the cursor that found them (replace_current), for
# tests and diagnosis: the count shows the fast path is taken, not only that it agrees.
cdef unsigned long long _lc_in_place_writes = 0


cdef bint _lc_exported(void* handle, bytes prefix, bytes name, void* addr):
    """The extension exports ``prefix + name`` at ``addr``."""
    cdef bytes symbol = prefix + name
    return addr != NULL and dlsym(handle, symbol) == addr


cdef str _lc_check_engine(void* handle, const terndb_mdb_api* api, bytes prefix,
                          int major, unsigned int data_version):
    """None if ``api`` is the engine table its exported functions say it is, else why not."""
    if major >= 0 and (api.major != major or api.data_version != data_version):
        return (f"engine table {prefix!r} claims LMDB {api.major}.{api.minor} "
                f"data format {api.data_version}")
    if major < 0 and api.data_version != (3 if api.major >= 1 else 1):
        return f"system engine table has an unexpected data format {api.data_version}"
    if not (_lc_exported(handle, prefix, b"cursor_get", <void*>api.cursor_get)
            and _lc_exported(handle, prefix, b"cursor_open", <void*>api.cursor_open)
            and _lc_exported(handle, prefix, b"cursor_close", <void*>api.cursor_close)
            and _lc_exported(handle, prefix, b"cursor_put", <void*>api.cursor_put)
            and _lc_exported(handle, prefix, b"get", <void*>api.get)
            and _lc_exported(handle, prefix, b"put", <void*>api.put)
            and _lc_exported(handle, prefix, b"del", <void*>api.del_fn)
            and _lc_exported(handle, prefix, b"strerror", <void*>api.strerror_fn)):
        return f"engine table {prefix!r} does not point at the exported {prefix.decode()}* functions"
    return None


cdef str _lmdbc_init():
    """Verifies py-lmdb's private layout (see the header); None if the C path is usable."""
    global _lc_nengines, _lc_cursor_type, _lc_txn_type, _lc_db_type
    import os
    if os.environ.get("TERNDB_LMDB_C", "1") == "0":
        return "disabled by TERNDB_LMDB_C=0"
    try:
        import lmdb
        import lmdb.cpython as ext
    except ImportError as err:
        return f"py-lmdb's CPython extension is not importable ({err})"
    if not str(getattr(lmdb, "__version__", "")).startswith("3.0."):
        return f"py-lmdb {getattr(lmdb, '__version__', '?')} is not a 3.0.x release this layout was checked against"
    if lmdb.Cursor is not ext.Cursor:
        return "py-lmdb runs on its cffi backend"
    if (<PyTypeObject*>ext.Cursor).tp_basicsize != sizeof(terndb_pylmdb_cursor):
        return (f"py-lmdb's Cursor object is {(<PyTypeObject*>ext.Cursor).tp_basicsize} bytes, "
                f"expected {sizeof(terndb_pylmdb_cursor)}")
    if (<PyTypeObject*>ext.Transaction).tp_basicsize != sizeof(terndb_pylmdb_txn):
        return (f"py-lmdb's Transaction object is {(<PyTypeObject*>ext.Transaction).tp_basicsize} "
                f"bytes, expected {sizeof(terndb_pylmdb_txn)}")
    if (<PyTypeObject*>lmdb._Database).tp_basicsize != sizeof(terndb_pylmdb_db):
        return (f"py-lmdb's _Database object is {(<PyTypeObject*>lmdb._Database).tp_basicsize} "
                f"bytes, expected {sizeof(terndb_pylmdb_db)}")
    cdef bytes path = os.fsencode(ext.__file__)
    # RTLD_NOLOAD: a handle on the copy Python already loaded, never a second one.
    # The handle stays open for the process (extension modules are never unloaded).
    cdef void* handle = dlopen(path, RTLD_LAZY | RTLD_NOLOAD)
    if handle == NULL:
        return "py-lmdb's extension is not loaded where its __file__ says"
    cdef const terndb_mdb_api* api
    cdef str why
    for table, prefix, major, data_version in ((b"lmdb_api_v09", b"mdb09_", 0, 1),
                                               (b"lmdb_api_v10", b"mdb10_", 1, 3),
                                               (b"lmdb_api_sys", b"mdb_", -1, 0)):
        api = <const terndb_mdb_api*>dlsym(handle, <bytes>table)
        if api == NULL:
            continue
        why = _lc_check_engine(handle, api, <bytes>prefix, major, data_version)
        if why is not None:
            return why
        _lc_engines[_lc_nengines] = api
        _lc_nengines += 1
    if _lc_nengines == 0:
        return "py-lmdb's extension exports no LMDB engine table"
    _lc_errors.update(_lc_error_classes(lmdb))
    _lc_cursor_type = ext.Cursor
    _lc_txn_type = ext.Transaction
    _lc_db_type = lmdb._Database
    return None


cdef inline bint _lc_known_engine(const terndb_mdb_api* api) noexcept:
    cdef int i
    for i in range(_lc_nengines):
        if _lc_engines[i] == api:
            return True
    return False


cdef void _lc_disable(str why):
    global _lc_enabled, _lc_reason
    _lc_enabled = False
    _lc_reason = why


def lmdb_c_status():
    """``(enabled, reason)``: whether scans read LMDB through C, and why not when they don't."""
    return _lc_enabled, (None if _lc_enabled else _lc_reason)


def lmdb_c_enable(bint on):
    """Turns the C path on (if py-lmdb's layout verified at import) or off; returns the old state.

    For tests and diagnosis: both paths give the same results."""
    global _lc_enabled
    cdef bint old = _lc_enabled
    if on and _lc_cursor_type is None:
        raise _LcOperationalError(f"the C LMDB path is unavailable: {_lc_reason}")
    _lc_enabled = on
    return old


cdef int _lc_raise(const terndb_mdb_api* api, int rc) except -1:
    cdef bytes text = api.strerror_fn(rc)
    cdef str msg = text.decode("utf-8", "replace")
    if rc == TERNDB_MDB_CORRUPTED or rc == TERNDB_MDB_PAGE_NOTFOUND:
        raise CorruptDatabaseError(f"LMDB read failed: {msg}")
    raise _LcOperationalError(f"LMDB read failed: {msg}")


# py-lmdb's own table (lmdb/cpython.c ``error_map``): an LMDB error code and the
# exception class its Transaction methods raise for it.  Raising the same class
# keeps every caller's handling (map-full growth and replay in storage.py and
# session.py, translate_lmdb_error) identical on both paths.
_LC_ERROR_NAMES = (
    (-30799, "KeyExistsError"), (-30798, "NotFoundError"), (-30797, "PageNotFoundError"),
    (-30796, "CorruptedError"), (-30795, "PanicError"), (-30794, "VersionMismatchError"),
    (-30793, "InvalidError"), (-30792, "MapFullError"), (-30791, "DbsFullError"),
    (-30790, "ReadersFullError"), (-30789, "TlsFullError"), (-30788, "TxnFullError"),
    (-30787, "CursorFullError"), (-30786, "PageFullError"), (-30785, "MapResizedError"),
    (-30784, "IncompatibleError"), (-30783, "BadRslotError"), (-30782, "BadTxnError"),
    (-30781, "BadValsizeError"), (-30780, "BadDbiError"),
    # LMDB 1.0 codes (terndb's databases use the 0.9 engine; kept for fidelity).
    (-30779, "ProblemError"), (-30778, "BadChecksumError"), (-30777, "CryptoFailError"),
    (-30776, "EnvEncryptionError"), (-30770, "ReadonlyError"),
)
# Hints py-lmdb appends to these errors' messages (its err_hint).
_LC_ERROR_HINTS = {
    -30792: "Please use a larger Environment(map_size=) parameter",
    -30791: "Please use a larger Environment(max_dbs=) parameter",
    -30790: "Please use a larger Environment(max_readers=) parameter",
    -30788: "Please do less work within your transaction",
}


cdef dict _lc_error_classes(object lmdb):
    import errno
    cdef dict out = {}
    for code, name in _LC_ERROR_NAMES + ((errno.EACCES, "ReadonlyError"),
                                         (errno.EINVAL, "InvalidParameterError"),
                                         (errno.EAGAIN, "LockError"),
                                         (errno.ENOMEM, "MemoryError"),
                                         (errno.ENOSPC, "DiskError")):
        cls = getattr(lmdb, name, None)
        if cls is not None:
            out[code] = cls
    return out


cdef int _lc_raise_lmdb(const terndb_mdb_api* api, str what, int rc) except -1:
    """Raises what py-lmdb's Transaction method raises for LMDB error ``rc``:
    the same exception class, message and ``what``/``code``/``reason`` attributes."""
    import lmdb
    cdef str reason = (<bytes>api.strerror_fn(rc)).decode("utf-8", "replace")
    hint = _LC_ERROR_HINTS.get(rc)
    exc = _lc_errors.get(rc, lmdb.Error)(f"{what}: {reason} ({hint})" if hint else f"{what}: {reason}")
    exc.what = what
    exc.code = rc
    exc.reason = reason
    raise exc


cdef inline terndb_pylmdb_txn* _lc_txn(object txn, object db, unsigned int* dbi):
    """The C struct of ``txn`` when the C path may write/read ``db`` through it, else NULL.

    Checked on every call, with the GIL held (py-lmdb changes these fields only
    under the GIL): exactly py-lmdb's Transaction and _Database types, both
    valid, the transaction not ended (py-lmdb NULLs ``txn`` when it aborts or
    commits and marks it invalid before a remap), the handle of the same
    environment (py-lmdb's db_owner_check) and a verified engine table.
    NULL sends the caller to py-lmdb's Python API, which then raises exactly
    the error it always raised for an ended transaction or a foreign handle.
    """
    cdef terndb_pylmdb_txn* t
    cdef terndb_pylmdb_db* d
    if not _lc_enabled or type(txn) is not _lc_txn_type or type(db) is not _lc_db_type:
        return NULL
    t = <terndb_pylmdb_txn*><PyObject*>txn
    d = <terndb_pylmdb_db*><PyObject*>db
    if t.valid == 0 or t.txn == NULL or d.valid == 0 or d.env != t.env:
        return NULL
    if not _lc_known_engine(t.libv):
        _lc_disable("a py-lmdb transaction did not have the verified layout")
        return NULL
    dbi[0] = d.dbi
    return t


cdef int lmdb_put(object txn, object db, bytes key, bytes value, bint overwrite,
                  bint append=False) except -1:
    """``txn.put(key, value, db=db, overwrite=overwrite)``: 1 when stored, 0 when the
    key exists and ``overwrite`` is false.  Same effects and errors on both paths.

    ``append`` is a hint that ``key`` sorts after every key of ``db``: the C path
    then tries MDB_APPEND first, which finds the last leaf page without comparing
    keys on the way down, and when the key is not last (LMDB answers
    MDB_KEYEXIST and changes nothing) stores it the ordinary way and returns 2,
    so the caller can stop hinting.  The result is the same either way."""
    return lmdb_put_raw(txn, db, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                        PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), overwrite, append)


cdef int lmdb_put_raw(object txn, object db, const char* kp, Py_ssize_t kn,
                      const char* vp, Py_ssize_t vn, bint overwrite, bint append) except -1:
    """``lmdb_put`` of a key and value held in C buffers (the row writers' scratch
    records): no bytes objects on the C path, which copies them into the page."""
    cdef unsigned int dbi
    cdef unsigned int flags = 0 if overwrite else TERNDB_MDB_NOOVERWRITE
    cdef terndb_mdb_val k, v
    cdef int rc
    cdef terndb_pylmdb_txn* t = _lc_txn(txn, db, &dbi)
    if t == NULL:
        return 1 if txn.put(PyBytes_FromStringAndSize(kp, kn), PyBytes_FromStringAndSize(vp, vn),
                            True, overwrite, False, db) else 0
    k.mv_data = <void*>kp
    k.mv_size = <size_t>kn
    v.mv_data = <void*>vp
    v.mv_size = <size_t>vn
    # As py-lmdb does before every write: its cursors on this transaction
    # re-read their current entry when the count moved.
    t.mutations += 1
    if append:
        rc = t.libv.put(t.txn, dbi, &k, &v, flags | TERNDB_MDB_APPEND)
        if rc == 0:
            return 1
        if rc != TERNDB_MDB_KEYEXIST:
            return _lc_raise_lmdb(t.libv, "mdb_put", rc)
    rc = t.libv.put(t.txn, dbi, &k, &v, flags)
    if rc == 0:
        return 2 if append else 1
    if rc == TERNDB_MDB_KEYEXIST and not overwrite:
        return 0
    return _lc_raise_lmdb(t.libv, "mdb_put", rc)


cdef int lmdb_delete(object txn, object db, bytes key) except -1:
    """``txn.delete(key, db=db)``: 1 when the key was there, 0 when not."""
    cdef unsigned int dbi
    cdef terndb_mdb_val k
    cdef int rc
    cdef terndb_pylmdb_txn* t = _lc_txn(txn, db, &dbi)
    if t == NULL:
        return 1 if txn.delete(key, b"", db) else 0
    k.mv_data = <void*>PyBytes_AS_STRING(key)
    k.mv_size = <size_t>PyBytes_GET_SIZE(key)
    t.mutations += 1
    rc = t.libv.del_fn(t.txn, dbi, &k, NULL)
    if rc == 0:
        return 1
    if rc == TERNDB_MDB_NOTFOUND:
        return 0
    return _lc_raise_lmdb(t.libv, "mdb_del", rc)


cdef object lmdb_get(object txn, object db, bytes key):
    """``txn.get(key, db=db)``: the value as bytes, or None."""
    cdef unsigned int dbi
    cdef terndb_mdb_val k, v
    cdef int rc
    cdef terndb_pylmdb_txn* t = _lc_txn(txn, db, &dbi)
    if t == NULL:
        return txn.get(key, None, db)
    k.mv_data = <void*>PyBytes_AS_STRING(key)
    k.mv_size = <size_t>PyBytes_GET_SIZE(key)
    rc = t.libv.get(t.txn, dbi, &k, &v)
    if rc == 0:
        return PyBytes_FromStringAndSize(<const char*>v.mv_data, <Py_ssize_t>v.mv_size)
    if rc == TERNDB_MDB_NOTFOUND:
        return None
    _lc_raise_lmdb(t.libv, "mdb_get", rc)


def lmdb_c_put(txn, db, bytes key not None, bytes value not None, bint overwrite=True,
               bint append=False):
    """``lmdb_put`` from Python (tests, the binlog's appends): 0 (key exists), 1 (stored)
    or 2 (stored, not appended)."""
    return lmdb_put(txn, db, key, value, overwrite, append)


def lmdb_c_delete(txn, db, bytes key not None):
    """``lmdb_delete`` for tests: True when the key was there."""
    return lmdb_delete(txn, db, key) == 1


def lmdb_c_get(txn, db, bytes key not None):
    """``lmdb_get`` for tests."""
    return lmdb_get(txn, db, key)


cdef class LmdbCursor:
    """A cursor on one sub-database of one py-lmdb transaction.

    Positioning calls return 1 when an entry is there and 0 at the end; the
    entry is then at ``kp``/``kn`` (key) and ``vp``/``vn`` (value), valid until
    the next call on this cursor or the next write in the transaction.
    Without the C path (see the header) the same calls go through py-lmdb's
    Python API and the pointers address the bytes objects it returned.
    """
    cdef object pyc                      # py-lmdb Cursor: owns the MDB_cursor
    cdef terndb_pylmdb_cursor* raw       # its C struct, NULL on the fallback path
    cdef const terndb_mdb_api* api
    cdef terndb_mdb_val k, v
    cdef object it                       # fallback: py-lmdb iterator after positioning
    cdef bytes kb, vb                    # fallback: the current entry
    cdef bint positioned
    cdef const unsigned char* kp
    cdef const unsigned char* vp
    cdef Py_ssize_t kn, vn
    # A lookup cursor (``lmdb_lookup``) opens no MDB_cursor: ``find`` is one
    # mdb_get on (ltxn, ldb), and the found key is a copy of the one asked for.
    cdef bint lookup
    cdef object ltxn, ldb
    cdef unsigned char kcopy[64]
    # The transaction's mutation counter when the C cursor last reached an entry: while
    # it has not moved, no write happened since, so ``kp``/``kn`` still address the
    # current key and the cursor still stands on it (replace_current).
    cdef int at_mutation

    cdef inline int _ready(self) except -1:
        if self.raw.valid == 0 or self.raw.curs == NULL:
            raise _LcOperationalError("the transaction this scan reads has ended")
        return 0

    cdef inline int _got(self, int rc) except -1:
        if rc == 0:
            self.kp = <const unsigned char*>self.k.mv_data
            self.kn = <Py_ssize_t>self.k.mv_size
            self.vp = <const unsigned char*>self.v.mv_data
            self.vn = <Py_ssize_t>self.v.mv_size
            self.positioned = True
            if self.raw != NULL:
                self.at_mutation = (<terndb_pylmdb_txn*>self.raw.trans).mutations
            return 1
        if rc == TERNDB_MDB_NOTFOUND:
            return 0
        return _lc_raise(self.api, rc)

    cdef int _fb_take(self, object kv) except -1:
        if kv is None:
            self.kb = self.vb = None
            return 0
        self.kb = <bytes>(<tuple>kv)[0]
        self.vb = <bytes>(<tuple>kv)[1]
        self.kp = <const unsigned char*>PyBytes_AS_STRING(self.kb)
        self.kn = PyBytes_GET_SIZE(self.kb)
        self.vp = <const unsigned char*>PyBytes_AS_STRING(self.vb)
        self.vn = PyBytes_GET_SIZE(self.vb)
        return 1

    cdef int _fb_start(self, bint found) except -1:
        if not found:
            self.it = None
            return 0
        self.positioned = True
        self.it = self.pyc.iternext(keys=True, values=True)
        return self._fb_take(next(self.it, None))

    cdef int first(self) except -1:
        if self.raw != NULL:
            self._ready()
            return self._got(self.api.cursor_get(self.raw.curs, &self.k, &self.v, TERNDB_MDB_FIRST))
        return self._fb_start(self.pyc.first())

    cdef int next(self) except -1:
        """The entry after the current one (the first one on a fresh cursor)."""
        if not self.positioned:
            return self.first()
        if self.raw != NULL:
            self._ready()
            return self._got(self.api.cursor_get(self.raw.curs, &self.k, &self.v, TERNDB_MDB_NEXT))
        if self.it is None:
            return 0
        return self._fb_take(next(self.it, None))

    cdef int seek(self, bytes key) except -1:
        """The first entry with a key >= ``key``."""
        if self.raw != NULL:
            self._ready()
            self.k.mv_data = <void*>PyBytes_AS_STRING(key)
            self.k.mv_size = <size_t>PyBytes_GET_SIZE(key)
            return self._got(self.api.cursor_get(self.raw.curs, &self.k, &self.v, TERNDB_MDB_SET_RANGE))
        return self._fb_start(self.pyc.set_range(key))

    cdef int find(self, const unsigned char* key, Py_ssize_t n) except -1:
        """The entry whose key is exactly ``key[:n]``."""
        cdef bytes kb
        if self.raw != NULL:
            self._ready()
            self.k.mv_data = <void*>key
            self.k.mv_size = <size_t>n
            return self._got(self.api.cursor_get(self.raw.curs, &self.k, &self.v, TERNDB_MDB_SET_KEY))
        if self.lookup:
            return self._get(key, n)
        kb = PyBytes_FromStringAndSize(<const char*>key, n)
        self.it = None     # a lookup ends any iteration on the fallback path
        if not self.pyc.set_key(kb):
            return 0
        self.positioned = True
        return self._fb_take((kb, self.pyc.value()))

    cdef int _get(self, const unsigned char* key, Py_ssize_t n) except -1:
        """``find`` of a lookup cursor: mdb_get on the C path, else ``txn.get``."""
        cdef unsigned int dbi
        cdef int rc
        cdef bytes kb
        cdef terndb_pylmdb_txn* t = _lc_txn(self.ltxn, self.ldb, &dbi)
        if t != NULL and n <= <Py_ssize_t>sizeof(self.kcopy):
            memcpy(self.kcopy, key, n)
            self.k.mv_data = <void*>self.kcopy
            self.k.mv_size = <size_t>n
            rc = t.libv.get(t.txn, dbi, &self.k, &self.v)
            if rc == TERNDB_MDB_NOTFOUND:
                return 0
            if rc != 0:
                return _lc_raise_lmdb(t.libv, "mdb_get", rc)
            self.api = t.libv
            return self._got(rc)
        kb = PyBytes_FromStringAndSize(<const char*>key, n)
        value = self.ltxn.get(kb, None, self.ldb)
        return 0 if value is None else self._fb_take((kb, value))

    cdef int replace_current(self, object txn, const char* kp, Py_ssize_t kn,
                             const char* vp, Py_ssize_t vn) except -1:
        """Stores ``vp[:vn]`` as the value of the entry this cursor stands on, whose key
        must be ``kp[:kn]``, through ``cursor_put(MDB_CURRENT)``: no B-tree descent.
        1 when written; 0 (nothing done: the caller puts the ordinary way) unless this is
        a C cursor in ``txn`` that reached exactly that key with no write in ``txn``
        since.  Errors as ``lmdb_put_raw``'s (MapFullError included)."""
        cdef terndb_pylmdb_txn* t
        cdef terndb_mdb_val k, v
        cdef int rc
        if (self.raw == NULL or not self.positioned or self.raw.valid == 0 or self.raw.curs == NULL
                or self.raw.trans != <PyObject*>txn):
            return 0
        t = <terndb_pylmdb_txn*>self.raw.trans
        if (t.valid == 0 or t.txn == NULL or t.mutations != self.at_mutation
                or kn != self.kn or memcmp(self.kp, kp, kn) != 0):
            return 0
        k.mv_data = <void*>kp
        k.mv_size = <size_t>kn
        v.mv_data = <void*>vp
        v.mv_size = <size_t>vn
        t.mutations += 1           # as lmdb_put_raw: py-lmdb cursors re-read their entry
        rc = self.api.cursor_put(self.raw.curs, &k, &v, TERNDB_MDB_CURRENT)
        if rc != 0:
            return _lc_raise_lmdb(self.api, "mdb_cursor_put", rc)
        global _lc_in_place_writes
        _lc_in_place_writes += 1
        return 1

    cdef inline int key_cmp(self, bytes bound):
        """<0, 0, >0 as the current key sorts before, equal to, after ``bound`` (LMDB's memcmp order)."""
        cdef Py_ssize_t bn = PyBytes_GET_SIZE(bound)
        cdef int c = memcmp(self.kp, PyBytes_AS_STRING(bound), self.kn if self.kn < bn else bn)
        if c != 0:
            return c
        return (self.kn > bn) - (self.kn < bn)

    cdef void close(self):
        self.raw = NULL
        self.ltxn = self.ldb = None
        self.it = None
        self.kb = self.vb = None
        if self.pyc is not None:
            self.pyc.close()
            self.pyc = None


cdef LmdbCursor lmdb_cursor(object txn, object db):
    """An LmdbCursor on ``db`` in py-lmdb transaction ``txn`` (C path when verified)."""
    cdef LmdbCursor c = LmdbCursor.__new__(LmdbCursor)
    cdef terndb_pylmdb_cursor* raw
    c.pyc = txn.cursor(db=db)
    # Something other than py-lmdb's own Transaction (a wrapper, a test double)
    # reads through its Python API; only a py-lmdb object that fails the
    # checks means the layout is not what was verified: then off for good.
    if _lc_enabled and type(txn) is _lc_txn_type and type(c.pyc) is _lc_cursor_type:
        raw = <terndb_pylmdb_cursor*><PyObject*>c.pyc
        if (raw.trans == <PyObject*>txn and _lc_known_engine(raw.libv)
                and raw.valid != 0 and raw.curs != NULL):
            c.raw = raw
            c.api = raw.libv
        else:
            _lc_disable("a py-lmdb cursor did not have the verified layout")
    return c


cdef LmdbCursor lmdb_lookup(object txn, object db):
    """An LmdbCursor on ``db`` in ``txn`` for ``find`` only (exact-key lookups).

    It opens no MDB_cursor (none to create per statement): each ``find`` is
    one mdb_get (or ``txn.get`` without the C path), with the same results and
    errors as a cursor's exact-key positioning."""
    cdef LmdbCursor c = LmdbCursor.__new__(LmdbCursor)
    c.lookup = True
    c.ltxn = txn
    c.ldb = db
    return c


def lmdb_c_forget_txn(txn) -> bool:
    """Makes py-lmdb's Transaction ``txn`` forget its LMDB transaction without ending it:
    True when done, False where its layout is not the verified one (nothing done).

    For a process forked from the one that began ``txn``: ending a read transaction
    there (py-lmdb ends every transaction of an Environment it closes) would mark the
    *parent's* reader slot, in the lock file both map, as not reading, and LMDB could
    then reuse pages the parent still reads.  The child's copy of the MDB_txn is leaked.
    """
    cdef terndb_pylmdb_txn* t
    if _lc_txn_type is None or type(txn) is not _lc_txn_type:
        return False
    t = <terndb_pylmdb_txn*><PyObject*>txn
    if t.valid == 0 or t.txn == NULL:
        return True                     # already ended: nothing left to end
    if not _lc_known_engine(t.libv):
        return False
    t.txn = NULL                        # py-lmdb aborts only a transaction it still has
    t.valid = 0
    return True


def lmdb_c_in_place_writes():
    """How many values were rewritten through the cursor that found them (process total)."""
    return _lc_in_place_writes


def lmdb_c_find_and_replace(txn, db, bytes find_key not None, bytes key not None,
                            bytes value not None, tuple between=None):
    """For tests: positions a cursor of ``txn`` on ``find_key``, puts ``between`` (a key and a
    value) if given, then answers ``replace_current(key, value)`` (1 written, 0 not)."""
    cdef LmdbCursor c = lmdb_cursor(txn, db)
    try:
        c.find(<const unsigned char*>PyBytes_AS_STRING(find_key), PyBytes_GET_SIZE(find_key))
        if between is not None:
            lmdb_put(txn, db, <bytes?>between[0], <bytes?>between[1], True)
        return c.replace_current(txn, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                                 PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    finally:
        c.close()


def lmdb_c_lookup(txn, db, bytes key not None):
    """``(key, value)`` found by a lookup cursor, or None (for tests)."""
    cdef LmdbCursor c = lmdb_lookup(txn, db)
    if not c.find(<const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)):
        return None
    return (PyBytes_FromStringAndSize(<const char*>c.kp, c.kn),
            PyBytes_FromStringAndSize(<const char*>c.vp, c.vn))


cdef class LmdbItems:
    """``(key, value)`` bytes pairs of a sub-database from ``start`` on, through LmdbCursor.

    The Python face of the C cursor, for tests and tools (scans use LmdbCursor directly)."""
    cdef LmdbCursor cur
    cdef bytes start
    cdef bint started, done

    def __init__(self, txn, db, bytes start=None):
        self.cur = lmdb_cursor(txn, db)
        self.start = start

    @property
    def uses_c(self):
        return self.cur.raw != NULL

    def __iter__(self):
        return self

    def __next__(self):
        cdef int found
        if self.done:
            raise StopIteration
        if not self.started:
            self.started = True
            found = self.cur.first() if self.start is None else self.cur.seek(self.start)
        else:
            found = self.cur.next()
        if not found:
            self.done = True
            self.cur.close()
            raise StopIteration
        return (PyBytes_FromStringAndSize(<const char*>self.cur.kp, self.cur.kn),
                PyBytes_FromStringAndSize(<const char*>self.cur.vp, self.cur.vn))

    def close(self):
        self.done = True
        self.cur.close()


cdef str _lc_why_not = _lmdbc_init()
_lc_enabled = _lc_why_not is None
_lc_reason = _lc_why_not or ""
