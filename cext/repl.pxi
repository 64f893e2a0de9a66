# Replication: the per-row version-record merge of engine/repl_versions.py, compiled.
#
# ``repl_merge_entry`` is ``Record.decode`` + ``Record.from_entry`` + ``merge``
# + ``Record.encode`` for one change-set entry, without a Python object per
# register.  It covers the common case only and answers None for everything
# else, where the caller runs the Python reference (``repl_versions.merge``):
# a merge that finds a concurrent write (the conflict rows are built in
# Python), a record with more columns than the table, a node id that is not
# 16 bytes.  So conflict detection and its reporting have one implementation.
#
# Record layout (see repl_versions): ``>BQ16sHQ`` flags, existence hlc, node,
# column count, existence prev; per column ``>BQ16s`` rank, hlc, node; per
# column ``>Q`` prev (absent when flag bit 1 is clear); then ``encode_row``.

from libc.string cimport memcmp, memcpy
from libc.stdlib cimport malloc, free

cdef enum:
    _RV_HEAD = 35          # 1 + 8 + 16 + 2 + 8
    _RV_HEAD_OLD = 27      # records without previous versions: no existence prev
    _RV_COL = 25           # 1 + 8 + 16
    _RV_FLAG_DEAD = 1
    _RV_FLAG_PREVS = 2

cdef bytes _RV_NO_NODE = b"\x00" * 16


cdef tuple _RV_NONES(Py_ssize_t n):
    return (None,) * n


cdef struct _RvReg:
    uint8_t rank
    uint64_t hlc
    const uint8_t* node    # 16 bytes, borrowed from the stored record or the incoming node
    uint64_t prev


cdef inline int _rv_cmp(uint8_t ra, uint64_t ha, const uint8_t* na,
                        uint8_t rb, uint64_t hb, const uint8_t* nb) noexcept nogil:
    """Compare versions (rank, hlc, node) as tuples: -1, 0 or 1."""
    if ra != rb:
        return -1 if ra < rb else 1
    if ha != hb:
        return -1 if ha < hb else 1
    cdef int c = memcmp(na, nb, 16)
    return -1 if c < 0 else (1 if c > 0 else 0)


cdef inline bint _rv_concurrent(uint64_t loser_hlc, const uint8_t* loser_node, const uint8_t* winner_node,
                                uint64_t winner_prev) noexcept nogil:
    """``repl_versions.concurrent``: the winner's writer had not seen the loser."""
    return memcmp(loser_node, winner_node, 16) != 0 and loser_hlc > winner_prev


cdef inline bint _rv_differ(object a, object b) except -1:
    """``a != b or type(a) is not type(b)``, as the Python merge compares values."""
    if type(a) is not type(b):
        return True
    if a is b:
        return False
    return bool(a != b)


cdef bytes _rv_encode(bint dead, uint64_t ex_hlc, const uint8_t* ex_node, uint64_t ex_prev,
                      Py_ssize_t n, _RvReg* regs, tuple values):
    cdef bytes tail = _encode_row_c(values)
    cdef Py_ssize_t size = _RV_HEAD + (_RV_COL + 8) * n + len(tail)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    cdef Py_ssize_t i
    p[0] = (_RV_FLAG_DEAD if dead else 0) | _RV_FLAG_PREVS
    _chg_put_u64be(p + 1, ex_hlc)
    memcpy(p + 9, ex_node, 16)
    p[25] = <uint8_t>(n >> 8)
    p[26] = <uint8_t>(n & 0xff)
    _chg_put_u64be(p + 27, ex_prev)
    p += _RV_HEAD
    for i in range(n):
        p[0] = regs[i].rank
        _chg_put_u64be(p + 1, regs[i].hlc)
        memcpy(p + 9, regs[i].node, 16)
        p += _RV_COL
    for i in range(n):
        _chg_put_u64be(p, regs[i].prev)
        p += 8
    memcpy(p, PyBytes_AS_STRING(tail), len(tail))
    return out


