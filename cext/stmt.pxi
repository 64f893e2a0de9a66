# Prepared statements: a cached INSERT/UPDATE/DELETE re-executed with one call into C,
# and a cached SELECT opened without the session's Python dispatch.
#
# A loop of single statements inside one transaction (``for k in keys:
# cur.execute("UPDATE t SET ... WHERE id = ?", ...)``) spent about half of
# each statement in Python above the compiled loop: session dispatch, the
# statement's savepoint guard, the change-set mark, the statement journal.
# ``run_prepared_write`` does all of that here, for a statement whose plan
# the session has already cached (engine/session.py builds a ``PreparedWrite``
# beside the Plan of every eligible INSERT/UPDATE/DELETE) and only while a
# write transaction is open.  Anything else -- the first statement of a
# transaction, a stale plan, a statement with triggers or RETURNING -- gets
# -1 back and goes the Python way, which stays the reference semantics.
#
# A cached SELECT outside a write transaction goes through ``open_prepared_query``:
# the snapshot's schema (read once per LMDB snapshot, as ``execute_planned`` does),
# the binding and the RowSource are done here, and the Result is the same streaming
# one the planned path returns.
#
# Validity is identity compares of Schema objects: inside a write transaction only this
# session's own DDL can change the schema (LMDB has one writer), and that
# DDL (or a ROLLBACK TO) replaces ``session._write_schema``; between
# transactions ``_finish_write`` clears it, so the first statement of the
# next transaction reloads the committed schema (another connection's or
# process's DDL included) through the Python path.
#
# The prepared objects keep no reference to their Plan or session (both are
# passed in per call): no reference cycle, so a dropped session is freed at
# once, as before, rather than at some later garbage collection.
#
# The statement's surroundings are C too: ``SessionState`` (the base of
# engine/session.py's Session) holds the fields a prepared write reads and sets
# (open transaction, change collector, journal, plan cache, schemas, counters),
# ``CursorState`` (the base of driver/cursor.py's Cursor) holds the cursor's
# fields and its ``execute``, whose cached-write case never enters Python, and
# ``ConnectionState`` (the base of driver/connection.py's Connection) the
# connection's fields that execute reads.


from cpython.dict cimport PyDict_GetItem
from cpython.pythread cimport PyThread_get_thread_ident

from terndb.engine.errors import ProgrammingError as _StmtProgrammingError


cdef class SessionState:
    """The fields of ``engine.session.Session`` that every statement reads or writes,
    as C fields (Session subclasses this; Python code uses them as before).

    A prepared write reads the open transaction, its change collector, journal,
    plan cache and schemas, and sets the three counters: as instance-dict attributes
    that was about ten dictionary lookups per statement; here each is a load.
    """
    cdef public object write            # storage WriteTxn while a write transaction is open
    cdef public object changes          # that transaction's ChangeCollector
    cdef public object journal          # flat (plan, params, many) triples, for map-growth replay
    cdef public object plans            # sql -> Plan (an OrderedDict)
    cdef public object schema
    cdef public object _write_schema    # the schema checked in the open write transaction
    cdef public long long last_insert_rowid
    cdef public long long changes_count
    cdef public long long total_changes


cdef class ConnectionState:
    """The fields of ``terndb.Connection`` (driver/connection.py subclasses this) that
    ``CursorState.execute`` reads per statement, as C fields.  ``_closed`` starts
    True, so a connection whose ``__init__`` failed reads as closed."""
    cdef public object _session
    cdef public bint _closed
    cdef public bint _check_thread
    cdef public unsigned long _thread     # threading.get_ident() of the creating thread

    def __cinit__(self, *args, **kwargs):
        self._closed = True


cdef class CursorState:
    """The fields and the ``execute`` of ``terndb.Cursor`` (driver/cursor.py subclasses
    this): a cached INSERT/UPDATE/DELETE inside the open transaction runs from here
    with no Python frame; anything else goes to the subclass's ``_execute_planned``.
    Errors leave through the subclass's ``_translated`` as the PEP 249 ones."""
    cdef public object connection
    cdef public object _result
    cdef public object description
    cdef public object _converter
    cdef public object rowcount
    cdef public object lastrowid
    cdef public bint _closed

    def execute(self, operation, parameters=()):
        """Prepare and run one statement (PEP 249); returns the cursor."""
        cdef long long count
        cdef ConnectionState connection
        try:
            if self._closed:
                raise _StmtProgrammingError("Cannot operate on a closed cursor.")
            connection = <ConnectionState?>self.connection
            # Connection._check()'s conditions read here, its call (which raises the
            # error) only when one holds.
            if connection._closed or (connection._check_thread
                                      and PyThread_get_thread_ident() != connection._thread):
                (<object>connection)._check()
            if not isinstance(operation, str):
                raise _StmtProgrammingError(
                    f"execute() argument 1 must be str, not {type(operation).__name__}")
            if self._result is not None:
                self._result.close()
                self._result = None
            self.description = None
            self._converter = None
            session = connection._session
            if isinstance(session, SessionState):
                count = _run_prepared_write(<SessionState>session, operation, parameters)
                if count >= 0:
                    self.rowcount = count
                    self.lastrowid = (<SessionState>session).last_insert_rowid
                    return self
            return self._execute_planned(session, operation, parameters)
        except Exception as err:
            exc = self._translated(err)
            if exc is err:
                raise
            raise exc from err


