"""The local transport: replicate between databases on one host by reading each other's binlog.

A ``LocalPeer`` pulls from a source database opened in this process (LMDB
lets any number of processes read an environment while one writes):
it reads the source's binlog after the position this database stored for
the channel ``local:<source node id>``, keeps what the source publishes
(``read_outgoing``) and hands the batch to the ``Applier``, which commits the
rows and the new position together.  Nothing is acknowledged to the source:
the position lives only in the receiver, so a crash at any point resumes
exactly after the last committed batch.

Because every applied change set is appended to the receiver's binlog
(same origin header), peers reading that binlog get it relayed: a mesh of
local peers converges even when some pairs never talk directly, and the
per-origin sequence tracking of the Applier drops the copies that arrive by
a second path.  Change sets whose origin is the receiver are skipped (no echo).

``bootstrap`` merges a peer's current state (its rows and version records,
tombstones included) instead of replaying its whole history, and then starts
the channel at the source's binlog position of that snapshot.  It never
replaces the receiver's table: rows only the receiver has are kept, and a
row's registers move only where the snapshot's versions are newer.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import NoSuchObjectError
from .repl_apply import Applier, ApplyStats
from .repl_feed import read_outgoing
from .repl_snapshot import merge_items, refresh_records, snapshot_items
from .repl_versions import K_CONFIG, STATE_DB, TableSet


def published_tables(db: Any) -> TableSet:
    """What ``db`` publishes according to its stored replication config (all tables if none)."""
    with db.store.begin_read() as rt:
        try:
            raw = rt.txn.get(K_CONFIG, db=db.store.db(STATE_DB))
        except NoSuchObjectError:
            raw = None
    if not raw:
        return TableSet("*")
    return TableSet(json.loads(raw).get("publish", ["*"]))


class LocalPeer:
    """Pulls one source database's change sets into ``applier``'s database."""

    def __init__(self, applier: Applier, source: Any, *, batch: int = 1000,
                 publish: TableSet | None = None) -> None:
        self.applier = applier
        self.source = source          # an engine Database
        self.batch = batch
        self._publish = publish
        self.channel = "local:" + source.node_id.hex()

    @property
    def publish(self) -> TableSet:
        return self._publish if self._publish is not None else published_tables(self.source)

    def lag(self) -> int:
        """Source change sets not yet consumed."""
        with self.source.store.begin_read() as rt:
            last = self.source.binlog.last_sequence(rt.txn)
        return max(0, last - self.applier.position(self.channel))

    def pull_once(self) -> ApplyStats:
        """Apply at most one batch; ``stats.messages == 0`` means the source had nothing new."""
        pos = self.applier.position(self.channel)
        out = read_outgoing(self.source, pos, self.publish, limit=self.batch,
                            exclude_origin=self.applier.node_id)
        if not out:
            return ApplyStats()
        return self.applier.apply([(o.sequence, o.data) for o in out], self.channel)

    def pull_all(self, max_batches: int = 1_000_000) -> ApplyStats:
        total = ApplyStats()
        for _ in range(max_batches):
            stats = self.pull_once()
            if stats.messages == 0:
                break
            total.add(stats)
        return total

    def bootstrap(self, tables: TableSet | None = None, batch: int = 2000) -> int:
        """Merge the source's current rows and records here; returns rows changed."""
        return bootstrap(self.applier, self.source, tables, batch=batch, channel=self.channel)


def bootstrap(applier: Applier, source: Any, tables: TableSet | None = None, *, batch: int = 2000,
              channel: str | None = None) -> int:
    """Merge ``source``'s snapshot of ``tables`` (default: what it publishes) into ``applier``'s database.

    Returns rows changed; the channel (when given) then starts at the
    source's binlog position of the snapshot.
    """
    tables = tables if tables is not None else published_tables(source)
    refresh_records(source, tables, applier.busy_timeout)
    with source.store.begin_read() as rt:
        position = source.binlog.last_sequence(rt.txn)
        items = snapshot_items(source, rt.txn, tables, applier.subscribe)
        return merge_items(applier, items, batch=batch, channel=channel,
                           position=position if channel is not None else None)


__all__ = ["LocalPeer", "bootstrap", "published_tables"]
