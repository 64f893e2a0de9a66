"""`terndb check`: a healthy database passes; damaged rows and indexes are reported."""
from __future__ import annotations

import subprocess
import sys

import terndb
from terndb import cli
from terndb.engine.integrity import check_database


def make_db(path: str) -> None:
    con = terndb.connect(path)
    con.executescript("""
        CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT UNIQUE, b INT);
        CREATE INDEX ib ON t(b);
        CREATE INDEX ie ON t(b * 2);
        CREATE VIEW v AS SELECT a FROM t WHERE b > 3;
    """)
    con.executemany("INSERT INTO t(a, b) VALUES (?, ?)", [(str(i), i % 7) for i in range(300)])
    con.execute("DELETE FROM t WHERE b = 1")
    con.execute("UPDATE t SET b = b + 10 WHERE b = 2")
    con.execute("ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'd'")
    con.execute("CREATE INDEX ic ON t(c)")
    con.commit()
    con.close()


def tamper(path: str, work) -> None:
    con = terndb.connect(path)
    con.execute("SELECT 1").fetchall()
    schema = con._session.schema
    store = con._db.store
    w = store.begin_write(5)
    work(schema, store, w)
    w.commit()
    con.close()


def run_check(path: str) -> tuple[int, str]:
    import io
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["check", path], stdout=out, stderr=err)
    return status, out.getvalue() + err.getvalue()


def test_healthy_database_passes(tmp_path) -> None:
    path = str(tmp_path / "db")
    make_db(path)
    status, text = run_check(path)
    assert status == 0, text
    assert text.startswith("ok: 1 tables, ")


def test_missing_and_stray_index_entries_are_reported(tmp_path) -> None:
    path = str(tmp_path / "db")
    make_db(path)

    def break_index(schema, store, w):
        h = store.db(schema.indexes["ib"].db_name, txn=w)
        with w.txn.cursor(db=h) as cur:
            cur.first()
            cur.delete()
        w.txn.put(b"\x15stray", b"", db=h)
    tamper(path, break_index)
    status, text = run_check(path)
    assert status == 1
    assert "index ib: entry" in text and "have no entry" in text


def test_damaged_row_is_reported(tmp_path) -> None:
    path = str(tmp_path / "db")
    make_db(path)

    def break_row(schema, store, w):
        h = store.db(schema.tables["t"].db_name, txn=w)
        with w.txn.cursor(db=h) as cur:
            cur.first()
            w.txn.put(cur.key(), b"\x05\xff\xff", db=h)
    tamper(path, break_row)
    con = terndb.connect(path)
    report = check_database(con._db)
    con.close()
    assert not report.ok
    assert any("table t row" in p for p in report.problems)


def test_cli_entry_point_runs(tmp_path) -> None:
    path = str(tmp_path / "db")
    make_db(path)
    proc = subprocess.run([sys.executable, "-m", "terndb", "check", path], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok:")
