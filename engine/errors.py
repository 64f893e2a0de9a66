"""The PEP 249 exception hierarchy, defined once for the whole of terndb.

The engine raises these; the DB-API driver (``terndb``) re-exports them, so
``terndb.IntegrityError is terndb.engine.errors.IntegrityError``.  Precise
subclasses let callers (and the SQLAlchemy dialect) tell causes apart without
parsing messages.  Library errors (lmdb, sqlglot) are wrapped where they are
raised, chained with ``from``.
"""
from __future__ import annotations


class Warning(Exception):  # noqa: A001 - the name is mandated by PEP 249
    """Important warnings, e.g. data truncation on insert."""


class Error(Exception):
    """Base class of every terndb error (PEP 249)."""


class InterfaceError(Error):
    """Misuse of the driver interface rather than of the database."""


class DatabaseError(Error):
    """Errors related to the database."""


class DataError(DatabaseError):
    """Problems with processed data: bad JSON, value out of range, bad cast."""


class OperationalError(DatabaseError):
    """Errors of the database's operation, not necessarily the caller's fault."""


class DatabaseLockedError(OperationalError):
    """Another writer held the write lock for longer than the busy timeout."""


class ReadOnlyError(OperationalError):
    """A write was attempted on a database opened read-only."""


class IntegrityError(DatabaseError):
    """Relational integrity is affected: a constraint was violated."""

    #: Name of the violated constraint (or ``table.column``), when known.
    constraint: str | None = None

    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class UniqueViolation(IntegrityError):
    """A UNIQUE or PRIMARY KEY constraint failed."""


class NotNullViolation(IntegrityError):
    """A NOT NULL constraint failed."""


class CheckViolation(IntegrityError):
    """A CHECK constraint failed."""


class ForeignKeyViolation(IntegrityError):
    """A FOREIGN KEY constraint failed."""


class InternalError(DatabaseError):
    """The database hit an internal inconsistency (a bug, or a corrupt file)."""


class CorruptDatabaseError(InternalError):
    """The database files are damaged or not a terndb database."""


class ProgrammingError(DatabaseError):
    """Errors in the caller's program: bad SQL, missing table, bad parameters."""


class SQLSyntaxError(ProgrammingError):
    """The SQL text does not parse.  ``position`` is a 0-based offset or None."""

    position: int | None = None

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class NoSuchObjectError(ProgrammingError):
    """A referenced table, view, index, column or function does not exist."""


class ObjectExistsError(ProgrammingError):
    """CREATE of an object whose name is already taken."""


class ParameterError(ProgrammingError):
    """Wrong number or kind of bound parameters."""


class NotSupportedError(DatabaseError):
    """A method or SQL construct that terndb does not support."""


__all__ = [
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError",
    "OperationalError", "DatabaseLockedError", "ReadOnlyError",
    "IntegrityError", "UniqueViolation", "NotNullViolation", "CheckViolation",
    "ForeignKeyViolation", "InternalError", "CorruptDatabaseError",
    "ProgrammingError", "SQLSyntaxError", "NoSuchObjectError",
    "ObjectExistsError", "ParameterError", "NotSupportedError",
]
