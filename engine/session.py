"""A session: one connection's transaction state, plan cache and statement execution.

Transactions follow Python's sqlite3 module (legacy mode): with an
``isolation_level`` (the default ``""``), a DML statement implicitly begins a
transaction that lasts until ``commit()``/``rollback()``; with
``isolation_level=None`` every statement commits on its own unless the SQL
says BEGIN.  Explicit BEGIN/COMMIT/ROLLBACK and SAVEPOINT/RELEASE/ROLLBACK TO
work in both modes.

Every statement inside a transaction runs in a nested LMDB transaction, so a
failing statement leaves no partial writes while earlier statements of the
transaction stay (SQLite's statement atomicity); SAVEPOINTs are nested
transactions too.  The exception is an UPDATE that turns out to touch at
most one row (not in REPLACE mode): its writer checks every constraint
before writing, so it runs without one (see ``C.modify_many``), which
saves the nested transaction's page copies on the commonest statement of
write loops.  At commit the change set collected by the writers is
appended to the binlog in the same LMDB transaction.  The commit leaves a
``_CommitStamp`` with the storage (binlog tail, schema version, node id):
the next write transaction that begins on the snapshot it made (nothing
committed in between, by any process) takes them from there instead of
reading them again, and the schema read before the commit stays valid for
that snapshot.

Plans are cached per session by SQL text; a cached plan is reused as long
as the schema it was planned against is the session's current schema.  An
eligible INSERT/UPDATE/DELETE plan also carries a ``C.PreparedWrite``:
executed again while a write transaction is open, it runs through
``C.run_prepared_write`` (cext/stmt.pxi) with one call into C that does what
``_run_write`` does, and falls back to this module (-1) whenever it cannot; a
cached SELECT outside a write transaction opens through
``C.open_prepared_query`` the same way.

Each session owns its temporary objects (engine/temp_objects.py): it sees the
catalog through ``Schema.for_owner(temp_owner)``, drops its temp objects on
close, removes those of dead owners when it opens, and cuts temp-table changes
from the change set it commits.
"""
from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from typing import Any, Iterable, NamedTuple

import lmdb
from sqlglot import exp

from terndb._cext import _core as C

from .catalog import TEMP, Schema
from .database import Database
from .alter import AlterExecutor
from .ddl import DDLExecutor, Reindex, created_space, parse_reindex
from .dml_planner import InsertPlan, ModifyPlan, build_writer, plan_delete, plan_insert, plan_update, run_insert, run_modify
from .errors import Error, NotSupportedError, OperationalError, ProgrammingError
from .params import ParamSpec, bind_plain, rewrite_placeholders
from .select_planner import PlannedQuery, SelectPlanner
from .storage import is_map_full
from . import temp_objects
from .sqlparse import TxnControl, parse_one, parse_txn_control, qualifier_of, syntax_error_at_start
from .triggers import TriggerDef, is_create_trigger, parse_create_trigger

PLAN_CACHE_SIZE = 256
# Declared types SQLite gives CREATE TABLE ... AS SELECT columns, by expression affinity.
CTAS_TYPES = {C.AFF_INTEGER: "INT", C.AFF_TEXT: "TEXT", C.AFF_REAL: "REAL", C.AFF_NUMERIC: "NUM"}


def quote_identifier(name: str) -> str:
    """A name as SQLite writes it in generated DDL: bare when it is a plain word."""
    if name.replace("_", "a").isalnum() and not name[:1].isdigit():
        return name
    return '"' + name.replace('"', '""') + '"'


_UPDATE_OR = re.compile(r"^(\s*UPDATE)\s+OR\s+(ROLLBACK|ABORT|REPLACE|FAIL|IGNORE)\b", re.I)
_REPLACE_INTO = re.compile(r"^(\s*)REPLACE(\s+INTO\b)", re.I)
_ALTER_BARE = re.compile(r"^(\s*ALTER\s+TABLE\s+\S+\s+(?:ADD|DROP))(?!\s+COLUMN\b)(?=\s)", re.I)
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+QUERY\s+PLAN\s+", re.I)


class Plan:
    """A cached, ready-to-run statement."""

    __slots__ = ("kind", "sql", "params", "schema", "query", "insert", "modify", "node", "mode", "txn",
                 "in_use", "explain", "prepared")

    def __init__(self, kind: str, sql: str, params: ParamSpec, schema: Schema | None) -> None:
        self.kind = kind          # query / insert / modify / ddl / txn / explain
        self.sql = sql
        self.params = params
        self.schema = schema
        self.query: PlannedQuery | None = None
        self.insert: InsertPlan | None = None
        self.modify: ModifyPlan | None = None
        self.node: Any = None
        self.mode: str | None = None
        self.txn: TxnControl | None = None
        self.in_use = False
        self.explain: list[str] | None = None
        # The compiled re-execution of an eligible INSERT/UPDATE/DELETE (see _prepare).
        self.prepared: Any = None

    @property
    def writes(self) -> bool:
        return self.kind in ("insert", "modify", "ddl")


