"""Corners of SQLite's SQL that terndb once answered differently, each compared with sqlite3.

* ORDER BY / GROUP BY terms that fold to an integer constant (``(- 0)``,
  ``(x AND 0)``) are column positions, so out of range is an error naming the
  term (SQLite's sqlite3ExprIsInteger and its parser's AND folding);
* of rows equal but for type (``0`` and ``0.0``), UNION / INTERSECT / EXCEPT
  return the last one read, DISTINCT and GROUP BY the first;

Rows are compared in order, value and type exactly; where sqlite3 raises,
terndb must raise a terndb error with the same message.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest

import terndb

SETUP = [
    "CREATE TABLE t(id INTEGER, x TEXT)",
    "INSERT INTO t VALUES (2, 'b'), (1, 'a'), (3, 'c')",
]


@pytest.fixture(scope="module")
def pair():
    tern = terndb.connect(":memory:")
    lite = sqlite3.connect(":memory:")
    for sql in SETUP:
        tern.execute(sql)
        lite.execute(sql)
    tern.commit()
    lite.commit()
    yield tern, lite
    tern.close()
    lite.close()


def _typed(rows: Sequence[Sequence[Any]]) -> list[tuple]:
    return [tuple((type(v).__name__, v) for v in r) for r in rows]


def check(pair: tuple, sql: str, *, ordered: bool = True) -> None:
    """Same rows (typed; in order unless told) or the same error message as sqlite3."""
    tern, lite = pair
    try:
        expected = lite.execute(sql).fetchall()
    except sqlite3.Error as e:
        with pytest.raises(terndb.Error) as info:
            tern.execute(sql).fetchall()
        assert str(info.value) == str(e), sql
        return
    got = tern.execute(sql).fetchall()
    if not ordered:
        got, expected = sorted(got, key=repr), sorted(expected, key=repr)
    assert _typed(got) == _typed(expected), f"\n  SQL: {sql}\n  tern: {got}\n  lite: {expected}"


# -- integer ORDER BY / GROUP BY terms ------------------------------------------------

POSITION_QUERIES = [
    "SELECT id FROM t ORDER BY (- 0)",
    "SELECT id FROM t ORDER BY (id AND 0)",
    "SELECT id FROM t ORDER BY (0 AND id)",
    "SELECT id FROM t ORDER BY (id AND (0))",
    "SELECT id FROM t ORDER BY id AND 0 AND 1",
    "SELECT id FROM t ORDER BY -1",
    "SELECT id FROM t ORDER BY -(1)",
    "SELECT id FROM t ORDER BY (- - 1)",
    "SELECT id FROM t ORDER BY (1) DESC",
    "SELECT id, x FROM t ORDER BY 1, (0 AND id)",
    "SELECT id, x FROM t ORDER BY 1, 1, 3",
    "SELECT id, x FROM t ORDER BY 2 DESC",
    "SELECT x FROM t ORDER BY 1 COLLATE NOCASE DESC",
    # Not positions: sorted by a constant, so the scan order stays.
    "SELECT id FROM t ORDER BY (id AND 1)",
    "SELECT id FROM t ORDER BY (id AND -0)",
    "SELECT id FROM t ORDER BY (id AND false)",
    "SELECT id FROM t ORDER BY 0 OR id",
    "SELECT id FROM t ORDER BY 1.0",
    "SELECT id FROM t ORDER BY 2147483648",
    "SELECT id FROM t ORDER BY 2147483647",
    # GROUP BY follows the same rule.
    "SELECT id FROM t GROUP BY (id AND 0)",
    "SELECT id FROM t GROUP BY -1",
    "SELECT id % 2, count(*) FROM t GROUP BY (1) ORDER BY 1",
    # Compound SELECTs.
    "SELECT id FROM t UNION SELECT 5 ORDER BY (id AND 0)",
    "SELECT id FROM t UNION SELECT 5 ORDER BY -(1)",
    "SELECT id FROM t UNION SELECT 5 ORDER BY (1) DESC",
    "SELECT id, x FROM t UNION ALL SELECT 5, 'e' ORDER BY 2, 3",
    "SELECT id FROM t UNION SELECT 5 ORDER BY 2147483648",
    "SELECT id FROM t UNION SELECT 5 ORDER BY 1, nope",
]


@pytest.mark.parametrize("sql", POSITION_QUERIES)
def test_integer_terms_are_positions(pair: tuple, sql: str) -> None:
    check(pair, sql)


# -- which of equal rows a set operation keeps ----------------------------------------------

EQUAL_ROW_QUERIES = [
    "SELECT round(0, 0) UNION SELECT 0",
    "SELECT 0 UNION SELECT round(0, 0)",
    "SELECT 0 UNION SELECT 0.0 UNION SELECT 0",
    "SELECT 0.0 UNION ALL SELECT 0 UNION SELECT 0",
    "SELECT 1.0 INTERSECT SELECT 1",
    "SELECT 1 INTERSECT SELECT 1.0",
    "SELECT 1.0 UNION SELECT 1 EXCEPT SELECT 2",
    "SELECT x FROM (SELECT 1.0 x UNION ALL SELECT 1) INTERSECT SELECT 1",
    "SELECT x FROM (SELECT 1 x UNION ALL SELECT 1.0) INTERSECT SELECT 1",
    "SELECT x FROM (SELECT 1 x UNION ALL SELECT 1.0) EXCEPT SELECT 2",
    "SELECT x FROM (SELECT 1.0 x UNION ALL SELECT 1) EXCEPT SELECT 2",
    "SELECT 0.0, 'a' UNION SELECT 0, 'a' UNION SELECT 0.0, 'b'",
    "SELECT DISTINCT x FROM (SELECT 0.0 x UNION ALL SELECT 0)",
    "SELECT DISTINCT x FROM (SELECT 0 x UNION ALL SELECT 0.0)",
    "SELECT x FROM (SELECT 1 x UNION ALL SELECT 1.0) GROUP BY x",
    "SELECT x FROM (SELECT 1.0 x UNION ALL SELECT 1) GROUP BY x",
    "SELECT x FROM (SELECT 1 x UNION ALL SELECT 1.0) UNION ALL SELECT 1 UNION SELECT 1.0",
]


@pytest.mark.parametrize("sql", EQUAL_ROW_QUERIES)
def test_set_operations_keep_sqlites_row_of_equals(pair: tuple, sql: str) -> None:
    check(pair, sql)
