"""Per-row, per-column versions for replicated tables, and the convergent merge rule.

Every replicated row has one *version record* in the ``_repl_versions``
sub-database, keyed by ``>I table_id`` (the local catalog object id) + the
row's order-preserving primary-key key.  The record is a set of
last-writer-wins registers, so merging two records is a pure per-register
maximum: commutative, associative and idempotent, whatever order change sets
arrive in, however often.

Registers of a record
---------------------
* **existence**: ``(hlc, node)`` of the newest insert/update (live) or
  delete (dead).  A delete older than the newest insert/update loses; an
  update older than the newest delete loses, so a late update never
  resurrects a deleted row.  A newer insert re-creates it.
* **one register per column**: ``(rank, hlc, node)`` plus the value.  An
  insert writes every column at rank 1 ("strong"); an update writes its
  changed columns strong and its unchanged columns at rank 0 ("weak"): the
  update carries the whole row as its writer saw it, so those values fill in
  a row whose insert has not arrived yet, but any real write beats them.
  Rank 0 with hlc 0 is "bottom": the state of a value nobody versioned (a row
  written before the table was replicated).

Versions compare as tuples: rank, then HLC, then the 16-byte node id (ties
of equal HLCs from different nodes go to the larger node id).  Equal versions
only come from the same change set (a node's HLC never repeats), where the
later entry wins, so ``>=`` is used within one change set.

Causality: every register also keeps the *previous version* its write saw:
the ``prev_hlc`` of the change-set entry, which is the newest HLC among the
row's registers on the writer's node when it changed the row (0 for a row it
had no record of).  Two writes to a register conflict only when they are
concurrent, i.e. the winner's writer had not seen the loser: the loser is
from another node and its HLC is above the winner's ``prev_hlc``.  A write
that replaced a version its writer had seen is an ordinary overwrite, in
whatever order the two arrive.  The test is symmetric (it names the same
pair whichever arrives first), so every node records the same conflicts.
Seeing a row at a later version counts as seeing every earlier write to it;
with HLCs that is the one-scalar approximation of a version vector, exact
for two writers of a register.

The values are kept in the record even while the row is live (the table
holds them too) so that a deleted row re-created by a concurrent update can
be rebuilt the same way on every node without reading the binlog.

Record layout: ``>BQ16sHQ`` flags (bit 0 = dead, bit 1 = previous versions
present), existence hlc, existence node, column count, existence prev; then
per column ``>BQ16s`` rank, hlc, node; then per column ``>Q`` prev; then the
values as one ``encode_row`` record.  Records written before previous
versions existed (flag bit 1 clear) lack the ``Q`` fields and decode with
prev 0.

Local writes
------------
Local commits reach the records through the binlog: ``VersionStore.catch_up``
reads change sets after the ``versions_seq`` mark, takes those whose origin
is this node and merges their entries (they are the newest versions by
construction of the HLC).  It runs lazily, not in every commit (a commit
hook cost half the single-row commit throughput): the applier catches up
first inside its own transaction, so records are never behind the binlog
when they are compared, and every sender calls ``bring_current`` before
reading the binlog (``read_outgoing`` does), so what it sends carries its
causal versions, whether the writer runs a replicator in its own process or
none.  Records follow the binlog in order either way, so the previous
versions found are the ones a per-commit merge would have found.  Change
sets from peers are merged by the applier, which writes their records
itself.

The NATS publisher does not write the catch-up every round: it plans it in
memory, in the read snapshot it sends from (``plan_ahead``, extended round
after round), sends the change sets as the plan annotated them, and writes
the plan now and then (``flush_ahead``; when, see ``engine/repl_nats.py``),
so a writer at full speed seldom meets it at LMDB's write lock.  Any other
writer of records catches up first, which moves the stored mark and makes
the plan start again from the stored records; the merge being
deterministic, the versions already sent are the ones the binlog then holds.

Tombstones
----------
Dead records are kept for ``horizon_ms`` (default 7 days) and then removed by
``gc_tombstones``; the largest HLC collected is kept as ``gc_floor``.  An
insert or update older than the floor for a row without a record could be a
write that a collected delete should have beaten, so it is refused (and
recorded as a ``stale`` conflict).  A node partitioned for longer than the
horizon must therefore be re-bootstrapped from a peer snapshot.
"""
from __future__ import annotations

import struct
import threading
import time
import weakref
from typing import Any, Callable, Iterable

from terndb._cext import _core as C

