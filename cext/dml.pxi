# Row writes: INSERT, UPDATE and DELETE of single rows, with constraints,
# index maintenance and change capture, all in compiled code.
#
# A TableWriter is built by the planner for one table and cached with the
# plan; ``begin`` resets per-execution caches (next rowid, LMDB handles), so
# executemany reuses one writer for every parameter row.
#
# Conflict modes follow SQLite's ON CONFLICT algorithms for the statement.

from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE

cdef enum ConflictMode:
    CONFLICT_ABORT = 0
    CONFLICT_IGNORE = 1
    CONFLICT_REPLACE = 2
    CONFLICT_FAIL = 3
    CONFLICT_ROLLBACK = 4
    CONFLICT_UPSERT = 5       # like IGNORE, but reports the conflicting rowid (ON CONFLICT DO ...)

CONFLICT_MODES = {"ABORT": CONFLICT_ABORT, "IGNORE": CONFLICT_IGNORE, "REPLACE": CONFLICT_REPLACE,
                  "FAIL": CONFLICT_FAIL, "ROLLBACK": CONFLICT_ROLLBACK, "UPSERT": CONFLICT_UPSERT}

cdef long long MAX_ROWID = 9223372036854775807

# The row writers put, delete and get through lmdb_put / lmdb_delete /
# lmdb_get (lmdbc.pxi): LMDB's own functions called on the py-lmdb
# transaction, with py-lmdb's Python API as the fallback; a py-lmdb call
# costs ~0.3 us more per row than the LMDB work itself.  An insert or update
# encodes its record into the writer's scratch buffer (``rowbuf``), which goes
# to LMDB (lmdb_put_raw) and to the change set (insert_raw / update_raw) as it
# is: no bytes object per row.


cdef class IndexWriter:
    """Maintains one index: key = encoded key parts + the rowid."""
    cdef public object dbname
    cdef public str name
    cdef public list parts        # Expr per key part, evaluated over the full row (+rowid)
    cdef public bytes desc
    cdef public bint unique
    cdef public str label         # "t.a, t.b" for constraint messages
    cdef object handle

    def __init__(self, bytes dbname, str name, list parts, bytes desc, bint unique, str label):
        self.dbname = dbname
        self.name = name
        self.parts = parts
        self.desc = desc
        self.unique = unique
        self.label = label

    cdef tuple key_values(self, tuple row, ExecContext ctx):
        return eval_list(self.parts, row, ctx)

    cdef bytes entry_key(self, tuple vals, long long rowid):
        return encode_key_with_rowid(vals, rowid, self.desc)

    def entry_key_for(self, tuple row, ExecContext ctx):
        """The index entry a full table row (rowid last) must have (integrity checks)."""
        return self.entry_key(self.key_values(row, ctx), row[len(row) - 1])

    def key_values_for(self, tuple row, ExecContext ctx):
        return self.key_values(row, ctx)

    cdef object conflicting_rowid(self, object txn, tuple vals, long long rowid):
        """The rowid of another row with the same unique key, or None."""
        cdef bytes prefix, k
        if None in vals:
            return None     # NULLs are distinct in UNIQUE indexes, as in SQLite
        prefix = encode_key(vals, self.desc)
        with txn.cursor(db=self.handle) as cur:
            if not cur.set_range(prefix):
                return None
            for k in cur.iternext(keys=True, values=False):
                if not k.startswith(prefix):
                    return None
                other = key_rowid_suffix(k)
                if other != rowid:
                    return other
        return None


