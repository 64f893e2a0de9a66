"""Prepared writes: a DML statement executed again inside the open transaction runs
through ``C.PreparedWrite`` (one call into C, no Python dispatch; see cext/stmt.pxi).

These tests check that the fast path is really taken (``execute_planned`` is the
path it skips), that it keeps PEP 249 results and statement atomicity exactly as
sqlite3 does, and that everything that changes the schema -- DDL here or in another
connection, ROLLBACK TO -- sends the next execution back through planning.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Iterator

import pytest

import terndb
from terndb._cext import _core as C

SETUP = [
    "CREATE TABLE t(id INTEGER PRIMARY KEY, u INTEGER UNIQUE, v TEXT NOT NULL, w REAL CHECK (w < 100))",
    "CREATE TABLE log(msg TEXT)",
]
ROWS = [(i, i * 10, f"v{i}", i / 4) for i in range(1, 21)]
UPDATE = "UPDATE t SET w = w + ?, v = v || 'x' WHERE id = ?"
INSERT = "INSERT INTO t(u, v, w) VALUES (?, ?, ?)"


def _open_pair(tmp_path: Any) -> tuple[Any, sqlite3.Connection]:
    tern = terndb.connect(str(tmp_path / "db"))
    lite = sqlite3.connect(str(tmp_path / "lite.sqlite"))
    for con in (tern, lite):
        for sql in SETUP:
            con.execute(sql)
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", ROWS)
        con.commit()
    return tern, lite


@pytest.fixture
def pair(tmp_path: Any) -> Iterator[tuple[Any, sqlite3.Connection]]:
    tern, lite = _open_pair(tmp_path)
    yield tern, lite
    tern.close()
    lite.close()


class PlannedCalls:
    """Counts the executions that went through Session.execute_planned (the slow path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, con: Any) -> None:
        self.sqls: list[str] = []
        session = con._session
        planned = session.execute_planned

        def counting(sql: str, params: Any = None) -> Any:
            self.sqls.append(sql)
            return planned(sql, params)
        monkeypatch.setattr(session, "execute_planned", counting)


def _table(con: Any) -> list[tuple]:
    return con.execute("SELECT * FROM t ORDER BY id").fetchall()


def _run_both(pair: tuple[Any, sqlite3.Connection], sql: str, params: Any) -> tuple[Any, Any]:
    """Runs ``sql`` on both; returns (terndb outcome, sqlite3 outcome): the error class
    name, or (rowcount, lastrowid)."""
    outcomes = []
    for module, con in ((terndb, pair[0]), (sqlite3, pair[1])):
        cur = con.cursor()
        try:
            cur.execute(sql, params)
            outcomes.append((cur.rowcount, cur.lastrowid, cur.description))
        except module.Error as err:
            outcomes.append(_pep249_class(module, err))
    return outcomes[0], outcomes[1]


def _pep249_class(module: Any, err: Exception) -> str:
    """The name of the standard PEP 249 class ``err`` belongs to (terndb raises subclasses)."""
    return next(name for name in ("IntegrityError", "DataError", "OperationalError", "ProgrammingError",
                                  "NotSupportedError", "InternalError")
                if isinstance(err, getattr(module, name)))


