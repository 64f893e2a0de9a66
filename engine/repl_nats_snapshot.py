"""Bootstrap by merge over NATS: a follower behind the stream's retention merges a peer's snapshot.

A JetStream stream keeps what its limits allow (``max_msgs``, ``max_age``,
...).  A follower whose committed position is below the stream's first
sequence - 1 missed messages nobody can replay; so would a new node joining a
stream that already dropped its beginning.  Then the follower:

1. asks its peers for a snapshot: a NATS request on ``terndbsnap.<db>``
   (outside the stream's ``terndb.<db>.>`` subjects, so never stored) with its
   node id and subscribed tables; every other running replicator of the
   database answers, the first answer is taken;
2. the answering peer encodes its current state of those tables
   (``repl_snapshot.encode_snapshot``, Arrow IPC), stores it in the JetStream
   object store bucket ``TERNDB_SNAP_<db>`` under its node id (chunked and
   checksummed by the object store) and replies with the key;
3. the follower reads the object and merges it (``merge_items``: per
   register last-writer-wins, local-only rows kept), moving its channel
   position to the stream's first sequence - 1 in the last merge transaction,
   then consumes the stream as usual (its durable consumer resumes at the
   first message still held; re-applying overlap is harmless).

The snapshot covers what the answering peer subscribes to or publishes; its
``position`` (the peer's own stream position) is reported with the result so
status shows whether it reached the purged range.  When no peer answers (none
running), the gap is remembered in the database (``_repl_state`` key
``snapgap:<channel>``, so a restart keeps it), shown in status
(``snapshots.pending_gap``) and asked again every few seconds until a peer
answers; the follower keeps consuming meanwhile.  A writer whose own consumer
fell behind its own messages gets the same treatment (it cannot tell which
origins the dropped messages had).
"""
from __future__ import annotations

import asyncio
import json
import struct
import time
from typing import Any

from .repl_snapshot import decode_snapshot, encode_snapshot, merge_items
from .repl_versions import TableSet

#: How long a follower waits for a peer to build and store its snapshot.
REQUEST_TIMEOUT = 60.0
#: How often a remembered gap asks again when no peer answered.
RETRY_S = 2.0
_U64 = struct.Struct(">Q")


