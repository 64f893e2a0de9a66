"""SQLite's sqllogictest corpus, run through the shared runner (../shared/slt).

The foundation must pass select1.test entirely; the evidence files and the
broader corpus are tracked by the SQL-breadth work.  Skipped when the shared
corpus is not beside the checkout (it is in CI and on developer machines).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SLT_DIR = Path(__file__).resolve().parents[2] / "shared" / "slt"
RUNNER = SLT_DIR / "slt.py"

pytestmark = pytest.mark.skipif(not RUNNER.exists(), reason="shared/slt corpus not present")


def run_slt(*files: str, timeout: float = 300) -> tuple[int, int, int, str]:
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--module", "terndb", "--max-failures-shown", "5",
         *[str(SLT_DIR / "test" / f) for f in files]],
        capture_output=True, text=True, timeout=timeout)
    m = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped\s*$", proc.stdout, re.M)
    assert m, proc.stdout[-2000:] + proc.stderr[-2000:]
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), proc.stdout


def test_select1_passes_entirely() -> None:
    passed, failed, _skipped, out = run_slt("select1.test")
    assert failed == 0, out[-3000:]
    assert passed == 1031
