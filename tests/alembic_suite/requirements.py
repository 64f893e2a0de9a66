"""What terndb supports, for Alembic's test suite.

Alembic's ``SuiteRequirements`` opens most requirements by default.  Closed
here is only what SQLite's Alembic implementation lacks as well (Alembic's own
test requirements close the same for ``sqlite``); each comment says why.
"""
from __future__ import annotations

from alembic.testing import exclusions
from alembic.testing.requirements import SuiteRequirements

open_ = exclusions.open
closed = exclusions.closed


class Requirements(SuiteRequirements):
    @property
    def schemas(self):
        return closed()        # as SQLite: no CREATE SCHEMA namespaces in the engine yet

    @property
    def reflects_pk_names(self):
        return open_()

    @property
    def unnamed_constraints(self):
        return open_()

    # Foreign-key options, reflected from the catalog (SQLite's requirements open these too).
    @property
    def reflects_fk_options(self):
        return open_()

    @property
    def fk_ondelete_is_reflected(self):
        return open_()

    @property
    def fk_onupdate_is_reflected(self):
        return open_()

    @property
    def autocommit_isolation(self):
        return open_()         # the dialect has AUTOCOMMIT (Alembic's autocommit_block)
