"""Engine and sessions, laid out the way FastAPI applications usually do.

``DATABASE_URL`` (environment) names the database, ``terndb:///data`` (a
directory beside the working directory) by default.  ``get_db`` is the
per-request session dependency a FastAPI route would declare with
``Depends(get_db)``; nothing here imports FastAPI.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

DATABASE_URL = os.environ.get("DATABASE_URL", "terndb:///data")

engine = create_engine(DATABASE_URL)
SessionLocal = sessionmaker(bind=engine, expire_on_commit=False)


def get_db() -> Iterator[Session]:
    """One session per request, closed when the request ends."""
    with SessionLocal() as session:
        yield session
