"""Read-only reflection over terndb's catalog (terndb has no PRAGMA).

``catalog_schema(dbapi_connection)`` returns the ``terndb.engine.catalog.Schema``
snapshot the connection's next statement would see: inside an open write
transaction that is the transaction's own schema (uncommitted DDL included),
otherwise the latest committed one.  The ``describe_*`` functions turn catalog
records into the dictionaries SQLAlchemy's ``Inspector`` expects; they never
write and never run SQL.

Where the catalog lacks something reflection needs, it is recovered from the
stored CREATE TABLE text (a PRIMARY KEY constraint's name, as SQLite's dialect
does), or is documented as an engine gap in the report.
"""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy import util

from terndb.engine.catalog import MAIN, Index, Schema, Table, View

from .types import ischema_names

_PK_NAME = re.compile(r'CONSTRAINT\s+(?:"((?:[^"]|"")+)"|`([^`]+)`|\[([^\]]+)\]|(\w+))\s+PRIMARY\s+KEY', re.I)
_TYPE = re.compile(r"^\s*([A-Za-z_][\w ]*?)\s*(\((.*)\))?\s*$", re.S)
AUTO_INDEX_PREFIX = "sqlite_autoindex_"


def catalog_schema(dbapi_connection: Any) -> Schema:
    """The schema the connection sees now (its own uncommitted DDL included)."""
    return dbapi_connection._session.current_schema()


def resolve_type(decl_type: str) -> sqltypes.TypeEngine:
    """A SQLAlchemy type for a declared column type, by name then by SQLite's affinity rules."""
    m = _TYPE.match(decl_type or "")
    name, args = (m.group(1).upper(), m.group(3)) if m else ("", None)
    name = " ".join(name.split())
    cls: Any = ischema_names.get(name)
    if cls is None:
        if "INT" in name:
            cls = sqltypes.INTEGER
        elif "CHAR" in name or "CLOB" in name or "TEXT" in name:
            cls = sqltypes.TEXT
        elif "BLOB" in name or not name:
            cls = sqltypes.NullType
        elif "REAL" in name or "FLOA" in name or "DOUB" in name:
            cls = sqltypes.REAL
        else:
            cls = sqltypes.NUMERIC
    if args is None or cls is sqltypes.NullType:
        return cls()
    numbers = [int(a) for a in re.findall(r"\d+", args)]
    try:
        return cls(*numbers)
    except TypeError:
        util.warn(f"Could not instantiate type {cls.__name__} with reflected arguments {numbers}; "
                  "using no arguments.")
        return cls()


def table_names(schema: Schema, space: str = MAIN) -> list[str]:
    """Tables of one schema (``space``, a stored schema name; ``temp``: the connection's own)."""
    return sorted(t.name for kind, t in schema.objects_in(space)
                  if kind == "table" and not t.name.lower().startswith("sqlite_"))


def view_names(schema: Schema, space: str = MAIN) -> list[str]:
    """Views of one schema (``temp``: the connection's own)."""
    return sorted(v.name for kind, v in schema.objects_in(space) if kind == "view")


def find_table(schema: Schema, name: str, space: str | None = None) -> Table | None:
    return schema.lookup("tables", name, space)


def find_view(schema: Schema, name: str, space: str | None = None) -> View | None:
    return schema.lookup("views", name, space)


def describe_columns(table: Table) -> list[dict[str, Any]]:
    pk_rank = {pos: rank + 1 for rank, pos in enumerate(table.pk)}
    out = []
    for pos, col in enumerate(table.columns):
        if col.hidden:
            continue
        info: dict[str, Any] = {
            "name": col.name,
            "type": resolve_type(col.decl_type),
            "nullable": not col.notnull and pos != table.rowid_alias,
            "default": col.default_sql,
            "primary_key": pk_rank.get(pos, 0),
        }
        if pos == table.rowid_alias:
            info["autoincrement"] = True
        if col.collation is not None:
            info["collation"] = col.collation
        if col.generated:
            info["computed"] = {"sqltext": col.generated_sql, "persisted": col.generated_stored}
        out.append(info)
    return out


