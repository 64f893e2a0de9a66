"""terndb: an embedded, replicating SQL + JSON database on LMDB (PEP 249 DB-API 2.0).

    import terndb
    con = terndb.connect("data/")          # a directory; ":memory:" for a temporary one
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO t(name) VALUES (?)", ("ada",))
    con.commit()
"""
from terndb.engine.errors import (  # noqa: F401  (PEP 249 names live at module level)
    CheckViolation, CorruptDatabaseError, DatabaseError, DatabaseLockedError, DataError, Error,
    ForeignKeyViolation, IntegrityError, InterfaceError, InternalError, NoSuchObjectError,
    NotNullViolation, NotSupportedError, ObjectExistsError, OperationalError, ParameterError,
    ProgrammingError, ReadOnlyError, SQLSyntaxError, UniqueViolation, Warning,
)

from .adapters import PARSE_DECLTYPES, register_adapter, register_converter  # noqa: F401
from .connection import Connection, connect  # noqa: F401
from .cursor import Cursor  # noqa: F401
from .types import (  # noqa: F401
    BINARY, DATETIME, NUMBER, ROWID, STRING, Binary, Date, DateFromTicks, Time, TimeFromTicks,
    Timestamp, TimestampFromTicks,
)

apilevel = "2.0"
# Threads may share the module but not connections (as sqlite3 with check_same_thread).
threadsafety = 1
paramstyle = "qmark"      # named (:name, @name, $name) and numbered (?NNN) also accepted
sqlite_version = "3.45.0"  # the SQLite SQL dialect terndb follows (for tools that ask)
__version__ = "0.1.0"
