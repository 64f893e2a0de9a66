"""Crash safety: SIGKILL a writing process at random moments, then verify the database.

Each trial starts a writer that commits transactions of ROWS_PER_TXN rows (all
tagged with the transaction number) at durability "full" and prints the
number after each commit returns.  The parent kills it at a random moment,
reopens the database and checks that every transaction reported committed is
there in full, that no transaction is partial, and that `terndb check` finds
nothing wrong.  Trials are bounded by count and by time.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import terndb
from terndb.engine.integrity import check_database

ROWS_PER_TXN = 5
TRIALS = int(os.environ.get("TERNDB_CRASH_TRIALS", "100"))
TIME_BUDGET = float(os.environ.get("TERNDB_CRASH_SECONDS", "90"))

WRITER = textwrap.dedent("""
    import sys, terndb
    path, start = sys.argv[1], int(sys.argv[2])
    con = terndb.connect(path, durability="full")
    con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, txn INT, k INT, pad TEXT)")
    con.execute("CREATE INDEX IF NOT EXISTS t_txn ON t(txn)")
    con.commit()
    print("ready", flush=True)
    n = start
    while True:
        con.executemany("INSERT INTO t(txn, k, pad) VALUES (?, ?, ?)",
                        [(n, k, "x" * (50 + 7 * k)) for k in range(%d)])
        con.execute("UPDATE t SET pad = pad || '!' WHERE txn = ? AND k = 0", (n,))
        con.commit()
        print(n, flush=True)
        n += 1
""" % ROWS_PER_TXN)


def _one_trial(path: str, start: int, rng: random.Random) -> int:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path, str(start)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(rng.uniform(0.0, 0.15))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    reported = [int(line) for line in out.split() if line.strip().isdigit()]
    con = terndb.connect(path)
    try:
        counts = dict(con.execute("SELECT txn, count(*) FROM t GROUP BY txn").fetchall())
        for txn in reported:
            assert counts.get(txn) == ROWS_PER_TXN, f"committed transaction {txn} lost or partial"
        partial = {txn: n for txn, n in counts.items() if n != ROWS_PER_TXN}
        assert not partial, f"partial transactions after SIGKILL: {partial}"
        report = check_database(con._db)
        assert report.ok, report.problems
        return max(counts, default=start - 1) + 1
    finally:
        con.close()


def test_sigkill_never_loses_or_tears_a_committed_transaction(tmp_path) -> None:
    path = str(tmp_path / "db")
    rng = random.Random(20261121)
    deadline = time.monotonic() + TIME_BUDGET
    next_txn, trials = 0, 0
    while trials < TRIALS and time.monotonic() < deadline:
        next_txn = _one_trial(path, next_txn, rng)
        trials += 1
    # The budget guards CI time on a loaded machine; a run that manages only a
    # handful of trials proves too little.
    assert trials >= min(TRIALS, 20), f"only {trials} trials fitted in {TIME_BUDGET}s"
    assert next_txn > 0
