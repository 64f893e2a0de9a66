"""Alembic's own test suite (``alembic.testing.suite``) against terndb, in a subprocess.

The suite runs on SQLAlchemy's pytest plugin with its own configuration
(``tests/alembic_suite``), which cannot share this process's pytest session;
the subprocess runs it exactly as a developer would and must report no failures.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).parent / "alembic_suite"


def test_alembic_suite_passes():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(SUITE), f"--rootdir={SUITE}", "-p", "no:cacheprovider", "-q"],
        capture_output=True, text=True, timeout=600, env=os.environ.copy(), cwd=SUITE)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 50, summary   # the suite really ran
    assert "failed" not in summary and "error" not in summary, summary
