"""Harness for Alembic's test suite (``alembic.testing.suite``) against terndb.

Run it on its own (``tests/test_alembic_suite.py`` does, in a subprocess):

    python -m pytest tests/alembic_suite --rootdir=tests/alembic_suite -p no:cacheprovider

Alembic's suite runs on SQLAlchemy's test plugin (loaded by ``pytest.ini``
beside this file).  This conftest registers the dialect, points the suite at a
fresh temporary database directory, and moves the working directory into a
temporary one: Alembic's fixtures write their migration environments to
``./scratch``.  When the project's main run (``pytest tests``) reaches this
folder the plugin is absent, and ``pytest_ignore_collect`` keeps it out.
"""
from __future__ import annotations

import os
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


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Runs before SQLAlchemy's own pytest_configure reads --dburi.
    if not _suite_mode(config):
        return
    workdir = tempfile.mkdtemp(prefix="terndb-alembic-suite-")
    config._terndb_suite_dir = workdir  # type: ignore[attr-defined]
    if not getattr(config.option, "dburi", None):
        config.option.dburi = [f"terndb:///{workdir}/db"]


def pytest_sessionstart(session: pytest.Session) -> None:
    workdir = getattr(session.config, "_terndb_suite_dir", None)
    if workdir:
        # After SQLAlchemy's plugin has read test.cfg (relative to the rootdir).
        session.config._terndb_old_cwd = os.getcwd()  # type: ignore[attr-defined]
        os.chdir(workdir)


def pytest_unconfigure(config: pytest.Config) -> None:
    workdir = getattr(config, "_terndb_suite_dir", None)
    if workdir:
        os.chdir(getattr(config, "_terndb_old_cwd", "/"))
        shutil.rmtree(workdir, ignore_errors=True)
