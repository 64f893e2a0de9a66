"""Snapshots for bootstrap by merge: a node's current rows and version records, and their merge.

A node that needs history its transport no longer holds (a local peer's
binlog truncated, a JetStream stream purged by its limits) cannot replay it;
it merges a peer's current state instead (``Applier.merge_records``): per
register last-writer-wins, so nothing it has is replaced unless the peer's
version is newer, and rows only it has are kept (HarperDB #2193 replaced the
table and lost them).

``snapshot_items`` reads a database's snapshot: every row of the replicable
tables asked for with its version record (rows nobody versioned get bottom
versions), and the tombstones (dead records without a row).  It runs inside
the caller's read transaction, so the snapshot is consistent.

Over the network a snapshot travels as one Arrow IPC stream (pyarrow is a
dependency already): columns ``table`` (string), ``pk`` and ``record``
(binary: the order-preserving key and the encoded version record), and
schema metadata ``terndb.snapshot``: JSON ``{"format": 1, "node": hex,
"position": int, "tables": {name: CREATE sql}}`` where ``position`` is the
producer's position in the channel the follower resumes from, which tells the
follower whether the snapshot covers what it missed.
"""
from __future__ import annotations

import io
import json
from struct import error as struct_error
from typing import Any, Iterator

import pyarrow as pa

from terndb._cext import _core as C

from .errors import CorruptDatabaseError, NoSuchObjectError
from .repl_versions import BOTTOM, NO_NODE, VERSIONS_DB, Record, TableSet, VersionStore, record_key, replicable

#: One snapshot item: (table name, CREATE TABLE sql, primary-key key, version record).
Item = tuple[str, str, bytes, Record]

_META_KEY = b"terndb.snapshot"
_SCHEMA = pa.schema([("table", pa.string()), ("pk", pa.binary()), ("record", pa.binary())])
_BATCH_ROWS = 5000


def refresh_records(db: Any, tables: TableSet, timeout: float = 30.0) -> None:
    """Bring ``db``'s version records up to date with its own binlog (derived data only)."""
    if not db.store.readonly:
        VersionStore(db, tables).ensure_current(timeout)


def snapshot_items(db: Any, txn: Any, tables: TableSet, wanted: TableSet | None = None) -> Iterator[Item]:
    """The snapshot of ``db`` in read transaction ``txn``: tables in ``tables`` (and ``wanted``)."""
    schema = db.committed_schema(txn)
    try:
        vdb = db.store.db(VERSIONS_DB)
    except NoSuchObjectError:
        vdb = None
    for table in list(schema.tables.values()):
        if not replicable(table) or table.name not in tables or (wanted is not None and table.name not in wanted):
            continue
        n = len(table.columns)
        seen: set[bytes] = set()
        with txn.cursor(db=db.store.db(table.db_name)) as cur:
            for k, v in cur:
                row = C.decode_row(v, n, None)
                if table.rowid_alias is not None:
                    pk_key = C.encode_key((C.decode_rowid(k),))
                else:
                    pk_key = C.encode_key(tuple(row[i] for i in table.pk))
                raw = txn.get(record_key(table.object_id, pk_key), db=vdb) if vdb is not None else None
                rec = Record.decode(raw, n) if raw is not None else Record(False, 0, NO_NODE, [BOTTOM] * n, list(row))
                seen.add(pk_key)
                yield table.name, table.sql, pk_key, rec
        if vdb is None:
            continue
        prefix = record_key(table.object_id, b"")
        with txn.cursor(db=vdb) as vc:          # tombstones: dead records without a row
            ok = vc.set_range(prefix)
            while ok and vc.key()[:4] == prefix:
                pk_key = bytes(vc.key()[4:])
                if pk_key not in seen:
                    rec = Record.decode(vc.value(), n)
                    if rec.dead:
                        yield table.name, table.sql, pk_key, rec
                ok = vc.next()


def merge_items(applier: Any, items: Iterator[Item], *, batch: int = 2000, channel: str | None = None,
                position: int | None = None) -> int:
    """Merge snapshot items into ``applier``'s database in transactions of ``batch``; rows changed.

    The channel position, when given, moves with the last batch.
    """
    changed = 0
    pending: list[Item] = []
    for item in items:
        pending.append(item)
        if len(pending) >= batch:
            changed += applier.merge_records(pending)
            pending = []
    changed += applier.merge_records(pending, channel=channel, position=position)
    return changed


def encode_snapshot(db: Any, tables: TableSet, wanted: TableSet | None, position: int) -> bytes:
    """``db``'s snapshot as an Arrow IPC stream (see the module docstring)."""
    refresh_records(db, tables)
    sink = io.BytesIO()
    sqls: dict[str, str] = {}
    with db.store.begin_read() as rt:
        cols: tuple[list, list, list] = ([], [], [])
        batches: list[pa.RecordBatch] = []
        for name, sql, pk_key, rec in snapshot_items(db, rt.txn, tables, wanted):
            sqls[name] = sql
            cols[0].append(name)
            cols[1].append(pk_key)
            cols[2].append(rec.encode())
            if len(cols[0]) >= _BATCH_ROWS:
                batches.append(pa.record_batch(list(cols), schema=_SCHEMA))
                cols = ([], [], [])
        if cols[0] or not batches:
            batches.append(pa.record_batch(list(cols), schema=_SCHEMA))
    meta = {"format": 1, "node": db.node_id.hex(), "position": position, "tables": sqls}
    schema = _SCHEMA.with_metadata({_META_KEY: json.dumps(meta).encode()})
    with pa.ipc.new_stream(sink, schema) as writer:
        for b in batches:
            writer.write_batch(b)
    return sink.getvalue()


def decode_snapshot(data: bytes) -> tuple[dict, Iterator[Item]]:
    """(metadata, items) of an encoded snapshot.

    Records keep their own width; ``Applier.merge_records`` fits them to the
    local table.  Raises CorruptDatabaseError when the bytes are not a terndb
    snapshot (the items iterator too, for damage further in).
    """
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        meta = json.loads(reader.schema.metadata[_META_KEY])
        if meta.get("format") != 1 or not isinstance(meta.get("tables"), dict):
            raise ValueError("unknown snapshot format")
    except (pa.ArrowInvalid, KeyError, TypeError, ValueError) as exc:
        raise CorruptDatabaseError(f"not a terndb snapshot: {exc}") from exc

    def items() -> Iterator[Item]:
        sqls = meta["tables"]
        try:
            for b in reader:
                names, pks, recs = (b.column(i).to_pylist() for i in range(3))
                for name, pk_key, raw in zip(names, pks, recs):
                    yield name, sqls[name], pk_key, Record.decode(raw, 0)
        except (pa.ArrowInvalid, KeyError, IndexError, struct_error) as exc:
            raise CorruptDatabaseError(f"damaged terndb snapshot: {exc}") from exc
    return meta, items()


__all__ = ["snapshot_items", "merge_items", "encode_snapshot", "decode_snapshot", "refresh_records", "Item"]
