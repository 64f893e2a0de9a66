"""Triggers: CREATE TRIGGER parsing, and firing BEFORE/AFTER row triggers around DML.

SQLite's syntax (sqlite.org/lang_createtrigger.html):

    CREATE [TEMP] TRIGGER [IF NOT EXISTS] name [BEFORE | AFTER | INSTEAD OF]
        (DELETE | INSERT | UPDATE [OF col, ...]) ON table [FOR EACH ROW]
        [WHEN expr] BEGIN stmt; ... END

sqlglot does not parse it, so the head is read here with a tokenizer-backed
scan and the body is split into statements.  Body statements are planned
lazily (at first firing, then cached with the statement's plan) with a parent
scope holding the ``NEW`` and ``OLD`` rows, so ``NEW.x`` compiles to an outer
reference; firing pushes the combined row on the execution context.
``RAISE(IGNORE)`` / ``RAISE(ABORT|FAIL|ROLLBACK, msg)`` become calls of the
``terndb_raise`` function, which raises TriggerRaise for the DML loop to act on.
As in SQLite with recursive_triggers off, a trigger never fires itself again
while it runs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from terndb._cext import _core as C

from .catalog import MAIN, TEMP, Schema, Table
from .errors import IntegrityError, NoSuchObjectError, NotSupportedError, ProgrammingError, SQLSyntaxError
from .exprcompile import ExprCompiler, Scope
from .params import ParamSpec
from .sqlparse import parse_one, qualify_tables, split_script, unquote_identifier

_HEAD = re.compile(
    r"""^\s*CREATE\s+(?P<temp>TEMP\s+|TEMPORARY\s+)?TRIGGER\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?
        (?P<name>"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[\w$.]+)\s+
        (?P<timing>BEFORE\s+|AFTER\s+|INSTEAD\s+OF\s+)?
        (?P<event>DELETE|INSERT|UPDATE)(?:\s+OF\s+(?P<cols>[\w$"`\[\]\s,]+?))?\s+
        ON\s+(?P<table>"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[\w$.]+)\s*
        (?P<each>FOR\s+EACH\s+ROW\s*)?
        (?:WHEN\s+(?P<when>.*?)\s*)?
        \bBEGIN\b(?P<body>.*)\bEND\s*;?\s*$""",
    re.I | re.S | re.X)
_RAISE = re.compile(r"\bRAISE\s*\(\s*(IGNORE|ROLLBACK|ABORT|FAIL)\s*(\)|,)", re.I)
_CREATE_TRIGGER = re.compile(r"^\s*CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TRIGGER\b", re.I)


def is_create_trigger(sql: str) -> bool:
    return bool(_CREATE_TRIGGER.match(sql))


@dataclass
class TriggerDef:
    name: str
    table: str
    timing: str                   # BEFORE / AFTER / INSTEAD OF
    event: str                    # INSERT / UPDATE / DELETE
    columns: list[str] | None     # UPDATE OF columns
    when_sql: str | None
    body: list[str]               # statement texts, RAISE rewritten
    temporary: bool = False
    if_not_exists: bool = False
    sql: str = ""
    qualifier: str | None = None  # the schema written before the name; the table lives there too
    table_qualifier: str | None = None   # ON s.t: the table's schema (a TEMP trigger's may be any)


def parse_create_trigger(sql: str) -> TriggerDef:
    m = _HEAD.match(sql)
    if m is None:
        raise SQLSyntaxError(f"malformed CREATE TRIGGER: {sql.strip()[:80]}")
    qualifier, name = _split_qualified(m.group("name"))
    table_qualifier, table = _split_qualified(m.group("table"))
    body_text = _RAISE.sub(lambda r: f"terndb_raise('{r.group(1).upper()}'" + (", NULL)" if r.group(2) == ")" else ","),
                           m.group("body"))
    body = [s.rstrip(";").strip() for s in split_script(body_text) if s.strip().rstrip(";").strip()]
    if not body:
        raise SQLSyntaxError("a trigger body needs at least one statement")
    cols = [unquote_identifier(c.strip()) for c in m.group("cols").split(",")] if m.group("cols") else None
    timing = " ".join((m.group("timing") or "BEFORE").upper().split())
    when = m.group("when")
    if when is not None:
        when = _RAISE.sub(lambda r: f"terndb_raise('{r.group(1).upper()}'" + (", NULL)" if r.group(2) == ")" else ","), when)
    return TriggerDef(name, table, timing, m.group("event").upper(), cols, when, body,
                      bool(m.group("temp")), bool(m.group("ine")), sql.strip().rstrip(";").strip(), qualifier,
                      table_qualifier)


def _split_qualified(text: str) -> tuple[str | None, str]:
    """(schema, name) of a possibly schema-qualified name as the trigger header wrote it."""
    name = unquote_identifier(text)
    if "." in name and not text.startswith(("\"", "`", "[")):
        qualifier, name = name.split(".", 1)
        return qualifier, name
    return None, name


class TriggerRaise(Exception):
    """RAISE(...) inside a trigger: ``kind`` is IGNORE, ABORT, FAIL or ROLLBACK."""

    def __init__(self, kind: str, message: str | None) -> None:
        super().__init__(message or kind)
        self.kind = kind
        self.message = message


def _terndb_raise(kind: Any, message: Any) -> None:
    raise TriggerRaise(str(kind), None if message is None else str(message))


# Registered once: the planner resolves it like any scalar function.
C.SCALAR_FUNCTIONS["terndb_raise"] = C.ScalarFunction("terndb_raise", _terndb_raise, 2, 2, False)


def new_old_scope(table: Table) -> Scope:
    """NEW at offset 0 and OLD after it, each with its rowid slot."""
    from .dml_planner import table_source
    ncols = len(table.columns)
    new = table_source(table, "new", 0)
    old = table_source(table, "old", ncols + 1)
    return Scope([new, old])


@dataclass
class _CompiledTrigger:
    defn: TriggerDef
    when: Any = None
    steps: list = field(default_factory=list)     # (kind, plan)


class TriggerSet:
    """The triggers of one table for one event, planned lazily and cached with the statement."""

    def __init__(self, store: Any, schema: Schema, table: Table, event: str,
                 assigned_columns: set[str] | None = None) -> None:
        self.store = store
        self.schema = schema
        self.table = table
        self.defs = []
        for trig in schema.triggers_of(table):
            d = parse_create_trigger(trig.sql)
            if d.event != event:
                continue
            if event == "UPDATE" and d.columns and assigned_columns is not None and \
                    not {c.lower() for c in d.columns} & assigned_columns:
                continue
            self.defs.append(d)
        self.before = [d for d in self.defs if d.timing == "BEFORE"]
        self.after = [d for d in self.defs if d.timing == "AFTER"]
        self.instead = [d for d in self.defs if d.timing == "INSTEAD OF"]   # views only
        self._compiled: dict[str, _CompiledTrigger] = {}

    def __bool__(self) -> bool:
        return bool(self.defs)

    def _compile(self, d: TriggerDef) -> _CompiledTrigger:
        ct = self._compiled.get(d.name.lower())
        if ct is not None:
            return ct
        from .dml_planner import plan_delete, plan_insert, plan_update
        from .select_planner import SelectPlanner
        scope = new_old_scope(self.table)
        params = ParamSpec.EMPTY
        ct = _CompiledTrigger(d)
        if d.when_sql:
            ct.when = ExprCompiler(scope, params).compile(self._parse("SELECT " + d.when_sql).expressions[0])
        for text in d.body:
            node = self._parse(text)
            if isinstance(node, exp.Insert):
                ct.steps.append(("insert", plan_insert(self.store, self.schema, node, params, None, text, scope)))
            elif isinstance(node, exp.Update):
                ct.steps.append(("modify", plan_update(self.store, self.schema, node, params, None, text, scope)))
            elif isinstance(node, exp.Delete):
                ct.steps.append(("modify", plan_delete(self.store, self.schema, node, params, text, scope)))
            elif isinstance(node, (exp.Select, exp.Union, exp.Except, exp.Intersect)):
                planned = SelectPlanner(self.store, self.schema, params, text).plan(node, scope)
                ct.steps.append(("select", planned))
            else:
                raise NotSupportedError(f"statement not allowed in a trigger body: {text[:60]}")
        self._compiled[d.name.lower()] = ct
        return ct

    def _parse(self, text: str) -> exp.Expression:
        """A statement of a trigger body; unqualified names are in the trigger's schema (SQLite's rule)."""
        node = parse_one(text)
        if self.table.schema_name in (MAIN, TEMP):     # temp triggers see temp, then main
            return node
        return qualify_tables(node, self.table.schema_name)

    def fire(self, defs: list[TriggerDef], new_row: tuple | None, old_row: tuple | None, ctx: Any) -> bool:
        """Runs ``defs`` for one row; False if a RAISE(IGNORE) asked to skip the row."""
        if not defs:
            return True
        from .dml_planner import run_insert, run_modify
        width = len(self.table.columns) + 1
        row = (new_row if new_row is not None else (None,) * width) + \
              (old_row if old_row is not None else (None,) * width)
        session = ctx.session
        active = session.active_triggers
        for d in defs:
            key = d.name.lower()
            if key in active:
                continue
            ct = self._compile(d)
            sub = C.ExecContext((), ctx.txn, session, ctx.wtxn)
            sub.outer.append(row)
            active.add(key)
            try:
                if ct.when is not None and not C.sql_truth(ct.when.evaluate(row, sub)):
                    continue
                for kind, plan in ct.steps:
                    # total_changes() counts trigger programs' rows too; changes() does not.
                    if kind == "insert":
                        session.total_changes += run_insert(plan, sub)
                    elif kind == "modify":
                        session.total_changes += run_modify(plan, sub)
                    else:
                        C.run_operator(plan.root, sub, -1)
            except TriggerRaise as r:
                if r.kind == "IGNORE":
                    return False
                raise IntegrityError(r.message or f"trigger {d.name} raised {r.kind}", d.name) from None
            finally:
                active.discard(key)
        return True


def check_trigger_target(schema: Schema, d: TriggerDef) -> Any:
    """The table (or, for INSTEAD OF, the view) trigger ``d`` fires on: in the trigger's
    schema, or where ``ON s.t`` says (which must agree, except for a TEMP trigger)."""
    qualifier = d.table_qualifier or d.qualifier
    if d.table_qualifier and d.qualifier and d.table_qualifier.lower() != d.qualifier.lower():
        raise ProgrammingError(f"trigger {d.name} cannot reference objects in database {d.table_qualifier}")
    schema.resolve_schema(qualifier)
    view = schema.lookup("views", d.table, qualifier)
    if view is not None:
        if d.timing != "INSTEAD OF":
            raise ProgrammingError(f"cannot create {d.timing} trigger on view: {d.table}")
        return view
    if d.timing == "INSTEAD OF":
        raise ProgrammingError(f"cannot create INSTEAD OF trigger on table: {d.table}")
    table = schema.lookup("tables", d.table, qualifier)
    if table is None:
        raise NoSuchObjectError(f"no such table: {schema.resolve_schema(qualifier)}.{d.table}")
    if table.name.lower().startswith("sqlite_"):
        raise ProgrammingError("cannot create trigger on system table")
    return table
