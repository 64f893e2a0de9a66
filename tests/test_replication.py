"""Change-set replication: convergent apply, conflicts, feed, local transport, Python API, CLI.

Local writes in the randomized tests go through ``_write`` below: the
compiled TableWriter path SQL DML uses (change capture, binlog, commit hooks)
without planning a statement per write, which keeps the schedules fast; SQL
INSERT/UPDATE/DELETE are used in the other tests.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time

import pytest

import terndb
from terndb._cext import _core as C
from terndb.engine.dml_planner import build_writer
from terndb.engine.params import ParamSpec
from terndb.engine.repl_apply import Applier
from terndb.engine.repl_feed import ChangeFeed, decode_message, decode_wire, outgoing_in, read_outgoing
from terndb.engine.repl_local import LocalPeer
from terndb.engine.repl_versions import K_VERSIONS_SEQ, Record, TableSet, VersionStore, merge
from terndb.replication import Replicator

SCHEMA = [
    "CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL)",
    "CREATE TABLE s(k TEXT PRIMARY KEY, v INTEGER, w TEXT)",
]


def _connect(path) -> terndb.Connection:
    return terndb.connect(str(path), durability="off")


class Node:
    """One database with a version store and an applier (no background thread)."""

    def __init__(self, path, tables="*") -> None:
        self.con = _connect(path)
        self.db = self.con._db
        self.versions = VersionStore(self.db, TableSet(tables))
        self.versions.install()
        self.applier = Applier(self.db, TableSet(tables), self.versions)
        self.applier.ensure_conflict_table()

    def rows(self, table: str) -> list:
        return self.con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()

    def conflicts(self) -> list:
        return self.con.execute("SELECT * FROM terndb_conflicts").fetchall()

    def own_messages(self) -> list[bytes]:
        out = read_outgoing(self.db, 0, TableSet("*"), limit=100000, only_origin=self.db.node_id,
                            skip_empty=True)
        return [o.data for o in out if o.data is not None]

    def all_messages(self) -> list[bytes]:
        out = read_outgoing(self.db, 0, TableSet("*"), limit=100000, skip_empty=True)
        return [o.data for o in out if o.data is not None]

    def close(self) -> None:
        self.versions.uninstall()
        self.con.close()


def _write(node: Node, table: str, op: str, key, values: dict | None = None) -> None:
    """One local write through the engine's compiled writer in its own transaction."""
    s = node.con._session
    assert s.write is None
    s._begin_write()
    try:
        schema = node.db.catalog.load(s.write.txn, s.write)
        t = schema.table(table)
        w = build_writer(node.db.store, schema, t, ParamSpec.EMPTY)
        ctx = C.ExecContext((), s.write.txn, s, s.write)
        w.begin(ctx)
        existing = _find(node, s.write, schema, t, key)
        if op == "delete":
            if existing is not None:
                w.delete(existing, ctx)
        else:
            n = len(t.columns)
            if existing is None:
                row = [None] * n
            else:
                row = list(existing[:n])
            for name, v in (values or {}).items():
                row[t.column_index(name)] = v
            row[t.pk[0]] = key
            if existing is None:
                w.insert(tuple(row), ctx, C.CONFLICT_MODES["ABORT"])
            else:
                w.update(existing, tuple(row), ctx, C.CONFLICT_MODES["ABORT"])
        s.commit()
    except BaseException:
        s.rollback()
        raise


def _find(node, write, schema, t, key):
    txn = write.txn
    n = len(t.columns)
    tdb = node.db.store.db(t.db_name, txn=write)
    if t.rowid_alias is not None:
        data = txn.get(C.encode_rowid(key), db=tdb)
        return None if data is None else C.decode_row(data, n, None) + (key,)
    ix = next(i for i in schema.indexes_of(t) if i.origin == "pk")
    pk = C.encode_key((key,))
    with txn.cursor(db=node.db.store.db(ix.db_name, txn=write)) as cur:
        if not cur.set_range(pk) or not cur.key().startswith(pk):
            return None
        rowid = C.key_rowid_suffix(cur.key())
    return C.decode_row(txn.get(C.encode_rowid(rowid), db=tdb), n, None) + (rowid,)


@pytest.fixture
def nodes(tmp_path):
    made = []

    def make(n=3, tables="*"):
        for i in range(n):
            made.append(Node(tmp_path / f"n{i}", tables))
        return made
    yield make
    for nd in made:
        nd.close()


def _tables(node: Node) -> dict:
    with node.db.store.begin_read() as rt:
        return node.db.committed_schema(rt.txn).tables


def _create_schema(node: Node) -> None:
    for sql in SCHEMA:
        node.con.execute(sql)


def _deliver_all(nodes: list[Node], rng: random.Random | None = None) -> None:
    """Every node's own change sets to every other node (order shuffled when rng given)."""
    for dst in nodes:
        msgs = [m for src in nodes if src is not dst for m in src.own_messages()]
        if rng is not None:
            rng.shuffle(msgs)
        dst.applier.apply([(0, m) for m in msgs], None)


# ---------------------------------------------------------------------------------------------
# The merge rule


def _rec(op, hlc, node, values=None, changed=None, n=3):
    return Record.from_entry(op, hlc, node, values, changed, n)


def test_merge_is_commutative_and_idempotent():
    a, b, c = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16
    writes = [
        (C.CHANGE_OP_INSERT, 10, a, (1, "x", 1.0), None),
        (C.CHANGE_OP_UPDATE, 12, b, (1, "y", 1.0), 0b010),
        (C.CHANGE_OP_DELETE, 11, c, None, None),
        (C.CHANGE_OP_UPDATE, 14, a, (1, "x", 9.0), 0b100),
        (C.CHANGE_OP_INSERT, 13, c, (1, "z", 2.0), None),
    ]
    rng = random.Random(7)
    results = set()
    for _ in range(60):
        order = writes + rng.sample(writes, 2)       # duplicates too
        rng.shuffle(order)
        rec = _rec(*order[0])
        for w in order[1:]:
            merge(rec, _rec(*w), w[0] != C.CHANGE_OP_DELETE)
        results.add((rec.dead, rec.ex_hlc, tuple(rec.values), tuple(rec.vers)))
    assert len(results) == 1
    dead, ex_hlc, values, _ = results.pop()
    assert (dead, ex_hlc, values) == (False, 14, (1, "z", 9.0))   # insert@13 beats update@12 on "a"


