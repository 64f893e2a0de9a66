"""Tests of the LMDB storage layer (terndb.engine.storage): lifecycle, validation, locking,
snapshots, savepoints, sub-database handles, map growth and fork safety.

Every wait is bounded: threads and processes are joined with timeouts, so a hang fails a
test within seconds instead of stalling the suite.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
import time

import lmdb
import pytest

from terndb.engine.errors import (
    CorruptDatabaseError,
    DatabaseLockedError,
    NoSuchObjectError,
    OperationalError,
    ProgrammingError,
    ReadOnlyError,
)
from terndb.engine.checkpoint import nosync_supported
from terndb.engine.storage import (
    DEFAULT_MAP_SIZE,
    Durability,
    Store,
    WriteTxn,
    is_map_full,
    translate_lmdb_error,
)

SPAWN = multiprocessing.get_context("spawn")
JOIN = 20.0          # generous bound for a spawned interpreter to start, work and exit


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "db")


@pytest.fixture
def store(path):
    s = Store.open(path)
    yield s
    s.close()


def put_rows(store: Store, table: bytes, rows: dict[bytes, bytes], timeout: float = 2.0) -> None:
    with store.begin_write(timeout) as w:
        db = store.db(table, w, create=True)
        for k, v in rows.items():
            w.txn.put(k, v, db=db)


def read_all(store: Store, table: bytes) -> dict[bytes, bytes]:
    with store.begin_read() as r:
        return dict(r.txn.cursor(db=store.db(table)))


# ---------------------------------------------------------------------------------------------
# Creation, sharing, metadata

def test_new_database_is_small_on_disk_with_a_huge_map(store, path):
    assert store.map_size == DEFAULT_MAP_SIZE
    # data.ckpt: the checkpoint record (two 4 KiB slots) where the OS has a boot id.
    assert sorted(os.listdir(path)) in (["data.ckpt", "data.mdb", "lock.mdb", "write.lock"],
                                        ["data.mdb", "lock.mdb", "write.lock"])
    st = os.stat(os.path.join(path, "data.mdb"))
    assert st.st_size < 1 << 20 and st.st_blocks * 512 < 1 << 20
    put_rows(store, b"t", {b"%06d" % i: b"x" * 100 for i in range(2000)})
    assert os.path.getsize(os.path.join(path, "data.mdb")) < 4 << 20


def test_registry_shares_one_environment_and_refcounts(path):
    a = Store.open(path)
    b = Store.open(path + "/")              # same realpath
    assert a is not b and a.env is b.env and a.node_id == b.node_id
    put_rows(a, b"t", {b"k": b"v"})
    a.close()
    a.close()                               # idempotent: releases once
    assert read_all(b, b"t") == {b"k": b"v"}  # b still holds the environment
    with pytest.raises(ProgrammingError):
        a.begin_read()
    env = b.env
    b.close()
    c = Store.open(path)
    assert c.env is not env                 # the last close closed it; this is a fresh one
    assert read_all(c, b"t") == {b"k": b"v"}
    c.close()


def test_conflicting_options_name_the_option(path):
    s = Store.open(path, durability=Durability.NORMAL)
    try:
        with pytest.raises(ProgrammingError, match="durability"):
            Store.open(path, durability=Durability.OFF)
        with pytest.raises(ProgrammingError, match="map_size"):
            Store.open(path, map_size=DEFAULT_MAP_SIZE * 4)
        ro = Store.open(path, readonly=True, durability=Durability.NORMAL)
        assert ro.env is s.env and ro.readonly
        with pytest.raises(ReadOnlyError):
            ro.begin_write(0.1)
        ro.close()
        put_rows(s, b"t", {b"k": b"v"})
    finally:
        s.close()
    ro = Store.open(path, readonly=True)
    try:
        assert read_all(ro, b"t") == {b"k": b"v"}   # handles registered read-only
        with pytest.raises(ProgrammingError, match="readonly"):
            Store.open(path)
        with pytest.raises(ReadOnlyError):
            ro.begin_write(0.1)
    finally:
        ro.close()


def test_node_id_and_metadata_survive_reopen(path):
    s = Store.open(path)
    node = s.node_id
    assert isinstance(node, bytes) and len(node) == 16
    with s.begin_read() as r:
        assert s.meta_get(r, b"storage.format") == b"terndb-storage"
        assert s.meta_get(r, b"storage.lmdb_data_format") == b"1"
        assert s.meta_get(r, b"storage.lmdb_version").startswith(b"0.9.")
        assert s.meta_get(r, b"storage.created_at")
        assert s.meta_get(r, b"catalog.version") is None
    with s.begin_write(1.0) as w:
        s.meta_put(w, b"catalog.version", b"7")
        with pytest.raises(ProgrammingError):
            s.meta_put(w, b"storage.node_id", b"x" * 16)
    s.close()
    s = Store.open(path)
    assert s.node_id == node
    with s.begin_read() as r:
        assert s.meta_get(r, b"catalog.version") == b"7"
    s.close()
    assert Store.open(str(path) + "_other").node_id != node


def test_missing_database_without_create(tmp_path):
    with pytest.raises(OperationalError, match="does not exist"):
        Store.open(str(tmp_path / "nope"), create=False)
    with pytest.raises(OperationalError):
        Store.open(str(tmp_path / "nope"), readonly=True)


def test_directory_that_is_not_a_terndb_database(tmp_path):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    with pytest.raises(CorruptDatabaseError, match="not a terndb database"):
        Store.open(str(foreign))
    assert sorted(os.listdir(foreign)) == ["notes.txt"]   # nothing scribbled into it

    a_file = tmp_path / "file.db"
    a_file.write_bytes(b"SQLite format 3\x00")
    with pytest.raises(CorruptDatabaseError, match="is a file"):
        Store.open(str(a_file))

    plain = tmp_path / "plain_lmdb"
    env = lmdb.open(str(plain), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(CorruptDatabaseError, match="without terndb metadata"):
        Store.open(str(plain))


def test_garbage_and_truncated_data_files(tmp_path, path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "data.mdb").write_bytes(os.urandom(64 * 1024))
    with pytest.raises(CorruptDatabaseError, match="not a terndb database"):
        Store.open(str(garbage))

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "data.mdb").write_bytes(b"")
    with pytest.raises(CorruptDatabaseError):
        Store.open(str(empty))

    s = Store.open(path)
    put_rows(s, b"t", {b"%08d" % i: os.urandom(200) for i in range(20000)})
    s.close()
    data = os.path.join(path, "data.mdb")
    size = os.path.getsize(data)
    for keep in (size // 2, 6000, 100):
        with open(data, "r+b") as f:
            f.truncate(keep)
        with pytest.raises(CorruptDatabaseError):
            Store.open(path)


def test_other_lmdb_format_is_refused(tmp_path):
    v10 = tmp_path / "v10"
    env = lmdb.open(str(v10), max_dbs=2, lib_version=1)
    with env.begin(write=True) as txn:
        meta = env.open_db(b"_meta", txn=txn)
        txn.put(b"storage.format", b"terndb-storage", db=meta)
    env.close()
    with pytest.raises(OperationalError, match="LMDB 1.0"):
        Store.open(str(v10))


@pytest.mark.parametrize("level, sync, metasync", [
    (Durability.FULL, True, True),
    # NORMAL runs on checkpoints (no sync at commit) where the OS has a boot id.
    (Durability.NORMAL, not nosync_supported(), False),
    (Durability.OFF, False, False),
])
def test_durability_maps_to_env_flags(tmp_path, level, sync, metasync):
    s = Store.open(str(tmp_path / level.value), durability=level)
    flags = s.env.flags()
    assert (flags["sync"], flags["metasync"], flags["writemap"]) == (sync, metasync, False)
    put_rows(s, b"t", {b"k": b"v"})
    s.sync()
    s.close()


def test_error_translation():
    err = translate_lmdb_error(lmdb.MapFullError("mdb_put", 0))
    assert isinstance(err, OperationalError) and "full" in str(err)
    try:
        raise err from lmdb.MapFullError("mdb_put", 0)
    except OperationalError as exc:
        assert is_map_full(exc)
    assert isinstance(translate_lmdb_error(lmdb.CorruptedError("x", 0)), CorruptDatabaseError)
    assert isinstance(translate_lmdb_error(lmdb.ReadonlyError("x", 0)), ReadOnlyError)
    assert not is_map_full(ValueError())


# ---------------------------------------------------------------------------------------------
# Snapshots and the single writer

def test_readers_are_not_blocked_and_see_only_committed_data(store):
    put_rows(store, b"t", {b"a": b"1"})
    w = store.begin_write(1.0)
    w.txn.put(b"b", b"2", db=store.db(b"t"))
    seen: list[dict] = []

    def reader() -> None:
        seen.append(read_all(store, b"t"))

    th = threading.Thread(target=reader)
    th.start()
    th.join(2.0)
    assert not th.is_alive() and seen == [{b"a": b"1"}]
    old = store.begin_read()
    w.commit()
    assert dict(old.txn.cursor(db=store.db(b"t"))) == {b"a": b"1"}   # snapshot kept
    old.end()
    assert read_all(store, b"t") == {b"a": b"1", b"b": b"2"}


def test_busy_timeout_between_threads(store):
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store.begin_write(1.0) as w:
            w.txn.put(b"k", b"from-thread", db=store.db(b"_meta"))
            holding.set()
            release.wait(5.0)

    th = threading.Thread(target=writer)
    th.start()
    assert holding.wait(5.0)
    t0 = time.monotonic()
    with pytest.raises(DatabaseLockedError, match="database is locked"):
        store.begin_write(0.3)
    assert 0.28 <= time.monotonic() - t0 < 1.5
    threading.Timer(0.2, release.set).start()
    t0 = time.monotonic()
    w = store.begin_write(3.0)          # the first writer commits in time
    assert 0.1 <= time.monotonic() - t0 < 2.0
    assert w.txn.get(b"k", db=store.db(b"_meta")) == b"from-thread"
    w.abort()
    th.join(2.0)
    assert not th.is_alive()


def test_write_txn_is_bound_to_its_thread(store):
    w = store.begin_write(1.0)
    errors: list[Exception] = []

    def other() -> None:
        try:
            w.commit()
        except Exception as exc:        # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    th = threading.Thread(target=other)
    th.start()
    th.join(2.0)
    assert len(errors) == 1 and isinstance(errors[0], ProgrammingError)
    w.abort()
    store.begin_write(0.1).abort()      # the lock was released


def _hold_write_lock(path: str, ready, release, hold_for: float) -> None:
    s = Store.open(path)
    w = s.begin_write(5.0)
    w.txn.put(b"child", b"committed", db=s.db(b"_meta"))
    ready.set()
    release.wait(hold_for)
    w.commit()
    s.close()


def test_busy_timeout_between_processes(store, path):
    ready, release = SPAWN.Event(), SPAWN.Event()
    child = SPAWN.Process(target=_hold_write_lock, args=(path, ready, release, 10.0))
    child.start()
    try:
        assert ready.wait(JOIN)
        t0 = time.monotonic()
        with pytest.raises(DatabaseLockedError):
            store.begin_write(0.3)
        assert 0.28 <= time.monotonic() - t0 < 1.5
        # Readers are not blocked by the other process's writer.
        with store.begin_read() as r:
            assert store.meta_get(r, b"child") is None
        threading.Timer(0.2, release.set).start()
        with store.begin_write(5.0) as w:
            assert store.meta_get(w, b"child") == b"committed"
    finally:
        release.set()
        child.join(JOIN)
    assert child.exitcode == 0


def _hold_write_lock_until_killed(path: str, ready) -> None:
    s = Store.open(path)
    w = s.begin_write(5.0)
    w.txn.put(b"child", b"uncommitted", db=s.db(b"_meta"))
    ready.set()
    time.sleep(60)


def test_a_writer_killed_holding_the_lock_does_not_lock_out_the_next(store, path):
    """The writer mutex is robust: the kernel hands it on when its holder dies."""
    ready = SPAWN.Event()
    child = SPAWN.Process(target=_hold_write_lock_until_killed, args=(path, ready))
    child.start()
    try:
        assert ready.wait(JOIN)
        with pytest.raises(DatabaseLockedError):
            store.begin_write(0.05)
    finally:
        child.kill()
        child.join(JOIN)
    with store.begin_write(5.0) as w:
        assert store.meta_get(w, b"child") is None      # its transaction died with it
        store.meta_put(w, b"after", b"1")
    with store.begin_read() as r:
        assert store.meta_get(r, b"after") == b"1"


def test_a_writer_lock_left_held_in_the_file_is_set_up_afresh(store, path, tmp_path):
    """A mutex the file shows locked by an owner no kernel will report dead (a process of
    an earlier boot; here: a copy of the directory taken while a writer held it) is set up
    again by the first process that opens the database."""
    ready = SPAWN.Event()
    child = SPAWN.Process(target=_hold_write_lock_until_killed, args=(path, ready))
    child.start()
    try:
        assert ready.wait(JOIN)
        copy = str(tmp_path / "copy")
        shutil.copytree(path, copy, ignore=shutil.ignore_patterns("lock.mdb"))
    finally:
        child.kill()
        child.join(JOIN)
    other = Store.open(copy)
    try:
        with other.begin_write(0.5) as w:
            other.meta_put(w, b"after", b"1")
    finally:
        other.close()


def test_writer_lock_file_holds_the_shared_mutex(store, path):
    """write.lock carries the mutex every process maps (set up once, kept on reopen)."""
    lock_file = os.path.join(path, "write.lock")
    assert os.path.getsize(lock_file) == 4096
    with open(lock_file, "rb") as f:
        assert f.read(22) == b"terndb writer mutex v1"
    with store.begin_write(1.0) as w:
        store.meta_put(w, b"k", b"v")
    assert os.path.getsize(lock_file) == 4096


# ---------------------------------------------------------------------------------------------
# Savepoints and sub-database handles

def test_savepoint_semantics(store):
    w = store.begin_write(1.0)
    db = store.db(b"t", w, create=True)
    w.txn.put(b"a", b"1", db=db)
    d1 = w.savepoint()
    assert d1 == 1 and w.depth == 1
    w.txn.put(b"b", b"2", db=db)
    d2 = w.savepoint()
    w.txn.put(b"c", b"3", db=db)
    w.rollback_to(d2, keep=True)        # ROLLBACK TO keeps the savepoint open
    assert w.depth == 2 and w.txn.get(b"c", db=db) is None and w.txn.get(b"b", db=db) == b"2"
    w.txn.put(b"d", b"4", db=db)
    w.release(d2)
    assert w.depth == 1 and w.txn.get(b"d", db=db) == b"4"
    w.rollback_to(d1)
    assert w.depth == 0 and w.txn.get(b"b", db=db) is None and w.txn.get(b"d", db=db) is None
    with pytest.raises(ProgrammingError):
        w.release(1)
    w.savepoint()
    w.txn.put(b"e", b"5", db=db)        # committed by the top-level commit
    w.commit()
    assert read_all(store, b"t") == {b"a": b"1", b"e": b"5"}
    with pytest.raises(ProgrammingError):
        w.savepoint()


def test_table_created_in_aborted_txn_leaves_no_stale_handle(store):
    w = store.begin_write(1.0)
    w.txn.put(b"k", b"v", db=store.db(b"gone", w, create=True))
    w.abort()
    with pytest.raises(NoSuchObjectError):
        store.db(b"gone")
    put_rows(store, b"gone", {b"k": b"v2"})  # creating it again works
    assert read_all(store, b"gone") == {b"k": b"v2"}


def test_table_created_in_rolled_back_savepoint(store):
    w = store.begin_write(1.0)
    sp = w.savepoint()
    store.db(b"inner", w, create=True)
    w.rollback_to(sp)
    kept = w.savepoint()
    w.txn.put(b"k", b"v", db=store.db(b"kept", w, create=True))
    w.release(kept)
    w.commit()
    assert read_all(store, b"kept") == {b"k": b"v"}
    with pytest.raises(NoSuchObjectError):
        store.db(b"inner")


def test_drop_db(store):
    put_rows(store, b"t", {b"k": b"v"})
    w = store.begin_write(1.0)
    store.drop_db(w, b"t")
    w.abort()                           # the drop is undone; the handle is reopened
    assert read_all(store, b"t") == {b"k": b"v"}
    with store.begin_write(1.0) as w:
        store.drop_db(w, b"t")
    with pytest.raises(NoSuchObjectError):
        store.db(b"t")


def _create_table(path: str, table: bytes, n: int) -> None:
    s = Store.open(path)
    put_rows(s, table, {b"%05d" % i: b"v" for i in range(n)})
    s.close()


def test_table_created_by_another_process_is_readable(store, path):
    put_rows(store, b"first", {b"k": b"v"})
    child = SPAWN.Process(target=_create_table, args=(path, b"second", 100))
    child.start()
    child.join(JOIN)
    assert child.exitcode == 0
    with store.begin_read() as r:       # the handle must be usable in this snapshot
        assert sum(1 for _ in r.txn.cursor(db=store.db(b"second"))) == 100


# ---------------------------------------------------------------------------------------------
# Map growth

def test_map_full_abort_grow_redo(tmp_path):
    s = Store.open(str(tmp_path / "small"), map_size=1 << 20)
    rows = {b"%06d" % i: os.urandom(500) for i in range(6000)}   # ~3 MiB: needs growing
    with pytest.raises(lmdb.MapFullError) as info:   # raised by the engine's raw txn.put
        put_rows(s, b"t", rows)
    assert is_map_full(info.value)
    w = s.begin_write(1.0)
    with pytest.raises(OperationalError, match="still open"):
        s.grow(timeout=0.2)             # the caller must abort its write txn first
    w.abort()
    before = s.map_size
    s.grow()
    assert s.map_size >= before + (64 << 20)
    put_rows(s, b"t", rows)             # the redo now fits
    assert read_all(s, b"t") == rows
    s.close()

    s2 = Store.open(str(tmp_path / "small2"), map_size=1 << 20)
    assert s2.write(fill_for(s2, rows), timeout=1.0) == len(rows)   # abort/grow/redo loop
    assert s2.map_size > 1 << 20
    assert read_all(s2, b"t") == rows
    s2.close()


def fill_for(store: Store, rows: dict[bytes, bytes]):
    def fill(wt: WriteTxn) -> int:
        db = store.db(b"t", wt, create=True)
        for k, v in rows.items():
            wt.txn.put(k, v, db=db)
        return len(rows)
    return fill


def test_grow_waits_for_open_transactions(tmp_path):
    s = Store.open(str(tmp_path / "g"), map_size=1 << 20)
    r = s.begin_read()
    t0 = time.monotonic()
    with pytest.raises(OperationalError, match="still open"):
        s.grow(timeout=0.2)
    assert time.monotonic() - t0 < 1.0
    r.end()
    s.grow()
    assert s.map_size >= (1 << 20) + (64 << 20)
    s.close()


def _attached_reader(path: str, attached, go, out) -> None:
    s = Store.open(path, map_size=1 << 20)
    with s.begin_read() as r:           # opened before the parent grows the map
        assert r.txn.get(b"seed", db=s.db(b"t")) == b"1"
    attached.set()
    go.wait(JOIN)
    rows = read_all(s, b"t")            # adopts the grown map (MapResizedError inside)
    out.put((len(rows), sum(len(v) for v in rows.values())))
    put_rows(s, b"t", {b"from-child": b"2"}, timeout=5.0)   # and can write past the old map
    s.close()


def test_map_growth_with_another_process_attached(tmp_path):
    path = str(tmp_path / "shared")
    s = Store.open(path, map_size=1 << 20)
    put_rows(s, b"t", {b"seed": b"1"})
    attached, go, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=_attached_reader, args=(path, attached, go, out))
    child.start()
    try:
        assert attached.wait(JOIN)
        rows = {b"%06d" % i: os.urandom(1000) for i in range(4000)}   # ~4 MiB
        s.write(fill_for(s, rows), timeout=2.0)
        assert s.map_size > 1 << 20
        go.set()
        count, total = out.get(timeout=JOIN)
        assert count == len(rows) + 1 and total == 1 + 1000 * len(rows)
    finally:
        go.set()
        child.join(JOIN)
    assert child.exitcode == 0
    assert read_all(s, b"t")[b"from-child"] == b"2"
    s.close()


# ---------------------------------------------------------------------------------------------
# fork()

def test_fork_child_gets_clear_error_and_can_reopen(store, path):
    put_rows(store, b"t", {b"k": b"v"})
    pid = os.fork()
    if pid == 0:                        # child: report through the exit code only
        code = 0
        try:
            try:
                store.begin_read()
                code = 1
            except OperationalError as exc:
                if "before fork" not in str(exc):
                    code = 2
            store.close()               # must not touch the parent's environment
            fresh = Store.open(path)
            if fresh.env is store._shared.env or read_all(fresh, b"t") != {b"k": b"v"}:
                code = 3
            put_rows(fresh, b"t", {b"child": b"1"})
            fresh.close()
        except BaseException:           # noqa: BLE001 - any failure becomes an exit code
            code = 4
        os._exit(code)
    deadline = time.monotonic() + 10.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        assert time.monotonic() < deadline, "forked child hung"
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    assert read_all(store, b"t") == {b"k": b"v", b"child": b"1"}   # parent still works


def test_connection_collected_while_the_registry_lock_is_held(tmp_path, monkeypatch):
    """A connection freed by the garbage collector inside Database.open (a collection that
    the open's own allocations trigger) releases its database instead of deadlocking on the
    registry lock the same thread already holds."""
    import gc

    import terndb
    from terndb.engine import database

    garbage = terndb.connect(str(tmp_path / "first"))
    garbage.cycle = garbage             # only the collector can free it now
    first_key = (os.getpid(), os.path.realpath(tmp_path / "first"))
    del garbage
    real_open = Store.open

    def open_after_a_collection(*args, **kwargs):
        gc.collect()
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Store, "open", open_after_a_collection)
    opened = []
    worker = threading.Thread(
        target=lambda: opened.append(terndb.connect(str(tmp_path / "second"), check_same_thread=False)),
        daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "Database.open deadlocked on a finalizer's release"
    opened[0].execute("CREATE TABLE t (a)")
    opened[0].close()
    assert first_key not in database._REGISTRY     # the finalizer's release was performed
    assert not database._PENDING_RELEASES


def test_rollback_on_another_thread_is_refused_and_leaves_the_writer_intact(tmp_path):
    """A write transaction ends on the thread that began it: a rollback from another thread
    (a connection shared with check_same_thread=False) is a ProgrammingError and releases
    nothing, so the owner can still end it and other writers are not locked out."""
    import terndb
    con = terndb.connect(str(tmp_path / "db"), check_same_thread=False, timeout=1.0)
    con.execute("CREATE TABLE t (a)")
    con.commit()
    began, finish = threading.Event(), threading.Event()
    outcome: list[object] = []

    def owner() -> None:
        con.execute("INSERT INTO t VALUES (1)")
        began.set()
        finish.wait(JOIN)
        con.rollback()
        outcome.append("rolled back")

    thread = threading.Thread(target=owner)
    thread.start()
    assert began.wait(JOIN)
    with pytest.raises(terndb.ProgrammingError, match="thread that began it"):
        con.rollback()
    with pytest.raises(terndb.ProgrammingError, match="thread that began it"):
        con.commit()
    finish.set()
    thread.join(JOIN)
    assert outcome == ["rolled back"]
    other = terndb.connect(str(tmp_path / "db"), timeout=1.0)
    other.execute("INSERT INTO t VALUES (2)")
    other.commit()
    assert other.execute("SELECT a FROM t").fetchall() == [(2,)]
    other.close()
    con.close()
