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

