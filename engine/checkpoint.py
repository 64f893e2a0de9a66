"""Checkpoints: ``durability="normal"`` without an fsync per commit, safe across an OS crash.

The guarantee (the one sqlite3 gives in WAL mode with ``synchronous=NORMAL``): an application
crash loses nothing; an OS crash or power loss may roll the database back to its last
*checkpoint* (at most about :data:`DEFAULT_INTERVAL` seconds of commits), and never corrupts it.

Why LMDB needs help.  With MDB_NOSYNC a commit ``pwrite``s its pages and its meta page and
syncs nothing, so after an OS crash the disk may hold a meta page whose tree pages never
arrived, or were overwritten: LMDB reuses pages freed by older transactions.  Two LMDB facts
(mdb.c 0.9) close the hole:

* pages are copy-on-write: a committed page is never written in place, only reused once freed;
* a page freed by transaction T is reused only when T < the oldest live reader's snapshot
  (``mdb_page_alloc`` stops at freeDB records ``>= mdb_find_oldest``).  So while a read
  transaction holds snapshot S open, no page reachable from S is written again, by any process.

The mechanism.  A *checkpoint*, taken under the writer lock, fsyncs the data file, copies the
committed meta page (snapshot S) into the checkpoint file ``data.ckpt`` beside ``data.mdb``,
and then moves this process's *pin* — a read transaction — to S.  From then on the disk holds
S intact however many unsynced commits follow.  If the OS crashes, the next open sees the
checkpoint file "not clean" with another boot id, and before LMDB maps the file it writes S's
meta page back into both meta slots (the second as txnid S-1): the database is exactly S.
An application crash leaves the boot id unchanged: the page cache holds every commit, so
nothing is restored.

Rules that keep it true with several connections and processes (all under the writer lock):

* a ``normal`` committer commits without fsync only while the file's current checkpoint is
  its own and its pin is live (one generation number compared per commit, read from a mmap);
  otherwise it checkpoints first.  A pin protects S only while its process lives, and only
  the process that wrote the current checkpoint relies on its own pin;
* a ``full`` or ``off`` committer that finds the file "not clean" fsyncs the data file and
  marks it clean first: from then on the data file's own meta pages are the truth again, so
  a ``full`` commit is never rolled back by a later restore (an ``off`` commit keeps its own,
  weaker, documented meaning);
* a commit only hands work to a daemon timer thread, which checkpoints
  :data:`DEFAULT_INTERVAL` after the last checkpoint (so an idle database is durable within
  about a second) or as soon as :data:`DEFAULT_MAX_COMMITS` commits wait.  Its fsync runs
  *without* the writer lock: it pins the new snapshot under the lock, syncs while commits
  go on (the old pin still guards the recorded checkpoint), then records it under the lock
  unless another record came first.  A committer far ahead of the timer checkpoints itself;
  a clean close (and interpreter exit) takes a final checkpoint marked clean.

Cost.  While a snapshot is pinned LMDB reuses no page freed after it, so each commit writes
its copied pages (about 7 for a one-row insert with the binlog) to fresh places instead of
the same few hot pages: on this kind of machine ~30 us per single-insert commit against
~18 us with ``off``, and the file keeps about two checkpoints' worth of pages in reserve.

The checkpoint file has two 4 KiB slots written alternately, each with a generation number
and a CRC-32, each ``fdatasync``'d before the pin moves: a torn write leaves the other slot,
whose snapshot is still pinned.  Both slots damaged raises :class:`CorruptDatabaseError`.

Platforms.  The boot id comes from ``/proc/sys/kernel/random/boot_id`` (Linux).  Where it is
missing ``normal`` keeps LMDB's MDB_NOMETASYNC (data pages fsync'd at every commit), see
:mod:`storage`.  The environment variable ``TERNDB_BOOT_ID`` overrides the boot id: a test hook
to simulate a reboot.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import mmap
import os
import struct
import threading
import time
import uuid
import weakref
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

import lmdb

from .._cext import _core as C
from .errors import CorruptDatabaseError, DatabaseLockedError, Error, OperationalError
from .storage import (
    CHECKPOINT_FILE, DATA_FILE, LMDB_DATA_FORMAT, WRITE_LOCK_FILE, _META_SPAN, _TAIL_SLACK_PAGES, _U64,
    _parse_meta, _wait_flock, translate_lmdb_error,
)

__all__ = ["CHECKPOINT_FILE", "DEFAULT_INTERVAL", "Checkpointer", "boot_id", "recover",
           "nosync_supported"]

#: Seconds between checkpoints while commits keep coming (and the idle timer's delay).
DEFAULT_INTERVAL = 1.0
#: Commits between checkpoints at most.  While S is pinned LMDB reuses no page freed since,
#: so every commit appends its pages to the file; this bounds that growth (sqlite3 likewise
#: checkpoints its WAL every 1000 pages).
DEFAULT_MAX_COMMITS = 1000
# A committer checkpoints itself once this many times max_commits wait for the timer.
_BACKLOG = 4
# How long the timer's checkpoint waits for the writer lock to record a synced snapshot.
_RECORD_WAIT = 5.0
BOOT_ID_ENV = "TERNDB_BOOT_ID"
_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

# A meta page of LMDB 0.9 (data format 1): 16-byte page header, then MDB_meta.
_META_HDR = 16
_META_BYTES = _META_HDR + _META_SPAN
_TXNID_AT = _META_HDR + _META_SPAN - 8          # mm_txnid is MDB_meta's last field
assert LMDB_DATA_FORMAT == 1, "meta-page offsets here are LMDB 0.9's"

# One slot: magic, generation, format version, flags, page size, txnid, boot id, meta length,
# meta bytes; then a CRC-32 of all that.  The generation sits at a fixed offset: it is what
# the per-commit check reads.
_SLOT_SIZE = 4096
_MAGIC = b"TERNCKPT"
_VERSION = 1
_SLOT = struct.Struct("<8sQHHIQ16sH200s")
_CRC = struct.Struct("<I")
_GEN_AT = 8
_FILE_SIZE = 2 * _SLOT_SIZE
_CLEAN = 1


@dataclass(frozen=True)
class _State:
    """One checkpoint record: the snapshot S to restore, unless ``clean``."""

    generation: int
    clean: bool
    txnid: int
    page_size: int
    boot: bytes
    meta: bytes


# --------------------------------------------------------------------------------------------
# Boot id

_real_boot_id: bytes | None = None


def boot_id() -> bytes | None:
    """This boot's id (16 bytes), ``TERNDB_BOOT_ID`` if set; None where the OS has none."""
    override = os.environ.get(BOOT_ID_ENV)
    if override:
        return uuid.uuid5(uuid.NAMESPACE_OID, override).bytes
    global _real_boot_id
    if _real_boot_id is None:
        try:
            with open(_BOOT_ID_PATH, encoding="ascii") as f:
                _real_boot_id = uuid.UUID(f.read().strip()).bytes
        except (OSError, ValueError):
            return None
    return _real_boot_id


