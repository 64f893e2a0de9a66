"""terndb's engine: storage on LMDB, catalog, SQL planning, execution, replication.

The engine never imports the DB-API driver (``terndb``); the driver builds on it.
"""