cdef uint64_t _rv_seen(uint64_t ex_hlc, Py_ssize_t n, _RvReg* regs) noexcept nogil:
    """``Record.seen_hlc``: the newest HLC among the registers."""
    cdef uint64_t top = ex_hlc
    cdef Py_ssize_t i
    for i in range(n):
        if regs[i].hlc > top:
            top = regs[i].hlc
    return top


def repl_merge_entry(object raw, int op, uint64_t hlc, bytes node, object row, object changed,
                     uint64_t prev, int ncols, bint prev_from_record=False):
    """Merge one change-set entry into a stored version record (``raw``, or None for no record).

    ``prev_from_record``: a local write, whose previous version is the
    record's newest HLC (``Record.seen_hlc``), not ``prev``.  Returns
    ``(changed, dead, values, record, prev)`` -- whether the merge changed the
    record, the merged row state and values (a tuple of ``ncols``), the record
    to store and the previous version used -- or None when the Python merge
    must decide (a concurrent write, or a record this path does not handle).
    """
    cdef const uint8_t* nd
    cdef const uint8_t* p
    cdef const uint8_t* q
    cdef object vals
    cdef uint64_t cmask = 0
    cdef Py_ssize_t size, n = 0, i, head
    cdef uint8_t flags
    cdef bint dead, inc_dead = op == _CHG_DELETE, res_changed = False, strong_all, differ
    cdef uint64_t ex_hlc, ex_prev
    cdef const uint8_t* ex_node
    cdef _RvReg* regs = NULL
    cdef uint8_t irank
    cdef int c
    cdef list svals
    cdef tuple ivals = None
    cdef object a, b
    if len(node) != 16 or ncols < 0 or ncols > 0xffff:
        return None
    nd = <const uint8_t*>PyBytes_AS_STRING(node)
    if not inc_dead:
        ivals = decode_row(<bytes>row, ncols, None)
    strong_all = op == _CHG_INSERT or changed is None
    if not strong_all:
        if ncols > 64:
            return None         # a wide table's mask: the Python path
        cmask = <uint64_t>(changed & 0xffffffffffffffff)
    regs = <_RvReg*>malloc((ncols if ncols else 1) * sizeof(_RvReg))
    if regs == NULL:
        raise MemoryError()
    try:
        if raw is None:
            # Record.from_entry: a new record.
            if prev_from_record:
                prev = 0
            for i in range(ncols):
                if inc_dead:
                    regs[i].rank = 0
                    regs[i].hlc = 0
                    regs[i].node = <const uint8_t*>PyBytes_AS_STRING(_RV_NO_NODE)
                    regs[i].prev = 0
                else:
                    regs[i].rank = 1 if strong_all or (cmask >> i) & 1 else 0
                    regs[i].hlc = hlc
                    regs[i].node = nd
                    regs[i].prev = prev
            vals = ivals if not inc_dead else _RV_NONES(ncols)
            return (True, inc_dead, vals, _rv_encode(inc_dead, hlc, nd, prev, ncols, regs, vals), prev)
        # Record.decode
        if type(raw) is not bytes:
            raw = bytes(raw)
        p = <const uint8_t*>PyBytes_AS_STRING(raw)
        size = PyBytes_GET_SIZE(raw)
        if size < _RV_HEAD_OLD:
            return None
        flags = p[0]
        n = (p[25] << 8) | p[26]
        if n > ncols:
            return None
        head = (_RV_HEAD + (_RV_COL + 8) * n) if flags & _RV_FLAG_PREVS else (_RV_HEAD_OLD + _RV_COL * n)
        if size < head:
            return None
        dead = flags & _RV_FLAG_DEAD
        ex_hlc = _chg_get_u64be(p + 1)
        ex_node = p + 9
        ex_prev = _chg_get_u64be(p + 27) if flags & _RV_FLAG_PREVS else 0
        q = p + (_RV_HEAD if flags & _RV_FLAG_PREVS else _RV_HEAD_OLD)
        for i in range(n):
            regs[i].rank = q[0]
            regs[i].hlc = _chg_get_u64be(q + 1)
            regs[i].node = q + 9
            regs[i].prev = _chg_get_u64be(p + _RV_HEAD + _RV_COL * n + 8 * i) if flags & _RV_FLAG_PREVS else 0
            q += _RV_COL
        for i in range(n, ncols):       # columns added since: unversioned (bottom)
            regs[i].rank = 0
            regs[i].hlc = 0
            regs[i].node = <const uint8_t*>PyBytes_AS_STRING(_RV_NO_NODE)
            regs[i].prev = 0
        svals = list(_decode_row_ptr(p + head, size - head, ncols, None))
        if prev_from_record:
            prev = _rv_seen(ex_hlc, ncols, regs)
        # merge: the existence register
        c = 1 if hlc > ex_hlc else (-1 if hlc < ex_hlc else memcmp(nd, ex_node, 16))
        if c >= 0:
            if c != 0 or dead != inc_dead:
                res_changed = True
                if dead != inc_dead and ex_hlc and _rv_concurrent(ex_hlc, ex_node, nd, prev):
                    return None
            ex_hlc = hlc
            ex_node = nd
            dead = inc_dead
            ex_prev = prev
        elif inc_dead != dead and _rv_concurrent(hlc, nd, ex_node, ex_prev):
            return None
        # merge: the column registers (deletes write none)
        if not inc_dead:
            for i in range(ncols):
                irank = 1 if strong_all or (cmask >> i) & 1 else 0
                a = svals[i]
                b = ivals[i]
                differ = _rv_differ(a, b)
                c = _rv_cmp(irank, hlc, nd, regs[i].rank, regs[i].hlc, regs[i].node)
                if c >= 0:
                    if differ or c != 0:
                        res_changed = True
                        if differ and regs[i].rank == 1 and irank == 1 and _rv_concurrent(
                                regs[i].hlc, regs[i].node, nd, prev):
                            return None
                    regs[i].rank = irank
                    regs[i].hlc = hlc
                    regs[i].node = nd
                    regs[i].prev = prev
                    svals[i] = b
                elif differ and irank == 1 and _rv_concurrent(hlc, nd, regs[i].node, regs[i].prev):
                    return None
        vals = tuple(svals)
        if not res_changed:
            return (False, dead, vals, None, prev)
        return (True, dead, vals, _rv_encode(dead, ex_hlc, ex_node, ex_prev, ncols, regs, vals), prev)
    finally:
        free(regs)



