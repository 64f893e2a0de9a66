"""The compiled UPDATE loops' row building (cext/dml.pxi ``TableWriter._update_assigned``).

A plain UPDATE (no triggers, no RETURNING) evaluates its assignments, applies the
columns' affinities, checks NOT NULL and appends the rowid in one tuple, and hands
that row to the same checks and writes as ``TableWriter.update``, which the general
path (RETURNING, triggers, UPDATE ... FROM) still calls with a tuple of new values.
These tests run one workload three ways -- sqlite3, terndb plain (the compiled
loop, prepared from the second execution on) and terndb with ``RETURNING 1``
appended (the general path) -- and require equal tables and errors everywhere and
byte-identical committed change sets between the two terndb paths: affinities,
NOT NULL, the rowid alias set to a new key, to an existing key and to a
non-integer, rows written before ADD COLUMN, CHECK, UNIQUE and indexed columns,
WITHOUT ROWID and generated/JSON columns (which take ``update`` itself).
"""
from __future__ import annotations

import sqlite3
from typing import Any

import pytest

import terndb

from pep249_names import pep249_name

SCHEMA = [
    "CREATE TABLE t(id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, nm NUMERIC, bl BLOB, "
    "nn TEXT NOT NULL DEFAULT 'x', c INTEGER CHECK (c < 1000), u TEXT UNIQUE)",
    "CREATE INDEX t_i ON t(i)",
    "CREATE TABLE plain(a INT, b TEXT)",                           # a rowid table, no alias
    "CREATE TABLE k(p TEXT, q INTEGER, v REAL, PRIMARY KEY (p, q)) WITHOUT ROWID",
    "CREATE TABLE g(id INTEGER PRIMARY KEY, a INTEGER, twice INTEGER GENERATED ALWAYS AS (a * 2))",
]
LOAD = [
    ("INSERT INTO t(id, i, r, s, nm, bl, c, u) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
     [(n, n, n / 2, f"s{n}", n, bytes([n]), n, f"u{n}") for n in range(1, 31)]),
    ("INSERT INTO plain(a, b) VALUES (?, ?)", [(n, f"b{n}") for n in range(1, 21)]),
    ("INSERT INTO k VALUES (?, ?, ?)", [(f"p{n % 3}", n, n / 4) for n in range(1, 21)]),
    ("INSERT INTO g(id, a) VALUES (?, ?)", [(n, n) for n in range(1, 11)]),
]
AFTER_LOAD = ["ALTER TABLE plain ADD COLUMN z TEXT DEFAULT 'zed'"]   # old rows: fewer cells

# (statement, parameter sets); each set runs in turn, so every statement runs
# prepared from its second execution on.
WORKLOAD: list[tuple[str, list[tuple]]] = [
    ("UPDATE t SET i = ?, r = ?, s = ?, nm = ? WHERE id = ?",          # affinities
     [("12", 3, 45, "7.0", 1), ("x1", "2.5", 1.5, "1e3", 2), (4.0, "abc", None, "0x10", 3),
      (2**62, 7, b"\x00", "-0", 4), (" 5", 1e300, "", 3.0, 5)]),
    ("UPDATE t SET nn = ? WHERE id = ?", [("y", 6), (None, 7), ("z", 8)]),       # NOT NULL
    ("UPDATE t SET c = c + ? WHERE id = ?", [(1, 9), (5000, 10), (2, 11)]),      # CHECK
    ("UPDATE t SET u = ? WHERE id = ?", [("u13", 12), ("new", 13), ("u1", 14)]),  # UNIQUE
    ("UPDATE t SET i = i * 3 WHERE id BETWEEN ? AND ?", [(15, 18), (1, 2)]),    # indexed, several rows
    # The rowid alias.  (Set to NULL it differs from SQLite on both paths, not compared here.)
    ("UPDATE t SET id = ? WHERE id = ?", [(100, 19), (21, 22), ("abc", 23), ("101", 24),
                                          (25.0, 25), (2.5, 26), (1, 20)]),
    ("UPDATE t SET id = id + ?, s = s || 'k' WHERE id = ?", [(200, 27), (0, 28), (1, 29)]),
    ("UPDATE plain SET b = b || ? WHERE rowid = ?", [("+", 3), ("-", 4), ("=", 5)]),
    ("UPDATE plain SET z = ?, a = a + 1 WHERE a > ?", [("zz", 17), (None, 19)]),  # pre-ADD COLUMN rows
    ("UPDATE k SET v = v * ?, q = q + ? WHERE p = ? AND q = ?", [(2, 0, "p1", 1), (3, 100, "p2", 2),
                                                                  (1, 1, "p0", 3)]),
    ("UPDATE g SET a = a + ? WHERE id = ?", [(5, 1), (6, 2), (7, 3)]),            # generated column
]




def _run(con: Any, suffix: str) -> tuple[dict[str, list], list]:
    for sql in SCHEMA:
        con.execute(sql)
    for sql, rows in LOAD:
        con.executemany(sql, rows)
    for sql in AFTER_LOAD:
        con.execute(sql)
    con.commit()
    outcomes = []
    for sql, param_sets in WORKLOAD:
        for params in param_sets:
            try:
                cur = con.execute(sql + suffix, params)
                if suffix:
                    cur.fetchall()
                outcomes.append((sql, params, cur.rowcount))
            except Exception as err:      # both engines must refuse alike
                outcomes.append((sql, params, pep249_name(err)))
    con.commit()
    tables = {name: con.execute(f"SELECT *, typeof({col}) FROM {name} ORDER BY 1, 2").fetchall()
              for name, col in (("t", "i"), ("plain", "z"), ("k", "v"), ("g", "twice"))}
    tables["t_types"] = con.execute("SELECT id, typeof(r), typeof(s), typeof(nm), typeof(bl) "
                                    "FROM t ORDER BY id").fetchall()
    return tables, outcomes


def _changes(con: Any) -> list[tuple]:
    """Every committed change, without its clock: (op, table, key, record, mask)."""
    db = con._db
    with db.store.begin_read() as r:
        sets = [cs for _, cs in db.binlog.read(r.txn, 0)]
    return [e.as_tuple()[:5] for cs in sets for e in cs.entries]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lite = sqlite3.connect(":memory:")
    out["sqlite3"] = _run(lite, "")
    lite.close()
    for name, suffix in (("compiled", ""), ("general", " RETURNING 1")):
        con = terndb.connect(str(tmp_path_factory.mktemp(name) / "db"))
        try:
            out[name] = _run(con, suffix) + (_changes(con),)
        finally:
            con.close()
    return out


@pytest.mark.parametrize("path", ["compiled", "general"])
def test_tables_and_errors_equal_sqlite3(runs: dict[str, Any], path: str) -> None:
    tables, outcomes, _ = runs[path]
    lite_tables, lite_outcomes = runs["sqlite3"]
    assert outcomes == lite_outcomes
    assert sum(1 for o in outcomes if isinstance(o[2], str)) >= 5    # the workload meets its errors
    for name, rows in lite_tables.items():
        assert tables[name] == rows, name


def test_compiled_and_general_paths_write_the_same_change_sets(runs: dict[str, Any]) -> None:
    compiled, general = runs["compiled"][2], runs["general"][2]
    assert len(compiled) > 40
    assert compiled == general            # keys, records and changed-column masks, byte for byte
