"""SQLAlchemy's dialect compliance suite, run against terndb (see conftest.py)."""
from sqlalchemy.testing.suite import *  # noqa: F401,F403
