"""SQL generation for the terndb dialect.

terndb reads SQLite's SQL, so the statement compiler and identifier preparer
reuse SQLAlchemy's SQLite pieces (``LIMIT -1 OFFSET n``, ``x / (y + 0.0)``,
``IS [NOT]`` for distinct-from, ``group_concat``).  JSON index and path
operators compile to terndb's JSON1 SQL (``->`` and ``json_extract``; see
``TerndbCompiler._json_element``).  ``regexp_match`` renders SQLite's
``x REGEXP p`` (terndb has a built-in ``regexp()``, Python's ``re.search``)
and ``regexp_replace`` terndb's ``regexp_replace(x, p, r)`` (``re.sub``:
every match, ``\\1`` group references).  RETURNING and SQLite's upsert
(``sqlalchemy.dialects.sqlite.insert(...).on_conflict_do_update``) render as
on SQLite: terndb runs both.

DDL and type names are terndb's own (the SQLite DDL compiler reads
``sqlite_*`` dialect options): options are ``terndb_autoincrement`` on a
Table and ``terndb_where`` on an Index.
"""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import exc
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler, SQLiteIdentifierPreparer
from sqlalchemy import sql
from sqlalchemy.sql import compiler

# A DEFAULT that is not a literal or parenthesised must be wrapped: SQLite's
# grammar only accepts literals, signed numbers and ( expr ) after DEFAULT.
_NEEDS_PARENS = re.compile(r".*\W.*", re.S)
_STARTS_LITERAL = re.compile(r"""^\s*[\'\"\(]""")


class TerndbCompiler(SQLiteCompiler):
    """SQLite's statement compiler, with terndb's JSON operators and regexp_replace."""

    def _json_element(self, binary: Any, _cast_applied: bool = False, **kw: Any) -> str:
        """``doc[key]`` / ``doc[path]``: the path is already a JSON path text (see types.py).

        A JSON-typed element (the default, or ``.as_json()``) renders ``doc -> path``,
        which yields the element's JSON text (SQL NULL when the path is absent), read
        back through the JSON result processor.  A typed element (``.as_integer()``,
        ``.as_string()``, ...) is ``CAST(json_extract(doc, path) AS <type>)``:
        ``json_extract`` gives the SQL value (a JSON string unquoted, a number as a
        number) and the CAST applies the type's affinity, so comparisons and ORDER
        BY work on values, not on JSON text.
        """
        if not _cast_applied and binary.type._type_affinity is not sqltypes.JSON:
            # Wrapping in CAST re-enters this method with _cast_applied set.
            return self.process(sql.cast(binary, binary.type), _cast_applied=True, **kw)
        left = self.process(binary.left, **kw)
        path = self.process(binary.right, **kw)
        if binary.type._type_affinity is sqltypes.JSON:
            return f"{left} -> {path}"
        return f"json_extract({left}, {path})"

    def visit_json_getitem_op_binary(self, binary: Any, operator: Any, **kw: Any) -> str:
        return self._json_element(binary, **kw)

    def visit_json_path_getitem_op_binary(self, binary: Any, operator: Any, **kw: Any) -> str:
        return self._json_element(binary, **kw)

    def _regexp_flags_refused(self, binary: Any) -> None:
        # SQLite's REGEXP takes no flags; Python's inline (?i) etc. work in the pattern.
        if binary.modifiers.get("flags") is not None:
            raise exc.CompileError("terndb's REGEXP takes no flags: write them inline, e.g. '(?i)abc'")

    def visit_regexp_match_op_binary(self, binary: Any, operator: Any, **kw: Any) -> str:
        self._regexp_flags_refused(binary)
        return super().visit_regexp_match_op_binary(binary, operator, **kw)

    def visit_not_regexp_match_op_binary(self, binary: Any, operator: Any, **kw: Any) -> str:
        self._regexp_flags_refused(binary)
        return super().visit_not_regexp_match_op_binary(binary, operator, **kw)

    def visit_regexp_replace_op_binary(self, binary: Any, operator: Any, **kw: Any) -> str:
        self._regexp_flags_refused(binary)
        return "regexp_replace(%s, %s)" % (self.process(binary.left, **kw), self.process(binary.right, **kw))



