"""What one small commit costs, in time and in bytes written to storage: terndb against sqlite3.

The ``commit_per_insert`` workload of ``bench.py`` (one-row INSERT, then ``commit()``), run
against sqlite3 in WAL mode with ``synchronous=NORMAL`` and against terndb with
``durability="normal"`` and ``"off"``.  Besides the time per commit it reports how many
bytes the process caused the kernel to write to storage per commit (``/proc/self/io``
``write_bytes``; the final checkpoint at ``close()`` included, since both engines write
their checkpoint there).  That second figure is what bounds "normal": a checkpoint must
write back every page the commits since the last one dirtied.

    python benchmarks/bench_commit_io.py [--commits N] [--reps R]

Linux only (``/proc/self/io``).  Medians of ``--reps`` interleaved runs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

INSERT = "INSERT INTO t (n, x, a, b) VALUES (?, ?, ?, ?)"
CREATE = "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL, a TEXT, b TEXT)"


def written_bytes() -> int:
    """Bytes this process has caused to be written to storage so far."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no write_bytes line")


def open_sqlite3(directory: str) -> Any:
    con = sqlite3.connect(os.path.join(directory, "bench.sqlite"))
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def terndb_opener(durability: str) -> Callable[[str], Any]:
    def open_terndb(directory: str) -> Any:
        import terndb
        return terndb.connect(os.path.join(directory, "db"), durability=durability)
    return open_terndb


ENGINES: dict[str, Callable[[str], Any]] = {
    "sqlite3 (WAL, NORMAL)": open_sqlite3,
    "terndb normal": terndb_opener("normal"),
    "terndb off": terndb_opener("off"),
}


def run_once(opener: Callable[[str], Any], commits: int, parent: str) -> tuple[float, float]:
    """(microseconds per commit, bytes written per commit) for one fresh database."""
    directory = tempfile.mkdtemp(dir=parent)
    try:
        con = opener(directory)
        cur = con.cursor()
        cur.execute(CREATE)
        con.commit()
        os.sync()                       # start from a clean page cache for this file
        before = written_bytes()
        start = time.perf_counter()
        for i in range(commits):
            cur.execute(INSERT, (i, i * 0.25, "commit", f"row-{i}"))
            con.commit()
        elapsed = time.perf_counter() - start
        con.close()                     # both engines checkpoint here
        return 1e6 * elapsed / commits, (written_bytes() - before) / commits
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=20_000, help="commits per run (default 20,000)")
    parser.add_argument("--reps", type=int, default=3, help="runs per engine (default 3)")
    args = parser.parse_args(argv)
    if not os.path.exists("/proc/self/io"):
        print("needs Linux's /proc/self/io", file=sys.stderr)
        return 2
    # Beside the repository, not /tmp: /tmp may be a tmpfs, which writes nothing to storage.
    parent = tempfile.mkdtemp(prefix="terndb-commit-io-", dir=os.path.dirname(os.path.abspath(__file__)))
    try:
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in ENGINES}
        for _ in range(args.reps):
            for name, opener in ENGINES.items():
                results[name].append(run_once(opener, args.commits, parent))
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    base_us = statistics.median(us for us, _ in results["sqlite3 (WAL, NORMAL)"])
    print(f"{args.commits:,} one-row INSERT + commit() per run, medians of {args.reps} runs")
    print(f"{'engine':24s} {'us/commit':>10s} {'KiB written/commit':>19s} {'vs sqlite3 (speed)':>19s}")
    for name, runs in results.items():
        us = statistics.median(u for u, _ in runs)
        kib = statistics.median(b for _, b in runs) / 1024
        print(f"{name:24s} {us:10.1f} {kib:19.1f} {base_us / us:19.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
