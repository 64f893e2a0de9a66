"""pandas on terndb: read_sql through SQLAlchemy and through the DB-API connection, to_sql round trips."""
from __future__ import annotations

import datetime
import math

import numpy as np
import pandas as pd
import pandas.api.types as pdt
import pytest
import sqlalchemy as sa
from sqlalchemy import event, inspect
from sqlalchemy.dialects import registry

import terndb

registry.register("terndb", "terndb.sqla.dialect", "TerndbDialect")



@pytest.fixture
def engine(tmp_path):
    eng = sa.create_engine(f"terndb:///{tmp_path}/db")
    yield eng
    eng.dispose()


def sample_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "i": np.array([1, 2, 3], dtype="int64"),
        "f": [1.5, np.nan, -0.25],
        "s": ["a", None, "ü"],
        "b": [True, False, True],
        "t": pd.to_datetime(["2024-01-01 10:00:00", "1999-12-31 23:59:59.5", None], format="ISO8601"),
    })


def test_to_sql_read_sql_table_round_trip(engine):
    df = sample_frame()
    assert df.to_sql("frame", engine, index=False) == 3
    back = pd.read_sql_table("frame", engine)
    # read_sql_table converts by the reflected column types.
    assert [str(back[c].dtype) for c in "if"] == ["int64", "float64"]
    assert pdt.is_string_dtype(back["s"]) and pdt.is_datetime64_any_dtype(back["t"])
    # (bool comes back as 0/1 until reflection sees BOOLEAN: test_bool_column_dtype)
    pd.testing.assert_frame_equal(back.astype({"b": bool}), df, check_dtype=False)
    assert back["t"].isna().tolist() == [False, False, True]
    assert math.isnan(back["f"][1]) and pd.isna(back["s"][1])


def test_bool_column_dtype(engine):
    sample_frame().to_sql("frame", engine, index=False)
    assert str(pd.read_sql_table("frame", engine)["b"].dtype) == "bool"


def test_read_sql_query_through_engine(engine):
    sample_frame().to_sql("frame", engine, index=False)
    got = pd.read_sql("SELECT i, f, s, b FROM frame ORDER BY i", engine)
    assert list(got.columns) == ["i", "f", "s", "b"]
    assert [str(got[c].dtype) for c in "ifb"] == ["int64", "float64", "int64"]  # bool as stored: 0/1
    assert pdt.is_string_dtype(got["s"])
    assert got["b"].tolist() == [1, 0, 1]
    assert got["s"][0] == "a" and pd.isna(got["s"][1]) and got["s"][2] == "ü"
    dated = pd.read_sql("SELECT t FROM frame ORDER BY i", engine, parse_dates=["t"])
    assert pdt.is_datetime64_any_dtype(dated["t"])
    assert dated["t"][1] == pd.Timestamp("1999-12-31 23:59:59.5")
    params = pd.read_sql(sa.text("SELECT i FROM frame WHERE f > :lo ORDER BY i"), engine, params={"lo": 0})
    assert params["i"].tolist() == [1]


def test_read_sql_through_dbapi_connection(engine, tmp_path):
    sample_frame().to_sql("frame", engine, index=False)
    engine.dispose()   # one Database per process and path: connections share it anyway
    con = terndb.connect(tmp_path / "db")
    try:
        # pandas only knows sqlite3 among plain DB-API connections and says so.
        with pytest.warns(UserWarning, match="SQLAlchemy"):
            got = pd.read_sql("SELECT i, s FROM frame WHERE i >= ? ORDER BY i", con, params=(2,))
        assert got["i"].tolist() == [2, 3] and pd.isna(got["s"][0]) and got["s"][1] == "ü"
        with pytest.warns(UserWarning, match="SQLAlchemy"):
            chunks = list(pd.read_sql("SELECT i FROM frame ORDER BY i", con, chunksize=2))
        assert [c["i"].tolist() for c in chunks] == [[1, 2], [3]]
    finally:
        con.close()


def test_to_sql_index_and_append(engine):
    df = pd.DataFrame({"v": [10, 20]}, index=pd.Index([5, 6], name="k"))
    df.to_sql("kv", engine)                   # index=True: the index becomes a column, indexed
    assert [c["name"] for c in inspect(engine).get_columns("kv")] == ["k", "v"]
    assert [i["column_names"] for i in inspect(engine).get_indexes("kv")] == [["k"]]
    more = pd.DataFrame({"v": [30]}, index=pd.Index([7], name="k"))
    assert more.to_sql("kv", engine, if_exists="append") == 1
    got = pd.read_sql_table("kv", engine, index_col="k")
    assert got["v"].to_dict() == {5: 10, 6: 20, 7: 30}
    with pytest.raises(ValueError, match="already exists"):
        df.to_sql("kv", engine, if_exists="fail")


