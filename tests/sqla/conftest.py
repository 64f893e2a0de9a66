"""Harness for SQLAlchemy's dialect compliance suite against terndb.

The main test run starts it in a subprocess (``tests/test_sqla_compliance.py``);
on its own:

    python -m pytest tests/sqla --rootdir=tests/sqla -p no:cacheprovider -q

``pytest.ini`` beside this file loads ``sqlalchemy.testing.plugin.pytestplugin``;
this conftest registers the dialect (the editable install may predate the
entry points), points the suite at a fresh temporary database directory, and
supplies provisioning hooks: temporary tables, and the suite's two extra
schemas (``test_schema``, ``test_schema_2``), which SQLite's dialect ATTACHes
and terndb creates with ``CREATE SCHEMA``.  When the project's
main run (``pytest tests``) reaches this folder the plugin is absent, and
``pytest_ignore_collect`` keeps it out.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy.dialects import registry

registry.register("terndb", "terndb.sqla.dialect", "TerndbDialect")
registry.register("terndb.terndb", "terndb.sqla.dialect", "TerndbDialect")

_PLUGIN = "sqlalchemy.testing.plugin.pytestplugin"
_HERE = Path(__file__).parent


def _suite_mode(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin(_PLUGIN)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if not _suite_mode(config) and _HERE in collection_path.parents:
        return True
    return None


def _register_provisioning() -> None:
    # Provisioning hooks are looked up by dialect name; imported only in suite
    # mode so the main run never imports sqlalchemy.testing.
    from sqlalchemy import text
    from sqlalchemy.testing.provision import post_configure_engine, temp_table_keyword_args

    @temp_table_keyword_args.for_db("terndb")
    def _terndb_temp_table_keyword_args(cfg, eng):  # noqa: ANN001, ANN202 - SQLAlchemy's hook signature
        return {"prefixes": ["TEMPORARY"]}

    @post_configure_engine.for_db("terndb")
    def _terndb_create_test_schemas(url, engine, follower_ident):  # noqa: ANN001, ANN202
        # The names the suite's config uses (SuiteRequirements / config.test_schema).
        with engine.begin() as conn:
            for name in ("test_schema", "test_schema_2"):
                conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {name}"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Runs before SQLAlchemy's own pytest_configure reads --dburi.
    if not _suite_mode(config):
        return
    _register_provisioning()
    if getattr(config.option, "dburi", None):
        return
    directory = tempfile.mkdtemp(prefix="terndb-sqla-")
    config._terndb_suite_dir = directory  # type: ignore[attr-defined]
    config.option.dburi = [f"terndb:///{directory}"]


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = getattr(config, "_terndb_suite_dir", None)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
