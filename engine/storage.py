"""The LMDB storage layer: one terndb database is one directory holding one LMDB environment.

This module owns the environment's lifecycle (creation, validation, sharing, fork safety),
transactions (read snapshots, the single writer with a busy timeout, nested savepoints),
sub-database handles, and map growth.  Row-level work is *not* wrapped: the engine calls
``txn.get/put/delete/cursor(db=...)`` on the raw ``lmdb.Transaction`` objects exposed here.

On-disk layout of a database directory
--------------------------------------
``data.mdb``/``lock.mdb``  the LMDB environment (LMDB 0.9 engine, data format v1, see below);
``write.lock``             the writer lock between processes: a robust shared mutex; every
                           process that writes holds the file's ``flock`` shared, and the
                           first one alone sets the mutex up (``cext/writelock.pxi``);
``data.ckpt``              the last checkpoint (``durability="normal"``, see :mod:`checkpoint`).

Format choice.  py-lmdb 3.0 bundles LMDB 0.9 (data format v1) and LMDB 1.0 (data format v3);
the two cannot read each other.  terndb creates every database with LMDB 0.9 (``lib_version=0``,
stable, readable by the standard ``mdb_*`` tools) and records that in its metadata.  Opening a
directory whose data file is in the 1.0 format raises :class:`OperationalError`.

Metadata.  A ``_meta`` sub-database holds ``storage.*`` keys written once at creation: storage
format name and version, the LMDB version and data format, a random 16-byte node id and the
creation time.  They are checked on every open; a directory without them is not a terndb
database.  Creation is atomic: the environment is built and its metadata committed in a
staging directory, then its ``data.mdb`` is hard-linked into place, so a crash mid-creation
never leaves a half-made database, and two processes creating the same path race safely.

Durability levels (LMDB's guarantees, lmdb.h, MDB_NOMETASYNC / MDB_NOSYNC; checkpoint.py)
-----------------------------------------------------------------------------------------
``FULL``   ``sync=True, metasync=True``: data pages are fsync'd, then the meta page is written
           and fsync'd.  A committed transaction survives an application crash, an OS crash
           and a power loss.
``NORMAL`` sqlite3's WAL + ``synchronous=NORMAL`` guarantee: no fsync at commit (MDB_NOSYNC);
           a background checkpoint (:mod:`checkpoint`) fsyncs every second or 1000 commits,
           and about a second after the last commit.  An application crash loses nothing.
           An OS crash or power loss rolls the database back to its last checkpoint (the
           commits of about the last second) and never corrupts it: the next open restores the checkpointed snapshot, whose pages a
           pinned read transaction kept LMDB from reusing.  A clean close (or interpreter
           exit) takes a final checkpoint.  Needs the OS boot id (Linux); elsewhere ``NORMAL``
           is ``sync=True, metasync=False`` (MDB_NOMETASYNC: data pages fsync'd at every
           commit, an OS crash may undo the last transaction).
``OFF``    ``sync=False, metasync=False`` (MDB_NOSYNC): nothing is fsync'd at commit.  An
           application crash loses nothing (the writes are in the OS page cache).  An OS crash
           or power loss may lose the last transactions, and LMDB warns it *can corrupt the
           database* unless the filesystem preserves write order.  Call :meth:`Store.sync` to
           make a point durable.

A ``FULL`` or ``OFF`` writer that finds a ``NORMAL`` checkpoint "not clean" syncs and marks it
clean before its first commit, so a later crash recovery never undoes a ``FULL`` commit.

Map size.  LMDB maps the whole file at a fixed maximum size.  The default is 1 TiB of
*virtual* address space: without ``writemap`` the data file only grows as pages are written
(a fresh database is 8 KiB on disk) and reserving the mapping costs nothing measurable.
When a write still hits ``lmdb.MapFullError``, abort the write transaction, call
:meth:`Store.grow` and redo the work (:meth:`Store.write` does exactly that).

Concurrency rules enforced here
-------------------------------
* One LMDB environment per path per process: :meth:`Store.open` keeps a registry keyed by
  ``(pid, realpath)``; each call returns its own :class:`Store` handle on the shared
  environment, released by :meth:`Store.close`.
* One writer: LMDB's writer mutex blocks forever, so :meth:`Store.begin_write` first takes a
  thread lock (threads of this process) and the mutex in ``write.lock`` (other processes),
  waiting up to a busy timeout, then raises :class:`DatabaseLockedError`.  Uncontended,
  both are taken without a system call.  A write transaction is bound to the thread that
  began it (the mutex is released on the thread that took it).  Versions of terndb before
  the mutex took an ``flock`` per transaction instead: run against one of those, a writer
  still never corrupts anything (LMDB's own mutex serialises them) but may wait past its
  busy timeout.
* Remapping (:meth:`Store.grow`, adopting a map grown by another process) is only legal with
  no transaction of this process open, so every transaction is counted and remaps wait for
  the count to drain (bounded by a timeout).
* Sub-database handles are only usable in transactions begun after the handle was opened, and
  a handle opened in a transaction that aborts is closed by LMDB (py-lmdb ends read
  transactions with a reset, which also discards handles).  So handles are registered in a
  short, empty write transaction under the write lock, or opened inside the write
  transaction and published only when it commits.  A ``storage.dbi_epoch`` counter, bumped
  whenever a sub-database is created or dropped, is read at every transaction begin (one
  get, ~0.6 us), so every transaction starts with handles for all databases of its snapshot,
  including ones another process created.  Not read again for a snapshot already checked,
  nor for one this process committed itself (``_SharedEnv.last_commit``).
* Own commits: a caller that knows its write transaction changed the database passes a
  ``stamp`` to :meth:`WriteTxn.commit`; the next write transaction of this process that
  begins on exactly that snapshot (LMDB ids: the snapshot's id plus one) gets it back as
  ``own_stamp``, proof that no transaction of any process committed in between.  The
  session stamps the binlog tail, schema version and node id this way (engine/session.py).
* py-lmdb 3.0 caveat: aborting a write or nested transaction waits until no other thread of
  the process is inside an LMDB call (``active_ops``); with two threads scanning cursors an
  abort was measured at ~1 s median, 4 s worst.  Commits do not wait.
* After ``fork()`` a child must not touch the parent's environment: every public method
  checks the pid and raises :class:`OperationalError`; the child can open the path afresh.
"""
from __future__ import annotations

import enum
import errno
import fcntl
import os
import shutil
import struct
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, TypeVar

import lmdb

from terndb._cext import _core as C

from .errors import (
    CorruptDatabaseError,
    DatabaseLockedError,
    Error,
    InterfaceError,
    NoSuchObjectError,
    OperationalError,
    ProgrammingError,
    ReadOnlyError,
)

__all__ = [
    "Durability", "Store", "ReadTxn", "WriteTxn", "translate_lmdb_error", "is_map_full",
    "DEFAULT_MAP_SIZE", "DEFAULT_MAX_DBS", "STORAGE_FORMAT", "STORAGE_FORMAT_VERSION",
]

if TYPE_CHECKING:
    from .checkpoint import Checkpointer

T = TypeVar("T")

#: Name and version of terndb's storage layout, recorded in every database.
STORAGE_FORMAT = b"terndb-storage"
STORAGE_FORMAT_VERSION = 1
#: The LMDB engine terndb creates databases with (py-lmdb ``lib_version``) and its data format.
LMDB_LIB_VERSION = 0
LMDB_DATA_FORMAT = 1