from .catalog import TEMP, Schema, Table
from .errors import NoSuchObjectError, OperationalError, ProgrammingError

VERSIONS_DB = b"_repl_versions"
STATE_DB = b"_repl_state"
K_VERSIONS_SEQ = b"versions_seq"
K_GC_FLOOR = b"gc_floor"
K_CONFIG = b"config"

#: Name of the queryable conflict table every replicating database gets.
CONFLICT_TABLE = "terndb_conflicts"
#: Name of the queryable table of refused incoming messages (``engine/repl_guard.py``).
DEAD_LETTER_TABLE = "terndb_dead_letters"
#: Tables every replicating node keeps for itself: never published, never applied.
LOCAL_TABLES = frozenset({CONFLICT_TABLE, DEAD_LETTER_TABLE})
#: Default tombstone horizon: 7 days.
DEFAULT_HORIZON_MS = 7 * 24 * 3600 * 1000

NO_NODE = b"\x00" * 16
BOTTOM = (0, 0, NO_NODE)
OP_INSERT = C.CHANGE_OP_INSERT
OP_UPDATE = C.CHANGE_OP_UPDATE
OP_DELETE = C.CHANGE_OP_DELETE
OP_DDL = C.CHANGE_OP_DDL

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_FLAG_DEAD = 1
_FLAG_PREVS = 2
_FORMATS: dict[tuple[int, bool], struct.Struct] = {}


_ABSENT = object()       # a dict.get default no stored value can be


def _u64(raw: bytes | None) -> int:
    """A stored unsigned 64-bit counter (absent: 0)."""
    return _U64.unpack(raw)[0] if raw else 0


def _fmt(ncols: int, prevs: bool = True) -> struct.Struct:
    s = _FORMATS.get((ncols, prevs))
    if s is None:
        s = _FORMATS[ncols, prevs] = struct.Struct(
            ">BQ16sHQ" + "BQ16s" * ncols + "Q" * ncols if prevs else ">BQ16sH" + "BQ16s" * ncols)
    return s


def record_key(table_id: int, pk_key: bytes) -> bytes:
    return _U32.pack(table_id) + pk_key


def concurrent(loser_hlc: int, loser_node: bytes, winner_node: bytes, winner_prev: int) -> bool:
    """Whether the winning write's writer had NOT seen the losing one (see the module docstring)."""
    return loser_node != winner_node and loser_hlc > winner_prev


class Record:
    """A decoded version record (mutable while merging)."""

    __slots__ = ("dead", "ex_hlc", "ex_node", "vers", "values", "ex_prev", "prevs")

    def __init__(self, dead: bool, ex_hlc: int, ex_node: bytes, vers: list, values: list,
                 ex_prev: int = 0, prevs: list | None = None) -> None:
        self.dead = dead
        self.ex_hlc = ex_hlc
        self.ex_node = ex_node
        #: per column (rank, hlc, node)
        self.vers = vers
        self.values = values
        #: previous version seen by the write that set the existence register / each column
        self.ex_prev = ex_prev
        self.prevs = prevs if prevs is not None else [0] * len(vers)

    def encode(self) -> bytes:
        vers = self.vers
        flat: list = [(_FLAG_DEAD if self.dead else 0) | _FLAG_PREVS, self.ex_hlc, self.ex_node,
                      len(vers), self.ex_prev]
        for v in vers:
            flat += v
        flat += self.prevs
        return _fmt(len(vers)).pack(*flat) + C.encode_row(tuple(self.values))

    @classmethod
    def decode(cls, data: bytes, ncols: int) -> "Record":
        flags = data[0]
        n = (data[25] << 8) | data[26]          # the column count of the head
        f = _fmt(n, bool(flags & _FLAG_PREVS))
        flat = f.unpack_from(data)
        if flags & _FLAG_PREVS:
            end = 5 + 3 * n
            it = iter(flat[5:end])
            prevs = list(flat[end:])
            ex_prev = flat[4]
        else:
            it = iter(flat[4:])
            prevs = [0] * n
            ex_prev = 0
        vers = list(zip(it, it, it))
        values = list(C.decode_row(data[f.size:], n, None))
        if n < ncols:          # the table gained columns: the new ones are unversioned
            vers.extend([BOTTOM] * (ncols - n))
            prevs.extend([0] * (ncols - n))
            values.extend([None] * (ncols - n))
        return cls(bool(flags & _FLAG_DEAD), flat[1], flat[2], vers, values, ex_prev, prevs)

    @classmethod
    def from_entry(cls, op: int, hlc: int, node: bytes, values: tuple | None, changed: int | None,
                   ncols: int, prev: int = 0) -> "Record":
        """The record a single change amounts to (see the module docstring)."""
        if op == OP_DELETE:
            return cls(True, hlc, node, [BOTTOM] * ncols, [None] * ncols, prev, [0] * ncols)
        strong = (1, hlc, node)
        assert values is not None
        if op == OP_INSERT or changed is None:
            vers = [strong] * ncols
        else:
            weak = (0, hlc, node)
            vers = [strong if (changed >> i) & 1 else weak for i in range(ncols)]
        vals = list(values) if len(values) == ncols else list(values[:ncols]) + [None] * (ncols - len(values))
        return cls(False, hlc, node, vers, vals, prev, [prev] * ncols)

    def row(self) -> tuple:
        return tuple(self.values)

    def seen_hlc(self) -> int:
        """The newest HLC among the registers: the version a local writer of this row saw."""
        top = self.ex_hlc
        for v in self.vers:
            if v[1] > top:
                top = v[1]
        return top