class Result:
    """Rows (streamed from a read transaction or materialised) plus counts."""

    # Class-level defaults: a DML statement's result (``counts``) sets only its counts.
    names: list[str] | None = None
    decl_types: list | None = None
    _source: Any = None
    _rows: list | None = None
    _pos = 0
    _read_txn: Any = None
    rowcount = -1
    lastrowid: int | None = None
    _plan: Plan | None = None

    def __init__(self, names: list[str] | None = None, decl_types: list | None = None,
                 source: Any = None, rows: list | None = None, read_txn: Any = None,
                 rowcount: int = -1, lastrowid: int | None = None, plan: Plan | None = None) -> None:
        self.names = names
        self.decl_types = decl_types
        self._source = source
        self._rows = rows
        self._pos = 0
        self._read_txn = read_txn
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self._plan = plan

    @classmethod
    def streaming(cls, names: list[str], decl_types: list | None, source: Any, read_txn: Any,
                  plan: Plan) -> "Result":
        """A query's rows streamed from ``source`` in ``read_txn`` (written out: the
        result of every cached SELECT, see C.PreparedQuery)."""
        result = cls.__new__(cls)
        result.names = names
        result.decl_types = decl_types
        result._source = source
        result._read_txn = read_txn
        result._plan = plan
        return result

    @classmethod
    def counts(cls, rowcount: int, lastrowid: int | None) -> "Result":
        """A result with no rows, only counts (written out: one per DML statement)."""
        result = cls.__new__(cls)
        result.rowcount = rowcount
        result.lastrowid = lastrowid
        return result

    def fetch(self, n: int) -> list:
        """Up to ``n`` rows (all remaining if n < 0)."""
        if self._rows is not None:
            if n < 0:
                out = self._rows[self._pos:]
                self._pos = len(self._rows)
            else:
                out = self._rows[self._pos:self._pos + n]
                self._pos += len(out)
            if self._pos >= len(self._rows):
                self._release_plan()
            return out
        if self._source is None:
            return []
        try:
            out = self._source.fetch(n)
        except lmdb.Error as err:
            self.close()
            raise OperationalError(f"storage error while reading: {err}") from err
        except Error:
            self.close()
            raise
        if n < 0 or len(out) < n:
            self.close()
        return out

    @property
    def row_source(self) -> Any:
        """The compiled RowSource still to be read (None for materialised or finished results)."""
        return self._source

    def close(self) -> None:
        if self._source is not None:
            try:
                self._source.close()
            finally:
                self._source = None
        if self._read_txn is not None:
            txn, self._read_txn = self._read_txn, None
            try:
                txn.end()
            except (lmdb.Error, Error):
                pass
        self._release_plan()

    def _release_plan(self) -> None:
        if self._plan is not None:
            self._plan.in_use = False
            self._plan = None