cdef class TableWriter:
    cdef public object store
    cdef public bytes dbname
    cdef public str table_name
    cdef public long long table_id
    cdef public Py_ssize_t ncols
    cdef bytes aff_codes          # the same, one byte each (read per row without int conversions)
    cdef list notnull             # column positions with NOT NULL
    cdef list column_names
    cdef list checks              # (Expr, label)
    cdef list indexes             # IndexWriter
    cdef Py_ssize_t rowid_alias   # -1 when none
    cdef list pk_positions        # explicit PRIMARY KEY columns (empty for rowid tables)
    cdef bint autoincrement
    cdef object handle
    cdef long long next_rowid
    cdef bint next_known
    cdef bint appending           # rows so far went after the table's last key (MDB_APPEND hint)
    cdef public long long last_rowid
    cdef public tuple defaults    # column defaults for rows written before ADD COLUMN
    cdef public object conflict_rowid   # set by an UPSERT-mode insert that hit a uniqueness conflict
    cdef public tuple last_row          # the row last stored by insert/update (rowid last), for RETURNING
    # Generated columns, (position, Expr over the row + rowid, affinity, NOT NULL)
    # in an order where each expression reads only columns already computed.
    # Both VIRTUAL and STORED columns are computed here and stored.
    cdef public list generated
    cdef public tuple json_columns      # positions of columns declared JSON (stored as JSONB)
    # The record being written: encoded here, then handed to LMDB and to the
    # change set without a bytes object.  ``_insert`` and ``update`` use it, each
    # between encoding and its last put; nothing they call in between encodes into it.
    cdef _RcBuf rowbuf

    def __init__(self, store, bytes dbname, str table_name, long long table_id, list column_names,
                 list affinities, list notnull, list checks, list indexes, Py_ssize_t rowid_alias,
                 list pk_positions, bint autoincrement):
        self.store = store
        self.dbname = dbname
        self.table_name = table_name
        self.table_id = table_id
        self.column_names = column_names
        self.ncols = len(column_names)
        if len(affinities) != self.ncols:
            raise ValueError(f"{len(affinities)} affinities for {self.ncols} columns")
        self.aff_codes = bytes(affinities)
        self.notnull = notnull
        self.checks = checks
        self.indexes = indexes
        self.rowid_alias = rowid_alias
        self.pk_positions = pk_positions
        self.autoincrement = autoincrement
        self.generated = []

    def __dealloc__(self):
        _rc_buf_free(&self.rowbuf)

    def index_writers(self):
        return list(self.indexes)

    cpdef void begin(self, ExecContext ctx) except *:
        """Per-execution setup: LMDB handles (resolved once per writer), fresh rowid cache.

        A handle stays valid for the writer's life: dropping or re-creating a
        table changes the schema, which replaces the plan and its writer.
        """
        cdef IndexWriter ix
        if self.handle is None:
            self.handle = self.store.db(self.dbname, txn=ctx.wtxn)
        for ix in self.indexes:
            if ix.handle is None:
                ix.handle = self.store.db(ix.dbname, txn=ctx.wtxn)
        self.next_known = False
        self.appending = True

    cdef long long _allocate_rowid(self, object txn) except? -1:
        cdef long long r
        if not self.next_known:
            with txn.cursor(db=self.handle) as cur:
                r = decode_rowid(cur.key()) + 1 if cur.last() else 1
            if self.autoincrement:
                seq = self.store.meta_get(txn, b"seq:%d" % self.table_id)
                if seq is not None and int(seq) + 1 > r:
                    r = int(seq) + 1
            self.next_rowid = r
            self.next_known = True
        if self.next_rowid > MAX_ROWID or self.next_rowid <= 0:
            if self.autoincrement:
                raise OperationalError("database or disk is full (AUTOINCREMENT rowid exhausted)")
            # SQLite then probes random rowids; we search for a free slot from 1.
            return self._find_free_rowid(txn)
        r = self.next_rowid
        self.next_rowid += 1
        return r

    cdef long long _find_free_rowid(self, object txn) except? -1:
        import random
        cdef long long r
        for _ in range(100):
            r = random.randint(1, MAX_ROWID)
            if lmdb_get(txn, self.handle, encode_rowid(r)) is None:
                return r
        raise OperationalError("database or disk is full (no free rowid)")

    cdef bytes _pk_key(self, tuple row, long long rowid):
        cdef list vals
        if self.pk_positions:
            vals = [row[i] for i in self.pk_positions]
            return encode_key(tuple(vals))
        return _rowid_pk_key(rowid)

    cdef tuple _prepare(self, tuple values, ExecContext ctx):
        """Applies column affinities and checks NOT NULL; returns the stored values."""
        if PyTuple_GET_SIZE(values) < self.ncols:
            raise InternalError(f"{PyTuple_GET_SIZE(values)} values for {self.ncols} columns")
        return self._prepare_gathered(values, NULL, None, ctx)

    cdef tuple _prepare_gathered(self, tuple source, const Py_ssize_t* slots, list exprs,
                                 ExecContext ctx):
        """``_prepare`` of a row gathered on the fly: column i is ``source[slots[i]]``
        when ``slots[i] >= 0``, else ``exprs[i]`` evaluated (``slots`` NULL: column i
        is ``source[i]``).  executemany's parameters go straight into the one
        tuple of stored values, with no tuple of unconverted values in between."""
        cdef Py_ssize_t i, slot
        cdef const unsigned char* aff = <const unsigned char*>PyBytes_AS_STRING(self.aff_codes)
        cdef tuple out = PyTuple_New(self.ncols)
        for i in range(self.ncols):
            slot = i if slots == NULL else slots[i]
            if slot >= 0:
                v = <object>PyTuple_GET_ITEM(source, slot)
            else:
                v = (<Expr>exprs[i]).eval((), ctx)
            if v is not None:
                v = v_apply_affinity(v, aff[i])
            Py_INCREF(v)
            PyTuple_SET_ITEM(out, i, v)
        self._check_not_null(out)
        return out

    cdef tuple _prepare_assigned(self, tuple old_row, list assignments, ExecContext ctx):
        """``_prepare(eval_list(assignments, old_row, ctx))`` with ``old_row``'s rowid
        appended, in one tuple: an UPDATE's new row in the shape ``_write_update`` takes."""
        cdef Py_ssize_t i
        cdef const unsigned char* aff = <const unsigned char*>PyBytes_AS_STRING(self.aff_codes)
        if PyList_GET_SIZE(assignments) != self.ncols or PyTuple_GET_SIZE(old_row) <= self.ncols:
            raise InternalError(f"{PyList_GET_SIZE(assignments)} assignments, {PyTuple_GET_SIZE(old_row)} "
                                f"old values for {self.ncols} columns")
        cdef tuple out = PyTuple_New(self.ncols + 1)
        for i in range(self.ncols):
            v = (<Expr><object>PyList_GET_ITEM(assignments, i)).eval(old_row, ctx)
            if v is not None:
                v = v_apply_affinity(v, aff[i])
            Py_INCREF(v)
            PyTuple_SET_ITEM(out, i, v)
        v = <object>PyTuple_GET_ITEM(old_row, self.ncols)
        Py_INCREF(v)
        PyTuple_SET_ITEM(out, self.ncols, v)
        self._check_not_null(out)
        return out

    cdef void _check_not_null(self, tuple vals) except *:
        """NotNullViolation for the first NOT NULL column of ``vals`` holding NULL (the
        rowid alias excepted: NULL there means a new rowid)."""
        for i in self.notnull:
            if vals[i] is None and i != self.rowid_alias:
                raise NotNullViolation(
                    f"NOT NULL constraint failed: {self.table_name}.{self.column_names[i]}",
                    f"{self.table_name}.{self.column_names[i]}")

    cdef tuple _generate(self, tuple vals, long long rowid, ExecContext ctx):
        """Computes the generated columns of a row whose other values and rowid are final."""
        cdef list out = list(vals)
        cdef tuple g
        cdef Py_ssize_t pos
        out.append(rowid)
        for g in self.generated:
            pos = g[0]
            v = (<Expr>g[1]).eval(tuple(out), ctx)
            if v is not None:
                v = apply_affinity(v, <int>g[2])
            elif g[3]:
                raise NotNullViolation(
                    f"NOT NULL constraint failed: {self.table_name}.{self.column_names[pos]}",
                    f"{self.table_name}.{self.column_names[pos]}")
            out[pos] = v
        out.pop()
        return tuple(out)

    cdef tuple _json_store(self, tuple vals):
        """(vals, stored): ``stored`` has each JSON column's text as a JsonbValue
        (validated once here; DataError names the column), ``vals`` its canonical
        text, which constraints, indexes and RETURNING see, as reads will."""
        cdef list shown = list(vals), stored = list(vals)
        cdef Py_ssize_t i
        for i in self.json_columns:
            jv = _jb_column_value(stored[i], self.table_name, self.column_names[i])
            if type(jv) is JsonbValue:
                stored[i] = jv
                shown[i] = (<JsonbValue>jv).text
        return tuple(shown), tuple(stored)

    cdef void _check(self, tuple row, ExecContext ctx) except *:
        cdef tuple c
        for c in self.checks:
            r = (<Expr>c[0]).eval(row, ctx)
            if r is not None and not sql_truth(r):
                raise CheckViolation(f"CHECK constraint failed: {c[1]}", c[1])

    cpdef object insert(self, tuple values, ExecContext ctx, int mode, object given_rowid=None):
        """Inserts one row (``values`` has every column); returns its rowid, or None if ignored.

        ``given_rowid`` is an explicit rowid for a table without an INTEGER
        PRIMARY KEY (``INSERT INTO t(rowid, ...)``); None allocates one.
        """
        cdef long long rowid
        if self._insert(self._prepare(values, ctx), ctx, mode, given_rowid,
                        _session_collector(ctx), True, &rowid):
            return rowid
        return None

    cdef bint _insert(self, tuple vals, ExecContext ctx, int mode, object given_rowid,
                      ChangeCollector collector, bint keep_row, long long* rowid_out) except -1:
        """Inserts one row of prepared values (``_prepare``); True when stored (its rowid
        in ``rowid_out``), False when ignored.  ``keep_row`` keeps the full row in
        ``last_row`` (for RETURNING and AFTER triggers; executemany needs neither)."""
        cdef object txn = ctx.txn
        cdef tuple stored = None
        cdef long long rowid
        cdef object given = None
        cdef IndexWriter ix
        self.conflict_rowid = None
        if self.rowid_alias >= 0 and vals[self.rowid_alias] is not None:
            given = vals[self.rowid_alias]
        elif self.rowid_alias < 0 and given_rowid is not None:
            given = apply_affinity(given_rowid, AFF_INTEGER)
        if given is not None:
            if type(given) is not int:
                raise IntegrityError("datatype mismatch", self.table_name)
            rowid = given
            if self.next_known and rowid >= self.next_rowid:
                self.next_rowid = rowid + 1 if rowid < MAX_ROWID else MAX_ROWID + 1
        else:
            rowid = self._allocate_rowid(txn)
            if self.rowid_alias >= 0:
                vals = vals[:self.rowid_alias] + (rowid,) + vals[self.rowid_alias + 1:]
        if self.generated:
            vals = self._generate(vals, rowid, ctx)
        if self.json_columns:
            vals, stored = self._json_store(vals)
        cdef tuple row = None
        if keep_row or self.checks or self.indexes:
            row = vals + (rowid,)
            self._check(row, ctx)
        cdef unsigned char key[8]
        _kc_put_rowid(key, rowid)
        _encode_row_into(stored if stored is not None else vals, &self.rowbuf)
        # Primary key (rowid) conflict.  Rows usually come in rowid order: the
        # append hint holds until a row lands before the table's last key.
        cdef int stored_as = lmdb_put_raw(txn, self.handle, <char*>key, 8, <char*>self.rowbuf.data,
                                          self.rowbuf.len, False, self.appending)
        if stored_as == 2:
            self.appending = False
        if stored_as == 0:
            if mode == CONFLICT_IGNORE:
                return False
            if mode == CONFLICT_UPSERT:
                self.conflict_rowid = rowid
                return False
            if mode == CONFLICT_REPLACE:
                self._delete_by_rowid(rowid, ctx)
                lmdb_put_raw(txn, self.handle, <char*>key, 8, <char*>self.rowbuf.data,
                             self.rowbuf.len, True, False)
            else:
                label = self._pk_label()
                raise UniqueViolation(f"UNIQUE constraint failed: {label}", label)
        # Unique indexes, then the index entries themselves.
        cdef list keyvals = [] if self.indexes else None
        for ix in self.indexes:
            kv = ix.key_values(row, ctx)
            keyvals.append(kv)
            if ix.unique:
                other = ix.conflicting_rowid(txn, kv, rowid)
                if other is not None:
                    if mode == CONFLICT_IGNORE or mode == CONFLICT_UPSERT:
                        # Only the table row is written so far (index entries come last).
                        lmdb_delete(txn, self.handle, encode_rowid(rowid))
                        if mode == CONFLICT_UPSERT:
                            self.conflict_rowid = other
                        return False
                    if mode == CONFLICT_REPLACE:
                        self._delete_by_rowid(other, ctx)
                    else:
                        raise UniqueViolation(f"UNIQUE constraint failed: {ix.label}", ix.name)
        cdef Py_ssize_t j = 0
        for ix in self.indexes:
            lmdb_put(txn, ix.handle, ix.entry_key(<tuple>keyvals[j], rowid), b"", True)
            j += 1
        if self.autoincrement:
            seq = self.store.meta_get(txn, b"seq:%d" % self.table_id)
            if seq is None or int(seq) < rowid:
                self.store.meta_put(txn, b"seq:%d" % self.table_id, b"%d" % rowid)
        if collector is not None:
            self._capture_insert(collector, vals, rowid)
        self.last_rowid = rowid
        self.last_row = row
        rowid_out[0] = rowid
        return True

    cdef int _capture_insert(self, ChangeCollector collector, tuple vals, long long rowid) except -1:
        """Records the insert just written (its record is in ``rowbuf``) in the change set."""
        cdef unsigned char stack[32]
        cdef bytes pk_bytes
        if self.pk_positions:
            pk_bytes = self._pk_key(vals, rowid)
            return collector.insert_raw(self.table_id, PyBytes_AS_STRING(pk_bytes),
                                        PyBytes_GET_SIZE(pk_bytes), <char*>self.rowbuf.data,
                                        self.rowbuf.len, 0)
        return collector.insert_raw(self.table_id, <char*>stack, _rowid_key_into(stack, rowid),
                                    <char*>self.rowbuf.data, self.rowbuf.len, 0)

    cdef str _pk_label(self):
        if self.pk_positions:
            return ", ".join(f"{self.table_name}.{self.column_names[i]}" for i in self.pk_positions)
        if self.rowid_alias >= 0:
            return f"{self.table_name}.{self.column_names[self.rowid_alias]}"
        return f"{self.table_name}.rowid"

    cdef void _delete_by_rowid(self, long long rowid, ExecContext ctx) except *:
        cdef bytes key = encode_rowid(rowid)
        data = lmdb_get(ctx.txn, self.handle, key)
        if data is None:
            return
        self.delete(decode_row(data, self.ncols, self.defaults) + (rowid,), ctx)

    cpdef void delete(self, tuple row, ExecContext ctx) except *:
        """Deletes the row (full row tuple, rowid last) and its index entries."""
        cdef object txn = ctx.txn
        cdef long long rowid = row[self.ncols]
        cdef IndexWriter ix
        lmdb_delete(txn, self.handle, encode_rowid(rowid))
        for ix in self.indexes:
            lmdb_delete(txn, ix.handle, ix.entry_key(ix.key_values(row, ctx), rowid))
        cdef ChangeCollector collector = _session_collector(ctx)
        if collector is not None:
            # The old row travels with the delete so feed consumers see what went.
            collector.delete(self.table_id, self._pk_key(row, rowid), 0, encode_row(row[:self.ncols]))

    cpdef bint update(self, tuple old_row, tuple new_values, ExecContext ctx, int mode) except -1:
        """Replaces ``old_row`` (rowid last) with ``new_values`` (every column). False if ignored."""
        cdef object txn = ctx.txn
        cdef tuple vals = self._prepare(new_values, ctx)
        cdef tuple stored = None
        cdef long long old_rowid = old_row[self.ncols]
        cdef long long rowid = old_rowid
        if self.rowid_alias >= 0:
            given = vals[self.rowid_alias]
            if given is None and old_row[self.rowid_alias] is None:
                # The alias cell came back as stored (NULL: the rowid is the key): unchanged.
                given = old_rowid
                vals = vals[:self.rowid_alias] + (given,) + vals[self.rowid_alias + 1:]
            if type(given) is not int:
                # NULL included: as sqlite3, UPDATE never makes a rowid up (INSERT does).
                raise IntegrityError("datatype mismatch", self.table_name)
            rowid = given
        if self.generated:
            vals = self._generate(vals, rowid, ctx)
        if self.json_columns:
            vals, stored = self._json_store(vals)
        return self._write_update(old_row, vals + (rowid,), stored, ctx, mode)

    cdef bint _update_assigned(self, tuple old_row, list assignments, ExecContext ctx,
                               int mode) except -1:
        """``update(old_row, eval_list(assignments, old_row, ctx), ctx, mode)``: the
        compiled UPDATE loops' call.  In the common shape (no generated or JSON
        columns, the rowid alias still an integer) the new values are evaluated,
        converted and given the rowid in one tuple, the row ``_write_update`` takes,
        instead of three tuples (values, converted values, values + rowid)."""
        if self.generated or self.json_columns:
            return self.update(old_row, eval_list(assignments, old_row, ctx), ctx, mode)
        cdef tuple row = self._prepare_assigned(old_row, assignments, ctx)
        if self.rowid_alias >= 0:
            given = <object>PyTuple_GET_ITEM(row, self.rowid_alias)
            if type(given) is not int:
                # NULL (the alias cell as stored) or a datatype mismatch: update() says which.
                return self.update(old_row, row[:self.ncols], ctx, mode)
            if given != <object>PyTuple_GET_ITEM(row, self.ncols):
                row = row[:self.ncols] + (given,)
        return self._write_update(old_row, row, None, ctx, mode)

    cdef bint _write_update(self, tuple old_row, tuple row, tuple stored, ExecContext ctx,
                            int mode) except -1:
        """``update``'s checks and writes for the final new ``row`` (every column, rowid
        last); ``stored`` is what the record holds when it differs (JSON columns)."""
        cdef object txn = ctx.txn
        cdef long long old_rowid = old_row[self.ncols]
        cdef long long rowid = row[self.ncols]
        cdef IndexWriter ix
        self._check(row, ctx)
        if rowid != old_rowid and lmdb_get(txn, self.handle, encode_rowid(rowid)) is not None:
            if mode == CONFLICT_IGNORE:
                return False
            if mode == CONFLICT_REPLACE:
                self._delete_by_rowid(rowid, ctx)
            else:
                label = self._pk_label()
                raise UniqueViolation(f"UNIQUE constraint failed: {label}", label)
        cdef list old_keys = []
        cdef list new_keys = []
        for ix in self.indexes:
            ov = ix.key_values(old_row, ctx)
            nv = ix.key_values(row, ctx)
            old_keys.append(ov)
            new_keys.append(nv)
            if ix.unique and (nv != ov or rowid != old_rowid):
                other = ix.conflicting_rowid(txn, nv, old_rowid)
                if other is not None and other != rowid:
                    if mode == CONFLICT_IGNORE:
                        return False
                    if mode == CONFLICT_REPLACE:
                        self._delete_by_rowid(other, ctx)
                    else:
                        raise UniqueViolation(f"UNIQUE constraint failed: {ix.label}", ix.name)
        # Every check has passed: write.  The record goes from the scratch buffer
        # (no bytes object) to LMDB and to the change set, as in _insert.
        cdef unsigned char key[8]
        _kc_put_rowid(key, rowid)
        _encode_row_prefix_into(stored if stored is not None else row, self.ncols, &self.rowbuf)
        if rowid != old_rowid:
            lmdb_delete(txn, self.handle, encode_rowid(old_rowid))
            lmdb_put_raw(txn, self.handle, <char*>key, 8, <char*>self.rowbuf.data, self.rowbuf.len,
                         True, False)
        elif not ctx.replace_found(self.handle, <char*>key, 8, <char*>self.rowbuf.data,
                                   self.rowbuf.len):
            # Not through the cursor that found the row (it moved, or something wrote
            # since): the ordinary put, a second descent of the B-tree.
            lmdb_put_raw(txn, self.handle, <char*>key, 8, <char*>self.rowbuf.data, self.rowbuf.len,
                         True, False)
        cdef Py_ssize_t j = 0
        for ix in self.indexes:
            if old_keys[j] != new_keys[j] or rowid != old_rowid:
                lmdb_delete(txn, ix.handle, ix.entry_key(<tuple>old_keys[j], old_rowid))
                lmdb_put(txn, ix.handle, ix.entry_key(<tuple>new_keys[j], rowid), b"", True)
            j += 1
        cdef ChangeCollector collector = _session_collector(ctx)
        if collector is not None:
            self._capture_update(collector, old_row, row, rowid)
        self.last_row = row
        return True

    cdef int _capture_update(self, ChangeCollector collector, tuple old_row, tuple vals,
                             long long rowid) except -1:
        """Records the update just written (its record is in ``rowbuf``) in the change set:
        an update when the primary key stayed, else the old key's delete and an insert."""
        cdef long long old_rowid = old_row[self.ncols]
        cdef unsigned char stack[32]
        cdef bytes old_pk, new_pk
        if not self.pk_positions and rowid == old_rowid:
            # The common case, a rowid table's row updated in place: its key on the stack.
            return collector.update_raw(self.table_id, <char*>stack, _rowid_key_into(stack, rowid),
                                        <char*>self.rowbuf.data, self.rowbuf.len,
                                        _changed_mask(old_row, vals, self.ncols), 0)
        old_pk = self._pk_key(old_row, old_rowid)
        new_pk = self._pk_key(vals, rowid)
        if old_pk != new_pk:
            collector.delete(self.table_id, old_pk, 0, encode_row(old_row[:self.ncols]))
            return collector.insert_raw(self.table_id, PyBytes_AS_STRING(new_pk), PyBytes_GET_SIZE(new_pk),
                                        <char*>self.rowbuf.data, self.rowbuf.len, 0)
        return collector.update_raw(self.table_id, PyBytes_AS_STRING(new_pk), PyBytes_GET_SIZE(new_pk),
                                    <char*>self.rowbuf.data, self.rowbuf.len,
                                    _changed_mask(old_row, vals, self.ncols), 0)