class MergeResult:
    """What ``merge`` changed, and which concurrent writes lost (for the conflict table).

    ``lost_columns``: columns where the incoming write lost to a concurrent
    stored one.  ``beaten``: ``(column, old version, old prev, old value)`` of
    stored writes that lost to a concurrent incoming one.  ``lost_existence``
    / ``beaten_existence`` (the stored ``(dead, hlc, node)`` before the merge)
    are the same for the live/dead register.
    """

    __slots__ = ("changed", "lost_columns", "beaten", "lost_existence", "beaten_existence")

    def __init__(self) -> None:
        self.changed = False
        self.lost_columns: list[int] = []
        self.beaten: list[tuple] = []
        self.lost_existence = False
        self.beaten_existence: tuple | None = None

    @property
    def conflicted(self) -> bool:
        return bool(self.lost_columns or self.beaten or self.lost_existence or self.beaten_existence)


def merge(stored: Record, incoming: Record, touch_columns: bool) -> MergeResult:
    """Merge ``incoming`` into ``stored`` in place (per-register maximum).

    ``touch_columns`` is False for deletes (they write no column).  Equal
    versions let the incoming side win: they only occur within one change set,
    whose later entries must win.  Conflicts are noted only between
    concurrent writes (``concurrent``) of different values.
    """
    res = MergeResult()
    inc_ex = (incoming.ex_hlc, incoming.ex_node)
    cur_ex = (stored.ex_hlc, stored.ex_node)
    if inc_ex >= cur_ex:
        if inc_ex != cur_ex or stored.dead != incoming.dead:
            res.changed = True
            if stored.dead != incoming.dead and stored.ex_hlc and concurrent(
                    stored.ex_hlc, stored.ex_node, incoming.ex_node, incoming.ex_prev):
                res.beaten_existence = (stored.dead, stored.ex_hlc, stored.ex_node)
        stored.ex_hlc, stored.ex_node, stored.dead = incoming.ex_hlc, incoming.ex_node, incoming.dead
        stored.ex_prev = incoming.ex_prev
    elif incoming.dead != stored.dead and concurrent(
            incoming.ex_hlc, incoming.ex_node, stored.ex_node, stored.ex_prev):
        res.lost_existence = True
    if touch_columns:
        svers, ivers = stored.vers, incoming.vers
        svals, ivals = stored.values, incoming.values
        sprevs, iprevs = stored.prevs, incoming.prevs
        for i in range(len(ivers)):
            iv = ivers[i]
            sv = svers[i]
            a = svals[i]
            b = ivals[i]
            differ = a != b or type(a) is not type(b)
            if iv >= sv:
                if differ or iv != sv:
                    res.changed = True
                    if differ and sv[0] == 1 and iv[0] == 1 and concurrent(sv[1], sv[2], iv[2], iprevs[i]):
                        res.beaten.append((i, sv, sprevs[i], a))
                svers[i] = iv
                svals[i] = b
                sprevs[i] = iprevs[i]
            elif differ and iv[0] == 1 and concurrent(iv[1], iv[2], sv[2], sprevs[i]):
                res.lost_columns.append(i)
    return res


def replicable(table: Table) -> bool:
    """Tables need a declared PRIMARY KEY: rowids are allocated per node; temp tables are private."""
    return bool(table.pk) and table.name.lower() not in LOCAL_TABLES and table.schema_name != TEMP


