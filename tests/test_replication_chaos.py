"""Replication chaos: three nodes, one real nats-server, kills, restarts and a partition (seeded, bounded).

Nodes 0 and 1 replicate with in-process ``Replicator`` threads; node 2 with a
``terndb replicate`` subprocess that is killed with SIGKILL and restarted.
The test process writes to all three databases throughout (concurrent
upserts and single-column updates to the same ten rows, each write its own
committed transaction) while, at seeded random steps, it:

* restarts an in-process replicator (close, reopen, start);
* partitions a node: stops its replicator for a while as the node keeps
  writing locally, then starts it again;
* SIGKILLs node 2's replicator process and restarts it a few steps later;
* restarts the nats-server (same port, same JetStream store).

At the end every node must hold identical rows, and those rows must be what
last-writer-wins makes of every committed write: for each row and column,
the value of the write with the greatest (HLC, origin node) among all
committed writes to it, read back from each node's own binlog (change feed).
So no committed write is lost unless a later write replaced it, and the
conflicts between concurrent writes are recorded.  ``TERNDB_CHAOS_SEED``
picks another schedule.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("nats")

import terndb  # noqa: E402
from terndb.replication import ChangeFeed, Replicator  # noqa: E402

from natsserver import NatsServer  # noqa: E402

SEED = int(os.environ.get("TERNDB_CHAOS_SEED", "20260607"))
STEPS = 160
KEYS = 10
OPTIONS = {"database": "chaos", "fetch_timeout": 0.05}


def _connect(path) -> terndb.Connection:
    return terndb.connect(str(path), durability="off")


def _rows(con) -> list:
    try:
        return con.execute("SELECT id, a, b FROM kv ORDER BY id").fetchall()
    except terndb.ProgrammingError:     # the table has not arrived yet
        return []


class Cluster:
    """The three nodes, their replicators and the server, with the chaos actions."""

    def __init__(self, tmp_path) -> None:
        self.server = NatsServer(tmp_path / "nats")
        self.paths = [tmp_path / f"n{i}" for i in range(3)]
        self.cons = [_connect(p) for p in self.paths]
        self.reps: list[Replicator | None] = [None, None, None]
        self.proc: subprocess.Popen | None = None
        self.events: list[str] = []
        self.log = tmp_path / "n2-replicator.log"
        self._log_file = open(self.log, "ab")

    # -- replicators ---------------------------------------------------------------------------

    def start(self, i: int) -> None:
        if i == 2:
            if self.proc is None:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "terndb", "replicate", str(self.paths[2]), "--nats", self.server.url,
                     "--nats-database", OPTIONS["database"], "--node-id", "n2"],
                    stdout=subprocess.DEVNULL, stderr=self._log_file)
        elif self.reps[i] is None:
            self.reps[i] = Replicator(self.cons[i], nats=self.server.url, nats_options=OPTIONS).start()

    def stop(self, i: int) -> None:
        if i == 2:
            if self.proc is not None:
                self.proc.send_signal(signal.SIGKILL)       # a crash, not a shutdown
                self.proc.wait(10)
                self.proc = None
        elif self.reps[i] is not None:
            self.reps[i].close()
            self.reps[i] = None

    def close(self) -> None:
        for i in range(3):
            self.stop(i)
        for con in self.cons:
            con.close()
        self.server.stop()
        self._log_file.close()

    # -- writes --------------------------------------------------------------------------------

    def write(self, rnd: random.Random, step: int) -> None:
        i = rnd.randrange(3)
        con = self.cons[i]
        if not _rows(con) and i != 0:
            i, con = 0, self.cons[0]      # the table may not have reached this node yet
        key = rnd.randrange(KEYS)
        if rnd.random() < 0.7:
            con.execute("INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET a = excluded.a, "
                        "b = excluded.b", (key, f"n{i}s{step}", step * 10 + i))
        else:
            con.execute("UPDATE kv SET b = ? WHERE id = ?", (step * 10 + i, key))
        con.commit()

    # -- convergence ---------------------------------------------------------------------------

    def wait_converged(self, timeout: float = 120.0) -> list:
        deadline = time.monotonic() + timeout
        stable = 0
        last = None
        while time.monotonic() < deadline:
            for r in self.reps:
                if r is not None:
                    r.wait_idle(0.5)
            rows = [_rows(c) for c in self.cons]
            if rows[0] and all(r == rows[0] for r in rows) and rows[0] == last:
                stable += 1
                if stable >= 3:
                    return rows[0]
            else:
                stable = 0
            last = rows[0] if all(r == rows[0] for r in rows) else None
            time.sleep(0.2)
        exited = self.proc.poll() if self.proc is not None else "not running"
        raise AssertionError(f"not converged after {self.events}: {[_rows(c) for c in self.cons]}; "
                             f"node 2 replicator exit status {exited}, stderr: {self.log.read_text()[-2000:]}; "
                             f"status: {[r.status() if r else None for r in self.reps]}")


def _committed_writes(con) -> list[tuple]:
    """(key, column, (hlc, origin), value) of every write this node committed itself."""
    db = con._db
    me = db.node_id.hex()
    out = []
    for ch in ChangeFeed(db).changes("kv"):
        if ch.origin != me or ch.op not in ("insert", "update"):
            continue
        cols = ("a", "b") if ch.op == "insert" else [c for c in ch.changed if c in ("a", "b")]
        for c in cols:
            out.append((ch.key[0], c, (ch.hlc, ch.origin), ch.row[c]))
    return out


def _last_writer_wins(writes: list[tuple]) -> list[tuple]:
    best: dict[tuple, tuple] = {}
    for key, col, version, value in writes:
        if (key, col) not in best or version > best[(key, col)][0]:
            best[(key, col)] = (version, value)
    keys = sorted({k for k, _ in best})
    return [(k, best[(k, "a")][1], best[(k, "b")][1]) for k in keys]


def test_three_nodes_converge_under_kills_restarts_and_partitions(tmp_path):
    rnd = random.Random(SEED)
    cl = Cluster(tmp_path)
    try:
        cl.cons[0].execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
        cl.cons[0].commit()
        for i in range(3):
            cl.start(i)
        partitioned: dict[int, int] = {}          # node -> step at which it rejoins
        server_restarts = 0
        for step in range(STEPS):
            for node, until in list(partitioned.items()):
                if step >= until:
                    cl.start(node)
                    del partitioned[node]
                    cl.events.append(f"{step}: node {node} back")
            cl.write(rnd, step)
            if step % 8 == 7:
                action = rnd.choice(["restart", "partition", "kill2", "server"])
                if action == "server" and server_restarts >= 2:
                    action = "partition"
                node = rnd.randrange(2)
                if action == "restart" and node not in partitioned:
                    cl.stop(node)
                    cl.start(node)
                elif action == "partition" and node not in partitioned:
                    cl.stop(node)
                    partitioned[node] = step + rnd.randint(8, 24)
                elif action == "kill2" and 2 not in partitioned:
                    cl.stop(2)
                    partitioned[2] = step + rnd.randint(3, 12)
                elif action == "server":
                    cl.server.restart()
                    server_restarts += 1
                cl.events.append(f"{step}: {action} {node}")
            time.sleep(rnd.uniform(0.0, 0.02))
        for node in list(partitioned):
            cl.start(node)
        final = cl.wait_converged()
        writes = [w for con in cl.cons for w in _committed_writes(con)]
        assert len({(k, c, v) for k, c, v, _ in writes}) == len(writes)   # every write has its own version
        assert final == _last_writer_wins(writes), cl.events
        conflicts = [c.execute("SELECT winner_origin, winner_hlc, loser_origin, loser_hlc FROM terndb_conflicts "
                               "WHERE kind = 'column'").fetchall() for c in cl.cons]
        assert sum(len(c) for c in conflicts) > 0
        for wo, wh, lo, lh in (row for rows in conflicts for row in rows):
            assert (wh, wo) > (lh, lo)                # the recorded loser really lost
        assert not any(c.execute("SELECT count(*) FROM terndb_dead_letters").fetchone()[0]
                       for c in cl.cons if _has_table(c, "terndb_dead_letters"))
    finally:
        cl.close()


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0])
