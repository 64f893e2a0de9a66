"""The compiled readers of stored records agree with sqlite3 on every numeric cell width.

Row tuples, the in-place GROUP BY aggregate (numbers summed/counted/compared
without objects) and the direct Arrow scan each find cells with one shared
walk and decode numbers with one shared decoder (rowcodec.pxi); these rows
put the edges of every integer width (1..8 bytes), reals, NULLs and long
text cells to skip in front of them, plus rows older than an ADD COLUMN.
"""
from __future__ import annotations

import pytest

INT_EDGES = sorted({v for w in range(1, 9) for v in (2 ** (8 * w - 1) - 1, -(2 ** (8 * w - 1)))}
                   | {0, 1, 2, -1, 128, -129})
REALS = [0.0, -0.0, 1.5, -2.5e-300, 1e308, 123456789.25]


@pytest.fixture
def table(twin):
    twin.both("CREATE TABLE t (g INTEGER, s TEXT, iv INTEGER, rv REAL, v)")
    for i, iv in enumerate(INT_EDGES):
        mixed = REALS[i % len(REALS)] if i % 3 == 0 else (None if i % 7 == 0 else iv)
        twin.both("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                  (i % 4, "x" * (i * 37 % 300), iv, REALS[i % len(REALS)], mixed))
    # Rows written before the column existed read its default: the walk stops short.
    twin.both("ALTER TABLE t ADD COLUMN d INTEGER DEFAULT -300")
    twin.both("INSERT INTO t VALUES (9, 'late', 5, NULL, 2.5, 70000)")
    twin.commit()
    return twin


def both_rows(twin, sql: str) -> list:
    expected = twin.lite.execute(sql).fetchall()
    got = twin.tern.execute(sql).fetchall()
    assert got == expected, sql
    return got


def test_row_tuples(table):
    both_rows(table, "SELECT iv, rv, v, d, s FROM t ORDER BY rowid")


@pytest.mark.parametrize("sql", [
    # one row per group: the sums of 8-byte edges cannot overflow
    "SELECT iv, SUM(iv), COUNT(iv), MIN(v), MAX(v), SUM(d) FROM t GROUP BY iv",
    "SELECT g, COUNT(v), COUNT(*), MIN(iv), MAX(iv), MIN(rv), MAX(v), SUM(rv), SUM(d) FROM t GROUP BY g",
    "SELECT d, g, TOTAL(iv), AVG(rv), COUNT(d) FROM t GROUP BY d, g",
])
def test_in_place_aggregates(table, sql):
    assert both_rows(table, sql + " ORDER BY 1, 2")


def test_arrow_scan(table):
    expected = table.lite.execute("SELECT iv, rv, d, g FROM t ORDER BY rowid").fetchall()
    got = table.tern.execute("SELECT iv, rv, d, g FROM t").fetch_arrow_table()
    assert [str(got.schema.field(i).type) for i in range(4)] == ["int64", "double", "int64", "int64"]
    assert list(zip(*(got.column(i).to_pylist() for i in range(4)))) == expected
