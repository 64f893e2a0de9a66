"""The binlog: every committed write transaction's change set, in commit order.

The binlog is an LMDB sub-database (named ``_binlog``) written inside the
same LMDB write transaction as the rows it describes, so a reader (the
replication sender) can never see a commit without its change set or a
change set without its commit.  Keys are 8-byte big-endian local sequence
numbers starting at 1; values are change sets encoded by
``ChangeCollector.finish`` (format in ``cext/changes.pxi``).

Crash consistency comes from deriving everything from what is stored: the
next sequence number is the last key plus one and the clock floor is the HLC
in the last change set, both read inside the writing transaction.  The one
shortcut (``append_after``): a caller whose write transaction began on a
snapshot this process itself committed (``WriteTxn.own_stamp``) may pass the
tail it stored then, since no transaction, aborted or from another process,
can have stored anything in between.

Retention: ``truncate_before`` deletes old change sets but always keeps the
newest one, so the sequence and the clock floor survive any truncation.  A
``RetentionPolicy`` decides how far to truncate; ``Binlog.apply_retention``
runs it (the engine calls it from a write transaction, e.g. every N commits).
Replication will supply a policy that keeps everything a peer has not yet
acknowledged.  A reader asking for change sets that retention already removed
gets an error instead of a silent gap (see ``read``).
"""
from __future__ import annotations

import struct
from itertools import islice
from typing import Any, Iterator, Protocol

import lmdb

from terndb._cext import _core
from terndb.engine.errors import (
    CorruptDatabaseError, InternalError, OperationalError,
)
from terndb.engine.hlc import HLC

#: Name of the LMDB sub-database holding the binlog.
BINLOG_DB_NAME = b"_binlog"

_SEQ = struct.Struct(">Q")
_SEQ_SIZE = _SEQ.size
_MAX_SEQ = (1 << 64) - 1
# Offset and layout of the commit HLC inside a change set header.
_HLC_OFFSET = 4
_HLC = struct.Struct(">Q")


def _seq_key(seq: int) -> bytes:
    return _SEQ.pack(seq)


def _key_seq(key: bytes) -> int:
    if len(key) != _SEQ_SIZE:
        raise CorruptDatabaseError(f"binlog key of {len(key)} bytes (expected 8)")
    return _SEQ.unpack(key)[0]


def _check_appended(seq: int, stored: int) -> None:
    """Raise unless the compiled append stored ``seq`` as the last key (``lmdb_put``'s 1)."""
    if stored != 1:
        # 0: the key exists; 2: stored, but below the last key (the tail was wrong).
        raise InternalError(f"binlog sequence {seq} already exists or is out of order")


class ChangeSet:
    """A read-only view of one stored change set.

    Header fields are attributes; ``entries`` is decoded on first use, so a
    sender that only forwards ``data`` never pays for decoding.
    """

    __slots__ = ("sequence", "data", "version", "hlc", "origin",
                 "origin_sequence", "schema_version", "count", "_entries")

    def __init__(self, sequence: int, data: bytes) -> None:
        header = _core.decode_changeset_header(data)
        #: Local binlog sequence number (the LMDB key).
        self.sequence: int = sequence
        #: The encoded change set, as stored and as sent to peers.
        self.data: bytes = data
        self.version: int = header["version"]
        #: HLC timestamp of the commit (at its origin).
        self.hlc: int = header["hlc"]
        #: 16-byte id of the node where the transaction was committed.
        self.origin: bytes = header["origin"]
        #: Sequence number of the change set in the origin's binlog.
        self.origin_sequence: int = header["sequence"]
        self.schema_version: int = header["schema_version"]
        self.count: int = header["count"]
        self._entries: list | None = None

    @property
    def entries(self) -> list:
        """The decoded ``ChangeEntry`` objects (keys and rows stay encoded)."""
        if self._entries is None:
            self._entries = _core.decode_changeset(self.data)[1]
        return self._entries

    def __iter__(self) -> Iterator[Any]:
        return iter(self.entries)

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return (f"ChangeSet(sequence={self.sequence}, hlc={self.hlc}, "
                f"origin={self.origin.hex()}, origin_sequence="
                f"{self.origin_sequence}, count={self.count})")


class RetentionPolicy(Protocol):
    """Decides which change sets may be deleted.

    ``cutoff`` returns a sequence number: change sets below it may go
    (``Binlog.truncate_before`` still keeps the newest one), or None to keep
    everything.  It runs inside the write transaction ``txn``.
    """

    def cutoff(self, binlog: "Binlog", txn: lmdb.Transaction) -> int | None: ...


class KeepAll:
    """Never delete anything (the default)."""

    def cutoff(self, binlog: "Binlog", txn: lmdb.Transaction) -> int | None:
        return None