class TableSet:
    """A set of table names, or every replicable table (``"*"``)."""

    def __init__(self, names: Iterable[str] | str | None) -> None:
        if names is None:
            names = ()
        if isinstance(names, str):
            names = [names]
        low = {n.strip().lower() for n in names if n and n.strip()}
        self.all = "*" in low
        self.names = frozenset(low - {"*"})

    def __contains__(self, name: str) -> bool:
        low = name.lower()
        if low in LOCAL_TABLES:
            return False
        return self.all or low in self.names

    def __bool__(self) -> bool:
        return self.all or bool(self.names)

    def to_list(self) -> list[str]:
        return ["*"] if self.all else sorted(self.names)

    def __repr__(self) -> str:
        return f"TableSet({self.to_list()})"


class VersionStore:
    """The version records and replication state of one database.

    Every method takes the caller's storage ``WriteTxn`` (or a raw read
    transaction for reads) so records commit with the rows they describe.
    """

    def __init__(self, db: Any, tracked: TableSet, horizon_ms: int = DEFAULT_HORIZON_MS) -> None:
        self.db = db
        self.store = db.store
        self.node_id: bytes = db.node_id
        self.tracked = tracked
        self.horizon_ms = horizon_ms
        self._schema: Schema | None = None
        self._installed = False
        #: the catch-up planned but not written yet (``plan_ahead``), shared by this store's senders
        self._ahead: _CatchUpPlan | None = None
        self._ahead_lock = threading.Lock()
        self._widths_cache: tuple[Schema, dict[int, int]] | None = None

    # -- handles and small state ---------------------------------------------------------

    def handles(self, wtxn: Any) -> tuple[Any, Any]:
        """(versions db, state db), created on first use inside ``wtxn``."""
        return (self.store.db(VERSIONS_DB, txn=wtxn, create=True),
                self.store.db(STATE_DB, txn=wtxn, create=True))

    def state_get(self, txn: Any, key: bytes) -> bytes | None:
        try:
            h = self.store.db(STATE_DB)
        except Exception:
            return None
        return txn.get(key, db=h)

    def schema(self, txn: Any, wtxn: Any = None) -> Schema:
        version = self.db.catalog.version(txn)
        s = self._schema
        if s is None or s.version != version:
            s = self._schema = self.db.catalog.load(txn, wtxn)
        return s

    # -- local writes ------------------------------------------------------------------------

    def install(self) -> None:
        """Make this store the keeper of its database's records for senders in this process.

        Records are brought current lazily, not in every commit (a commit hook
        halved single-row commit throughput): ``read_outgoing`` and every other
        sender call ``bring_current`` first, the applier catches up inside its
        own transaction, so no record is compared or sent behind the binlog.
        """
        if not self._installed:
            _KEEPERS.setdefault(self.db, []).append(self)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            keepers = _KEEPERS.get(self.db, [])
            if self in keepers:
                keepers.remove(self)
            if not keepers:
                _KEEPERS.pop(self.db, None)
            self._installed = False

    def catch_up(self, wtxn: Any) -> int:
        """Merge local change sets committed since the last call into the records.

        Returns how many change sets were read.  Change sets from other origins
        (relayed into the binlog by the applier) already have their records.

        This is also where a local change set gets its causal versions: each
        row entry's ``prev_hlc`` is the newest HLC of the row's record just
        before the entry (what the writer saw, since records follow the binlog
        in order), and the stored change set is rewritten with them before
        anything can send it (senders call ``bring_current`` first).
        """
        txn = wtxn.txn
        vdb, sdb = self.handles(wtxn)
        raw = txn.get(K_VERSIONS_SEQ, db=sdb)
        since = _u64(raw)
        last = self.db.binlog.last_sequence(txn)
        if last <= since:
            return 0
        merged = self._merge_range(txn, since, self.schema(txn, wtxn), lambda k: txn.get(k, db=vdb),
                                   lambda k, v: txn.put(k, v, db=vdb), wtxn)
        assert merged is not None           # only planning stops early
        count, rewrites, _ = merged
        # Rewritten after the scan: writing under an open cursor of the same database is avoided.
        for seq, data in rewrites.items():
            self.db.binlog.rewrite(txn, seq, data)
        txn.put(K_VERSIONS_SEQ, _U64.pack(last), db=sdb)
        return count

    def _merge_range(self, txn: Any, since: int, schema: Schema, get: Callable[[bytes], Any],
                     put: Callable[[bytes, bytes], Any], wtxn: Any = None,
                     items: list | None = None) -> tuple[int, dict[int, bytes], int] | None:
        """Merge the local change sets after ``since`` into records read by ``get``, written by ``put``.

        Returns (change sets read, binlog rewrites to make, last sequence read).
        Without ``wtxn`` (planning, see ``ensure_current``) a local DDL entry
        stops it (None): forgetting a dropped table's records needs the write
        transaction.  ``items``: the change sets after ``since`` already read, instead of the binlog.
        """
        count = 0
        last = since
        rewrites: dict[int, bytes] = {}
        tracked: dict[int, Table | None] = {}      # table id -> its table if it has records, per schema
        widths = self._widths(schema)
        slow = self._merge_local_py(get, put)
        for seq, cs in self.db.binlog.read(txn, since, allow_gap=True) if items is None else items:
            count += 1
            last = seq
            if cs.origin != self.node_id:
                continue
            # The compiled loop (cext/repl.pxi) merges a change set without DDL; one with DDL takes
            # the Python loop below, which can change the schema between its entries.
            fast = C.repl_merge_local_changeset(cs.data, cs.hlc, self.node_id, widths, get, put, slow)
            if fast is not False:
                if fast is not None:
                    rewrites[seq] = fast
                continue
            entries = cs.entries
            prevs: list[int] = [e.prev_hlc for e in entries]
            annotated = False
            for i, e in enumerate(entries):
                if e.op == OP_DDL:
                    if wtxn is None:
                        return None
                    schema = self._local_ddl(wtxn, e.row, schema)
                    tracked = {}
                    widths = self._widths(schema)
                    continue
                table = tracked.get(e.table_id, False)
                if table is False:          # first entry of this table: look it up once
                    table = self._tracked_table(schema, e.table_id)
                    tracked[e.table_id] = table
                if table is None:
                    continue
                prev = self._merge_local(get, put, record_key(table.object_id, e.pk_key), e, cs.hlc,
                                         len(table.columns))
                if prev != prevs[i]:
                    prevs[i] = prev
                    annotated = True
            if annotated:
                rewrites[seq] = _with_prevs(cs, prevs)
        return count, rewrites, last

    def _tracked_table(self, schema: Schema, table_id: int) -> Table | None:
        """The table ``table_id`` names if its rows have version records here, else None."""
        table = schema.by_object_id.get(table_id)
        if isinstance(table, Table) and replicable(table) and table.name in self.tracked:
            return table
        return None

    def _widths(self, schema: Schema) -> dict[int, int]:
        """Table id -> column count of every table with records (what the compiled merge needs);
        computed once per schema version."""
        cached = self._widths_cache
        if cached is not None and cached[0] is schema:
            return cached[1]
        widths = {tid: len(t.columns) for tid in schema.by_object_id
                  if (t := self._tracked_table(schema, tid)) is not None}
        self._widths_cache = (schema, widths)
        return widths

    def _base(self, txn: Any) -> tuple[int, int, int, int]:
        """What a planned catch-up depends on besides the records it read (see ``_CatchUpPlan``)."""
        return (_u64(self.state_get(txn, K_VERSIONS_SEQ)), self.db.binlog.first_sequence(txn),
                self.db.catalog.version(txn), _u64(self.state_get(txn, K_GC_FLOOR)))

    def plan_ahead(self, txn: Any, read: "tuple[int, list] | None" = None) -> "_CatchUpPlan | None":
        """Extend the pending catch-up to the end of the binlog in read snapshot ``txn``, unwritten.

        ``read``: ``(since, change sets after it)`` the caller already read in
        ``txn`` (``Binlog.read`` items); when the plan ends at ``since`` it is
        extended over them only (one binlog read for both), else the binlog is
        read to its end.

        The pending catch-up lives in memory across calls, so a publisher can
        send change sets with their causal versions (the plan's ``rewrites``,
        up to its ``upto``) without taking the write lock every round;
        ``flush_ahead`` writes it.  It is started again from the stored
        records whenever someone else caught up meanwhile (the applier, another
        sender): every writer of records catches up first, which moves the
        stored mark, and the merge is deterministic, so what was sent from the
        old plan is what the binlog now says.  None when it cannot be planned
        (no records database yet, a local DDL entry: those need the write
        transaction; ``flush_ahead`` does it).
        """
        with self._ahead_lock:
            base = self._base(txn)
            plan = self._ahead
            if plan is None or plan.base != base:
                plan = _CatchUpPlan(base[0], base)
            items = read[1] if read is not None and read[0] == plan.upto else None
            try:
                extended = self._extend_plan(txn, plan, items)
            except BaseException:
                # Half merged (entries folded in, ``upto`` not moved): extending it
                # again would merge them twice.  The next round starts afresh.
                self._ahead = None
                raise
            self._ahead = plan if extended else None
            return self._ahead

    def _extend_plan(self, txn: Any, plan: "_CatchUpPlan", items: list | None = None) -> bool:
        """Merge what the binlog holds after ``plan.upto`` into the plan; False if it cannot be planned.

        A False leaves the plan half-extended: it must be dropped (merging a
        local entry twice would give it its own version as previous one).
        """
        try:
            vdb = self.store.db(VERSIONS_DB)
        except Exception:       # noqa: BLE001 - created by the first write transaction
            return False

        # Called once per row entry by the compiled merge: local names, one lookup per dict.
        written, read, txn_get = plan.written, plan.read, txn.get

        def get(key: bytes) -> bytes | None:
            value = written.get(key, _ABSENT)
            if value is _ABSENT:
                value = read.get(key, _ABSENT)
                if value is _ABSENT:
                    old = txn_get(key, None, vdb)
                    value = read[key] = bytes(old) if old is not None else None
            return value
        merged = self._merge_range(txn, plan.upto, self.schema(txn), get, written.__setitem__, items=items)
        if merged is None:
            return False
        count, rewrites, plan.upto = merged
        plan.count += count
        plan.rewrites.update(rewrites)
        return True

    def _apply_plan(self, wtxn: Any, plan: "_CatchUpPlan") -> bool:
        """Write a planned catch-up if nothing it read changed since (False: it is stale)."""
        txn = wtxn.txn
        vdb, sdb = self.handles(wtxn)
        if self._base(txn) != plan.base:
            return False
        for key, old in plan.read.items():
            now = txn.get(key, db=vdb)
            if (bytes(now) if now is not None else None) != old:
                return False
        for key, value in plan.written.items():
            txn.put(key, value, db=vdb)
        for seq, data in plan.rewrites.items():
            self.db.binlog.rewrite(txn, seq, data)
        txn.put(K_VERSIONS_SEQ, _U64.pack(plan.upto), db=sdb)
        return True

    def _merge_local(self, get: Callable[[bytes], Any], put: Callable[[bytes, bytes], Any], key: bytes, e: Any,
                     hlc: int, n: int) -> int:
        """Merge one local entry into its row's record; returns the entry's previous version.

        The compiled merge (``cext/repl.pxi``) handles it unless the record is
        one it leaves to Python (see there); a local write never conflicts,
        its previous version being the record's newest HLC.
        """
        if e.op != OP_DELETE:
            # Its row has the columns the table had at commit time: a column added since (the
            # records are brought current lazily) stays unversioned, as it was when the row was written.
            n = min(n, C.row_column_count(e.row))
        old = get(key)
        merged = C.repl_merge_entry(old, e.op, hlc, self.node_id, e.row, e.changed, 0, n, True)
        if merged is not None:
            changed, _, _, rec_bytes, prev = merged
            if changed:
                put(key, rec_bytes)
            return prev
        return self._merge_local_py(get, put)(old, key, e.op, hlc, e.row, e.changed, n)

    def _merge_local_py(self, get: Callable[[bytes], Any],
                        put: Callable[[bytes, bytes], Any]) -> Callable[..., int]:
        """``merge(old, key, op, hlc, row, changed, n)``: the Python merge of one local entry into
        its record ``old`` (stored bytes or None), for what the compiled one leaves to it; puts the
        record and returns the entry's previous version."""
        def merge_py(old: bytes | None, key: bytes, op: int, hlc: int, row: bytes | None,
                     changed: int | None, n: int) -> int:
            rec = Record.decode(old, n) if old is not None else None
            prev = rec.seen_hlc() if rec is not None else 0
            values = C.decode_row(row, n, None) if op != OP_DELETE else None
            inc = Record.from_entry(op, hlc, self.node_id, values, changed, n, prev)
            if rec is None:
                put(key, inc.encode())
            elif merge(rec, inc, op != OP_DELETE).changed:
                put(key, rec.encode())
            return prev
        return merge_py

    def ensure_current(self, timeout: float = 30.0, also: Callable[[Any], None] | None = None) -> int:
        """Catch up in a write transaction of its own if local change sets are not merged yet.

        Senders call this before reading the binlog, so what they send carries
        its causal versions even when the writing process ran no commit hook
        (a replicator in its own process).  Costs one read transaction when
        current.  Returns how many change sets were read.  ``also(wtxn)``, when
        given, runs in that write transaction if there is one (a publisher
        stores its position there rather than in a write transaction of its own).
        """
        with self.store.begin_read() as rt:
            if _u64(self.state_get(rt.txn, K_VERSIONS_SEQ)) >= self.db.binlog.last_sequence(rt.txn):
                with self._ahead_lock:
                    self._ahead = None      # someone else caught up: a pending plan is stale
                return 0
            # The merge work happens here, outside the write lock, which is then held only to check
            # and store the result: an application committing meanwhile (in this process or
            # another) does not wait for the merge.
            self.plan_ahead(rt.txn)
        return self.flush_ahead(timeout, also)

    def ahead_size(self) -> int:
        """Records and change sets the pending (unwritten) catch-up holds; 0 when none."""
        plan = self._ahead
        return 0 if plan is None else plan.size()

    def flush_ahead(self, timeout: float = 30.0, also: Callable[[Any], None] | None = None) -> int:
        """Write the pending catch-up (``plan_ahead``) and whatever committed after it, in one write
        transaction that also runs ``also(wtxn)``; returns how many change sets were merged."""
        with self._ahead_lock:
            plan, self._ahead = self._ahead, None

        def work(wtxn: Any) -> int:
            count = plan.count if plan is not None and self._apply_plan(wtxn, plan) else 0
            count += self.catch_up(wtxn)        # what committed after the plan (or all, if it was stale)
            if also is not None:
                also(wtxn)
            return count
        return self.store.write(work, timeout=timeout)

    def _local_ddl(self, wtxn: Any, payload: bytes, schema: Schema) -> Schema:
        """A local DROP TABLE: forget the dropped table's records."""
        import json
        try:
            info = json.loads(payload)
        except ValueError:
            return schema
        if info.get("op") == "drop" and info.get("kind") == "table":
            t = schema.tables.get(str(info.get("name", "")).lower())
            if t is not None:
                self.drop_table_records(wtxn, t.object_id)
        return self.schema(wtxn.txn, wtxn)

    def drop_table_records(self, wtxn: Any, table_id: int) -> int:
        vdb, _ = self.handles(wtxn)
        prefix = _U32.pack(table_id)
        n = 0
        with wtxn.txn.cursor(db=vdb) as cur:
            if not cur.set_range(prefix):
                return 0
            while cur.key()[:4] == prefix:
                if not cur.delete():
                    break
                n += 1
        return n

    # -- tombstones ----------------------------------------------------------------------

    def gc_floor(self, txn: Any) -> int:
        raw = self.state_get(txn, K_GC_FLOOR)
        return _u64(raw)

    def gc_tombstones(self, wtxn: Any, now_ms: int | None = None) -> int:
        """Remove dead records older than the horizon; returns how many went.

        The floor becomes the cutoff HLC, so an insert or update older than
        it, for a row without a record, is refused from then on.
        """
        # Every writer of records catches up first (see plan_ahead): a change set
        # a publisher already sent with a tombstone as its previous version must
        # find that version merged before the tombstone may go.
        self.catch_up(wtxn)
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        cutoff = max(0, now_ms - self.horizon_ms) << 16
        vdb, sdb = self.handles(wtxn)
        txn = wtxn.txn
        removed = 0
        with txn.cursor(db=vdb) as cur:
            ok = cur.first()
            while ok:
                val = cur.value()
                if val[0] & _FLAG_DEAD and _U64.unpack_from(val, 1)[0] < cutoff:
                    # delete() moves to the next record; past the last one the key is empty.
                    ok = cur.delete() and bool(cur.key())
                    removed += 1
                else:
                    ok = cur.next()
        old = txn.get(K_GC_FLOOR, db=sdb)
        if old is None or _U64.unpack(old)[0] < cutoff:
            txn.put(K_GC_FLOOR, _U64.pack(cutoff), db=sdb)
        return removed

    # -- inspection ------------------------------------------------------------------------

    def get(self, txn: Any, table: Table, pk_values: tuple) -> Record | None:
        """The record of one row (``pk_values`` in PRIMARY KEY order), or None."""
        try:
            vdb = self.store.db(VERSIONS_DB)
        except Exception:
            return None
        raw = txn.get(record_key(table.object_id, C.encode_key(tuple(pk_values))), db=vdb)
        return None if raw is None else Record.decode(raw, len(table.columns))


