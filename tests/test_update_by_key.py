"""UPDATE and DELETE by key, against sqlite3: the probe value's conversions.

An UPDATE/DELETE whose WHERE names the rowid (or its INTEGER PRIMARY KEY
alias) reads its row with one lookup and, since the lookup converts the probe
value exactly as the ``=`` would, applies no filter after it.  These tests pin
that equivalence on the values where a conversion could differ (text, reals,
NULL, blobs, the ends of the int64 range), on the keyed paths beside it (a text
key with a collation, a WITHOUT ROWID composite key), and run every statement
twice in one transaction so the second run takes the prepared path
(cext/stmt.pxi).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pep249_names import pep249_name

# Twin pairs come from tests/conftest.py (typed Any: a sub-suite's conftest shadows the module name).

PROBES: list[Any] = [
    5, "5", 5.0, 5.5, "5.0", "5.5", " 5", "5 ", "5abc", "0x5", "+5", "5e0", None, b"5", "",
    2**63 - 1, -2**63, str(2**63 - 1), 1e19, -1e19, 9.223372036854776e18, -9.223372036854776e18,
    "9223372036854775808", float("inf"), -0.0,
]

TABLES = {
    "ipk": ("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, x REAL)",
            [(i, i * 10, i / 2) for i in (0, 1, 4, 5, 6)] + [(2**63 - 1, 1, 1.0), (-2**63, 2, 2.0)]),
    "rowid": ("CREATE TABLE t(id INT, n INTEGER, x REAL)",
              [(i, i * 10, i / 2) for i in (0, 1, 4, 5, 6)]),
}


def _rows(con: Any, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def _both_write(pair: Any, sql: str, params: tuple) -> None:
    """Runs a write on both; the rowcount or the PEP 249 error class must agree."""
    results = []
    for con in (pair.lite, pair.tern):
        try:
            results.append(con.execute(sql, params).rowcount)
        except Exception as err:      # both must refuse alike (compared by the PEP 249 name)
            results.append(pep249_name(err))
    assert results[0] == results[1], (sql, params, results)




def _load(pair: Any, table: str) -> None:
    ddl, rows = TABLES[table]
    pair.both(ddl)
    marks = ", ".join("?" * len(rows[0]))
    insert = f"INSERT INTO t(rowid, id, n, x) VALUES (?, {marks})" if table == "rowid" else f"INSERT INTO t VALUES ({marks})"
    for r in rows:
        pair.both(insert, ((r[0],) + r) if table == "rowid" else r)
    pair.commit()


@pytest.mark.parametrize("table", sorted(TABLES))
@pytest.mark.parametrize("verb", ["update", "delete"])
def test_probe_values_match_sqlite(twin_factory: Callable[[], Any], table: str, verb: str) -> None:
    key = "id" if table == "ipk" else "rowid"
    for probe in PROBES:
        with twin_factory() as pair:
            _load(pair, table)
            if verb == "update":
                sql = f"UPDATE t SET n = n + 1, x = ? WHERE {key} = ?"
                params: tuple = (0.25, probe)
            else:
                sql = f"DELETE FROM t WHERE {key} = ?"
                params = (probe,)
            _both_write(pair, sql, params)
            _both_write(pair, sql, params)         # again in the transaction: the prepared path
            # The probe spelled as a literal, keyed side on the right.
            literal = _literal(probe)
            _both_write(pair, sql.replace(f"{key} = ?", f"{literal} = {key}"), params[:-1])
            pair.commit()
            query = "SELECT rowid, * FROM t ORDER BY rowid"
            assert _rows(pair.tern, query) == _rows(pair.lite, query), probe


def _literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return "x'" + v.hex() + "'"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return "9e999" if v > 0 else "-9e999"
    return repr(v)


def test_key_with_another_condition(twin: Any) -> None:
    """The filter keeps every conjunct but the probed equality."""
    _load(twin, "ipk")
    for sql, params in [
        ("UPDATE t SET n = -1 WHERE id = ? AND n > ?", (5, 40)),
        ("UPDATE t SET n = -2 WHERE id = ? AND n > ?", (4, 40)),
        ("UPDATE t SET n = -3 WHERE id = ? AND id = ?", (5, 6)),
        ("UPDATE t SET n = -4 WHERE id = ? AND id = ?", (5, "5")),
        ("UPDATE t SET n = -5 WHERE id = ? AND id > ?", (6, 5.5)),
        ("DELETE FROM t WHERE id = ? AND x IS NULL", (1,)),
        ("DELETE FROM t WHERE id = ? AND x IS NOT NULL", (1,)),
    ]:
        _both_write(twin, sql, params)
        _both_write(twin, sql, params)
    twin.commit()
    assert _rows(twin.tern, "SELECT * FROM t ORDER BY id") == _rows(twin.lite, "SELECT * FROM t ORDER BY id")


def test_key_expression_evaluated_once(twin: Any) -> None:
    """A volatile probe is evaluated once, as SQLite does: with ids 1..3 all present,
    ``id = abs(random()) % 3 + 1`` always designates exactly one row."""
    twin.both("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER)")
    for i in (1, 2, 3):
        twin.both("INSERT INTO t VALUES (?, 0)", (i,))
    for _ in range(40):
        cur = twin.tern.execute("UPDATE t SET n = n + 1 WHERE id = abs(random()) % 3 + 1")
        assert cur.rowcount == 1
    assert twin.tern.execute("SELECT sum(n) FROM t").fetchone() == (40,)


@pytest.mark.parametrize("probe", ["abc", "ABC", "abc ", 5, "5", None])
def test_text_key_with_collation(twin: Any, probe: Any) -> None:
    twin.both("CREATE TABLE t(k TEXT COLLATE NOCASE PRIMARY KEY, n INTEGER)")
    for k in ("abc", "5", "xyz"):
        twin.both("INSERT INTO t VALUES (?, 0)", (k,))
    for sql in ("UPDATE t SET n = n + 1 WHERE k = ?", "UPDATE t SET n = n + 10 WHERE k = ? COLLATE BINARY",
                "DELETE FROM t WHERE k = ? AND n > 100"):
        _both_write(twin, sql, (probe,))
        _both_write(twin, sql, (probe,))
    twin.commit()
    assert _rows(twin.tern, "SELECT * FROM t ORDER BY k") == _rows(twin.lite, "SELECT * FROM t ORDER BY k")


@pytest.mark.parametrize("probe", [(1, "a"), ("1", "a"), (1.0, "A"), (1.5, "a"), (None, "a"), (2, "b")])
def test_without_rowid_composite_key(twin: Any, probe: tuple) -> None:
    twin.both("CREATE TABLE t(a INTEGER, b TEXT, n INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID")
    for a, b in ((1, "a"), (1, "b"), (2, "b")):
        twin.both("INSERT INTO t VALUES (?, ?, 0)", (a, b))
    for sql in ("UPDATE t SET n = n + 1 WHERE a = ? AND b = ?", "DELETE FROM t WHERE b = ? AND a = ? AND n > 5"):
        params = probe if sql.startswith("UPDATE") else probe[::-1]
        _both_write(twin, sql, params)
        _both_write(twin, sql, params)
    twin.commit()
    assert _rows(twin.tern, "SELECT * FROM t ORDER BY a, b") == _rows(twin.lite, "SELECT * FROM t ORDER BY a, b")


def test_prepared_update_sees_its_previous_executions(twin: Any) -> None:
    """A re-executed UPDATE (its execution context reused within the transaction)
    recomputes an uncorrelated sub-select each time: the last run's write shows."""
    twin.both("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER)")
    for i in range(1, 6):
        twin.both("INSERT INTO t VALUES (?, ?)", (i, i))
    twin.commit()
    sql = "UPDATE t SET n = (SELECT max(n) FROM t) + 1 WHERE id = ?"
    for key in (1, 2, 3, 1, 5, 9):
        _both_write(twin, sql, (key,))
    twin.commit()
    assert _rows(twin.tern, "SELECT * FROM t ORDER BY id") == _rows(twin.lite, "SELECT * FROM t ORDER BY id")


