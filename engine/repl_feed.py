"""Reading change sets out of a database: the replication wire message and the change feed.

Wire message
------------
A binlog change set names tables by catalog object id, which is local to a
database, so what travels between nodes is an envelope::

    b"TRM1" | u32 length | JSON {"t": {"<table id>": [name, CREATE TABLE sql]}} | change set

The JSON maps every table id used in the change set to its name (receivers
map by name) and to its CREATE statement, so a subscriber can create a table
that a message needs before applying the message's rows: data never waits
for DDL that is still in flight.  The change set keeps its header (origin
node, origin sequence, HLC), which is its identity everywhere.

A publisher that is behind sends several consecutive change sets of one
origin as one *batch* message (one network message and one acknowledgement
instead of one per commit)::

    b"TRB1" | u32 length | JSON table map (the union) | u32 count | (u32 length | change set) * count

``decode_wire`` accepts both forms and returns the change sets in order,
each as a ``Message`` sharing the batch's table map.

``read_outgoing`` produces messages from a binlog: entries of tables outside
the publish set are cut (the change set is re-encoded with the same header),
DDL about unpublished tables too.  A change set left empty still produces a
message (its identity marks the origin sequence as seen, so receivers that
track per-origin sequences see no gap) unless ``skip_empty``.

Change feed
-----------
``ChangeFeed.changes(table, since)`` lists a table's changes after a binlog
position with decoded keys and rows; ``subscribe`` follows new commits by
polling the binlog (commits in other processes show up too).  Positions are
local binlog sequence numbers; change sets applied from peers are in the
binlog too (with their origin), so a feed sees remote changes as they were
received, including ones that last-writer-wins then did not keep.
"""
from __future__ import annotations

import json
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from terndb._cext import _core as C

from .binlog import ChangeSet
from .catalog import MAIN, Schema, Table
from .errors import CorruptDatabaseError
from .repl_versions import (
    CONFLICT_TABLE, OP_DDL, OP_DELETE, OP_INSERT, OP_UPDATE, TableSet, bring_current, versions_mark,
)

MAGIC = b"TRM1"
BATCH_MAGIC = b"TRB1"
_LEN = struct.Struct(">I")
OP_NAMES = {OP_INSERT: "insert", OP_UPDATE: "update", OP_DELETE: "delete", OP_DDL: "ddl"}


def table_map_json(tables: dict[int, tuple[str, str]]) -> bytes:
    return json.dumps({"t": {str(k): list(v) for k, v in tables.items()}}, separators=(",", ":")).encode()


def encode_message(changeset: bytes, tables: dict[int, tuple[str, str]]) -> bytes:
    meta = table_map_json(tables)
    return MAGIC + _LEN.pack(len(meta)) + meta + changeset


def encode_batch(changesets: list[bytes], tables: dict[int, tuple[str, str]]) -> bytes:
    """One batch message: ``changesets`` (in order) with the union of their table maps.

    The format's Python statement, beside ``decode_batch``: the publisher frames its
    batches in C (``repl_frame_round``), and tests hold that framing to this one."""
    meta = table_map_json(tables)
    parts = [BATCH_MAGIC, _LEN.pack(len(meta)), meta, _LEN.pack(len(changesets))]
    for cs in changesets:
        parts.append(_LEN.pack(len(cs)))
        parts.append(cs)
    return b"".join(parts)


#: Bytes a batch adds around its change sets besides the table map (magic, lengths, count).
BATCH_OVERHEAD = 12
#: Bytes a batch adds per change set (its length prefix).
BATCH_ITEM_OVERHEAD = _LEN.size


@dataclass
class Message:
    """A decoded wire message (entries decoded lazily)."""
    tables: dict[int, tuple[str, str]]
    data: bytes                      # the change set
    header: dict
    _entries: list | None = field(default=None, repr=False)

    @property
    def origin(self) -> bytes:
        return self.header["origin"]

    @property
    def origin_sequence(self) -> int:
        return self.header["sequence"]

    @property
    def hlc(self) -> int:
        return self.header["hlc"]

    @property
    def entries(self) -> list:
        if self._entries is None:
            self._entries = C.decode_changeset(self.data)[1]
        return self._entries

    @property
    def msg_id(self) -> str:
        return f"{self.origin.hex()}:{self.origin_sequence}"


def _decode_table_map(data: bytes) -> tuple[dict[int, tuple[str, str]], int]:
    """(table map, offset after it) of a message or batch whose 4-byte magic was checked."""
    if len(data) < 8:
        raise CorruptDatabaseError("replication message truncated in its header")
    n = _LEN.unpack_from(data, 4)[0]
    if 8 + n > len(data):
        raise CorruptDatabaseError("replication message truncated inside its table map")
    try:
        raw = json.loads(data[8:8 + n])
        tables = {int(k): (str(v[0]), str(v[1])) for k, v in raw["t"].items()}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise CorruptDatabaseError(f"replication message has a bad table map: {exc}") from None
    return tables, 8 + n


