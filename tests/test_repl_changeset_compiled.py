"""The publisher's compiled per-change-set work (cext/repl.pxi) agrees with the Python reference.

* ``repl_merge_local_changeset`` against ``VersionStore._merge_local`` run
  entry by entry plus ``repl_feed.reencode`` with the previous versions found:
  the same records (bytes), the same rewritten change set (bytes), None when
  nothing was annotated.
* ``repl_cut_changeset`` against ``reencode`` of the kept entries.

Change sets are random ``ChangeCollector`` output (as the binlog holds):
inserts, updates (also of wide tables, where the compiled record merge hands
over to Python), deletes with and without their row, rows written before a
column was added, tables without records.  Corrupt change sets raise the
PEP 249 ``CorruptDatabaseError``.
"""
from __future__ import annotations

import random

import pytest

import terndb
from terndb._cext import _core as C
from terndb.engine.database import Database
from terndb.engine.errors import CorruptDatabaseError, DatabaseError
from terndb.engine.repl_feed import reencode
from terndb.engine.repl_versions import OP_DELETE, OP_INSERT, OP_UPDATE, TableSet, VersionStore, record_key

NODE = bytes(range(16))
#: table id -> column count (70: wider than the compiled merge's 64-column masks)
WIDTHS = {3: 3, 5: 1, 9: 70, 11: 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> VersionStore:
    path = str(tmp_path_factory.mktemp("cs") / "db")
    terndb.connect(path).close()
    db = Database.open(path)
    db.node_id = NODE
    yield VersionStore(db, TableSet("*"))
    db.release()


def _row(rnd: random.Random, ncols: int) -> bytes:
    pick = [None, 0, 7, -3, 2.5, "a", "bb", b"\x00z"]
    if ncols > 1 and rnd.random() < 0.15:
        ncols -= 1          # written before the table's last column was added
    return C.encode_row(tuple(rnd.choice(pick) for _ in range(ncols)))


def _changeset(rnd: random.Random, hlc: int, seq: int) -> bytes:
    col = C.ChangeCollector()
    for _ in range(rnd.randint(0, 6)):
        tid = rnd.choice([*WIDTHS, 4])           # 4: a table without records
        n = WIDTHS.get(tid, 2)
        key = C.encode_key((rnd.randint(0, 5),))
        prev = rnd.choice([0, 0, hlc - 1, 12345])
        op = rnd.choice([OP_INSERT, OP_UPDATE, OP_UPDATE, OP_DELETE])
        if op == OP_INSERT:
            col.insert(tid, key, _row(rnd, n), prev)
        elif op == OP_UPDATE:
            col.update(tid, key, _row(rnd, n), rnd.getrandbits(n), prev)
        else:
            col.delete(tid, key, prev, _row(rnd, n) if rnd.random() < 0.5 else None)
    return col.finish(hlc, NODE, seq, 1)


def _reference(store: VersionStore, data: bytes, records: dict) -> bytes | None:
    header, entries = C.decode_changeset(data)
    prevs = [e.prev_hlc for e in entries]
    for i, e in enumerate(entries):
        if e.table_id in WIDTHS:
            prevs[i] = store._merge_local(records.get, records.__setitem__,
                                          record_key(e.table_id, e.pk_key), e, header["hlc"],
                                          WIDTHS[e.table_id])
    if prevs == [e.prev_hlc for e in entries]:
        return None
    return reencode(header, entries, prevs=prevs)


@pytest.mark.parametrize("seed", range(40))
def test_compiled_local_merge_matches_python(store: VersionStore, seed: int) -> None:
    rnd = random.Random(seed)
    ref_records: dict[bytes, bytes] = {}
    c_records: dict[bytes, bytes] = {}
    slow = store._merge_local_py(c_records.get, c_records.__setitem__)
    annotated = 0
    for seq in range(1, 30):
        hlc = (1000 + seq) << 16
        data = _changeset(rnd, hlc, seq)
        want = _reference(store, data, ref_records)
        got = C.repl_merge_local_changeset(data, hlc, NODE, WIDTHS, c_records.get,
                                           c_records.__setitem__, slow)
        assert got == want, seq
        assert c_records == ref_records, seq
        annotated += got is not None
        if got is not None:       # what the binlog then holds decodes, with the same header
            assert C.decode_changeset(got)[0] == C.decode_changeset(data)[0]
    assert annotated            # the runs did exercise the rewriting


def test_compiled_local_merge_leaves_ddl_to_python(store: VersionStore) -> None:
    col = C.ChangeCollector()
    col.insert(3, C.encode_key((1,)), C.encode_row((1, 2, 3)))
    col.ddl(b'{"op":"drop","kind":"table","name":"t"}')
    calls: list = []
    got = C.repl_merge_local_changeset(col.finish(5 << 16, NODE, 1, 1), 5 << 16, NODE, WIDTHS,
                                       lambda k: calls.append(k), lambda k, v: calls.append(k), None)
    assert got is False and calls == []          # nothing merged: the Python loop does all of it


@pytest.mark.parametrize("seed", range(40))
def test_compiled_cut_matches_python(seed: int) -> None:
    rnd = random.Random(seed)
    for seq in range(1, 20):
        data = _changeset(rnd, (2000 + seq) << 16, seq)
        keep = {tid: object() for tid in [*WIDTHS, 4] if rnd.random() < 0.6}
        header, entries = C.decode_changeset(data)
        kept = [e for e in entries if e.table_id in keep]
        got_data, got_ids = C.repl_cut_changeset(data, keep)
        assert got_data == (data if len(kept) == len(entries) else reencode(header, kept))
        assert got_ids == tuple(dict.fromkeys(e.table_id for e in kept))
        if len(kept) == len(entries):
            assert got_data is data              # nothing cut: the stored bytes, not a copy


def test_compiled_cut_leaves_ddl_to_python() -> None:
    col = C.ChangeCollector()
    col.ddl(b'{"op":"create_table","name":"t"}')
    assert C.repl_cut_changeset(col.finish(1 << 16, NODE, 1, 1), {}) is None


def test_corrupt_change_sets_raise_the_pep249_error(store: VersionStore) -> None:
    rnd = random.Random(7)
    data = b""
    while len(C.decode_changeset(data)[1]) < 3 if data else True:
        data = _changeset(rnd, 3 << 16, 1)
    with pytest.raises(CorruptDatabaseError):
        C.repl_cut_changeset(data[:-1], {3: 1})
    with pytest.raises(CorruptDatabaseError):
        C.repl_merge_local_changeset(data[:20], 3 << 16, NODE, WIDTHS, {}.get, {}.__setitem__, None)
    for _ in range(300):                       # flipped bytes: a result or the PEP 249 error, nothing else
        bad = bytearray(data)
        at = rnd.randrange(48, len(bad))
        bad[at] = rnd.randrange(256)
        records: dict = {}
        try:
            C.repl_cut_changeset(bytes(bad), {3: 1, 5: 1})
            C.repl_merge_local_changeset(bytes(bad), 3 << 16, NODE, WIDTHS, records.get, records.__setitem__,
                                         store._merge_local_py(records.get, records.__setitem__))
        except DatabaseError:
            pass
