"""The compiled version-record merge (cext/repl.pxi) agrees with the Python reference (repl_versions.merge).

Random stored records (built by merging random writes of a few nodes) meet a
random incoming write: the compiled path must give the same record bytes,
row state and "changed" answer, and must decline (None) exactly when the
Python merge finds a concurrent write, which only Python reports.
"""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from terndb._cext import _core as C
from terndb.engine.repl_versions import OP_DELETE, OP_INSERT, OP_UPDATE, Record, merge

NODES = [bytes([i]) * 16 for i in (1, 2, 3)]
NCOLS = 3

values = st.one_of(st.none(), st.integers(-3, 3), st.sampled_from([1.0, 2.5, "a", "b", b"x"]))
writes = st.tuples(
    st.sampled_from([OP_INSERT, OP_UPDATE, OP_DELETE]),
    st.integers(1, 6),                       # hlc
    st.sampled_from(NODES),
    st.tuples(*[values] * NCOLS),
    st.integers(0, 2 ** NCOLS - 1),          # changed mask (updates)
    st.integers(0, 6),                       # prev hlc
)


def _entry_record(w: tuple) -> Record:
    op, hlc, node, row, mask, prev = w
    return Record.from_entry(op, hlc, node, None if op == OP_DELETE else row,
                             mask if op == OP_UPDATE else None, NCOLS, prev)


def _stored(history: list[tuple]) -> bytes | None:
    if not history:
        return None
    rec = _entry_record(history[0])
    for w in history[1:]:
        merge(rec, _entry_record(w), w[0] != OP_DELETE)
    return rec.encode()


@settings(max_examples=250, deadline=None)
@given(st.lists(writes, max_size=4), writes, st.booleans())
def test_compiled_merge_matches_python(history: list[tuple], incoming: tuple, local: bool) -> None:
    raw = _stored(history)
    op, hlc, node, row, mask, prev = incoming
    changed = mask if op == OP_UPDATE else None
    row_bytes = C.encode_row(row)
    got = C.repl_merge_entry(raw, op, hlc, node, row_bytes, changed, prev, NCOLS, local)

    stored = Record.decode(raw, NCOLS) if raw is not None else None
    if local:                                # a local write saw the record's newest version
        prev = stored.seen_hlc() if stored is not None else 0
    inc = Record.from_entry(op, hlc, node, None if op == OP_DELETE else row, changed, NCOLS, prev)
    if stored is None:
        assert got == (True, inc.dead, inc.row(), inc.encode(), prev)
        return
    res = merge(stored, inc, op != OP_DELETE)
    if res.conflicted:
        assert got is None
        return
    assert got is not None
    assert got[0] == res.changed and got[1] == stored.dead and got[4] == prev
    assert [(type(v), v) for v in got[2]] == [(type(v), v) for v in stored.values]
    assert got[3] == (stored.encode() if res.changed else None)


def test_compiled_merge_reads_records_of_a_narrower_table() -> None:
    # A column added after the record was written is unversioned (bottom) in both paths.
    raw = Record.from_entry(OP_INSERT, 5, NODES[0], (1, "a"), None, 2, 0).encode()
    got = C.repl_merge_entry(raw, OP_UPDATE, 6, NODES[1], C.encode_row((1, "a", 9)), 0b100, 5, 3)
    rec = Record.decode(raw, 3)
    res = merge(rec, Record.from_entry(OP_UPDATE, 6, NODES[1], (1, "a", 9), 0b100, 3, 5), True)
    assert not res.conflicted and got == (True, False, (1, "a", 9), rec.encode(), 5)


def test_compiled_merge_declines_a_wider_record_and_bad_node_ids() -> None:
    raw = Record.from_entry(OP_INSERT, 5, NODES[0], (1, "a", 2), None, 3, 0).encode()
    assert C.repl_merge_entry(raw, OP_UPDATE, 6, NODES[1], C.encode_row((1, "b")), 2, 5, 2) is None
    assert C.repl_merge_entry(None, OP_INSERT, 6, b"short", C.encode_row((1, "b")), None, 0, 2) is None
