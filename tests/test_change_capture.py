"""Change capture seen from SQL: what the binlog holds after commits.

Every committed write transaction must leave exactly one change set in the
binlog (``con._db.binlog``), written in the same LMDB transaction: with the
right ops, table ids and primary keys, the changed columns of updates, the
database's node id as origin, and strictly increasing HLC timestamps.
Rolled-back work (a ROLLBACK, a ROLLBACK TO a savepoint, a failed statement)
must leave nothing; DDL is recorded in commit order with the data changes.
"""
from __future__ import annotations

import json
import multiprocessing
import time
from typing import Any

import pytest

import terndb
from terndb._cext import _core as C
from terndb.engine.hlc import hlc_parts

INSERT, UPDATE, DELETE, DDL = C.CHANGE_OP_INSERT, C.CHANGE_OP_UPDATE, C.CHANGE_OP_DELETE, C.CHANGE_OP_DDL


def changesets(con: Any, since: int = 0) -> list:
    """The committed change sets after sequence ``since``, oldest first."""
    db = con._db
    with db.store.begin_read() as r:
        return [cs for _, cs in db.binlog.read(r.txn, since)]


def last_seq(con: Any) -> int:
    db = con._db
    with db.store.begin_read() as r:
        return db.binlog.last_sequence(r.txn)


def table_id(con: Any, name: str) -> int:
    db = con._db
    with db.store.begin_read() as r:
        return db.committed_schema(r.txn).table(name).object_id


def ops(cs: Any) -> list[tuple]:
    return [(e.op, e.table_id) for e in cs.entries]


def pk(value: int) -> bytes:
    """The binlog key of the row whose INTEGER PRIMARY KEY is ``value``."""
    return C.encode_key((value,))


@pytest.fixture
def con(tmp_path):
    c = terndb.connect(str(tmp_path / "db"))
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL)")
    c.execute("CREATE TABLE u(k TEXT PRIMARY KEY, v)")
    yield c
    c.close()


# -- one change set per committed write transaction ---------------------------------


def test_each_commit_is_one_change_set(con) -> None:
    start = last_seq(con)
    tid = table_id(con, "t")
    con.execute("INSERT INTO t VALUES (1, 10, 'x', 1.5)")
    con.execute("INSERT INTO t VALUES (2, 20, 'y', NULL)")
    assert last_seq(con) == start                     # nothing before the commit
    con.commit()
    con.execute("UPDATE t SET a = 11 WHERE id = 1")
    con.execute("DELETE FROM t WHERE id = 2")
    con.commit()
    sets = changesets(con, start)
    assert [cs.sequence for cs in sets] == [start + 1, start + 2]
    assert ops(sets[0]) == [(INSERT, tid), (INSERT, tid)]
    assert ops(sets[1]) == [(UPDATE, tid), (DELETE, tid)]
    assert [len(cs) for cs in sets] == [2, 2]
    e_ins, e_ins2 = sets[0].entries
    assert (e_ins.pk_key, e_ins2.pk_key) == (pk(1), pk(2))
    assert C.decode_row(e_ins.row) == (1, 10, "x", 1.5)
    upd, dele = sets[1].entries
    assert upd.pk_key == pk(1) and C.decode_row(upd.row) == (1, 11, "x", 1.5)
    assert upd.changed_columns == (1,)
    # A delete carries the row it removed, so feed consumers can see what went.
    assert dele.pk_key == pk(2) and C.decode_row(dele.row) == (2, 20, "y", None)


def test_autocommit_statements_are_separate_change_sets(tmp_path) -> None:
    c = terndb.connect(str(tmp_path / "db"), isolation_level=None)
    try:
        c.execute("CREATE TABLE t(a)")
        start = last_seq(c)
        c.execute("INSERT INTO t VALUES (1)")
        c.execute("INSERT INTO t VALUES (2)")
        c.execute("SELECT * FROM t").fetchall()        # reads record nothing
        assert [len(cs) for cs in changesets(c, start)] == [1, 1]
    finally:
        c.close()