def test_repeated_update_takes_the_prepared_path(pair: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tern, lite = pair
    calls = PlannedCalls(monkeypatch, tern)
    total_before = tern._session.total_changes
    for key in [3, 5, 3, 99, 7, 3]:
        got, want = _run_both(pair, UPDATE, (0.5, key))
        assert got == want
    # The first execution plans and begins the transaction, the second confirms the
    # write transaction's schema (another process may have changed it in between);
    # the other four run in C.
    assert len(calls.sqls) <= 2
    assert tern.in_transaction
    assert tern._session.total_changes - total_before == 5
    tern.commit()
    lite.commit()
    assert _table(tern) == _table(lite)


def test_repeated_insert_sets_rowcount_and_lastrowid(pair: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tern, lite = pair
    calls = PlannedCalls(monkeypatch, tern)
    for i in range(5):
        got, want = _run_both(pair, INSERT, (1000 + i, f"n{i}", float(i)))
        assert got == want
    assert len(calls.sqls) <= 2
    # A unique clash on the fast path: nothing of that row stays, earlier rows do.
    assert _run_both(pair, INSERT, (1000, "dup", 1.0)) == ("IntegrityError", "IntegrityError")
    got, want = _run_both(pair, INSERT, (2000, "after", 2.0))
    assert got == want
    tern.commit()
    lite.commit()
    assert _table(tern) == _table(lite)


@pytest.mark.parametrize("sql, harmless, params", [
    ("UPDATE t SET u = ? WHERE id = ?", (40, 10_000), (40, 1)),    # unique clash, one row
    ("UPDATE t SET w = ? WHERE id = ?", (500, 10_000), (500, 2)),  # CHECK, one row
    ("UPDATE t SET v = NULL WHERE id > ?", (10_000,), (0,)),       # NOT NULL on the first row
    ("UPDATE t SET u = u + ? WHERE id >= ?", (10, 10_000), (10, 3)),  # clashes after partial writes
    ("UPDATE t SET w = w * ? WHERE id >= ?", (30, 10_000), (30, 1)),  # CHECK fails midway
])
def test_failing_prepared_statement_leaves_earlier_statements(pair: Any, sql: str, harmless: tuple,
                                                              params: tuple) -> None:
    """Each failing statement first runs harmlessly (matching no row), so its failure
    happens on the prepared path, inside a transaction whose earlier writes must survive."""
    tern, lite = pair
    for con in (tern, lite):
        con.execute(UPDATE, (1.0, 4))
        con.execute(sql, harmless)
        con.execute(UPDATE, (1.0, 6))
    assert _run_both(pair, sql, params) == ("IntegrityError", "IntegrityError")
    assert tern.in_transaction
    got, want = _run_both(pair, UPDATE, (1.0, 8))        # the transaction goes on
    assert got == want
    assert _table(tern) == _table(lite)
    tern.commit()
    lite.commit()
    assert _table(tern) == _table(lite)


def test_prepared_statement_guard_starts_clean_each_execution(pair: Any) -> None:
    """A PreparedWrite keeps its statement guard between executions: the nested
    transaction one execution opened (several rows) must not be what a later
    execution's failure rolls back to, with or without a nested transaction of its own."""
    tern, lite = pair
    sql = "UPDATE t SET w = w + ? WHERE id >= ?"
    for con in (tern, lite):
        con.execute(sql, (0.0, 10_000))                        # planned; prepared from now on
        con.execute(sql, (1.0, 15))                            # six rows: a nested transaction
    assert _run_both(pair, sql, (1000.0, 20)) == ("IntegrityError", "IntegrityError")  # one row
    got, want = _run_both(pair, sql, (1.0, 12))               # nine rows, after a failure
    assert got == want and got[0] == 9
    assert _run_both(pair, sql, (95.0, 1)) == ("IntegrityError", "IntegrityError")  # fails midway
    assert _table(tern) == _table(lite)
    tern.commit()
    lite.commit()
    assert _table(tern) == _table(lite)


def test_failing_prepared_statement_leaves_no_change_set_entry(pair: Any) -> None:
    tern, _ = pair
    before = _change_count(tern)
    tern.execute(UPDATE, (1.0, 1))
    tern.execute(UPDATE, (1.0, 2))
    with pytest.raises(terndb.IntegrityError):
        tern.execute("UPDATE t SET u = ? WHERE id = ?", (50, 3))
    with pytest.raises(terndb.IntegrityError):
        tern.execute("UPDATE t SET u = ? WHERE id = ?", (60, 4))   # prepared by now
    tern.execute(UPDATE, (1.0, 3))
    tern.commit()
    assert _change_count(tern) - before == 3


def _change_count(con: Any) -> int:
    db = con._db
    with db.store.begin_read() as r:
        return sum(len(cs) for _, cs in db.binlog.read(r.txn, 0))


def test_ddl_from_another_connection_replans(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tern, lite = _open_pair(tmp_path)
    other = terndb.connect(str(tmp_path / "db"))
    try:
        for con in (tern, lite):
            con.execute(UPDATE, (1.0, 1))
            con.execute(UPDATE, (1.0, 2))
            con.commit()
        # A trigger and a unique index, created elsewhere between two executions.
        for con in (other, lite):
            con.execute("CREATE TRIGGER tw AFTER UPDATE ON t BEGIN "
                        "INSERT INTO log VALUES ('upd ' || new.id); END")
            con.execute("CREATE UNIQUE INDEX tv ON t(v)")
            con.commit()
        calls = PlannedCalls(monkeypatch, tern)
        for key in (3, 5, 7, 8):
            got, want = _run_both((tern, lite), UPDATE, (1.0, key))
            assert got == want
        # v values are now 'v7x' and 'v8x': make 9's clash with 7's.
        assert _run_both((tern, lite), "UPDATE t SET v = ? WHERE id = ?", ("v7x", 9)) == \
            ("IntegrityError", "IntegrityError")
        assert UPDATE in calls.sqls        # re-planned under the new schema
        for con in (tern, lite):
            con.commit()
        assert tern.execute("SELECT * FROM log ORDER BY msg").fetchall() == \
            lite.execute("SELECT * FROM log ORDER BY msg").fetchall()
        assert _table(tern) == _table(lite)
        # A column added elsewhere: the cached INSERT must fill it (default), not misplace values.
        for con in (other, lite):
            con.execute("ALTER TABLE t ADD COLUMN z TEXT DEFAULT 'zz'")
            con.commit()
        for i in range(3):
            assert _run_both((tern, lite), INSERT, (3000 + i, f"z{i}", 1.0))[0][0] == 1
        for con in (tern, lite):
            con.commit()
        assert _table(tern) == _table(lite)
    finally:
        other.close()
        tern.close()
        lite.close()


def test_own_ddl_inside_the_transaction_replans(pair: Any) -> None:
    tern, lite = pair
    for con in (tern, lite):
        con.execute(UPDATE, (1.0, 1))
        con.execute(UPDATE, (1.0, 2))
        con.execute("CREATE TRIGGER tw AFTER UPDATE ON t BEGIN "
                    "INSERT INTO log VALUES ('upd ' || new.id); END")
        con.execute(UPDATE, (1.0, 3))
        con.execute(UPDATE, (1.0, 4))
        con.commit()
    assert tern.execute("SELECT * FROM log ORDER BY msg").fetchall() == [("upd 3",), ("upd 4",)]
    assert _table(tern) == _table(lite)


def test_rollback_to_savepoint_between_executions(pair: Any) -> None:
    tern, lite = pair
    for con in (tern, lite):
        con.execute("SAVEPOINT a")
        con.execute(UPDATE, (1.0, 1))
        con.execute("SAVEPOINT b")
        con.execute(UPDATE, (1.0, 2))
        con.execute("CREATE INDEX tw ON t(w)")
        con.execute(UPDATE, (1.0, 3))
        con.execute("ROLLBACK TO b")
        con.execute(UPDATE, (1.0, 5))        # the index is gone again: must not be maintained
        con.execute(UPDATE, (1.0, 6))
        con.execute("RELEASE a")
    assert _table(tern) == _table(lite)
    assert tern.execute("SELECT name FROM sqlite_master WHERE name = 'tw'").fetchall() == []
    assert tern.execute("SELECT id FROM t WHERE w > 1 ORDER BY w").fetchall() == \
        lite.execute("SELECT id FROM t WHERE w > 1 ORDER BY w").fetchall()


def test_autocommit_statements_do_not_use_a_stale_transaction(tmp_path: Any) -> None:
    tern = terndb.connect(str(tmp_path / "db"), isolation_level=None)
    try:
        tern.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        for i in range(3):
            tern.execute("INSERT INTO t(v) VALUES (?)", (i,))
            assert not tern.in_transaction
        tern.execute("BEGIN")
        for i in range(3):
            tern.execute("INSERT INTO t(v) VALUES (?)", (i,))
        tern.execute("ROLLBACK")
        assert tern.execute("SELECT count(*) FROM t").fetchone() == (3,)
    finally:
        tern.close()


def test_map_growth_replays_prepared_statements(tmp_path: Any) -> None:
    tern = terndb.connect(str(tmp_path / "db"), map_size=1 << 20)
    try:
        tern.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        tern.executemany("INSERT INTO t VALUES (?, ?)", [(i, "") for i in range(1, 401)])
        tern.commit()
        for i in range(1, 401):                      # grows every row past the 1 MiB map
            tern.execute("UPDATE t SET v = ? WHERE id = ?", ("y" * 4000 + str(i), i))
        tern.commit()
        assert tern._db.store.map_size > 1 << 20
        assert tern.execute("SELECT count(*), sum(length(v)) FROM t").fetchone() == \
            (400, 400 * 4000 + sum(len(str(i)) for i in range(1, 401)))
    finally:
        tern.close()


def test_prepared_write_is_built_only_for_plain_dml(pair: Any) -> None:
    tern, _ = pair
    tern.execute("CREATE TRIGGER tw AFTER UPDATE ON log BEGIN SELECT 1; END")
    statements = {
        UPDATE: True,
        INSERT: True,
        "DELETE FROM t WHERE id = ?": True,
        "UPDATE t SET w = ? WHERE id = ? RETURNING id": False,
        "INSERT INTO t(u, v) VALUES (?, ?) ON CONFLICT(u) DO NOTHING": False,
        "UPDATE log SET msg = ?": False,                  # has a trigger
        "SELECT * FROM t WHERE id = ?": False,
    }
    params = {UPDATE: (1.0, 1), INSERT: (5000, "a", 1.0), "DELETE FROM t WHERE id = ?": (2,),
              "UPDATE t SET w = ? WHERE id = ? RETURNING id": (1.0, 3),
              "INSERT INTO t(u, v) VALUES (?, ?) ON CONFLICT(u) DO NOTHING": (10, "b"),
              "UPDATE log SET msg = ?": ("m",), "SELECT * FROM t WHERE id = ?": (1,)}
    for sql, expected in statements.items():
        tern.execute(sql, params[sql])
        plan = tern._session.plans[sql]
        assert isinstance(plan.prepared, C.PreparedWrite) is expected, sql
    tern.rollback()


# -- cached SELECTs (C.PreparedQuery) ------------------------------------------------


SELECT = "SELECT * FROM t WHERE id = ?"


def test_repeated_select_takes_the_prepared_path(pair: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tern, lite = pair
    calls = PlannedCalls(monkeypatch, tern)
    cur = tern.cursor()
    for key in (1, 2, 3, 99, 2):
        cur.execute(SELECT, (key,))
        assert [d[0] for d in cur.description] == [d[0] for d in lite.execute(SELECT, (key,)).description]
        assert cur.fetchall() == lite.execute(SELECT, (key,)).fetchall()
        assert cur.rowcount == -1
    cur.execute("SELECT id FROM t WHERE id > :lo ORDER BY id", {"lo": 17})    # named parameters
    cur.execute("SELECT id FROM t WHERE id > :lo ORDER BY id", {"lo": 18})
    assert cur.fetchall() == [(19,), (20,)]
    assert calls.sqls == [SELECT, "SELECT id FROM t WHERE id > :lo ORDER BY id"]
    with pytest.raises(terndb.ProgrammingError):
        cur.execute(SELECT, (1, 2))                                           # wrong binding count
    assert cur.execute(SELECT, (4,)).fetchone() == lite.execute(SELECT, (4,)).fetchone()


def test_two_open_cursors_on_one_cached_select(pair: Any) -> None:
    tern, lite = pair
    sql = "SELECT id FROM t WHERE id <= ? ORDER BY id"
    tern.execute(sql, (1,)).fetchall()
    first, second = tern.cursor(), tern.cursor()
    first.execute(sql, (5,))
    assert first.fetchone() == (1,)
    second.execute(sql, (3,))                       # the plan's operators are being read
    assert second.fetchall() == [(1,), (2,), (3,)]
    assert first.fetchall() == [(2,), (3,), (4,), (5,)]


def test_select_after_ddl_elsewhere_sees_the_new_schema(tmp_path: Any) -> None:
    tern, lite = _open_pair(tmp_path)
    other = terndb.connect(str(tmp_path / "db"))
    try:
        for _ in range(2):
            assert tern.execute(SELECT, (3,)).fetchall() == lite.execute(SELECT, (3,)).fetchall()
        for con in (other, lite):
            con.execute("ALTER TABLE t ADD COLUMN z TEXT DEFAULT 'zz'")
            con.execute("UPDATE t SET z = 'three' WHERE id = 3")
            con.commit()
        cur = tern.execute(SELECT, (3,))
        assert cur.fetchall() == [(3, 30, "v3", 0.75, "three")]
        assert [d[0] for d in cur.description] == ["id", "u", "v", "w", "z"]
        # A temp table of this connection shadows the main one, as in SQLite.
        tern.execute("CREATE TEMP TABLE t(id INTEGER PRIMARY KEY, only_temp)")
        tern.execute("INSERT INTO t VALUES (3, 'temp row')")
        tern.commit()
        assert tern.execute(SELECT, (3,)).fetchall() == [(3, "temp row")]
        tern.execute("DROP TABLE temp.t")
        tern.commit()
        assert tern.execute(SELECT, (3,)).fetchall() == [(3, 30, "v3", 0.75, "three")]
    finally:
        other.close()
        tern.close()
        lite.close()


def test_a_prepared_update_re_entered_from_an_adapter(pair: tuple[Any, sqlite3.Connection]) -> None:
    """An adapter that runs the same cached UPDATE while the outer execution binds its
    parameters leaves both executions intact (the re-entered one took the outer one's
    execution state and rolled back the whole transaction)."""
    from terndb import adapters

    tern, lite = pair
    sql = "UPDATE t SET w = ? WHERE id = ?"

    class Box:
        def __init__(self, value: float) -> None:
            self.value = value

    def run(con: Any) -> None:
        def adapt(box: Box) -> float:
            con.execute(sql, (7.0, 3))
            return box.value
        register = terndb.register_adapter if con is tern else sqlite3.register_adapter
        register(Box, adapt)
        try:
            con.execute(sql, (1.0, 1))
            con.execute(sql, (1.0, 2))             # planned once: the next runs prepared
            con.execute(sql, (Box(5.0), 1))
            con.commit()
        finally:
            adapters._user_adapters.pop(Box, None)
            sqlite3.adapters.pop((Box, sqlite3.PrepareProtocol), None)

    run(lite)
    run(tern)
    query = "SELECT id, w FROM t ORDER BY id"
    assert tern.execute(query).fetchall() == lite.execute(query).fetchall()


# -- the session's counters and the cursor's fields as C fields (SessionState, CursorState) --


COUNTERS = "SELECT changes(), total_changes(), last_insert_rowid()"


def test_counters_after_prepared_writes_match_sqlite(pair: tuple[Any, sqlite3.Connection],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """rowcount, lastrowid, changes(), total_changes(), last_insert_rowid() and
    Connection.total_changes after each of a mix of prepared writes (the counters are
    set in C there), compared with sqlite3 statement by statement."""
    tern, lite = pair
    calls = PlannedCalls(monkeypatch, tern)
    delete = "DELETE FROM t WHERE id = ?"
    steps = [(INSERT, (500, "a", 1.0)), (INSERT, (501, "b", 2.0)), (UPDATE, (0.5, 3)),
             (UPDATE, (0.5, 4)), (UPDATE, (0.5, 999)), (INSERT, (502, "c", 3.0)),
             (UPDATE, (0.25, 21)), (delete, (5,)), (delete, (6,)), (delete, (999,)),
             ("UPDATE t SET w = w / 2 WHERE id > ?", (15,)), (INSERT, (503, "d", 4.0))]
    for sql, params in steps:
        got, want = _run_both(pair, sql, params)
        assert got == want, (sql, params)
        assert tern.total_changes == lite.total_changes, (sql, params)
        assert tern.execute(COUNTERS).fetchone() == lite.execute(COUNTERS).fetchone(), (sql, params)
    # Most of them ran prepared (each statement's first two executions are planned).
    assert len([sql for sql in calls.sqls if sql != COUNTERS]) < len(steps)
    tern.commit()
    lite.commit()
    assert _table(tern) == _table(lite)


def test_prepared_update_resets_the_cursor_like_sqlite(pair: tuple[Any, sqlite3.Connection]) -> None:
    """A prepared UPDATE on a cursor that held a SELECT's result drops that result and its
    description, as sqlite3's cursor does."""
    tern, lite = pair
    for con in (tern, lite):
        con.execute(UPDATE, (0.5, 1))
        con.execute(UPDATE, (0.5, 1))
    for con in (tern, lite):
        cur = con.cursor()
        cur.execute("SELECT id FROM t ORDER BY id")
        assert cur.fetchone() == (1,)
        assert cur.execute(UPDATE, (0.5, 2)) is cur
        assert (cur.description, cur.rowcount) == (None, 1)
    tern.commit()
    lite.commit()
    assert _table(tern) == _table(lite)


def test_compiled_execute_raises_pep249_errors(pair: tuple[Any, sqlite3.Connection], tmp_path: Any) -> None:
    """The checks of the compiled Cursor.execute: a closed cursor or connection, a
    non-string statement, another thread; and errors from below translated (chained)."""
    import threading

    tern, _ = pair
    cur = tern.cursor()
    cur.execute(UPDATE, (0.5, 1))
    cur.execute(UPDATE, (0.5, 1))                   # warm: the next one would run prepared
    with pytest.raises(terndb.ProgrammingError, match="must be str"):
        cur.execute(b"UPDATE t SET w = 1", ())
    errors: list[BaseException] = []
    worker = threading.Thread(target=lambda: _capture(errors, cur.execute, UPDATE, (0.5, 1)))
    worker.start()
    worker.join()
    assert len(errors) == 1 and isinstance(errors[0], terndb.ProgrammingError)
    # A plain Python error from below becomes a PEP 249 one, chained: InternalError on
    # the planned path; the prepared write's failure handling rolls back and says so.
    with pytest.raises(terndb.InternalError) as planned:
        cur.execute("SELECT ?, ?", _Unsized())
    assert isinstance(planned.value.__cause__, RuntimeError)
    with pytest.raises(terndb.OperationalError, match="rolled back") as prepared:
        cur.execute(UPDATE, _Unsized())
    assert isinstance(prepared.value.__cause__, RuntimeError)
    cur.close()
    with pytest.raises(terndb.ProgrammingError, match="closed cursor"):
        cur.execute(UPDATE, (0.5, 1))
    other = terndb.connect(str(tmp_path / "other"))
    other_cur = other.cursor()
    other.close()
    with pytest.raises(terndb.ProgrammingError, match="closed database"):
        other_cur.execute("SELECT 1")


class _Unsized(Sequence):
    """A parameter sequence of two whose items cannot be read (a plain Python error)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: Any) -> Any:
        raise RuntimeError("no items")


def _capture(errors: list[BaseException], fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except BaseException as err:    # noqa: BLE001 - handed back to the test's thread
        errors.append(err)


def test_a_connection_not_initialised_reads_as_closed() -> None:
    """Connection's C fields start closed (ConnectionState): an object whose __init__
    never ran (or failed before its end) refuses statements as a closed one does."""
    half = terndb.Connection.__new__(terndb.Connection)
    assert half._closed and half._session is None
    with pytest.raises(terndb.ProgrammingError, match="closed database"):
        terndb.Cursor(half).execute("SELECT 1")
