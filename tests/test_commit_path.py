"""The commit path's shortcut: a write transaction that begins on a snapshot this
process committed itself reuses what that commit stored (binlog tail, schema version,
node id, epoch) instead of reading it back (``WriteTxn.own_stamp``).  These tests
write from elsewhere in between (another process, an aborted transaction, DDL, a
second connection, a forwarded change set) and check that every change set is still
numbered, clocked and versioned exactly as if everything had been read.
"""
from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import terndb


def change_sets(con: Any) -> list:
    """Every change set in the binlog of ``con``'s database, oldest first."""
    db = con._db
    read = db.store.begin_read()
    try:
        return [cs for _seq, cs in db.binlog.read(read.txn, 0)]
    finally:
        read.end()


def committed_version(con: Any) -> int:
    db = con._db
    read = db.store.begin_read()
    try:
        return db.catalog.version(read.txn)
    finally:
        read.end()


def assert_well_formed(sets: list) -> None:
    """Sequences 1..n with no gap or repeat, commit clocks strictly increasing."""
    assert [cs.sequence for cs in sets] == list(range(1, len(sets) + 1))
    assert [cs.origin_sequence for cs in sets] == [cs.sequence for cs in sets]
    clocks = [cs.hlc for cs in sets]
    assert all(a < b for a, b in zip(clocks, clocks[1:])), clocks


def other_process(path: str, script: str) -> None:
    """Runs ``script`` (with ``con`` connected to ``path``) in a child process."""
    code = f"import terndb\ncon = terndb.connect({path!r}, durability='off')\n{script}\ncon.close()\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.fixture
def con(tmp_path: Any) -> Any:
    c = terndb.connect(str(tmp_path / "db"), durability="off")
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    c.commit()
    yield c
    c.close()


def insert_and_commit(con: Any, v: str) -> None:
    con.execute("INSERT INTO t (v) VALUES (?)", (v,))
    con.commit()


def test_commits_in_a_row_use_the_stamp_and_stay_well_formed(con: Any) -> None:
    insert_and_commit(con, "a")
    write = con._db.store.begin_write(1.0)
    try:
        stamp = write.own_stamp
    finally:
        write.abort()
    assert stamp is not None and stamp.binlog_tail[0] == len(change_sets(con))
    assert stamp.schema_version == committed_version(con)
    for v in "bcd":
        insert_and_commit(con, v)
    sets = change_sets(con)
    assert len(sets) == 5                     # CREATE TABLE's change set, then four inserts
    assert_well_formed(sets)
    assert {cs.schema_version for cs in sets} == {committed_version(con)}


def test_another_process_commits_in_between(con: Any) -> None:
    insert_and_commit(con, "a")
    other_process(con.path, "con.execute(\"INSERT INTO t (v) VALUES ('theirs')\"); con.commit()")
    write = con._db.store.begin_write(1.0)
    try:
        assert write.own_stamp is None        # its snapshot is the other process's commit
    finally:
        write.abort()
    insert_and_commit(con, "b")
    insert_and_commit(con, "c")
    sets = change_sets(con)
    assert_well_formed(sets)
    assert len(sets) == 5
    assert [r[0] for r in con.execute("SELECT v FROM t ORDER BY id")] == ["a", "theirs", "b", "c"]


def test_schema_changed_by_another_process_is_read_again(con: Any) -> None:
    insert_and_commit(con, "a")
    before = committed_version(con)
    other_process(con.path, "con.execute('CREATE INDEX tv ON t (v)'); con.commit()")
    insert_and_commit(con, "b")
    insert_and_commit(con, "c")
    sets = change_sets(con)
    assert_well_formed(sets)
    after = committed_version(con)
    assert after > before
    # CREATE TABLE, a | CREATE INDEX (the other process), b, c
    assert [cs.schema_version for cs in sets] == [before, before, after, after, after]


def test_own_ddl_then_plain_commits_carry_the_new_version(con: Any) -> None:
    insert_and_commit(con, "a")
    before = committed_version(con)
    con.execute("BEGIN")
    con.execute("ALTER TABLE t ADD COLUMN w INTEGER")
    con.execute("INSERT INTO t (v, w) VALUES ('b', 1)")
    con.commit()
    insert_and_commit(con, "c")
    sets = change_sets(con)
    assert_well_formed(sets)
    after = committed_version(con)
    assert after > before
    # CREATE TABLE, a | ALTER + b in one transaction, c
    assert len(sets) == 4
    assert [cs.schema_version for cs in sets] == [before, before, after, after]


