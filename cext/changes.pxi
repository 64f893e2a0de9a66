"""Change capture: collect a transaction's row changes into one binary change set.

The write path calls a ``ChangeCollector`` once per changed row with bytes it
already holds (the order-preserving primary-key key and the encoded row
record), so capturing changes never re-encodes a value: each call is a few
``memcpy`` into a growable C buffer.  At commit ``finish()`` stamps the fixed
header and returns the change set that ``engine/binlog.py`` stores in the SAME
LMDB transaction as the rows.  ``decode_changeset`` is the inverse; it is also
the first thing a replication message from a peer goes through, so it treats
its input as hostile: every length is checked against the bytes that remain
and nothing is ever read out of bounds.

Change set format (version 1), all fixed-width integers big-endian::

    header (48 bytes)
      0  2  magic b"TC"
      2  1  format version (1)
      3  1  flags (reserved, 0)
      4  8  HLC timestamp of the commit
     12 16  origin node id
     28  8  sequence number at the origin
     36  8  schema version
     44  4  number of entries
    entries, back to back; varint = unsigned LEB128
      1 byte  op (1 insert, 2 update, 3 delete, 4 ddl) | 0x80 when a
              previous-version HLC follows | 0x40 (delete only) when the
              deleted row's record follows the key
      row ops: varint table id, [8-byte previous HLC], varint len + pk key,
               insert/update: varint len + row record,
               delete: [varint len + the deleted row's record],
               update: varint len + changed-column bitmap (bit i of byte i//8
               is column i; any number of columns)
      ddl:     varint len + opaque payload
"""
cimport cython
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from cpython.bytes cimport (
    PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize,
)

from terndb.engine.errors import CorruptDatabaseError as _ChgCorrupt
from terndb.engine.errors import InternalError as _ChgInternal


cdef enum:
    _CHG_INSERT = 1
    _CHG_UPDATE = 2
    _CHG_DELETE = 3
    _CHG_DDL = 4
    _CHG_HEADER = 48
    _CHG_VERSION = 1
    _CHG_MAGIC0 = 0x54   # "T"
    _CHG_MAGIC1 = 0x43   # "C"
    _CHG_HAS_PREV = 0x80
    _CHG_HAS_ROW = 0x40
    _CHG_OP_MASK = 0x3F
    # One varint is at most 10 bytes; an entry's fixed overhead is below this.
    _CHG_ENTRY_SLACK = 48
    # A table has at most 32767 columns (SQLite's hard limit), so a longer
    # bitmap can only come from a damaged or hostile change set.
    _CHG_MAX_BITMAP = 4096
    _CHG_INITIAL_CAPACITY = 4096
    # After a big transaction, give the memory back instead of keeping it.
    _CHG_KEEP_CAPACITY = 4 * 1024 * 1024

CHANGE_OP_INSERT = _CHG_INSERT
CHANGE_OP_UPDATE = _CHG_UPDATE
CHANGE_OP_DELETE = _CHG_DELETE
CHANGE_OP_DDL = _CHG_DDL
CHANGESET_FORMAT_VERSION = _CHG_VERSION
CHANGESET_HEADER_SIZE = _CHG_HEADER


cdef inline Py_ssize_t _chg_put_varint(uint8_t* p, uint64_t v) noexcept nogil:
    """Write ``v`` as LEB128 at ``p``; return the number of bytes written."""
    cdef Py_ssize_t n = 0
    while v >= 0x80:
        p[n] = <uint8_t>(v | 0x80)
        v >>= 7
        n += 1
    p[n] = <uint8_t>v
    return n + 1


