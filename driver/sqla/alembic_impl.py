"""Alembic support: the migration implementation Alembic looks up by the dialect name "terndb".

Importing this module registers ``TerndbImpl`` (Alembic keeps a registry of
``DefaultImpl`` subclasses keyed by ``__dialect__``); ``dialect.py`` imports it
so an engine's dialect is enough.

Migrations need no batch mode.  What the engine's ALTER TABLE does in place
(RENAME TO, RENAME COLUMN, ADD COLUMN, DROP COLUMN) is emitted as ALTER TABLE;
what it cannot (a column's type, nullability or server default; adding or
dropping a foreign-key, unique, check or primary-key constraint; dropping a
column that is part of a key or foreign key; for now adding a column with a
server default, see ``add_column``) is done by
recreating the table: the table is reflected, the change applied to a copy,
and Alembic's own "move and copy" (CREATE a temporary table, INSERT ... SELECT,
DROP the old table, RENAME the new one, re-create its indexes) runs inside the
migration's transaction, so a failure leaves the table as it was (DDL is
transactional here, ``transactional_ddl = True``).  ``batch_alter_table``
works too and recreates once for all of its operations when one of them
needs it.

Autogenerate compares with terndb's own normal forms, so an up-to-date
database shows no differences: index key parts by their compiled SQL (``DESC``
and expression parts compare, not only column names), server defaults by the
engine's rendering of the expression (the catalog keeps defaults as sqlglot
renders them; literals compare by value); types use Alembic's own comparison.
"""
from __future__ import annotations

import re
from typing import Any

from alembic.ddl.impl import ComparisonResult, DefaultImpl
from alembic.operations.batch import ApplyBatchImpl
from sqlalchemy import Column, Index, MetaData, Table, inspect
from sqlalchemy.schema import CheckConstraint, Constraint

from terndb.engine.errors import DatabaseError, NotSupportedError
from terndb.engine.sqlparse import parse_one, to_sql

# Batch operations the engine runs in place; anything else recreates the table.
_IN_PLACE_BATCH_OPS = frozenset({"add_column", "drop_column", "create_index", "drop_index"})
# alter_column arguments that describe the column as it is, not a change to it.
_NO_CHANGE = {"nullable": None, "server_default": False, "type_": None, "autoincrement": None}


