"""Alembic's own test suite (``alembic.testing.suite``), run against terndb (see conftest.py)."""
from alembic.testing.suite import *  # noqa: F401,F403