class Session(C.SessionState):
    """One connection's view of a Database.

    The fields every statement touches (the open write transaction, its change
    collector and journal, the plan cache, the schemas, the three counters) are
    C fields of ``C.SessionState``, so a prepared write reads and sets them
    without dictionary lookups; Python code uses them as ordinary attributes."""

    def __init__(self, db: Database, *, isolation_level: str | None = "", busy_timeout: float = 5.0,
                 binder: Any = bind_plain) -> None:
        self.db = db
        self.binder = binder                 # (ParamSpec, params) -> tuple of SQL values
        self.store = db.store
        self.isolation_level = isolation_level
        self.busy_timeout = busy_timeout
        self.write: Any = None               # storage WriteTxn when a transaction is open
        self.explicit = False                # a transaction begun by BEGIN or implicitly by DML
        self.changes: Any = None             # ChangeCollector of the open write transaction
        self.savepoints: list[tuple[str, int, int]] = []
        self.schema: Schema | None = None
        self.own_ddl = False                 # this write txn changed the schema
        self.plans: OrderedDict[str, Plan] = OrderedDict()
        self.last_insert_rowid = 0
        self.changes_count = 0
        self.total_changes = 0
        # Statements of the open txn, for map-growth replay: flat (plan, params, many)
        # triples, so a long transaction of single statements keeps no container per
        # statement for the cyclic GC to traverse.
        self.journal: list[Any] = []
        self.thread = threading.get_ident()
        self.active_triggers: set[str] = set()   # triggers running now (no self-recursion)
        self._savepoint_began_txn = False        # the txn was opened by a SAVEPOINT statement
        self._write_schema: Schema | None = None  # schema checked in the open write txn
        # The committed schema (this session's view) of the read snapshot with LMDB id
        # _read_snapshot: the schema of a later read on the same snapshot.
        self._read_snapshot = -1
        self._read_schema: Schema | None = None
        self.closed = False
        self.ddl = DDLExecutor(self.store, db.catalog)
        self.temp_owner = temp_objects.new_owner_token(self)
        self.temp_table_ids: set[int] = set()     # object ids of temp tables this session created
        self.made_temp_objects = False            # close() must look for temp objects to drop
        self._drop_temp_objects(dead_owners_only=True)

    # -- transaction state -------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self.write is not None and self.explicit

    def _begin_write(self) -> None:
        self.write = self.store.begin_write(self.busy_timeout)
        self.changes = C.ChangeCollector()
        self.own_ddl = False
        self.journal = []

    def _finish_write(self) -> None:
        self.write = None
        self._write_schema = None
        self._savepoint_began_txn = False
        self.changes = None
        self.explicit = False
        self.savepoints = []
        self.journal = []
        if self.own_ddl:
            self.schema = None       # reload the committed (or restored) schema next time
            self.plans.clear()
        self.own_ddl = False

    def commit(self) -> None:
        if self.write is None:
            return
        write = self.write
        write.check_thread()
        try:
            if self.temp_table_ids and self.changes is not None:
                self.changes = temp_objects.without_temp_changes(self.changes, self.temp_table_ids)
            if self.changes is not None and self.changes.count:
                stamp = self._append_changes(write)
                self._keep_read_schema(write.commit(stamp), stamp)
            else:
                write.commit()
        except BaseException as err:
            if is_map_full(err) and self.write is write:
                self._grow_and_replay()
                return self.commit()
            self._abort_quietly()
            if isinstance(err, lmdb.Error):
                raise OperationalError(f"commit failed: {err}") from err
            raise
        finally:
            if self.write is write:
                self._finish_write()

    def _append_changes(self, write: Any) -> _CommitStamp:
        """Stores the transaction's change set in the binlog and runs the commit hooks;
        returns what the committed state will be known by (see ``_CommitStamp``)."""
        db = self.db
        known: _CommitStamp | None = write.own_stamp
        if known is not None and known.clock is not db.hlc:
            # Stamped by an earlier Database object of this path (closed and reopened while
            # the environment stayed open): its clock may have run ahead of this one, which
            # must advance past the stored tail by reading it.
            known = None
        if known is not None and not self.own_ddl:
            # Nothing was committed since this process's last commit, and this
            # transaction changed no schema: version and node id are as stamped then.
            schema_version, node_id = known.schema_version, known.node_id
        else:
            schema_version = db.catalog.version(write.txn)
            node_id = self.store.committed_node_id(write)
            if node_id != db.node_id:
                db.node_id = node_id        # set by another process since this one opened
        tail = known.binlog_tail if known is not None else None
        seq, hlc = db.binlog.append_after(write.txn, self.changes, db.hlc, node_id, schema_version, tail)
        # Hooks (replication's version bookkeeping) run inside the committing
        # transaction, so their state can never disagree with the data.
        for hook in db.commit_hooks:
            hook(self, write, seq)
        return _new_stamp((schema_version, node_id, (seq, hlc), db.hlc))

    def _keep_read_schema(self, snapshot: int, stamp: _CommitStamp) -> None:
        """After committing ``snapshot`` with the schema version the session last read,
        that schema still describes it: the next read of it skips the check."""
        if self._read_schema is not None and self._read_schema.version == stamp.schema_version:
            self._read_snapshot = snapshot

    def rollback(self) -> None:
        if self.write is None:
            return
        self.write.check_thread()
        try:
            self.write.abort()
        finally:
            self._finish_write()

    def _abort_quietly(self) -> None:
        if self.write is not None:
            try:
                self.write.abort()
            except Exception:
                pass
            self._finish_write()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.rollback()
            if self.made_temp_objects:
                self._drop_temp_objects(dead_owners_only=False)
        finally:
            temp_objects.forget_owner(self.temp_owner)
            self.plans.clear()
            self.closed = True

    def _drop_temp_objects(self, dead_owners_only: bool) -> None:
        """Drops this session's temp objects, or (on open) those whose owners are gone.

        Best effort: a read-only database cannot hold temp objects of ours, and
        leftovers that cannot be dropped now (lock busy) go at a later open.
        """
        if self.store.readonly:
            return
        read = self._begin_read()
        try:
            committed = self.db.committed_schema(read.txn)
        finally:
            read.end()
        owners = temp_objects.dead_owners(committed) if dead_owners_only else \
            ([self.temp_owner] if self.temp_owner in committed.temp_owners() else [])
        if not owners:
            return

        def work(wtxn: Any) -> None:
            schema = self.db.catalog.load(wtxn.txn, wtxn)     # as committed now, not as read above
            temp_objects.drop_owned(self.ddl, self.db.catalog, wtxn, schema, owners)
        try:
            self.store.write(work, timeout=self.busy_timeout)
        except (Error, lmdb.Error):
            if not dead_owners_only:
                raise
        self.schema = None

    # -- planning ----------------------------------------------------------------------

    def current_schema(self) -> Schema:
        """The schema this session sees now, its own uncommitted DDL included."""
        if self.write is not None:
            return self._schema_for(self.write.txn)
        read = self._begin_read()
        try:
            return self._schema_for(read.txn)
        finally:
            read.end()

    def _schema_for(self, txn: Any) -> Schema:
        if self.write is not None and txn is self.write.txn and self._write_schema is not None \
                and self.schema is self._write_schema:
            # Inside our write transaction only our own DDL can change the schema,
            # and DDL resets this; no need to read the version per statement.
            return self.schema
        schema = self._schema_for_uncached(txn)
        if self.write is not None and txn is self.write.txn:
            self._write_schema = schema
        return schema

    def _schema_for_uncached(self, txn: Any) -> Schema:
        if self.own_ddl:
            version = self.db.catalog.version(txn)
            if self.schema is None or self.schema.version != version:
                self.schema = self.db.catalog.load(txn, self.write).for_owner(self.temp_owner)
            return self.schema
        schema = self.db.committed_schema(txn).for_owner(self.temp_owner)
        if schema is not self.schema:
            self.schema = schema
        return schema

    def _get_plan(self, sql: str, schema: Schema | None) -> Plan:
        plan = self.plans.get(sql)
        if plan is not None and (plan.schema is schema or plan.kind == "txn") and not plan.in_use:
            self.plans.move_to_end(sql)
            return plan
        plan = self._make_plan(sql, schema)
        if plan.kind not in ("ddl",):
            plan.prepared = self._prepare(plan)
            self.plans[sql] = plan
            if len(self.plans) > PLAN_CACHE_SIZE:
                self.plans.popitem(last=False)
        return plan

    def _prepare(self, plan: Plan) -> Any:
        """The C.PreparedWrite that re-runs ``plan`` in one call (C.PreparedQuery for a
        SELECT), or None when the statement needs the Python path (triggers,
        RETURNING, joins, upserts...)."""
        if plan.kind == "modify" and self._compiled_modify(plan, many=False):
            return C.PreparedWrite(plan, plan.schema, self.binder, modify=plan.modify)
        if plan.kind == "insert" and plan.insert.returning is None and _single_values_insert(plan.insert):
            return C.PreparedWrite(plan, plan.schema, self.binder, insert=plan.insert,
                                   sets_last_rowid=_sets_last_rowid(plan.insert))
        if plan.kind == "query":
            return C.PreparedQuery(plan, plan.schema, self.binder, Result.streaming)
        return None

    def _make_plan(self, sql: str, schema: Schema | None) -> Plan:
        tc = parse_txn_control(sql)
        if tc is not None:
            plan = Plan("txn", sql, ParamSpec.EMPTY, None)
            plan.txn = tc
            return plan
        assert schema is not None
        text, mode = sql, None
        plan = Plan("query", sql, ParamSpec.EMPTY, schema)
        explain = _EXPLAIN.match(text)
        if explain:
            text = text[explain.end():]
        m = _UPDATE_OR.match(text)
        if m:
            mode = m.group(2).upper()
            text = m.group(1) + text[m.end():]
        m = _ALTER_BARE.match(text)
        if m:
            # SQLite allows "ADD x ..." / "DROP x" without the COLUMN keyword.
            text = m.group(1) + " COLUMN" + text[m.end(1):]
        m = _REPLACE_INTO.match(text)
        if m:
            text = m.group(1) + "INSERT OR REPLACE" + text[m.end(1) + len("REPLACE"):]
        first = text.lstrip().split(None, 1)[0].upper().rstrip(";") if text.strip() else ""
        if first == "VACUUM":
            raise NotSupportedError(f"{first} is not supported yet")
        if first == "REINDEX":
            plan.kind = "ddl"
            plan.node = parse_reindex(text)
            return plan
        if is_create_trigger(text):
            plan.kind = "ddl"
            plan.node = parse_create_trigger(text)
            return plan
        text, params = rewrite_placeholders(text)
        node = parse_one(text)
        plan.params = params
        plan.mode = mode
        if isinstance(node, (exp.Select, exp.Union, exp.Except, exp.Intersect, exp.Values, exp.Subquery)):
            planner = SelectPlanner(self.store, schema, params, text)
            plan.query = planner.plan(node)
            plan.explain = planner.explain
        elif isinstance(node, exp.Insert):
            plan.kind = "insert"
            plan.insert = plan_insert(self.store, schema, node, params, mode, text)
        elif isinstance(node, exp.Update):
            plan.kind = "modify"
            plan.modify = plan_update(self.store, schema, node, params, mode, text)
        elif isinstance(node, exp.Delete):
            plan.kind = "modify"
            plan.modify = plan_delete(self.store, schema, node, params, text)
        elif isinstance(node, (exp.Create, exp.Drop)):
            plan.kind = "ddl"
            plan.node = node
        elif isinstance(node, exp.Command):
            raise _unsupported_command(node, sql)
        elif isinstance(node, exp.Alter):
            plan.kind = "ddl"
            plan.node = node
        elif isinstance(node, (exp.Pragma, exp.Merge, exp.Use, exp.Set, exp.Describe, exp.Attach,
                               exp.Detach, exp.Analyze)):
            raise NotSupportedError(f"{node.key.upper()} statements are not supported yet")
        elif isinstance(node, exp.Delete) and not isinstance(node.this, exp.Table):
            raise syntax_error_at_start(text[len(text.split(None, 1)[0]):])
        else:
            # sqlglot accepts a bare expression ("selec") as a statement; SQLite does not.
            raise syntax_error_at_start(text)
        if explain:
            if plan.kind != "query":
                raise NotSupportedError("EXPLAIN QUERY PLAN is supported for SELECT statements")
            plan.kind = "explain"
        return plan

    # -- execution ---------------------------------------------------------------------

    def execute(self, sql: str, params: Any = None) -> Result:
        count = C.run_prepared_write(self, sql, params)
        if count >= 0:
            return Result.counts(count, self.last_insert_rowid)
        return C.open_prepared_query(self, sql, params) or self.execute_planned(sql, params)

    def execute_planned(self, sql: str, params: Any = None) -> Result:
        """``execute`` for a caller that has already tried ``C.run_prepared_write`` and
        ``C.open_prepared_query``."""
        if self.closed:
            self._check_usable()
        cached = self.plans.get(sql)
        if cached is not None and cached.kind == "txn":
            return self._txn_control(cached.txn)
        write = self.write
        if write is not None:
            schema = self._schema_for(write.txn)
            plan = self._reuse(cached, schema) or self._get_plan(sql, schema)
            if plan.kind == "query":
                return self._run_query(plan, params, None)
            if plan.kind == "modify" or plan.kind == "insert":
                # What _run does for a DML statement inside the open transaction.
                return self._run_write(plan, [params], False, statement_savepoint=True)
            return self._run(plan, [params], many=False)
        if cached is None:
            tc = parse_txn_control(sql)
            if tc is not None:
                return self._txn_control(tc)
        read = self._begin_read()
        try:
            # _schema_for() without a write transaction, written out (once per query);
            # the schema of a snapshot read before (same LMDB id: same content) is kept.
            if read.txn.id() == self._read_snapshot:
                schema = self._read_schema
            else:
                schema = self._snapshot_schema(read)
            self.schema = schema
            plan = self._reuse(cached, schema) or self._get_plan(sql, schema)
        except BaseException:
            read.end()
            raise
        if plan.kind == "query" or plan.kind == "explain":
            return self._run_query(plan, params, read)
        read.end()
        return self._run(plan, [params], many=False)

    def _snapshot_schema(self, read: Any) -> Schema:
        """The schema this session sees in the read snapshot ``read``, kept for later
        reads of the same snapshot (same LMDB id: same content)."""
        schema = self.db.committed_schema(read.txn).for_owner(self.temp_owner)
        self._read_snapshot, self._read_schema = read.txn.id(), schema
        return schema

    def _reuse(self, cached: Plan | None, schema: Schema) -> Plan | None:
        """``cached`` if it can run now (planned for ``schema``, not being read), else None."""
        if cached is None or cached.schema is not schema or cached.in_use:
            return None
        self.plans.move_to_end(cached.sql)
        return cached

    def executemany(self, sql: str, seq_of_params: Iterable[Any]) -> Result:
        self._check_usable()
        if self.write is None:
            read = self._begin_read()
            try:
                schema = self._schema_for(read.txn)
            finally:
                read.end()
        else:
            schema = self._schema_for(self.write.txn)
        plan = self._get_plan(sql, schema)
        if not plan.writes:
            raise ProgrammingError("executemany() can only execute DML statements.")
        return self._run(plan, seq_of_params, many=True)

    def _begin_read(self) -> Any:
        try:
            return self.store.begin_read()
        except lmdb.Error as err:
            raise OperationalError(f"could not start a read transaction: {err}") from err

    def _check_usable(self) -> None:
        if self.closed:
            raise ProgrammingError("Cannot operate on a closed database.")

    def _run_query(self, plan: Plan, params: Any, read_txn: Any) -> Result:
        q = plan.query
        assert q is not None
        try:
            bound = self.binder(plan.params, params)
        except BaseException:
            if read_txn is not None:
                read_txn.end()
            raise
        if read_txn is not None:
            ctx = C.ExecContext(bound, read_txn.txn, self, None)
        else:
            ctx = C.ExecContext(bound, self.write.txn, self, self.write)
        if plan.kind == "explain":
            if read_txn is not None:
                read_txn.end()
            rows = [(i, 0, 0, line) for i, line in enumerate(plan.explain or [])]
            return Result(["id", "parent", "notused", "detail"], [None] * 4, rows=rows, rowcount=-1)
        if plan.in_use:
            # Another open cursor is still reading this plan's operators: plan afresh.
            fresh = self._make_plan(plan.sql, plan.schema)
            q = fresh.query
            plan = fresh
        plan.in_use = True
        source = C.RowSource(q.root, ctx)
        if read_txn is None:
            # Inside a write transaction: materialise, because the nested
            # transaction of the next statement would invalidate open cursors.
            try:
                rows = source.fetch(-1)
            finally:
                plan.in_use = False
            return Result(q.names, q.decl_types, rows=rows, rowcount=-1)
        return Result(q.names, q.decl_types, source=source, read_txn=read_txn, rowcount=-1, plan=plan)

    def _run(self, plan: Plan, param_sets: Iterable[Any], many: bool) -> Result:
        if plan.kind == "txn":
            if many:
                raise ProgrammingError("executemany() can only execute DML statements.")
            return self._txn_control(plan.txn)
        if plan.kind in ("query", "explain"):
            return self._run_query(plan, next(iter(param_sets)), None)
        own_txn = self.write is None
        if own_txn:
            self._begin_write()
            if plan.kind != "ddl" and self.isolation_level is not None:
                self.explicit = True     # DB-API implicit transaction
        try:
            result = self._run_write(plan, param_sets, many, statement_savepoint=not own_txn)
        except BaseException:
            if own_txn and self.write is not None and not self.explicit:
                self._abort_quietly()
            elif own_txn and self.write is not None and self.explicit and not self.journal:
                # The implicit transaction began with this failing statement: nothing to keep.
                self._abort_quietly()
            raise
        if own_txn and not self.explicit:
            self.commit()
        return result

    def _run_write(self, plan: Plan, param_sets: Iterable[Any], many: bool, statement_savepoint: bool) -> Result:
        write = self.write
        guard = _StatementSavepoint(write)
        # A compiled UPDATE run once opens its savepoint only if it turns out to
        # need one (see C.modify_many); anything else opens it up front.
        lazy = statement_savepoint and not many and self._compiled_modify(plan, many)
        if statement_savepoint and not lazy:
            guard.open()
        mark = self.changes.savepoint()
        params_kept = param_sets if not many else list(param_sets)
        try:
            result = self._dispatch_write(plan, params_kept, many, guard.open if lazy else None)
        except BaseException as err:
            return self._statement_failed(err, write, guard.depth, lazy, mark, plan, params_kept, many,
                                          statement_savepoint)
        if guard.depth is not None:
            write.release(guard.depth)
        self.journal += (plan, params_kept if many else next(iter(params_kept)), many)
        return result

    def _statement_failed(self, err: BaseException, write: Any, depth: int | None, lazy: bool,
                          mark: tuple, plan: Plan, params_kept: Any, many: bool,
                          statement_savepoint: bool) -> Result:
        """Undo a failed statement's effects and raise its PEP 249 error; call it in the
        ``except`` block that caught ``err``.  ``depth`` is the statement's nested
        transaction (None if none was opened), ``lazy`` whether it was to be opened on
        demand, ``mark`` the change set's mark before the statement.  On a full map the
        transaction is grown and replayed, and the statement's rerun result returned.
        (Also the error path of C.PreparedWrite.)"""
        if is_map_full(err) and self.write is write:
            self._grow_and_replay()
            return self._run_write(plan, params_kept, many, statement_savepoint)
        if self.write is write:
            if depth is not None:
                write.rollback_to(depth, keep=False)
            elif lazy and not isinstance(err, Error):
                # Constraint and evaluation errors come before the first write; anything
                # else (a storage failure) may have left part of the row written, and
                # with no nested transaction only the whole transaction can be undone.
                self._abort_quietly()
                raise OperationalError(
                    f"storage error: {err}; the transaction was rolled back") from err
            self.changes.rollback_to(mark)
        if isinstance(err, lmdb.Error):
            raise OperationalError(f"storage error: {err}") from err
        raise err

    @staticmethod
    def _compiled_modify(plan: Plan, many: bool) -> bool:
        """UPDATE/DELETE that runs as one compiled loop (C.modify_many)."""
        mod = plan.modify
        return (mod is not None and mod.triggers is None and mod.joined_width is None
                and (mod.returning is None or many))

    def _dispatch_write(self, plan: Plan, param_sets: Any, many: bool, open_savepoint: Any = None) -> Result:
        if plan.kind == "ddl":
            params = next(iter(param_sets))
            if params:
                raise ProgrammingError("parameters are not allowed in schema statements")
            self._run_ddl(plan)         # changes() keeps the last DML's count, as in SQLite
            return Result(rowcount=-1)
        total = 0
        lastrowid = None
        ins = plan.insert
        returning = (ins.returning if ins is not None else plan.modify.returning)
        out: list | None = [] if returning is not None and not many else None
        if ins is not None and out is None and _single_values_insert(ins):
            # The common executemany shape: one compiled loop over all parameter sets.
            ctx = C.ExecContext((), self.write.txn, self, self.write)
            total = C.insert_many(ins.writer, ins.value_rows[0], param_sets, ctx, ins.mode,
                                  self.binder, plan.params)
            if total and _sets_last_rowid(ins):
                lastrowid = self.last_insert_rowid = ins.writer.last_rowid
            param_sets = ()
        if self._compiled_modify(plan, many):
            mod = plan.modify
            ctx = C.ExecContext((), self.write.txn, self, self.write)
            total = C.modify_many(mod.writer, mod.source, mod.assignments, param_sets, ctx, mod.mode,
                                  self.binder, plan.params, open_savepoint)
            param_sets = ()
        for params in param_sets:
            bound = self.binder(plan.params, params)
            ctx = C.ExecContext(bound, self.write.txn, self, self.write)
            if plan.kind == "insert":
                n = run_insert(plan.insert, ctx, out)
                if n and _sets_last_rowid(plan.insert):
                    lastrowid = plan.insert.writer.last_rowid
                    self.last_insert_rowid = lastrowid
            else:
                n = run_modify(plan.modify, ctx, out)
            total += n
        self.changes_count = total
        self.total_changes += total
        last = lastrowid if lastrowid is not None else self.last_insert_rowid
        if out is not None:
            return Result(returning.names, [None] * len(returning.names), rows=out, rowcount=total, lastrowid=last)
        return Result.counts(total, last)

    def _run_ddl(self, plan: Plan) -> None:
        node = plan.node
        txn = self.write          # DDL takes the storage WriteTxn (creates sub-databases)
        schema = self._schema_for(txn.txn)
        self.own_ddl = True
        sql = plan.sql.strip().rstrip(";").strip()
        if isinstance(node, exp.Create):
            kind = (node.args.get("kind") or "").upper()
            if kind == "TABLE" and node.args.get("expression") is not None:
                self._create_table_as(txn, schema, node, sql)
            elif kind == "TABLE":
                self.ddl.create_table(self, txn, schema, node, sql)
            elif kind == "INDEX":
                self.ddl.create_index(self, txn, schema, node, sql, self._build_index)
            elif kind == "VIEW":
                self.ddl.create_view(self, txn, schema, node, sql)
            elif kind == "SCHEMA":
                self.ddl.create_schema(self, txn, schema, node)
            else:
                raise NotSupportedError(f"CREATE {kind} is not supported yet")
        elif isinstance(node, exp.Alter):
            AlterExecutor(self.store, self.db.catalog).run(self, txn, schema, node)
        elif isinstance(node, TriggerDef):
            self.ddl.create_trigger(self, txn, schema, node)
        elif isinstance(node, Reindex):
            self.ddl.reindex(txn, schema, node, self._build_index)
        else:
            self.ddl.drop(self, txn, schema, node)
        self.schema = None
        self._write_schema = None
        self.plans.clear()
        self._schema_for(self.write.txn)

    def _create_table_as(self, txn: Any, schema: Schema, node: exp.Create, sql: str) -> None:
        """CREATE TABLE ... AS SELECT: columns named after the result, typed by affinity (as SQLite)."""
        target = node.this
        name = target.name
        qualifier = qualifier_of(target)
        space = created_space(schema, node, qualifier)
        if schema.name_taken(name, space) and node.args.get("exists"):
            return
        planned = SelectPlanner(self.store, schema, ParamSpec.EMPTY, sql).plan(node.expression)
        columns = []
        used: set[str] = set()
        for col_name, aff in zip(planned.names, planned.affinities):
            unique = col_name
            n = 0
            while unique.lower() in used:
                n += 1
                unique = f"{col_name}:{n}"
            used.add(unique.lower())
            decl = CTAS_TYPES.get(aff, "")
            columns.append(f"  {quote_identifier(unique)}{(' ' + decl) if decl else ''}")
        prefix = f"{quote_identifier(qualifier)}." if qualifier else ""
        temp = "TEMP " if space == TEMP and not qualifier else ""
        create_sql = f"CREATE {temp}TABLE {prefix}{quote_identifier(name)}(\n" + ",\n".join(columns) + "\n)"
        self.ddl.create_table(self, txn, schema, parse_one(create_sql), create_sql)
        new_schema = self.db.catalog.load(txn.txn, txn).for_owner(self.temp_owner)
        table = new_schema.lookup("tables", name, space)
        writer = build_writer(self.store, new_schema, table, ParamSpec.EMPTY)
        ctx = C.ExecContext((), txn.txn, self, txn)
        writer.begin(ctx)
        abort = C.CONFLICT_MODES["ABORT"]
        for row in C.run_operator(planned.root, ctx, -1):
            writer.insert(tuple(row), ctx, abort)

    def _build_index(self, table: Any, ix: Any) -> None:
        """Fills a new index from the table's rows (unique violations abort the CREATE)."""
        schema = self.db.catalog.load(self.write.txn, self.write)
        writer = build_writer(self.store, schema, schema.tables[table.key], ParamSpec.EMPTY)
        target = next(w for w in writer.index_writers() if w.name == ix.name)
        ctx = C.ExecContext((), self.write.txn, self, self.write)
        C.build_index(writer, target, ctx)

    def _grow_and_replay(self) -> None:
        """The map is full: abort, grow the map, and redo the transaction's statements."""
        journal = self.journal
        explicit, savepoints = self.explicit, list(self.savepoints)
        if savepoints:
            self._abort_quietly()
            raise OperationalError("database map is full inside a SAVEPOINT; the transaction was rolled back")
        self.write.abort()
        self.write = None
        self.store.grow()
        self._begin_write()
        self.explicit = explicit
        for i in range(0, len(journal), 3):
            plan, params, many = journal[i:i + 3]
            params = params if many else [params]
            self._run_write(plan, params, many, statement_savepoint=False)

    # -- transaction control -----------------------------------------------------------

    def _txn_control(self, tc: TxnControl) -> Result:
        kind = tc.kind
        if kind == "begin":
            if self.in_transaction:
                raise OperationalError("cannot start a transaction within a transaction")
            if self.write is None:
                self._begin_write()
            self.explicit = True
        elif kind == "commit":
            if not self.in_transaction:
                raise OperationalError("cannot commit - no transaction is active")
            self.commit()
        elif kind == "rollback":
            if not self.in_transaction:
                raise OperationalError("cannot rollback - no transaction is active")
            self.rollback()
        elif kind == "savepoint":
            if self.write is None:
                self._begin_write()
                self.explicit = True
                self._savepoint_began_txn = True
            elif not self.savepoints and not self._savepoint_began_txn:
                self._savepoint_began_txn = False
            depth = self.write.savepoint()
            self.savepoints.append((tc.name, depth, self.changes.savepoint()))
        elif kind in ("release", "rollback_to"):
            idx = next((i for i in range(len(self.savepoints) - 1, -1, -1) if self.savepoints[i][0] == tc.name), None)
            if idx is None:
                raise OperationalError(f"no such savepoint: {tc.name}")
            name, depth, mark = self.savepoints[idx]
            if kind == "release":
                self.write.release(depth)
                del self.savepoints[idx:]
                if not self.savepoints and self._savepoint_began_txn:
                    # SQLite: releasing the outermost savepoint that began the
                    # transaction commits it.
                    self.commit()
            else:
                self.write.rollback_to(depth, keep=True)
                self.changes.rollback_to(mark)
                del self.savepoints[idx + 1:]
                self.schema = None
                self._write_schema = None
                self.plans.clear()
        return Result(rowcount=-1)


