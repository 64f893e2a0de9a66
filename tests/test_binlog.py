"""Tests for change capture (ChangeCollector / decode_changeset), the hybrid
logical clock and the LMDB binlog.

Run ``python tests/test_binlog.py`` for the micro benchmark (not a test).
"""
from __future__ import annotations

import os
import struct
import threading
import time

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terndb._cext import _core
from terndb.engine import hlc as hlc_module
from terndb.engine.binlog import BINLOG_DB_NAME, Binlog, ChangeSet, KeepLast
from terndb.engine.errors import (
    CorruptDatabaseError, DataError, InternalError, OperationalError,
)
from terndb.engine.hlc import HLC, hlc_from_parts, hlc_parts, hlc_to_datetime

INSERT, UPDATE, DELETE, DDL = (_core.CHANGE_OP_INSERT, _core.CHANGE_OP_UPDATE,
                               _core.CHANGE_OP_DELETE, _core.CHANGE_OP_DDL)
NODE = bytes(range(16))
HEADER = _core.CHANGESET_HEADER_SIZE


# -- helpers ----------------------------------------------------------------

def record(collector, change: tuple) -> None:
    """Feed one (op, table_id, pk, row, changed, prev_hlc) tuple to collector."""
    op, table_id, pk, row, changed, prev = change
    if op == INSERT:
        collector.insert(table_id, pk, row, prev)
    elif op == UPDATE:
        collector.update(table_id, pk, row, changed, prev)
    elif op == DELETE:
        collector.delete(table_id, pk, prev, row)
    else:
        collector.ddl(row)


def expected_tuple(change: tuple) -> tuple:
    """What decoding returns for a recorded change (bitmaps come back as ints)."""
    op, table_id, pk, row, changed, prev = change
    if op == DDL:
        return (DDL, 0, None, row, None, 0)
    if isinstance(changed, bytes):
        changed = int.from_bytes(changed, "little")
    return (op, table_id, pk, row, changed if op == UPDATE else None, prev)


def build(changes, hlc=7, seq=1, schema=3) -> bytes:
    c = _core.ChangeCollector()
    for change in changes:
        record(c, change)
    return c.finish(hlc, NODE, seq, schema)


u64 = st.integers(0, 2**64 - 1)
blob = st.binary(max_size=64)
change_strategy = st.one_of(
    st.tuples(st.just(INSERT), st.integers(0, 2**32 - 1), blob, blob,
              st.none(), u64),
    st.tuples(st.just(UPDATE), st.integers(0, 2**32 - 1), blob, blob,
              st.one_of(st.integers(0, 2**200), st.binary(max_size=40)), u64),
    st.tuples(st.just(DELETE), st.integers(0, 2**32 - 1), blob, st.none() | blob,
              st.none(), u64),
    st.tuples(st.just(DDL), st.just(0), st.none(), blob, st.none(), st.just(0)),
)


@pytest.fixture
def env(tmp_path):
    e = lmdb.open(str(tmp_path / "db"), max_dbs=4, map_size=64 << 20)
    yield e
    e.close()


# -- change sets: round trips -------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(changes=st.lists(change_strategy, max_size=30), hlc=u64, seq=u64,
       schema=u64)
def test_changeset_round_trip(changes, hlc, seq, schema):
    data = build(changes, hlc, seq, schema)
    header, entries = _core.decode_changeset(data)
    assert header == {"version": 1, "hlc": hlc, "origin": NODE, "sequence": seq,
                      "schema_version": schema, "count": len(changes)}
    assert [e.as_tuple() for e in entries] == [expected_tuple(c) for c in changes]
    assert _core.decode_changeset_header(data) == header


def test_update_masks_wider_than_64_columns():
    c = _core.ChangeCollector()
    c.update(1, b"k", b"r", (1 << 100) | 1)
    c.update(1, b"k", b"r", b"\x00\x00\x04")          # column 18 as a bitmap
    c.update(1, b"k", b"r", 0)
    _, entries = _core.decode_changeset(c.finish(1, NODE, 1, 1))
    assert entries[0].changed_columns == (0, 100)
    assert entries[1].changed_columns == (18,)
    assert entries[2].changed == 0 and entries[2].changed_columns == ()


