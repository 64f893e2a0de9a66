# cython: language_level=3
"""terndb's compiled core: codecs, SQLite value semantics, functions and the executor.

One extension module assembled from ``.pxi`` parts (the asyncpg/pyarrow
layout), each with one job:

* ``values.pxi``    - SQLite value semantics: affinity, comparison, arithmetic, CAST, LIKE
* ``functions.pxi`` - SQLite's scalar and aggregate functions
* ``json.pxi``      - SQLite's JSON1 functions, -> and ->>, json_each/json_tree rows
* ``jsonb.pxi``     - SQLite's JSONB binary documents: JSON columns' storage and path lookup
* ``keycodec.pxi``  - order-preserving (memcmp-sortable) key encoding
* ``rowcodec.pxi``  - compact row records
* ``changes.pxi``   - change capture for the binlog
* ``repl.pxi``      - the replication version-record merge (engine/repl_versions.py), compiled
* ``lmdbc.pxi``     - C-level LMDB cursors borrowed from py-lmdb (scans without per-entry objects)
* ``writelock.pxi`` - the writer lock between processes (a robust shared mutex in write.lock)
* ``commit.pxi``    - every commit's compiled steps: the HLC's state, the binlog append
* ``exprs.pxi``     - compiled expression trees
* ``operators.pxi`` - query operators (scans, joins, sort, aggregate, limit)
* ``dml.pxi``       - row writes with constraints, indexes and change capture
* ``stmt.pxi``      - prepared statements: cached DML re-executed, cached SELECTs opened, in one call
* ``arrow.pxi``     - result rows -> Arrow column buffers (fetch_arrow_table / fetch_df)
* ``window.pxi``    - window functions and the RIGHT/FULL outer join operator
"""
from cpython.ref cimport Py_INCREF, Py_REFCNT
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM

from terndb.engine.errors import (
    CheckViolation, DataError, IntegrityError, InternalError, NotNullViolation, OperationalError,
    UniqueViolation,
)

COMPILED = True

include "values.pxi"
include "functions.pxi"
include "json.pxi"
include "jsonb.pxi"
include "keycodec.pxi"
include "rowcodec.pxi"
include "changes.pxi"
include "repl.pxi"
include "lmdbc.pxi"
include "writelock.pxi"
include "commit.pxi"
include "exprs.pxi"
include "operators.pxi"
include "dml.pxi"
include "stmt.pxi"
include "arrow.pxi"
include "window.pxi"
