"""SQLAlchemy and Alembic support for terndb.

``create_engine("terndb:///path")`` finds ``terndb.sqla.dialect:TerndbDialect``
through the ``sqlalchemy.dialects`` entry points declared in pyproject.toml.
This package imports nothing from SQLAlchemy itself, so ``import terndb``
never pays for it.
"""
