"""A FastAPI-style application package on terndb: ``models`` (the ORM schema) and ``database`` (engine, sessions)."""