def nosync_supported() -> bool:
    """True if ``normal`` can run on checkpoints here (the OS tells reboots apart)."""
    return boot_id() is not None


# --------------------------------------------------------------------------------------------
# The checkpoint file

def _encode(state: _State) -> bytes:
    body = _SLOT.pack(_MAGIC, state.generation, _VERSION, _CLEAN if state.clean else 0,
                      state.page_size, state.txnid, state.boot, len(state.meta), state.meta)
    return (body + _CRC.pack(zlib.crc32(body))).ljust(_SLOT_SIZE, b"\0")


class _DamagedSlot(Exception):
    """A slot that is neither empty nor a valid record (torn write or outside damage)."""


def _decode(raw: bytes) -> _State | None:
    """The slot's record, None for a never-written slot; raises _DamagedSlot."""
    if not any(raw):
        return None
    end = _SLOT.size
    if len(raw) < end + _CRC.size or _CRC.unpack_from(raw, end)[0] != zlib.crc32(raw[:end]):
        raise _DamagedSlot
    magic, gen, version, flags, psize, txnid, boot, meta_len, meta = _SLOT.unpack_from(raw)
    if magic != _MAGIC or version != _VERSION or meta_len != _META_BYTES:
        raise _DamagedSlot
    return _State(gen, bool(flags & _CLEAN), txnid, psize, boot, meta[:meta_len])