def describe_pk(table: Table) -> dict[str, Any]:
    m = _PK_NAME.search(table.sql or "")
    name = None
    if m:
        name = next(g for g in m.groups() if g is not None)
        if m.group(1) is not None:
            name = name.replace('""', '"')
    return {"constrained_columns": [table.columns[i].name for i in table.pk], "name": name if table.pk else None}


def describe_foreign_keys(table: Table, schema: Schema) -> list[dict[str, Any]]:
    out = []
    for fk in table.foreign_keys:
        referred = fk.ref_columns
        if not referred:
            # REFERENCES t without columns means t's primary key.
            target = _referred_table(schema, fk.ref_table, fk.ref_schema)
            referred = [target.columns[i].name for i in target.pk] if target is not None else []
        # NO ACTION is the default: reflected as absent, as SQLite's dialect does.
        options = {key: action.upper() for key, action in (("ondelete", fk.on_delete), ("onupdate", fk.on_update))
                   if action and action.upper() != "NO ACTION"}
        out.append({
            "name": fk.name,
            "constrained_columns": list(fk.columns),
            # None for main, SQLAlchemy's default schema.
            "referred_schema": fk.ref_schema,
            "referred_table": fk.ref_table,
            "referred_columns": list(referred),
            "options": options,
        })
    out.sort(key=_by_name)
    return out


def _referred_table(schema: Schema, name: str, space: str | None) -> Table | None:
    # The referred schema may have been dropped since: then there is no table to read.
    return find_table(schema, name, space) if schema.has_schema(space or MAIN) else None


def _part_names(table: Table, ix: Index) -> tuple[list[str | None], list[str | None]]:
    names: list[str | None] = []
    exprs: list[str | None] = []
    for part in ix.parts:
        if part.column is not None:
            names.append(table.columns[part.column].name)
            exprs.append(table.columns[part.column].name)
        else:
            names.append(None)
            exprs.append(part.expr_sql)
    return names, exprs


def describe_indexes(table: Table, schema: Schema, include_auto: bool = False) -> list[dict[str, Any]]:
    out = []
    for ix in sorted(schema.indexes_of(table), key=lambda i: i.name):
        if ix.origin != "c" and not include_auto:
            continue
        names, exprs = _part_names(table, ix)
        info: dict[str, Any] = {"name": ix.name, "column_names": names, "unique": ix.unique,
                                "dialect_options": {}}
        if any(n is None for n in names):
            info["expressions"] = exprs
        sorting = {(n if n is not None else e): ("desc",) for p, n, e in zip(ix.parts, names, exprs) if p.desc}
        if sorting:
            info["column_sorting"] = sorting
        if ix.where_sql is not None:
            info["dialect_options"]["terndb_where"] = ix.where_sql
        if ix.origin == "u":
            info["duplicates_constraint"] = _constraint_name(ix)
        out.append(info)
    return out


def _constraint_name(ix: Index) -> str | None:
    # Unnamed UNIQUE constraints get SQLite's automatic index names; they have no name.
    return None if ix.name.lower().startswith(AUTO_INDEX_PREFIX) else ix.name


def describe_unique_constraints(table: Table, schema: Schema) -> list[dict[str, Any]]:
    out = []
    for ix in schema.indexes_of(table):
        if ix.origin != "u":
            continue
        names, _ = _part_names(table, ix)
        # No "duplicates_index": get_indexes() does not list constraint-backing indexes.
        out.append({"name": _constraint_name(ix), "column_names": names})
    out.sort(key=_by_name)
    return out


def describe_check_constraints(table: Table) -> list[dict[str, Any]]:
    out = [{"name": ck.name, "sqltext": ck.sql} for ck in table.checks]
    out.sort(key=_by_name)
    return out


def _by_name(item: dict[str, Any]) -> tuple:
    # Unnamed constraints first, then by name: the order databases that name
    # every constraint produce, and a stable one across calls.
    return (item["name"] is not None, item["name"] or "")