def test_prepared_update_across_savepoints(twin: Any) -> None:
    """Executions of one UPDATE between SAVEPOINT, ROLLBACK TO and RELEASE (each
    changes the LMDB transaction underneath) read and write the right one."""
    twin.both("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, u INTEGER UNIQUE)")
    for i in range(1, 6):
        twin.both("INSERT INTO t VALUES (?, 0, ?)", (i, i))
    twin.commit()
    upd = "UPDATE t SET n = n + ? WHERE id = ?"
    steps: list[tuple[str, tuple]] = [
        (upd, (1, 1)), (upd, (1, 2)), ("SAVEPOINT a", ()), (upd, (10, 1)), (upd, (10, 3)),
        ("ROLLBACK TO a", ()), (upd, (100, 1)), ("SAVEPOINT b", ()), (upd, (1000, 4)),
        ("RELEASE b", ()), (upd, (5, 4)), ("RELEASE a", ()), (upd, (7, 5)),
        ("UPDATE t SET u = ? WHERE id = ?", (2, 1)),       # a constraint failure in between
        (upd, (9, 1)),
    ]
    for sql, params in steps:
        _both_write(twin, sql, params)
        query = "SELECT * FROM t ORDER BY id"
        assert _rows(twin.tern, query) == _rows(twin.lite, query), sql
    twin.commit()
    assert _rows(twin.tern, "SELECT * FROM t ORDER BY id") == _rows(twin.lite, "SELECT * FROM t ORDER BY id")


def test_rowid_alias_set_to_null_is_a_datatype_mismatch(twin: Any) -> None:
    """UPDATE never makes a rowid up (INSERT does): SET id = NULL is refused, as in sqlite3,
    by key, by scan, prepared and through UPSERT's DO UPDATE."""
    twin.both("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
    twin.both("INSERT INTO t VALUES (1, 10), (2, 20), (3, 30)")
    for sql, params in [
        ("UPDATE t SET id = NULL WHERE id = ?", (1,)),
        ("UPDATE t SET id = NULL WHERE id = ?", (2,)),
        ("UPDATE t SET id = NULL WHERE n > ?", (15,)),
        ("UPDATE t SET id = ?, n = n + 1 WHERE id = ?", (None, 3)),
        ("INSERT INTO t VALUES (?, 0) ON CONFLICT (id) DO UPDATE SET id = NULL", (2,)),
        ("UPDATE t SET n = n + 1 WHERE id = ?", (1,)),
    ]:
        _both_write(twin, sql, params)
    twin.commit()
    assert _rows(twin.tern, "SELECT * FROM t ORDER BY id") == _rows(twin.lite, "SELECT * FROM t ORDER BY id")