def test_ties_on_hlc_go_to_the_larger_node_id():
    lo, hi = b"\x01" * 16, b"\xff" * 16
    r1 = _rec(C.CHANGE_OP_INSERT, 5, lo, (1, "lo", 0.0))
    merge(r1, _rec(C.CHANGE_OP_INSERT, 5, hi, (1, "hi", 0.0)), True)
    r2 = _rec(C.CHANGE_OP_INSERT, 5, hi, (1, "hi", 0.0))
    res = merge(r2, _rec(C.CHANGE_OP_INSERT, 5, lo, (1, "lo", 0.0)), True)
    assert r1.values == r2.values == [1, "hi", 0.0]
    assert res.lost_columns == [1]


def test_record_roundtrip():
    r = _rec(C.CHANGE_OP_UPDATE, 99, b"\x05" * 16, (1, b"\x00bin", None), 0b10)
    back = Record.decode(r.encode(), 3)
    assert (back.dead, back.ex_hlc, back.ex_node, back.vers, back.values) == (
        r.dead, r.ex_hlc, r.ex_node, r.vers, r.values)
    # A record of an older, narrower table reads with bottom versions for new columns.
    assert Record.decode(r.encode(), 4).values == [1, b"\x00bin", None, None]


# ---------------------------------------------------------------------------------------------
# Applying between real databases


def test_schema_and_rows_replicate_and_no_echo(nodes):
    a, b, _ = nodes()
    _create_schema(a)
    a.con.execute("INSERT INTO kv VALUES (1, 'one', 1, 1.5)")
    a.con.execute("INSERT INTO s VALUES ('k', 1, 'w')")
    a.con.commit()
    stats = LocalPeer(b.applier, a.db).pull_all()
    assert stats.ddl == 2 and stats.entries == 2
    assert b.rows("kv") == [(1, "one", 1, 1.5)]
    assert b.rows("s") == [("k", 1, "w")]
    # b's binlog relays a's change sets; pulling them back into a is all echo.
    back = LocalPeer(a.applier, b.db).pull_all()
    assert back.entries == 0
    echo = a.applier.apply([(0, m) for m in a.own_messages()], None)
    assert echo.echoes == echo.messages == 3 and echo.entries == 0   # 2 CREATE, 1 INSERT
    assert a.rows("kv") == [(1, "one", 1, 1.5)]
    # Applied rows were not captured as new local change sets of b.
    assert all(o.origin == a.db.node_id for o in read_outgoing(b.db, 0, TableSet("*"), skip_empty=True)
               if o.data is not None)


def test_concurrent_column_updates_merge_per_column(nodes):
    a, b, _ = nodes()
    _create_schema(a)
    _write(a, "kv", "upsert", 1, {"a": "base", "b": 0, "c": 0.0})
    LocalPeer(b.applier, a.db).pull_all()
    _write(a, "kv", "upsert", 1, {"a": "from-a"})
    _write(b, "kv", "upsert", 1, {"b": 42})
    LocalPeer(b.applier, a.db).pull_all()
    LocalPeer(a.applier, b.db).pull_all()
    assert a.rows("kv") == b.rows("kv") == [(1, "from-a", 42, 0.0)]
    assert a.conflicts() == b.conflicts() == []        # different columns: no conflict


def test_same_column_conflict_is_recorded_with_both_versions(nodes):
    a, b, _ = nodes()
    _create_schema(a)
    _write(a, "kv", "upsert", 1, {"a": "base"})
    LocalPeer(b.applier, a.db).pull_all()
    _write(a, "kv", "upsert", 1, {"a": "A"})
    time.sleep(0.003)                                 # a later millisecond: b's HLC is larger
    _write(b, "kv", "upsert", 1, {"a": "B"})
    LocalPeer(b.applier, a.db).pull_all()
    LocalPeer(a.applier, b.db).pull_all()
    assert a.rows("kv") == b.rows("kv") == [(1, "B", None, None)]
    # Both nodes record the one conflict: b when A's write arrives and loses, a when B's arrives and wins.
    for node in (a, b):
        rows = node.con.execute("SELECT kind, table_name, pk, columns, winner_origin, winner_row, "
                                "loser_origin, loser_row, winner_hlc > loser_hlc FROM terndb_conflicts").fetchall()
        assert rows == [("column", "kv", "[1]", '["a"]', b.db.node_id.hex(), '{"a":"B"}', a.db.node_id.hex(),
                         '{"a":"A"}', 1)]


def test_delete_tombstone_beats_late_update_and_newer_insert_recreates(nodes):
    a, b, _ = nodes()
    _create_schema(a)
    _write(a, "kv", "upsert", 1, {"a": "v0"})
    LocalPeer(b.applier, a.db).pull_all()
    _write(a, "kv", "upsert", 1, {"a": "late update"})   # older ...
    time.sleep(0.003)
    _write(b, "kv", "delete", 1)                          # ... than this delete
    # Deliver the delete first, then the (older) update: it must not resurrect the row.
    LocalPeer(a.applier, b.db).pull_all()
    LocalPeer(b.applier, a.db).pull_all()
    assert a.rows("kv") == b.rows("kv") == []
    for node in (a, b):
        kinds = [r[0] for r in node.con.execute("SELECT kind FROM terndb_conflicts").fetchall()]
        assert kinds == ["update_deleted"]
    with b.db.store.begin_read() as rt:
        rec = b.versions.get(rt.txn, b.db.committed_schema(rt.txn).table("kv"), (1,))
    assert rec is not None and rec.dead
    # A newer insert re-creates the key everywhere.
    a.con.execute("INSERT INTO kv VALUES (1, 'again', 2, NULL)")
    a.con.commit()
    LocalPeer(b.applier, a.db).pull_all()
    assert a.rows("kv") == b.rows("kv") == [(1, "again", 2, None)]