def test_entry_fields_and_equality():
    c = _core.ChangeCollector()
    c.insert(5, b"pk", b"row", 99)
    c.delete(6, b"gone")
    c.ddl(b"ALTER")
    _, (ins, dele, ddl) = _core.decode_changeset(c.finish(1, NODE, 1, 1))
    assert (ins.op, ins.table_id, ins.pk_key, ins.row, ins.prev_hlc) == (
        INSERT, 5, b"pk", b"row", 99)
    assert (dele.op, dele.pk_key, dele.row) == (DELETE, b"gone", None)
    assert (ddl.op, ddl.pk_key, ddl.row) == (DDL, None, b"ALTER")
    assert ins == _core.ChangeEntry(INSERT, 5, b"pk", b"row", None, 99)
    assert ins != dele


def test_delete_may_carry_the_old_row():
    c = _core.ChangeCollector()
    c.delete(6, b"gone", 0, b"old row")
    c.delete(6, b"gone2", 42, b"")
    c.delete(6, b"gone3", 7)
    _, entries = _core.decode_changeset(c.finish(1, NODE, 1, 1))
    assert [(e.pk_key, e.row, e.prev_hlc) for e in entries] == [
        (b"gone", b"old row", 0), (b"gone2", b"", 42), (b"gone3", None, 7)]
    # The deleted-row flag is only valid on deletes.
    c = _core.ChangeCollector()
    c.insert(6, b"k", b"r")
    data = bytearray(c.finish(1, NODE, 1, 1))
    data[HEADER] |= 0x40
    with pytest.raises(CorruptDatabaseError):
        _core.decode_changeset(bytes(data))


def test_collector_rejects_bad_arguments():
    c = _core.ChangeCollector()
    with pytest.raises(InternalError):
        c.insert(-1, b"k", b"r")
    with pytest.raises(InternalError):
        c.insert(2**32, b"k", b"r")
    with pytest.raises(InternalError):
        c.insert(1, None, b"r")
    with pytest.raises(InternalError):
        c.update(1, b"k", b"r", -3)
    with pytest.raises(InternalError):
        c.update(1, b"k", b"r", "cols")
    with pytest.raises(InternalError):
        c.update(1, b"k", b"r", b"\xff" * 5000)
    with pytest.raises(InternalError):
        c.finish(1, b"short", 1, 1)
    assert c.count == 0


def test_finish_keeps_changes_and_clear_resets():
    c = _core.ChangeCollector()
    c.insert(1, b"k", b"x" * 10_000_000)   # grows past the kept capacity
    first = c.finish(1, NODE, 1, 1)
    assert c.finish(1, NODE, 1, 1) == first and c.count == 1
    c.clear()
    assert c.count == 0 and c.nbytes == HEADER
    c.insert(1, b"k", b"v")
    assert [e.row for e in _core.decode_changeset(c.finish(1, NODE, 1, 1))[1]] == [b"v"]


# -- savepoints ---------------------------------------------------------------

def test_savepoint_rollback_drops_later_changes():
    c = _core.ChangeCollector()
    c.insert(1, b"a", b"1")
    outer = c.savepoint()
    c.insert(1, b"b", b"2")
    inner = c.savepoint()
    c.delete(1, b"a")
    c.rollback_to(inner)
    assert c.count == 2
    c.update(1, b"b", b"3", 1)
    c.rollback_to(outer)
    c.insert(1, b"c", b"4")
    _, entries = _core.decode_changeset(c.finish(1, NODE, 1, 1))
    assert [(e.op, e.pk_key) for e in entries] == [(INSERT, b"a"), (INSERT, b"c")]


def test_rollback_to_bad_mark_raises():
    c = _core.ChangeCollector()
    c.insert(1, b"a", b"1")
    mark = c.savepoint()
    c.rollback_to(c.savepoint())
    c.clear()
    with pytest.raises(InternalError):
        c.rollback_to(mark)          # recorded after what is left now
    with pytest.raises(InternalError):
        c.rollback_to((1,))


# -- change sets: hostile input ------------------------------------------------

def decode_must_not_crash(data) -> None:
    try:
        _core.decode_changeset(data)
    except CorruptDatabaseError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_corrupt_or_decode(data):
    decode_must_not_crash(data)
    decode_must_not_crash(b"TC\x01\x00" + data)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(change_strategy, min_size=1, max_size=8),
       flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)),
                      min_size=1, max_size=4),
       cut=st.integers(0, 10_000))