DEFAULT_MAP_SIZE = 1 << 40          # 1 TiB of address space, not of disk
MIN_GROWTH = 64 << 20               # grow() adds at least 64 MiB
DEFAULT_MAX_DBS = 1024              # nested-txn cost grows with it: ~1.8 us at 1024, 3.4 at 4096
DEFAULT_MAX_READERS = 126

DATA_FILE = "data.mdb"
LOCK_FILE = "lock.mdb"
WRITE_LOCK_FILE = "write.lock"
CHECKPOINT_FILE = "data.ckpt"
# Files terndb itself may leave in a directory that holds no database yet.
_OWN_FILES = frozenset({DATA_FILE, LOCK_FILE, WRITE_LOCK_FILE, CHECKPOINT_FILE})
_STAGING_PREFIX = ".terndb-init-"

META_DB = b"_meta"
K_FORMAT = b"storage.format"
K_FORMAT_VERSION = b"storage.format_version"
K_LMDB_VERSION = b"storage.lmdb_version"
K_DATA_FORMAT = b"storage.lmdb_data_format"
K_NODE_ID = b"storage.node_id"
K_CREATED = b"storage.created_at"
K_EPOCH = b"storage.dbi_epoch"
_EPOCH = struct.Struct(">Q")
_ZERO_EPOCH = _EPOCH.pack(0)

# Busy-wait schedule for the write lock (seconds): short first, like SQLite's busy handler.
_LOCK_POLL = (0.0005, 0.001, 0.002, 0.005, 0.01)
_RESIZE_WAIT = 5.0                  # how long a remap waits for this process's transactions
_HANDLE_SYNC_WAIT = 5.0             # how long registering new table handles waits for a writer


class Durability(enum.Enum):
    """How hard a commit pushes data to stable storage (see the module docstring)."""

    FULL = "full"
    NORMAL = "normal"
    OFF = "off"

    def lmdb_flags(self) -> dict[str, bool]:
        """The ``lmdb.open`` keyword arguments for this level."""
        return _DURABILITY_FLAGS[self]


_DURABILITY_FLAGS = {
    Durability.FULL: {"sync": True, "metasync": True},
    # Without checkpoints (no boot id on this OS); with them NORMAL opens like OFF.
    Durability.NORMAL: {"sync": True, "metasync": False},
    Durability.OFF: {"sync": False, "metasync": False},
}


# --------------------------------------------------------------------------------------------
# Error translation

def is_map_full(exc: BaseException) -> bool:
    """True if ``exc`` (raw or wrapped by this module) means the LMDB map is full."""
    while exc is not None:
        if isinstance(exc, lmdb.MapFullError):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def translate_lmdb_error(exc: lmdb.Error, context: str = "") -> Error:
    """Map an ``lmdb.Error`` to the terndb error to raise (the caller chains it with ``from``)."""
    where = f"{context}: " if context else ""
    if isinstance(exc, lmdb.MapFullError):
        return OperationalError(f"{where}database or disk is full (LMDB map size reached)")
    if isinstance(exc, lmdb.ReadonlyError):
        return ReadOnlyError(f"{where}attempt to write a readonly database")
    corrupt = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.PanicError,
               lmdb.VersionMismatchError, lmdb.InvalidError,
               getattr(lmdb, "BadChecksumError", ()), getattr(lmdb, "ProblemError", ()))
    if isinstance(exc, corrupt):
        return CorruptDatabaseError(f"{where}database disk image is malformed ({exc})")
    if isinstance(exc, lmdb.ReadersFullError):
        return OperationalError(f"{where}too many concurrent readers (LMDB reader table full)")
    if isinstance(exc, lmdb.DbsFullError):
        return OperationalError(f"{where}too many tables and indexes (max_dbs reached)")
    if isinstance(exc, lmdb.TxnFullError):
        return OperationalError(f"{where}transaction too large (too many dirty pages)")
    if isinstance(exc, lmdb.DiskError):
        return OperationalError(f"{where}disk I/O error ({exc})")
    if isinstance(exc, (lmdb.BadTxnError, lmdb.BadRslotError)):
        return InterfaceError(f"{where}transaction is no longer usable ({exc})")
    return OperationalError(f"{where}{exc}")


# --------------------------------------------------------------------------------------------
# Reading the data file's header without handing a damaged file to LMDB

_MDB_MAGIC = 0xBEEFC0DE
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
# Page-header size identifies the engine: 16 bytes for LMDB 0.9 (data format 1), 24 for 1.0 (3).
_FORMAT_BY_HEADER = {16: 1, 24: 3}
_P_META = 0x08
_DB_RECORD = 48                     # sizeof(MDB_db) on 64-bit, both engines
_META_SPAN = 24 + 2 * _DB_RECORD + 16   # magic..txnid of an MDB_meta
# LMDB can leave a few freed ("loose") pages past the end of the file; tolerate that much.
_TAIL_SLACK_PAGES = 64


class _Header:
    """The committed meta page of a data file: what we need to trust it before mapping it."""

    __slots__ = ("data_format", "page_size", "map_size", "last_page", "txnid")

    def __init__(self, data_format: int, page_size: int, map_size: int,
                 last_page: int, txnid: int) -> None:
        self.data_format = data_format
        self.page_size = page_size
        self.map_size = map_size
        self.last_page = last_page
        self.txnid = txnid


def _parse_meta(buf: bytes, hdr: int, data_format: int, what: str) -> tuple[int, ...]:
    """Decode one meta page: (page_size, map_size, free_root, main_root, last_page, txnid)."""
    if len(buf) < hdr + _META_SPAN:
        raise CorruptDatabaseError(f"{what} is truncated")
    flags = _U16.unpack_from(buf, hdr - 6)[0]
    magic, version = _U32.unpack_from(buf, hdr)[0], _U32.unpack_from(buf, hdr + 4)[0]
    if not flags & _P_META or magic != _MDB_MAGIC or version != data_format:
        raise CorruptDatabaseError(f"{what} is damaged (bad LMDB meta page)")
    map_size = _U64.unpack_from(buf, hdr + 16)[0]
    free_db, main_db = hdr + 24, hdr + 24 + _DB_RECORD
    page_size = _U32.unpack_from(buf, free_db)[0]        # mm_psize aliases the free db's pad
    free_root = _U64.unpack_from(buf, free_db + 40)[0]
    main_root = _U64.unpack_from(buf, main_db + 40)[0]
    last_page = _U64.unpack_from(buf, hdr + 24 + 2 * _DB_RECORD)[0]
    txnid = _U64.unpack_from(buf, hdr + 24 + 2 * _DB_RECORD + 8)[0]
    return page_size, map_size, free_root, main_root, last_page, txnid