cdef class _NestedOnDemand:
    """The statement's nested transaction, begun only when the writer asks for it
    (``modify_many``'s ``open_savepoint``); ``depth`` is None until then.

    A PreparedWrite keeps one between executions (``PreparedWrite.guard``) with both
    fields None: a new one per execution cost an allocation of a GC-tracked object
    per statement, and with it a share of the gen-0 collections."""
    cdef object write
    cdef public object depth

    def __call__(self):
        self.depth = self.write.savepoint()
        return self.write.txn


cdef class PreparedWrite:
    """One cached DML statement in the shape the compiled loops run in one call.

    ``schema`` is the Schema object its plan was made under.  UPDATE/DELETE (``is_modify``) open their nested transaction lazily, as
    ``modify_many`` decides; a one-row INSERT opens it up front.
    """
    cdef readonly object schema
    cdef object writer
    cdef object source              # UPDATE/DELETE: the operator yielding target rows
    cdef object assignments         # UPDATE: new value per column; DELETE: None
    cdef object value_exprs         # INSERT: the VALUES row's expressions
    cdef object spec                # the statement's ParamSpec
    cdef object binder              # the session's (ParamSpec, params) -> tuple
    cdef Py_ssize_t nslots          # spec.count and spec._has_names, read once
    cdef bint named
    cdef int mode
    cdef bint is_modify
    cdef bint sets_last_rowid       # INSERT into a rowid table moves last_insert_rowid
    # The last execution's context, kept for the next one (see _context); between
    # executions it holds no session, so no reference cycle through the plan cache.
    cdef ExecContext ctx
    # The spare statement guard (see _NestedOnDemand), None while an execution has it.
    cdef _NestedOnDemand guard

    def __init__(self, object plan, object schema, object binder, *, object modify=None,
                 object insert=None, bint sets_last_rowid=False):
        self.schema = schema
        self.binder = binder
        self.spec = plan.params
        self.nslots = self.spec.count
        self.named = self.spec._has_names
        self.is_modify = modify is not None
        if self.is_modify:
            # Typed here: execute() hands them to modify_for_params without checks.
            self.writer = <TableWriter?>modify.writer
            self.source = <Operator?>modify.source
            self.assignments = <list?>modify.assignments if modify.assignments is not None else None
            self.mode = modify.mode
        else:
            self.writer = insert.writer
            self.value_exprs = insert.value_rows[0]
            self.mode = insert.mode
            self.sets_last_rowid = sets_last_rowid

    cdef long long execute(self, SessionState session, object write, object plan,
                           object params) except? -1:
        """Run once in ``write`` with ``params``; the session's counters and journal
        (which keeps ``plan``) follow, exactly as ``Session._run_write`` leaves them."""
        cdef ChangeCollector changes = <ChangeCollector?>session.changes
        # The collector's savepoint mark, kept as two numbers: its tuple is only made
        # when the statement fails (a tuple and two ints fewer per statement).
        cdef Py_ssize_t mark_len = changes._len, mark_count = changes.count
        cdef _NestedOnDemand guard = self.guard
        cdef ExecContext ctx
        cdef long long count
        cdef list journal
        if guard is None:
            guard = _NestedOnDemand.__new__(_NestedOnDemand)
        else:
            # Taken, not shared: an execution re-entered from inside this one (a
            # function calling back into the connection) makes its own.
            self.guard = None
        guard.write = write
        guard.depth = None
        try:
            if self.is_modify:
                ctx = self._context(session, write)
                # One statement, one collector: read above, fixed for every row written.
                ctx.collector = changes
                ctx.collector_set = True
                (<TableWriter>self.writer).begin(ctx)
                count = modify_for_params(<TableWriter>self.writer, <Operator>self.source,
                                          <list>self.assignments, params, ctx, self.mode,
                                          self.binder, self.spec, self.nslots, self.named, guard)
            else:
                guard()
                ctx = self._context(session, write)
                ctx.collector = changes
                ctx.collector_set = True
                count = insert_many(self.writer, self.value_exprs, [params], ctx, self.mode,
                                    self.binder, self.spec)
        except BaseException as err:
            self.ctx = None                # whatever state it was left in, not reused
            depth = guard.depth
            self._put_back(guard)
            # Undo (or, on a full map, grow and rerun) the Python way.
            return (<object>session)._statement_failed(err, write, depth, self.is_modify,
                                             (mark_len, mark_count), plan, [params], False,
                                             True).rowcount
        ctx.session = None
        ctx.wtxn = None
        ctx.params = ()
        ctx.collector = None               # the next execution may run under another one
        ctx.collector_set = False
        if self.is_modify:
            # Kept for the next execution (an INSERT's context is on its nested
            # transaction, never the same one twice: not kept).
            self.ctx = ctx
        if guard.depth is not None:
            write.release(guard.depth)
        self._put_back(guard)
        journal = <list?>session.journal
        journal.append(plan)
        journal.append(params)
        journal.append(False)
        if count and self.sets_last_rowid:
            session.last_insert_rowid = self.writer.last_rowid
        session.changes_count = count
        session.total_changes += count
        return count


    cdef inline void _put_back(self, _NestedOnDemand guard):
        """Keeps ``guard`` for the next execution, holding neither this one's WriteTxn
        nor its depth."""
        guard.write = None
        guard.depth = None
        self.guard = guard

    cdef ExecContext _context(self, SessionState session, object write):
        """The ExecContext of one execution in ``write``: the previous execution's again
        while ``write.txn`` is the very transaction object it was made for (its lookup
        cursors read through that object, which a commit or abort retires for good;
        a statement that opened its nested transaction left the context on that
        one, so the next execution starts afresh), else a new one."""
        cdef ExecContext ctx = self.ctx
        txn = write.txn
        if ctx is None or ctx.txn is not txn:
            return ExecContext((), txn, session, write)
        # Taken, not shared (as the guard): an execution re-entered from inside this one
        # (an adapter calling back into the connection) must not clear its state.
        self.ctx = None
        ctx.session = session
        ctx.wtxn = write
        if ctx.subquery_cache:
            ctx.subquery_cache = {}        # uncorrelated sub-selects are per execution
        if ctx.outer:
            ctx.outer = []
        return ctx


