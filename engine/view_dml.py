"""INSERT, UPDATE and DELETE on views, carried out by INSTEAD OF triggers.

A view is writable only through its INSTEAD OF triggers, as in SQLite.  Such a
view is presented to the DML planner as a :class:`ViewTarget`: a table-shaped
description of the view's result columns (no affinities, no constraints, a
rowid slot that is always NULL), paired with a :class:`ViewWriter` that the
ordinary DML loops call where they would call the compiled TableWriter.  The
writer stores nothing: each row it is given fires the view's INSTEAD OF
triggers with NEW/OLD bound to that row.  So VALUES, INSERT ... SELECT, WHERE,
subqueries and RETURNING all go through the same planner code as for tables.

As in SQLite, rows handled by INSTEAD OF triggers are not counted as changes
of the statement (``changes()`` and ``cursor.rowcount`` stay 0); the triggers'
own writes are counted in ``total_changes()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from .catalog import Column, Schema, Table, View
from .params import ParamSpec
from .triggers import TriggerSet


@dataclass
class ViewTarget(Table):
    """A view seen as the target of a DML statement."""
    view: View | None = None


def view_target(store: Any, schema: Schema, view: View) -> ViewTarget:
    """The table-shaped description of ``view``'s result columns."""
    from .select_planner import SelectPlanner
    # Planned as SELECT * FROM the view, so the view's own name resolution applies (its schema).
    query = exp.Select(expressions=[exp.Star()])
    query.set("from_", exp.From(this=exp.Table(this=exp.to_identifier(view.name, quoted=True),
                                               db=exp.to_identifier(view.schema_name, quoted=True))))
    names = SelectPlanner(store, schema, ParamSpec.EMPTY).plan(query).names
    return ViewTarget(name=view.name, object_id=0, columns=[Column(name=n) for n in names], view=view,
                      schema_name=view.schema_name)


def has_instead_of(schema: Schema, view: View, event: str, assigned: set[str] | None = None) -> bool:
    """Whether ``view`` has an INSTEAD OF trigger for ``event`` (INSERT / UPDATE / DELETE).

    For UPDATE, a trigger declared ``UPDATE OF cols`` counts only when the
    statement assigns one of those columns (``assigned``, lower-case).
    """
    from .triggers import parse_create_trigger
    for trig in schema.triggers_of(view):
        d = parse_create_trigger(trig.sql)
        if d.timing != "INSTEAD OF" or d.event != event:
            continue
        if d.columns and assigned is not None and not {c.lower() for c in d.columns} & assigned:
            continue
        return True
    return False


class ViewWriter:
    """Stands in for the TableWriter of a view: every row fires the INSTEAD OF triggers."""

    conflict_rowid = None        # a view row never conflicts (no upsert on views)
    last_rowid = None

    def __init__(self, triggers: TriggerSet) -> None:
        self.triggers = triggers
        self.last_row: tuple | None = None

    def begin(self, ctx: Any) -> None:
        """Nothing to prepare: the triggers' own statements open their writers."""

    def insert(self, vals: tuple, ctx: Any, mode: int, given_rowid: Any = None) -> tuple | None:
        new = tuple(vals) + (None,)
        if not self.triggers.fire(self.triggers.instead, new, None, ctx):
            return None                      # RAISE(IGNORE): the row is skipped
        self.last_row = new
        return new

    def update(self, old: tuple, new_vals: tuple, ctx: Any, mode: int) -> bool:
        new = tuple(new_vals) + (None,)
        if not self.triggers.fire(self.triggers.instead, new, old, ctx):
            return False
        self.last_row = new
        return True

    def delete(self, old: tuple, ctx: Any) -> None:
        self.triggers.fire(self.triggers.instead, None, old, ctx)


def view_rows_query(target: ViewTarget, alias: str | None, where: exp.Expression | None,
                    extra: list[exp.Expression]) -> exp.Select:
    """SELECT the view's columns, a NULL rowid slot and ``extra`` values from the view, filtered by ``where``."""
    qualifier = exp.to_identifier(alias or target.name, quoted=True)
    cols: list[exp.Expression] = [exp.Column(this=exp.to_identifier(c.name, quoted=True), table=qualifier.copy())
                                  for c in target.columns]
    query = exp.Select(expressions=cols + [exp.Null()] + [e.copy() for e in extra])
    table = exp.Table(this=exp.to_identifier(target.name, quoted=True),
                      db=exp.to_identifier(target.schema_name, quoted=True))
    if alias:
        table.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
    query.set("from_", exp.From(this=table))
    if where is not None:
        query.set("where", exp.Where(this=where.copy()))
    return query
