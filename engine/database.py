"""A database opened in this process: storage, catalog, binlog and clock, shared by sessions.

One ``Database`` exists per (process, directory); every connection to the
same path shares it, because LMDB forbids opening one environment twice in a
process.  ``:memory:`` databases get a private temporary directory that is
removed when the last session closes.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Any

from .binlog import Binlog
from .catalog import Catalog, Schema
from .errors import OperationalError, ProgrammingError
from .hlc import HLC
from .storage import Durability, Store

_REGISTRY: dict[tuple[int, str], "Database"] = {}
_LOCK = threading.Lock()
BINLOG_DB = b"_binlog"

DURABILITY_NAMES = {"full": Durability.FULL, "normal": Durability.NORMAL, "off": Durability.OFF}


def parse_durability(value: Any) -> Durability:
    if isinstance(value, Durability):
        return value
    try:
        return DURABILITY_NAMES[str(value).lower()]
    except KeyError:
        raise ProgrammingError(f"durability must be one of full, normal, off (got {value!r})") from None


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
        with _LOCK:
            db = _REGISTRY.get(key)
            if db is None:
                store = Store.open(real, map_size=map_size, readonly=readonly,
                                   durability=parse_durability(durability))
                db = cls(real, store, temporary)
                _REGISTRY[key] = db
            db.refs += 1
            return db

    def release(self) -> None:
        with _LOCK:
            self.refs -= 1
            if self.refs > 0:
                return
            _REGISTRY.pop((os.getpid(), self.path), None)
        self.store.close()
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)

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
