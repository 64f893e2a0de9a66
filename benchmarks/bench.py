#!/usr/bin/env python
"""terndb against sqlite3: the same workloads, in one run, interleaved.

Every workload is a pair of functions over *any* DB-API module and
connection (qmark parameters, implicit transactions, ``commit()``), so the
same code drives terndb and sqlite3.  sqlite3 runs in WAL mode with
``synchronous=NORMAL``; terndb with ``durability="normal"``, the level
documented as its equivalent (see benchmarks/README.md).

For each repetition the engines take turns (in alternating order, so
neither always runs on a warmer machine), and the table shows each
engine's median throughput (operations per second, higher is better) and
the ratio of the first engine to the last (by default terndb / sqlite3).
A workload an engine cannot run yet (a missing feature, an error) shows
``n/a`` with the error below the table; it never stops the script.

    python benchmarks/bench.py                       # full sizes, 5 repetitions
    python benchmarks/bench.py --quick               # small sizes: a CI smoke run
    python benchmarks/bench.py --only point_select,range_scan --reps 9
    python benchmarks/bench.py --json results.json   # also write JSON ('-': stdout)
    python benchmarks/bench.py --engines sqlite3,sqlite3   # check the harness
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any, Callable

# --------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sizes:
    insert_rows: int = 100_000
    table_rows: int = 100_000        # the table point selects, scans, updates use
    point_selects: int = 50_000
    range_scans: int = 200
    range_rows: int = 1_000
    updates: int = 50_000
    commits: int = 2_000
    big_rows: int = 1_000_000        # GROUP BY and pandas
    small_group_rows: int = 100_000
    groups: int = 100
    orders: int = 200_000
    customers: int = 10_000
    regions: int = 20
    documents: int = 100_000         # nested-JSON order documents, joined to the customers


QUICK = Sizes(insert_rows=2_000, table_rows=2_000, point_selects=1_000, range_scans=20,
              range_rows=100, updates=1_000, commits=50, big_rows=10_000,
              small_group_rows=2_000, groups=10, orders=5_000, customers=500, regions=5,
              documents=5_000)


class NotAvailable(Exception):
    """An engine lacks what a workload needs (shown as n/a with this note)."""


# --------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------

def open_sqlite3(directory: str) -> tuple[Any, Any]:
    connection = sqlite3.connect(os.path.join(directory, "bench.sqlite"))
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return sqlite3, connection


def open_terndb(directory: str) -> tuple[Any, Any]:
    import terndb
    if not hasattr(terndb, "connect"):
        raise NotAvailable("terndb.connect does not exist yet")
    path = os.path.join(directory, "db")
    return terndb, terndb.connect(path, durability="normal")


ENGINES: dict[str, Callable[[str], tuple[Any, Any]]] = {
    "terndb": open_terndb,
    "sqlite3": open_sqlite3,
}


# --------------------------------------------------------------------------
# Data (deterministic, shared by the engines of one run)
# --------------------------------------------------------------------------

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


@functools.lru_cache(maxsize=None)
def main_rows(count: int, groups: int = 1000) -> list[tuple]:
    """(id, n, x, a, b): an INTEGER PRIMARY KEY, an int, a float, two short texts."""
    rng = random.Random(count)
    return [(i, rng.randrange(groups), rng.random() * 1000.0,
             rng.choice(_WORDS), f"item-{i % 9973}") for i in range(1, count + 1)]


@functools.lru_cache(maxsize=None)
def customer_rows(count: int, regions: int) -> list[tuple]:
    return [(i, f"customer {i}", f"region-{i % regions}") for i in range(1, count + 1)]


@functools.lru_cache(maxsize=None)
def order_rows(count: int, customers: int) -> list[tuple]:
    rng = random.Random(count)
    return [(i, rng.randint(1, customers), round(rng.random() * 500.0, 2), rng.randint(1, 9))
            for i in range(1, count + 1)]


@functools.lru_cache(maxsize=None)
def order_documents(count: int, customers: int) -> list[tuple]:
    """(id, JSON text): {"user": {"id", "name"}, "items": [{"sku", "qty", "price"}...], "total"}."""
    rng = random.Random(count + 1)
    rows = []
    for i in range(1, count + 1):
        items = [{"sku": f"sku-{rng.randrange(500)}", "qty": rng.randint(1, 5),
                  "price": round(rng.random() * 100.0, 2)} for _ in range(rng.randint(1, 4))]
        doc = {"user": {"id": rng.randint(1, customers), "name": f"user {i % 977}"},
               "items": items, "total": round(sum(it["qty"] * it["price"] for it in items), 2)}
        rows.append((i, json.dumps(doc)))
    return rows


MAIN_DDL = "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL, a TEXT, b TEXT)"
MAIN_INSERT = "INSERT INTO t (id, n, x, a, b) VALUES (?, ?, ?, ?, ?)"


def load_main_table(module: Any, connection: Any, rows: list[tuple]) -> None:
    cursor = connection.cursor()
    cursor.execute(MAIN_DDL)
    cursor.executemany(MAIN_INSERT, rows)
    connection.commit()


# Datasets: databases built once per engine (untimed) and shared by the
# workloads that name them.  None means a new empty database per repetition.
DATASETS: dict[str, Callable[[Any, Any, Sizes], None]] = {
    "table": lambda m, c, s: load_main_table(m, c, main_rows(s.table_rows)),
    "big": lambda m, c, s: load_main_table(m, c, main_rows(s.big_rows, s.groups)),
    "small_group": lambda m, c, s: load_main_table(m, c, main_rows(s.small_group_rows, s.groups)),
    "empty": lambda m, c, s: load_main_table(m, c, []),
    "shop": lambda m, c, s: load_shop(c, s),
    "documents": lambda m, c, s: load_documents(c, s, indexed=True),
    "documents_noindex": lambda m, c, s: load_documents(c, s, indexed=False),
}


def load_shop(connection: Any, sizes: Sizes) -> None:
    cursor = connection.cursor()
    cursor.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, region TEXT)")
    cursor.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, "
                   "amount REAL, qty INTEGER)")
    cursor.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                       customer_rows(sizes.customers, sizes.regions))
    cursor.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                       order_rows(sizes.orders, sizes.customers))
    connection.commit()


# The same expression index on both engines (issue 4's path index).
DOCUMENT_INDEX = "CREATE INDEX orders_user ON orders (doc ->> '$.user.id')"


# The documents' column type: JSON (terndb stores JSONB; SQLite keeps the text,
# as it does for any column of NUMERIC affinity).  --doc-type TEXT measures
# terndb's text path instead.
DOC_COLUMN_TYPE = "JSON"


def load_documents(connection: Any, sizes: Sizes, indexed: bool) -> None:
    cursor = connection.cursor()
    cursor.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, region TEXT)")
    cursor.execute(f"CREATE TABLE orders (id INTEGER PRIMARY KEY, doc {DOC_COLUMN_TYPE})")
    cursor.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                       customer_rows(sizes.customers, sizes.regions))
    cursor.executemany("INSERT INTO orders VALUES (?, ?)", order_documents(sizes.documents, sizes.customers))
    if indexed:
        cursor.execute(DOCUMENT_INDEX)
    connection.commit()


# --------------------------------------------------------------------------
# Workloads: each returns the number of operations it did
# --------------------------------------------------------------------------

def create_main_table(module: Any, connection: Any, sizes: Sizes) -> None:
    connection.cursor().execute(MAIN_DDL)
    connection.commit()
    main_rows(sizes.insert_rows)  # build (and cache) the rows before the clock starts


def run_insert_executemany(module: Any, connection: Any, sizes: Sizes) -> int:
    rows = main_rows(sizes.insert_rows)
    connection.cursor().executemany(MAIN_INSERT, rows)
    connection.commit()
    return len(rows)


def _random_ids(count: int, upper: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, upper) for _ in range(count)]


def run_point_select(module: Any, connection: Any, sizes: Sizes) -> int:
    ids = _random_ids(sizes.point_selects, sizes.table_rows, 1)
    cursor = connection.cursor()
    sql = "SELECT id, n, x, a, b FROM t WHERE id = ?"
    for key in ids:
        cursor.execute(sql, (key,))
        if cursor.fetchone() is None:
            raise AssertionError(f"row {key} not found")
    return len(ids)


def run_range_scan(module: Any, connection: Any, sizes: Sizes) -> int:
    starts = _random_ids(sizes.range_scans, sizes.table_rows - sizes.range_rows + 1, 2)
    cursor = connection.cursor()
    sql = "SELECT id, n, x, a, b FROM t WHERE id BETWEEN ? AND ?"
    fetched = 0
    for start in starts:
        cursor.execute(sql, (start, start + sizes.range_rows - 1))
        fetched += len(cursor.fetchall())
    if fetched != sizes.range_scans * sizes.range_rows:
        raise AssertionError(f"range scans returned {fetched} rows")
    return fetched


def _sqlite_regexp(pattern: str, value: Any) -> int | None:
    """The REGEXP function an application gives sqlite3 (SQLAlchemy's definition)."""
    if pattern is None or value is None:
        return None
    return 1 if re.search(pattern, str(value)) else 0


def run_regexp_scan(module: Any, connection: Any, sizes: Sizes) -> int:
    """A full scan filtered by REGEXP: terndb's built-in against sqlite3 with a Python function."""
    if module is sqlite3:
        connection.create_function("regexp", 2, _sqlite_regexp, deterministic=True)
    cursor = connection.cursor()
    cursor.execute("SELECT COUNT(*) FROM t WHERE b REGEXP ?", (r"-\d*7$",))
    matched = cursor.fetchone()[0]
    if not 0 < matched < sizes.table_rows:
        raise AssertionError(f"REGEXP matched {matched} rows")
    return sizes.table_rows


GROUP_BY_SQL = "SELECT n, COUNT(*), SUM(x), AVG(x), MAX(b) FROM t GROUP BY n"


def _group_by(connection: Any, expected_rows: int, groups: int) -> int:
    cursor = connection.cursor()
    cursor.execute(GROUP_BY_SQL)
    result = cursor.fetchall()
    if len(result) != groups or sum(r[1] for r in result) != expected_rows:
        raise AssertionError(f"GROUP BY returned {len(result)} groups")
    return expected_rows


def run_group_by_1m(module: Any, connection: Any, sizes: Sizes) -> int:
    return _group_by(connection, sizes.big_rows, sizes.groups)


def run_group_by_100k(module: Any, connection: Any, sizes: Sizes) -> int:
    return _group_by(connection, sizes.small_group_rows, sizes.groups)


def run_update_by_pk(module: Any, connection: Any, sizes: Sizes) -> int:
    ids = _random_ids(sizes.updates, sizes.table_rows, 3)
    cursor = connection.cursor()
    sql = "UPDATE t SET n = n + 1, x = ? WHERE id = ?"
    for key in ids:
        cursor.execute(sql, (key * 0.5, key))
    connection.commit()
    return len(ids)


def run_commit_per_insert(module: Any, connection: Any, sizes: Sizes) -> int:
    cursor = connection.cursor()
    sql = "INSERT INTO t (n, x, a, b) VALUES (?, ?, ?, ?)"
    for i in range(sizes.commits):
        cursor.execute(sql, (i, i * 0.25, "commit", f"row-{i}"))
        connection.commit()
    return sizes.commits


JOIN_SQL = ("SELECT c.region, COUNT(*), SUM(o.amount), AVG(o.qty) "
            "FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region")


def run_join_group_by(module: Any, connection: Any, sizes: Sizes) -> int:
    cursor = connection.cursor()
    cursor.execute(JOIN_SQL)
    result = cursor.fetchall()
    if len(result) != sizes.regions or sum(r[1] for r in result) != sizes.orders:
        raise AssertionError(f"join returned {len(result)} groups")
    return sizes.orders


JSON_JOIN_SQL = ("SELECT c.region, COUNT(*), SUM(o.doc ->> '$.total') FROM orders o "
                 "JOIN customers c ON c.id = o.doc ->> '$.user.id' GROUP BY c.region")


def run_json_join_group_by(module: Any, connection: Any, sizes: Sizes) -> int:
    cursor = connection.cursor()
    cursor.execute(JSON_JOIN_SQL)
    result = cursor.fetchall()
    if len(result) != sizes.regions or sum(r[1] for r in result) != sizes.documents:
        raise AssertionError(f"JSON join returned {len(result)} groups")
    return sizes.documents


def run_json_path_scan(module: Any, connection: Any, sizes: Sizes) -> int:
    cursor = connection.cursor()
    cursor.execute("SELECT doc ->> '$.user.id' FROM orders")
    result = cursor.fetchall()
    if len(result) != sizes.documents:
        raise AssertionError(f"JSON path scan returned {len(result)} rows")
    return sizes.documents


def run_fetch_pandas(module: Any, connection: Any, sizes: Sizes) -> int:
    sql = "SELECT id, n, x, a, b FROM t"
    cursor = connection.cursor()
    if module is sqlite3:
        import pandas as pd
        frame = pd.read_sql(sql, connection)
    elif hasattr(cursor, "fetch_df"):
        cursor.execute(sql)
        frame = cursor.fetch_df()
    else:
        raise NotAvailable(f"{module.__name__} cursors have no fetch_df()")
    if len(frame) != sizes.big_rows or len(frame.columns) != 5:
        raise AssertionError(f"DataFrame of shape {frame.shape}")
    return len(frame)


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    unit: str                      # what one operation is
    size: Callable[[Sizes], int]   # for the table: how big the workload is
    dataset: str | None            # None: a new empty database per repetition
    run: Callable[[Any, Any, Sizes], int]
    setup: Callable[[Any, Any, Sizes], None] | None = None  # untimed, before each run


# Read-only workloads come before the ones that write to a shared dataset.
WORKLOADS = [
    Workload("insert_executemany", "rows", lambda s: s.insert_rows, None, run_insert_executemany,
             setup=create_main_table),
    Workload("point_select", "queries", lambda s: s.point_selects, "table", run_point_select),
    Workload("range_scan", "rows", lambda s: s.range_scans * s.range_rows, "table", run_range_scan),
    Workload("regexp_scan", "rows", lambda s: s.table_rows, "table", run_regexp_scan),
    Workload("group_by_1m", "rows", lambda s: s.big_rows, "big", run_group_by_1m),
    Workload("group_by_100k", "rows", lambda s: s.small_group_rows, "small_group",
             run_group_by_100k),
    Workload("join_group_by", "rows", lambda s: s.orders, "shop", run_join_group_by),
    Workload("json_join_group_by", "docs", lambda s: s.documents, "documents", run_json_join_group_by),
    Workload("json_join_noindex", "docs", lambda s: s.documents, "documents_noindex",
             run_json_join_group_by),
    Workload("json_path_scan", "docs", lambda s: s.documents, "documents_noindex", run_json_path_scan),
    Workload("fetch_pandas", "rows", lambda s: s.big_rows, "big", run_fetch_pandas),
    Workload("update_by_pk", "updates", lambda s: s.updates, "table", run_update_by_pk),
    Workload("commit_per_insert", "commits", lambda s: s.commits, "empty", run_commit_per_insert),
]


# --------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Cell:
    """One engine's results for one workload."""
    runs: list[float] = dataclasses.field(default_factory=list)  # ops/s per repetition
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs and not self.error else None


class Database:
    """One engine's open database in its own temporary directory."""

    def __init__(self, opener: Callable[[str], tuple[Any, Any]]) -> None:
        self.directory = tempfile.mkdtemp(prefix="terndb-bench-")
        try:
            self.module, self.connection = opener(self.directory)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def close(self) -> None:
        try:
            self.connection.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if not isinstance(error, NotAvailable) else str(error)
    return text.splitlines()[0][:200] if text else type(error).__name__


class Runner:
    def __init__(self, engines: list[tuple[str, Callable]], sizes: Sizes, reps: int,
                 log: Callable[[str], None]) -> None:
        self.engines = engines
        self.sizes = sizes
        self.reps = reps
        self.log = log
        self.shared: dict[tuple[str, str], Database] = {}   # (engine label, dataset)
        self.dataset_errors: dict[tuple[str, str], str] = {}

    def run(self, workloads: list[Workload]) -> dict[str, dict[str, Cell]]:
        results: dict[str, dict[str, Cell]] = {}
        for index, workload in enumerate(workloads):
            self.log(f"{workload.name} ...")
            results[workload.name] = self._run_workload(workload)
            still_needed = {w.dataset for w in workloads[index + 1:]}
            self._close_datasets_except(still_needed)
        self._close_datasets_except(set())
        return results

    def _run_workload(self, workload: Workload) -> dict[str, Cell]:
        cells = {label: Cell() for label, _ in self.engines}
        for rep in range(self.reps):
            # Alternate the order so neither engine always goes first.
            order = self.engines if rep % 2 == 0 else self.engines[::-1]
            for label, opener in order:
                cell = cells[label]
                if cell.error is None:
                    self._one_run(workload, label, opener, cell)
        return cells

    def _one_run(self, workload: Workload, label: str, opener: Callable, cell: Cell) -> None:
        try:
            database = self._database_for(workload, label, opener)
        except Exception as error:  # noqa: BLE001 - any failure is reported as n/a
            cell.error = describe(error)
            return
        try:
            if workload.setup is not None:
                workload.setup(database.module, database.connection, self.sizes)
            gc.collect()
            started = time.perf_counter()
            operations = workload.run(database.module, database.connection, self.sizes)
            cell.runs.append(operations / (time.perf_counter() - started))
        except Exception as error:  # noqa: BLE001
            cell.error = describe(error)
        finally:
            if workload.dataset is None:
                database.close()

    def _database_for(self, workload: Workload, label: str, opener: Callable) -> Database:
        if workload.dataset is None:
            return Database(opener)
        key = (label, workload.dataset)
        if key in self.dataset_errors:
            raise NotAvailable(self.dataset_errors[key])
        if key not in self.shared:
            try:
                database = Database(opener)
            except Exception as error:
                self.dataset_errors[key] = describe(error)
                raise
            try:
                self.log(f"  loading dataset {workload.dataset!r} into {label}")
                DATASETS[workload.dataset](database.module, database.connection, self.sizes)
            except Exception as error:
                database.close()
                self.dataset_errors[key] = f"loading {workload.dataset}: {describe(error)}"
                raise NotAvailable(self.dataset_errors[key]) from error
            self.shared[key] = database
        return self.shared[key]

    def _close_datasets_except(self, keep: set[str | None]) -> None:
        for key in [k for k in self.shared if k[1] not in keep]:
            self.shared.pop(key).close()


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def ratio(cells: dict[str, Cell], labels: list[str]) -> float | None:
    first, last = cells[labels[0]].median, cells[labels[-1]].median
    if first is None or last is None or len(labels) < 2:
        return None
    return first / last


def format_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def print_table(results: dict[str, dict[str, Cell]], workloads: list[Workload],
                labels: list[str], sizes: Sizes, out=sys.stdout) -> None:
    headers = ["workload", "unit", "size"] + [f"{label} ops/s" for label in labels]
    if len(labels) > 1:
        headers.append(f"{labels[0]}/{labels[-1]}")
    rows = []
    notes = []
    for workload in workloads:
        cells = results[workload.name]
        row = [workload.name, workload.unit, f"{workload.size(sizes):,}"]
        row += [format_rate(cells[label].median) for label in labels]
        if len(labels) > 1:
            value = ratio(cells, labels)
            row.append("n/a" if value is None else f"{value:.2f}")
        rows.append(row)
        notes += [f"{workload.name} [{label}]: {cells[label].error}"
                  for label in labels if cells[label].error]
    widths = [max(len(r[i]) for r in rows + [headers]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    print(line(headers), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print(line(row), file=out)
    if notes:
        print("\nn/a:", file=out)
        for note in notes:
            print(f"  {note}", file=out)


def as_json(results: dict[str, dict[str, Cell]], workloads: list[Workload], labels: list[str],
            sizes: Sizes, args: argparse.Namespace) -> dict:
    return {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "sqlite": sqlite3.sqlite_version},
        "reps": args.reps, "quick": args.quick, "engines": labels,
        "ratio": f"{labels[0]}/{labels[-1]}" if len(labels) > 1 else None,
        "workloads": [{
            "name": w.name, "unit": w.unit, "size": w.size(sizes),
            "results": {label: {"median_ops_per_s": results[w.name][label].median,
                                "best_ops_per_s": max(results[w.name][label].runs, default=None),
                                "runs_ops_per_s": results[w.name][label].runs,
                                "error": results[w.name][label].error}
                        for label in labels},
            "ratio": ratio(results[w.name], labels),
        } for w in workloads],
    }


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--reps", type=int, help="repetitions per engine (default 5, quick 3)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only these workloads (comma-separated, repeatable)")
    parser.add_argument("--engines", default="terndb,sqlite3",
                        help="comma-separated engines, first is compared to last "
                             f"(known: {', '.join(ENGINES)})")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="also write results as JSON to PATH ('-' or no PATH: stdout)")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument("--doc-type", choices=["JSON", "TEXT"], default=DOC_COLUMN_TYPE,
                        help="declared type of the JSON workloads' document column (default JSON)")
    args = parser.parse_args(argv)
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    return args


def select_workloads(only: list[str]) -> list[Workload]:
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    known = {w.name: w for w in WORKLOADS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [w for w in WORKLOADS if not names or w.name in names]


def select_engines(spec: str) -> list[tuple[str, Callable]]:
    engines = []
    for name in (n.strip() for n in spec.split(",")):
        if name not in ENGINES:
            raise SystemExit(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
        label = name
        count = 2
        while label in {taken for taken, _ in engines}:  # sqlite3,sqlite3 -> sqlite3#2
            label, count = f"{name}#{count}", count + 1
        engines.append((label, ENGINES[name]))
    return engines


def main(argv: list[str] | None = None) -> int:
    global DOC_COLUMN_TYPE
    args = parse_args(argv)
    DOC_COLUMN_TYPE = args.doc_type
    if args.list:
        for workload in WORKLOADS:
            print(workload.name)
        return 0
    workloads = select_workloads(args.only)
    engines = select_engines(args.engines)
    sizes = QUICK if args.quick else Sizes()
    labels = [label for label, _ in engines]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if any(w.name == "fetch_pandas" for w in workloads):
        try:  # import now, so the first timed run doesn't pay for it
            import pandas  # noqa: F401
        except ImportError:
            pass  # the workload then reports n/a
    # pandas warns that it only supports sqlite3 and SQLAlchemy connections.
    warnings.filterwarnings("ignore", message=".*pandas only supports SQLAlchemy.*")
    results = Runner(engines, sizes, args.reps, log).run(workloads)
    json_to_stdout = args.json == "-"
    print_table(results, workloads, labels, sizes, out=sys.stderr if json_to_stdout else sys.stdout)
    if args.json:
        document = json.dumps(as_json(results, workloads, labels, sizes, args), indent=2)
        if json_to_stdout:
            print(document)
        else:
            with open(args.json, "w", encoding="utf-8") as handle:
                handle.write(document + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