def _read_header(data_path: str) -> _Header:
    """Validate the two meta pages and the file length; raise CorruptDatabaseError if damaged.

    LMDB maps the file and trusts it: a truncated file makes it read past the end of the
    mapping (SIGBUS, killing the process).  So the committed meta page is checked here first.
    """
    with open(data_path, "rb") as f:
        head = f.read(64)
        hdr = next((off for off in (16, 24) if len(head) >= off + 4
                    and _U32.unpack_from(head, off)[0] == _MDB_MAGIC), None)
        if hdr is None:
            raise CorruptDatabaseError(
                f"{data_path} is not a terndb database (not an LMDB data file, or truncated)")
        data_format = _FORMAT_BY_HEADER[hdr]
        f.seek(0)
        meta0 = _parse_meta(f.read(hdr + _META_SPAN), hdr, data_format, f"{data_path} meta page 0")
        page_size = meta0[0]
        if page_size < 512 or page_size & (page_size - 1) or page_size > 65536:
            raise CorruptDatabaseError(f"{data_path} is damaged (implausible page size {page_size})")
        f.seek(page_size)
        meta1 = _parse_meta(f.read(hdr + _META_SPAN), hdr, data_format, f"{data_path} meta page 1")
        # The length is read after the meta pages: a writer in another process writes a
        # commit's pages before its meta page, so a length read first could miss pages
        # that a meta page read a moment later already points to.
        size = os.fstat(f.fileno()).st_size
    committed = meta1 if meta1[5] > meta0[5] else meta0
    _, map_size, free_root, main_root, last_page, txnid = committed
    pages_in_file = size // page_size
    for root in (free_root, main_root):
        if root != 2**64 - 1 and root >= pages_in_file:
            raise CorruptDatabaseError(f"{data_path} is truncated (a B-tree root lies past its end)")
    if last_page + 1 > pages_in_file + _TAIL_SLACK_PAGES:
        raise CorruptDatabaseError(
            f"{data_path} is truncated ({size} bytes, the last commit needs "
            f"{(last_page + 1) * page_size})")
    return _Header(data_format, page_size, map_size, last_page, txnid)


# --------------------------------------------------------------------------------------------
# Fork tracking: the pid is refreshed in the child, so the per-call check is a comparison.

_current_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _current_pid, _registry_lock
    _current_pid = os.getpid()
    # The parent's environments are unusable here; a fresh open must not find them.  They
    # are kept aside: py-lmdb refuses to open a path whose inherited Environment is still
    # open, so a fresh open in the child first closes the inherited one.
    _inherited.extend(_registry.values())
    _registry.clear()
    _registry_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

_registry: dict[tuple[int, str], "_SharedEnv"] = {}
_registry_lock = threading.Lock()
_inherited: list["_SharedEnv"] = []


def _discard_inherited(path: str) -> None:
    """In a forked child, close the Environment inherited for ``path`` so it can be reopened.

    Closing it in the child only unmaps the child's copy and closes the child's descriptors
    (LMDB clears reader slots of the *calling* pid only, and the parent's fcntl/flock locks
    are not released by a child closing its inherited descriptors).  If the parent was in a
    write transaction at fork time, py-lmdb's close would wait for a thread that does not
    exist in the child, so that case is refused instead.
    """
    for shared in [s for s in _inherited if s.path == path]:
        if shared.writer_thread is not None:
            raise OperationalError(
                f"{path} was being written when this process was forked; it cannot be "
                f"reopened in the child (fork outside write transactions, or use spawn)")
        _inherited.remove(shared)
        try:
            shared.close_env()
        except (lmdb.Error, OSError):
            pass                        # the child's copy is unusable anyway


# --------------------------------------------------------------------------------------------
# The shared, refcounted environment

class _SharedEnv:
    """One open LMDB environment and the process-wide state around it."""

    def __init__(self, path: str, env: lmdb.Environment, options: dict[str, object]) -> None:
        self.path = path
        self.env = env
        self.options = options
        self.pid = os.getpid()
        self.refs = 0
        self.readonly = bool(options["readonly"])
        self.node_id = b""
        self.meta_db: object = None
        # Sub-database handles valid in every transaction begun from now on.
        self.handles: dict[bytes, object] = {}
        self.epoch = _ZERO_EPOCH
        # LMDB id of the last read snapshot found to have handles for all its databases.
        # A snapshot's id names its content, and ``epoch`` only grows, so a read txn on
        # the same snapshot needs no second look at its epoch (the common case: reads
        # with no commit in between).
        self.fresh_snapshot = -1
        # (LMDB id, stamp) of the last transaction this process committed that is known to
        # have changed the database (see WriteTxn.commit).  A write transaction whose
        # snapshot is that commit knows nothing happened since: no other process wrote,
        # so the epoch is current and the committer's stamp still describes the database.
        self.last_commit: tuple[int, object] = (-1, None)
        self.dbi_lock = threading.RLock()       # serializes every open_db (LMDB requires it)
        # Writer exclusion: threads via a lock, processes via the mutex in write.lock.
        self.writer_lock = threading.Lock()
        self.writer_thread: int | None = None
        self.lock_fd = -1
        self.writer_mutex: C.WriterMutex | None = None
        # Transaction accounting for remaps (set_mapsize needs no txn of this process open).
        self.gate = threading.Condition(threading.Lock())
        self.open_txns: list[None] = []
        self.resizing = False
        # The checkpoint protocol (checkpoint.Checkpointer) of a writable environment.
        self.checkpointer: "Checkpointer | None" = None

    # -- transaction accounting ------------------------------------------------------------
    # A Condition round trip per transaction costs ~2 us, so the hot path is lock-free: each
    # open transaction appends to ``open_txns`` (list append/pop are atomic), and a remap
    # sets ``resizing`` before checking the list while enter() appends before checking the
    # flag, so one of the two always sees the other.
    def enter(self) -> None:
        open_txns = self.open_txns
        open_txns.append(None)
        if self.resizing:
            open_txns.pop()
            with self.gate:
                while self.resizing:
                    self.gate.wait()
            self.enter()

    def leave(self) -> None:
        self.open_txns.pop()
        if self.resizing:
            with self.gate:
                self.gate.notify_all()

    @property
    def active(self) -> int:
        return len(self.open_txns)

    def remap(self, new_size: int, timeout: float) -> None:
        """set_mapsize(new_size) once no transaction of this process is open (0 adopts the
        size another process committed)."""
        with self.gate:
            while self.resizing:
                self.gate.wait()
            self.resizing = True
            try:
                if not self.gate.wait_for(lambda: self.active == 0, timeout):
                    raise OperationalError(
                        f"cannot resize the database map: {self.active} transaction(s) of this "
                        f"process are still open; end them and retry")
                try:
                    self.env.set_mapsize(new_size)
                except lmdb.Error as exc:
                    raise translate_lmdb_error(exc, "resizing the database map") from exc
                finally:
                    if self.checkpointer is not None:
                        self.checkpointer.pin_lost()    # py-lmdb ended every transaction
            finally:
                self.resizing = False
                self.gate.notify_all()

    # -- sub-database handles ----------------------------------------------------------------
    def sync_handles(self, wanted_epoch: bytes | None = None, *, holding_lock: bool = False,
                     timeout: float = _HANDLE_SYNC_WAIT) -> None:
        """Register handles for every sub-database of the latest snapshot.

        LMDB keeps a handle only if the transaction that opened it *commits*, and py-lmdb ends
        a read transaction's "commit" with a reset, so handles are opened in a short write
        transaction; with nothing written its commit does no I/O.  That needs the write lock.
        While a writer of this process is active nothing is opened: it synced when it began,
        no other process can commit meanwhile, and new slots could collide with its own.
        """
        if self.readonly:
            with self.dbi_lock:
                if wanted_epoch is None or self.epoch < wanted_epoch:
                    self._register_handles_readonly()
            return
        if not holding_lock:
            if self.writer_thread is not None:
                return
            # Lock order everywhere: the write lock first, then dbi_lock.
            _acquire_write_lock(self, timeout)
        try:
            with self.dbi_lock:
                if wanted_epoch is None or self.epoch < wanted_epoch:
                    self._register_handles_in_write_txn()
        finally:
            if not holding_lock:
                _release_write_lock(self)

    def _register_handles_in_write_txn(self) -> None:
        self.enter()
        try:
            txn = self.env.begin(write=True)
            try:
                for name in self.env.dbs(txn):
                    if name not in self.handles:
                        self.handles[name] = self.env.open_db(name, txn=txn, create=False)
                self.meta_db = self.handles.get(META_DB)
                if self.meta_db is not None:
                    self.epoch = txn.get(K_EPOCH, _ZERO_EPOCH, db=self.meta_db)
                txn.commit()
            except BaseException:
                txn.abort()
                raise
        except lmdb.Error as exc:
            raise translate_lmdb_error(exc, "opening table handles") from exc
        finally:
            self.leave()

    def _register_handles_readonly(self) -> None:
        # On a read-only environment py-lmdb opens a handle in a read txn it truly commits.
        self.enter()
        try:
            for name in self.env.dbs():
                if name not in self.handles:
                    self.handles[name] = self.env.open_db(name, create=False)
            self.meta_db = self.handles.get(META_DB)
            if self.meta_db is not None:
                with self.env.begin() as txn:
                    self.epoch = txn.get(K_EPOCH, _ZERO_EPOCH, db=self.meta_db)
        except lmdb.Error as exc:
            raise translate_lmdb_error(exc, "opening table handles") from exc
        finally:
            self.leave()

    def begin_raw(self, write: bool) -> lmdb.Transaction:
        """Begin a top-level LMDB txn whose snapshot's sub-databases all have handles;
        adopts a map grown by another process.  The caller has called enter()."""
        try:
            txn = self.env.begin(write=write)
        except lmdb.Error:
            return self._begin_slow(write)
        # A write txn's id is not a snapshot's (an aborted writer's id is reused): it
        # begins on the snapshot one below, which is fresh if this process committed it.
        if write:
            if txn.id() - 1 == self.last_commit[0]:
                return txn
            snapshot = -1
        else:
            snapshot = txn.id()
            if snapshot == self.fresh_snapshot or snapshot == self.last_commit[0]:
                return txn
        try:
            fresh = txn.get(K_EPOCH, _ZERO_EPOCH, db=self.meta_db) <= self.epoch
        except lmdb.Error as exc:
            txn.abort()
            raise translate_lmdb_error(exc, "beginning a transaction") from exc
        if fresh:
            if snapshot >= 0:
                self.fresh_snapshot = snapshot
            return txn
        txn.abort()
        return self._begin_slow(write)

    def _begin_slow(self, write: bool) -> lmdb.Transaction:
        """begin_raw when the map must be adopted or new handles registered first."""
        for attempt in range(20):
            if attempt >= 3:
                # Another thread of this process is mid-DDL (it registers the new handles
                # when it commits): give it a moment instead of failing at once.
                time.sleep(0.002 * attempt)
            try:
                txn = self.env.begin(write=write)
            except lmdb.MapResizedError:
                self.leave()            # a remap needs this process's txn count at zero
                try:
                    self.remap(0, _RESIZE_WAIT)
                finally:
                    self.enter()
                continue
            except lmdb.Error as exc:
                raise translate_lmdb_error(exc, "beginning a transaction") from exc
            try:
                epoch = txn.get(K_EPOCH, _ZERO_EPOCH, db=self.meta_db)
            except lmdb.Error as exc:
                txn.abort()
                raise translate_lmdb_error(exc, "beginning a transaction") from exc
            if epoch <= self.epoch:
                return txn
            txn.abort()
            # Never wait (for the write lock, or a remap) while counted as open: a remap
            # waiting for this thread while this thread waits for a writer blocked by that
            # remap would be a cycle.
            self.leave()
            try:
                self.sync_handles(epoch, holding_lock=write)
            finally:
                self.enter()
        raise OperationalError("could not begin a transaction: the database kept changing shape")

    def close_env(self) -> None:
        if self.checkpointer is not None and self.pid != os.getpid():
            # Inherited across fork: the parent's checkpoint and pin are the parent's.
            self.checkpointer.forget_inherited()
            self.checkpointer = None
        if self.checkpointer is not None:
            try:
                # Its final checkpoint takes the writer lock: close it while the lock lives.
                self.checkpointer.close(float(self.options["busy_timeout"]))  # type: ignore[arg-type]
            finally:
                self.checkpointer = None
                self._close_files()
            return
        self._close_files()

    def _close_files(self) -> None:
        if self.writer_mutex is not None:
            self.writer_mutex.close()
            self.writer_mutex = None
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1
        self.env.close()