#: Installed version stores per database (``VersionStore.install``), which ``bring_current`` uses.
_KEEPERS: "weakref.WeakKeyDictionary[Any, list[VersionStore]]" = weakref.WeakKeyDictionary()


class _CatchUpPlan:
    """A catch-up merged in read snapshots, to be written if what it read is still current.

    It covers the binlog from ``since`` (the stored mark it started from) to
    ``upto``; ``VersionStore.plan_ahead`` extends it snapshot after snapshot
    while the stored state stays the one it started from (``base``).
    """

    __slots__ = ("since", "base", "read", "written", "rewrites", "count", "upto")

    def __init__(self, since: int, base: tuple[int, int, int, int]) -> None:
        self.since = since
        #: (versions mark, first binlog sequence, schema version, gc floor) it was planned on
        self.base = base
        self.read: dict[bytes, bytes | None] = {}      # record key -> value the merge started from
        self.written: dict[bytes, bytes] = {}          # record key -> merged value
        #: binlog sequence -> the change set with its causal versions (when they changed it)
        self.rewrites: dict[int, bytes] = {}
        self.count = 0
        self.upto = since

    def size(self) -> int:
        """Records and change sets it holds in memory."""
        return len(self.read) + len(self.written) + len(self.rewrites)


def bring_current(db: Any, timeout: float = 30.0, also: Callable[[Any], None] | None = None) -> bool:
    """Merge ``db``'s local change sets into its records before its binlog is read for sending.

    The stores installed in this process do it; without one, a database a
    replicator configured (in another process: ``terndb replicate``) is
    brought current with the tables of its stored configuration.  A database
    never configured for replication has no records to keep.  ``also`` as for
    ``VersionStore.ensure_current`` (run at most once, and only if a write
    transaction was needed).  True when records are kept (and now current up
    to the stored mark, ``versions_mark``), False when there are none.
    """
    keepers = _KEEPERS.get(db)
    if keepers:
        for vs in list(keepers):
            vs.ensure_current(timeout, also)
            also = None
        return True
    with db.store.begin_read() as rt:
        try:
            raw = rt.txn.get(K_CONFIG, db=db.store.db(STATE_DB))
        except NoSuchObjectError:       # no state database: never configured
            return False
    if raw:
        import json
        config = json.loads(raw)
        tracked = TableSet(list(config.get("publish", [])) + list(config.get("subscribe", [])))
        if tracked:
            VersionStore(db, tracked).ensure_current(timeout, also)
            return True
    return False


