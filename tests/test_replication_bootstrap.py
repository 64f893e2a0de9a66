"""Bootstrap by merge over NATS: a follower behind a small stream's retention merges a peer's snapshot.

The stream keeps 20 messages (``max_msgs``).  Node b stops; a commits far more
than 20 change sets; b, meanwhile, writes rows only it has.  When b comes back
its position is below what the stream holds, so it asks a peer (a) for a
snapshot through NATS, merges it (rows only b has stay; per-column
last-writer-wins for the rest) and continues from the stream.
"""
from __future__ import annotations

import json

import pytest

pytest.importorskip("nats")

import terndb  # noqa: E402
from natsserver import NatsServer, wait_for  # noqa: E402
from terndb.replication import Replicator  # noqa: E402

OPTS = {"max_msgs": 20, "fetch_timeout": 0.05, "connect_timeout": 2.0, "database": "boot"}


@pytest.fixture
def nats_url(tmp_path):
    server = NatsServer(tmp_path / "js")
    try:
        yield server.url
    finally:
        server.stop()


def _rows(con) -> list:
    return con.execute("SELECT * FROM kv ORDER BY id").fetchall()


def _commit(con, sql: str, *params) -> None:
    con.execute(sql, params)
    con.commit()


def test_follower_behind_the_stream_merges_a_peer_snapshot(nats_url, tmp_path):
    ca = terndb.connect(str(tmp_path / "a"), durability="off", node_id="a")
    cb = terndb.connect(str(tmp_path / "b"), durability="off", node_id="b")
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)")
    for i in range(1, 4):
        ca.execute("INSERT INTO kv VALUES (?, 'first', 0)", (i,))
    ca.commit()
    ra = Replicator(ca, nats=nats_url, nats_options=OPTS).start()
    rb = Replicator(cb, nats=nats_url, nats_options=OPTS).start()
    try:
        assert wait_for(lambda: _rows(cb) == _rows(ca), tolerate=(terndb.ProgrammingError,))
        rb.close()                                    # b goes away
        for i in range(4, 64):                        # 60 messages: the stream keeps the last 20
            _commit(ca, "INSERT INTO kv VALUES (?, 'while b was away', ?)", i, i)
            assert ra.wait_idle(20)                   # one message each (a publisher behind would batch them)
        _commit(ca, "UPDATE kv SET v = 'a changed it' WHERE id = 1")
        _commit(cb, "INSERT INTO kv VALUES (1000, 'only on b', 1)")    # b's own rows: must survive
        _commit(cb, "UPDATE kv SET n = 42 WHERE id = 2")                # a column a never touched again
        assert ra.wait_idle(20), json.dumps(ra.status()["nats"], default=str)
        rb = Replicator(cb, nats=nats_url, nats_options=OPTS).start()
        assert wait_for(lambda: _rows(cb) == _rows(ca), 60), (rb.status()["nats"], ra.status()["nats"], _rows(ca), _rows(cb))
        rows = {r[0]: r for r in _rows(cb)}
        assert len(rows) == 64
        assert rows[1][1] == "a changed it" and rows[2][2] == 42 and rows[1000][1] == "only on b"
        assert all(rows[i] == (i, "while b was away", i) for i in range(4, 64))   # most came by snapshot
        snap_b = rb.status()["nats"]["snapshots"]
        assert snap_b["bootstraps"] == 1 and snap_b["last"]["from_node"] == ca.node_id
        assert snap_b["last"]["covers_gap"]
        assert ra.status()["nats"]["snapshots"]["served"] == 1
        assert ra.conflict_count() == rb.conflict_count() == 0
    finally:
        ra.close()
        rb.close()
        ca.close()
        cb.close()