class TerndbImpl(DefaultImpl):
    __dialect__ = "terndb"
    transactional_ddl = True

    # -- operations --------------------------------------------------------------------

    def alter_column(self, table_name: str, column_name: str, *, schema: str | None = None,
                     name: str | None = None, **kw: Any) -> None:
        kw.pop("comment", None)                   # terndb keeps no comments (supports_comments=False)
        kw.pop("existing_comment", None)
        if not _changes_column(kw):
            # Only a rename (or nothing): the engine's ALTER TABLE ... RENAME COLUMN.
            if name is not None and name != column_name:
                super().alter_column(table_name, column_name, schema=schema, name=name, **kw)
            return
        self._recreate(table_name, schema, "alter_column", table_name, column_name, name=name, **kw)

    def add_column(self, table_name: str, column: Column[Any], *, schema: str | None = None,
                   **kw: Any) -> None:
        if column.server_default is None:
            super().add_column(table_name, column, schema=schema, **kw)
            return
        # Engine gap: rows written before ADD COLUMN read its DEFAULT without the
        # column's affinity (BOOLEAN DEFAULT '1' reads back '1', not 1).  Until
        # ddl.table_defaults applies it, a column with a default is added by a copy.
        self._recreate(table_name, schema, "add_column", table_name, column, **kw)

    def drop_column(self, table_name: str, column: Column[Any], *, schema: str | None = None,
                    **kw: Any) -> None:
        if not self._in_key(table_name, column.name, schema):
            super().drop_column(table_name, column, schema=schema, **kw)
            return
        # The engine's DROP COLUMN refuses key columns (as SQLite's does): the copy
        # leaves out the column and the constraints on it.
        self._recreate(table_name, schema, "drop_column", table_name, column, **kw)

    def _in_key(self, table_name: str, column_name: str, schema: str | None) -> bool:
        """Whether a column belongs to the primary key, a unique constraint or a foreign key."""
        if self.as_sql:
            return False
        insp = inspect(self.connection)
        keys = [insp.get_pk_constraint(table_name, schema=schema)["constrained_columns"]]
        keys += [u["column_names"] for u in insp.get_unique_constraints(table_name, schema=schema)]
        keys += [f["constrained_columns"] for f in insp.get_foreign_keys(table_name, schema=schema)]
        return any(column_name in cols for cols in keys)

    def add_constraint(self, const: Constraint, **kw: Any) -> None:
        if const._create_rule is None or const._create_rule(self):
            self._recreate(const.table.name, const.table.schema, "add_constraint", const)

    def drop_constraint(self, const: Constraint, **kw: Any) -> None:
        self._recreate(const.table.name, const.table.schema, "drop_constraint", const)

    def requires_recreate_in_batch(self, batch_op: Any) -> bool:
        """One table copy for a whole batch when any of its operations needs one."""
        for opname, args, kw in batch_op.batch:
            if opname == "alter_column":
                if _changes_column(kw):
                    return True
            elif opname == "add_column":
                if args[1].server_default is not None:     # see add_column
                    return True
            elif opname == "drop_column":
                if self._in_key(batch_op.table_name, args[1].name, batch_op.schema):
                    return True
            elif opname not in _IN_PLACE_BATCH_OPS:
                return True
        return False

    def _recreate(self, table_name: str, schema: str | None, opname: str, *args: Any, **kw: Any) -> None:
        """Applies one change to ``table_name`` by recreating it (see the module docstring)."""
        if self.as_sql:
            raise NotSupportedError(
                f"terndb: {opname} on {table_name!r} recreates the table and needs a live connection "
                "(offline --sql mode cannot reflect it)")
        table = Table(table_name, MetaData(), schema=schema, autoload_with=self.connection)
        # Alembic's copy leaves out unnamed CHECK constraints it reflects (it cannot tell
        # them from a type's own); terndb's types create none, so restate them all.
        checks = tuple(CheckConstraint(c.sqltext, name=c.name) for c in table.constraints
                       if isinstance(c, CheckConstraint) and not c.name)
        batch = ApplyBatchImpl(self, table, checks, {}, reflected=True)
        getattr(batch, opname)(*args, **kw)
        batch._create(self)

    # -- autogenerate ------------------------------------------------------------------

    def compare_server_default(self, inspector_column: Column[Any], metadata_column: Column[Any],
                               rendered_metadata_default: str | None,
                               rendered_inspector_default: str | None) -> bool:
        if isinstance(getattr(metadata_column.server_default, "arg", None), str):
            # server_default="x" is a literal value, given without SQL quoting.
            wanted = rendered_metadata_default
        else:
            wanted = _default_value(rendered_metadata_default)
        return wanted != _default_value(rendered_inspector_default)

    def compare_indexes(self, metadata_index: Index, reflected_index: Index) -> ComparisonResult:
        msg = []
        unique = self._compare_index_unique(metadata_index, reflected_index)
        if unique:
            msg.append(unique)
        wanted = [self._key_text(e) for e in metadata_index.expressions]
        found = [self._key_text(e) for e in reflected_index.expressions]
        if wanted != found:
            msg.append(f"key parts {found} to {wanted}")
        return ComparisonResult.Different(msg) if msg else ComparisonResult.Equal()

    def _key_text(self, element: Any) -> str:
        """One index key part as normalised SQL: no quotes, no table prefix, one case, one spacing."""
        if not isinstance(element, str):
            element = element.compile(dialect=self.dialect,
                                      compile_kwargs={"literal_binds": True, "include_table": False}).string
        text = re.sub(r'["`\[\]]', "", element)
        return " ".join(text.lower().replace("(", " ( ").replace(")", " ) ").split())


def _changes_column(kw: dict[str, Any]) -> bool:
    """Whether alter_column arguments change more than the column's name."""
    return any(kw.get(key, unchanged) is not unchanged for key, unchanged in _NO_CHANGE.items())


_STRING_LITERAL = re.compile(r"^'((?:[^']|'')*)'$", re.S)
_NUMBER_LITERAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _default_value(sql: str | None) -> str | None:
    """A DEFAULT in one normal form: a literal's value, else the expression as the catalog renders it.

    Literals compare by value (``'5'`` and ``5`` alike, as Alembic's SQLite
    implementation does); other expressions are re-rendered by the engine's
    parser, the way the catalog stores them, and compared without outer parentheses.
    """
    if sql is None:
        return None
    text = sql.strip()
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    literal = _STRING_LITERAL.match(text)
    if literal:
        return literal.group(1).replace("''", "'")
    if _NUMBER_LITERAL.match(text):
        return text
    try:
        return to_sql(parse_one("SELECT " + text).expressions[0])
    except DatabaseError:
        return text        # not an expression the engine parses: compare the text as given


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return False
    return depth == 0
