"""Integrity check of a database (``terndb check PATH``).

Reads everything in one snapshot and reports problems instead of raising:

* the catalog: every record decodes; every table and index has its
  sub-database; indexes, triggers and views name existing objects;
* every table row decodes with no more columns than the table has;
* every index agrees with its table: each row has exactly its entry, there
  are no other entries, and unique indexes hold no duplicate non-NULL keys;
* the binlog: every change set decodes and sequence numbers increase.

The checker opens its own read transaction, so it can run while other
connections (and processes) keep writing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from terndb._cext import _core as C

from .catalog import Catalog, Schema
from .database import Database
from .dml_planner import build_writer
from .errors import Error
from .params import ParamSpec


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    tables: int = 0
    rows: int = 0
    indexes: int = 0
    index_entries: int = 0
    changesets: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        return (f"{head}: {self.tables} tables, {self.rows} rows, {self.indexes} indexes "
                f"({self.index_entries} entries), {self.changesets} change sets")


class _Session:
    """The minimum an ExecContext needs for expression evaluation (no writes)."""
    changes = None
    changes_count = 0
    total_changes = 0
    last_insert_rowid = 0
    active_triggers: set = set()


def check_database(db: Database, max_problems: int = 100) -> CheckReport:
    report = CheckReport()
    store = db.store
    read = store.begin_read()
    try:
        txn = read.txn
        try:
            schema = Catalog(store).load(txn)
        except Error as err:
            report.problems.append(f"catalog: cannot be read: {err}")
            return report
        except Exception as err:  # noqa: BLE001 - a damaged record must be reported, not crash the check
            report.problems.append(f"catalog: damaged record: {type(err).__name__}: {err}")
            return report
        _check_catalog(schema, report)
        for table in schema.tables.values():
            if len(report.problems) >= max_problems:
                break
            _check_table(store, schema, table, txn, report)
        _check_binlog(db, txn, report)
    finally:
        read.end()
    return report


def _check_catalog(schema: Schema, report: CheckReport) -> None:
    for ix in schema.indexes.values():
        if ix.table_key not in schema.tables:
            report.problems.append(f"index {ix.name}: its table {ix.table} does not exist in schema {ix.schema_name}")
    for trig in schema.triggers.values():
        if trig.table_key not in schema.tables:
            report.problems.append(f"trigger {trig.name}: its table {trig.table} does not exist "
                                   f"in schema {trig.schema_name}")
    for kind, obj in schema.objects():
        if not schema.has_schema(obj.schema_name):
            report.problems.append(f"{kind} {obj.name}: its schema {obj.schema_name} does not exist")
    for view in schema.views.values():
        try:
            from .sqlparse import parse_one
            parse_one(view.select_sql)
        except Error as err:
            report.problems.append(f"view {view.name}: its definition does not parse: {err}")


def _handle(store: Any, name: bytes) -> Any:
    try:
        return store.db(name)
    except Error:
        return None


def _check_table(store: Any, schema: Schema, table: Any, txn: Any, report: CheckReport) -> None:
    report.tables += 1
    handle = _handle(store, table.db_name)
    if handle is None:
        report.problems.append(f"table {table.qualified_name}: its storage ({table.db_name.decode()}) is missing")
        return
    writer = build_writer(store, schema, table, ParamSpec.EMPTY)
    index_writers = {w.name: w for w in writer.index_writers()}
    ctx = C.ExecContext((), txn, _Session(), None)
    expected: dict[str, set[bytes]] = {name: set() for name in index_writers}
    unique_keys: dict[str, dict[tuple, int]] = {name: {} for name, w in index_writers.items() if w.unique}
    ncols = len(table.columns)
    defaults = writer.defaults
    with txn.cursor(db=handle) as cur:
        for key, value in cur.iternext(keys=True, values=True):
            if len(key) != 8:
                report.problems.append(f"table {table.qualified_name}: malformed row key {key!r}")
                continue
            rowid = C.decode_rowid(key)
            try:
                stored = C.row_column_count(value)
                if stored > ncols:
                    report.problems.append(f"table {table.qualified_name} row {rowid}: {stored} columns, table has {ncols}")
                    continue
                row = C.decode_row(value, ncols, defaults) + (rowid,)
            except Error as err:
                report.problems.append(f"table {table.qualified_name} row {rowid}: {err}")
                continue
            report.rows += 1
            for name, w in index_writers.items():
                try:
                    expected[name].add(w.entry_key_for(row, ctx))
                    if w.unique:
                        vals = w.key_values_for(row, ctx)
                        if None not in vals:
                            other = unique_keys[name].setdefault(vals, rowid)
                            if other != rowid:
                                report.problems.append(
                                    f"unique index {name}: rows {other} and {rowid} share the key {vals!r}")
                except Error as err:
                    report.problems.append(f"index {name} on row {rowid}: key cannot be computed: {err}")
    for ix in schema.indexes_of(table):
        report.indexes += 1
        ih = _handle(store, ix.db_name)
        if ih is None:
            report.problems.append(f"index {ix.name}: its storage ({ix.db_name.decode()}) is missing")
            continue
        want = expected.get(ix.name, set())
        seen = 0
        with txn.cursor(db=ih) as cur:
            for key in cur.iternext(keys=True, values=False):
                seen += 1
                if key not in want:
                    report.problems.append(f"index {ix.name}: entry {key.hex()} matches no row of {table.name}")
                else:
                    want.discard(key)
        report.index_entries += seen
        if want:
            report.problems.append(f"index {ix.name}: {len(want)} row(s) of {table.name} have no entry")


def _check_binlog(db: Database, txn: Any, report: CheckReport) -> None:
    last = 0
    try:
        for seq, changeset in db.binlog.read(txn, 0, allow_gap=True):
            if seq <= last:
                report.problems.append(f"binlog: sequence {seq} after {last}")
            last = seq
            try:
                changeset.entries  # noqa: B018 - decoding is the check
            except Error as err:
                report.problems.append(f"binlog: change set {seq} is damaged: {err}")
            report.changesets += 1
    except Error as err:
        report.problems.append(f"binlog: cannot be read: {err}")
