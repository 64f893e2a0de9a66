#!/usr/bin/env python
"""terndb's document API against sqlite3 ``executemany`` into an equivalent table.

Workloads (N small documents: id, name, age, score, breed; one commit each):

* ``insert``           ``collection.insert(list_of_dicts)`` into a fresh dynamic table
                       (its columns and their indexes are created by the first batch)
                       vs sqlite3 ``executemany`` of the same rows as tuples into a table
                       with the same columns and the same four indexes, made beforehand;
* ``insert_noindex``   the same with ``index_attributes=False`` vs sqlite3 without indexes;
* ``upsert``           ``collection.upsert`` of N documents over the loaded table (half new
                       keys) vs sqlite3 ``INSERT ... ON CONFLICT(id) DO UPDATE``;
* ``get``              N/5 × ``collection.get(pk)`` vs ``execute(SELECT * ... WHERE id = ?)``
                       + ``fetchone()`` turned into a dict.

sqlite3 runs in WAL mode with synchronous=NORMAL, terndb with durability="normal"
(the levels benchmarks/README.md pairs).  Medians of ``--reps`` runs, in documents per
second, and the ratio terndb / sqlite3 (higher is better for terndb).  The insert
workloads also run terndb's own ``executemany`` of the same tuples into a table made
like sqlite3's (column ``terndb-sql``): the last column, documents / executemany,
is what the document layer costs over plain SQL.

    python benchmarks/bench_documents.py            # N = 100,000, 5 repetitions
    python benchmarks/bench_documents.py --n 20000 --reps 3
"""
from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import statistics
import tempfile
import time
from typing import Any, Callable

import terndb

ATTRS = ("name", "age", "score", "breed")
BREEDS = ("lab", "pug", "collie", "husky", "beagle")


def documents(n: int, start: int = 0) -> list[dict]:
    return [{"id": i, "name": f"dog{i}", "age": i % 17, "score": i * 0.5, "breed": BREEDS[i % 5]}
            for i in range(start, start + n)]


def sqlite_connect(directory: str, indexed: bool) -> sqlite3.Connection:
    con = sqlite3.connect(os.path.join(directory, "s.db"))
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE dogs (id INTEGER PRIMARY KEY, name, age, score, breed)")
    if indexed:
        for a in ATTRS:
            con.execute(f"CREATE INDEX dogs__{a} ON dogs ({a})")
    con.commit()
    return con


def terndb_sql_connect(directory: str, indexed: bool) -> Any:
    """A terndb table made as sqlite3's (columns and indexes declared up front)."""
    con = terndb.connect(os.path.join(directory, "t"), durability="normal")
    con.execute("CREATE TABLE dogs (id INTEGER PRIMARY KEY, name, age, score, breed)")
    if indexed:
        for a in ATTRS:
            con.execute(f"CREATE INDEX dogs__{a} ON dogs ({a})")
    con.commit()
    return con


def terndb_connect(directory: str, indexed: bool) -> Any:
    con = terndb.connect(os.path.join(directory, "t"), durability="normal")
    con.create_document_table("dogs", index_attributes=indexed)
    return con


SQLITE_INSERT = "INSERT INTO dogs (id, name, age, score, breed) VALUES (?, ?, ?, ?, ?)"
SQLITE_UPSERT = SQLITE_INSERT + (" ON CONFLICT (id) DO UPDATE SET name = excluded.name, age = excluded.age,"
                                 " score = excluded.score, breed = excluded.breed")


def as_tuples(docs: list[dict]) -> list[tuple]:
    return [(d["id"], d["name"], d["age"], d["score"], d["breed"]) for d in docs]


def run_insert(engine: str, n: int, indexed: bool) -> float:
    docs = documents(n)
    with tempfile.TemporaryDirectory() as d:
        if engine in ("sqlite3", "terndb-sql"):
            con = sqlite_connect(d, indexed) if engine == "sqlite3" else terndb_sql_connect(d, indexed)
            t = time.perf_counter()
            con.executemany(SQLITE_INSERT, as_tuples(docs))
            con.commit()
        else:
            con = terndb_connect(d, indexed)
            t = time.perf_counter()
            con.documents("dogs").insert(docs)
            con.commit()
        elapsed = time.perf_counter() - t
        con.close()
    return n / elapsed


def run_upsert(engine: str, n: int) -> float:
    base, incoming = documents(n), documents(n, start=n // 2)
    with tempfile.TemporaryDirectory() as d:
        if engine == "sqlite3":
            con = sqlite_connect(d, True)
            con.executemany(SQLITE_INSERT, as_tuples(base))
            con.commit()
            t = time.perf_counter()
            con.executemany(SQLITE_UPSERT, as_tuples(incoming))
            con.commit()
        else:
            con = terndb_connect(d, True)
            coll = con.documents("dogs")
            coll.insert(base)
            con.commit()
            t = time.perf_counter()
            coll.upsert(incoming)
            con.commit()
        elapsed = time.perf_counter() - t
        con.close()
    return n / elapsed


def run_get(engine: str, n: int) -> float:
    lookups = max(n // 5, 1)
    keys = [(i * 7919) % n for i in range(lookups)]
    with tempfile.TemporaryDirectory() as d:
        if engine == "sqlite3":
            con = sqlite_connect(d, True)
            con.executemany(SQLITE_INSERT, as_tuples(documents(n)))
            con.commit()
            t = time.perf_counter()
            for k in keys:
                cur = con.execute("SELECT * FROM dogs WHERE id = ?", (k,))
                names = [c[0] for c in cur.description]
                dict(zip(names, cur.fetchone()))
        else:
            con = terndb_connect(d, True)
            coll = con.documents("dogs")
            coll.insert(documents(n))
            con.commit()
            t = time.perf_counter()
            for k in keys:
                coll.get(k)
        elapsed = time.perf_counter() - t
        con.close()
    return lookups / elapsed


WORKLOADS: dict[str, Callable[[str, int], float]] = {
    "insert": lambda e, n: run_insert(e, n, True),
    "insert_noindex": lambda e, n: run_insert(e, n, False),
    "upsert": run_upsert,
    "get": run_get,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="documents per workload")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated workload names")
    args = ap.parse_args()
    names = [w for w in args.only.split(",") if w] or list(WORKLOADS)
    print(f"N = {args.n:,} documents, {args.reps} repetitions, medians (docs/s)")
    print(f"{'workload':16} {'terndb':>10} {'sqlite3':>10} {'ratio':>6} {'terndb-sql':>11} {'docs/sql':>9}")
    for name in names:
        engines = ["terndb", "sqlite3"] + (["terndb-sql"] if name.startswith("insert") else [])
        runs: dict[str, list[float]] = {e: [] for e in engines}
        for rep in range(args.reps):
            for engine in engines if rep % 2 == 0 else engines[::-1]:
                gc.collect()
                runs[engine].append(WORKLOADS[name](engine, args.n))
        med = {e: statistics.median(r) for e, r in runs.items()}
        line = f"{name:16} {med['terndb']:10,.0f} {med['sqlite3']:10,.0f} {med['terndb'] / med['sqlite3']:6.2f}"
        if "terndb-sql" in med:
            line += f" {med['terndb-sql']:11,.0f} {med['terndb'] / med['terndb-sql']:9.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