def versions_mark(db: Any, txn: Any) -> int:
    """The binlog position up to which local change sets carry their causal versions (read in ``txn``)."""
    try:
        return _u64(txn.get(K_VERSIONS_SEQ, db=db.store.db(STATE_DB)))
    except NoSuchObjectError:
        return 0


def _with_prevs(cs: Any, prevs: list[int]) -> bytes:
    """The change set ``cs`` re-encoded with these previous versions, same header."""
    from .repl_feed import reencode     # repl_feed imports this module: import late
    header = {"hlc": cs.hlc, "origin": cs.origin, "sequence": cs.origin_sequence,
              "schema_version": cs.schema_version}
    return reencode(header, cs.entries, prevs=prevs)


def check_replicable(schema: Schema, names: TableSet) -> None:
    """Refuse named tables without a PRIMARY KEY (``*`` silently skips them)."""
    for name in names.names:
        t = schema.tables.get(name)
        if t is not None and not t.pk:
            raise ProgrammingError(
                f"table {t.name} has no PRIMARY KEY: rowids are allocated per node, so it cannot be replicated")


def wall_ms_of(hlc: int) -> int:
    return hlc >> 16


__all__ = [
    "VersionStore", "bring_current", "versions_mark", "Record", "MergeResult", "merge", "concurrent", "TableSet", "replicable", "record_key",
    "check_replicable", "CONFLICT_TABLE", "DEAD_LETTER_TABLE", "LOCAL_TABLES", "DEFAULT_HORIZON_MS",
    "VERSIONS_DB", "STATE_DB", "BOTTOM",
    "NO_NODE", "OperationalError",
]