def _read_state(fd: int, path: str) -> _State | None:
    """The newest valid record; None if the file was never written (a clean database)."""
    states, damaged = [], 0
    for slot in (0, 1):
        try:
            state = _decode(os.pread(fd, _SLOT_SIZE, slot * _SLOT_SIZE))
        except _DamagedSlot:
            damaged += 1
            continue
        if state is not None:
            states.append(state)
    if states:
        return max(states, key=lambda s: s.generation)
    if damaged:
        raise CorruptDatabaseError(
            f"{path} is damaged (both checkpoint records are unreadable), so whether the "
            f"database needs crash recovery is unknown.  If the OS has not crashed since the "
            f"database was last used, delete {path}; otherwise restore a backup")
    return None


def _write_state(fd: int, state: _State) -> None:
    """Write the record into its slot (generation parity) and make it durable."""
    os.pwrite(fd, _encode(state), (state.generation % 2) * _SLOT_SIZE)
    os.fdatasync(fd)


def _open_checkpoint_file(directory: str) -> int:
    """Open (creating, durably) the checkpoint file read-write; all-zero means clean."""
    path = os.path.join(directory, CHECKPOINT_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # Its directory entry must be on disk before any unsynced commit relies on the file.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    try:
        if os.fstat(fd).st_size < _FILE_SIZE:
            os.ftruncate(fd, _FILE_SIZE)    # zero slots: "never written"; idempotent
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


# --------------------------------------------------------------------------------------------
# The data file's meta pages

def _read_meta(data_fd: int, slot: int, page_size: int) -> bytes:
    return os.pread(data_fd, _META_BYTES, slot * page_size)


def _txnid(meta: bytes) -> int:
    return _U64.unpack_from(meta, _TXNID_AT)[0]


def _committed_meta(data_fd: int) -> tuple[bytes, int]:
    """The raw bytes of the newest meta page and the page size (the file must be sound)."""
    first = _read_meta(data_fd, 0, 0)
    page_size = _parse_meta(first, _META_HDR, LMDB_DATA_FORMAT, "meta page 0")[0]
    second = _read_meta(data_fd, 1, page_size)
    _parse_meta(second, _META_HDR, LMDB_DATA_FORMAT, "meta page 1")
    return (second if _txnid(second) > _txnid(first) else first), page_size


def _meta_as(meta: bytes, slot: int, txnid: int) -> bytes:
    """A copy of a meta page for meta slot ``slot`` (its page number) with ``txnid``."""
    copy = bytearray(meta)
    _U64.pack_into(copy, 0, slot)               # mp_pgno
    _U64.pack_into(copy, _TXNID_AT, txnid)
    return bytes(copy)


# --------------------------------------------------------------------------------------------
# Recovery at open

def recover(directory: str, timeout: float) -> None:
    """Before LMDB maps ``directory``'s data file: restore the last checkpoint if the OS
    restarted since a ``normal`` writer left it unclean.  A no-op in every other case."""
    path = os.path.join(directory, CHECKPOINT_FILE)
    state = _peek(path)
    if not _needs_restore(state, path):
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        data_fd = os.open(os.path.join(directory, DATA_FILE), os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise OperationalError(
            f"{directory} needs crash recovery (the OS restarted while it was being written), "
            f"which writes to its files: {exc}; open it once read-write") from exc
    try:
        with _recovery_lock(directory, timeout) as lock_fd:
            state = _read_state(fd, path)           # another process may have recovered it
            if _needs_restore(state, path):
                assert state is not None
                # Holding write.lock exclusively, no process has the database open for
                # writing: set the writer mutex up afresh now, since one left locked by the
                # crashed boot would otherwise survive in a process that opens meanwhile.
                C.init_writer_mutex(lock_fd, True)
                _restore_metas(data_fd, state, directory)
                _write_state(fd, _State(state.generation + 1, True, state.txnid,
                                        state.page_size, boot_id() or b"", state.meta))
    except OSError as exc:
        raise OperationalError(f"crash recovery of {directory} failed: {exc}") from exc
    finally:
        os.close(data_fd)
        os.close(fd)


def _peek(path: str) -> _State | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OperationalError(f"unable to read {path}: {exc}") from exc
    try:
        return _read_state(fd, path)
    finally:
        os.close(fd)


def _needs_restore(state: _State | None, path: str) -> bool:
    if state is None or state.clean:
        return False
    current = boot_id()
    if current is None:
        raise OperationalError(
            f"{path} says the database was not closed cleanly, and this OS gives no boot id "
            f"to tell whether it restarted since; set {BOOT_ID_ENV} or open it on Linux")
    return state.boot != current


class _recovery_lock:
    """``with _recovery_lock(dir, t) as fd:`` holds write.lock's flock exclusively: no other
    process has the database open for writing (each holds it shared) or recovers meanwhile."""

    def __init__(self, directory: str, timeout: float) -> None:
        self._path = os.path.join(directory, WRITE_LOCK_FILE)
        self._deadline = time.monotonic() + max(0.0, timeout)
        self._fd = -1

    def __enter__(self) -> int:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _wait_flock(self._fd, fcntl.LOCK_EX, self._deadline, "crash recovery is waiting")
        except BaseException:
            os.close(self._fd)
            raise
        return self._fd

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)                      # releases the flock


def _restore_metas(data_fd: int, state: _State, directory: str) -> None:
    """Write snapshot S's meta page into both meta slots after checking S is plausible."""
    what = f"{directory}: the checkpoint"
    psize, _, free_root, main_root, last_page, txnid = _parse_meta(
        state.meta, _META_HDR, LMDB_DATA_FORMAT, f"{what} record")
    if psize != state.page_size or txnid != state.txnid or txnid < 1:
        raise CorruptDatabaseError(f"{what} record is inconsistent; not restoring it")
    pages = os.fstat(data_fd).st_size // psize
    # S was fsync'd before it was recorded: its pages are all in the file.
    if last_page + 1 > pages + _TAIL_SLACK_PAGES or any(
            root != 2**64 - 1 and root >= pages for root in (free_root, main_root)):
        raise CorruptDatabaseError(
            f"{what} (txn {txnid}) refers to pages past the end of {DATA_FILE}: the file was "
            f"truncated or replaced; not restoring it")
    newest = -1
    for slot in (0, 1):
        raw = _read_meta(data_fd, slot, psize)
        try:
            on_disk = _parse_meta(raw, _META_HDR, LMDB_DATA_FORMAT, "meta")
        except CorruptDatabaseError:
            continue                            # a torn meta page: what the restore repairs
        if on_disk[0] != psize:
            raise CorruptDatabaseError(
                f"{what} was taken with page size {psize}, {DATA_FILE} has {on_disk[0]}: "
                f"they belong to different databases; not restoring it")
        if on_disk[5] == txnid and raw != state.meta:
            raise CorruptDatabaseError(
                f"{what} (txn {txnid}) differs from {DATA_FILE}'s own txn {txnid}: they "
                f"belong to different databases; not restoring it")
        newest = max(newest, on_disk[5])
    if 0 <= newest < txnid:
        raise CorruptDatabaseError(
            f"{DATA_FILE} in {directory} (txn {newest}) is older than its checkpoint "
            f"(txn {txnid}): it was replaced (restored from a backup?).  If so, delete "
            f"{CHECKPOINT_FILE}; not restoring it")
    current_slot = txnid % 2
    os.pwrite(data_fd, state.meta, current_slot * psize)
    os.pwrite(data_fd, _meta_as(state.meta, 1 - current_slot, txnid - 1),
              (1 - current_slot) * psize)
    os.fsync(data_fd)


# --------------------------------------------------------------------------------------------
# The per-environment checkpointer

def _drop(pin: lmdb.Transaction | None) -> None:
    """End a pin (it may have been invalidated by a remap already)."""
    if pin is not None:
        try:
            pin.abort()
        except lmdb.Error:
            pass

_live: "weakref.WeakSet[Checkpointer]" = weakref.WeakSet()


class Checkpointer:
    """The checkpoint protocol of one open, writable environment of this process.

    ``nosync``: the environment commits without fsync (``normal``); it checkpoints and pins.
    Otherwise (``full``/``off``) it only marks an unclean file clean before writing.
    ``lock(timeout)`` / ``unlock()`` take and release the terndb writer lock; ``enter`` /
    ``leave`` count an LMDB call against remaps (see ``storage._SharedEnv``).  Every method
    except :meth:`close` and the timer runs with the writer lock held by the caller.
    """

    def __init__(self, env: lmdb.Environment, directory: str, nosync: bool,
                 lock: Callable[[float], None], unlock: Callable[[], None],
                 enter: Callable[[], None], leave: Callable[[], None],
                 interval: float | None = None) -> None:
        self.nosync = nosync
        self.interval = DEFAULT_INTERVAL if interval is None else interval
        self.max_commits = DEFAULT_MAX_COMMITS
        self._env = env
        self._path = os.path.join(directory, CHECKPOINT_FILE)
        self._lock, self._unlock, self._enter, self._leave = lock, unlock, enter, leave
        try:
            self._fd = _open_checkpoint_file(directory)
        except OSError as exc:
            raise OperationalError(f"unable to open {self._path}: {exc}") from exc
        try:
            self._data_fd = os.open(os.path.join(directory, DATA_FILE), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            os.close(self._fd)
            raise OperationalError(f"unable to open {DATA_FILE} in {directory}: {exc}") from exc
        self._map = mmap.mmap(self._fd, _FILE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        self._boot = boot_id() or b""
        self._seen = -1                 # file generation known to be fine for us
        self._pin: lmdb.Transaction | None = None
        self._last = time.monotonic()
        self._dirty = False             # a commit since the last checkpoint
        self._commits = 0               # commits since the last checkpoint
        self._failed: BaseException | None = None
        self._pin_epoch = 0             # bumped when a remap drops the pins
        self._wake = threading.Event()  # set: commits wait for a checkpoint
        self._kick = threading.Event()  # set: one is due now (commit count)
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._closed = False
        self._pid = os.getpid()
        _live.add(self)

    # -- the per-commit hooks -------------------------------------------------------------------
    def _generation(self) -> int:
        m = self._map
        return max(_U64.unpack_from(m, _GEN_AT)[0], _U64.unpack_from(m, _SLOT_SIZE + _GEN_AT)[0])

    def before_write(self) -> None:
        """Before a write transaction begins: make the next commit safe (see the module doc)."""
        if self._generation() == self._seen and (self._pin is not None or not self.nosync):
            return
        if self._failed is not None:
            raise OperationalError(
                f"a checkpoint failed earlier ({self._failed}); the database refuses writes "
                f"until it is reopened") from self._failed
        self._enter()
        try:
            if self.nosync:
                self._checkpoint(clean=False)
            else:
                state = _read_state(self._fd, self._path)
                if state is not None and not state.clean:
                    self._checkpoint(clean=True)
                else:
                    self._seen = state.generation if state is not None else 0
        finally:
            self._leave()

    def after_commit(self) -> None:
        """After a ``normal`` commit, still counted as an open transaction and holding the
        writer lock: hand the checkpoint to the timer thread, or take it here if the timer
        fell far behind (bounding the file's growth)."""
        self._commits += 1
        if self._commits >= _BACKLOG * self.max_commits:
            # The committing transaction is still counted open, which holds remaps off.
            try:
                self._checkpoint(clean=False)
            except Error:
                pass                    # recorded by _fail: the next write reports it
            return
        self._dirty = True
        if not self._wake.is_set():
            self._wake.set()
            if self._timer is None:
                self._start_timer()
        if self._commits >= self.max_commits and not self._kick.is_set():
            self._kick.set()

    def pin_lost(self) -> None:
        """py-lmdb invalidated every transaction (a remap): the pins are gone."""
        self._pin = None
        self._pin_epoch += 1

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Take a checkpoint now (the caller holds the writer lock)."""
        self._enter()
        try:
            self._checkpoint(clean=not self.nosync)
        finally:
            self._leave()

    def _checkpoint(self, clean: bool) -> None:
        """A whole checkpoint under the writer lock (or a clean mark, without a pin)."""
        with self._failing():
            self._env.sync(True)
            pin, meta, page_size = self._snapshot(pinned=not clean)
            try:
                self._record(clean, pin, meta, page_size, self._commits)
            except BaseException:
                _drop(pin)
                raise

    def _background_checkpoint(self) -> bool:
        """The timer's checkpoint: the data fsync runs *without* the writer lock, so commits
        go on meanwhile (the old pin protects the old checkpoint, the new pin the new one).
        False if the writer lock stayed busy."""
        try:
            self._lock(0.05)
        except DatabaseLockedError:
            return False
        try:
            if self._closed or self._failed is not None or not self._dirty:
                return True
            if self._generation() != self._seen:
                # Another writer's record came later and synced our commits; our next
                # write checkpoints before it commits.
                self._dirty = False
                return True
            self._enter()
            try:
                if self._pin is None:   # a remap dropped it: a plain checkpoint
                    self._checkpoint(clean=False)
                    return True
                expected, epoch, covered = self._seen, self._pin_epoch, self._commits
                with self._failing():
                    pin, meta, page_size = self._snapshot(pinned=True)
            finally:
                self._leave()
        except Error:
            return True                 # recorded by _fail: the next write reports it
        finally:
            self._unlock()
        try:
            self._enter()
            try:
                with self._failing():
                    self._env.sync(True)
            finally:
                self._leave()
            self._lock(float(_RECORD_WAIT))
            try:
                # Counted as open before the checks: a remap (which ends every pin) cannot
                # come between them and the record.
                self._enter()
                try:
                    # Someone else wrote a record (or a remap dropped the pins) meanwhile:
                    # theirs stands, and our next write checkpoints if it needs to.
                    if (self._closed or self._seen != expected
                            or self._generation() != expected or self._pin_epoch != epoch):
                        _drop(pin)
                        pin = None
                        return True
                    with self._failing():
                        self._record(False, pin, meta, page_size, covered)
                finally:
                    self._leave()
                pin = None
            finally:
                self._unlock()
        except Error:
            pass                        # recorded by _fail, or the lock stayed busy
        finally:
            if pin is not None:
                _drop(pin)
        return True

    def _snapshot(self, pinned: bool) -> tuple[lmdb.Transaction | None, bytes, int]:
        """Under the writer lock: the committed meta page, and a read txn pinning it."""
        meta, page_size = _committed_meta(self._data_fd)
        pin = self._env.begin() if pinned else None
        if pin is not None and pin.id() != _txnid(meta):
            _drop(pin)
            raise OperationalError(
                f"checkpoint: the data file's meta page (txn {_txnid(meta)}) is not the "
                f"latest snapshot (txn {pin.id()})")
        return pin, meta, page_size

    def _record(self, clean: bool, pin: lmdb.Transaction | None, meta: bytes,
                page_size: int, covered: int) -> None:
        """Under the writer lock, the data file synced past the snapshot: write the record,
        then move the pin (only now may LMDB reuse the old checkpoint's pages)."""
        current = _read_state(self._fd, self._path)
        generation = (current.generation if current is not None else 0) + 1
        _write_state(self._fd, _State(generation, clean, _txnid(meta), page_size,
                                      self._boot, meta))
        old, self._pin = self._pin, pin
        _drop(old)
        self._seen = generation
        self._last = time.monotonic()
        self._commits = max(0, self._commits - covered)
        self._dirty = self._commits > 0

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """Translate a checkpoint's failure and record it (see :meth:`_fail`)."""
        try:
            yield
        except lmdb.Error as exc:
            raise self._fail(exc, translate_lmdb_error(exc, "checkpoint")) from exc
        except OSError as exc:
            raise self._fail(exc, OperationalError(
                f"checkpoint failed: disk I/O error ({exc})")) from exc
        except Error as exc:
            raise self._fail(exc, exc)

    def _fail(self, cause: BaseException, error: Error) -> Error:
        """Record a failed checkpoint: writes stop until the database is reopened.

        After a failed fsync the kernel may have dropped the dirty pages it could not write,
        so nothing unsynced can be trusted any more (the older checkpoint, still pinned,
        stays the one an OS crash restores).
        """
        self._failed = cause
        self._seen = -2                 # off the fast path: before_write reports it
        return error

    # -- the timer thread -----------------------------------------------------------------------
    def _start_timer(self) -> None:
        self._timer = threading.Thread(target=self._run_timer, name="terndb-checkpoint",
                                       daemon=True)
        self._timer.start()

    def _run_timer(self) -> None:
        while True:
            self._wake.wait()           # commits are waiting for a checkpoint
            if self._stop.is_set():
                return
            delay = self._last + self.interval - time.monotonic()
            if delay > 0 and self._commits < self.max_commits:
                self._kick.wait(delay)  # due by time, or kicked by the commit count
                self._kick.clear()
                continue
            self._wake.clear()
            self._kick.clear()
            if self._dirty and not self._background_checkpoint():
                self._wake.set()        # the writer lock was busy: try again shortly
                self._stop.wait(0.01)

    def _try_checkpoint(self, timeout: float, clean: bool) -> bool:
        """Checkpoint under the writer lock if it is free within ``timeout``."""
        try:
            self._lock(timeout)
        except DatabaseLockedError:
            return False
        try:
            if not self._closed and self.nosync and self._failed is None:
                self._enter()
                try:
                    self._checkpoint(clean)
                finally:
                    self._leave()
            return True
        except Error:
            return True                 # recorded by _fail: the next write reports it
        finally:
            self._unlock()

    # -- closing --------------------------------------------------------------------------------
    def close(self, timeout: float) -> None:
        """Stop the timer; for ``normal``, a final checkpoint marked clean, then drop the pin.

        If another process holds the writer lock past ``timeout`` the file stays unclean,
        which is safe: its next commit checkpoints first.
        """
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        self._kick.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join()
        error: BaseException | None = None
        try:
            if self.nosync and self._failed is None:
                self._lock(timeout)
                try:
                    self._enter()
                    try:
                        self._checkpoint(clean=True)
                    finally:
                        self._leave()
                finally:
                    self._unlock()
        except DatabaseLockedError:
            pass
        except Error as exc:
            error = exc
        finally:
            self._closed = True
            _live.discard(self)
            _drop(self._pin)
            self._pin = None
            self._map.close()
            os.close(self._data_fd)
            os.close(self._fd)
        if error is not None:
            raise error

    def forget_inherited(self) -> None:
        """In a process forked from the one that opened it: let go of everything without
        touching the database.  The pin is the parent's reader slot: ending it here would
        unpin the parent's checkpoint, so py-lmdb is made to forget it instead."""
        if self._closed:
            return
        self._closed = True
        _live.discard(self)
        if self._pin is not None:
            C.lmdb_c_forget_txn(self._pin)
            self._pin = None
        self._map.close()
        os.close(self._data_fd)
        os.close(self._fd)

    def _at_exit(self) -> None:
        """Interpreter exit without close(): a best-effort final checkpoint."""
        if self._pid != os.getpid():
            self.forget_inherited()     # a forked child exiting: the parent's to keep
            return
        if self._closed or not self.nosync or self._failed is not None:
            return
        self._stop.set()
        self._wake.set()
        self._kick.set()
        self._try_checkpoint(timeout=0.5, clean=True)


@atexit.register
def _checkpoint_all_at_exit() -> None:
    for checkpointer in list(_live):
        try:
            checkpointer._at_exit()
        except Exception:
            pass                        # exiting anyway: the last checkpoint still stands