class TerndbDDLCompiler(compiler.DDLCompiler):
    """CREATE/DROP statements in the SQLite syntax terndb parses."""

    def get_column_specification(self, column: Any, **kwargs: Any) -> str:
        coltype = self.dialect.type_compiler_instance.process(column.type, type_expression=column)
        colspec = self.preparer.format_column(column) + " " + coltype
        default = self.get_column_default_string(column)
        if default is not None:
            if not _STARTS_LITERAL.match(default) and _NEEDS_PARENS.match(default):
                colspec += f" DEFAULT ({default})"
            else:
                colspec += f" DEFAULT {default}"
        if not column.nullable:
            colspec += " NOT NULL"
        if column.primary_key and self._inline_autoincrement(column):
            colspec += " PRIMARY KEY AUTOINCREMENT"
        if column.computed is not None:
            # GENERATED ALWAYS AS (expr) [STORED|VIRTUAL]; omitted persistence is VIRTUAL, as in SQLite.
            colspec += " " + self.process(column.computed)
        return colspec

    @staticmethod
    def _inline_autoincrement(column: Any) -> bool:
        """AUTOINCREMENT must be written on the column: only then it is an INTEGER PRIMARY KEY."""
        table = column.table
        if not table.dialect_options["terndb"]["autoincrement"]:
            return False
        if len(table.primary_key.columns) != 1:
            raise exc.CompileError("terndb_autoincrement needs a single-column INTEGER primary key")
        return issubclass(column.type._type_affinity, sqltypes.Integer) and not column.foreign_keys

    def post_create_table(self, table: Any) -> str:
        # terndb_with_rowid=False, or the SQLite dialect's sqlite_with_rowid=False
        # on a model written for SQLite, makes a WITHOUT ROWID table.
        with_rowid = table.dialect_options["terndb"]["with_rowid"]
        if table.dialect_kwargs.get("sqlite_with_rowid", True) is False:
            with_rowid = False
        return "" if with_rowid else "\n WITHOUT ROWID"

    def visit_primary_key_constraint(self, constraint: Any, **kw: Any) -> Any:
        if len(constraint.columns) == 1:
            col = list(constraint)[0]
            if col.primary_key and self._inline_autoincrement(col):
                return None
        return super().visit_primary_key_constraint(constraint, **kw)

    def define_constraint_remote_table(self, constraint: Any, table: Any, preparer: Any) -> str:
        # terndb reads an unqualified REFERENCES target in the referencing
        # table's schema (SQLite's rule); another schema's table is qualified.
        local_schema = constraint.table.schema if constraint.table is not None else None
        if table.schema == local_schema:
            return preparer.format_table(table, use_schema=False)
        return f"{preparer.quote_schema(table.schema or 'main')}.{preparer.format_table(table, use_schema=False)}"

    def visit_create_index(self, create: Any, include_schema: bool = False,
                           include_table_schema: bool = True, **kw: Any) -> str:
        index = create.element
        self._verify_index_table(index)
        text = "CREATE UNIQUE INDEX " if index.unique else "CREATE INDEX "
        if create.if_not_exists:
            text += "IF NOT EXISTS "
        # SQLite's form: the index is named in its table's schema (s.ix ON t).
        text += "%s ON %s (%s)" % (
            self._prepared_index_name(index, include_schema=True),
            self.preparer.format_table(index.table, use_schema=False),
            ", ".join(self.sql_compiler.process(e, include_table=False, literal_binds=True)
                      for e in index.expressions),
        )
        where = index.dialect_options["terndb"]["where"]
        if where is not None:
            text += " WHERE " + self.sql_compiler.process(where, include_table=False, literal_binds=True)
        return text

    def visit_set_table_comment(self, create: Any, **kw: Any) -> str:
        raise exc.CompileError("terndb does not support comments")

    visit_drop_table_comment = visit_set_column_comment = visit_drop_column_comment = visit_set_table_comment


class TerndbTypeCompiler(compiler.GenericTypeCompiler):
    """Type names terndb's affinity rules read the way the stored values need."""

    def visit_large_binary(self, type_: Any, **kw: Any) -> str:
        return self.visit_BLOB(type_)

    def visit_JSON(self, type_: Any, **kw: Any) -> str:
        return "JSON"


class TerndbIdentifierPreparer(SQLiteIdentifierPreparer):
    """SQLite's quoting rules and reserved words (terndb's parser is SQLite's grammar)."""
