"""A database opened in this process: storage, catalog, binlog and clock, shared by sessions.

One ``Database`` exists per (process, directory); every connection to the
same path shares it, because LMDB forbids opening one environment twice in a
process.  ``:memory:`` databases get a private temporary directory that is
removed when the last session closes.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import uuid
from typing import Any

from .binlog import Binlog
from .catalog import Catalog, Schema
from .errors import OperationalError, ProgrammingError
from .hlc import HLC
from .storage import Durability, Store

_REGISTRY: dict[tuple[int, str], "Database"] = {}
_LOCK = threading.Lock()
# Releases asked for by finalizers that found _LOCK taken (see Database.release); whoever
# holds the lock performs them before letting go.  list.append/pop are atomic under the GIL.
_PENDING_RELEASES: list["Database"] = []
BINLOG_DB = b"_binlog"

DURABILITY_NAMES = {"full": Durability.FULL, "normal": Durability.NORMAL, "off": Durability.OFF}


def parse_durability(value: Any) -> Durability:
    if isinstance(value, Durability):
        return value
    try:
        return DURABILITY_NAMES[str(value).lower()]
    except KeyError:
        raise ProgrammingError(f"durability must be one of full, normal, off (got {value!r})") from None


_NODE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,16}$")
_HEX_ID = re.compile(r"^[0-9a-fA-F]{32}$")


def parse_node_id(value: Any) -> bytes:
    """A node id given by the user as the 16 bytes stored.

    Accepted: 16 bytes, a ``uuid.UUID``, 32 hex digits (dashes allowed, as in
    a UUID), or a name of 1-16 characters from ``A-Z a-z 0-9 . _ : -``
    (stored as its ASCII bytes padded with NUL; ``node_label`` shows it back).
    The all-zero id is reserved (it marks unversioned data).
    """
    if isinstance(value, uuid.UUID):
        raw = value.bytes
    elif isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        if len(raw) != 16:
            raise ProgrammingError(f"node_id as bytes must be 16 bytes long, not {len(raw)}")
    elif isinstance(value, str):
        text = value.strip()
        if _HEX_ID.match(text.replace("-", "")) and (len(text) == 32 or len(text) == 36):
            raw = bytes.fromhex(text.replace("-", ""))
        elif _NODE_NAME.match(text):
            raw = text.encode("ascii").ljust(16, b"\0")
        else:
            raise ProgrammingError(
                f"invalid node_id {value!r}: use a name of 1-16 characters from A-Z a-z 0-9 . _ : -, "
                "32 hex digits or a UUID")
    else:
        raise ProgrammingError(f"node_id must be a str, bytes or uuid.UUID, not {type(value).__name__}")
    if raw == bytes(16):
        raise ProgrammingError("node_id must not be all zeros (reserved)")
    return raw


def node_label(node_id: bytes) -> str:
    """A node id for people: the name it was set from, else its hex."""
    name = node_id.rstrip(b"\0")
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        return node_id.hex()
    return text if _NODE_NAME.match(text) and b"\0" not in name else node_id.hex()


def _release_for_finalizer(db: "Database") -> None:
    """A queued finalizer's release.  Its errors stay with it, as a finalizer's own
    would: they must not surface from the unrelated open() or release() running it."""
    try:
        db._release_locked()
    except Exception:
        pass


class _RegistryLock:
    """``with _RegistryLock():`` holds _LOCK and, on the way out, performs the releases
    finalizers queued meanwhile (``Database.release(finalizing=True)``)."""

    def __enter__(self) -> None:
        _LOCK.acquire()

    def __exit__(self, *exc: object) -> None:
        self.leave()

    @staticmethod
    def leave() -> None:
        """Performs pending releases, then lets go of _LOCK (which the caller holds)."""
        while True:
            try:
                while _PENDING_RELEASES:
                    _release_for_finalizer(_PENDING_RELEASES.pop())
            finally:
                _LOCK.release()
            # A finalizer on another thread may have queued after the loop and found the
            # lock still taken: take it again to perform that release rather than leave it.
            if not _PENDING_RELEASES or not _LOCK.acquire(blocking=False):
                return


class Database:
    def __init__(self, path: str, store: Store, temporary: bool) -> None:
        self.path = path
        self.store = store
        self.temporary = temporary
        self.catalog = Catalog(store)
        self.binlog = Binlog(store.env, self._binlog_db(store))
        self.hlc = HLC()
        self.node_id = store.node_id
        self.refs = 0
        # Called as hook(session, write_txn, binlog_seq) inside every committing
        # write transaction that captured changes (see Session.commit).
        self.commit_hooks: list = []
        self._schema: Schema | None = None
        self._schema_lock = threading.Lock()

    @staticmethod
    def _binlog_db(store: Store) -> Any:
        from .errors import NoSuchObjectError
        try:
            return store.db(BINLOG_DB)
        except NoSuchObjectError:
            if store.readonly:
                return None
        return store.write(lambda w: store.db(BINLOG_DB, txn=w, create=True), timeout=30.0)

    @classmethod
    def open(cls, path: str, *, map_size: int | None = None, readonly: bool = False,
             durability: Any = "full") -> "Database":
        temporary = path == ":memory:" or path == ""
        if temporary:
            real = tempfile.mkdtemp(prefix="terndb-mem-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        else:
            real = os.path.realpath(os.fspath(path))
        key = (os.getpid(), real)
        with _RegistryLock():
            db = _REGISTRY.get(key)
            if db is None:
                store = Store.open(real, map_size=map_size, readonly=readonly,
                                   durability=parse_durability(durability))
                db = cls(real, store, temporary)
                _REGISTRY[key] = db
            db.refs += 1
            return db

    def release(self, *, finalizing: bool = False) -> None:
        """Drop one reference; the last one closes the store.

        ``finalizing``: the caller is a ``__del__``.  A finalizer can run inside open() or
        release() on this very thread (a garbage collection triggered while the lock is
        held, e.g. by Store.open's allocations), where waiting for the lock would deadlock;
        it then leaves the release to the lock's holder, which performs it on the way out.
        """
        if finalizing:
            _PENDING_RELEASES.append(self)
            if _LOCK.acquire(blocking=False):
                _RegistryLock.leave()
            return
        with _RegistryLock():
            self._release_locked()

    def _release_locked(self) -> None:
        self.refs -= 1
        if self.refs > 0:
            return
        _REGISTRY.pop((os.getpid(), self.path), None)
        # Closed under the lock: Store's own registry lock is then only ever taken inside
        # this one, so a finalizer can never hold the one while waiting for the other.
        self.store.close()
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)

    def set_node_id(self, value: Any) -> None:
        """Give this database the node id ``value`` (see ``parse_node_id``), persisted.

        Replication identifies a node's change sets, per-origin sequences and
        version registers by the id, so it may only change while the database
        has no change set yet (a new database, or one that never wrote):
        afterwards a different id raises ProgrammingError and the same id is a
        no-op.  Set it on the first connect; other processes that already have
        the database open keep the id they read.
        """
        node = parse_node_id(value)
        if node == self.node_id:
            return
        if self.store.readonly:
            raise ProgrammingError("cannot set the node id of a database opened read-only")

        def work(w: Any) -> None:
            if self.binlog.last_sequence(w.txn):
                raise ProgrammingError(
                    f"database {self.path} already wrote change sets as node {node_label(self.node_id)}; "
                    f"changing its node id to {node_label(node)} would break replication convergence")
            self.store.put_node_id(w, node)
        self.store.write(work, timeout=30.0)
        self.store.adopt_node_id(node)
        self.node_id = node

    def committed_schema(self, txn: Any) -> Schema:
        """The schema as committed in ``txn`` (a read txn or a write txn without own DDL)."""
        version = self.catalog.version(txn)
        cached = self._schema
        if cached is not None and cached.version == version:
            return cached
        schema = self.catalog.load(txn)
        with self._schema_lock:
            if self._schema is None or self._schema.version <= schema.version:
                self._schema = schema
        return schema

    def check_open(self) -> None:
        if self.refs <= 0:
            raise OperationalError("database is closed")