def test_update_before_insert_is_filled_in_later(nodes):
    a, b, c = nodes()
    _create_schema(a)
    LocalPeer(b.applier, a.db).pull_all()
    LocalPeer(c.applier, a.db).pull_all()
    _write(a, "kv", "upsert", 7, {"a": "ins", "b": 1, "c": 1.0})
    LocalPeer(b.applier, a.db).pull_all()
    _write(b, "kv", "upsert", 7, {"b": 2})
    # c gets b's update before a's insert.
    c.applier.apply([(0, m) for m in b.own_messages()], None)
    c.applier.apply([(0, m) for m in a.own_messages()], None)
    assert c.rows("kv") == [(7, "ins", 2, 1.0)]
    # b's update had seen a's insert (its prev_hlc says so): the insert arriving after it is an
    # ordinary overwritten version, not a conflict.
    assert c.conflicts() == []


def test_duplicates_and_mesh_paths_apply_once(nodes):
    a, b, c = nodes()
    _create_schema(a)
    for i in range(5):
        a.con.execute("INSERT INTO kv VALUES (?, 'x', ?, NULL)", (i, i))
        a.con.commit()
    LocalPeer(b.applier, a.db).pull_all()
    # c hears a directly and through b's relay: each change set applies once.
    s1 = LocalPeer(c.applier, b.db).pull_all()
    s2 = LocalPeer(c.applier, a.db).pull_all()
    # a: CREATE of the conflict table, 2 CREATE TABLE, 5 INSERT; b: its conflict table.
    assert s1.applied == 9 and s2.applied == 0 and s2.duplicates == 8
    again = c.applier.apply([(0, m) for m in a.own_messages()], None)
    assert again.applied == 0 and again.duplicates == again.messages
    assert c.rows("kv") == a.rows("kv")


def test_channel_position_commits_with_data_and_skips_redelivery(nodes):
    a, b, _ = nodes()
    _create_schema(a)
    a.con.execute("INSERT INTO kv VALUES (1, 'x', 1, NULL)")
    a.con.commit()
    out = read_outgoing(a.db, 0, TableSet("*"))
    items = [(o.sequence, o.data) for o in out]
    st = b.applier.apply(items, "chan")
    assert b.applier.position("chan") == items[-1][0]
    # Redelivery of the whole batch (a crash between commit and ack): all skipped by position.
    st2 = b.applier.apply(items, "chan")
    assert st2.duplicates == len(items) and st2.applied == 0
    # A malformed message is not applied but dead-lettered in the same commit as the
    # position (so the transport acknowledges it instead of redelivering it forever).
    bad = [(items[-1][0] + 1, b"TRM1garbage")]
    st3 = b.applier.apply(bad, "chan")
    assert st3.dead_letters == 1 and st3.applied == 0
    assert b.applier.position("chan") == items[-1][0] + 1
    assert b.con.execute("SELECT reason LIKE 'malformed%', message FROM terndb_dead_letters").fetchall() == [
        (1, b"TRM1garbage")]
    assert st.entries == 1


def test_unique_violation_on_apply_is_a_constraint_conflict(nodes):
    a, b, _ = nodes()
    a.con.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE)")
    LocalPeer(b.applier, a.db).pull_all()
    a.con.execute("INSERT INTO users VALUES (1, 'x@y')")
    a.con.commit()
    b.con.execute("INSERT INTO users VALUES (2, 'x@y')")
    b.con.execute("INSERT INTO users VALUES (3, 'z@y')")
    b.con.commit()
    LocalPeer(a.applier, b.db).pull_all()
    assert a.rows("users") == [(1, "x@y"), (3, "z@y")]
    kinds = a.con.execute("SELECT kind, pk FROM terndb_conflicts").fetchall()
    assert kinds == [("constraint", "[2]")]


def test_tables_without_primary_key_are_refused(tmp_path):
    con = _connect(tmp_path / "x")
    con.execute("CREATE TABLE nopk(a, b)")
    with pytest.raises(terndb.ProgrammingError):
        Replicator(con, publish=["nopk"]).close()
    con.close()


def test_table_level_publish_and_subscribe(nodes):
    a, b = nodes(2)
    _create_schema(a)
    a.con.execute("INSERT INTO kv VALUES (1, 'x', 1, NULL)")
    a.con.execute("INSERT INTO s VALUES ('k', 1, NULL)")
    a.con.commit()
    only_s = LocalPeer(b.applier, a.db, publish=TableSet(["s"]))
    only_s.pull_all()
    assert b.rows("s") == [("k", 1, None)]
    assert "kv" not in _tables(b)


def test_subscriber_filters_tables(tmp_path):
    a = Node(tmp_path / "a")
    b = Node(tmp_path / "b", tables=["kv"])
    try:
        _create_schema(a)
        a.con.execute("INSERT INTO kv VALUES (1, 'x', 1, NULL)")
        a.con.execute("INSERT INTO s VALUES ('k', 1, NULL)")
        a.con.commit()
        LocalPeer(b.applier, a.db).pull_all()
        tables = _tables(b)
        assert "kv" in tables and "s" not in tables
        assert b.rows("kv") == [(1, "x", 1, None)]
    finally:
        a.close()
        b.close()


def test_tombstone_gc_horizon(nodes):
    a, b, _ = nodes()
    _create_schema(a)
    _write(a, "kv", "upsert", 1, {"a": "x"})
    LocalPeer(b.applier, a.db).pull_all()
    old_update = None
    _write(a, "kv", "upsert", 1, {"a": "old"})
    old_update = a.own_messages()[-1]
    time.sleep(0.003)
    _write(b, "kv", "delete", 1)
    LocalPeer(a.applier, b.db).pull_all()
    far_future = (1 << 62) >> 16
    assert b.db.store.write(lambda w: b.versions.gc_tombstones(w, far_future), timeout=5) == 1
    # The tombstone is gone, but the floor still refuses the old update.
    st = b.applier.apply([(0, old_update)], None)
    assert b.rows("kv") == []
    assert st.conflicts == 1
    assert b.con.execute("SELECT kind FROM terndb_conflicts").fetchall()[-1] == ("stale",)


