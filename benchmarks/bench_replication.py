#!/usr/bin/env python
"""Replication apply throughput: row changes applied per second by a subscriber.

A source database commits N row changes (``--txn`` rows per transaction:
inserts of new rows, then updates of every row, then deletes of a tenth);
a fresh subscriber pulls them through the local transport (``LocalPeer``:
binlog read, wire envelope, per-origin dedup, version-record merge, row
write, relay append, position) in batches of ``--batch`` change sets.  Only
the subscriber's apply is timed.  Durability "normal" on both sides (as
benchmarks/bench.py).  Prints one JSON object; the target is >= 100k changes/s.

    python benchmarks/bench_replication.py              # 100k rows
    python benchmarks/bench_replication.py --rows 20000 --quick
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import terndb
from terndb.engine.repl_apply import Applier
from terndb.engine.repl_local import LocalPeer
from terndb.engine.repl_versions import TableSet, VersionStore


def _subscriber(path: str):
    con = terndb.connect(path, durability="normal")
    vs = VersionStore(con._db, TableSet("*"))
    vs.install()
    ap = Applier(con._db, TableSet("*"), vs)
    ap.ensure_conflict_table()
    return con, ap


def run(rows: int, per_txn: int, batch: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="terndb-bench-repl-")
    try:
        src = terndb.connect(os.path.join(tmp, "src"), durability="normal")
        VersionStore(src._db, TableSet("*")).install()
        src.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT)")
        src.execute("CREATE TABLE p(k TEXT PRIMARY KEY, v INTEGER)")
        con, ap = _subscriber(os.path.join(tmp, "dst"))
        peer = LocalPeer(ap, src._db, batch=batch)
        peer.pull_all()                       # the two CREATE TABLEs

        def load_inserts():
            for lo in range(0, rows, per_txn):
                src.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                                [(i, i % 100, i * 0.5, f"row {i}") for i in range(lo, min(rows, lo + per_txn))])
                src.commit()

        def load_updates():
            for lo in range(0, rows, per_txn):
                src.execute("UPDATE t SET n = n + 1 WHERE id >= ? AND id < ?", (lo, lo + per_txn))
                src.commit()

        def load_deletes():
            src.execute("DELETE FROM t WHERE id % 10 = 0")
            src.commit()

        phases = {}
        for phase, load in (("insert", load_inserts), ("update", load_updates), ("delete", load_deletes)):
            load()
            t0 = time.perf_counter()
            st = peer.pull_all()
            dt = time.perf_counter() - t0
            phases[phase] = {"changes": st.entries, "change_sets": st.applied, "seconds": round(dt, 3),
                             "changes_per_s": round(st.entries / dt) if dt else None}
        n_src = src.execute("SELECT count(*) FROM t").fetchone()[0]
        n_dst = con.execute("SELECT count(*) FROM t").fetchone()[0]
        total_changes = sum(p["changes"] for p in phases.values())
        total_s = sum(p["seconds"] for p in phases.values())
        con.close()
        src.close()
        return {"rows": rows, "rows_per_txn": per_txn, "batch": batch, "phases": phases,
                "total_changes_per_s": round(total_changes / total_s), "converged": n_src == n_dst}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _last(con) -> int:
    db = con._db
    with db.store.begin_read() as rt:
        return db.binlog.last_sequence(rt.txn)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--txn", type=int, default=1000, help="row changes per source transaction")
    ap.add_argument("--batch", type=int, default=100, help="change sets per apply transaction")
    ap.add_argument("--quick", action="store_true", help="10k rows (a smoke run)")
    args = ap.parse_args(argv)
    rows = 10_000 if args.quick else args.rows
    print(json.dumps(run(rows, args.txn, args.batch), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
