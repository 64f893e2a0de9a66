# commit.pxi - included by _core.pyx; do not compile on its own.
"""Compiled steps of every commit: the hybrid logical clock's state (engine/hlc.py) and
the binlog append of a transaction's change set (engine/binlog.py).

Why: each runs once per committed transaction, where a lone insert-and-commit costs
about 13 us in all; in Python they were a lock round trip and a few calls each.
"""

from libc.stdint cimport uint64_t


cdef class HLCState:
    """The last timestamp a ``terndb.engine.hlc.HLC`` issued or observed.

    ``move`` is a single step in C holding the GIL: no other thread can see or change
    the timestamp half-way through it, so the clock needs no lock of its own.
    """

    cdef readonly uint64_t last

    def __init__(self, uint64_t last=0):
        self.last = last

    def move(self, uint64_t floor, bint bump):
        """Sets the timestamp to ``max(floor, last + 1)`` (``bump``) or ``max(floor, last)``
        and returns it; OperationalError when it would pass 64 bits."""
        cdef uint64_t nxt = self.last
        if bump:
            if nxt == 0xFFFFFFFFFFFFFFFF:
                raise OperationalError("HLC exhausted: timestamp exceeds 64 bits")
            nxt += 1
        if floor > nxt:
            nxt = floor
        self.last = nxt
        return nxt


def append_changeset(txn, db, ChangeCollector collector, uint64_t hlc, bytes origin,
                     uint64_t sequence, uint64_t schema_version):
    """Finishes ``collector``'s change set (``ChangeCollector.finish``) and appends it to
    the binlog sub-database ``db`` under ``sequence`` as an 8-byte big-endian key, in one
    call.  Returns what ``lmdb_put`` does (with no overwrite, as an append): 1 stored as
    the last key; 0 the key exists; 2 stored below the last key."""
    cdef bytes data = collector.finish(hlc, origin, sequence, schema_version)
    cdef unsigned char key[8]
    cdef int i
    for i in range(8):
        key[i] = <unsigned char>(sequence >> (56 - 8 * i))
    return lmdb_put_raw(txn, db, <const char*>key, 8, PyBytes_AS_STRING(data),
                        PyBytes_GET_SIZE(data), False, True)
