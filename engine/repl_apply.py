"""Applying peers' change sets: convergent merge, conflicts, dedup and stream positions in one transaction.

``Applier.apply(items, channel)`` takes a batch of ``(position, wire message)``
pairs from one transport channel and applies them in ONE write transaction
that also stores, in the ``_repl_state`` sub-database:

* the channel's position (``pos:<channel>``): the transport acknowledges only
  after this commit, and a redelivered item at or below it is skipped, so a
  crash between commit and acknowledgement applies nothing twice and loses
  nothing;
* per origin node, the set of origin sequences applied (``wm:<origin>`` a
  contiguous watermark plus ``ah:<origin><seq>`` for sequences above it), so a
  change set reaching a node by two paths of a mesh applies once;
* the version records of every row touched (``engine/repl_versions.py``).

Applied change sets are appended to the local binlog (re-encoded with local
table ids, same origin header) so that peers reading this node's binlog get
them relayed, and the change feed sees them.  Change sets whose origin is
this node are never applied (no echo).

Rows are written with the compiled ``TableWriter`` with change capture off
(``session.changes = None``), so applying produces no new local change set.
A constraint that fails on apply (two nodes inserted different keys with the
same UNIQUE value) aborts the batch, which is then redone with a savepoint
per entry: the failing entry is skipped and recorded as a ``constraint``
conflict.

Conflict table ``terndb_conflicts`` (queryable SQL; one row per winner/loser
pair of concurrent writes): ``id, detected_at`` (UTC ISO), ``table_name, pk``
(JSON array), ``kind`` (``column``: two nodes wrote different values to the
same columns concurrently; ``delete_lost``: a delete lost to a concurrent
insert/update; ``update_deleted``: an insert/update lost to a concurrent
delete; ``stale``: an incoming write older than the tombstone horizon for a
row without a record; ``constraint``: the write broke a constraint here),
``columns`` (JSON list of the contested columns), ``winner_origin,
winner_hlc, winner_row`` (JSON object of the kept values), ``loser_origin,
loser_hlc, loser_row`` and ``detail``.  Writes are concurrent when the
winner's writer had not seen the loser (``repl_versions.concurrent``, from
the entries' ``prev_hlc``): an overwrite of a version its writer had seen is
no conflict, however deliveries are reordered.  The test is symmetric, so a
conflict is recorded on every node, whichever of the two writes arrives
first (the loser's own node records it when the winner arrives).
"""
from __future__ import annotations

import datetime
import json
import struct
from typing import Any

from terndb._cext import _core as C

from .catalog import Schema, Table
from .collation import fold_key, index_key_folds
from .errors import DataError, IntegrityError, OperationalError, ProgrammingError
from .params import ParamSpec
from .repl_feed import Message, reencode
from .repl_guard import DEAD_LETTER_SQL, Guard, dead_letter_row, peek_header
from .repl_versions import (
    BOTTOM, CONFLICT_TABLE, DEAD_LETTER_TABLE, K_VERSIONS_SEQ, NO_NODE, OP_DDL, OP_DELETE, Record, TableSet,
    VersionStore, merge, record_key, replicable,
)

_U64 = struct.Struct(">Q")
_ABORT = C.CONFLICT_MODES["ABORT"]

CONFLICT_TABLE_SQL = (
    f"CREATE TABLE IF NOT EXISTS {CONFLICT_TABLE}("
    "id INTEGER PRIMARY KEY, detected_at TEXT, table_name TEXT, pk TEXT, kind TEXT, columns TEXT, "
    "winner_origin TEXT, winner_hlc INTEGER, winner_row TEXT, "
    "loser_origin TEXT, loser_hlc INTEGER, loser_row TEXT, detail TEXT)")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"$hex": bytes(v).hex()}
    if isinstance(v, float) and v != v:
        return None
    return v


def _json(obj: Any) -> str:
    if isinstance(obj, dict):
        return json.dumps({k: _jsonable(v) for k, v in obj.items()}, separators=(",", ":"))
    return json.dumps([_jsonable(v) for v in obj], separators=(",", ":"))


