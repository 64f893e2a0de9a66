"""terndb: an embedded, replicating SQL + JSON database on LMDB (DB-API 2.0)."""
from terndb.engine.errors import *  # noqa: F401,F403  (PEP 249 names live at module level)
