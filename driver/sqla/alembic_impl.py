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

Autogenerate compares indexes by their compiled key parts (so ``DESC`` and
expression parts compare, not only plain column names), making a fresh
comparison against ``create_all`` output empty.
"""
from __future__ import annotations

import re
from typing import Any

from alembic.ddl.impl import ComparisonResult, DefaultImpl
from sqlalchemy import Index


class TerndbImpl(DefaultImpl):
    __dialect__ = "terndb"
    transactional_ddl = True

    def requires_recreate_in_batch(self, batch_op: Any) -> bool:
        # Without ALTER TABLE, every change to an existing table recreates it.
        return True

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
