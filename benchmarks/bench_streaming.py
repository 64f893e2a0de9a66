#!/usr/bin/env python
"""Memory while streaming a large result: terndb against sqlite3 on the same rows.

Issue #7 asks that iterating or batching over a 10M-row result keeps the Python heap
peak under 50 MB.  This script loads N rows (id, n, x, s: int, int, float, short text)
into both engines, then reads ``SELECT * FROM t`` back in several ways and reports, per way:

* ``heap peak``  the Python heap's peak above its level before the read
  (``tracemalloc``: every object the interpreter allocated, rows included);
* ``arrow peak`` pyarrow's memory pool, sampled at each record batch (terndb's Arrow
  builder fills Python-owned buffers that pyarrow wraps without copying, so they count
  in the heap peak and this stays ~0; it would show a builder that moved to the pool);
* ``rows`` read and the wall time (tracemalloc slows allocation-heavy loops down,
  so times here are not the speed figures; those are in bench.py).

Ways: ``iterate`` (``for row in cursor``), ``fetchmany`` (10,000 rows per call),
``record_batches`` (``cursor.fetch_record_batch(100_000)``, terndb only) and, for
sqlite3, the same iteration.  Every row is dropped as soon as it is read, as a
streaming consumer would.

    python benchmarks/bench_streaming.py                # N = 10,000,000 (~1.5 GB on disk; ~4 minutes)
    python benchmarks/bench_streaming.py --rows 1000000
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import tracemalloc
from typing import Any, Callable, Iterator

import pyarrow as pa

import terndb

LOAD_BATCH = 500_000


def row_batches(n: int) -> Iterator[pa.Table]:
    """The rows to load, as Arrow tables of LOAD_BATCH rows (built once per batch)."""
    for start in range(0, n, LOAD_BATCH):
        ids = pa.array(range(start, min(n, start + LOAD_BATCH)), pa.int64())
        ints = pa.compute.bit_wise_and(ids, pa.scalar(1023, pa.int64()))
        floats = pa.compute.multiply(ids.cast(pa.float64()), pa.scalar(0.25))
        texts = pa.compute.binary_join_element_wise(pa.scalar("row"), ids.cast(pa.string()), "")
        yield pa.table({"id": ids, "n": ints, "x": floats, "s": texts})


def load_terndb(path: str, n: int) -> Any:
    con = terndb.connect(path, durability="off")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT)")
    for batch in row_batches(n):
        con.ingest("t", batch)
        con.commit()
    return con


def load_sqlite(path: str, n: int) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT)")
    for batch in row_batches(n):
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", zip(*(c.to_pylist() for c in batch.columns)))
        con.commit()
    return con


def iterate(cursor: Any) -> int:
    count = 0
    for _row in cursor:
        count += 1
    return count


def fetchmany(cursor: Any) -> int:
    count = 0
    while True:
        rows = cursor.fetchmany(10_000)
        if not rows:
            return count
        count += len(rows)


ARROW_PEAK = [0]   # pyarrow pool bytes, sampled while each batch is alive


def record_batches(cursor: Any) -> int:
    count = 0
    pool = pa.default_memory_pool()
    for batch in cursor.fetch_record_batch(rows_per_batch=100_000):
        count += batch.num_rows
        ARROW_PEAK[0] = max(ARROW_PEAK[0], pool.bytes_allocated())
    return count


def measure(con: Any, read: Callable[[Any], int]) -> tuple[int, float, float, float]:
    """(rows, seconds, Python heap peak MB, Arrow pool peak MB) of one read of the table."""
    arrow_before = pa.default_memory_pool().bytes_allocated()
    ARROW_PEAK[0] = arrow_before
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    started = time.perf_counter()
    cursor = con.execute("SELECT * FROM t")
    rows = read(cursor)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    cursor.close()
    return rows, seconds, (peak - base) / 1e6, (ARROW_PEAK[0] - arrow_before) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        tern = load_terndb(os.path.join(directory, "tern"), args.rows)
        lite = load_sqlite(os.path.join(directory, "lite.db"), args.rows)
        print(f"loaded {args.rows:,} rows into each engine in {time.perf_counter() - started:.0f} s")
        print(f"{'engine':8} {'way':15} {'rows':>12} {'seconds':>8} {'heap peak MB':>13} {'arrow peak MB':>14}")
        runs = [("terndb", tern, "iterate", iterate), ("terndb", tern, "fetchmany", fetchmany),
                ("terndb", tern, "record_batches", record_batches),
                ("sqlite3", lite, "iterate", iterate), ("sqlite3", lite, "fetchmany", fetchmany)]
        for engine, con, name, read in runs:
            rows, seconds, heap, arrow = measure(con, read)
            arrow_text = f"{arrow:14.1f}" if engine == "terndb" else f"{'-':>14}"
            print(f"{engine:8} {name:15} {rows:>12,} {seconds:8.1f} {heap:13.1f} {arrow_text}")
        tern.close()
        lite.close()


if __name__ == "__main__":
    main()