def test_mutated_changesets_raise_corrupt_or_decode(changes, flips, cut):
    data = bytearray(build(changes))
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    decode_must_not_crash(bytes(data))
    good = build(changes)
    truncated = good[:cut % len(good)]
    with pytest.raises(CorruptDatabaseError):
        _core.decode_changeset(truncated)


def test_huge_declared_lengths_and_counts():
    header = build([])[:HEADER - 4]
    lie_count = header + struct.pack(">I", 2**32 - 1) + b"\x01\x01"
    with pytest.raises(CorruptDatabaseError, match="declares"):
        _core.decode_changeset(lie_count)
    # One insert whose pk length varint claims 2**63 bytes.
    huge_len = (header + struct.pack(">I", 1) + b"\x01\x01"
                + b"\xff" * 8 + b"\x7f" + b"\x00")
    with pytest.raises(CorruptDatabaseError):
        _core.decode_changeset(huge_len)
    overflow = header + struct.pack(">I", 1) + b"\x01" + b"\xff" * 11
    with pytest.raises(CorruptDatabaseError, match="varint"):
        _core.decode_changeset(overflow)


@pytest.mark.parametrize("bad", [
    b"", b"TC", b"XX" + bytes(46), b"TC\x02\x00" + bytes(44),
    b"TC\x01\x01" + bytes(44), build([(INSERT, 1, b"k", b"v", None, 0)]) + b"\x00",
    build([]) [:-4] + struct.pack(">I", 1) + b"\x09\x00\x00",
])
def test_malformed_changesets(bad):
    with pytest.raises(CorruptDatabaseError):
        _core.decode_changeset(bad)


def test_decode_rejects_non_bytes_and_accepts_buffers():
    with pytest.raises(CorruptDatabaseError):
        _core.decode_changeset(12)
    data = build([(DELETE, 1, b"k", None, None, 0)])
    assert _core.decode_changeset(memoryview(data))[0]["count"] == 1


# -- hybrid logical clock --------------------------------------------------------

def test_hlc_monotonic_when_wall_clock_steps_back(monkeypatch):
    now_ns = [1_700_000_000_000 * 1_000_000]
    monkeypatch.setattr(hlc_module.time, "time_ns", lambda: now_ns[0])
    clock = HLC()
    a = clock.now()
    assert hlc_parts(a) == (1_700_000_000_000, 0)
    b = clock.now()                          # same millisecond: counter
    now_ns[0] -= 10_000 * 1_000_000          # clock steps back 10 s
    c = clock.now()
    assert a < b < c
    assert hlc_parts(c) == (1_700_000_000_000, 2)
    now_ns[0] += 20_000 * 1_000_000          # wall clock overtakes again
    assert hlc_parts(clock.now()) == (1_700_000_010_000, 0)


def test_hlc_counter_overflow_carries_into_milliseconds():
    clock = HLC(hlc_from_parts(1000, 0xFFFF), wall_clock=lambda: 5)
    assert hlc_parts(clock.now()) == (1001, 0)


def test_hlc_observe_rules():
    wall = [1000]
    clock = HLC(wall_clock=lambda: wall[0], max_drift_ms=60_000)
    local = clock.now()
    assert hlc_parts(local) == (1000, 0)
    # Remote ahead of our wall clock: continue its counter.
    got = clock.observe(hlc_from_parts(1500, 7))
    assert hlc_parts(got) == (1500, 8)
    # Remote behind: our last timestamp wins.
    got = clock.observe(hlc_from_parts(900, 50))
    assert hlc_parts(got) == (1500, 9)
    # Same millisecond: larger counter + 1.
    got = clock.observe(hlc_from_parts(1500, 40))
    assert hlc_parts(got) == (1500, 41)
    # Wall clock ahead of both: counter restarts.
    wall[0] = 2000
    assert hlc_parts(clock.observe(hlc_from_parts(1999, 3))) == (2000, 0)
    assert clock.now() > clock.last - 1


def test_hlc_observe_refuses_far_future_and_bad_values():
    clock = HLC(wall_clock=lambda: 1000, max_drift_ms=100)
    before = clock.last
    with pytest.raises(OperationalError, match="ahead"):
        clock.observe(hlc_from_parts(1101, 0))
    assert clock.last == before
    for bad in (-1, 2**64, "5", 1.5):
        with pytest.raises(DataError):
            clock.observe(bad)
    assert HLC(wall_clock=lambda: 1, max_drift_ms=None).observe(
        hlc_from_parts(10**9, 0)) > hlc_from_parts(10**9, 0)