# --------------------------------------------------------------------------------------------
# Opening and creating

def _check_directory(path: str, create: bool, readonly: bool) -> bool:
    """Decide whether ``path`` holds a database (True) or may receive a new one (False)."""
    if os.path.isfile(path):
        raise CorruptDatabaseError(f"{path} is a file, not a terndb database directory")
    if not os.path.isdir(path):
        if not create or readonly:
            raise OperationalError(f"unable to open database: {path} does not exist")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise OperationalError(f"unable to create database directory {path}: {exc}") from exc
        return False
    if os.path.exists(os.path.join(path, DATA_FILE)):
        return True
    if not create or readonly:
        raise OperationalError(f"unable to open database: {path} holds no terndb database")
    foreign = [n for n in os.listdir(path) if n not in _OWN_FILES
               and not n.startswith(_STAGING_PREFIX)]
    if foreign:
        raise CorruptDatabaseError(
            f"{path} is not a terndb database (it is a non-empty directory without {DATA_FILE}; "
            f"found e.g. {sorted(foreign)[0]!r})")
    return False


def _write_initial_meta(env: lmdb.Environment) -> None:
    with env.begin(write=True) as txn:
        meta = env.open_db(META_DB, txn=txn, create=True)
        lib = ".".join(map(str, env.lib_version())).encode()
        created = datetime.now(timezone.utc).isoformat().encode()
        for key, value in ((K_FORMAT, STORAGE_FORMAT),
                           (K_FORMAT_VERSION, str(STORAGE_FORMAT_VERSION).encode()),
                           (K_LMDB_VERSION, lib),
                           (K_DATA_FORMAT, str(LMDB_DATA_FORMAT).encode()),
                           (K_NODE_ID, uuid.uuid4().bytes),
                           (K_CREATED, created),
                           (K_EPOCH, _EPOCH.pack(1))):
            txn.put(key, value, db=meta)


def _create_database(path: str) -> None:
    """Build a complete database in a staging directory, then link its data file into place."""
    stage = os.path.join(path, _STAGING_PREFIX + uuid.uuid4().hex)
    try:
        os.mkdir(stage)
        env = lmdb.open(stage, map_size=1 << 20, max_dbs=2, lib_version=LMDB_LIB_VERSION)
        try:
            _write_initial_meta(env)
        finally:
            env.close()
        try:
            os.link(os.path.join(stage, DATA_FILE), os.path.join(path, DATA_FILE))
        except FileExistsError:
            pass                        # another process created it first: use theirs
        dir_fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)            # make the new directory entry durable
        finally:
            os.close(dir_fd)
    except lmdb.Error as exc:
        raise translate_lmdb_error(exc, f"creating database {path}") from exc
    except OSError as exc:
        raise OperationalError(f"unable to create database {path}: {exc}") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _verify_meta(path: str, txn: lmdb.Transaction, meta_db: object) -> bytes:
    """Check the storage metadata; return the node id."""
    def get(key: bytes) -> bytes | None:
        return txn.get(key, db=meta_db)

    if get(K_FORMAT) != STORAGE_FORMAT:
        raise CorruptDatabaseError(f"{path} is not a terndb database (no terndb storage metadata)")
    try:
        version = int(get(K_FORMAT_VERSION) or b"")
        data_format = int(get(K_DATA_FORMAT) or b"")
    except ValueError as exc:
        raise CorruptDatabaseError(f"{path}: storage metadata is damaged") from exc
    if version > STORAGE_FORMAT_VERSION:
        raise OperationalError(
            f"{path} uses terndb storage format {version}; this terndb reads up to "
            f"{STORAGE_FORMAT_VERSION}: upgrade terndb")
    if data_format != LMDB_DATA_FORMAT:
        raise OperationalError(
            f"{path} records LMDB data format {data_format}; terndb uses format {LMDB_DATA_FORMAT}")
    node_id = get(K_NODE_ID)
    if node_id is None or len(node_id) != 16:
        raise CorruptDatabaseError(f"{path}: storage metadata is damaged (bad node id)")
    return node_id


