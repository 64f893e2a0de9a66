"""`.import` in the shell and terndb.importer: CSV and Parquet files into tables."""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import terndb
from terndb import cli
from terndb.importer import import_file


def test_csv_import_through_the_shell(tmp_path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("id,name,score\n" + "".join(f"{i},name{i},{i * 0.5}\n" for i in range(1, 2001)))
    db = str(tmp_path / "db")
    out, err = io.StringIO(), io.StringIO()
    status = cli.main([db, f".import {csv} people", "SELECT count(*), sum(id), max(name) FROM people",
                       "SELECT typeof(id), typeof(name), typeof(score) FROM people LIMIT 1"],
                      stdin=io.StringIO(), stdout=out, stderr=err)
    assert status == 0, err.getvalue()
    assert out.getvalue().splitlines() == ["imported 2,000 rows into people", "2000|2001000|name999",
                                           "integer|text|real"]


def test_parquet_import_appends_to_an_existing_table(tmp_path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1, 2, None], "b": ["x", None, "z"]}), path)
    con = terndb.connect(str(tmp_path / "db"))
    con.execute("CREATE TABLE t(a INTEGER, b TEXT, c TEXT DEFAULT 'd')")
    seen = []
    assert import_file(con, str(path), "t", progress=seen.append) == 3
    assert import_file(con, str(path), "t") == 3
    assert seen == [3]
    assert con.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall() == [
        (1, "x", "d"), (2, None, "d"), (None, "z", "d")] * 2


def test_bad_files_are_clear_errors(tmp_path) -> None:
    con = terndb.connect(str(tmp_path / "db"))
    with pytest.raises(terndb.ProgrammingError, match="no such file"):
        import_file(con, str(tmp_path / "nope.csv"), "t")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    with pytest.raises(terndb.DataError, match="cannot parse"):
        import_file(con, str(bad), "t")
    with pytest.raises(terndb.ProgrammingError, match="format"):
        import_file(con, str(bad), "t", fmt="xlsx")