def test_executemany_and_multi_row_insert(con) -> None:
    start = last_seq(con)
    con.executemany("INSERT INTO t(id, a) VALUES (?, ?)", [(i, i) for i in range(1, 51)])
    con.execute("INSERT INTO t(id, a) VALUES (100, 1), (101, 2), (102, 3)")
    con.commit()
    (cs,) = changesets(con, start)
    assert len(cs) == 53
    assert [e.pk_key for e in cs.entries] == [pk(i) for i in list(range(1, 51)) + [100, 101, 102]]
    assert {e.op for e in cs.entries} == {INSERT}


@pytest.mark.parametrize("assign,expected", [
    ("a = 5", (1,)),
    ("b = 'new'", (2,)),
    ("c = 2.5, a = 7", (1, 3)),
    ("a = 5, b = 'z', c = 0.5", (1, 2, 3)),
])
def test_update_records_changed_columns(con, assign: str, expected: tuple) -> None:
    con.execute("INSERT INTO t VALUES (1, 1, 'b', 1.0)")
    con.commit()
    start = last_seq(con)
    con.execute(f"UPDATE t SET {assign} WHERE id = 1")
    con.commit()
    (cs,) = changesets(con, start)
    (entry,) = cs.entries
    assert entry.op == UPDATE and entry.changed_columns == expected


def test_text_primary_key_and_two_tables(con) -> None:
    start = last_seq(con)
    con.execute("INSERT INTO u VALUES ('k1', 1)")
    con.execute("INSERT INTO t(id) VALUES (9)")
    con.execute("UPDATE u SET v = 2 WHERE k = 'k1'")
    con.commit()
    (cs,) = changesets(con, start)
    tu, tt = table_id(con, "u"), table_id(con, "t")
    assert tu != tt
    assert ops(cs) == [(INSERT, tu), (INSERT, tt), (UPDATE, tu)]
    assert cs.entries[0].pk_key == C.encode_key(("k1",)) == cs.entries[2].pk_key
    assert cs.entries[2].changed_columns == (1,)


def test_primary_key_update_changes_the_key(con) -> None:
    con.execute("INSERT INTO t VALUES (1, 1, 'b', 1.0)")
    con.commit()
    start = last_seq(con)
    con.execute("UPDATE t SET id = 5 WHERE id = 1")
    con.commit()
    (cs,) = changesets(con, start)
    keys = [(e.op, e.pk_key) for e in cs.entries]
    # Either a delete of the old key and an insert of the new one, or an update
    # that names the new key: in every case the old key must be gone.
    assert keys in ([(DELETE, pk(1)), (INSERT, pk(5))], [(UPDATE, pk(5))]) or \
        (pk(1) in [k for o, k in keys if o == DELETE] and pk(5) in [k for _, k in keys]), keys


# -- headers: origin, sequence, clock -------------------------------------------------


def test_origin_sequence_and_increasing_hlc(con) -> None:
    start = last_seq(con)
    before_ms = int(time.time() * 1000)
    for i in range(5):
        con.execute("INSERT INTO t(id) VALUES (?)", (i,))
        con.commit()
    after_ms = int(time.time() * 1000)
    sets = changesets(con, start)
    assert len(sets) == 5
    node = con._db.node_id
    assert len(node) == 16 and bytes.fromhex(con.node_id) == node
    for cs in sets:
        assert cs.origin == node
        assert cs.origin_sequence == cs.sequence
        wall_ms, _ = hlc_parts(cs.hlc)
        assert before_ms - 1000 <= wall_ms <= after_ms + 1000
    hlcs = [cs.hlc for cs in sets]
    assert hlcs == sorted(hlcs) and len(set(hlcs)) == len(hlcs)


def test_schema_version_in_header_follows_ddl(con) -> None:
    con.execute("INSERT INTO t(id) VALUES (1)")
    con.commit()
    con.execute("BEGIN")
    con.execute("INSERT INTO t(id) VALUES (2)")
    con.execute("CREATE TABLE w(x)")                 # DDL inside the transaction
    con.execute("INSERT INTO w VALUES (1)")
    con.commit()
    con.execute("INSERT INTO t(id) VALUES (3)")
    con.commit()
    sets = changesets(con)
    versions = [cs.schema_version for cs in sets]
    assert versions == sorted(versions)
    # The header carries the version as of the commit, after its own DDL.
    assert sets[-2].schema_version == sets[-3].schema_version + 1
    assert sets[-1].schema_version == sets[-2].schema_version
    with con._db.store.begin_read() as r:
        assert sets[-1].schema_version == con._db.catalog.version(r.txn)