def _open_shared(path: str, options: dict[str, object]) -> _SharedEnv:
    # Imported here: the checkpoint module builds on this one's meta-page reader.
    from . import checkpoint
    readonly = bool(options["readonly"])
    if not _check_directory(path, bool(options["create"]), readonly):
        _create_database(path)
    else:
        checkpoint.recover(path, float(options["busy_timeout"]))  # type: ignore[arg-type]
    data_path = os.path.join(path, DATA_FILE)
    header = _read_header(data_path)
    if header.data_format != LMDB_DATA_FORMAT:
        raise OperationalError(
            f"{path} was written by LMDB 1.0 (data format {header.data_format}); terndb databases "
            f"use LMDB 0.9 (data format {LMDB_DATA_FORMAT}); migrate it with mdb_dump/mdb_load")
    map_size = options["map_size"]
    if map_size is None:
        map_size = max(DEFAULT_MAP_SIZE, header.map_size)
    durability: Durability = options["durability"]  # type: ignore[assignment]
    checkpoints = not readonly and checkpoint.nosync_supported()
    flags = durability.lmdb_flags()
    if checkpoints and durability is Durability.NORMAL:
        flags = _DURABILITY_FLAGS[Durability.OFF]
    try:
        env = lmdb.open(path, map_size=map_size, readonly=readonly, create=False,
                        max_dbs=options["max_dbs"], max_readers=options["max_readers"],
                        lib_version=LMDB_LIB_VERSION, max_spare_txns=0, **flags)
    except lmdb.Error as exc:
        raise translate_lmdb_error(exc, f"opening database {path}") from exc
    shared = _SharedEnv(path, env, options)
    try:
        _finish_open(shared)
        if checkpoints:
            shared.checkpointer = checkpoint.Checkpointer(
                env, path, durability is Durability.NORMAL,
                lock=lambda timeout: _acquire_write_lock(shared, timeout, writing=False),
                unlock=lambda: _release_write_lock(shared),
                enter=shared.enter, leave=shared.leave)
    except BaseException:
        shared.close_env()
        raise
    return shared


