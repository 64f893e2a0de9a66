"""Shared fixtures for the reference tests: a terndb connection and a sqlite3 twin.

The reference suites (``test_sql_reference.py``, ``test_errors.py`` ...) run the
same SQL on terndb and on Python's ``sqlite3`` and compare.  ``twin`` opens such
a pair; ``twin_factory`` opens fresh pairs inside hypothesis examples (a
function-scoped fixture is shared by all examples of one test, so each example
asks the factory for its own pair, ideally as ``with make() as pair:`` so the
LMDB environment is released at once).  Every connection opened here is closed at
teardown, which also removes the ``:memory:`` database directories.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import terndb


class Twin:
    """A terndb connection and a sqlite3 connection fed the same statements."""

    def __init__(self, tern: Any, lite: sqlite3.Connection) -> None:
        self.tern = tern
        self.lite = lite

    def both(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a setup statement on both; it must succeed on both."""
        self.lite.execute(sql, params)
        self.tern.execute(sql, params)

    def commit(self) -> None:
        self.lite.commit()
        self.tern.commit()

    def close(self) -> None:
        for con in (self.tern, self.lite):
            try:
                con.close()
            except Exception:       # closing twice (a test closed it) is fine
                pass

    def __enter__(self) -> "Twin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def twin_factory() -> Iterator[Callable[[], Twin]]:
    opened: list[Twin] = []

    def make() -> Twin:
        pair = Twin(terndb.connect(":memory:"), sqlite3.connect(":memory:"))
        opened.append(pair)
        return pair

    yield make
    for pair in opened:
        pair.close()


@pytest.fixture
def twin(twin_factory: Callable[[], Twin]) -> Twin:
    return twin_factory()


@pytest.fixture
def tcon() -> Iterator[Any]:
    """A terndb connection to a fresh ``:memory:`` database."""
    con = terndb.connect(":memory:")
    yield con
    try:
        con.close()
    except Exception:
        pass


@pytest.fixture(params=["c", "fallback"])
def path_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test once on the C LMDB path and once on py-lmdb's Python API."""
    from terndb._cext import _core as C
    available, why = C.lmdb_c_status()
    if request.param == "c" and not available:
        pytest.skip(f"C LMDB path unavailable: {why}")
    old = C.lmdb_c_enable(request.param == "c") if available else False
    yield request.param
    if available:
        C.lmdb_c_enable(old)