class SnapshotService:
    """The snapshot side of one ``NatsReplicator``: answering peers, and bootstrapping itself."""

    def __init__(self, nr: Any) -> None:
        self.nr = nr
        self.subject = f"terndbsnap.{nr.dbname}"
        self.bucket = f"TERNDB_SNAP_{nr.dbname}"
        self.bootstraps = 0            # snapshots merged here
        self.served = 0                # snapshots built for peers
        self.last_bootstrap: dict | None = None
        self.last_failure: str | None = None  # why the remembered gap is still open
        self._last_try = float("-inf")
        self._gap_known = False

    # -- answering -----------------------------------------------------------------------------

    async def serve(self, nc: Any, js: Any) -> None:
        """Answer snapshot requests from peers on this connection."""
        async def handle(msg: Any) -> None:
            try:
                req = json.loads(msg.data)
                if req.get("node") == self.nr.db.node_id.hex():
                    return                      # our own request
                wanted = TableSet(req.get("tables") or "*")
                rep = self.nr.rep
                tables = TableSet(sorted(rep.publish.names | rep.subscribe.names)) \
                    if not (rep.publish.all or rep.subscribe.all) else TableSet("*")
                position = rep.applier.position(self.nr.channel)
                data = await asyncio.get_running_loop().run_in_executor(
                    None, encode_snapshot, self.nr.db, tables, wanted, position)
                store = await self._store(js)
                key = self.nr.db.node_id.hex()
                await store.put(key, data)
                self.served += 1
                await msg.respond(json.dumps({"key": key, "position": position, "bytes": len(data)}).encode())
            except Exception as exc:            # noqa: BLE001 - a peer's request must not stop replication
                self.nr.last_error = f"snapshot for a peer failed: {type(exc).__name__}: {exc}"
        await nc.subscribe(self.subject, cb=handle)

    async def _store(self, js: Any) -> Any:
        try:
            return await js.object_store(self.bucket)
        except Exception:
            return await js.create_object_store(self.bucket)

    # -- bootstrapping -------------------------------------------------------------------------

    async def bootstrap_if_behind(self, nc: Any, js: Any) -> bool:
        """Merge a peer's snapshot if the stream no longer holds what follows our position.

        A gap nobody can fill now (no peer running) is remembered, in the
        database, and retried at most every ``RETRY_S`` seconds; consuming goes
        on meanwhile (stalling would not bring the missing messages back).
        """
        nr = self.nr
        if not nr.rep.subscribe:
            return False
        info = await js.stream_info(nr.stream)
        first = info.state.first_seq
        position = nr.rep.applier.position(nr.channel)
        if first > position + 1:
            self._remember_gap(first)
        gap = self.pending_gap()
        if gap is None:
            return False
        if time.monotonic() - self._last_try < RETRY_S:
            return False
        self._last_try = time.monotonic()
        req = json.dumps({"node": nr.db.node_id.hex(), "tables": nr.rep.subscribe.to_list(),
                          "since": position}).encode()
        try:
            reply = await nc.request(self.subject, req, timeout=REQUEST_TIMEOUT)
        except Exception as exc:                # no responders, or none in time: retried later
            self.last_failure = (f"stream {nr.stream} dropped messages after position {position} "
                                 f"(it starts at {gap}); no peer answered the snapshot request "
                                 f"({type(exc).__name__}); retrying")
            return False
        answer = json.loads(reply.data)
        obj = await (await self._store(js)).get(answer["key"])
        meta, items = decode_snapshot(obj.data)
        changed = merge_items(nr.rep.applier, items, channel=nr.channel, position=gap - 1)
        self._forget_gap()
        self.bootstraps += 1
        self.last_failure = None
        self.last_bootstrap = {"from_node": meta["node"], "rows_changed": changed, "stream_first": gap,
                               "previous_position": position, "peer_position": meta["position"],
                               "covers_gap": meta["position"] >= gap - 1}
        return True

    @property
    def retry_due(self) -> bool:
        """A remembered gap whose next snapshot request is due (cheap: no I/O)."""
        return self._gap_known and time.monotonic() - self._last_try >= RETRY_S

    # -- the remembered gap (``_repl_state`` key ``snapgap:<channel>``: the stream's first sequence) --

    def _gap_key(self) -> bytes:
        return b"snapgap:" + self.nr.channel.encode()

    def pending_gap(self) -> int | None:
        with self.nr.db.store.begin_read() as rt:
            raw = self.nr.rep.versions.state_get(rt.txn, self._gap_key())
        self._gap_known = raw is not None
        return None if raw is None else _U64.unpack(raw)[0]

    def _remember_gap(self, first: int) -> None:
        def work(w: Any) -> None:
            _, sdb = self.nr.rep.versions.handles(w)
            old = w.txn.get(self._gap_key(), db=sdb)
            if old is None or _U64.unpack(old)[0] < first:
                w.txn.put(self._gap_key(), _U64.pack(first), db=sdb)
        self.nr.db.store.write(work, timeout=30.0)
        self._gap_known = True

    def _forget_gap(self) -> None:
        def work(w: Any) -> None:
            _, sdb = self.nr.rep.versions.handles(w)
            w.txn.delete(self._gap_key(), db=sdb)
        self.nr.db.store.write(work, timeout=30.0)
        self._gap_known = False

    def status(self) -> dict:
        return {"bootstraps": self.bootstraps, "served": self.served, "last": self.last_bootstrap,
                "pending_gap": self.pending_gap(), "pending_reason": self.last_failure}


__all__ = ["SnapshotService", "REQUEST_TIMEOUT", "RETRY_S"]