def _finish_open(shared: _SharedEnv) -> None:
    env, path = shared.env, shared.path
    if not shared.readonly:
        try:
            shared.lock_fd = os.open(os.path.join(path, WRITE_LOCK_FILE),
                                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OperationalError(f"unable to open {WRITE_LOCK_FILE} in {path}: {exc}") from exc
        shared.writer_mutex = _open_writer_mutex(shared.lock_fd,
                                                 float(shared.options["busy_timeout"]))  # type: ignore[arg-type]
    try:
        env.reader_check()              # free slots left by crashed processes
        if META_DB not in env.dbs():
            raise CorruptDatabaseError(
                f"{path} is not a terndb database (an LMDB environment without terndb metadata)")
    except lmdb.Error as exc:
        raise translate_lmdb_error(exc, f"opening database {path}") from exc
    shared.sync_handles(timeout=float(shared.options["busy_timeout"]))  # type: ignore[arg-type]
    try:
        with env.begin() as txn:
            shared.node_id = _verify_meta(path, txn, shared.meta_db)
    except lmdb.Error as exc:
        raise translate_lmdb_error(exc, f"opening database {path}") from exc


def _conflicts(shared: _SharedEnv, options: dict[str, object]) -> list[str]:
    """Options of a second open() that the already-open environment cannot honour."""
    have = shared.options
    bad = []
    if not options["readonly"] and have["readonly"]:
        bad.append("readonly (the database is already open read-only in this process)")
    if options["durability"] is not have["durability"]:
        bad.append(f"durability (already open with {have['durability'].name})")  # type: ignore
    current = int(shared.env.info()["map_size"])
    if options["map_size"] is not None and options["map_size"] > current:  # type: ignore
        bad.append(f"map_size (already open with {current}; use grow())")
    if options["max_dbs"] > have["max_dbs"]:  # type: ignore[operator]
        bad.append(f"max_dbs (already open with {have['max_dbs']})")
    if options["max_readers"] > have["max_readers"]:  # type: ignore[operator]
        bad.append(f"max_readers (already open with {have['max_readers']})")
    return bad


# --------------------------------------------------------------------------------------------
# Public API

class Store:
    """A handle on one LMDB environment, shared by every connection to that path in this process.

    Each :meth:`open` returns a new handle; the environment closes when the last handle is
    closed.  A handle opened ``readonly`` on an environment shared with writers refuses writes.
    """

    __slots__ = ("_shared", "_readonly", "_closed", "path", "node_id")

    def __init__(self, shared: _SharedEnv, readonly: bool) -> None:
        self._shared = shared
        self._readonly = readonly
        self._closed = False
        self.path: str = shared.path
        self.node_id: bytes = shared.node_id

    @classmethod
    def open(cls, path: str, *, map_size: int | None = None, readonly: bool = False,
             durability: Durability = Durability.FULL, create: bool = True,
             max_dbs: int = DEFAULT_MAX_DBS, max_readers: int = DEFAULT_MAX_READERS,
             busy_timeout: float = _HANDLE_SYNC_WAIT) -> "Store":
        """Open (creating if allowed) the database directory ``path``.

        ``busy_timeout`` bounds the wait for another process's writer when registering table
        handles at open (that briefly needs the write lock).
        """
        if not isinstance(durability, Durability):
            raise ProgrammingError(f"durability must be a Durability, not {durability!r}")
        if map_size is not None and (not isinstance(map_size, int) or map_size <= 0):
            raise ProgrammingError(f"map_size must be a positive integer, not {map_size!r}")
        try:
            real = os.path.realpath(os.fspath(path))
        except TypeError as exc:
            raise ProgrammingError(f"database path must be a string, not {path!r}") from exc
        options: dict[str, object] = {
            "map_size": map_size, "readonly": readonly, "durability": durability,
            "create": create, "max_dbs": max_dbs, "max_readers": max_readers,
            "busy_timeout": busy_timeout}
        key = (os.getpid(), real)
        with _registry_lock:
            shared = _registry.get(key)
            if shared is None:
                if _inherited:
                    _discard_inherited(real)
                shared = _open_shared(real, options)
                _registry[key] = shared
            else:
                bad = _conflicts(shared, options)
                if bad:
                    raise ProgrammingError(
                        f"{real} is already open in this process with other options: "
                        + "; ".join(bad))
            shared.refs += 1
        return cls(shared, readonly or shared.readonly)

    # -- lifecycle -----------------------------------------------------------------------------
    def _check(self) -> _SharedEnv:
        """The fork and closed checks every public method starts with."""
        shared = self._shared
        if shared.pid != _current_pid:
            raise OperationalError("database opened before fork(); reconnect in the child")
        if self._closed:
            raise ProgrammingError("cannot operate on a closed database")
        return shared

    check_fork = _check

    def close(self) -> None:
        """Release this handle (idempotent); the environment closes with the last handle."""
        if self._closed:
            return
        self._closed = True
        shared = self._shared
        if shared.pid != _current_pid:
            return                      # never touch the parent's environment in a child
        with _registry_lock:
            shared.refs -= 1
            if shared.refs > 0:
                return
            _registry.pop((shared.pid, shared.path), None)
            shared.close_env()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def durability(self) -> Durability:
        """The commit durability this environment was opened with (every handle shares it)."""
        return self._shared.options["durability"]  # type: ignore[return-value]

    @property
    def env(self) -> lmdb.Environment:
        """The raw environment (for stats and flags; never open or resize it directly)."""
        return self._check().env

    @property
    def map_size(self) -> int:
        return int(self._check().env.info()["map_size"])

    def sync(self, timeout: float = _HANDLE_SYNC_WAIT) -> None:
        """Make everything committed durable (Durability.OFF/NORMAL commits).

        With checkpoints that is a checkpoint (under the write lock, waiting up to
        ``timeout`` for another writer): a bare fsync would not move the point an OS crash
        rolls back to.
        """
        shared = self._check()
        checkpointer = shared.checkpointer
        if checkpointer is not None and checkpointer.nosync and not self._readonly:
            _acquire_write_lock(shared, timeout)
            try:
                checkpointer.checkpoint()
            finally:
                _release_write_lock(shared)
            return
        try:
            shared.env.sync(True)
        except lmdb.Error as exc:
            raise translate_lmdb_error(exc, "syncing the database") from exc

    # -- sub-databases ---------------------------------------------------------------------------
    def db(self, name: bytes, txn: "WriteTxn | None" = None, create: bool = False,
           *, dupsort: bool = False, integerkey: bool = False) -> object:
        """The handle of sub-database ``name``.

        Without ``txn``: a committed handle, usable in any transaction of this store.  Every
        transaction begins with handles registered for all databases in its snapshot, so a
        name unknown here does not exist in any snapshot this process holds:
        NoSuchObjectError.  With a :class:`WriteTxn`: opened (or, with ``create``, created)
        inside it; a handle first opened there is published to others when it commits.
        """
        shared = self._check()
        handle = shared.handles.get(name)
        if handle is not None:
            return handle
        if txn is not None:
            if not isinstance(txn, WriteTxn):
                raise ProgrammingError("db(): txn must be a WriteTxn")
            return txn._open_db(name, create, dupsort, integerkey)
        if create:
            raise ProgrammingError("creating a sub-database needs a write transaction")
        raise NoSuchObjectError(f"no such storage database: {name.decode(errors='replace')}")

    def drop_db(self, txn: "WriteTxn", name: bytes) -> None:
        """Delete sub-database ``name`` inside write transaction ``txn``.

        LMDB closes the handle at once, so no other transaction of this process may still be
        reading that sub-database (the engine drops tables under its schema lock).
        """
        self._check()
        if not isinstance(txn, WriteTxn):
            raise ProgrammingError("drop_db(): txn must be a WriteTxn")
        txn._drop_db(name)

    def meta_get(self, txn: "lmdb.Transaction | ReadTxn | WriteTxn", key: bytes) -> bytes | None:
        """Read ``key`` from the ``_meta`` sub-database in ``txn``."""
        shared = self._check()
        raw = txn.txn if isinstance(txn, (ReadTxn, WriteTxn)) else txn
        try:
            return raw.get(key, db=shared.meta_db)
        except lmdb.Error as exc:
            raise translate_lmdb_error(exc, "reading metadata") from exc

    def put_node_id(self, txn: "WriteTxn", node_id: bytes) -> None:
        """Store a new node id in ``txn``; ``adopt_node_id`` after the commit makes it current.

        The caller (``Database.set_node_id``) checks that nothing recorded depends on the old one.
        """
        shared = self._check()
        if type(node_id) is not bytes or len(node_id) != 16:
            raise ProgrammingError("a node id is 16 bytes")
        try:
            txn.txn.put(K_NODE_ID, node_id, db=shared.meta_db)
        except lmdb.Error as exc:
            raise translate_lmdb_error(exc, "writing metadata") from exc

    def committed_node_id(self, txn: "WriteTxn") -> bytes:
        """The node id as committed in the database, read in the write ``txn``.

        Another process (``terndb replicate --node-id``) may have set it after
        this one opened the database; a change set stamped with the stale id
        would never be published as this node's own, so commits read it here
        (one B-tree get) and adopt a new one.
        """
        shared = self._check()
        try:
            current = txn.txn.get(K_NODE_ID, db=shared.meta_db)
        except lmdb.Error as exc:
            raise translate_lmdb_error(exc, "reading metadata") from exc
        if current is not None and len(current) == 16 and current != shared.node_id:
            self.adopt_node_id(bytes(current))
        return shared.node_id

    def adopt_node_id(self, node_id: bytes) -> None:
        """Use ``node_id`` (committed by ``put_node_id``) in every handle of this process."""
        self._check().node_id = node_id
        self.node_id = node_id

    def meta_put(self, txn: "WriteTxn | lmdb.Transaction", key: bytes, value: bytes) -> None:
        """Write ``key`` in the ``_meta`` sub-database (``storage.*`` keys are reserved)."""
        shared = self._check()
        if key.startswith(b"storage."):
            raise ProgrammingError("metadata keys starting with 'storage.' are reserved")
        raw = txn.txn if isinstance(txn, WriteTxn) else txn
        try:
            raw.put(key, value, db=shared.meta_db)
        except lmdb.Error as exc:
            raise translate_lmdb_error(exc, "writing metadata") from exc

    # -- transactions -----------------------------------------------------------------------------
    def begin_read(self) -> "ReadTxn":
        """A read snapshot; end it with :meth:`ReadTxn.end` (or use it as a context manager)."""
        shared = self._check()
        shared.enter()
        try:
            return ReadTxn(shared, shared.begin_raw(write=False))
        except BaseException:
            shared.leave()
            raise

    def begin_write(self, timeout: float) -> "WriteTxn":
        """The write transaction, waiting up to ``timeout`` seconds for the current writer."""
        shared = self._check()
        if self._readonly:
            raise ReadOnlyError("attempt to write a readonly database")
        _acquire_write_lock(shared, timeout)
        try:
            shared.enter()
            try:
                if shared.checkpointer is not None:
                    # Counted as open first: a remap (which drops the pin) cannot come
                    # between the pin check and the commit it clears.
                    shared.checkpointer.before_write()
                raw = shared.begin_raw(write=True)
            except BaseException:
                shared.leave()
                raise
        except BaseException:
            _release_write_lock(shared)
            raise
        wtxn = WriteTxn(shared, raw)
        last_id, stamp = shared.last_commit
        if last_id == raw.id() - 1:
            wtxn.own_stamp = stamp
        return wtxn

    def write(self, work: Callable[["WriteTxn"], T], timeout: float, max_grows: int = 8) -> T:
        """Run ``work(wtxn)`` in a write transaction and commit; on a full map, abort, grow
        and run it again (so ``work`` must be safe to redo)."""
        for _ in range(max_grows + 1):
            wtxn = self.begin_write(timeout)
            try:
                result = work(wtxn)
                wtxn.commit()
                return result
            except BaseException as exc:
                wtxn.abort()
                if not is_map_full(exc):
                    raise
            self.grow()
        raise OperationalError("database or disk is full: the map kept filling after growing")

    def grow(self, timeout: float = _RESIZE_WAIT) -> None:
        """Double the map size (at least +64 MiB).

        The caller must have ended its own transactions first (abort the write transaction
        that hit MapFullError); waits up to ``timeout`` for other threads' transactions.
        Other processes adopt the new size when they next begin a transaction.
        """
        shared = self._check()
        current = int(shared.env.info()["map_size"])
        shared.remap(max(2 * current, current + MIN_GROWTH), timeout)

    def reader_check(self) -> int:
        """Free reader slots of dead processes; returns how many were freed."""
        shared = self._check()
        try:
            return int(shared.env.reader_check())
        except lmdb.Error as exc:
            raise translate_lmdb_error(exc, "checking readers") from exc


def _open_writer_mutex(fd: int, timeout: float) -> "C.WriterMutex":
    """The writer mutex in the ``write.lock`` file ``fd``.  Every process that has the
    database open for writing holds a shared flock on the file until it closes; one that
    gets the flock exclusively is alone, and sets the mutex up (as LMDB resets its own lock
    file when its first user opens it)."""
    deadline = time.monotonic() + timeout
    if _try_flock(fd, fcntl.LOCK_EX):
        # No other process has the database open for writing (each holds a shared flock
        # while it does): the mutex in the file is nobody's, so set it up afresh.  One
        # left locked by a process of an earlier boot, or in a copied directory, has an
        # owner the kernel will never report dead and would stay locked for ever.
        try:
            C.init_writer_mutex(fd, True)
        finally:
            _wait_flock(fd, fcntl.LOCK_SH, deadline)    # not atomic: see _wait_flock
    else:
        _wait_flock(fd, fcntl.LOCK_SH, deadline)
    mutex = C.WriterMutex.open(fd)
    if mutex is None:
        raise OperationalError(f"unable to set up the writer lock in {WRITE_LOCK_FILE}")
    return mutex


def _wait_flock(fd: int, kind: int, deadline: float, waiting_for: str = "setting up its writer lock") -> None:
    """Take an flock of ``kind`` on ``fd`` by ``deadline``, polling; DatabaseLockedError
    naming ``waiting_for`` if it stays taken.

    Turning an exclusive flock into a shared one (``_open_writer_mutex``) drops it first, so
    another first opener may take it in between and set the mutex up again; that is harmless
    because this process has not used the mutex yet, and its shared flock waits for the other's.
    """
    step = 0
    while not _try_flock(fd, kind):
        left = deadline - time.monotonic()
        if left <= 0:
            raise DatabaseLockedError(f"database is locked ({waiting_for})")
        time.sleep(min(_LOCK_POLL[min(step, len(_LOCK_POLL) - 1)], left))
        step += 1


def _try_flock(fd: int, kind: int) -> bool:
    """One non-blocking try at an flock of ``kind`` (LOCK_EX or LOCK_SH) on ``fd``."""
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise OperationalError(f"unable to lock the database: {exc}") from exc
    return True


def _acquire_write_lock(shared: _SharedEnv, timeout: float, *, writing: bool = True) -> None:
    """Take the writer lock of this process's threads, then the writer mutex between
    processes, waiting up to ``timeout`` seconds in all.  ``writing=False`` (the checkpoint
    timer) holds it without a write transaction: it is not recorded as this process's
    writer, so a fork meanwhile does not make the database unusable in the child."""
    mutex = shared.writer_mutex
    if mutex is None:
        raise OperationalError("the database's writer lock is closed")
    threads = shared.writer_lock
    # Uncontended (every commit of a lone writer): one try of each, no clock reads.
    if threads.acquire(blocking=False):
        deadline = None
    else:
        deadline = time.monotonic() + timeout
        if not threads.acquire(timeout=max(0.0, timeout)):
            raise DatabaseLockedError("database is locked")
    try:
        taken = mutex.try_acquire()
        if not taken:
            if deadline is None:
                deadline = time.monotonic() + timeout
            taken = mutex.acquire(max(0.0, deadline - time.monotonic()))
    except BaseException:
        threads.release()
        raise
    if not taken:
        threads.release()
        raise DatabaseLockedError("database is locked")
    if writing:
        shared.writer_thread = threading.get_ident()


def _release_write_lock(shared: _SharedEnv) -> None:
    shared.writer_thread = None
    try:
        mutex = shared.writer_mutex
        if mutex is not None:           # None: the environment was closed meanwhile
            mutex.release()
    finally:
        shared.writer_lock.release()


class ReadTxn:
    """A read snapshot.  ``txn`` is the raw ``lmdb.Transaction`` for get/cursor calls."""

    __slots__ = ("txn", "_shared")

    def __init__(self, shared: _SharedEnv, txn: lmdb.Transaction) -> None:
        self.txn = txn
        self._shared: _SharedEnv | None = shared

    def end(self) -> None:
        """End the snapshot (idempotent)."""
        shared = self._shared
        if shared is None:
            return
        self._shared = None
        if shared.pid != _current_pid:
            return
        try:
            self.txn.abort()
        except lmdb.Error:
            pass                        # already invalidated (e.g. env closed): nothing to free
        finally:
            shared.leave()

    abort = end

    def __enter__(self) -> "ReadTxn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def __del__(self) -> None:
        if getattr(self, "_shared", None) is not None:
            self.end()


class WriteTxn:
    """The write transaction and its stack of nested (savepoint) transactions.

    ``txn`` is always the innermost open LMDB transaction: statements write there.  Depths:
    the top level is 0, :meth:`savepoint` returns 1, 2, ...  It must be used on the thread
    that began it.
    """

    __slots__ = ("txn", "_shared", "_stack", "_opened", "_dropped", "_epoch", "_thread", "own_stamp")

    def __init__(self, shared: _SharedEnv, txn: lmdb.Transaction) -> None:
        self.txn = txn
        self._shared: _SharedEnv | None = shared
        self._stack: list[lmdb.Transaction] = [txn]
        # Handles opened in this txn: name -> (depth that opened it, handle).
        self._opened: dict[bytes, tuple[int, object]] = {}
        self._dropped = False
        self._epoch: bytes | None = None
        self._thread = threading.get_ident()
        #: The ``stamp`` this process committed with (see :meth:`commit`) when this
        #: transaction began on exactly that commit's snapshot (nothing written since,
        #: by any process), else None.
        self.own_stamp: object = None

    # -- helpers -------------------------------------------------------------------------------
    def _live(self) -> _SharedEnv:
        shared = self._shared
        if shared is None:
            raise ProgrammingError("the write transaction has already ended")
        if shared.pid != _current_pid:
            raise OperationalError("database opened before fork(); reconnect in the child")
        self.check_thread()
        return shared

    def check_thread(self) -> None:
        """Raise ProgrammingError unless called on the thread that began the transaction
        (every use checks it, see ``_live``).

        LMDB's writer mutex and terndb's belong to the thread that took them: a transaction
        ended on another thread would release neither, locking every writer out.  Checked
        before anything changes, so the owner can still end it.
        """
        if threading.get_ident() != self._thread:
            raise ProgrammingError("a write transaction must be used and ended on the thread that began it")

    @property
    def depth(self) -> int:
        """Depth of the innermost open transaction (0 = top level)."""
        return len(self._stack) - 1

    def _bump_epoch(self, shared: _SharedEnv) -> None:
        current = self.txn.get(K_EPOCH, _ZERO_EPOCH, db=shared.meta_db)
        self._epoch = _EPOCH.pack(_EPOCH.unpack(current)[0] + 1)
        self.txn.put(K_EPOCH, self._epoch, db=shared.meta_db)

    def _open_db(self, name: bytes, create: bool, dupsort: bool, integerkey: bool) -> object:
        shared = self._live()
        known = self._opened.get(name)
        if known is not None:
            return known[1]
        env = shared.env
        with shared.dbi_lock:
            try:
                handle = env.open_db(name, txn=self.txn, create=False,
                                     dupsort=dupsort, integerkey=integerkey)
            except lmdb.NotFoundError as exc:
                if not create:
                    raise NoSuchObjectError(
                        f"no such storage database: {name.decode(errors='replace')}") from exc
                try:
                    handle = env.open_db(name, txn=self.txn, create=True,
                                         dupsort=dupsort, integerkey=integerkey)
                    self._bump_epoch(shared)
                except lmdb.Error as exc2:
                    raise translate_lmdb_error(exc2, "creating a table") from exc2
            except lmdb.Error as exc:
                raise translate_lmdb_error(exc, "opening a table") from exc
            self._opened[name] = (self.depth, handle)
        return handle

    def _drop_db(self, name: bytes) -> None:
        shared = self._live()
        with shared.dbi_lock:
            known = self._opened.get(name)
            handle = known[1] if known else shared.handles.get(name)
            if handle is None:
                handle = self._open_db(name, False, False, False)
            try:
                self.txn.drop(handle, delete=True)
                self._bump_epoch(shared)
            except lmdb.Error as exc:
                raise translate_lmdb_error(exc, "dropping a table") from exc
            # LMDB has closed the handle whatever happens to this txn: forget it everywhere
            # (the commit or abort re-registers handles if the drop is undone).
            self._opened.pop(name, None)
            shared.handles.pop(name, None)
            self._dropped = True

    def _forget_from(self, depth: int) -> None:
        """LMDB closed the handles opened at ``depth`` and deeper: forget them."""
        for name in [n for n, (d, _) in self._opened.items() if d >= depth]:
            del self._opened[name]

    # -- savepoints ----------------------------------------------------------------------------
    def savepoint(self) -> int:
        """Begin a nested transaction; returns its depth."""
        shared = self._shared
        if (shared is None or shared.pid != _current_pid
                or threading.get_ident() != self._thread):
            shared = self._live()       # raises the precise error
        try:
            child = shared.env.begin(write=True, parent=self.txn)
        except lmdb.Error as exc:
            raise translate_lmdb_error(exc, "beginning a savepoint") from exc
        self._stack.append(child)
        self.txn = child
        return len(self._stack) - 1

    def _check_depth(self, depth: int) -> None:
        if not 1 <= depth <= self.depth:
            raise ProgrammingError(f"no savepoint at depth {depth} (open depth is {self.depth})")

    def release(self, depth: int) -> None:
        """Commit the nested transactions at ``depth`` and deeper into their parent."""
        stack = self._stack
        if (self._shared is None or self._shared.pid != _current_pid
                or threading.get_ident() != self._thread):
            self._live()
        if not 1 <= depth < len(stack):
            self._check_depth(depth)
        try:
            while len(stack) > depth:
                stack[-1].commit()
                stack.pop()
                self.txn = stack[-1]
        except lmdb.Error as exc:
            # LMDB aborted the failing child (and its descendants) itself.
            self._forget_from(len(stack) - 1)
            del stack[len(stack) - 1:]
            self.txn = stack[-1]
            raise translate_lmdb_error(exc, "releasing a savepoint") from exc
        if not self._opened:
            return
        for name, (d, handle) in list(self._opened.items()):
            if d >= depth:
                self._opened[name] = (depth - 1, handle)

    def rollback_to(self, depth: int, keep: bool = False) -> None:
        """Abort the nested transactions at ``depth`` and deeper; with ``keep`` open a fresh
        one at ``depth`` again (SQL ROLLBACK TO keeps the savepoint)."""
        stack = self._stack
        if (self._shared is None or self._shared.pid != _current_pid
                or threading.get_ident() != self._thread):
            self._live()
        if not 1 <= depth < len(stack):
            self._check_depth(depth)
        while len(stack) > depth:
            stack.pop().abort()
        self.txn = stack[-1]
        if self._opened:
            self._forget_from(depth)
        if keep:
            self.savepoint()

    # -- ending --------------------------------------------------------------------------------
    def commit(self, stamp: object = None) -> int:
        """Commit every level, make it durable per the store's durability, release the lock;
        returns the transaction's LMDB id (the id of the snapshot it made, if it changed
        anything).

        ``stamp`` (not None) says the caller knows this transaction changed the database
        (LMDB gives an unchanged one no new snapshot id): the next write transaction of
        this process that begins on the snapshot committed here gets it as ``own_stamp``,
        so the caller can keep facts about the committed state (sequence numbers, the
        schema version) instead of reading them again.
        """
        shared = self._live()
        stack = self._stack
        try:
            with shared.dbi_lock:
                commit_id = stack[0].id()
                try:
                    while len(stack) > 1:
                        stack.pop().commit()
                    stack.pop().commit()
                except lmdb.Error as exc:
                    self._abort_levels()
                    raise translate_lmdb_error(exc, "committing") from exc
                # Committed: the handles opened here are now valid for everyone.
                if self._opened:
                    for name, (_, handle) in self._opened.items():
                        shared.handles[name] = handle
                if self._epoch is not None and self._epoch > shared.epoch:
                    shared.epoch = self._epoch
                if stamp is not None:
                    # Published before the write lock is released: the next writer of
                    # this process sees it (or a later commit's).
                    shared.last_commit = (commit_id, stamp)
            checkpointer = shared.checkpointer
            if checkpointer is not None and checkpointer.nosync:
                checkpointer.after_commit()
        finally:
            self._finish(shared)
        return commit_id

    def abort(self) -> None:
        """Abandon every level and release the write lock (idempotent)."""
        shared = self._shared
        if shared is None:
            return
        if shared.pid != _current_pid:
            self._shared = None
            return
        self.check_thread()
        try:
            with shared.dbi_lock:
                self._abort_levels()
        finally:
            self._finish(shared)

    def _abort_levels(self) -> None:
        while self._stack:
            try:
                self._stack.pop().abort()
            except lmdb.Error:
                pass                    # already ended by LMDB: nothing left to undo
        self._opened.clear()

    def _finish(self, shared: _SharedEnv) -> None:
        self._shared = None
        try:
            shared.leave()
            if self._dropped:
                # A drop closed a handle; if the drop was undone (abort, rolled-back
                # savepoint) the database still exists: register it again while no other
                # writer can change the set of databases.
                shared.sync_handles(holding_lock=True)
        finally:
            _release_write_lock(shared)

    def __enter__(self) -> "WriteTxn":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and self._shared is not None:
            self.commit()
        else:
            self.abort()

    def __del__(self) -> None:
        if (getattr(self, "_shared", None) is not None
                and threading.get_ident() == self._thread):
            try:
                self.abort()
            except Error:
                pass
