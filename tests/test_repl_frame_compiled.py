"""The publisher's compiled round framing (``repl_frame_round`` in cext/repl.pxi) against Python.

A database commits a random mix (single- and two-table transactions,
unpublished tables, CREATE TABLE and ADD COLUMN in the middle; the origin
filter and the plan's end have their own test); ``NatsReplicator._publish_pending``
publishes it to a recording stand-in for JetStream.  The messages must be
exactly what the Python reference makes of the same binlog: ``read_outgoing``
(the local transport's filter) batched into runs of one subject within the
payload limit and framed by ``encode_message`` / ``encode_batch``; and
decoding them gives back every published change set once, in order.
"""
from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

import terndb
from terndb._cext import _core as C
from terndb.engine.errors import CorruptDatabaseError
from terndb.engine.repl_feed import (
    BATCH_ITEM_OVERHEAD, BATCH_OVERHEAD, decode_wire, encode_batch, encode_message, read_outgoing,
)
from terndb.engine.repl_nats import NatsReplicator
from terndb.engine.repl_publisher import _PublishOnly
from terndb.engine.repl_versions import TableSet, VersionStore


class _Ack:
    duplicate = False


class _RecordingJetStream:
    """Takes what a publisher sends and acknowledges it at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str]] = []

    async def publish_async(self, subject: str, payload: bytes, headers: dict) -> Any:
        self.sent.append((subject, payload, headers["Nats-Msg-Id"]))
        done = asyncio.get_running_loop().create_future()
        done.set_result(_Ack())
        return done


def _map_bytes(entry: tuple[str, str]) -> int:
    return 2 * (len(entry[0]) + len(entry[1])) + 32


def _reference(nr: NatsReplicator, outgoing: list, limit: int) -> list[tuple[str, bytes, str]]:
    """Runs of consecutive change sets with one subject, a run within ``limit`` bytes unless it
    is one change set; framed as the wire format says."""
    runs: list[dict] = []
    for o in outgoing:
        if o.changeset is None:
            continue
        subject = nr.subject_for(o.tables, o.has_ddl)
        run = runs[-1] if runs else None
        grow = len(o.changeset) + BATCH_ITEM_OVERHEAD + sum(
            _map_bytes(v) for k, v in o.table_map.items() if run is None or k not in run["tables"])
        if run is None or run["subject"] != subject or run["size"] + grow > limit:
            run = {"subject": subject, "items": [], "tables": {}, "size": BATCH_OVERHEAD}
            runs.append(run)
            grow = len(o.changeset) + BATCH_ITEM_OVERHEAD + sum(_map_bytes(v) for v in o.table_map.values())
        run["items"].append(o)
        run["tables"].update(o.table_map)
        run["size"] += grow
    out = []
    for run in runs:
        first, last = run["items"][0], run["items"][-1]
        if len(run["items"]) == 1:
            out.append((run["subject"], encode_message(first.changeset, run["tables"]),
                        f"{first.origin.hex()}:{first.origin_sequence}"))
        else:
            out.append((run["subject"], encode_batch([o.changeset for o in run["items"]], run["tables"]),
                        f"{first.origin.hex()}:{first.origin_sequence}-{last.origin_sequence}"))
    return out


def _workload(con: Any, rnd: random.Random) -> None:
    con.execute("CREATE TABLE a(id INTEGER PRIMARY KEY, n INTEGER, s TEXT)")
    con.execute("CREATE TABLE b(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE TABLE z(id INTEGER PRIMARY KEY, v TEXT)")       # not published
    con.commit()
    for i in range(400):
        kind = rnd.random()
        if i == 150:
            con.execute("CREATE TABLE c(id INTEGER PRIMARY KEY, w REAL)")
        elif i == 250:
            con.execute("ALTER TABLE a ADD COLUMN extra TEXT")
        elif kind < 0.5:
            con.execute("INSERT INTO a(id, n, s) VALUES (?, ?, ?)", (i, i, "x" * rnd.randint(0, 300)))
        elif kind < 0.65:
            con.execute("INSERT INTO b VALUES (?, ?)", (i, "b"))
            con.execute("INSERT INTO a(id, n, s) VALUES (?, ?, ?)", (i, -i, "both"))
        elif kind < 0.8:
            con.execute("INSERT INTO z VALUES (?, ?)", (i, "unpublished"))
            if rnd.random() < 0.5:
                con.execute("INSERT INTO b VALUES (?, ?)", (i, "with z"))
        elif kind < 0.9 and i > 150:
            con.execute("INSERT INTO c VALUES (?, ?)", (i, i / 3))
        else:
            con.execute("UPDATE a SET n = n + 1 WHERE id < ?", (rnd.randint(0, i + 1),))
        con.commit()


@pytest.mark.parametrize("seed,limit", [(1, 4096), (2, 1500), (3, 1 << 20)])
def test_published_messages_match_the_python_reference(tmp_path, seed: int, limit: int) -> None:
    con = terndb.connect(str(tmp_path / "db"), durability="off")
    db = con._db
    publish = TableSet(["a", "b", "c"])
    vs = VersionStore(db, publish)
    vs.install()
    nr = NatsReplicator(_PublishOnly(db, publish, vs), "nats://unused", batch=100_000,
                        serve_snapshots=False, publisher="thread")
    nr._max_message_bytes = lambda: limit          # small limits split runs
    _workload(con, random.Random(seed))
    js = _RecordingJetStream()
    sent = asyncio.run(nr._publish_pending(js))
    # The publisher stored its catch-up: the binlog now holds the change sets as they were sent.
    expected = _reference(nr, read_outgoing(db, 0, publish, limit=100_000, only_origin=db.node_id,
                                            skip_empty=True), limit)
    assert js.sent == expected
    assert len(js.sent) > 5 and any(payload[:4] == b"TRB1" for _, payload, _ in js.sent)
    decoded = [m for _, payload, _ in js.sent for m in decode_wire(payload)]
    assert sent == len(decoded) == nr.published
    seqs = [m.origin_sequence for m in decoded]
    assert seqs == sorted(set(seqs))
    # Nothing of the unpublished table travels; the DDL of the published ones does.
    names = {name for m in decoded for name, _ in m.tables.values()}
    assert names == {"a", "b", "c"}
    assert any(e.op == 4 for m in decoded for e in m.entries)
    con.close()


def test_round_skips_other_origins_and_stops_at_upto() -> None:
    node, other = bytes(range(16)), bytes(16)
    published = {7: ("s.t", ("t", "CREATE TABLE t(id INTEGER PRIMARY KEY)"))}

    class Item:
        def __init__(self, data: bytes) -> None:
            self.data = data

    def cs(origin: bytes, seq: int) -> bytes:
        col = C.ChangeCollector()
        col.insert(7, C.encode_key((seq,)), C.encode_row((seq,)), 0)
        return col.finish(seq << 16, origin, seq, 1)
    items = [(1, Item(cs(node, 1))), (2, Item(cs(other, 9))), (3, Item(cs(node, 2))), (4, Item(cs(node, 3)))]
    messages, sent, last, covered = C.repl_frame_round(items, node, published, "s._multi", {}, 3, 1 << 20,
                                                       None, lambda t: b"{}")
    assert (sent, last, covered) == (2, 3, 3)
    assert [(s, i, n) for s, _, i, n in messages] == [("s.t", f"{node.hex()}:1-2", 2)]


def test_corrupt_change_set_raises_the_pep249_error() -> None:
    node = bytes(range(16))

    class Item:
        data = b"TC\x01\x00" + bytes(8) + node + bytes(20)       # a header declaring 0 entries ...
    with pytest.raises(CorruptDatabaseError):
        C.repl_frame_round([(1, Item())], node, {}, "m", {1: b"short"}, 5, 4096, None, None)
    good = Item.data
    Item.data = good[:44] + b"\x00\x00\x00\x05" + b"\x01\x07"   # ... or 5 it does not hold
    with pytest.raises(CorruptDatabaseError):
        C.repl_frame_round([(1, Item())], node, {}, "m", {}, 5, 4096, None, None)
    for damaged in (b"XC", b"TC\x02", b"TC\x01\x80"):       # magic, format version, flags
        Item.data = damaged + good[len(damaged):]           # the origin still this node's
        with pytest.raises(CorruptDatabaseError):
            C.repl_frame_round([(1, Item())], node, {}, "m", {}, 5, 4096, None, None)