def decode_message(data: bytes) -> Message:
    """Validate and split a (single change set) wire message; CorruptDatabaseError if malformed."""
    data = bytes(data)
    if data[:4] != MAGIC:
        raise CorruptDatabaseError("not a terndb replication message (bad magic)")
    tables, at = _decode_table_map(data)
    cs = data[at:]
    header = C.decode_changeset_header(cs)
    return Message(tables, cs, header)


def is_batch(data: bytes) -> bool:
    return data[:4] == BATCH_MAGIC


def decode_batch(data: bytes) -> list[Message]:
    """The change sets of a batch message, in order; CorruptDatabaseError if malformed.

    Every length is checked against the bytes left, so a forged count or
    length cannot drive a large allocation or a read past the end.
    """
    data = bytes(data)
    if data[:4] != BATCH_MAGIC:
        raise CorruptDatabaseError("not a terndb replication batch (bad magic)")
    tables, at = _decode_table_map(data)
    end = len(data)
    if at + 4 > end:
        raise CorruptDatabaseError("replication batch truncated before its count")
    count = _LEN.unpack_from(data, at)[0]
    at += 4
    if count == 0 or count * 4 > end - at:
        raise CorruptDatabaseError(f"replication batch declares {count} change sets in {end - at} bytes")
    out: list[Message] = []
    for _ in range(count):
        if at + 4 > end:
            raise CorruptDatabaseError("replication batch truncated inside a length")
        n = _LEN.unpack_from(data, at)[0]
        at += 4
        if at + n > end:
            raise CorruptDatabaseError("replication batch truncated inside a change set")
        cs = data[at:at + n]
        at += n
        out.append(Message(tables, cs, C.decode_changeset_header(cs)))
    if at != end:
        raise CorruptDatabaseError(f"replication batch has {end - at} bytes after its change sets")
    return out


def decode_wire(data: bytes) -> list[Message]:
    """The change sets of a single message or a batch, in order."""
    return decode_batch(data) if is_batch(data) else [decode_message(data)]


def ddl_subject(payload: bytes, schema: Schema) -> tuple[str, str | None]:
    """(kind, table name) a DDL payload is about; table None when unknown."""
    try:
        info = json.loads(payload)
    except ValueError:
        return "unknown", None
    op = info.get("op")
    name = str(info.get("name", ""))
    if info.get("schema") or op == "create_schema" or info.get("kind") == "schema":
        return "schema", None           # objects outside main, and CREATE/DROP SCHEMA
    if op == "create_table":
        return "table", name
    if op == "create_index":
        ix = schema.indexes.get(name.lower())
        return "index", (ix.table if ix is not None else None)
    if op == "create_view":
        return "view", None
    if op == "drop":
        kind = info.get("kind")
        return str(kind), (name if kind == "table" else None)
    return "unknown", None


def reencode(header: dict, entries: list, table_ids: dict[int, int] | None = None,
             prevs: list[int] | None = None) -> bytes:
    """A change set with the same header and the given entries.

    Table ids are mapped by ``table_ids``; ``prevs`` (one per entry) replaces
    the entries' previous-version HLCs.
    """
    col = C.ChangeCollector()
    for i, e in enumerate(entries):
        op = e.op
        tid = e.table_id if table_ids is None else table_ids.get(e.table_id, e.table_id)
        prev = e.prev_hlc if prevs is None else prevs[i]
        if op == OP_INSERT:
            col.insert(tid, e.pk_key, e.row, prev)
        elif op == OP_UPDATE:
            col.update(tid, e.pk_key, e.row, e.changed or 0, prev)
        elif op == OP_DELETE:
            col.delete(tid, e.pk_key, prev, e.row)
        else:
            col.ddl(e.row)
    return col.finish(header["hlc"], header["origin"], header["sequence"], header["schema_version"])


@dataclass
class Outgoing:
    """One binlog change set prepared for sending."""
    sequence: int                    # local binlog position (the sender's stream position)
    origin: bytes
    origin_sequence: int
    hlc: int
    changeset: bytes | None          # the change set, cut to what is published; None when skip_empty dropped it
    #: its tables: id -> (name, CREATE); read-only (change sets of a round share one)
    table_map: dict[int, tuple[str, str]] = field(default_factory=dict)
    tables: tuple[str, ...] = ()     # names of the tables in it
    has_ddl: bool = False
    _data: bytes | None = field(default=None, repr=False)

    @property
    def data(self) -> bytes | None:
        """The wire message (encoded on first use: a batching sender never needs it)."""
        if self._data is None and self.changeset is not None:
            self._data = encode_message(self.changeset, self.table_map)
        return self._data


