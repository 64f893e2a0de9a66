"""Several processes on one database at once (bounded): no lost updates, consistent snapshots.

Writers move money between accounts inside transactions (read, then write:
a lost update would change the total) and bump a counter; readers meanwhile
check that every snapshot they see has the same total.  The only error a
writer may meet is the documented busy timeout, after which it retries.
"""
from __future__ import annotations

import multiprocessing as mp
import random
import time

import terndb

ACCOUNTS = 10
START = 1000


def _writer(path: str, seed: int, moves: int, out: "mp.Queue") -> None:
    rng = random.Random(seed)
    con = terndb.connect(path, timeout=0.2)
    done = retries = 0
    try:
        while done < moves:
            a, b = rng.sample(range(ACCOUNTS), 2)
            amount = rng.randint(1, 50)
            try:
                con.execute("BEGIN")
                (bal,) = con.execute("SELECT balance FROM acct WHERE id = ?", (a,)).fetchone()
                con.execute("UPDATE acct SET balance = ? WHERE id = ?", (bal - amount, a))
                (bal,) = con.execute("SELECT balance FROM acct WHERE id = ?", (b,)).fetchone()
                con.execute("UPDATE acct SET balance = ? WHERE id = ?", (bal + amount, b))
                (n,) = con.execute("SELECT n FROM counter").fetchone()
                con.execute("UPDATE counter SET n = ?", (n + 1,))
                con.execute("COMMIT")
                done += 1
            except terndb.DatabaseLockedError:
                retries += 1
                if con.in_transaction:
                    con.rollback()
        out.put(("writer", done, retries, None))
    except Exception as err:  # noqa: BLE001 - reported to the parent as a failure
        out.put(("writer", done, retries, f"{type(err).__name__}: {err}"))
    finally:
        con.close()


def _reader(path: str, seconds: float, out: "mp.Queue") -> None:
    con = terndb.connect(path)
    seen = 0
    bad = None
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            (total,) = con.execute("SELECT sum(balance) FROM acct").fetchone()
            if total != ACCOUNTS * START:
                bad = f"snapshot total {total}"
                break
            seen += 1
        out.put(("reader", seen, 0, bad))
    except Exception as err:  # noqa: BLE001
        out.put(("reader", seen, 0, f"{type(err).__name__}: {err}"))
    finally:
        con.close()


def test_concurrent_processes_lose_nothing(tmp_path) -> None:
    path = str(tmp_path / "db")
    con = terndb.connect(path)
    con.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, balance INT)")
    con.execute("CREATE TABLE counter(n INT)")
    con.executemany("INSERT INTO acct VALUES (?, ?)", [(i, START) for i in range(ACCOUNTS)])
    con.execute("INSERT INTO counter VALUES (0)")
    con.commit()
    con.close()

    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(path, seed, 150, out)) for seed in range(3)]
    readers = [ctx.Process(target=_reader, args=(path, 4.0, out)) for _ in range(2)]
    for p in writers + readers:
        p.start()
    results = [out.get(timeout=120) for _ in writers + readers]
    for p in writers + readers:
        p.join(timeout=30)
    errors = [r for r in results if r[3] is not None]
    assert not errors, errors
    moves = sum(r[1] for r in results if r[0] == "writer")
    assert moves == 3 * 150
    assert all(r[1] > 0 for r in results if r[0] == "reader")

    con = terndb.connect(path)
    assert con.execute("SELECT sum(balance) FROM acct").fetchone() == (ACCOUNTS * START,)
    assert con.execute("SELECT n FROM counter").fetchone() == (moves,)     # no lost update
    con.close()