cdef inline void _chg_put_u64be(uint8_t* p, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        p[7 - i] = <uint8_t>(v & 0xFF)
        v >>= 8


cdef inline uint64_t _chg_get_u64be(const uint8_t* p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | p[i]
    return v


cdef inline int _chg_check_table_id(long long table_id) except -1:
    if table_id < 0 or table_id > 0xFFFFFFFF:
        raise _ChgInternal(f"change capture: table id {table_id} out of range")
    return 0


cdef inline int _chg_check_row_args(long long table_id, bytes pk_key) except -1:
    # Typed ``bytes`` arguments of cpdef methods still admit None, which would
    # be dereferenced by PyBytes_AS_STRING: refuse it here.
    _chg_check_table_id(table_id)
    if pk_key is None:
        raise _ChgInternal("change capture: primary key must be bytes, not None")
    return 0


cdef bytes _chg_wide_mask(object mask):
    """An int mask wider than 64 bits as a little-endian bitmap."""
    if mask < 0:
        raise _ChgInternal("change capture: changed-column mask is negative")
    return mask.to_bytes((mask.bit_length() + 7) // 8, "little")


@cython.final
cdef class ChangeCollector:
    """Accumulates one write transaction's changes in a growable C buffer.

    The first 48 bytes of the buffer are reserved for the header, which
    ``finish`` fills in, so the finished change set is one copy of the buffer.
    The collector is not thread-safe: it belongs to one write transaction.
    """
    cdef uint8_t* _buf
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap
    cdef readonly Py_ssize_t count

    def __cinit__(self):
        self._buf = <uint8_t*>malloc(_CHG_INITIAL_CAPACITY)
        if self._buf == NULL:
            raise MemoryError()
        self._cap = _CHG_INITIAL_CAPACITY
        self._len = _CHG_HEADER
        self.count = 0

    def __dealloc__(self):
        free(self._buf)

    @property
    def nbytes(self) -> int:
        """Size of the change set ``finish`` would return now."""
        return self._len

    cdef inline int _reserve(self, Py_ssize_t extra) except -1:
        """Make room for ``extra`` more bytes, doubling to keep appends O(1)."""
        cdef Py_ssize_t need = self._len + extra
        if need <= self._cap:
            return 0
        cdef Py_ssize_t cap = self._cap * 2
        while cap < need:
            cap *= 2
        cdef uint8_t* grown = <uint8_t*>realloc(self._buf, cap)
        if grown == NULL:
            raise MemoryError()
        self._buf = grown
        self._cap = cap
        return 0

    cdef inline void _put_bytes(self, const char* data, Py_ssize_t n) noexcept:
        """Append a varint length and the bytes; room must be reserved."""
        self._len += _chg_put_varint(self._buf + self._len, <uint64_t>n)
        memcpy(self._buf + self._len, data, n)
        self._len += n

    cdef inline void _put_row_head(self, uint8_t op, long long table_id,
                                   uint64_t prev_hlc) noexcept:
        """Append op byte, table id and the optional previous-version HLC."""
        cdef uint8_t* p = self._buf + self._len
        if prev_hlc:
            p[0] = op | _CHG_HAS_PREV
            self._len += 1 + _chg_put_varint(p + 1, <uint64_t>table_id)
            _chg_put_u64be(self._buf + self._len, prev_hlc)
            self._len += 8
        else:
            p[0] = op
            self._len += 1 + _chg_put_varint(p + 1, <uint64_t>table_id)

    cpdef insert(self, long long table_id, bytes pk_key, bytes row,
                 uint64_t prev_hlc=0):
        """Record a new row: its PK key and its encoded record."""
        _chg_check_row_args(table_id, pk_key)
        if row is None:
            raise _ChgInternal("change capture: row must be bytes, not None")
        self.insert_raw(table_id, PyBytes_AS_STRING(pk_key), PyBytes_GET_SIZE(pk_key),
                        PyBytes_AS_STRING(row), PyBytes_GET_SIZE(row), prev_hlc)

    cdef int insert_raw(self, long long table_id, const char* pk_key, Py_ssize_t nk,
                        const char* row, Py_ssize_t nr, uint64_t prev_hlc) except -1:
        """``insert`` of a key and record held in C buffers (the row writers' scratch)."""
        _chg_check_table_id(table_id)
        self._reserve(nk + nr + _CHG_ENTRY_SLACK)
        self._put_row_head(_CHG_INSERT, table_id, prev_hlc)
        self._put_bytes(pk_key, nk)
        self._put_bytes(row, nr)
        self.count += 1
        return 0

    cpdef update(self, long long table_id, bytes pk_key, bytes row,
                 object changed, uint64_t prev_hlc=0):
        """Record a changed row: its full new record and which columns changed.

        ``changed`` is an int bitmask (bit i = column i, any width) or a
        ``bytes`` bitmap (bit i of byte i//8 = column i).
        """
        _chg_check_row_args(table_id, pk_key)
        if row is None:
            raise _ChgInternal("change capture: row must be bytes, not None")
        self.update_raw(table_id, PyBytes_AS_STRING(pk_key), PyBytes_GET_SIZE(pk_key),
                        PyBytes_AS_STRING(row), PyBytes_GET_SIZE(row), changed, prev_hlc)

    cdef int update_raw(self, long long table_id, const char* pk_key, Py_ssize_t nk,
                        const char* row, Py_ssize_t nr, object changed, uint64_t prev_hlc) except -1:
        """``update`` of a key and record held in C buffers (the row writers' scratch)."""
        _chg_check_table_id(table_id)
        cdef uint64_t mask = 0
        cdef bytes bitmap = None
        if type(changed) is int:
            try:
                mask = changed
            except OverflowError:
                bitmap = _chg_wide_mask(changed)
        elif type(changed) is bytes:
            bitmap = <bytes>changed
        else:
            raise _ChgInternal(
                "change capture: changed columns must be an int mask or a "
                f"bytes bitmap, not {type(changed).__name__}")
        if bitmap is not None and PyBytes_GET_SIZE(bitmap) > _CHG_MAX_BITMAP:
            raise _ChgInternal("change capture: changed-column bitmap too long")
        cdef Py_ssize_t nb = 8 if bitmap is None else PyBytes_GET_SIZE(bitmap)
        self._reserve(nk + nr + nb + _CHG_ENTRY_SLACK)
        self._put_row_head(_CHG_UPDATE, table_id, prev_hlc)
        self._put_bytes(pk_key, nk)
        self._put_bytes(row, nr)
        if bitmap is None:
            self._put_mask(mask)
        else:
            self._put_bytes(PyBytes_AS_STRING(bitmap), nb)
        self.count += 1
        return 0

    cdef inline void _put_mask(self, uint64_t mask) noexcept:
        """Append a <= 64-bit mask as a little-endian bitmap without zero tail."""
        cdef uint8_t* p = self._buf + self._len + 1
        cdef uint8_t n = 0
        while mask:
            p[n] = <uint8_t>(mask & 0xFF)
            mask >>= 8
            n += 1
        self._buf[self._len] = n
        self._len += 1 + n

    cpdef delete(self, long long table_id, bytes pk_key, uint64_t prev_hlc=0,
                 bytes row=None):
        """Record a deleted row by its PK key and, when given, its last record.

        The old row lets change-feed consumers and subscribers see what was
        deleted; replication itself needs only the key.
        """
        _chg_check_row_args(table_id, pk_key)
        cdef Py_ssize_t nk = PyBytes_GET_SIZE(pk_key)
        cdef Py_ssize_t nr = 0 if row is None else PyBytes_GET_SIZE(row)
        self._reserve(nk + nr + _CHG_ENTRY_SLACK)
        cdef Py_ssize_t tag_at = self._len
        self._put_row_head(_CHG_DELETE, table_id, prev_hlc)
        self._put_bytes(PyBytes_AS_STRING(pk_key), nk)
        if row is not None:
            self._buf[tag_at] |= _CHG_HAS_ROW
            self._put_bytes(PyBytes_AS_STRING(row), nr)
        self.count += 1

    cpdef ddl(self, bytes payload):
        """Record a schema change; the payload is opaque to the binlog."""
        if payload is None:
            raise _ChgInternal("change capture: ddl payload must be bytes, not None")
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        self._reserve(n + _CHG_ENTRY_SLACK)
        self._buf[self._len] = _CHG_DDL
        self._len += 1
        self._put_bytes(PyBytes_AS_STRING(payload), n)
        self.count += 1

    cpdef tuple savepoint(self):
        """Return a mark of the changes so far, for ``rollback_to``."""
        return (self._len, self.count)

    cpdef rollback_to(self, tuple mark):
        """Drop every change recorded after ``mark`` (a ROLLBACK TO SAVEPOINT).

        The mark stays usable (SQL keeps the savepoint after ROLLBACK TO);
        marks taken after it are void, as SQL's own savepoint rules say.
        RELEASE needs no call: releasing a savepoint keeps its changes.
        """
        cdef Py_ssize_t length, count
        try:
            length, count = mark
        except (TypeError, ValueError):
            raise _ChgInternal(f"change capture: bad savepoint mark {mark!r}") from None
        if not (_CHG_HEADER <= length <= self._len and 0 <= count <= self.count):
            # A mark from after an earlier rollback, or from another collector.
            raise _ChgInternal(f"change capture: stale savepoint mark {mark!r}")
        self._len = length
        self.count = count

    cpdef clear(self):
        """Forget all changes (after commit or rollback of the transaction)."""
        cdef uint8_t* fresh
        if self._cap > _CHG_KEEP_CAPACITY:
            fresh = <uint8_t*>realloc(self._buf, _CHG_INITIAL_CAPACITY)
            if fresh != NULL:
                self._buf = fresh
                self._cap = _CHG_INITIAL_CAPACITY
        self._len = _CHG_HEADER
        self.count = 0

    cpdef bytes finish(self, uint64_t hlc, bytes origin, uint64_t sequence,
                       uint64_t schema_version):
        """Stamp the header and return the encoded change set.

        The collector keeps its changes (call ``clear`` when the transaction
        ends), so a failed store can be retried.
        """
        if origin is None or PyBytes_GET_SIZE(origin) != 16:
            raise _ChgInternal("change capture: origin node id must be 16 bytes")
        if self.count > 0xFFFFFFFF:
            raise _ChgInternal("change capture: too many changes in one transaction")
        cdef uint8_t* h = self._buf
        h[0] = _CHG_MAGIC0
        h[1] = _CHG_MAGIC1
        h[2] = _CHG_VERSION
        h[3] = 0
        _chg_put_u64be(h + 4, hlc)
        memcpy(h + 12, PyBytes_AS_STRING(origin), 16)
        _chg_put_u64be(h + 28, sequence)
        _chg_put_u64be(h + 36, schema_version)
        cdef uint32_t n = <uint32_t>self.count
        h[44] = <uint8_t>(n >> 24)
        h[45] = <uint8_t>(n >> 16)
        h[46] = <uint8_t>(n >> 8)
        h[47] = <uint8_t>n
        return PyBytes_FromStringAndSize(<char*>self._buf, self._len)


@cython.final
cdef class ChangeEntry:
    """One decoded change; keys and rows stay encoded.

    ``pk_key`` and ``row`` are None where the op has none (a delete's ``row``
    is the deleted row's record when the writer supplied it, else None; ddl
    has no key and carries its payload in ``row``); ``changed`` is an int
    column bitmask for updates, else None; ``prev_hlc`` is 0 when absent.
    """
    cdef readonly int op
    cdef readonly long long table_id
    cdef readonly object pk_key
    cdef readonly object row
    cdef readonly object changed
    cdef readonly uint64_t prev_hlc

    def __init__(self, int op, long long table_id, pk_key, row, changed,
                 uint64_t prev_hlc=0):
        self.op = op
        self.table_id = table_id
        self.pk_key = pk_key
        self.row = row
        self.changed = changed
        self.prev_hlc = prev_hlc

    @property
    def changed_columns(self) -> tuple:
        """Indexes of the changed columns, ascending (empty unless update)."""
        if not self.changed:
            return ()
        cdef object mask = self.changed
        return tuple(i for i in range(mask.bit_length()) if (mask >> i) & 1)

    def as_tuple(self) -> tuple:
        return (self.op, self.table_id, self.pk_key, self.row, self.changed,
                self.prev_hlc)

    def __eq__(self, other):
        if not isinstance(other, ChangeEntry):
            return NotImplemented
        return self.as_tuple() == (<ChangeEntry>other).as_tuple()

    def __hash__(self):
        return hash(self.as_tuple())

    def __repr__(self):
        return ("ChangeEntry(op=%d, table_id=%d, pk_key=%r, row=%r, changed=%r, "
                "prev_hlc=%d)" % self.as_tuple())


cdef class _ChgReader:
    """Bounds-checked cursor over an untrusted change set."""
    cdef const uint8_t* p
    cdef Py_ssize_t pos
    cdef Py_ssize_t end
    cdef bytes data

    cdef inline uint64_t varint(self) except? 0xFFFFFFFFFFFFFFFF:
        cdef uint64_t v = 0
        cdef int shift = 0
        cdef uint8_t b
        while True:
            if self.pos >= self.end:
                raise _ChgCorrupt("change set truncated inside a varint")
            b = self.p[self.pos]
            self.pos += 1
            if shift == 63 and b > 1:
                raise _ChgCorrupt("change set varint overflows 64 bits")
            v |= (<uint64_t>(b & 0x7F)) << shift
            if not (b & 0x80):
                return v
            shift += 7
            if shift > 63:
                raise _ChgCorrupt("change set varint longer than 10 bytes")

    cdef inline bytes blob(self, Py_ssize_t cap):
        """Read a varint length and that many bytes, refusing lengths > cap."""
        cdef uint64_t n = self.varint()
        if n > <uint64_t>(self.end - self.pos) or n > <uint64_t>cap:
            raise _ChgCorrupt(
                f"change set declares a {n}-byte field with "
                f"{self.end - self.pos} bytes left")
        cdef bytes out = PyBytes_FromStringAndSize(
            <const char*>(self.p + self.pos), <Py_ssize_t>n)
        self.pos += <Py_ssize_t>n
        return out

    cdef inline uint64_t u64(self) except? 0xFFFFFFFFFFFFFFFF:
        if self.end - self.pos < 8:
            raise _ChgCorrupt("change set truncated inside a timestamp")
        cdef uint64_t v = _chg_get_u64be(self.p + self.pos)
        self.pos += 8
        return v


cdef _ChgReader _chg_reader(object data):
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise _ChgCorrupt(
                f"change set must be bytes, not {type(data).__name__}")
        data = bytes(data)
    cdef _ChgReader r = _ChgReader.__new__(_ChgReader)
    r.data = data
    r.p = <const uint8_t*>PyBytes_AS_STRING(data)
    r.pos = 0
    r.end = PyBytes_GET_SIZE(data)
    return r


cdef int _chg_check_header(const uint8_t* p, Py_ssize_t n) except -1:
    """Raise unless the ``n`` bytes at ``p`` begin with a change-set header this
    version reads (length, magic, format version, flags)."""
    if n < _CHG_HEADER:
        raise _ChgCorrupt(f"change set of {n} bytes is shorter than its header")
    if p[0] != _CHG_MAGIC0 or p[1] != _CHG_MAGIC1:
        raise _ChgCorrupt("not a change set (bad magic)")
    if p[2] != _CHG_VERSION:
        raise _ChgCorrupt(f"unsupported change set format version {p[2]}")
    if p[3] != 0:
        raise _ChgCorrupt(f"change set has unknown flags {p[3]:#x}")
    return 0


cdef dict _chg_header(_ChgReader r):
    """Validate and decode the fixed header; leaves ``r`` at the first entry."""
    _chg_check_header(r.p, r.end)
    cdef uint32_t count = ((<uint32_t>r.p[44] << 24) | (<uint32_t>r.p[45] << 16)
                           | (<uint32_t>r.p[46] << 8) | r.p[47])
    r.pos = _CHG_HEADER
    return {
        "version": r.p[2],
        "hlc": _chg_get_u64be(r.p + 4),
        "origin": PyBytes_FromStringAndSize(<const char*>(r.p + 12), 16),
        "sequence": _chg_get_u64be(r.p + 28),
        "schema_version": _chg_get_u64be(r.p + 36),
        "count": count,
    }


cdef object _chg_mask(bytes bitmap):
    """A little-endian bitmap as an int mask (C fast path up to 64 columns)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(bitmap)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(bitmap)
    cdef uint64_t m = 0
    cdef Py_ssize_t i
    if n <= 8:
        for i in range(n):
            m |= (<uint64_t>p[i]) << (8 * i)
        return m
    return int.from_bytes(bitmap, "little")


cdef ChangeEntry _chg_entry(_ChgReader r):
    """Decode the entry at the reader's position."""
    cdef uint8_t tag = r.p[r.pos]
    r.pos += 1
    cdef int op = tag & _CHG_OP_MASK
    cdef ChangeEntry e = ChangeEntry.__new__(ChangeEntry)
    e.op = op
    e.prev_hlc = 0
    e.table_id = 0
    e.pk_key = None
    e.row = None
    e.changed = None
    if tag & _CHG_HAS_ROW and op != _CHG_DELETE:
        raise _ChgCorrupt(f"change set op {op} has the deleted-row flag")
    if op == _CHG_DDL:
        if tag & _CHG_HAS_PREV:
            raise _ChgCorrupt("change set ddl entry has a row version")
        e.row = r.blob(r.end)
        return e
    if op < _CHG_INSERT or op > _CHG_DELETE:
        raise _ChgCorrupt(f"change set has unknown op {op}")
    cdef uint64_t table_id = r.varint()
    if table_id > 0xFFFFFFFF:
        raise _ChgCorrupt(f"change set table id {table_id} out of range")
    e.table_id = <long long>table_id
    if tag & _CHG_HAS_PREV:
        e.prev_hlc = r.u64()
    e.pk_key = r.blob(r.end)
    if op == _CHG_DELETE:
        if tag & _CHG_HAS_ROW:
            e.row = r.blob(r.end)
        return e
    e.row = r.blob(r.end)
    if op == _CHG_UPDATE:
        e.changed = _chg_mask(r.blob(_CHG_MAX_BITMAP))
    return e


def decode_changeset_header(data) -> dict:
    """Validate and decode only the header of a change set (no entries)."""
    return _chg_header(_chg_reader(data))


def decode_changeset(data):
    """Decode a change set into ``(header dict, list of ChangeEntry)``.

    Raises CorruptDatabaseError for anything malformed: wrong magic or
    version, lengths beyond the data, an entry count that does not match,
    or trailing bytes.
    """
    cdef _ChgReader r = _chg_reader(data)
    cdef dict header = _chg_header(r)
    cdef Py_ssize_t count = header["count"]
    # Every entry takes at least 2 bytes, so a larger count is a lie; checking
    # first keeps a hostile count from driving a huge loop or allocation.
    if count * 2 > r.end - r.pos:
        raise _ChgCorrupt(
            f"change set declares {count} entries in {r.end - r.pos} bytes")
    cdef list entries = []
    cdef Py_ssize_t i
    for i in range(count):
        if r.pos >= r.end:
            raise _ChgCorrupt(f"change set truncated after {i} of {count} entries")
        entries.append(_chg_entry(r))
    if r.pos != r.end:
        raise _ChgCorrupt(
            f"change set has {r.end - r.pos} bytes after its {count} entries")
    return header, entries