# ---------------------------------------------------------------------------------------------
# Whole change sets: the publisher's per-round work without a Python object per entry.
#
# Both functions below read a change set that this node's binlog holds (the
# caller decoded its header already) but still check every length, so a
# corrupt record raises CorruptDatabaseError instead of reading out of bounds.
# They copy entries byte for byte: a local change set is ChangeCollector
# output, so the copy is what ``repl_feed.reencode`` would produce (the tests
# compare them on random change sets).  A change set with a DDL entry is left
# to the Python reference (schema changes mid-change-set need the catalog).

cdef struct _RlEntry:
    uint8_t op
    uint8_t tag
    uint64_t table_id
    uint64_t prev
    Py_ssize_t start        # the tag byte
    Py_ssize_t tid_end      # after the table id varint (where the previous version goes)
    Py_ssize_t body         # after the previous version: the pk key's length
    Py_ssize_t key_off
    Py_ssize_t key_len
    Py_ssize_t row_off      # -1: no row
    Py_ssize_t row_len
    Py_ssize_t mask_off     # an update's changed-column bitmap
    Py_ssize_t mask_len
    Py_ssize_t end          # after the entry


cdef inline Py_ssize_t _rl_skip_blob(_ChgReader r, Py_ssize_t* length) except -1:
    """Skip a varint length and its bytes; returns where the bytes start."""
    cdef uint64_t n = r.varint()
    if n > <uint64_t>(r.end - r.pos):
        raise _ChgCorrupt(f"change set declares a {n}-byte field with {r.end - r.pos} bytes left")
    cdef Py_ssize_t at = r.pos
    r.pos += <Py_ssize_t>n
    length[0] = <Py_ssize_t>n
    return at