# -- rolled-back work leaves nothing -------------------------------------------------------


def test_rollback_leaves_no_entry(con) -> None:
    start = last_seq(con)
    con.execute("INSERT INTO t(id) VALUES (1)")
    con.execute("UPDATE t SET a = 2")
    con.rollback()
    assert changesets(con, start) == []
    con.execute("INSERT INTO t(id) VALUES (3)")
    con.commit()
    (cs,) = changesets(con, start)
    assert [e.pk_key for e in cs.entries] == [pk(3)]


def test_rolled_back_savepoint_leaves_no_entry(con) -> None:
    start = last_seq(con)
    con.execute("INSERT INTO t(id) VALUES (1)")
    con.execute("SAVEPOINT a")
    con.execute("INSERT INTO t(id) VALUES (2)")
    con.execute("SAVEPOINT b")
    con.execute("INSERT INTO t(id) VALUES (3)")
    con.execute("RELEASE b")
    con.execute("ROLLBACK TO a")                      # drops 2 and 3
    con.execute("INSERT INTO t(id) VALUES (4)")
    con.execute("RELEASE a")
    con.execute("SAVEPOINT c")
    con.execute("DELETE FROM t WHERE id = 1")
    con.execute("ROLLBACK TO c")
    con.execute("RELEASE c")
    con.commit()
    (cs,) = changesets(con, start)
    assert [(e.op, e.pk_key) for e in cs.entries] == [(INSERT, pk(1)), (INSERT, pk(4))]


def test_failed_statement_leaves_no_entry(con) -> None:
    con.execute("CREATE TABLE q(x UNIQUE)")
    start = last_seq(con)
    con.execute("INSERT INTO q VALUES (1)")
    with pytest.raises(terndb.IntegrityError):
        con.execute("INSERT INTO q VALUES (2), (3), (1)")
    con.commit()
    (cs,) = changesets(con, start)
    assert len(cs) == 1


def test_transaction_of_only_failures_or_reads_leaves_nothing(con) -> None:
    con.execute("INSERT INTO t(id) VALUES (1)")
    con.commit()
    start = last_seq(con)
    with pytest.raises(terndb.IntegrityError):
        con.execute("INSERT INTO t(id) VALUES (1)")
    con.execute("SELECT * FROM t").fetchall()
    con.commit()
    con.execute("UPDATE t SET a = 1 WHERE id = 999")  # matches nothing
    con.commit()
    assert changesets(con, start) == []


# -- DDL ---------------------------------------------------------------------------------


def test_ddl_is_recorded_in_order(con) -> None:
    start = last_seq(con)
    con.execute("BEGIN")
    con.execute("CREATE TABLE w(x INTEGER, y)")
    con.execute("CREATE INDEX w_x ON w(x)")
    con.execute("INSERT INTO w VALUES (1, 2)")
    con.execute("CREATE VIEW wv AS SELECT x FROM w")
    con.commit()
    (cs,) = changesets(con, start)
    assert [e.op for e in cs.entries] == [DDL, DDL, INSERT, DDL]
    assert cs.entries[2].table_id == table_id(con, "w")
    payloads = [json.loads(e.row) for e in cs.entries if e.op == DDL]
    assert [p["op"] for p in payloads] == ["create_table", "create_index", "create_view"]
    assert [p["name"] for p in payloads] == ["w", "w_x", "wv"]
    assert payloads[0]["sql"] == "CREATE TABLE w(x INTEGER, y)"