def read_outgoing(db: Any, since: int, publish: TableSet, *, limit: int = 1000,
                  only_origin: bytes | None = None, skip_empty: bool = False,
                  exclude_origin: bytes | None = None, current: bool = False) -> list[Outgoing]:
    """Change sets after binlog position ``since`` as wire messages, filtered to ``publish``.

    The database's version records are brought current first, so local change
    sets carry their causal versions (``repl_versions.bring_current``), unless
    the caller says it just did (``current``); where records are kept, the read
    stops at the position they were brought to (a commit landing between the
    catch-up and the read would otherwise go out without its previous versions).
    """
    kept = not current and bring_current(db)
    with db.store.begin_read() as rt:
        # What committed after that catch-up has no previous versions yet: it goes next time.
        upto = versions_mark(db, rt.txn) if kept else None
        return outgoing_in(rt.txn, db, since, publish, limit=limit, only_origin=only_origin,
                           skip_empty=skip_empty, exclude_origin=exclude_origin, upto=upto)


def outgoing_in(txn: Any, db: Any, since: int, publish: TableSet, *, limit: int = 1000,
                only_origin: bytes | None = None, skip_empty: bool = False,
                exclude_origin: bytes | None = None, upto: int | None = None,
                rewritten: dict[int, bytes] | None = None) -> list[Outgoing]:
    """``read_outgoing`` in read transaction ``txn``, records as they are there, stopping after
    binlog position ``upto`` (when given); a change set in ``rewritten`` (sequence -> change set
    with its causal versions, from a catch-up not written yet) is sent in that form: the Python
    statement of what the publisher's compiled round (``repl_frame_round``) sends."""
    out: list[Outgoing] = []
    schema = db.committed_schema(txn)
    published = published_tables(schema, publish)
    maps: dict[tuple, tuple] = {}        # kept table ids -> (table map, names), shared by the round's change sets
    for seq, cs in db.binlog.read(txn, since, limit):
        if upto is not None and seq > upto:
            break
        origin = cs.origin
        if (only_origin is not None and origin != only_origin) or (
                exclude_origin is not None and origin == exclude_origin):
            out.append(Outgoing(seq, origin, cs.origin_sequence, cs.hlc, None))
            continue
        if rewritten and seq in rewritten:
            cs = ChangeSet(seq, rewritten[seq])
        out.append(prepare_outgoing(seq, cs, schema, publish, skip_empty, published, maps))
    return out


def published_tables(schema: Schema, publish: TableSet) -> dict[int, Table]:
    """Table id -> table of the tables whose rows are sent: main's (replicas address tables by bare
    name), published, with a primary key."""
    return {tid: t for tid, t in schema.by_object_id.items()
            if isinstance(t, Table) and t.schema_name == MAIN and t.name in publish and t.pk}


def prepare_outgoing(seq: int, cs: ChangeSet, schema: Schema, publish: TableSet, skip_empty: bool,
             published: dict[int, Table], maps: dict[tuple, tuple]) -> Outgoing:
    """``cs`` cut to what is published (``published``: ``published_tables(schema, publish)``; ``maps``
    caches table maps by the table ids kept, so consecutive change sets share one read-only map)."""
    # The compiled filter (cext/repl.pxi) handles a change set without DDL, the usual one.
    fast = C.repl_cut_changeset(cs.data, published)
    if fast is not None:
        data, ids = fast
        if not ids and skip_empty:
            return Outgoing(seq, cs.origin, cs.origin_sequence, cs.hlc, None)
        info = maps.get(ids)
        if info is None:
            tables = {tid: (published[tid].name, published[tid].sql) for tid in ids}
            info = maps[ids] = (tables, tuple(sorted({name for name, _ in tables.values()})))
        return Outgoing(seq, cs.origin, cs.origin_sequence, cs.hlc, data, info[0], info[1], False)
    kept = []
    tables: dict[int, tuple[str, str]] = {}
    names: set[str] = set()
    has_ddl = False
    cut = False
    for e in cs.entries:
        if e.op == OP_DDL:
            kind, tname = ddl_subject(e.row, schema)
            if kind == "schema":
                keep = False            # schemas are not replicated yet (main only)
            elif kind == "table":
                keep = tname is not None and tname in publish
            elif kind == "index":
                keep = tname is None or tname in publish   # a dropped index's table is unknown
            elif kind == "view":
                keep = publish.all
            else:
                keep = True
            if not keep:
                cut = True
                continue
            kept.append(e)
            has_ddl = True
            continue
        t = published.get(e.table_id)
        if t is None:
            cut = True
            continue
        if e.table_id not in tables:
            tables[e.table_id] = (t.name, t.sql)
            names.add(t.name)
        kept.append(e)
    if not kept and skip_empty:
        return Outgoing(seq, cs.origin, cs.origin_sequence, cs.hlc, None)
    header = {"hlc": cs.hlc, "origin": cs.origin, "sequence": cs.origin_sequence,
              "schema_version": cs.schema_version}
    data = reencode(header, kept) if cut else cs.data
    return Outgoing(seq, cs.origin, cs.origin_sequence, cs.hlc, data, tables, tuple(sorted(names)), has_ddl)