def _same_row(a: tuple, b: tuple) -> bool:
    if len(a) < len(b):
        return False
    for x, y in zip(a, b):
        if type(x) is not type(y) or x != y:
            return False
    return True


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ApplyStats:
    """Counts for one ``apply`` call (also summed by the replicator's status)."""

    __slots__ = ("messages", "applied", "duplicates", "echoes", "entries", "conflicts", "ddl", "dead_letters",
                 "position")

    def __init__(self) -> None:
        self.messages = 0         # transport messages (a batch counts once; the others count change sets)
        self.applied = 0          # change sets applied
        self.duplicates = 0       # skipped: at/below the channel position, or origin sequence seen
        self.echoes = 0           # skipped: our own change sets coming back
        self.entries = 0          # row changes applied (merged)
        self.conflicts = 0
        self.ddl = 0
        self.dead_letters = 0     # refused or unappliable messages (see engine/repl_guard.py)
        self.position = 0

    def add(self, other: "ApplyStats") -> None:
        for name in self.__slots__:
            if name != "position":
                setattr(self, name, getattr(self, name) + getattr(other, name))
        self.position = max(self.position, other.position)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class _Txn:
    """Per-transaction state of one apply."""

    def __init__(self, session: Any, vdb: Any, sdb: Any, schema: Schema, gc_floor: int) -> None:
        self.session = session
        self.write = session.write
        self.vdb = vdb
        self.sdb = sdb
        self.schema = schema
        self.gc_floor = gc_floor
        # keyed by the table's object id (cheaper than ``Table.key`` once per row)
        self.writers: dict[int, Any] = {}
        self.pk_index: dict[int, Any] = {}
        self.table_dbs: dict[int, Any] = {}
        self.conflicts: list[tuple] = []
        self.dead_letters: list[tuple] = []
        self._ctx: Any = None
        self._ctx_txn: Any = None

    def ctx(self) -> Any:
        txn = self.write.txn
        if self._ctx_txn is not txn:
            self._ctx = C.ExecContext((), txn, self.session, self.write)
            self._ctx_txn = txn
        return self._ctx

    def schema_changed(self, schema: Schema) -> None:
        self.schema = schema
        self.writers.clear()
        self.pk_index.clear()
        self.table_dbs.clear()