def test_to_sql_replace(engine):
    pd.DataFrame({"v": [1, 2]}).to_sql("r", engine, index=False)
    pd.DataFrame({"w": ["x"]}).to_sql("r", engine, index=False, if_exists="replace")
    assert pd.read_sql_table("r", engine).to_dict("list") == {"w": ["x"]}


def test_to_sql_uses_executemany_per_chunk(engine):
    calls: list[tuple[str, bool, int]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.startswith("INSERT"):
            calls.append((statement, executemany, len(parameters) if executemany else 1))

    n = 2500
    df = pd.DataFrame({"x": np.arange(n), "y": np.linspace(0, 1, n), "z": [f"r{i}" for i in range(n)]})
    assert df.to_sql("many", engine, index=False, chunksize=1000) == n
    # method=None: one executemany per chunk, not one statement per row.
    assert [(many, size) for _, many, size in calls] == [(True, 1000), (True, 1000), (True, 500)]
    assert all("VALUES (?, ?, ?)" in stmt for stmt, _, _ in calls)
    back = pd.read_sql("SELECT x, y, z FROM many ORDER BY x", engine)
    pd.testing.assert_frame_equal(back, df)


def test_to_sql_datetime_and_nulls(engine):
    df = pd.DataFrame({
        "when": [datetime.datetime(2024, 5, 1, 8, 30, 0, 123000), pd.NaT],
        "n": pd.array([7, None], dtype="Int64"),
        "x": [None, 2.5],
    })
    df.to_sql("nulls", engine, index=False)
    raw = pd.read_sql("SELECT \"when\", n, x FROM nulls", engine)
    assert raw["when"][0] == "2024-05-01 08:30:00.123000" and pd.isna(raw["when"][1])  # ISO text as stored
    assert raw["n"].tolist()[0] == 7 and pd.isna(raw["n"].tolist()[1])
    typed = pd.read_sql_table("nulls", engine)
    assert typed["when"][0] == pd.Timestamp("2024-05-01 08:30:00.123") and pd.isna(typed["when"][1])
    assert pd.isna(typed["x"][0]) and typed["x"][1] == 2.5


def typed_frame() -> pd.DataFrame:
    """One column per kind the issue names, each with a missing value."""
    return pd.DataFrame({
        "i": np.array([1, 2, 3], dtype="int64"),
        "f": [0.5, np.nan, 2.0],
        "s": ["a", None, "ç"],
        "b": [True, False, True],
        "t": pd.to_datetime(["2024-01-01 10:00:00", None, "2020-02-29 00:00:01.25"], format="ISO8601"),
        "doc": [{"k": [1, 2], "n": None}, None, ["x", {"y": 1.5}]],
    })


def _read_both_ways(eng: sa.Engine) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = sa.Table("typed", sa.MetaData(), autoload_with=eng)
    return pd.read_sql_table("typed", eng), pd.read_sql(sa.select(table), eng)


def test_typed_round_trip_with_json_matches_sqlite(engine, tmp_path):
    """to_sql then read_sql (by table, and by a typed select): terndb gives SQLite's dtypes and values."""
    lite = sa.create_engine(f"sqlite:///{tmp_path}/lite.db")
    got = {}
    for eng in (engine, lite):
        assert typed_frame().to_sql("typed", eng, index=False, dtype={"doc": sa.JSON}) == 3
        got[eng.dialect.name] = _read_both_ways(eng)
    lite.dispose()
    for ours, theirs in zip(got["terndb"], got["sqlite"]):
        pd.testing.assert_frame_equal(ours, theirs)
        assert {c: str(ours[c].dtype) for c in "ifbt"} == {
            "i": "int64", "f": "float64", "b": "bool", "t": "datetime64[us]"}
        assert pdt.is_string_dtype(ours["s"]) and pd.isna(ours["s"][1])
        assert ours["doc"].tolist() == [{"k": [1, 2], "n": None}, None, ["x", {"y": 1.5}]]
        assert pd.isna(ours["t"][1]) and ours["t"][2] == pd.Timestamp("2020-02-29 00:00:01.25")
        assert math.isnan(ours["f"][1])


def test_to_sql_method_multi_is_one_statement_per_chunk(engine):
    statements: list[tuple[bool, int]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.startswith("INSERT"):
            statements.append((executemany, statement.count("(?, ?)")))

    df = pd.DataFrame({"x": np.arange(250), "y": [f"v{i}" for i in range(250)]})
    assert df.to_sql("multi", engine, index=False, chunksize=100, method="multi") == 250
    # Multi-row VALUES: one statement per chunk of 100, 100 and 50 rows.
    assert statements == [(False, 100), (False, 100), (False, 50)]
    pd.testing.assert_frame_equal(pd.read_sql("SELECT x, y FROM multi ORDER BY x", engine), df,
                                  check_dtype=False)