class _CommitStamp(NamedTuple):
    """Facts about the state a session commit leaves, kept by the storage
    (``WriteTxn.commit(stamp)``) for the next write transaction of this process that
    begins on that very state: it need not read them back."""

    schema_version: int
    node_id: bytes
    binlog_tail: tuple[int, int]       # (sequence, commit HLC) of the stored change set
    clock: object                      # the HLC that issued the tail's clock (only it may skip reading it)


# _CommitStamp(...) runs a generated Python __new__; this builds the same tuple in C.
_new_stamp = functools.partial(tuple.__new__, _CommitStamp)


class _StatementSavepoint:
    """The nested transaction that makes one statement atomic, opened on demand."""

    __slots__ = ("write", "depth")

    def __init__(self, write: Any) -> None:
        self.write = write
        self.depth: int | None = None

    def open(self) -> Any:
        """Begins the nested transaction; returns the LMDB transaction writes now go to."""
        self.depth = self.write.savepoint()
        return self.write.txn


def _unsupported_command(node: exp.Command, sql: str) -> Error:
    word = str(node.this).split()[0].upper() if node.this else sql.split()[0].upper()
    if word in ("PRAGMA", "VACUUM", "ANALYZE", "ATTACH", "DETACH", "REINDEX", "ALTER"):
        return NotSupportedError(f"{word} is not supported yet")
    from .errors import SQLSyntaxError
    return SQLSyntaxError(f'near "{word}": syntax error')


def _single_values_insert(ins: InsertPlan) -> bool:
    """``INSERT ... VALUES (one row)`` with no upsert, triggers or explicit rowid: the
    shape C.insert_many runs as one compiled loop (which ignores RETURNING: the
    caller decides whether rows must be returned)."""
    return (ins.value_rows is not None and len(ins.value_rows) == 1 and ins.upsert is None
            and ins.triggers is None and not ins.explicit_rowid)


def _sets_last_rowid(ins: Any) -> bool:
    """Whether an INSERT moves last_insert_rowid(): not into a WITHOUT ROWID table
    (its hidden storage key is no rowid), as in SQLite."""
    return not getattr(ins.table, "without_rowid", False)