# ---------------------------------------------------------------------------------------------
# The change feed

@dataclass
class Change:
    """One change to one row (or one DDL statement) as the feed reports it."""
    position: int                    # local binlog sequence of its change set
    op: str                          # insert / update / delete / ddl
    table: str | None
    key: tuple | None                # primary key values
    row: dict | None                 # column -> value: after an insert/update; the deleted row for a
    #                                  delete (None when its writer did not record it)
    changed: tuple[str, ...]         # updated column names
    hlc: int
    origin: str                      # node id (hex) where it was committed
    ddl: dict | None = None


class ChangeFeed:
    """Iterate or follow one table's (or every table's) changes since a binlog position."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def last_position(self) -> int:
        with self.db.store.begin_read() as rt:
            return self.db.binlog.last_sequence(rt.txn)

    def changes(self, table: str | None = None, since: int = 0, limit: int | None = None) -> list[Change]:
        """Changes with position > ``since`` (oldest first); ``limit`` counts change sets.

        Raises OperationalError if retention already removed positions after ``since``.
        """
        return self._read(table, since, limit)[0]

    def _read(self, table: str | None, since: int, limit: int | None) -> tuple[list[Change], int]:
        out: list[Change] = []
        want = table.lower() if table else None
        last = since
        with self.db.store.begin_read() as rt:
            schema = self.db.committed_schema(rt.txn)
            for seq, cs in self.db.binlog.read(rt.txn, since, limit):
                last = seq
                for e in cs.entries:
                    ch = _to_change(seq, cs, e, schema)
                    if ch is None or (want is not None and (ch.table or "").lower() != want):
                        continue
                    out.append(ch)
        return out, last

    def subscribe(self, table: str | None = None, since: int | None = None, *, poll: float = 0.05,
                  stop: threading.Event | None = None, timeout: float | None = None) -> Iterator[Change]:
        """Yield changes as they commit, starting after ``since`` (default: now).

        Ends when ``stop`` is set or, with ``timeout``, after that many seconds
        without a new change set.
        """
        pos = self.last_position() if since is None else since
        idle_since = time.monotonic()
        while stop is None or not stop.is_set():
            batch, last = self._read(table, pos, 1000)
            if last > pos:
                pos = last
                idle_since = time.monotonic()
                yield from batch
                continue
            if timeout is not None and time.monotonic() - idle_since >= timeout:
                return
            if stop is not None:
                stop.wait(poll)
            else:
                time.sleep(poll)


def _to_change(seq: int, cs: ChangeSet, e: Any, schema: Schema) -> Change | None:
    origin = cs.origin.hex()
    if e.op == OP_DDL:
        try:
            info = json.loads(e.row)
        except ValueError:
            info = {}
        name = info.get("name") if info.get("op") in ("create_table",) or info.get("kind") == "table" else None
        return Change(seq, "ddl", name, None, None, (), cs.hlc, origin, info)
    t = schema.by_object_id.get(e.table_id)
    if t is None or t.name.lower() == CONFLICT_TABLE:
        return None
    cols = [c.name for c in t.columns]
    n = len(cols)
    key = C.decode_key(e.pk_key, b"B" * max(1, len(t.pk) or 1))
    row = None
    if e.row is not None:
        row = dict(zip(cols, C.decode_row(e.row, n, None)))
    changed = tuple(cols[i] for i in e.changed_columns if i < n) if e.op == OP_UPDATE else ()
    return Change(seq, OP_NAMES[e.op], t.qualified_name, key, row, changed, cs.hlc, origin)


__all__ = ["encode_message", "table_map_json", "published_tables", "prepare_outgoing", "decode_message", "encode_batch", "decode_batch", "decode_wire", "is_batch",
           "BATCH_MAGIC", "Message", "read_outgoing", "outgoing_in", "Outgoing", "reencode",
           "ChangeFeed", "Change", "ddl_subject", "MAGIC"]
