"""Alembic support: the migration implementation Alembic looks up by the dialect name "terndb".

Importing this module registers ``TerndbImpl`` (Alembic keeps a registry of
``DefaultImpl`` subclasses keyed by ``__dialect__``); ``dialect.py`` imports it
so an engine's dialect is enough.

terndb has no ALTER TABLE yet, so every ``batch_alter_table`` operation takes
Alembic's "move and copy" path (CREATE a temporary table, INSERT ... SELECT,
DROP the old table, RENAME the new one).  The final RENAME needs the engine's
``ALTER TABLE ... RENAME TO``; until it exists, batch migrations fail at that
step (inside the migration's transaction, which then rolls back: DDL is
transactional here, ``transactional_ddl = True``).
"""
from __future__ import annotations

from typing import Any

from alembic.ddl.impl import DefaultImpl


class TerndbImpl(DefaultImpl):
    __dialect__ = "terndb"
    transactional_ddl = True

    def requires_recreate_in_batch(self, batch_op: Any) -> bool:
        # Without ALTER TABLE, every change to an existing table recreates it.
        return True
