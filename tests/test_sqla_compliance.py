"""SQLAlchemy's dialect compliance suite, run as part of the main test run.

The suite needs its own pytest configuration (``tests/sqla/pytest.ini`` loads
SQLAlchemy's plugin, ``test.cfg`` is read from the rootdir), so it cannot be
collected in this process: it runs in a subprocess with exactly the command
documented in ``tests/sqla/conftest.py``, the same interpreter and the
inherited environment.  Any failure or error fails this test, listing the
failing suite tests.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "pytest", "tests/sqla", "--rootdir=tests/sqla", "-p", "no:cacheprovider", "-q"]
TIMEOUT_SECONDS = 1200      # about 40 s on 2 idle cores; generous for a loaded CI machine
_SUMMARY = re.compile(r"^=*\s*(?:\d+ \w+(?:, )?)+.* in [\d.]+s", re.M)
_COUNT = re.compile(r"(\d+) (passed|failed|errors?)\b")


def _counts(summary: str) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "error": 0}
    for number, word in _COUNT.findall(summary):
        counts["error" if word.startswith("error") else word] += int(number)
    return counts


def test_sqlalchemy_compliance_suite_has_no_failures() -> None:
    proc = subprocess.run(COMMAND, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    output = proc.stdout + proc.stderr
    summaries = _SUMMARY.findall(output)
    assert summaries, f"no pytest summary line (exit code {proc.returncode}):\n{output[-4000:]}"
    counts = _counts(summaries[-1])
    failing = [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    assert counts["failed"] == 0 and counts["error"] == 0 and proc.returncode == 0, (
        f"compliance suite: {summaries[-1].strip('= ')}\n" + "\n".join(failing or [output[-4000:]]))
    assert counts["passed"] > 1000, f"suspiciously few suite tests ran: {summaries[-1]}"