def test_bootstrap_merges_instead_of_replacing(nodes):
    a, b, _ = nodes()
    _create_schema(a)
    for i in range(1, 4):
        a.con.execute("INSERT INTO kv VALUES (?, 'from-a', ?, NULL)", (i, i))
    a.con.commit()
    _write(a, "kv", "delete", 3)
    # b has its own rows, one with the same key as a's.
    _create_schema(b)
    b.con.execute("INSERT INTO kv VALUES (2, 'b-newer', 20, NULL)")
    b.con.execute("INSERT INTO kv VALUES (9, 'only-b', 9, NULL)")
    b.con.commit()
    peer = LocalPeer(b.applier, a.db)
    peer.bootstrap()
    assert b.rows("kv") == [(1, "from-a", 1, None), (2, "b-newer", 20, None), (9, "only-b", 9, None)]
    assert peer.lag() == 0
    # Later changes at a stream in from the snapshot's position.
    a.con.execute("INSERT INTO kv VALUES (4, 'after', 4, NULL)")
    a.con.commit()
    st = peer.pull_all()
    assert st.applied == 1 and (4, "after", 4, None) in b.rows("kv")


# ---------------------------------------------------------------------------------------------
# The acceptance property: 3 nodes, concurrent writes to the same rows, chaotic delivery


def _random_op(rng: random.Random, node: Node) -> None:
    table = rng.choice(["kv", "s"])
    key = rng.randint(1, 4) if table == "kv" else rng.choice("pqrs")
    r = rng.random()
    if r < 0.2:
        _write(node, table, "delete", key)
    else:
        cols = ["a", "b", "c"] if table == "kv" else ["v", "w"]
        picked = rng.sample(cols, rng.randint(1, len(cols)))
        vals = {}
        for c in picked:
            vals[c] = rng.choice([None, rng.randint(0, 9), f"t{rng.randint(0, 9)}", rng.random()])
        _write(node, table, "upsert", key, vals)


def _chaos_round(rng: random.Random, nodes: list[Node]) -> None:
    """Deliver a random subset of change sets (own and relayed), shuffled and duplicated."""
    for dst in nodes:
        pool = [m for src in nodes if src is not dst
                for m in (src.own_messages() if rng.random() < 0.5 else src.all_messages())]
        if not pool:
            continue
        picked = rng.sample(pool, rng.randint(0, len(pool)))
        picked += rng.choices(pool, k=rng.randint(0, 3))
        rng.shuffle(picked)
        dst.applier.apply([(0, m) for m in picked], None)


@pytest.mark.parametrize("seed", range(6))
def test_three_nodes_converge_under_concurrent_writes_duplicates_and_reordering(nodes, seed):
    rng = random.Random(seed)
    ns = nodes(3)
    _create_schema(ns[0])
    _deliver_all(ns)
    for _ in range(40):
        if rng.random() < 0.75:
            _random_op(rng, rng.choice(ns))
        else:
            _chaos_round(rng, ns)
    _deliver_all(ns, rng)
    _deliver_all(ns, rng)
    for t in ("kv", "s"):
        assert ns[0].rows(t) == ns[1].rows(t) == ns[2].rows(t), t
    # Idempotent: delivering everything again changes nothing and records nothing.
    before = [(n.rows("kv"), n.rows("s"), len(n.conflicts())) for n in ns]
    _deliver_all(ns, rng)
    assert [(n.rows("kv"), n.rows("s"), len(n.conflicts())) for n in ns] == before


def test_three_nodes_same_row_conflicts_are_recorded(nodes):
    ns = nodes(3)
    _create_schema(ns[0])
    _deliver_all(ns)
    for i, n in enumerate(ns):
        time.sleep(0.003)
        _write(n, "kv", "upsert", 1, {"a": f"node{i}", "b": i})
    _deliver_all(ns, random.Random(1))
    rows = [n.rows("kv") for n in ns]
    assert rows[0] == rows[1] == rows[2] == [(1, "node2", 2, None)]
    # Each node meets each of the two foreign concurrent writes once: either it beats the stored
    # version or loses to it, and either way one conflict row is recorded there.
    assert [len(n.conflicts()) for n in ns] == [2, 2, 2]
    # The winner (node 2, newest HLC) saw both losers arrive after its own write.
    losers = {r[9] for r in ns[2].conflicts()}
    assert losers == {ns[0].db.node_id.hex(), ns[1].db.node_id.hex()}


# ---------------------------------------------------------------------------------------------
# Causality: conflicts only between writes that had not seen each other


def _entries(node: Node) -> list:
    """(hlc, op, prev_hlc) of every row entry of the node's own change sets, in commit order."""
    out = []
    for m in node.own_messages():
        msg = decode_message(m)
        out += [(msg.hlc, e.op, e.prev_hlc) for e in msg.entries if e.op != C.CHANGE_OP_DDL]
    return out


def test_entries_carry_the_version_their_writer_saw(nodes):
    a, b = nodes(2)
    _create_schema(a)
    _write(a, "kv", "upsert", 1, {"a": "x"})
    _write(a, "kv", "upsert", 1, {"b": 2})
    _write(a, "kv", "delete", 1)
    (h1, op1, p1), (h2, op2, p2), (h3, op3, p3) = _entries(a)
    assert (op1, p1) == (C.CHANGE_OP_INSERT, 0)          # a new row: nothing seen
    assert (op2, p2) == (C.CHANGE_OP_UPDATE, h1)
    assert (op3, p3) == (C.CHANGE_OP_DELETE, h2)
    # A remote write's version is what a local writer sees next.
    LocalPeer(b.applier, a.db).pull_all()
    _write(b, "kv", "upsert", 1, {"a": "again"})
    assert _entries(b)[-1][1:] == (C.CHANGE_OP_INSERT, h3)