cdef inline Py_ssize_t _rowid_key_into(unsigned char* out, long long rowid) except -1:
    """``encode_key((rowid,))`` written to ``out`` (32 bytes; a number key is far
    shorter, so the buffer never moves to the heap): a rowid table's primary-key key.
    Returns its length."""
    cdef _KcBuf b
    _kc_buf_init(&b, out, 32)
    _kc_put_int(&b, rowid)
    return b.len


cdef bytes _rowid_pk_key(long long rowid):
    """``encode_key((rowid,))`` without the tuple, as bytes."""
    cdef unsigned char stack[32]
    return PyBytes_FromStringAndSize(<char*>stack, _rowid_key_into(stack, rowid))


cdef object _changed_mask(tuple old_row, tuple new_vals, Py_ssize_t ncols):
    """The columns whose value changed, bit i for column i: an int up to 64 columns
    (no allocation), else a little-endian bitmap; ChangeCollector.update takes both."""
    cdef uint64_t bits = 0
    cdef Py_ssize_t i
    if ncols <= 64:
        for i in range(ncols):
            a = <object>PyTuple_GET_ITEM(old_row, i)
            b = <object>PyTuple_GET_ITEM(new_vals, i)
            if type(a) is not type(b) or a != b:
                bits |= (<uint64_t>1) << i
        return bits
    cdef bytearray mask = bytearray((ncols + 7) // 8)
    for i in range(ncols):
        a = old_row[i]
        b = new_vals[i]
        if type(a) is not type(b) or a != b:
            mask[i >> 3] |= (1 << (i & 7))
    return bytes(mask)


def fetch_row(TableWriter writer, long long rowid, ExecContext ctx):
    """The stored row with that rowid (rowid last), or None."""
    data = lmdb_get(ctx.txn, writer.handle, encode_rowid(rowid))
    if data is None:
        return None
    return decode_row(data, writer.ncols, writer.defaults) + (rowid,)


def build_index(TableWriter writer, IndexWriter ix, ExecContext ctx):
    """Fills a freshly created index from every row of the table (CREATE INDEX)."""
    cdef bytes key, value
    cdef long long rowid
    cdef tuple row, vals
    writer.begin(ctx)
    txn = ctx.txn
    with txn.cursor(db=writer.handle) as cur:
        for key, value in cur.iternext(keys=True, values=True):
            rowid = decode_rowid(key)
            row = decode_row(value, writer.ncols, writer.defaults) + (rowid,)
            vals = ix.key_values(row, ctx)
            if ix.unique and ix.conflicting_rowid(txn, vals, rowid) is not None:
                raise UniqueViolation(f"UNIQUE constraint failed: {ix.label}", ix.name)
            lmdb_put(txn, ix.handle, ix.entry_key(vals, rowid), b"", True)


cdef void _switch_txn(ExecContext ctx, object txn):
    """Points ``ctx`` at a new (nested) transaction; cursors opened on the old one are dropped."""
    ctx.txn = txn
    ctx.lookups = None
    ctx.memos = None


cdef inline ChangeCollector _session_collector(ExecContext ctx):
    """The session's change collector (None when changes are not captured): the one the
    statement's runner fixed on ``ctx`` if it did, else the session's current one."""
    if ctx.collector_set:
        return <ChangeCollector>ctx.collector
    changes = ctx.session.changes
    if changes is None:
        return None          # <ChangeCollector?> refuses None
    return <ChangeCollector?>changes


cdef inline bint _native_params(object params, Py_ssize_t nslots):
    """True when ``params`` is a tuple of already-SQL values (no adaptation needed)."""
    cdef Py_ssize_t i
    cdef object v
    cdef type t
    if type(params) is not tuple or PyTuple_GET_SIZE(<tuple>params) != nslots:
        return False
    for i in range(nslots):
        v = <object>PyTuple_GET_ITEM(<tuple>params, i)
        t = type(v)
        if t is int:
            # Out-of-range ints go through the adapter, which rejects them.
            if not _v_fits_i64(v):
                return False
        elif t is float:
            if v != v:
                return False         # NaN binds as NULL (the adapter's rule)
        elif t is not str and v is not None and t is not bytes:
            return False
    return True


def insert_many(TableWriter writer, list value_exprs, object param_rows, ExecContext ctx, int mode,
                object bind, object spec):
    """executemany for ``INSERT ... VALUES (...)``: one compiled loop over parameter rows.

    ``bind(spec, params) -> tuple`` adapts and orders one parameter set (only
    called when the set is not already a tuple of SQL values); ``value_exprs``
    gives, per table column, the expression producing it.  A column whose
    expression is a bare parameter is read straight from the parameter tuple
    into the row's stored values.  Returns the row count.
    """
    cdef long long count = 0, rowid
    cdef Py_ssize_t nslots = spec.count
    cdef bint named = spec._has_names
    cdef ChangeCollector collector = _session_collector(ctx)
    cdef Py_ssize_t* slots = _param_slots(value_exprs, writer.ncols, nslots)
    cdef tuple vals
    try:
        writer.begin(ctx)
        for params in param_rows:
            if not named and _native_params(params, nslots):
                ctx.params = <tuple>params
            else:
                ctx.params = bind(spec, params)
            vals = writer._prepare_gathered(ctx.params, slots, value_exprs, ctx)
            if writer._insert(vals, ctx, mode, None, collector, False, &rowid):
                count += 1
    finally:
        free(slots)
    return count


cdef Py_ssize_t* _param_slots(list value_exprs, Py_ssize_t ncols, Py_ssize_t nslots) except NULL:
    """Per column, the parameter slot its expression reads when it is a bare ``?``, else -1
    (a malloc'd array of ``ncols``; the caller frees it)."""
    cdef Py_ssize_t i
    if len(value_exprs) != ncols:
        raise InternalError(f"{len(value_exprs)} value expressions for {ncols} columns")
    cdef Py_ssize_t* slots = <Py_ssize_t*>malloc((ncols + 1) * sizeof(Py_ssize_t))
    if slots == NULL:
        raise MemoryError()
    for i in range(ncols):
        e = value_exprs[i]
        slots[i] = (<Param>e).slot if type(e) is Param and (<Param>e).slot < nslots else -1
    return slots


def modify_many(TableWriter writer, Operator source, list assignments, object param_rows, ExecContext ctx,
                int mode, object bind, object spec, object open_savepoint=None):
    """executemany for UPDATE/DELETE without triggers or RETURNING: one compiled loop.

    For each parameter set the target rows are collected first (so a statement
    never sees its own writes), then updated (``assignments`` gives every
    column's new value) or deleted (``assignments`` is None).

    ``open_savepoint`` (for a statement run once, with no savepoint open yet)
    is called, before the first write, only when the statement could fail
    after writing part of its effect; it opens the statement's nested
    transaction and returns it.  An UPDATE of at most one row in a mode other
    than REPLACE needs none: ``TableWriter.update`` checks every constraint
    before its first write.  Skipping the nested transaction saves its begin
    and commit and the copy of every page the write touches.
    """
    cdef long long count = 0
    cdef Py_ssize_t nslots = spec.count
    cdef bint named = spec._has_names
    if open_savepoint is not None and len(param_rows) != 1:
        raise ValueError("open_savepoint is for a statement run with one parameter set")
    writer.begin(ctx)
    for params in param_rows:
        count += modify_for_params(writer, source, assignments, params, ctx, mode, bind, spec,
                                   nslots, named, open_savepoint)
    return count


cdef long long modify_for_params(TableWriter writer, Operator source, list assignments, object params,
                                 ExecContext ctx, int mode, object bind, object spec,
                                 Py_ssize_t nslots, bint named, object open_savepoint) except -1:
    """``modify_many``'s work for one parameter set (``writer.begin`` done): the number of
    rows changed.  ``nslots`` and ``named`` are ``spec.count`` and ``spec._has_names``,
    read once by the caller; a prepared statement (stmt.pxi) calls this straight from C."""
    cdef long long count = 0
    cdef tuple r
    if not named and _native_params(params, nslots):
        ctx.params = <tuple>params
    else:
        ctx.params = bind(spec, params)
    targets = _target_rows(source, ctx)
    if targets is None:
        return 0
    if open_savepoint is not None and (type(targets) is list or assignments is None
                                       or mode == CONFLICT_REPLACE):
        _switch_txn(ctx, open_savepoint())
    if type(targets) is tuple:
        return _modify_row(writer, <tuple>targets, assignments, ctx, mode)
    for r in <list>targets:
        count += _modify_row(writer, r, assignments, ctx, mode)
    return count


cdef object _target_rows(Operator source, ExecContext ctx):
    """The rows an UPDATE/DELETE changes, every one read before the first write (a
    statement never sees its own writes): None when there is none, the row itself
    when there is one (the usual statement by key: no list made), else a list."""
    cdef tuple first, second, r
    cdef list rows
    source.open(ctx)
    try:
        first = source.next()
        if first is None:
            return None
        second = source.next()
        if second is None:
            return first
        rows = [first, second]
        while True:
            r = source.next()
            if r is None:
                return rows
            rows.append(r)
    finally:
        source.close()


cdef inline long long _modify_row(TableWriter writer, tuple r, list assignments, ExecContext ctx,
                                  int mode) except -1:
    """Deletes (``assignments`` None) or updates one target row; 1 if it changed, else 0."""
    if assignments is None:
        writer.delete(r, ctx)
        return 1
    return 1 if writer._update_assigned(r, assignments, ctx, mode) else 0