def test_rolled_back_and_empty_transactions_in_between(con: Any) -> None:
    insert_and_commit(con, "a")
    con.execute("INSERT INTO t (v) VALUES ('gone')")
    con.rollback()
    con.execute("BEGIN")
    con.commit()                              # commits nothing: no new snapshot
    con.execute("UPDATE t SET v = 'same' WHERE id = 999")
    con.commit()                              # a statement that changed no row
    insert_and_commit(con, "b")
    sets = change_sets(con)
    assert_well_formed(sets)
    assert len(sets) == 3                     # CREATE TABLE, a, b
    assert [r[0] for r in con.execute("SELECT v FROM t ORDER BY id")] == ["a", "b"]


def test_two_connections_of_one_process_alternate(con: Any) -> None:
    other = terndb.connect(con.path, durability="off")
    try:
        for i in range(6):
            insert_and_commit(con if i % 2 else other, f"r{i}")
        other.execute("CREATE INDEX tv ON t (v)")
        other.commit()
        insert_and_commit(con, "last")
    finally:
        other.close()
    sets = change_sets(con)
    assert_well_formed(sets)
    assert sets[-1].schema_version == committed_version(con)
    assert len(sets) == 9                     # CREATE TABLE, six inserts, CREATE INDEX, last


def test_forwarded_change_set_in_the_same_transaction(con: Any) -> None:
    """A change set stored by another route in the committing transaction (a relay)
    makes the tail known from before the transaction stale: it is read again."""
    insert_and_commit(con, "a")
    relayed = change_sets(con)[0].data
    session = con._session
    con.execute("BEGIN")
    con.execute("INSERT INTO t (v) VALUES ('b')")
    con._db.binlog.append_encoded(session.write.txn, relayed)
    con.commit()
    insert_and_commit(con, "c")
    sets = change_sets(con)
    # CREATE TABLE, a, the relayed copy of a (stored first), b, c
    assert [cs.sequence for cs in sets] == [1, 2, 3, 4, 5]
    assert sets[2].data == relayed
    clocks = [cs.hlc for i, cs in enumerate(sets) if i != 2]
    assert all(x < y for x, y in zip(clocks, clocks[1:])), clocks


def test_schema_kept_for_the_own_snapshot_follows_ddl_elsewhere(con: Any) -> None:
    """After a commit the session reuses the schema it read for the snapshot it made;
    DDL committed afterwards (another connection, another process) is still seen."""
    insert_and_commit(con, "a")
    assert con.execute("SELECT * FROM t").fetchall() == [(1, "a")]
    other = terndb.connect(con.path, durability="off")
    try:
        other.execute("ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 7")
        other.commit()
    finally:
        other.close()
    assert con.execute("SELECT * FROM t").fetchall() == [(1, "a", 7)]
    insert_and_commit(con, "b")
    other_process(con.path, "con.execute('ALTER TABLE t ADD COLUMN z TEXT'); con.commit()")
    assert con.execute("SELECT * FROM t ORDER BY id").fetchall() == [(1, "a", 7, None), (2, "b", 7, None)]
    insert_and_commit(con, "c")
    assert con.execute("SELECT v, w, z FROM t WHERE id = 3").fetchall() == [("c", 7, None)]


def test_a_reopened_database_does_not_trust_the_last_ones_stamp(tmp_path: Any) -> None:
    """A Database closed and opened again while the environment stays open (another handle
    keeps it) has a new clock: it reads the binlog tail to pass the HLC the old clock had
    reached, instead of taking the old commit's stamp, so commit clocks keep increasing."""
    from terndb.engine.hlc import hlc_from_parts
    from terndb.engine.storage import Durability, Store
    path = str(tmp_path / "db")
    first = terndb.connect(path, durability="off")
    first.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    first.commit()
    keep = Store.open(path, durability=Durability.OFF)  # holds the environment across the close
    try:
        clock = first._db.hlc
        clock.advance_to(hlc_from_parts((clock.now() >> 16) + 3_600_000))   # an hour ahead
        insert_and_commit(first, "ahead")
        first.close()
        second = terndb.connect(path, durability="off")
        try:
            assert second._db.hlc is not clock
            insert_and_commit(second, "after")
            assert_well_formed(change_sets(second))
        finally:
            second.close()
    finally:
        keep.close()