def test_drop_is_recorded(con) -> None:
    con.execute("CREATE TABLE w(x)")
    con.execute("CREATE INDEX w_x ON w(x)")
    con.execute("CREATE VIEW wv AS SELECT x FROM w")
    start = last_seq(con)
    con.execute("BEGIN")
    con.execute("DROP VIEW wv")
    con.execute("DROP INDEX w_x")
    con.execute("DROP TABLE w")
    con.commit()
    (cs,) = changesets(con, start)
    payloads = [json.loads(e.row) for e in cs.entries]
    assert [e.op for e in cs.entries] == [DDL, DDL, DDL]
    assert [p["name"] for p in payloads] == ["wv", "w_x", "w"]
    assert all(p["op"].startswith("drop") for p in payloads)


def test_ddl_in_autocommit_is_its_own_change_set(con) -> None:
    start = last_seq(con)
    con.execute("CREATE TABLE z(a)")                 # outside a transaction: commits itself
    sets = changesets(con, start)
    assert len(sets) == 1 and ops(sets[0]) == [(DDL, 0)]


def test_rolled_back_ddl_leaves_nothing(con) -> None:
    start = last_seq(con)
    con.execute("INSERT INTO t(id) VALUES (1)")
    con.execute("CREATE TABLE z(a)")
    con.rollback()
    assert changesets(con, start) == []


# -- persistence and other writers --------------------------------------------------------------


def test_node_id_and_binlog_survive_reopen(tmp_path) -> None:
    path = str(tmp_path / "db")
    c = terndb.connect(path)
    c.execute("CREATE TABLE t(a)")
    c.execute("INSERT INTO t VALUES (1)")
    c.commit()
    node, sets = c.node_id, changesets(c)
    c.close()
    c = terndb.connect(path)
    try:
        assert c.node_id == node
        again = changesets(c)
        assert [(cs.sequence, cs.hlc, cs.data) for cs in again] == [(cs.sequence, cs.hlc, cs.data) for cs in sets]
        c.execute("INSERT INTO t VALUES (2)")
        c.commit()
        newest = changesets(c, sets[-1].sequence)
        assert len(newest) == 1 and newest[0].hlc > sets[-1].hlc
        assert newest[0].sequence == sets[-1].sequence + 1
    finally:
        c.close()
    other = terndb.connect(str(tmp_path / "other"))
    try:
        assert other.node_id != node                    # every database has its own id
    finally:
        other.close()


def test_two_connections_share_one_sequence(tmp_path) -> None:
    path = str(tmp_path / "db")
    a, b = terndb.connect(path), terndb.connect(path)
    try:
        a.execute("CREATE TABLE t(x)")
        start = last_seq(a)
        for i in range(3):
            a.execute("INSERT INTO t VALUES (?)", (i,))
            a.commit()
            b.execute("INSERT INTO t VALUES (?)", (-i,))
            b.commit()
        sets = changesets(b, start)
        assert [cs.sequence for cs in sets] == list(range(start + 1, start + 7))
        assert len({cs.origin for cs in sets}) == 1
        assert [cs.hlc for cs in sets] == sorted(cs.hlc for cs in sets)
    finally:
        a.close()
        b.close()


def _child_insert(path: str, n: int) -> None:
    c = terndb.connect(path, timeout=20.0)
    for i in range(n):
        c.execute("INSERT INTO t VALUES (?)", (1000 + i,))
        c.commit()
    c.close()


def test_another_process_appends_to_the_same_binlog(tmp_path) -> None:
    path = str(tmp_path / "db")
    c = terndb.connect(path)
    try:
        c.execute("CREATE TABLE t(x)")
        c.execute("INSERT INTO t VALUES (1)")
        c.commit()
        mark = changesets(c)[-1]
        proc = multiprocessing.get_context("spawn").Process(target=_child_insert, args=(path, 3))
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
        c.execute("INSERT INTO t VALUES (2)")
        c.commit()
        sets = changesets(c, mark.sequence)
        assert [cs.sequence for cs in sets] == [mark.sequence + i for i in range(1, 5)]
        assert all(cs.origin == mark.origin for cs in sets)
        hlcs = [mark.hlc] + [cs.hlc for cs in sets]
        assert hlcs == sorted(hlcs) and len(set(hlcs)) == 5
    finally:
        c.close()