def test_hlc_advance_to_and_datetime():
    clock = HLC(wall_clock=lambda: 1)
    clock.advance_to(hlc_from_parts(5000, 3))
    clock.advance_to(hlc_from_parts(10, 0))   # never goes back
    assert hlc_parts(clock.now()) == (5000, 4)
    dt = hlc_to_datetime(hlc_from_parts(1_700_000_000_123, 9))
    assert dt.timestamp() == 1_700_000_000.123 and dt.tzinfo is not None


def test_hlc_thread_safety():
    clock = HLC()
    results: list[list[int]] = [[] for _ in range(4)]

    def issue(out: list[int]) -> None:
        for _ in range(5000):
            out.append(clock.now())

    threads = [threading.Thread(target=issue, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [ts for r in results for ts in r]
    assert len(set(every)) == len(every)
    assert all(r == sorted(r) for r in results)


# -- binlog ------------------------------------------------------------------------

def commit_changes(env, binlog, clock, changes, schema=1):
    c = _core.ChangeCollector()
    for change in changes:
        record(c, change)
    with env.begin(write=True) as txn:
        return binlog.append(txn, c, clock, NODE, schema)


def test_empty_collector_writes_nothing(env):
    binlog = Binlog.open(env)
    with env.begin(write=True) as txn:
        assert binlog.append(txn, _core.ChangeCollector(), HLC(), NODE, 1) is None
        assert binlog.last_sequence(txn) == 0
    with env.begin(db=binlog.db) as txn:
        assert txn.stat(binlog.db)["entries"] == 0


def test_append_and_read(env):
    binlog = Binlog.open(env)
    clock = HLC()
    for i in range(5):
        seq = commit_changes(env, binlog, clock,
                             [(INSERT, 2, b"k%d" % i, b"row%d" % i, None, 0)], schema=4)
        assert seq == i + 1
    with env.begin() as txn:
        got = list(binlog.read(txn, 0))
        assert [s for s, _ in got] == [1, 2, 3, 4, 5]
        hlcs = [cs.hlc for _, cs in got]
        assert hlcs == sorted(hlcs) and len(set(hlcs)) == 5
        cs = got[2][1]
        assert isinstance(cs, ChangeSet)
        assert (cs.sequence, cs.origin_sequence, cs.origin, cs.schema_version,
                cs.count, len(cs)) == (3, 3, NODE, 4, 1, 1)
        assert [e.pk_key for e in cs] == [b"k2"]
        assert [s for s, _ in binlog.read(txn, 2, limit=2)] == [3, 4]
        assert list(binlog.read(txn, 5)) == []
        assert list(binlog.read(txn, 0, limit=0)) == []
        assert binlog.last_hlc(txn) == hlcs[-1]


def test_aborted_transaction_leaves_no_change_set(env):
    binlog = Binlog.open(env)
    clock = HLC()
    c = _core.ChangeCollector()
    c.insert(1, b"k", b"v")
    txn = env.begin(write=True)
    assert binlog.append(txn, c, clock, NODE, 1) == 1
    txn.abort()
    with env.begin(write=True) as txn:
        assert binlog.last_sequence(txn) == 0
        assert binlog.append(txn, c, clock, NODE, 1) == 1


def test_sequence_and_clock_continue_across_reopen(tmp_path):
    path = str(tmp_path / "db")
    env = lmdb.open(path, max_dbs=4)
    binlog = Binlog.open(env)
    for i in range(3):
        commit_changes(env, binlog, HLC(), [(DELETE, 1, b"%d" % i, None, None, 0)])
    with env.begin() as txn:
        last_hlc = binlog.last_hlc(txn)
    env.close()

    env = lmdb.open(path, max_dbs=4)
    binlog = Binlog(env, env.open_db(BINLOG_DB_NAME))
    # A fresh clock whose wall time is far in the past (restart after the
    # system clock was set back) must still issue a larger timestamp.
    behind = HLC(wall_clock=lambda: 1)
    assert commit_changes(env, binlog, behind, [(DDL, 0, None, b"x", None, 0)]) == 4
    with env.begin() as txn:
        seqs_hlcs = [(s, cs.hlc) for s, cs in binlog.read(txn, 0)]
    env.close()
    assert [s for s, _ in seqs_hlcs] == [1, 2, 3, 4]
    assert seqs_hlcs[-1][1] > last_hlc


def test_truncate_keeps_newest_and_reports_gaps(env):
    binlog = Binlog.open(env, retention=KeepLast(2))
    clock = HLC()
    for i in range(6):
        commit_changes(env, binlog, clock, [(DELETE, 1, b"%d" % i, None, None, 0)])
    with env.begin(write=True) as txn:
        assert binlog.apply_retention(txn) == 4
        assert binlog.first_sequence(txn) == 5
        with pytest.raises(OperationalError, match="resynchronise"):
            binlog.read(txn, 3)
        assert [s for s, _ in binlog.read(txn, 3, allow_gap=True)] == [5, 6]
        assert [s for s, _ in binlog.read(txn, 4)] == [5, 6]
        assert binlog.truncate_before(txn, 10**6) == 1   # the newest survives
        assert (binlog.first_sequence(txn), binlog.last_sequence(txn)) == (6, 6)
    assert commit_changes(env, binlog, clock, [(DDL, 0, None, b"", None, 0)]) == 7


def test_append_encoded_forwards_a_peer_change_set(env):
    binlog = Binlog.open(env)
    peer = bytes(16)
    c = _core.ChangeCollector()
    c.insert(3, b"k", b"v")
    remote = c.finish(hlc_from_parts(123, 4), peer, 77, 2)
    with env.begin(write=True) as txn:
        assert binlog.append_encoded(txn, remote) == 1
        with pytest.raises(CorruptDatabaseError):
            binlog.append_encoded(txn, remote[:-1])
        (seq, cs), = binlog.read(txn, 0)
    assert (seq, cs.origin, cs.origin_sequence, cs.data) == (1, peer, 77, remote)


def test_read_rejects_bad_arguments(env):
    binlog = Binlog.open(env)
    with env.begin() as txn:
        for bad in (-1, "0", None):
            with pytest.raises(InternalError):
                binlog.read(txn, bad)
        with pytest.raises(InternalError):
            binlog.read(txn, 0, limit=-1)
    with pytest.raises(InternalError):
        KeepLast(0)


# -- micro benchmark (run this file directly) ----------------------------------------

def _benchmark(rows: int = 100_000, row_size: int = 40, repeats: int = 5) -> None:
    """Print ns/row for ChangeCollector.insert and the cost of Binlog.append."""
    import tempfile

    pks = [b"\x01" + i.to_bytes(8, "big") for i in range(rows)]
    row = os.urandom(row_size)
    collector = _core.ChangeCollector()
    insert = collector.insert
    best_insert = best_finish = best_append = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        env = lmdb.open(tmp, max_dbs=4, map_size=1 << 30, sync=False)
        binlog = Binlog.open(env)
        clock = HLC()
        for _ in range(repeats):
            collector.clear()
            t0 = time.perf_counter()
            for pk in pks:
                insert(7, pk, row)
            t1 = time.perf_counter()
            collector.finish(1, NODE, 1, 1)
            t2 = time.perf_counter()
            with env.begin(write=True) as txn:
                t3 = time.perf_counter()
                binlog.append(txn, collector, clock, NODE, 1)
                t4 = time.perf_counter()
            best_insert = min(best_insert, t1 - t0)
            best_finish = min(best_finish, t2 - t1)
            best_append = min(best_append, t4 - t3)
        small = _core.ChangeCollector()
        small.insert(7, pks[0], row)
        n_small = 2000
        with env.begin(write=True) as txn:
            t0 = time.perf_counter()
            for _ in range(n_small):
                binlog.append(txn, small, clock, NODE, 1)
            small_append = (time.perf_counter() - t0) / n_small
        env.close()
    size = len(collector.finish(1, NODE, 1, 1))
    print(f"{rows} rows of {row_size} bytes, change set {size / 1e6:.1f} MB")
    print(f"collector.insert (Python loop included): {best_insert / rows * 1e9:.0f} ns/row")
    print(f"collector.finish: {best_finish * 1e3:.2f} ms ({best_finish / rows * 1e9:.0f} ns/row)")
    print(f"Binlog.append (finish + put): {best_append * 1e3:.2f} ms "
          f"({best_append / rows * 1e9:.0f} ns/row)")
    print(f"total capture: {(best_insert + best_append) / rows * 1e9:.0f} ns/row")
    print(f"Binlog.append of a 1-row change set: {small_append * 1e6:.2f} us")


if __name__ == "__main__":
    _benchmark()