cdef _RlEntry* _rl_scan(bytes data, Py_ssize_t* count, bint* has_ddl) except NULL:
    """Locate every entry of a stored change set (``count`` set to how many; free the result)."""
    cdef _ChgReader r = _chg_reader(data)
    cdef Py_ssize_t n, i
    cdef _RlEntry* out
    cdef _RlEntry* e
    if r.end < _CHG_HEADER:
        raise _ChgCorrupt(f"change set of {r.end} bytes is shorter than its header")
    n = ((<Py_ssize_t>r.p[44] << 24) | (<Py_ssize_t>r.p[45] << 16) | (<Py_ssize_t>r.p[46] << 8) | r.p[47])
    r.pos = _CHG_HEADER
    if n * 2 > r.end - r.pos:
        raise _ChgCorrupt(f"change set declares {n} entries in {r.end - r.pos} bytes")
    out = <_RlEntry*>malloc((n if n else 1) * sizeof(_RlEntry))
    if out == NULL:
        raise MemoryError()
    has_ddl[0] = False
    try:
        for i in range(n):
            if r.pos >= r.end:
                raise _ChgCorrupt(f"change set truncated after {i} of {n} entries")
            e = &out[i]
            e.start = r.pos
            e.tag = r.p[r.pos]
            e.op = e.tag & _CHG_OP_MASK
            r.pos += 1
            e.prev = 0
            e.table_id = 0
            e.row_off = -1
            e.row_len = 0
            if e.op == _CHG_DDL:
                has_ddl[0] = True
                e.tid_end = e.body = r.pos
                e.key_off = _rl_skip_blob(r, &e.key_len)      # the payload
                e.end = r.pos
                continue
            if e.op < _CHG_INSERT or e.op > _CHG_DELETE:
                raise _ChgCorrupt(f"change set has unknown op {e.op}")
            e.table_id = r.varint()
            if e.table_id > 0xFFFFFFFF:
                raise _ChgCorrupt(f"change set table id {e.table_id} out of range")
            e.tid_end = r.pos
            if e.tag & _CHG_HAS_PREV:
                e.prev = r.u64()
            e.body = r.pos
            e.key_off = _rl_skip_blob(r, &e.key_len)
            if e.op != _CHG_DELETE or e.tag & _CHG_HAS_ROW:
                e.row_off = _rl_skip_blob(r, &e.row_len)
            if e.op == _CHG_UPDATE:
                e.mask_off = _rl_skip_blob(r, &e.mask_len)
                if e.mask_len > _CHG_MAX_BITMAP:
                    raise _ChgCorrupt(f"change set has a {e.mask_len}-byte changed-column bitmap")
            e.end = r.pos
        if r.pos != r.end:
            raise _ChgCorrupt(f"change set has {r.end - r.pos} bytes after its {n} entries")
    except BaseException:
        free(out)
        raise
    count[0] = n
    return out


cdef inline object _rl_changed(const uint8_t* p, _RlEntry* e):
    """An update's changed-column mask as ``ChangeEntry.changed`` has it."""
    return _chg_mask(PyBytes_FromStringAndSize(<const char*>(p + e.mask_off), e.mask_len))