class KeepLast:
    """Keep the newest ``count`` change sets."""

    def __init__(self, count: int) -> None:
        if type(count) is not int or count < 1:
            raise InternalError(f"KeepLast needs a positive count, not {count!r}")
        self.count = count

    def cutoff(self, binlog: "Binlog", txn: lmdb.Transaction) -> int | None:
        last = binlog.last_sequence(txn)
        return last - self.count + 1 if last > self.count else None


class Binlog:
    """Appends and reads change sets in one LMDB sub-database.

    ``env`` and ``db`` are plain py-lmdb objects; every method takes the
    caller's transaction so the binlog commits or aborts with the rows.
    """

    def __init__(self, env: lmdb.Environment, db: Any,
                 retention: RetentionPolicy | None = None) -> None:
        self.env = env
        self.db = db
        self.retention: RetentionPolicy = retention if retention is not None else KeepAll()
        # LMDB id of the last write transaction that stored a change set (see append_after).
        self._touched_in = -1

    @classmethod
    def open(cls, env: lmdb.Environment,
             retention: RetentionPolicy | None = None) -> "Binlog":
        """Open (creating if needed) the ``_binlog`` sub-database of ``env``."""
        try:
            db = env.open_db(BINLOG_DB_NAME, create=True)
        except lmdb.Error as exc:
            raise OperationalError(f"cannot open the binlog: {exc}") from exc
        return cls(env, db, retention)

    # -- writing -----------------------------------------------------------

    def append(self, txn: lmdb.Transaction, collector: Any, hlc: HLC,
               node_id: bytes, schema_version: int) -> int | None:
        """Store the collector's changes as the next change set.

        Returns the new sequence number, or None (writing nothing) when the
        collector is empty.  The commit HLC is issued here, after moving
        ``hlc`` past the last stored one, so a restarted process or another
        process on the same environment never issues a smaller timestamp.
        The collector is left as is: clear it when the transaction ends.
        """
        if collector.count == 0:
            return None
        return self.append_after(txn, collector, hlc, node_id, schema_version, None)[0]

    def append_after(self, txn: lmdb.Transaction, collector: Any, hlc: HLC, node_id: bytes,
                     schema_version: int, tail: tuple[int, int] | None) -> tuple[int, int]:
        """``append`` of a non-empty collector for a caller that may know the tail.

        ``tail`` is (sequence, commit HLC) of the last change set as this process
        committed it with this ``hlc``, when ``txn`` began on exactly that commit
        (``WriteTxn.own_stamp``): nothing can have been stored since, so neither is
        read back.  None reads them.  Returns (new sequence, its commit HLC).
        """
        if type(node_id) is not bytes or len(node_id) != 16:
            raise InternalError("binlog: node id must be 16 bytes")
        if tail is None or self._touched_in == txn.id():
            seq, last_data = self._last(txn)
            if last_data is not None:
                hlc.advance_to(self._stored_hlc(last_data))
        else:
            seq = tail[0]       # and ``hlc`` issued tail[1]: it is already past it
        seq = self._next_sequence(seq)
        ts = hlc.now()
        self._touched_in = txn.id()
        try:
            # Finished and appended in one compiled call (see _put).
            stored = _core.append_changeset(txn, self.db, collector, ts, node_id, seq, schema_version)
        except lmdb.Error as exc:
            raise OperationalError(f"binlog write failed: {exc}") from exc
        _check_appended(seq, stored)
        return seq, ts

    def append_encoded(self, txn: lmdb.Transaction, data: bytes) -> int:
        """Store a change set received from a peer, verbatim, under a new
        local sequence number (for forwarding it through a mesh).

        It is fully validated first; CorruptDatabaseError if malformed.
        """
        _core.decode_changeset(data)
        seq = self._next_sequence(self.last_sequence(txn))
        self._put(txn, seq, bytes(data))
        return seq

    def rewrite(self, txn: lmdb.Transaction, seq: int, data: bytes) -> None:
        """Replace the stored change set ``seq`` with ``data`` (same change set, annotated).

        Replication adds causal versions to a local change set this way before
        anything sends it.  The header (commit HLC, origin, sequence) must not
        change: it is the change set's identity, and the clock floor.
        """
        old = txn.get(_seq_key(seq), db=self.db)
        if old is None:
            raise InternalError(f"binlog: no change set {seq} to rewrite")
        if bytes(old[:_core.CHANGESET_HEADER_SIZE]) != bytes(data[:_core.CHANGESET_HEADER_SIZE]):
            raise InternalError(f"binlog: rewriting change set {seq} must keep its header")
        _core.decode_changeset(data)
        try:
            txn.put(_seq_key(seq), data, db=self.db)
        except lmdb.Error as exc:
            raise OperationalError(f"binlog write failed: {exc}") from exc

    def _put(self, txn: lmdb.Transaction, seq: int, data: bytes) -> None:
        # A tail known from before this transaction is stale in it from now on.
        self._touched_in = txn.id()
        try:
            # Appended (MDB_APPEND skips the B-tree search: keys only grow), through the
            # compiled put (py-lmdb's keyword parsing costs as much as the write).
            stored = _core.lmdb_c_put(txn, self.db, _SEQ.pack(seq), data, False, True)
        except lmdb.Error as exc:
            raise OperationalError(f"binlog write failed: {exc}") from exc
        _check_appended(seq, stored)

    @staticmethod
    def _next_sequence(last: int) -> int:
        if last >= _MAX_SEQ:
            raise OperationalError("binlog sequence numbers exhausted")
        return last + 1

    @staticmethod
    def _stored_hlc(data: bytes) -> int:
        if len(data) < _HLC_OFFSET + 8:
            raise CorruptDatabaseError("binlog holds a truncated change set")
        return _HLC.unpack_from(data, _HLC_OFFSET)[0]

    # -- reading -----------------------------------------------------------

    def _last(self, txn: lmdb.Transaction) -> tuple[int, bytes | None]:
        """(last sequence, its change set) or (0, None) for an empty binlog."""
        with txn.cursor(db=self.db) as cur:
            if not cur.last():
                return 0, None
            return _key_seq(cur.key()), cur.value()

    def last_sequence(self, txn: lmdb.Transaction) -> int:
        """The newest sequence number, 0 if nothing was ever stored."""
        with txn.cursor(db=self.db) as cur:
            return _key_seq(cur.key()) if cur.last() else 0

    def first_sequence(self, txn: lmdb.Transaction) -> int:
        """The oldest sequence still stored, 0 if the binlog is empty."""
        with txn.cursor(db=self.db) as cur:
            return _key_seq(cur.key()) if cur.first() else 0

    def last_hlc(self, txn: lmdb.Transaction) -> int:
        """The HLC of the newest change set, 0 if the binlog is empty."""
        _, data = self._last(txn)
        return 0 if data is None else self._stored_hlc(data)

    def read(self, txn: lmdb.Transaction, since_seq: int,
             limit: int | None = None, *,
             allow_gap: bool = False) -> Iterator[tuple[int, ChangeSet]]:
        """Change sets with sequence > ``since_seq``, oldest first.

        ``since_seq`` is the last sequence the reader has already consumed
        (0 for everything).  If retention removed change sets the reader has
        not seen, raises OperationalError unless ``allow_gap``: skipping
        them silently would leave the reader diverged.  The iterator is valid
        while ``txn`` is open.
        """
        if type(since_seq) is not int or since_seq < 0:
            raise InternalError(f"binlog: bad since_seq {since_seq!r}")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InternalError(f"binlog: bad limit {limit!r}")
        if not allow_gap:
            first = self.first_sequence(txn)
            if first and since_seq + 1 < first:
                raise OperationalError(
                    f"binlog change sets {since_seq + 1}..{first - 1} were "
                    "removed by retention; the reader must resynchronise")
        return self._iter_from(txn, since_seq, limit)

    def _iter_from(self, txn: lmdb.Transaction, since_seq: int,
                   limit: int | None) -> Iterator[tuple[int, ChangeSet]]:
        if since_seq >= _MAX_SEQ or limit == 0:
            return
        with txn.cursor(db=self.db) as cur:
            if not cur.set_range(_seq_key(since_seq + 1)):
                return
            # The publisher reads thousands per round: the key check of _key_seq inlined.
            unpack = _SEQ.unpack
            for key, value in islice(cur, limit):
                if len(key) != _SEQ_SIZE:
                    _key_seq(key)       # raises CorruptDatabaseError
                seq = unpack(key)[0]
                yield seq, ChangeSet(seq, bytes(value))

    # -- retention ---------------------------------------------------------

    def truncate_before(self, txn: lmdb.Transaction, seq: int) -> int:
        """Delete change sets with sequence < ``seq``; return how many.

        The newest change set is always kept (it carries the sequence and
        clock floor), whatever ``seq`` says.
        """
        if type(seq) is not int:
            raise InternalError(f"binlog: bad truncation point {seq!r}")
        cutoff = min(seq, self.last_sequence(txn))
        deleted = 0
        with txn.cursor(db=self.db) as cur:
            if not cur.first():
                return 0
            while _key_seq(cur.key()) < cutoff:
                if not cur.delete():  # delete() moves to the next record
                    break
                deleted += 1
        return deleted

    def apply_retention(self, txn: lmdb.Transaction) -> int:
        """Run the retention policy in write transaction ``txn``."""
        cutoff = self.retention.cutoff(self, txn)
        return 0 if cutoff is None else self.truncate_before(txn, cutoff)


__all__ = [
    "BINLOG_DB_NAME", "Binlog", "ChangeSet", "RetentionPolicy", "KeepAll",
    "KeepLast",
]