@pytest.mark.parametrize("seed", range(4))
def test_causally_ordered_updates_reordered_and_duplicated_record_no_conflict(nodes, seed):
    rng = random.Random(seed)
    a, b, c = nodes(3)
    _create_schema(a)
    _deliver_all([a, b, c])
    # A chain of writes to the same columns, alternating nodes, each after seeing the previous one.
    for i in range(6):
        src, dst = (a, b) if i % 2 == 0 else (b, a)
        _write(src, "kv", "upsert", 1, {"a": f"v{i}", "b": i})
        _write(src, "kv", "upsert", 1, {"a": f"w{i}"})
        dst.applier.apply([(0, m) for m in src.all_messages()], None)
    # c gets everything shuffled, with duplicates; a and b get each other's history again.
    msgs = a.all_messages() + b.all_messages()
    msgs += rng.choices(msgs, k=5)
    rng.shuffle(msgs)
    c.applier.apply([(0, m) for m in msgs], None)
    _deliver_all([a, b, c], rng)
    assert a.rows("kv") == b.rows("kv") == c.rows("kv") == [(1, "w5", 5, None)]
    assert a.conflicts() == b.conflicts() == c.conflicts() == []


@pytest.mark.parametrize("seed", range(4))
def test_concurrent_updates_record_one_conflict_per_attribute_on_every_node(nodes, seed):
    rng = random.Random(seed)
    a, b, c = nodes(3)
    _create_schema(a)
    _write(a, "kv", "upsert", 1, {"a": "base", "b": 0, "c": 0.0})
    _write(a, "kv", "upsert", 2, {"a": "base"})
    _deliver_all([a, b, c])
    # Concurrent: neither writer has seen the other's write.  "a" and "b" are contested on row 1,
    # "c" only by a (no conflict); on row 2, a deletes while b updates.
    _write(a, "kv", "upsert", 1, {"a": "A", "b": 1, "c": 1.5})
    _write(b, "kv", "upsert", 1, {"a": "B", "b": 2})
    _write(a, "kv", "delete", 2)
    _write(b, "kv", "upsert", 2, {"a": "B2"})
    msgs = a.own_messages()[-2:] + b.own_messages()[-2:]
    for node in (a, b, c):
        batch = msgs + rng.choices(msgs, k=2)
        rng.shuffle(batch)
        node.applier.apply([(0, m) for m in batch], None)
    _deliver_all([a, b, c], rng)
    assert a.rows("kv") == b.rows("kv") == c.rows("kv")
    for node in (a, b, c):
        got = node.con.execute("SELECT pk, kind, columns, winner_origin, loser_origin FROM terndb_conflicts "
                               "ORDER BY pk, kind").fetchall()
        per_attr = sorted((pk, col) for pk, kind, cols, *_ in got for col in json.loads(cols) or [kind])
        assert per_attr == [("[1]", "a"), ("[1]", "b"), ("[2]", kind_of(got, "[2]"))], (node, got)
        assert all({w, lo} == {a.db.node_id.hex(), b.db.node_id.hex()} for _, _, _, w, lo in got)
    # Every node saw the same pairs with the same winners.
    q = "SELECT pk, kind, columns, winner_origin, winner_hlc, loser_origin, loser_hlc FROM terndb_conflicts"
    assert sorted(a.con.execute(q)) == sorted(b.con.execute(q)) == sorted(c.con.execute(q))


def test_senders_add_causal_versions_to_writes_made_without_the_hook(tmp_path):
    # The writer runs no replicator (as when `terndb replicate` runs in its own process).
    con = _connect(tmp_path / "w")
    con.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT)")
    con.execute("INSERT INTO kv VALUES (1, 'x')")
    con.commit()
    con.execute("UPDATE kv SET a = 'y' WHERE id = 1")
    con.commit()
    vs = VersionStore(con._db, TableSet("*"))
    out = read_outgoing(con._db, 0, TableSet("*"), skip_empty=True)
    assert decode_message(out[-1].data).entries[0].prev_hlc == 0       # not known yet
    assert vs.ensure_current() == 3                                     # CREATE, INSERT, UPDATE
    out = read_outgoing(con._db, 0, TableSet("*"), skip_empty=True)
    ins, upd = decode_message(out[-2].data), decode_message(out[-1].data)
    assert upd.entries[0].prev_hlc == ins.hlc
    assert vs.ensure_current() == 0                                     # current: nothing to do
    con.close()


def _planned_outgoing(vs, db):
    """What a publisher sends from a planned, unwritten catch-up: (plan, prevs of each row entry)."""
    with db.store.begin_read() as rt:
        plan = vs.plan_ahead(rt.txn)
        out = outgoing_in(rt.txn, db, 0, TableSet("*"), skip_empty=True, upto=plan.upto,
                          rewritten=plan.rewrites)
    rows = [o for o in out if o.changeset is not None and not o.has_ddl]
    prevs = [e.prev_hlc for o in rows for e in decode_message(o.data).entries]
    return plan, rows, prevs


def _stored_mark(vs, db):
    with db.store.begin_read() as rt:
        raw = vs.state_get(rt.txn, K_VERSIONS_SEQ)
    return int.from_bytes(raw, "big") if raw else 0


