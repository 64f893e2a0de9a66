"""durability="normal": commits without fsync, an OS crash rolls back to the last checkpoint.

An OS crash is simulated on disk images: the data file copied right after a checkpoint is
the disk state at snapshot S; later unsynced commits reached the page cache only.  The worst
case adds the *meta pages* of the latest commit (flushed) over data pages of S (not flushed).
A reboot is faked with ``TERNDB_BOOT_ID``.  Opens that may meet a broken image run in a child
process: LMDB trusts the pages it maps.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import terndb
from terndb.engine import checkpoint as ck
from terndb.engine.integrity import check_database

pytestmark = pytest.mark.skipif(not ck.nosync_supported(), reason="needs the OS boot id")

ROWS = "SELECT id, n, s FROM t ORDER BY id"
CREATE_T = "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, s TEXT)"

# Opens a database in a child and reports its rows and integrity check as JSON (or the error).
PROBE = r"""
import json, sys, terndb
from terndb.engine.integrity import check_database
try:
    con = terndb.connect(sys.argv[1], durability="normal")
    rows = con.execute("SELECT id, n, s FROM t ORDER BY id").fetchall()
    report = check_database(con._db)
    con.execute("INSERT INTO t (n, s) VALUES (-1, 'after')")
    con.commit()
    con.close()
    print(json.dumps({"rows": [list(r) for r in rows], "problems": report.problems}))
except terndb.Error as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