cdef bytes _rl_build(bytes data, _RlEntry* entries, Py_ssize_t n, const uint8_t* keep,
                     const uint64_t* prevs):
    """The change set with the same header and the kept entries (all when ``keep`` is NULL),
    each with its previous version from ``prevs`` (as stored when NULL), entries copied verbatim."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = _CHG_HEADER, i, kept = 0
    cdef uint64_t prev
    cdef _RlEntry* e
    for i in range(n):
        if keep == NULL or keep[i]:
            size += entries[i].end - entries[i].start + 8      # room for a previous version
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t* q = <uint8_t*>PyBytes_AS_STRING(out)
    cdef uint8_t* w = q + _CHG_HEADER
    memcpy(q, p, _CHG_HEADER)
    for i in range(n):
        if keep != NULL and not keep[i]:
            continue
        e = &entries[i]
        kept += 1
        if e.op == _CHG_DDL or prevs == NULL:
            memcpy(w, p + e.start, e.end - e.start)
            w += e.end - e.start
            continue
        prev = prevs[i]
        # the collector writes the flag and the 8 bytes only for a non-zero previous version
        w[0] = (e.tag & ~_CHG_HAS_PREV) | (_CHG_HAS_PREV if prev else 0)
        memcpy(w + 1, p + e.start + 1, e.tid_end - e.start - 1)
        w += e.tid_end - e.start
        if prev:
            _chg_put_u64be(w, prev)
            w += 8
        memcpy(w, p + e.body, e.end - e.body)
        w += e.end - e.body
    q[44] = <uint8_t>(kept >> 24)
    q[45] = <uint8_t>(kept >> 16)
    q[46] = <uint8_t>(kept >> 8)
    q[47] = <uint8_t>kept
    return out[:w - q]


def repl_merge_local_changeset(bytes data, uint64_t hlc, bytes node, dict ncols, object get,
                               object put, object slow):
    """``VersionStore._merge_range``'s per-change-set loop for one local change set.

    ``ncols`` maps the table id of every table whose records are kept to its
    column count; entries of other tables are skipped.  Each row entry is
    merged into its record (``get(key)`` / ``put(key, record)``) by
    ``repl_merge_entry``, or by ``slow(old, key, op, hlc, row, changed, n)`` (the
    Python merge, which puts and returns the previous version) where that
    declines.  Returns False, having merged nothing, when the change set has a
    DDL entry (the caller's Python loop handles it); else the change set
    re-encoded with the previous versions found, or None when they are the
    stored ones.
    """
    cdef Py_ssize_t n = 0, i, ncol, stored_cols
    cdef bint has_ddl, annotated = False
    cdef _RlEntry* entries = _rl_scan(data, &n, &has_ddl)
    cdef uint64_t* prevs = NULL
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef _RlEntry* e
    cdef object width, row, changed, old, merged
    cdef bytes key
    cdef uint8_t* k
    cdef uint64_t prev
    try:
        if has_ddl:
            return False
        prevs = <uint64_t*>malloc((n if n else 1) * sizeof(uint64_t))
        if prevs == NULL:
            raise MemoryError()
        for i in range(n):
            e = &entries[i]
            prevs[i] = e.prev
            width = ncols.get(<long long>e.table_id)
            if width is None:
                continue
            ncol = width
            row = None
            if e.row_off >= 0:
                row = PyBytes_FromStringAndSize(<const char*>(p + e.row_off), e.row_len)
            if e.op != _CHG_DELETE:
                # a column added since the commit stays unversioned (see _merge_local)
                stored_cols = row_column_count(row)
                if stored_cols < ncol:
                    ncol = stored_cols
            changed = _rl_changed(p, e) if e.op == _CHG_UPDATE else None
            key = PyBytes_FromStringAndSize(NULL, 4 + e.key_len)      # repl_versions.record_key
            k = <uint8_t*>PyBytes_AS_STRING(key)
            k[0] = <uint8_t>(e.table_id >> 24)
            k[1] = <uint8_t>(e.table_id >> 16)
            k[2] = <uint8_t>(e.table_id >> 8)
            k[3] = <uint8_t>e.table_id
            memcpy(k + 4, p + e.key_off, e.key_len)
            old = get(key)
            merged = repl_merge_entry(old, e.op, hlc, node, row, changed, 0, ncol, True)
            if merged is None:
                prev = slow(old, key, e.op, hlc, row, changed, ncol)
            else:
                if merged[0]:
                    put(key, merged[3])
                prev = merged[4]
            if prev != prevs[i]:
                prevs[i] = prev
                annotated = True
        return _rl_build(data, entries, n, NULL, prevs) if annotated else None
    finally:
        free(entries)
        free(prevs)


def repl_cut_changeset(bytes data, dict keep):
    """``repl_feed.prepare_outgoing``'s filter for a change set without DDL: its entries of the tables in
    ``keep`` (table id -> anything).  Returns ``(change set, kept table ids in order of first
    appearance)``, the change set being ``data`` itself when nothing was cut; or None, having done nothing, when it has a DDL entry (the Python reference does)."""
    cdef Py_ssize_t n = 0, i, kept = 0
    cdef bint has_ddl
    cdef _RlEntry* entries = _rl_scan(data, &n, &has_ddl)
    cdef uint8_t* mask = NULL
    cdef list ids = []
    cdef object tid
    cdef object last = None
    try:
        if has_ddl:
            return None
        mask = <uint8_t*>malloc(n if n else 1)
        if mask == NULL:
            raise MemoryError()
        for i in range(n):
            tid = <long long>entries[i].table_id
            mask[i] = tid in keep
            if mask[i]:
                kept += 1
                if tid != last and tid not in ids:
                    ids.append(tid)
                last = tid
        if kept == n:
            return data, tuple(ids)
        return _rl_build(data, entries, n, mask, NULL), tuple(ids)
    finally:
        free(entries)
        free(mask)


# ---------------------------------------------------------------------------------------------
# A publishing round: cut, batch and frame a round's change sets in one call.
#
# ``repl_frame_round`` is ``repl_feed.outgoing_in`` (publisher's options) +
# ``repl_feed.encode_message`` / ``encode_batch`` and the run batching the
# NATS publisher did in Python, without an ``Outgoing`` object, a run object
# or a Python call per change set.  Only a change set with DDL calls back into
# Python (``slow``: the DDL filter needs the catalog); so the DDL rules have one
# implementation, ``repl_feed.prepare_outgoing``.  The tests compare the
# messages with the Python framing of the same change sets.

cdef enum:
    _RF_BATCH_OVERHEAD = 12     # magic, map length, count (repl_feed.BATCH_OVERHEAD)
    _RF_ITEM_OVERHEAD = 4       # a change set's length prefix in a batch


cdef inline bytes _rf_u32(Py_ssize_t n):
    cdef char b[4]
    b[0] = <char>((n >> 24) & 0xff)
    b[1] = <char>((n >> 16) & 0xff)
    b[2] = <char>((n >> 8) & 0xff)
    b[3] = <char>(n & 0xff)
    return PyBytes_FromStringAndSize(b, 4)


cdef inline Py_ssize_t _rf_map_entry_bytes(tuple entry) except -1:
    """An upper bound of one table's bytes in the JSON table map (escaping at most doubles the text)."""
    return 2 * (len(<str>entry[0]) + len(<str>entry[1])) + 32


cdef class _RfRun:
    """Consecutive change sets for one subject: one message."""
    cdef object subject
    cdef list changesets
    cdef dict tables            # table id -> (name, CREATE): the union of their table maps
    cdef Py_ssize_t size        # bytes of the batch so far, table map estimated
    cdef uint64_t first         # origin sequences of the first and the last change set
    cdef uint64_t last


cdef tuple _rf_frame(_RfRun run, str origin, object map_json):
    """(subject, payload, Nats-Msg-Id, change sets) of one run: a TRM1 message for one change
    set, else a TRB1 batch (formats in engine/repl_feed.py)."""
    cdef bytes meta = map_json(run.tables)
    cdef Py_ssize_t n = len(run.changesets)
    cdef list parts
    cdef bytes cs
    if n == 1:
        return (run.subject, b"".join((b"TRM1", _rf_u32(len(meta)), meta, run.changesets[0])),
                f"{origin}:{run.first}", 1)
    parts = [b"TRB1", _rf_u32(len(meta)), meta, _rf_u32(n)]
    for cs in run.changesets:
        parts.append(_rf_u32(len(cs)))
        parts.append(cs)
    return run.subject, b"".join(parts), f"{origin}:{run.first}-{run.last}", n


cdef inline tuple _rf_entry(object tid, dict tables, dict published):
    """Table ``tid``'s map entry: from a DDL change set's own map (``tables``) or the published ones."""
    return <tuple>(tables[tid] if tables is not None else (<tuple>published[tid])[1])


cdef Py_ssize_t _rf_grow(_RfRun run, bytes cs, list tids, dict tables, dict published) except -1:
    """Bytes ``cs`` adds to ``run`` (None: to a new run): its length prefix, the table-map entries
    new to the run."""
    cdef Py_ssize_t grow = PyBytes_GET_SIZE(cs) + _RF_ITEM_OVERHEAD
    cdef object tid
    for tid in tids:
        if run is None or tid not in run.tables:
            grow += _rf_map_entry_bytes(_rf_entry(tid, tables, published))
    return grow


def repl_frame_round(list items, bytes node, dict published, str multi, dict rewrites,
                     uint64_t upto, Py_ssize_t limit, object slow, object map_json):
    """The messages of one publishing round.

    ``items``: ``Binlog.read`` pairs ``(sequence, ChangeSet)`` in binlog
    order; those after ``upto`` are left for the next round, those of other
    origins than ``node`` are skipped, one in ``rewrites`` (sequence -> change
    set with its causal versions) is sent in that form.  ``published``: table
    id -> ``(subject, (name, CREATE sql))`` of each published table; a change
    set of several tables goes to ``multi``.  Entries of other tables are cut,
    a change set left empty is skipped.  ``slow(sequence, change set)`` handles
    a change set with DDL: None to skip it, else ``(subject, change set cut,
    table map)``.  Consecutive change sets with the same subject go as one
    batch of at most ``limit`` bytes (a larger change set alone);
    ``map_json(tables)`` encodes a table map.

    Returns ``(messages, change sets in them, last sequence covered, items
    covered)``; a message is ``(subject, payload, Nats-Msg-Id, change sets)``.
    """
    cdef list messages = []
    cdef _RfRun run = None
    cdef str origin = node.hex()
    cdef Py_ssize_t covered = 0, sent = 0, n = 0, i, kept, grow
    cdef uint64_t seq, last_seq = 0
    cdef bint has_ddl
    cdef _RlEntry* entries
    cdef uint8_t* mask = NULL
    cdef const uint8_t* p
    cdef object item, got, subject, info, tid, prev_tid, stored
    cdef bytes data, out_cs
    cdef dict tables
    cdef list tids
    if len(node) != 16:
        raise _ChgInternal("repl_frame_round: node id must be 16 bytes")
    for item in items:
        seq = item[0]
        if seq > upto:
            break
        covered += 1
        last_seq = seq
        stored = rewrites.get(item[0]) if rewrites else None
        data = bytes(stored if stored is not None else item[1].data)
        p = <const uint8_t*>PyBytes_AS_STRING(data)
        _chg_check_header(p, PyBytes_GET_SIZE(data))
        if memcmp(p + 12, PyBytes_AS_STRING(node), 16) != 0:
            continue                            # relayed from a peer: never re-published (no echo)
        tables = None
        entries = _rl_scan(data, &n, &has_ddl)
        try:
            if has_ddl:
                got = slow(item[0], data)
                if got is None:
                    continue
                subject, out_cs, tables = got
                tids = list(tables)
            else:
                mask = <uint8_t*>malloc(n if n else 1)
                if mask == NULL:
                    raise MemoryError()
                kept = 0
                tids = []
                prev_tid = None
                info = None
                for i in range(n):
                    tid = <long long>entries[i].table_id
                    if tid != prev_tid:
                        info = published.get(tid)
                        prev_tid = tid
                        if info is not None and tid not in tids:
                            tids.append(tid)
                    mask[i] = info is not None
                    kept += mask[i]
                if kept == 0:
                    continue                    # nothing published in it
                subject = (<tuple>published[tids[0]])[0] if len(tids) == 1 else multi
                out_cs = data if kept == n else _rl_build(data, entries, n, mask, NULL)
        finally:
            free(entries)
            free(mask)
            mask = NULL
        # The run goes on while the subject stays and the batch fits; a new run takes the change
        # set whatever its size.
        grow = _rf_grow(run, out_cs, tids, tables, published)
        if run is None or not (run.subject is subject or run.subject == subject) or run.size + grow > limit:
            if run is not None:
                messages.append(_rf_frame(run, origin, map_json))
            run = _RfRun()
            run.subject = subject
            run.changesets = []
            run.tables = {}
            run.size = _RF_BATCH_OVERHEAD
            run.first = _chg_get_u64be(p + 28)
            grow = _rf_grow(None, out_cs, tids, tables, published)
        run.changesets.append(out_cs)
        run.size += grow
        run.last = _chg_get_u64be(p + 28)
        for tid in tids:
            if tid not in run.tables:
                run.tables[tid] = _rf_entry(tid, tables, published)
        sent += 1
    if run is not None:
        messages.append(_rf_frame(run, origin, map_json))
    return messages, sent, last_seq, covered