cdef class PreparedQuery:
    """A cached SELECT's compiled parts, opened in a new read snapshot by
    ``open_prepared_query`` without the session's Python dispatch."""
    cdef readonly object schema
    cdef Operator root
    cdef object names, decl_types
    cdef object spec, binder
    cdef object make_result         # Result.streaming(names, decl_types, source, read_txn, plan)
    cdef Py_ssize_t nslots
    cdef bint has_names

    def __init__(self, object plan, object schema, object binder, object make_result):
        query = plan.query
        self.schema = schema
        self.root = query.root
        self.names = query.names
        self.decl_types = query.decl_types
        self.spec = plan.params
        self.nslots = plan.params.count
        self.has_names = plan.params._has_names
        self.binder = binder
        self.make_result = make_result

    cdef object open(self, object session, object plan, object params):
        """What ``Session._run_query`` does with a fresh read snapshot; None (snapshot
        ended) when the snapshot's schema is not the one this plan was made for."""
        read = session._begin_read()
        try:
            txn = read.txn
            if txn.id() == session._read_snapshot:
                schema = session._read_schema
            else:
                schema = session._snapshot_schema(read)
            if schema is not self.schema:
                read.end()
                return None
            session.schema = schema
            if _native_params(params, self.nslots) and not self.has_names:
                bound = params
            else:
                bound = self.binder(self.spec, params)
            source = RowSource(self.root, ExecContext(<tuple?>bound, txn, session, None))
        except BaseException:
            read.end()
            raise
        plan.in_use = True
        return self.make_result(self.names, self.decl_types, source, read, plan)


def run_prepared_write(object session, object sql, object params):
    """The rowcount of ``sql`` run in ``session`` through its PreparedWrite, or -1 when
    it cannot run that way now (not prepared, no open write transaction, stale schema)."""
    if not isinstance(session, SessionState):
        return -1
    return _run_prepared_write(<SessionState>session, sql, params)


cdef long long _run_prepared_write(SessionState session, object sql, object params) except? -2:
    """``run_prepared_write`` for a Session known to be one."""
    cdef object write = session.write
    if write is None:
        return -1
    # session.plans is an OrderedDict, a dict subclass whose entries are the dict's
    # own: the plain dict lookup finds them without a bound-method call.
    cdef PyObject* found = PyDict_GetItem(<dict>session.plans, sql)
    if found is NULL:
        return -1
    plan = <object>found
    prepared = plan.prepared
    if type(prepared) is not PreparedWrite:
        return -1
    schema = session._write_schema
    # The test _schema_for() makes before trusting its cached schema, plus the plan's.
    if (schema is None or schema is not session.schema
            or schema is not (<PreparedWrite>prepared).schema):
        return -1
    # The LRU order is left alone: a statement evicted after PLAN_CACHE_SIZE others
    # were planned costs one re-plan, and the hot path saves the move.
    return (<PreparedWrite>prepared).execute(session, write, plan, params)


def open_prepared_query(object session, object sql, object params):
    """A streaming Result of the cached SELECT ``sql`` in ``session``, read in a new
    snapshot, or None when it must take the planned path (not prepared, a write
    transaction open, its operators still being read by another cursor, a new schema)."""
    if session.write is not None:
        return None
    plan = session.plans.get(sql)
    if plan is None:
        return None
    prepared = plan.prepared
    if type(prepared) is not PreparedQuery or plan.in_use:
        return None
    return (<PreparedQuery>prepared).open(session, plan, params)