class Applier:
    """Applies wire messages to one database (see the module docstring)."""

    def __init__(self, db: Any, subscribe: TableSet, versions: VersionStore, *, relay: bool = True,
                 busy_timeout: float = 10.0) -> None:
        self.db = db
        self.store = db.store
        self.node_id: bytes = db.node_id
        self.subscribe = subscribe
        self.versions = versions
        self.relay = relay
        self.busy_timeout = busy_timeout
        self.guard = Guard()        # structural checks only; the Replicator installs its configured one

    # -- public ---------------------------------------------------------------------------

    def ensure_conflict_table(self) -> None:
        from .session import Session
        s = Session(self.db, isolation_level=None, busy_timeout=self.busy_timeout)
        try:
            s.execute(CONFLICT_TABLE_SQL)
        finally:
            s.close()

    def position(self, channel: str) -> int:
        """The channel's committed position (0 if it never applied anything)."""
        with self.store.begin_read() as rt:
            raw = self.versions.state_get(rt.txn, b"pos:" + channel.encode())
        return _U64.unpack(raw)[0] if raw else 0

    def apply(self, items: list[tuple[int, bytes | None]], channel: str | None, *,
              track_origin: bool = True, in_order: bool = True) -> ApplyStats:
        """Apply ``(position, wire message)`` items (positions increasing) in one transaction.

        A None message only moves the channel position (the sender filtered it out).
        ``channel`` None keeps no position (every item is considered; per-origin
        tracking and the version merge still make repeats harmless).
        ``in_order`` False is for a channel that may deliver an item below its
        position (a JetStream redelivery of a message a timed-out fetch left
        unacknowledged): the position then only records the highest item, and
        repeats are recognised by their origin sequence (``track_origin``)
        instead of being skipped by position, which would lose them.
        """
        args = (items, channel, track_origin, in_order)
        try:
            return self._apply(*args, careful=False)
        except (IntegrityError, DataError):
            # Some entry broke a constraint: redo with a savepoint per entry.
            return self._apply(*args, careful=True)
        except OperationalError:
            raise                   # busy, disk, map: transient, the transport retries the batch
        except Exception:           # noqa: BLE001 - a message failed to apply: redo, dead-lettering it
            return self._apply(*args, careful=True)

    def merge_records(self, items: list[tuple[str, str, bytes, Record]], *, channel: str | None = None,
                      position: int | None = None) -> int:
        """Merge snapshot records ``(table name, CREATE sql, pk key, record)`` in one transaction.

        Used by bootstrap: nothing local is replaced or deleted unless a
        snapshot version beats it, register by register.  Optionally moves a
        channel's position in the same transaction.  Returns rows changed.
        """
        from .session import Session
        session = Session(self.db, busy_timeout=self.busy_timeout)
        session._begin_write()
        session.changes = None
        changed = 0
        try:
            self.versions.catch_up(session.write)
            vdb, sdb = self.versions.handles(session.write)
            txn = session.write.txn
            st = _Txn(session, vdb, sdb, self.versions.schema(txn, session.write), self.versions.gc_floor(txn))
            for name, sql, pk_key, rec in items:
                if name not in self.subscribe:
                    continue
                table = st.schema.tables.get(name.lower())
                if table is None:
                    self._run_sql(st, sql)
                    table = st.schema.table(name)
                if not replicable(table):
                    continue
                n = len(table.columns)
                if len(rec.vers) != n:
                    rec.vers = (rec.vers + [BOTTOM] * n)[:n]
                    rec.values = (rec.values + [None] * n)[:n]
                    rec.prevs = (rec.prevs + [0] * n)[:n]
                if self._merge_row(st, table, pk_key, rec, True, rec.ex_node, rec.ex_hlc, False):
                    changed += 1
            if channel is not None and position is not None:
                key = b"pos:" + channel.encode()
                raw = st.write.txn.get(key, db=sdb)
                if raw is None or _U64.unpack(raw)[0] < position:
                    st.write.txn.put(key, _U64.pack(position), db=sdb)
            st.write.txn.put(K_VERSIONS_SEQ, _U64.pack(self.db.binlog.last_sequence(st.write.txn)), db=sdb)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        return changed

    # -- the transaction ----------------------------------------------------------------------

    def _apply(self, items: list[tuple[int, bytes | None]], channel: str | None, track_origin: bool,
               in_order: bool, careful: bool) -> ApplyStats:
        from .session import Session
        stats = ApplyStats()
        session = Session(self.db, busy_timeout=self.busy_timeout)
        session._begin_write()
        session.changes = None          # applied rows are not local changes: no echo
        write = session.write
        try:
            self.versions.catch_up(write)
            vdb, sdb = self.versions.handles(write)
            txn = write.txn
            st = _Txn(session, vdb, sdb, self.versions.schema(txn, write), self.versions.gc_floor(txn))
            pos_key = b"pos:" + channel.encode() if channel is not None else None
            raw = txn.get(pos_key, db=sdb) if pos_key is not None else None
            pos = _U64.unpack(raw)[0] if raw else 0
            for item_pos, data in items:
                stats.messages += 1
                if item_pos <= pos:
                    if pos_key is not None and in_order:
                        stats.duplicates += 1
                        continue
                else:
                    pos = item_pos
                if data is None:        # filtered out by the sender: only the position moves
                    continue
                # One change set, or a batch of them (applied in order, each on its own).
                for msg, raw in self._admit(st, channel, item_pos, data, stats):      # security hook
                    self._apply_admitted(st, msg, raw, stats, channel, item_pos, track_origin, careful)
            txn = write.txn
            if pos_key is not None:
                txn.put(pos_key, _U64.pack(pos), db=sdb)
            # Everything appended since the catch-up came from peers: records are current.
            txn.put(K_VERSIONS_SEQ, _U64.pack(self.db.binlog.last_sequence(txn)), db=sdb)
            self._append_local_rows(st, CONFLICT_TABLE, CONFLICT_TABLE_SQL, st.conflicts)
            self._append_local_rows(st, DEAD_LETTER_TABLE, DEAD_LETTER_SQL, st.dead_letters)
            stats.conflicts = len(st.conflicts)
            stats.position = pos
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        return stats

    # -- security hook: admission checks and the dead-letter table (engine/repl_guard.py) -----

    def _admit(self, st: _Txn, channel: str | None, position: int, data: bytes,
               stats: ApplyStats) -> list[tuple[Message, bytes]]:
        """``(message, its raw bytes)`` for each change set the guard admits (one, or a batch's);
        each refused one is counted and queued as a dead letter."""
        data = bytes(data)
        admitted = []
        for verdict in self.guard.admit_all(data, channel, st.schema, self.subscribe,
                                            getattr(self.db.hlc, "max_drift_ms", None)):
            raw = verdict.raw if verdict.raw is not None else data
            if verdict.message is None:
                st.dead_letters.append(dead_letter_row(verdict, channel, position, raw))
                stats.dead_letters += 1
            else:
                admitted.append((verdict.message, raw))
        return admitted

    def _apply_admitted(self, st: _Txn, msg: Message, raw: bytes, stats: ApplyStats, channel: str | None,
                        position: int, track_origin: bool, careful: bool) -> None:
        """Apply one admitted change set unless it is an echo or a repeat."""
        if msg.origin == self.node_id:
            stats.echoes += 1
            return
        if track_origin and self._seen(st, msg):
            stats.duplicates += 1
            return
        self.db.hlc.observe(msg.hlc)
        if not careful:
            self._apply_message(st, msg, careful, stats)
        elif not self._apply_message_or_dead_letter(st, msg, stats, channel, position, raw):
            stats.dead_letters += 1
            return
        if track_origin:
            self._mark(st, msg)
        stats.applied += 1

    def _apply_message_or_dead_letter(self, st: _Txn, msg: Message, stats: ApplyStats, channel: str | None,
                                      position: int, data: bytes) -> bool:
        """Apply one admitted message under a savepoint; a non-transient failure rolls back only
        this message and dead-letters it (False).  Transient errors propagate: the batch retries."""
        write = st.write
        depth = write.savepoint()
        conflicts = len(st.conflicts)
        try:
            self._apply_message(st, msg, True, stats)
        except OperationalError:
            raise
        except Exception as exc:    # noqa: BLE001 - hostile content must not stop replication
            write.rollback_to(depth, keep=False)
            del st.conflicts[conflicts:]
            st.schema_changed(self.db.catalog.load(write.txn, write))
            self.versions._schema = None
            verdict = peek_header(data)
            verdict.reason = f"apply failed: {type(exc).__name__}: {exc}"
            st.dead_letters.append(dead_letter_row(verdict, channel, position, data))
            return False
        write.release(depth)
        return True

    def _append_local_rows(self, st: _Txn, name: str, create_sql: str, rows: list) -> None:
        """Inserts ``rows`` into a node-local bookkeeping table, creating it on first use."""
        if not rows:
            return
        table = st.schema.tables.get(name)
        if table is None:
            self._run_sql(st, create_sql)
            table = st.schema.table(name)
        w = self._writer(st, table)
        ctx = st.ctx()
        for row in rows:
            w.insert(row, ctx, _ABORT)

    # -- dedup by origin sequence ---------------------------------------------------------

    def _seen(self, st: _Txn, msg: Message) -> bool:
        txn = st.write.txn
        raw = txn.get(b"wm:" + msg.origin, db=st.sdb)
        seq = msg.origin_sequence
        if raw is not None and seq <= _U64.unpack(raw)[0]:
            return True
        return txn.get(b"ah:" + msg.origin + _U64.pack(seq), db=st.sdb) is not None

    def _mark(self, st: _Txn, msg: Message) -> None:
        txn = st.write.txn
        wkey = b"wm:" + msg.origin
        raw = txn.get(wkey, db=st.sdb)
        wm = _U64.unpack(raw)[0] if raw else 0
        seq = msg.origin_sequence
        if seq != wm + 1:
            txn.put(b"ah:" + msg.origin + _U64.pack(seq), b"", db=st.sdb)
            return
        wm = seq
        while True:     # absorb sequences that arrived early
            k = b"ah:" + msg.origin + _U64.pack(wm + 1)
            if txn.get(k, db=st.sdb) is None:
                break
            txn.delete(k, db=st.sdb)
            wm += 1
        txn.put(wkey, _U64.pack(wm), db=st.sdb)

    # -- one change set ------------------------------------------------------------------------

    def _apply_message(self, st: _Txn, msg: Message, careful: bool, stats: ApplyStats) -> None:
        relay_entries = []
        local_ids: dict[int, int] = {}
        tables: dict[int, Table | None] = {}
        for e in msg.entries:
            if e.op == OP_DDL:
                if self._apply_ddl(st, e.row, msg):
                    stats.ddl += 1
                relay_entries.append(e)
                tables.clear()          # the schema may have changed
                continue
            tid = e.table_id
            table = tables.get(tid, False)
            if table is False:
                table = self._local_table(st, msg, tid)
                tables[tid] = table
            if table is None:
                continue
            local_ids[tid] = table.object_id
            relay_entries.append(e)
            if careful:
                self._apply_entry_guarded(st, table, e, msg)
            else:
                self._apply_entry(st, table, e, msg)
            stats.entries += 1
        if self.relay:
            if len(relay_entries) == len(msg.entries) and all(k == v for k, v in local_ids.items()):
                data = msg.data             # same ids, nothing cut: relay the change set as received
            else:
                data = reencode(msg.header, relay_entries, local_ids)
            self.db.binlog.append_encoded(st.write.txn, data)

    def _local_table(self, st: _Txn, msg: Message, tid: int) -> Table | None:
        """The local table an entry's table id maps to (by name), created from the message if missing."""
        info = msg.tables.get(tid)
        if info is None:
            return None
        name, sql = info
        if name not in self.subscribe:
            return None
        table = st.schema.tables.get(name.lower())
        if table is None:
            if self._dropped_after(st, name, msg.hlc) or not sql:
                return None
            self._run_sql(st, sql.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1)
                          if "IF NOT EXISTS" not in sql.upper() else sql)
            table = st.schema.tables.get(name.lower())
            if table is None:
                return None
        return table if replicable(table) else None

    def _apply_entry_guarded(self, st: _Txn, table: Table, e: Any, msg: Message) -> None:
        write = st.write
        depth = write.savepoint()
        try:
            self._apply_entry(st, table, e, msg)
        except (IntegrityError, DataError) as err:
            write.rollback_to(depth, keep=False)
            n = len(table.columns)
            row = C.decode_row(e.row, n, None) if e.row is not None and e.op != OP_DELETE else ()
            self._conflict(st, table, e.pk_key, "constraint", [], None, None,
                           msg.origin, msg.hlc, dict(zip([c.name for c in table.columns], row)), str(err))
            return
        write.release(depth)

    def _apply_entry(self, st: _Txn, table: Table, e: Any, msg: Message) -> None:
        n = len(table.columns)
        op = e.op
        if self._apply_entry_fast(st, table, e, msg, n):
            return
        values = C.decode_row(e.row, n, None) if op != OP_DELETE else None
        inc = Record.from_entry(op, msg.hlc, msg.origin, values, e.changed, n, e.prev_hlc)
        self._merge_row(st, table, e.pk_key, inc, op != OP_DELETE, msg.origin, msg.hlc, True)

    def _apply_entry_fast(self, st: _Txn, table: Table, e: Any, msg: Message, n: int) -> bool:
        """``_merge_row`` for the common case, with the record merged in C (``cext/repl.pxi``).

        False when the Python path must decide: the merge met a concurrent
        write (conflict rows), or there is no record and the row is older than
        the tombstone floor or exists unversioned.  Nothing is written then.
        """
        key = record_key(table.object_id, e.pk_key)
        txn = st.write.txn
        raw = txn.get(key, db=st.vdb)
        if raw is None and msg.hlc <= st.gc_floor:
            return False
        merged = C.repl_merge_entry(raw, e.op, msg.hlc, msg.origin, e.row, e.changed, e.prev_hlc, n)
        if merged is None:
            return False
        changed, dead, row, rec, _ = merged
        if not changed:
            return True
        existing = self._find_row(st, table, e.pk_key)
        if raw is None:
            if existing is not None:
                return False            # a row nobody versioned: bottom versions, in Python
            if not dead:
                self._writer(st, table).insert(row, st.ctx(), _ABORT)
        elif dead:
            if existing is not None:
                self._writer(st, table).delete(existing, st.ctx())
        elif existing is None:
            self._writer(st, table).insert(row, st.ctx(), _ABORT)
        elif not _same_row(existing, row):
            self._writer(st, table).update(existing, row, st.ctx(), _ABORT)
        txn.put(key, rec, db=st.vdb)
        return True

    def _merge_row(self, st: _Txn, table: Table, pk_key: bytes, inc: Record, touch_columns: bool,
                   origin: bytes, hlc: int, record_conflicts: bool) -> bool:
        """Merge one incoming record into the row's record and make the table row match it.

        Returns True when the row's state changed.
        """
        n = len(table.columns)
        key = record_key(table.object_id, pk_key)
        txn = st.write.txn
        raw = txn.get(key, db=st.vdb)
        if raw is None:
            if hlc <= st.gc_floor:
                if not inc.dead and record_conflicts:
                    self._conflict(st, table, pk_key, "stale", [], None, None, origin, hlc,
                                   self._row_dict(table, inc.values), "older than the tombstone horizon")
                return False
            existing = self._find_row(st, table, pk_key)
            if existing is None:
                if not inc.dead:
                    self._writer(st, table).insert(inc.row(), st.ctx(), _ABORT)
                txn.put(key, inc.encode(), db=st.vdb)
                return True
            # A row nobody versioned (written before the table was replicated): bottom versions.
            rec = Record(False, 0, NO_NODE, [BOTTOM] * n, list(existing[:n]))
            res = merge(rec, inc, touch_columns)
        else:
            rec = Record.decode(raw, n)
            stored_ex = (rec.dead, rec.ex_hlc, rec.ex_node)
            res = merge(rec, inc, touch_columns)
            if record_conflicts and res.conflicted:
                self._record_conflicts(st, table, pk_key, rec, stored_ex, res, inc)
            if not res.changed:
                return False
            existing = self._find_row(st, table, pk_key)
        if rec.dead:
            if existing is not None:
                self._writer(st, table).delete(existing, st.ctx())
        else:
            row = rec.row()
            if existing is None:
                self._writer(st, table).insert(row, st.ctx(), _ABORT)
            elif not _same_row(existing, row):
                self._writer(st, table).update(existing, row, st.ctx(), _ABORT)
        st.write.txn.put(key, rec.encode(), db=st.vdb)
        return True

    # -- rows ----------------------------------------------------------------------------------

    def _writer(self, st: _Txn, table: Table) -> Any:
        w = st.writers.get(table.object_id)
        if w is None:
            from .dml_planner import build_writer
            w = build_writer(self.store, st.schema, table, ParamSpec.EMPTY)
            w.begin(st.ctx())
            st.writers[table.object_id] = w
        return w

    def _find_row(self, st: _Txn, table: Table, pk_key: bytes) -> tuple | None:
        """The table's row with this primary key, as a full row tuple with the rowid last."""
        txn = st.write.txn
        n = len(table.columns)
        tdb = st.table_dbs.get(table.object_id)
        if tdb is None:
            tdb = st.table_dbs[table.object_id] = self.store.db(table.db_name, txn=st.write)
        if table.rowid_alias is not None:
            rowid = C.decode_key(pk_key, b"I")[0]
            if type(rowid) is not int:
                return None
            data = txn.get(C.encode_rowid(rowid), db=tdb)
            return None if data is None else C.decode_row(data, n, None) + (rowid,)
        found = st.pk_index.get(table.object_id)
        if found is None:
            ix = next((i for i in st.schema.indexes_of(table) if i.origin == "pk"), None)
            if ix is None:
                raise ProgrammingError(f"table {table.name} has no primary key index")
            found = st.pk_index[table.object_id] = (self.store.db(ix.db_name, txn=st.write),
                                                    index_key_folds(table, ix))
        ixdb, folds = found
        # A change names its row by the raw key values; a NOCASE/RTRIM key part is folded in the index.
        pk_key = fold_key(pk_key, folds)
        with txn.cursor(db=ixdb) as cur:
            if not cur.set_range(pk_key):
                return None
            k = cur.key()
            if len(k) != len(pk_key) + 8 or not k.startswith(pk_key):
                return None
            rowid = C.key_rowid_suffix(k)
        data = txn.get(C.encode_rowid(rowid), db=tdb)
        return None if data is None else C.decode_row(data, n, None) + (rowid,)

    # -- conflicts -------------------------------------------------------------------------------

    @staticmethod
    def _row_dict(table: Table, values: Any) -> dict | None:
        if values is None:
            return None
        return dict(zip([c.name for c in table.columns], values))

    def _record_conflicts(self, st: _Txn, table: Table, pk_key: bytes, rec: Record, stored_ex: tuple,
                          res: Any, inc: Record) -> None:
        """Conflict rows for the concurrent writes ``merge`` found (one per winner/loser pair).

        ``rec`` is the merged record, ``stored_ex`` the stored ``(dead, hlc,
        node)`` before the merge.  An existence conflict (a delete against an
        insert/update) is the whole story for that entry: its columns are not
        reported again.
        """
        cols = [c.name for c in table.columns]
        origin, hlc = inc.ex_node, inc.ex_hlc
        inc_row = None if inc.dead else dict(zip(cols, inc.values))
        if res.lost_existence:
            _, ex_hlc, ex_node = stored_ex
            self._conflict(st, table, pk_key, "delete_lost" if inc.dead else "update_deleted", [],
                           ex_node, ex_hlc, origin, hlc, inc_row, None,
                           None if rec.dead else dict(zip(cols, rec.values)))
            return
        if res.beaten_existence is not None:
            was_dead, ex_hlc, ex_node = res.beaten_existence
            self._conflict(st, table, pk_key, "delete_lost" if was_dead else "update_deleted", [],
                           origin, hlc, ex_node, ex_hlc,
                           None if was_dead else dict(zip(cols, rec.values)), None, inc_row)
            return
        # Incoming lost: grouped by the stored version that beat it.
        by_winner: dict[tuple, list[int]] = {}
        for i in res.lost_columns:
            by_winner.setdefault(rec.vers[i], []).append(i)
        for (_, w_hlc, w_node), idx in by_winner.items():
            self._conflict(st, table, pk_key, "column", [cols[i] for i in idx], w_node, w_hlc, origin, hlc,
                           {cols[i]: inc.values[i] for i in idx}, None, {cols[i]: rec.values[i] for i in idx})
        # Stored lost: grouped by the stored version the incoming write beat.
        by_loser: dict[tuple, list[tuple]] = {}
        for item in res.beaten:
            by_loser.setdefault(item[1], []).append(item)
        for (_, l_hlc, l_node), items in by_loser.items():
            self._conflict(st, table, pk_key, "column", [cols[i] for i, *_ in items], origin, hlc, l_node, l_hlc,
                           {cols[i]: old for i, _, _, old in items}, None,
                           {cols[i]: rec.values[i] for i, *_ in items})

    def _conflict(self, st: _Txn, table: Table, pk_key: bytes, kind: str, columns: list,
                  winner_origin: bytes | None, winner_hlc: int | None, loser_origin: bytes,
                  loser_hlc: int, loser_row: dict | None, detail: str | None,
                  winner_row: dict | None = None) -> None:
        pk = C.decode_key(pk_key, b"B" * max(1, len(table.pk)))
        st.conflicts.append((
            None, datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            table.name, _json(list(pk)), kind, json.dumps(columns),
            winner_origin.hex() if winner_origin else None, winner_hlc,
            _json(winner_row) if winner_row is not None else None,
            loser_origin.hex(), loser_hlc, _json(loser_row) if loser_row is not None else None, detail))

    # -- DDL -------------------------------------------------------------------------------------

    def _run_sql(self, st: _Txn, sql: str) -> None:
        """Run one DDL statement in the apply transaction without capturing it as a local change."""
        from terndb._cext import _core
        session = st.session
        session.changes = _core.ChangeCollector()
        try:
            session.execute(sql)
        finally:
            session.changes = None
        st.schema_changed(self.db.catalog.load(st.write.txn, st.write))
        self.versions._schema = None

    def _dropped_after(self, st: _Txn, name: str, hlc: int) -> bool:
        raw = st.write.txn.get(b"dropped:" + name.lower().encode(), db=st.sdb)
        return raw is not None and _U64.unpack(raw)[0] >= hlc

    def _apply_add_column(self, st: _Txn, info: dict, name: str) -> bool:
        """ALTER TABLE ... ADD COLUMN, once (document tables grow this way); other ALTERs are skipped."""
        from sqlglot import exp

        from .sqlparse import parse_one
        table = st.schema.tables.get(name.lower())
        if table is None or name not in self.subscribe:
            return False
        try:
            actions = parse_one(info["sql"]).args.get("actions") or []
        except Exception:
            return False
        if len(actions) != 1 or not isinstance(actions[0], exp.ColumnDef) \
                or table.find_column(actions[0].name) is not None:
            return False
        self._run_sql(st, info["sql"])
        return True

    def _apply_ddl(self, st: _Txn, payload: bytes, msg: Message) -> bool:
        try:
            info = json.loads(payload)
        except ValueError:
            return False
        op = info.get("op")
        name = str(info.get("name", ""))
        low = name.lower()
        schema = st.schema
        if op == "create_table":
            if name not in self.subscribe or low in schema.tables or self._dropped_after(st, name, msg.hlc):
                return False
            self._run_sql(st, info["sql"])
            return True
        if op == "create_index":
            if low in schema.indexes or schema.name_taken(name):
                return False
            from .sqlparse import parse_one
            try:
                node = parse_one(info["sql"])
                tname = node.this.args["table"].name
            except Exception:
                return False
            if tname not in self.subscribe or tname.lower() not in schema.tables:
                return False
            self._run_sql(st, info["sql"])
            return True
        if op == "alter_table":
            return self._apply_add_column(st, info, name)
        if op == "create_view":
            if not self.subscribe.all or schema.name_taken(name):
                return False
            self._run_sql(st, info["sql"])
            return True
        if op == "drop":
            kind = info.get("kind")
            if kind == "table":
                t = schema.tables.get(low)
                if name not in self.subscribe or t is None:
                    return False
                st.write.txn.put(b"dropped:" + low.encode(), _U64.pack(msg.hlc), db=st.sdb)
                self.versions.drop_table_records(st.write, t.object_id)
                self._run_sql(st, f"DROP TABLE {_quote(t.name)}")
                return True
            if kind == "index":
                ix = schema.indexes.get(low)
                if ix is None or ix.origin != "c" or ix.table not in self.subscribe:
                    return False
                self._run_sql(st, f"DROP INDEX {_quote(ix.name)}")
                return True
            if kind == "view":
                if not self.subscribe.all or low not in schema.views:
                    return False
                self._run_sql(st, f"DROP VIEW {_quote(name)}")
                return True
        return False


__all__ = ["Applier", "ApplyStats", "CONFLICT_TABLE_SQL"]