def test_a_planned_catch_up_annotates_what_is_sent_without_writing(tmp_path):
    """plan_ahead gives change sets their causal versions in memory, round after round, and writes
    nothing; flush_ahead then stores exactly what was sent."""
    con = _connect(tmp_path / "w")
    db = con._db
    con.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT)")
    con.commit()
    vs = VersionStore(db, TableSet("*"))
    vs.ensure_current()                              # the CREATE: a local DDL entry needs a write
    mark = _stored_mark(vs, db)
    con.execute("INSERT INTO kv VALUES (1, 'x')")
    con.commit()
    con.execute("UPDATE kv SET a = 'y' WHERE id = 1")
    con.commit()
    plan, out, prevs = _planned_outgoing(vs, db)
    hlcs = [o.hlc for o in out]
    assert prevs == [0, hlcs[0]]                     # the update saw the insert
    assert _stored_mark(vs, db) == mark               # nothing written
    con.execute("UPDATE kv SET a = 'z' WHERE id = 1")
    con.commit()
    plan2, out, prevs = _planned_outgoing(vs, db)
    assert plan2 is plan and plan.since == mark      # the same plan, extended
    hlcs = [o.hlc for o in out]
    assert prevs == [0, hlcs[0], hlcs[1]]
    sent = [o.changeset for o in out]
    assert vs.flush_ahead() == 3 and vs.ahead_size() == 0
    assert _stored_mark(vs, db) > mark
    # The binlog now holds what was sent, and the records what a write-time catch-up would hold.
    stored = [o.changeset for o in read_outgoing(db, 0, TableSet("*"), skip_empty=True, current=True)
              if o.changeset is not None and not o.has_ddl]
    assert stored == sent
    con.close()


def _kv_updated_after_catch_up(tmp_path):
    """A table kv whose row 1 was inserted, caught up in the records, then updated:
    (connection, database, version store)."""
    con = _connect(tmp_path / "w")
    db = con._db
    con.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT)")
    con.execute("INSERT INTO kv VALUES (1, 'x')")
    con.commit()
    vs = VersionStore(db, TableSet("*"))
    vs.ensure_current()
    con.execute("UPDATE kv SET a = 'y' WHERE id = 1")
    con.commit()
    return con, db, vs


def _stored_prevs(db):
    """The previous versions the binlog's row entries carry, in order."""
    return [e.prev_hlc for o in read_outgoing(db, 0, TableSet("*"), skip_empty=True, current=True)
            if o.changeset is not None and not o.has_ddl for e in decode_message(o.data).entries]


def test_a_planned_catch_up_reads_nothing_past_its_snapshot(tmp_path):
    con, db, vs = _kv_updated_after_catch_up(tmp_path)
    with db.store.begin_read() as rt:
        plan = vs.plan_ahead(rt.txn)
    con.execute("UPDATE kv SET a = 'z' WHERE id = 1")    # committed after the plan's snapshot
    con.commit()
    with db.store.begin_read() as rt:
        out = outgoing_in(rt.txn, db, 0, TableSet("*"), skip_empty=True, upto=plan.upto,
                          rewritten=plan.rewrites)
        assert out[-1].sequence == plan.upto < db.binlog.last_sequence(rt.txn)
    con.close()


def test_a_planned_catch_up_starts_again_after_someone_else_caught_up(tmp_path):
    """Another sender (or an applier) writing the records makes a pending plan stale: it is planned
    again from the stored records, and what it sends is what the binlog holds."""
    con = _connect(tmp_path / "w")
    db = con._db
    con.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT)")
    con.execute("INSERT INTO kv VALUES (1, 'x')")
    con.commit()
    publisher, other = VersionStore(db, TableSet("*")), VersionStore(db, TableSet("*"))
    publisher.ensure_current()
    con.execute("UPDATE kv SET a = 'y' WHERE id = 1")
    con.commit()
    first, _, prevs_before = _planned_outgoing(publisher, db)
    assert other.ensure_current() == 1              # writes the update's record and versions
    con.execute("UPDATE kv SET a = 'z' WHERE id = 1")
    con.commit()
    plan, out, prevs = _planned_outgoing(publisher, db)
    assert plan is not first and plan.since == _stored_mark(publisher, db)
    assert prevs[:len(prevs_before)] == prevs_before   # the same versions either way
    hlcs = [o.hlc for o in out]
    assert prevs[-1] == hlcs[-2]                      # the last update saw the one before
    sent = [o.changeset for o in out]
    assert publisher.flush_ahead() == 1
    stored = [o.changeset for o in read_outgoing(db, 0, TableSet("*"), skip_empty=True, current=True)
              if o.changeset is not None and not o.has_ddl]
    assert stored == sent
    con.close()


