"""Which standard PEP 249 class an error belongs to, so sqlite3's and terndb's errors compare.

A plain module beside the tests (not conftest.py: the SQLAlchemy and Alembic sub-suites have
conftest modules of their own, so ``from conftest import`` could find theirs).
"""
from __future__ import annotations

PEP249_CLASSES = ("IntegrityError", "OperationalError", "ProgrammingError", "DataError",
                  "NotSupportedError", "InternalError", "InterfaceError")


def pep249_name(err: Exception) -> str:
    """The name of the standard PEP 249 class ``err`` belongs to (terndb raises subclasses
    such as UniqueViolation); its own class name if it is none of them."""
    for cls in type(err).__mro__:
        if cls.__name__ in PEP249_CLASSES:
            return cls.__name__
    return type(err).__name__