def _probe(path: Path, boot: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop(ck.BOOT_ID_ENV, None)
    if boot is not None:
        env[ck.BOOT_ID_ENV] = boot
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:            # a crash of the child is "broken" too
        return {"error": f"exit {proc.returncode}", "message": proc.stderr[-500:]}
    return json.loads(proc.stdout)


@pytest.fixture
def slow_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """No checkpoint unless the test asks for one (Store.sync) or closes."""
    monkeypatch.setattr(ck, "DEFAULT_INTERVAL", 3600.0)
    monkeypatch.delenv(ck.BOOT_ID_ENV, raising=False)


@pytest.fixture
def normal(tmp_path: Path, slow_checkpoints: None) -> Iterator[Any]:
    con = terndb.connect(str(tmp_path / "db"), durability="normal")
    con.execute(CREATE_T)
    con.execute("CREATE INDEX t_n ON t(n)")
    con.executemany("INSERT INTO t (n, s) VALUES (?, ?)",
                    [(i, "x" * (i % 50)) for i in range(2000)])
    con.commit()
    yield con
    con.close()


def _state(path: Path) -> Any:
    fd = os.open(path / ck.CHECKPOINT_FILE, os.O_RDONLY)
    try:
        return ck._read_state(fd, str(path))
    finally:
        os.close(fd)


def _open_with_table(path: Path) -> Any:
    """A normal-mode connection to a new database at ``path`` holding the empty table t."""
    con = terndb.connect(str(path), durability="normal")
    con.execute(CREATE_T)
    con.commit()
    return con


def _churn(con: Any, commits: int) -> None:
    """Single-statement commits that free and reuse pages (updates, deletes, inserts)."""
    for i in range(commits):
        con.execute("UPDATE t SET n = n + 1, s = s || 'y' WHERE id % 97 = ?", (i % 97,))
        con.commit()
        con.execute("DELETE FROM t WHERE id = ?", (i * 7 + 1,))
        con.execute("INSERT INTO t (n, s) VALUES (?, ?)", (i, "new" * (i % 9)))
        con.commit()


def _crash_image(src: Path, data_at_s: bytes, dst: Path) -> Path:
    """The disk after an OS crash, worst case: data pages as of the checkpoint, the meta
    pages and the file length as of now."""
    dst.mkdir()
    current = (src / "data.mdb").read_bytes()
    page_size = ck._parse_meta(current[:ck._META_BYTES], ck._META_HDR, 1, "meta")[0]
    image = bytearray(data_at_s)
    image[:2 * page_size] = current[:2 * page_size]
    # The file's new length reached the disk, its new pages did not: zeros.
    image.extend(bytes(max(0, len(current) - len(image))))
    (dst / "data.mdb").write_bytes(bytes(image))
    shutil.copy(src / ck.CHECKPOINT_FILE, dst / ck.CHECKPOINT_FILE)
    return dst


def test_os_crash_restores_the_checkpoint(normal: Any, tmp_path: Path) -> None:
    src = tmp_path / "db"
    normal._db.store.sync()                         # a checkpoint: S
    at_s = (src / "data.mdb").read_bytes()
    rows_at_s = [list(r) for r in normal.execute(ROWS).fetchall()]
    _churn(normal, 150)
    assert normal.execute(ROWS).fetchall() != rows_at_s
    state = _state(src)
    assert not state.clean and state.txnid < normal._db.store.env.info()["last_txnid"]

    # Without the restore the worst-case image is broken: this is what the mechanism fixes.
    broken = _probe(_crash_image(src, at_s, tmp_path / "no-restore"), boot=None)
    assert "error" in broken or broken["problems"] or broken["rows"] != rows_at_s

    # After a reboot the open restores S exactly; the database is sound and writable.
    image = _crash_image(src, at_s, tmp_path / "rebooted")
    result = _probe(image, boot="rebooted")
    assert result.get("rows") == rows_at_s, result
    assert result["problems"] == []
    assert _state(image).clean
    again = _probe(image, boot="rebooted")          # the write after the restore survived
    assert again["rows"] == rows_at_s + [[rows_at_s[-1][0] + 1, -1, "after"]]


def _all_writes_landed(src: Path, dst: Path) -> Path:
    """The disk after an OS crash that lost nothing but the chance to restore cleanly:
    every later page write landed (the meta pages then get restored to S)."""
    dst.mkdir()
    shutil.copy(src / "data.mdb", dst / "data.mdb")
    shutil.copy(src / ck.CHECKPOINT_FILE, dst / ck.CHECKPOINT_FILE)
    return dst


def test_without_the_pin_the_checkpoint_is_overwritten(
        normal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves the pin's part: once LMDB may reuse S's pages, restoring S yields garbage."""
    src = tmp_path / "db"
    real_checkpoint = ck.Checkpointer._checkpoint

    def unpinned(self: ck.Checkpointer, clean: bool) -> None:
        real_checkpoint(self, clean)
        if self._pin is not None:
            self._pin.abort()
            self._pin = None
    monkeypatch.setattr(ck.Checkpointer, "_checkpoint", unpinned)
    # Without a pin every write would checkpoint first; keep S where the test put it.
    monkeypatch.setattr(ck.Checkpointer, "before_write", lambda self: None)
    normal._db.store.sync()
    rows_at_s = [list(r) for r in normal.execute(ROWS).fetchall()]
    _churn(normal, 150)
    result = _probe(_all_writes_landed(src, tmp_path / "img"), boot="rebooted")
    assert "error" in result or result["problems"] or result["rows"] != rows_at_s


def test_restore_with_the_pin_survives_reused_pages(normal: Any, tmp_path: Path) -> None:
    """The same disk as above (every later write landed), with the pin: S is intact."""
    src = tmp_path / "db"
    normal._db.store.sync()
    rows_at_s = [list(r) for r in normal.execute(ROWS).fetchall()]
    _churn(normal, 150)
    result = _probe(_all_writes_landed(src, tmp_path / "img"), boot="rebooted")
    assert result.get("rows") == rows_at_s and result["problems"] == [], result


def test_application_crash_loses_nothing(tmp_path: Path, slow_checkpoints: None) -> None:
    path = tmp_path / "db"
    writer = r"""
import sys, terndb
from terndb.engine import checkpoint
checkpoint.DEFAULT_INTERVAL = 3600.0
con = terndb.connect(sys.argv[1], durability="normal")
con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, s TEXT)")
con.commit()
i = 0
while True:
    con.execute("INSERT INTO t (n, s) VALUES (?, 'k')", (i,))
    con.commit()
    print(i, flush=True)
    i += 1
"""
    proc = subprocess.Popen([sys.executable, "-c", writer, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    last = -1
    for line in proc.stdout:
        last = int(line)
        if last >= 300:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _state(path).clean                   # no clean close happened
    con = terndb.connect(str(path), durability="normal")
    try:
        got = [r[0] for r in con.execute("SELECT n FROM t ORDER BY id").fetchall()]
        assert got[:last + 1] == list(range(last + 1))  # same boot: no restore, nothing lost
        assert check_database(con._db).problems == []
        con.execute("INSERT INTO t (n, s) VALUES (-1, 'z')")
        con.commit()
        # The first write after the crash checkpointed under this process's pin.
        state = _state(path)
        assert not state.clean and state.boot == ck.boot_id()
    finally:
        con.close()
    assert _state(path).clean


def test_idle_timer_makes_the_last_commit_durable(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ck, "DEFAULT_INTERVAL", 0.05)
    path = tmp_path / "db"
    con = _open_with_table(path)
    try:
        con.execute("INSERT INTO t (n, s) VALUES (1, 'a')")
        con.commit()
        last = con._db.store.env.info()["last_txnid"]
        deadline = time.monotonic() + 10
        while _state(path).txnid != last:
            assert time.monotonic() < deadline, "no checkpoint by the timer"
            time.sleep(0.01)
        assert not _state(path).clean
    finally:
        con.close()


def test_clean_close_marks_the_file_clean(tmp_path: Path, slow_checkpoints: None) -> None:
    path = tmp_path / "db"
    con = terndb.connect(str(path), durability="normal")
    con.execute(CREATE_T)
    con.execute("INSERT INTO t (n, s) VALUES (1, 'a')")
    con.commit()
    last = con._db.store.env.info()["last_txnid"]
    con.close()
    state = _state(path)
    assert state.clean and state.txnid == last
    # A clean file is never restored, whatever the boot.
    assert _probe(path, boot="another boot")["rows"] == [[1, 1, "a"]]


def test_full_writer_marks_an_unclean_checkpoint_clean(normal: Any, tmp_path: Path) -> None:
    """A full commit must not be undone by a later restore of a normal checkpoint."""
    src = tmp_path / "db"
    normal.execute("INSERT INTO t (n, s) VALUES (7, 'normal')")
    normal.commit()
    assert not _state(src).clean
    script = ("import sys, terndb; con = terndb.connect(sys.argv[1], durability='full'); "
              "con.execute(\"INSERT INTO t (n, s) VALUES (8, 'full')\"); con.commit(); con.close()")
    subprocess.run([sys.executable, "-c", script, str(src)], check=True, timeout=120)
    assert _state(src).clean
    # The normal writer notices and checkpoints again before its next unsynced commit.
    before = _state(src).generation
    normal.execute("INSERT INTO t (n, s) VALUES (9, 'normal again')")
    normal.commit()
    state = _state(src)
    assert not state.clean and state.generation > before


def test_two_processes_write_in_normal_mode(tmp_path: Path, slow_checkpoints: None) -> None:
    path = tmp_path / "db"
    con = _open_with_table(path)
    writer = ("import sys, terndb\n"
              "con = terndb.connect(sys.argv[1], durability='normal', timeout=30)\n"
              "for i in range(150):\n"
              "    con.execute('INSERT INTO t (n, s) VALUES (?, ?)', (i, sys.argv[2]))\n"
              "    con.commit()\n"
              "print(con._db.store.env.info()['last_txnid'])\n")
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(path), name],
                              stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    try:
        counts = con.execute("SELECT s, COUNT(*) FROM t GROUP BY s ORDER BY s").fetchall()
        assert counts == [("a", 150), ("b", 150)]
        assert check_database(con._db).problems == []
        assert _state(path).clean                   # both closed cleanly
        con.execute("INSERT INTO t (n, s) VALUES (0, 'c')")
        con.commit()
        state = _state(path)
        assert not state.clean and state.txnid == con._db.store.env.info()["last_txnid"] - 1
    finally:
        con.close()


def test_damaged_checkpoint_file(normal: Any, tmp_path: Path) -> None:
    src = tmp_path / "db"
    normal._db.store.sync()
    normal._db.store.sync()                         # both slots hold a record now
    newest = _state(src)
    image = tmp_path / "img"
    shutil.copytree(src, image, ignore=shutil.ignore_patterns("lock.mdb", "write.lock"))
    raw = bytearray((image / ck.CHECKPOINT_FILE).read_bytes())
    slot = (newest.generation % 2) * ck._SLOT_SIZE
    raw[slot + 40] ^= 0xFF                          # a torn newest record: the older one counts
    (image / ck.CHECKPOINT_FILE).write_bytes(bytes(raw))
    assert _state(image).generation == newest.generation - 1
    other = ((newest.generation + 1) % 2) * ck._SLOT_SIZE
    raw[other + 40] ^= 0xFF                         # both damaged: a clear error, no guess
    (image / ck.CHECKPOINT_FILE).write_bytes(bytes(raw))
    with pytest.raises(terndb.DatabaseError, match="checkpoint records are unreadable"):
        terndb.connect(str(image), durability="normal")


def test_implausible_checkpoint_is_refused(normal: Any, tmp_path: Path) -> None:
    """A data file older than its checkpoint (e.g. restored from a backup) is not 'restored'."""
    src = tmp_path / "db"
    old_data = (src / "data.mdb").read_bytes()
    normal.execute("INSERT INTO t (n, s) VALUES (1, 'later')")
    normal.commit()
    normal._db.store.sync()
    image = tmp_path / "img"
    image.mkdir()
    (image / "data.mdb").write_bytes(old_data)
    shutil.copy(src / ck.CHECKPOINT_FILE, image / ck.CHECKPOINT_FILE)
    result = _probe(image, boot="rebooted")
    assert result.get("error") == "CorruptDatabaseError", result
    assert "not restoring it" in result["message"]


def test_readonly_open_beside_a_normal_writer(normal: Any, tmp_path: Path) -> None:
    normal.execute("INSERT INTO t (n, s) VALUES (5, 'seen')")
    normal.commit()
    reader = terndb.connect(str(tmp_path / "db"), readonly=True)
    try:
        assert reader.execute("SELECT COUNT(*) FROM t").fetchone() == (2001,)
    finally:
        reader.close()


def test_readonly_open_recovers_a_crashed_image(normal: Any, tmp_path: Path) -> None:
    src = tmp_path / "db"
    normal._db.store.sync()
    at_s = (src / "data.mdb").read_bytes()
    count_at_s = normal.execute("SELECT COUNT(*) FROM t").fetchone()[0]
    _churn(normal, 60)
    image = _crash_image(src, at_s, tmp_path / "img")
    script = ("import sys, terndb; con = terndb.connect(sys.argv[1], readonly=True); "
              "print(con.execute('SELECT COUNT(*) FROM t').fetchone()[0])")
    env = dict(os.environ, **{ck.BOOT_ID_ENV: "rebooted"})
    out = subprocess.run([sys.executable, "-c", script, str(image)], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert int(out) == count_at_s


def test_memory_database_in_normal_mode() -> None:
    con = terndb.connect(":memory:", durability="normal")
    path = con._db.path
    con.execute("CREATE TABLE t (a)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    con.commit()
    assert con.execute("SELECT SUM(a) FROM t").fetchone() == (45,)
    con.close()
    assert not os.path.exists(path)


def test_background_checkpoints_restore_exactly(tmp_path: Path, slow_checkpoints: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints taken by the timer thread (fsync outside the writer lock, commits going
    on) record a snapshot that an OS crash restores exactly."""
    monkeypatch.setattr(ck, "DEFAULT_MAX_COMMITS", 10)
    path = tmp_path / "db"
    con = _open_with_table(path)
    try:
        first = _state(path).generation
        by_txn: dict[int, list[list[Any]]] = {}
        for i in range(200):
            con.execute("INSERT INTO t (n, s) VALUES (?, ?)", (i, "v" * (i % 30)))
            con.execute("DELETE FROM t WHERE id = ?", (i // 2,))
            con.commit()
            by_txn[con._db.store.env.info()["last_txnid"]] = [
                list(r) for r in con.execute(ROWS).fetchall()]
        deadline = time.monotonic() + 10
        while _state(path).generation < first + 3:  # the timer is asynchronous
            assert time.monotonic() < deadline, "the timer took no checkpoint"
            time.sleep(0.01)
        image = _all_writes_landed(path, tmp_path / "img")
        state = _state(image)                       # the record the image holds
        assert not state.clean and state.txnid in by_txn
    finally:
        con.close()
    result = _probe(image, boot="rebooted")
    assert result.get("rows") == by_txn[state.txnid] and result["problems"] == [], result


def _wait_child(pid: int) -> int:
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        assert time.monotonic() < deadline, "forked child hung"
        time.sleep(0.01)


def _reopen_and_write_in_child(path: Path) -> None:
    """In a forked child: reopen, write, close; reports through the exit code only."""
    code = 0
    try:
        con = terndb.connect(str(path), durability="normal")
        con.execute("INSERT INTO t (n, s) VALUES (-5, 'child')")
        con.commit()
        con.close()
    except BaseException:               # noqa: BLE001 - any failure becomes an exit code
        code = 4
    os._exit(code)


def test_forked_child_leaves_the_parents_pin(normal: Any, tmp_path: Path) -> None:
    """A child forked from a normal-mode writer reopens the database and writes; the
    parent's checkpoint stays pinned (ending the inherited pin in the child would mark the
    parent's reader slot as not reading: LMDB could reuse the checkpoint's pages)."""
    shared = normal._db.store._check()
    pin_id = shared.checkpointer._pin.id()

    def parent_slot() -> list[str]:
        return [line.split()[2] for line in shared.env.readers().splitlines()[1:]
                if line.split()[0] == str(os.getpid())]

    assert str(pin_id) in parent_slot()
    pid = os.fork()
    if pid == 0:
        _reopen_and_write_in_child(tmp_path / "db")
    assert _wait_child(pid) == 0
    assert str(pin_id) in parent_slot()
    assert normal.execute("SELECT count(*) FROM t WHERE s = 'child'").fetchone() == (1,)


def test_fork_while_the_timer_holds_the_lock(normal: Any, tmp_path: Path) -> None:
    """The checkpoint timer holds the writer lock without a write transaction: a fork
    meanwhile leaves a child that can reopen the database (only a fork inside a write
    transaction is refused)."""
    from terndb.engine import storage
    shared = normal._db.store._check()
    storage._acquire_write_lock(shared, 1.0, writing=False)
    pid = os.fork()
    if pid == 0:
        _reopen_and_write_in_child(tmp_path / "db")
    storage._release_write_lock(shared)
    assert _wait_child(pid) == 0
    assert normal.execute("SELECT count(*) FROM t WHERE s = 'child'").fetchone() == (1,)