class _FakeJetStream:
    """What NatsReplicator._publish_pending needs of nats-py's JetStream: acknowledged publishes."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, str]] = []

    async def publish_async(self, subject, payload, headers):
        import asyncio
        from types import SimpleNamespace
        self.messages.append((subject, payload, headers["Nats-Msg-Id"]))
        ack = asyncio.get_running_loop().create_future()
        ack.set_result(SimpleNamespace(duplicate=False))
        return ack


def test_a_planned_catch_up_that_failed_midway_is_planned_afresh(tmp_path, monkeypatch):
    """A round whose extension raises (an LMDB or memory error) leaves no half-merged plan: the
    next round sends and stores each change set with the version it really replaced."""
    from terndb.engine import repl_versions
    con, db, vs = _kv_updated_after_catch_up(tmp_path)
    _planned_outgoing(vs, db)                       # round 1: a plan pending
    for value in ("z", "w"):
        con.execute("UPDATE kv SET a = ? WHERE id = 1", (value,))
        con.commit()
    merge_changeset, calls = repl_versions.C.repl_merge_local_changeset, []

    def fails_on_the_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("transient read error")
        return merge_changeset(*args)

    monkeypatch.setattr(repl_versions.C, "repl_merge_local_changeset", fails_on_the_second)
    with pytest.raises(OSError), db.store.begin_read() as rt:
        vs.plan_ahead(rt.txn)                        # round 2 fails after one merge
    monkeypatch.setattr(repl_versions.C, "repl_merge_local_changeset", merge_changeset)
    _, out, prevs = _planned_outgoing(vs, db)
    hlcs = [o.hlc for o in out]
    assert prevs == [0] + hlcs[:-1]                 # each update replaced the one before it
    vs.flush_ahead()
    stored = _stored_prevs(db)
    assert stored == prevs
    con.close()


def test_tombstone_gc_catches_up_before_it_removes(tmp_path):
    """A re-insert sent with a tombstone as its previous version keeps it in the binlog when the
    tombstones are collected before the publisher flushes its plan."""
    con = _connect(tmp_path / "w")
    db = con._db
    con.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT)")
    con.execute("INSERT INTO kv VALUES (1, 'x')")
    con.commit()
    con.execute("DELETE FROM kv WHERE id = 1")
    con.commit()
    vs = VersionStore(db, TableSet("*"))
    vs.ensure_current()                              # the tombstone of id 1
    con.execute("INSERT INTO kv VALUES (1, 'y')")
    con.commit()
    _, _, sent = _planned_outgoing(vs, db)
    assert sent[-1] != 0                              # the re-insert replaced the tombstone
    db.store.write(lambda w: vs.gc_tombstones(w, now_ms=2**42), timeout=30.0)
    vs.flush_ahead()
    stored = _stored_prevs(db)
    assert stored[-1] == sent[-1]
    con.close()


def test_the_publisher_writes_its_catch_up_when_the_writer_pauses(tmp_path):
    """While every round finds new commits the publisher takes no write transaction; the first
    round that finds none writes the planned catch-up and the acknowledged position."""
    import asyncio
    con = _connect(tmp_path / "w")
    con.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT)")
    con.commit()
    rep = Replicator(con, nats="nats://127.0.0.1:1", publish="*", subscribe=[])
    try:
        rep.versions.ensure_current()               # past the conflict table's CREATE
        nr = rep._nats_replicator()
        js = _FakeJetStream()
        mark = _stored_mark(rep.versions, con._db)
        for round_ in range(3):
            for i in range(5):
                con.execute("INSERT INTO kv VALUES (?, 'x')", (round_ * 5 + i,))
                con.commit()
            con.execute("UPDATE kv SET a = 'y' WHERE id = ?", (round_ * 5,))
            con.commit()
            assert asyncio.run(nr._publish_pending(js, drain=False)) > 0
            assert _stored_mark(rep.versions, con._db) == mark and nr._stored_pub_position() == 0
        assert asyncio.run(nr._publish_pending(js, drain=False)) == 0      # the writer paused
        with con._db.store.begin_read() as rt:
            last = con._db.binlog.last_sequence(rt.txn)
        assert _stored_mark(rep.versions, con._db) == last and nr._stored_pub_position() == last
        # Every update went out with the version it replaced.
        updates = [m for _, payload, _ in js.messages for m in decode_wire(payload)
                   if m.entries[0].op == C.CHANGE_OP_UPDATE]
        assert len(updates) == 3 and all(u.entries[0].prev_hlc > 0 for u in updates)
    finally:
        rep.close()
        con.close()


def test_a_commit_between_catch_up_and_read_waits_for_its_versions(tmp_path, monkeypatch):
    """read_outgoing sends nothing past the records' catch-up: a commit landing in between would go
    out without the version its writer saw (a false conflict on every receiver)."""
    from terndb.engine import repl_feed
    con = _connect(tmp_path / "w")
    con.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT)")
    con.execute("INSERT INTO kv VALUES (1, 'x')")
    con.commit()
    rep = Replicator(con, publish="*", subscribe=[])
    try:
        real = repl_feed.bring_current

        def catch_up_then_commit(db, *args, **kwargs):
            kept = real(db, *args, **kwargs)
            con.execute("UPDATE kv SET a = 'y' WHERE id = 1")      # lands after the catch-up
            con.commit()
            return kept
        monkeypatch.setattr(repl_feed, "bring_current", catch_up_then_commit)
        first = read_outgoing(con._db, 0, TableSet("*"), skip_empty=True)
        monkeypatch.setattr(repl_feed, "bring_current", real)
        assert all(decode_message(o.data).entries[0].op != C.CHANGE_OP_UPDATE
                   for o in first if o.changeset is not None and not o.has_ddl)
        later = read_outgoing(con._db, first[-1].sequence, TableSet("*"), skip_empty=True)
        update = decode_message(later[-1].data).entries[0]
        assert update.op == C.CHANGE_OP_UPDATE and update.prev_hlc > 0     # with the version it replaced
    finally:
        rep.close()
        con.close()


def kind_of(rows: list, pk: str) -> str:
    kinds = [kind for p, kind, *_ in rows if p == pk]
    assert len(kinds) == 1 and kinds[0] in ("delete_lost", "update_deleted"), rows
    return kinds[0]


def test_records_without_previous_versions_still_decode():
    import struct
    node = b"\x07" * 16
    old = struct.pack(">BQ16sH" + "BQ16s" * 2, 0, 9, node, 2, 1, 9, node, 0, 9, node) + C.encode_row((1, "x"))
    rec = Record.decode(old, 2)
    assert (rec.dead, rec.ex_hlc, rec.vers, rec.values, rec.ex_prev, rec.prevs) == (
        False, 9, [(1, 9, node), (0, 9, node)], [1, "x"], 0, [0, 0])
    back = Record.decode(rec.encode(), 2)
    assert (back.vers, back.values, back.prevs) == (rec.vers, rec.values, rec.prevs)


# ---------------------------------------------------------------------------------------------
# Change feed


def test_change_feed_lists_and_follows_a_table(nodes):
    a, b = nodes(2)
    _create_schema(a)
    start = ChangeFeed(a.db).last_position()
    a.con.execute("INSERT INTO kv VALUES (1, 'x', 1, NULL)")
    a.con.execute("INSERT INTO s VALUES ('k', 1, NULL)")
    a.con.commit()
    _write(a, "kv", "upsert", 1, {"b": 5})
    _write(a, "kv", "delete", 1)
    feed = ChangeFeed(a.db)
    ch = feed.changes("kv", since=start)
    assert [(c.op, c.key) for c in ch] == [("insert", (1,)), ("update", (1,)), ("delete", (1,))]
    assert ch[0].row == {"id": 1, "a": "x", "b": 1, "c": None}
    assert ch[2].row == {"id": 1, "a": "x", "b": 5, "c": None}     # what the delete removed
    assert ch[1].changed == ("b",)
    assert ch[0].origin == a.db.node_id.hex()
    # Remote changes appear in b's feed with a's origin.
    LocalPeer(b.applier, a.db).pull_all()
    remote = ChangeFeed(b.db).changes("kv")
    assert [c.op for c in remote] == ["ddl", "insert", "update", "delete"]
    assert remote[-1].row == ch[2].row
    assert {c.origin for c in remote} == {a.db.node_id.hex()}
    # subscribe() follows new commits made by another thread.
    got = []
    stop = threading.Event()
    pos = feed.last_position()

    def consume():
        for c in feed.subscribe("s", since=pos, stop=stop, poll=0.01, timeout=5):
            got.append(c)
            stop.set()
    t = threading.Thread(target=consume)
    t.start()
    a.con.execute("INSERT INTO s VALUES ('k2', 2, NULL)")
    a.con.commit()
    t.join(10)
    assert [(c.op, c.key) for c in got] == [("insert", ("k2",))]


def test_wire_message_rejects_garbage():
    with pytest.raises(terndb.DatabaseError):
        decode_message(b"nonsense")
    with pytest.raises(terndb.DatabaseError):
        decode_message(b"TRM1\x00\x00\x00\x02{}" + b"TC")


# ---------------------------------------------------------------------------------------------
# Python API and CLI (local transport)


def test_replicator_api_two_databases(tmp_path):
    ca, cb = _connect(tmp_path / "a"), _connect(tmp_path / "b")
    ra = Replicator(ca, peers=[cb], interval=0.01, node_name="a")
    rb = Replicator(cb, peers=[ca], interval=0.01, node_name="b")
    try:
        ra.start()
        rb.start()
        ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL)")
        ca.execute("INSERT INTO kv VALUES (1, 'a', 1, NULL)")
        ca.commit()
        assert rb.wait_idle(10) and ra.wait_idle(10)
        cb.execute("INSERT INTO kv VALUES (2, 'b', 2, NULL)")
        cb.commit()
        assert ra.wait_idle(10) and rb.wait_idle(10)
        rows = [(1, "a", 1, None), (2, "b", 2, None)]
        assert ca.execute("SELECT * FROM kv ORDER BY id").fetchall() == rows
        assert cb.execute("SELECT * FROM kv ORDER BY id").fetchall() == rows
        st = ra.status()
        deadline = time.monotonic() + 10      # a transient error (retried) may be current for a moment
        while st["last_error"] is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            st = ra.status()
        assert st["running"] and st["node_name"] == "a" and st["node_id"] == ca._db.node_id.hex()
        assert st["peers"][0]["lag"] == 0 and st["totals"]["applied"] >= 1 and st["last_error"] is None
        assert ra.conflicts() == []
    finally:
        ra.close()
        rb.close()
        ca.close()
        cb.close()


def test_replicator_restart_catches_up(tmp_path):
    pa, pb = tmp_path / "a", tmp_path / "b"
    ca = _connect(pa)
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL)")
    ca.execute("INSERT INTO kv VALUES (1, 'a', 1, NULL)")
    ca.commit()
    rb = Replicator(str(pb), peers=[ca])
    rb.sync()
    rb.close()
    # b is down while a keeps writing.
    for i in range(2, 30):
        ca.execute("INSERT INTO kv VALUES (?, 'a', ?, NULL)", (i, i))
    ca.commit()
    rb = Replicator(str(pb), peers=[ca])
    st = rb.sync()
    assert st.applied == 1 and st.entries == 28
    cb = _connect(pb)
    assert cb.execute("SELECT count(*) FROM kv").fetchone() == (29,)
    rb.close()
    cb.close()
    ca.close()


def test_cli_replicate_once(tmp_path):
    pa, pb = tmp_path / "a", tmp_path / "b"
    ca = _connect(pa)
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT)")
    ca.execute("CREATE TABLE other(id INTEGER PRIMARY KEY)")
    ca.execute("INSERT INTO kv VALUES (1, 'cli')")
    ca.commit()
    ca.close()
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "terndb", "replicate", str(pb), "--peer", str(pa),
                           "--subscribe", "kv", "--once"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert '"applied"' in proc.stdout
    cb = _connect(pb)
    assert cb.execute("SELECT * FROM kv").fetchall() == [(1, "cli")]
    with cb._db.store.begin_read() as rt:
        assert "other" not in cb._db.committed_schema(rt.txn).tables
    cb.close()


def test_sql_update_and_delete_replicate(nodes):
    a, b = nodes(2)
    a.con.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT)")
    a.con.execute("INSERT INTO kv VALUES (1, 'x')")
    a.con.execute("INSERT INTO kv VALUES (2, 'y')")
    a.con.commit()
    a.con.execute("UPDATE kv SET a = 'z' WHERE id = 1")
    a.con.execute("DELETE FROM kv WHERE id = 2")
    a.con.commit()
    LocalPeer(b.applier, a.db).pull_all()
    assert b.rows("kv") == [(1, "z")]


def test_node_id_set_by_another_process_is_used_by_open_connections(tmp_path):
    """A connection opened before ``terndb replicate --node-id`` set the id stamps its commits with the new id."""
    import subprocess
    import sys

    from terndb.engine.database import parse_node_id
    path = str(tmp_path / "db")
    con = terndb.connect(path)            # open, nothing written yet: the id may still change
    subprocess.run([sys.executable, "-c", f"import terndb; terndb.connect({path!r}, node_id='edge-7').close()"],
                   check=True, timeout=60)
    con.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("INSERT INTO kv VALUES (1, 'x')")
    con.commit()
    origins = {o.origin for o in read_outgoing(con._db, 0, TableSet("*"), skip_empty=True)}
    assert origins == {parse_node_id("edge-7")}
    con.close()
