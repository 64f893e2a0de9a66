"""The SQLAlchemy dialect (terndb.sqla): URLs, Core, reflection, types, ORM, transactions, Alembic."""
from __future__ import annotations

import datetime
import decimal
import enum
import importlib.metadata
import os
import runpy
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc, inspect, select
from sqlalchemy.dialects import registry
from sqlalchemy.engine import make_url
from sqlalchemy.orm import (DeclarativeBase, Mapped, Session, joinedload, mapped_column, relationship,
                            selectinload)

import terndb
from terndb.sqla.dialect import TerndbDialect

# The editable install may predate the entry points: register explicitly too.
registry.register("terndb", "terndb.sqla.dialect", "TerndbDialect")
registry.register("terndb.terndb", "terndb.sqla.dialect", "TerndbDialect")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def engine(tmp_path):
    eng = sa.create_engine(f"terndb:///{tmp_path}/db")
    yield eng
    eng.dispose()


# -- URLs, registration, connection-level behaviour ------------------------------------

@pytest.mark.parametrize("url, args, opts", [
    ("terndb://", [":memory:"], {}),
    ("terndb:///:memory:", [":memory:"], {}),
    ("terndb:///rel/dir", ["rel/dir"], {}),
    ("terndb:////abs/dir", ["/abs/dir"], {}),
    ("terndb+terndb:////abs/dir", ["/abs/dir"], {}),
    ("terndb:////d?timeout=2.5&durability=normal&map_size=1048576&readonly=true",
     ["/d"], {"timeout": 2.5, "durability": "normal", "map_size": 1048576, "readonly": True}),
    ("terndb:////d?isolation_level=autocommit", ["/d"], {"isolation_level": None}),
    ("terndb:////d?isolation_level=immediate&check_same_thread=1", ["/d"],
     {"isolation_level": "IMMEDIATE", "check_same_thread": True}),
])
def test_url_to_connect_args(url, args, opts):
    got_args, got_opts = TerndbDialect().create_connect_args(make_url(url))
    assert got_args == args
    assert got_opts == {"check_same_thread": False, **opts}


@pytest.mark.parametrize("url", ["terndb:////d?bogus=1", "terndb:////d?readonly=maybe",
                                 "terndb://user@host/d", "terndb:////d?isolation_level=dirty"])
def test_bad_urls_are_refused(url):
    with pytest.raises(exc.ArgumentError):
        TerndbDialect().create_connect_args(make_url(url))


def test_pool_class_by_url():
    assert TerndbDialect.get_pool_class(make_url("terndb://")) is sa.pool.SingletonThreadPool
    assert TerndbDialect.get_pool_class(make_url("terndb:////x")) is sa.pool.QueuePool


def test_entry_points_declared_in_pyproject():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    eps = data["project"]["entry-points"]["sqlalchemy.dialects"]
    assert eps["terndb"] == "terndb.sqla.dialect:TerndbDialect"
    assert eps["terndb.terndb"] == "terndb.sqla.dialect:TerndbDialect"
    assert "terndb.sqla" in data["tool"]["setuptools"]["packages"]


@pytest.mark.skipif(not any(ep.name == "terndb" for ep in importlib.metadata.entry_points(group="sqlalchemy.dialects")),
                    reason="installed metadata predates the entry points (reinstall the project)")
def test_entry_point_loads_dialect():
    ep = next(ep for ep in importlib.metadata.entry_points(group="sqlalchemy.dialects") if ep.name == "terndb")
    assert ep.load() is TerndbDialect


def test_dialect_basics(engine):
    d = engine.dialect
    assert (d.name, d.driver, d.supports_statement_cache) == ("terndb", "terndb", True)
    assert d.loaded_dbapi is terndb
    assert d.insert_returning and d.update_returning and d.delete_returning and d.use_insertmanyvalues
    with engine.connect() as c:
        assert d.server_version_info == tuple(int(p) for p in terndb.__version__.split("."))
        assert c.exec_driver_sql("SELECT 1").scalar() == 1
        assert d.do_ping(c.connection.dbapi_connection)
        assert d.default_schema_name == "main"


def test_memory_engine():
    eng = sa.create_engine("terndb://")
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
    with eng.connect() as c:   # same thread: same pooled connection, same database
        assert c.exec_driver_sql("SELECT x FROM t").scalar() == 1
    eng.dispose()


def test_is_disconnect_on_closed_connection(engine):
    raw = engine.raw_connection()
    dbapi_con = raw.dbapi_connection
    dbapi_con.close()
    with pytest.raises(terndb.ProgrammingError) as info:
        dbapi_con.cursor()
    assert engine.dialect.is_disconnect(info.value, None, None)
    assert not engine.dialect.is_disconnect(terndb.ProgrammingError("no such table: x"), None, None)
    raw.invalidate()


# -- Core -----------------------------------------------------------------------------

def make_core_metadata() -> tuple[sa.MetaData, sa.Table, sa.Table]:
    md = sa.MetaData()
    users = sa.Table(
        "users", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("score", sa.Integer, server_default=sa.text("0"), nullable=False),
        sa.Column("kind", sa.String(10), server_default="member"),
        sa.CheckConstraint("score >= 0", name="ck_users_score"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    posts = sa.Table(
        "posts", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", name="fk_posts_user"), nullable=False),
        sa.Column("slug", sa.String(40)),
        sa.Column("rank", sa.Integer),
        sa.Index("ix_posts_user_rank", "user_id", sa.desc("rank")),
        sa.Index("ux_posts_slug", "slug", unique=True),
    )
    return md, users, posts


def test_core_crud(engine):
    md, users, posts = make_core_metadata()
    md.create_all(engine)
    with engine.begin() as c:
        r = c.execute(users.insert().values(name="ada"))
        assert r.inserted_primary_key == (1,)
        c.execute(users.insert(), [{"name": "bob", "score": 3}, {"name": "cy", "score": 5}])
        c.execute(posts.insert(), [{"user_id": 1, "slug": "a", "rank": 1}, {"user_id": 2, "slug": "b", "rank": 2}])
    with engine.connect() as c:
        assert c.execute(select(users.c.name, users.c.score, users.c.kind).order_by(users.c.id)).all() == [
            ("ada", 0, "member"), ("bob", 3, "member"), ("cy", 5, "member")]
        joined = c.execute(select(users.c.name, posts.c.slug).join_from(users, posts)
                           .where(posts.c.rank > 1)).all()
        assert joined == [("bob", "b")]
        assert c.execute(select(sa.func.count()).select_from(users).where(users.c.name.in_(["ada", "cy"]))).scalar() == 2
        assert c.execute(select(users.c.name).order_by(users.c.id).limit(1).offset(1)).scalar() == "bob"
    with engine.begin() as c:
        assert c.execute(users.update().where(users.c.score > 0).values(score=users.c.score + 1)).rowcount == 2
        assert c.execute(posts.delete().where(posts.c.slug == "a")).rowcount == 1
    with engine.connect() as c:
        assert c.execute(select(sa.func.sum(users.c.score))).scalar() == 10
        assert c.execute(select(sa.func.count()).select_from(posts)).scalar() == 1


def test_integrity_errors_map_to_sqlalchemy(engine):
    md, users, _ = make_core_metadata()
    md.create_all(engine)
    with engine.begin() as c:
        c.execute(users.insert().values(name="ada"))
    with pytest.raises(exc.IntegrityError):
        with engine.begin() as c:
            c.execute(users.insert().values(name="ada"))
    with pytest.raises(exc.IntegrityError):
        with engine.begin() as c:
            c.execute(users.insert().values(name="neg", score=-1))


def test_returning_and_upsert(engine):
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    md, users, _ = make_core_metadata()
    md.create_all(engine)
    with engine.begin() as c:
        new_id = c.execute(users.insert().values(name="x").returning(users.c.id)).scalar_one()
        # executemany + RETURNING goes through insertmanyvalues (multi-row VALUES ... RETURNING).
        ids = c.execute(users.insert().returning(users.c.id, sort_by_parameter_order=True),
                        [{"name": "a"}, {"name": "b"}]).scalars().all()
        assert ids == [new_id + 1, new_id + 2]
        stmt = sqlite_insert(users).values(id=new_id, name="y")
        c.execute(stmt.on_conflict_do_update(index_elements=[users.c.id], set_={"name": stmt.excluded.name}))
        assert c.execute(select(users.c.name).where(users.c.id == new_id)).scalar_one() == "y"
        gone = c.execute(users.delete().where(users.c.id == new_id).returning(users.c.name)).scalar_one()
        assert gone == "y"


# -- reflection ----------------------------------------------------------------------

def test_reflection_round_trip(engine):
    md, _, _ = make_core_metadata()
    md.create_all(engine)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE VIEW heavy AS SELECT name FROM users WHERE score > 10")
    insp = inspect(engine)
    assert insp.get_table_names() == ["posts", "users"]
    assert insp.get_view_names() == ["heavy"]
    assert insp.get_view_definition("heavy") == "CREATE VIEW heavy AS SELECT name FROM users WHERE score > 10"
    assert [c["name"] for c in insp.get_columns("heavy")] == ["name"]
    assert insp.has_table("users") and insp.has_table("heavy") and not insp.has_table("nope")
    assert insp.has_index("posts", "ix_posts_user_rank") and not insp.has_index("posts", "nope")
    assert insp.get_temp_table_names() == []

    cols = {c["name"]: c for c in insp.get_columns("users")}
    assert list(cols) == ["id", "name", "score", "kind"]
    assert [cols[n]["nullable"] for n in cols] == [False, False, False, True]
    assert cols["score"]["default"] == "0" and cols["kind"]["default"] == "'member'"
    assert cols["id"]["primary_key"] == 1 and cols["name"]["primary_key"] == 0

    assert insp.get_pk_constraint("users")["constrained_columns"] == ["id"]
    assert insp.get_foreign_keys("posts") == [{
        "name": "fk_posts_user", "constrained_columns": ["user_id"], "referred_schema": None,
        "referred_table": "users", "referred_columns": ["id"], "options": {}}]
    indexes = {i["name"]: i for i in insp.get_indexes("posts")}
    assert set(indexes) == {"ix_posts_user_rank", "ux_posts_slug"}
    assert indexes["ix_posts_user_rank"]["column_names"] == ["user_id", "rank"]
    assert indexes["ix_posts_user_rank"]["column_sorting"] == {"rank": ("desc",)}
    assert indexes["ux_posts_slug"]["unique"] and not indexes["ix_posts_user_rank"]["unique"]
    assert insp.get_unique_constraints("users") == [{"name": "uq_users_name", "column_names": ["name"]}]
    assert insp.get_check_constraints("users") == [{"name": "ck_users_score", "sqltext": "score >= 0"}]
    with pytest.raises(exc.NoSuchTableError):
        insp.get_columns("nope")

    # MetaData.reflect() rebuilds the same structure.
    md2 = sa.MetaData()
    md2.reflect(engine)
    for name in ("users", "posts"):
        made, got = md.tables[name], md2.tables[name]
        assert [c.name for c in got.columns] == [c.name for c in made.columns]
        assert [c.nullable for c in got.columns] == [c.nullable for c in made.columns]
        assert [c.name for c in got.primary_key] == [c.name for c in made.primary_key]
        assert {fk.target_fullname for fk in got.foreign_keys} == {fk.target_fullname for fk in made.foreign_keys}
        assert {i.name for i in got.indexes} == {i.name for i in made.indexes}
    # A reflected table can be used to write and read.
    with engine.begin() as c:
        c.execute(md2.tables["users"].insert().values(name="zed"))
        assert c.execute(select(md2.tables["users"].c.score)).scalar() == 0


def test_reflection_sees_own_uncommitted_ddl(engine):
    with engine.connect() as c:
        c.exec_driver_sql("CREATE TABLE a (x INTEGER)")   # transactional: BEGIN issued first
        assert inspect(c).get_table_names() == ["a"]
        c.rollback()
        assert inspect(c).get_table_names() == []


def test_reflected_pk_name_and_composite_pk(engine):
    with engine.begin() as c:
        c.exec_driver_sql('CREATE TABLE kv (k TEXT, n INTEGER, v BLOB, CONSTRAINT "pk kv" PRIMARY KEY (n, k))')
    pk = inspect(engine).get_pk_constraint("kv")
    assert pk == {"constrained_columns": ["n", "k"], "name": "pk kv"}
    cols = {c["name"]: c["primary_key"] for c in inspect(engine).get_columns("kv")}
    assert cols == {"k": 2, "n": 1, "v": 0}


def test_reflected_types_are_declared_types(engine):
    md = sa.MetaData()
    sa.Table("t", md, sa.Column("s", sa.String(30)), sa.Column("b", sa.Boolean), sa.Column("n", sa.Numeric(10, 2)),
             sa.Column("d", sa.DateTime), sa.Column("f", sa.Float), sa.Column("x", sa.LargeBinary))
    md.create_all(engine)
    types = {c["name"]: c["type"] for c in inspect(engine).get_columns("t")}
    assert isinstance(types["s"], sa.VARCHAR) and types["s"].length == 30
    assert isinstance(types["b"], sa.BOOLEAN)
    assert isinstance(types["n"], sa.NUMERIC) and (types["n"].precision, types["n"].scale) == (10, 2)
    assert isinstance(types["d"], sa.DATETIME)
    assert isinstance(types["f"], sa.FLOAT)
    assert isinstance(types["x"], sa.BLOB)


def test_reflected_fk_actions(engine):
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        c.exec_driver_sql("CREATE TABLE ch (pid INTEGER REFERENCES p (id) ON DELETE CASCADE ON UPDATE SET NULL)")
    assert inspect(engine).get_foreign_keys("ch")[0]["options"] == {"ondelete": "CASCADE", "onupdate": "SET NULL"}


def test_reflected_default_with_collation(engine):
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (s TEXT DEFAULT 'x' COLLATE NOCASE)")
    col = inspect(engine).get_columns("t")[0]
    assert (col["default"], col.get("collation")) == ("'x'", "nocase")


def test_temp_tables_reflect_separately(engine):
    with engine.connect() as c:
        c.exec_driver_sql("CREATE TEMPORARY TABLE scratch (x INTEGER)")
        insp = inspect(c)
        assert insp.get_temp_table_names() == ["scratch"]
        assert "scratch" not in insp.get_table_names()
        c.commit()


def test_drop_all(engine):
    md, _, _ = make_core_metadata()
    md.create_all(engine)
    md.drop_all(engine)
    assert inspect(engine).get_table_names() == []


# -- types ---------------------------------------------------------------------------

class Color(enum.Enum):
    red = "red"
    green = "green"


def test_type_round_trips(engine):
    md = sa.MetaData()
    t = sa.Table(
        "typed", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("flag", sa.Boolean),
        sa.Column("day", sa.Date),
        sa.Column("at", sa.DateTime),
        sa.Column("at_tz", sa.DateTime(timezone=True)),
        sa.Column("clock", sa.Time),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("ratio", sa.Float),
        sa.Column("blob", sa.LargeBinary),
        sa.Column("uid", sa.Uuid),
        sa.Column("color", sa.Enum(Color)),
        sa.Column("doc", sa.JSON),
        sa.Column("big", sa.BigInteger),
        sa.Column("text", sa.UnicodeText),
    )
    md.create_all(engine)
    tz = datetime.timezone(datetime.timedelta(hours=2))
    row = {
        "flag": True, "day": datetime.date(1899, 12, 31), "at": datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
        "at_tz": datetime.datetime(2024, 1, 1, 12, 0, tzinfo=tz), "clock": datetime.time(7, 30, 1, 5),
        "amount": decimal.Decimal("1234567.89"), "ratio": 0.125, "blob": b"\x00\xffbin",
        "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"), "color": Color.green,
        "doc": {"a": [1, 2, {"b": None}], "s": "é"}, "big": 2 ** 62, "text": "naïve ☃",
    }
    with engine.begin() as c:
        c.execute(t.insert(), row)
        c.execute(t.insert().values(id=2))
    with engine.connect() as c:
        got = c.execute(select(t).order_by(t.c.id)).mappings().all()
        assert {k: got[0][k] for k in row} == row
        assert isinstance(got[0]["amount"], decimal.Decimal)
        assert all(got[1][k] is None for k in row)
        # Dates compare in time order as stored text.
        assert c.execute(select(t.c.id).where(t.c.at > datetime.datetime(2024, 2, 29, 23, 59, 58))).scalar() == 1
        assert c.execute(select(t.c.id).where(t.c.uid == row["uid"])).scalar() == 1
        # Boolean is INTEGER 0/1 as stored; Uuid is 32 hex digits.
        raw = c.exec_driver_sql("SELECT flag, uid, at FROM typed WHERE id = 1").one()
        assert raw == (1, row["uid"].hex, "2024-02-29 23:59:58.123456")


# -- JSON -------------------------------------------------------------------------------

_DOCS = [
    {"a": {"b": [1, 2, {"c": "x"}]}, "n": 5, "s": "hi", "f": 1.5, "t": True, "k.x": 7, "u": "\U0001F600"},
    {"a": {"b": [3]}, "n": -2, "s": "ab", "f": 0.25, "t": False, "k.x": None},
    [10, "two", 3.0, {"deep": [None, 4]}],
    "just text", 42, None,
]


def _json_table(md):
    return sa.Table("docs", md, sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("doc", sa.JSON), sa.Column("strict", sa.JSON(none_as_null=True)))


def _json_expressions(t):
    """Index/path operators with every typed accessor, as a user would write them."""
    d = t.c.doc
    return {
        "nested_index": d["a"]["b"],
        "path": d[("a", "b", 2, "c")],
        "array_index": d[1],
        "path_into_array": d[(3, "deep", 1)],
        "dotted_key": d["k.x"],
        "as_integer": d["n"].as_integer(),
        "as_string": d["s"].as_string(),
        "as_float": d["f"].as_float(),
        "as_boolean": d["t"].as_boolean(),
        "as_json": d["a"].as_json(),
        "as_numeric": d["f"].as_numeric(10, 3),
        "path_as_string": d[("a", "b", 2, "c")].as_string(),
        "path_as_integer": d[("a", "b", 0)].as_integer(),
        "unicode": d["u"].as_string(),
    }


@pytest.fixture
def json_engines(engine, tmp_path):
    """The same JSON rows in terndb and in SQLite (SQLAlchemy's own dialect), to compare."""
    lite = sa.create_engine(f"sqlite:///{tmp_path}/lite.db")
    md = sa.MetaData()
    t = _json_table(md)
    rows = [{"id": i, "doc": doc, "strict": doc} for i, doc in enumerate(_DOCS, 1)]
    for eng in (engine, lite):
        md.create_all(eng)
        with eng.begin() as c:
            c.execute(t.insert(), rows)
    yield engine, lite, t
    lite.dispose()


@pytest.mark.parametrize("name", list(_json_expressions(_json_table(sa.MetaData()))))
def test_json_operators_match_sqlite(json_engines, name):
    engine, lite, t = json_engines
    expr = _json_expressions(t)[name]
    query = select(t.c.id, expr.label("v")).order_by(t.c.id)
    got = {}
    for eng in (engine, lite):
        with eng.connect() as c:
            got[eng.dialect.name] = c.execute(query).all()
    assert got["terndb"] == got["sqlite"]
    assert any(v is not None for _, v in got["terndb"])   # the expression found something


def test_json_comparisons_and_order_by(json_engines):
    engine, lite, t = json_engines
    d = t.c.doc
    queries = [
        select(t.c.id).where(d["n"].as_integer() == 5),
        select(t.c.id).where(d["n"].as_integer() < 0),
        select(t.c.id).where(d[("a", "b", 2, "c")].as_string() == "x"),
        select(t.c.id).where(d["t"].as_boolean().is_(False)),
        select(t.c.id).where(d["f"].as_float() > 1.0),
        select(t.c.id).where(sa.cast(d["s"], sa.String) == '"ab"'),
        select(t.c.id).order_by(d["n"].as_integer().desc(), t.c.id),
        select(t.c.id).order_by(d["s"].as_string().nulls_last(), t.c.id),
        select(t.c.id, d["f"].as_float()).where(d["f"].as_float().is_not(None)).order_by(d["f"].as_float()),
    ]
    for q in queries:
        with engine.connect() as c1, lite.connect() as c2:
            assert c1.execute(q).all() == c2.execute(q).all(), str(q)


def test_json_null_versus_sql_null(engine):
    md = sa.MetaData()
    t = _json_table(md)
    md.create_all(engine)
    with engine.begin() as c:
        c.execute(t.insert(), [{"id": 1, "doc": None, "strict": None},
                               {"id": 2, "doc": sa.JSON.NULL, "strict": sa.JSON.NULL},
                               {"id": 3, "doc": sa.null(), "strict": {"k": 1}}])
        raw = c.exec_driver_sql("SELECT id, doc, strict FROM docs ORDER BY id").all()
        # none_as_null=False stores None as JSON 'null'; none_as_null=True as SQL NULL;
        # JSON.NULL is always JSON 'null'; sa.null() is always SQL NULL.
        # (JSON columns read back minified: JSONB storage renders json() text.)
        assert raw == [(1, "null", None), (2, "null", "null"), (3, None, '{"k":1}')]
        assert c.execute(select(t.c.id).where(t.c.doc.is_(None))).scalars().all() == [3]
        assert c.execute(select(t.c.id).where(t.c.strict.is_(None))).scalars().all() == [1]
        assert c.execute(select(t.c.doc, t.c.strict).order_by(t.c.id)).all() == [
            (None, None), (None, None), (None, {"k": 1})]


class JsonBase(DeclarativeBase):
    pass


class Profile(JsonBase):
    __tablename__ = "profile"
    id: Mapped[int] = mapped_column(primary_key=True)
    settings: Mapped[dict] = mapped_column(sa.JSON)
    tags: Mapped[list | None] = mapped_column(sa.JSON)


def test_json_orm_round_trip(engine):
    JsonBase.metadata.create_all(engine)
    values = [{"theme": "dark", "sizes": [1, 2.5], "nested": {"on": True, "none": None}}, {}, {"e": "é☃"}]
    with Session(engine) as s:
        s.add_all([Profile(id=i, settings=v, tags=[i, str(i)]) for i, v in enumerate(values, 1)])
        s.commit()
    with Session(engine) as s:
        got = s.scalars(select(Profile).order_by(Profile.id)).all()
        assert [p.settings for p in got] == values
        assert [p.tags for p in got] == [[1, "1"], [2, "2"], [3, "3"]]
        # Replacing the value is a change the unit of work writes.
        got[0].settings = {**got[0].settings, "theme": "light"}
        s.commit()
        hit = s.scalars(select(Profile.id).where(Profile.settings["theme"].as_string() == "light")).all()
        assert hit == [1]
        assert s.scalars(select(Profile.id).where(Profile.settings[("nested", "on")].as_boolean())).all() == [1]


def test_literal_binds_render_terndb_sql(engine):
    t = sa.table("t", sa.column("d", sa.Date), sa.column("b", sa.Boolean))
    sql = str(select(t).where(t.c.d == datetime.date(2020, 1, 2), t.c.b.is_(True))
              .compile(engine, compile_kwargs={"literal_binds": True}))
    assert "'2020-01-02'" in sql and "IS 1" in sql


# -- transactions -----------------------------------------------------------------------

def test_ddl_is_transactional(engine):
    with engine.connect() as c:
        c.exec_driver_sql("CREATE TABLE gone (x INTEGER)")
        c.rollback()
    assert inspect(engine).get_table_names() == []
    md, _, _ = make_core_metadata()
    with pytest.raises(exc.IntegrityError):
        with engine.begin() as c:
            md.create_all(c)
            c.exec_driver_sql("INSERT INTO users (name, score) VALUES ('x', -5)")
    assert inspect(engine).get_table_names() == []


def test_savepoints_core(engine):
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with engine.begin() as c:
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
        sp = c.begin_nested()
        c.exec_driver_sql("INSERT INTO t VALUES (2)")
        sp.rollback()
        sp = c.begin_nested()
        c.exec_driver_sql("INSERT INTO t VALUES (3)")
        sp.commit()
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars().all() == [1, 3]


def test_autocommit_isolation(engine):
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with engine.connect() as c:
        assert c.get_isolation_level() == "SERIALIZABLE"
        assert engine.dialect.get_isolation_level_values(c.connection.dbapi_connection) == ["SERIALIZABLE", "AUTOCOMMIT"]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        assert c.get_isolation_level() == "AUTOCOMMIT"
        assert c.connection.dbapi_connection.isolation_level is None
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
        c.rollback()          # nothing to undo: the statement committed on its own
        with engine.connect() as other:  # a second pooled connection sees it at once
            assert other.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    # The connection goes back to the pool in the default mode.
    with engine.connect() as c:
        assert c.get_isolation_level() == "SERIALIZABLE"
        c.exec_driver_sql("INSERT INTO t VALUES (2)")
        c.rollback()
        assert c.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1


def test_autocommit_engine_wide(tmp_path):
    eng = sa.create_engine(f"terndb:///{tmp_path}/db", isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
    with eng.connect() as c:
        assert c.exec_driver_sql("SELECT x FROM t").scalar() == 1
    eng.dispose()


# -- ORM ----------------------------------------------------------------------------------

class Base(DeclarativeBase):
    pass


member_groups = sa.Table(
    "member_groups", Base.metadata,
    sa.Column("member_id", sa.ForeignKey("members.id"), primary_key=True),
    sa.Column("group_id", sa.ForeignKey("groups.id"), primary_key=True),
)


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(30))
    members: Mapped[list["Member"]] = relationship(back_populates="team", order_by="Member.id")


class Member(Base):
    __tablename__ = "members"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(30))
    joined: Mapped[datetime.datetime] = mapped_column(default=lambda: datetime.datetime(2024, 1, 1))
    team_id: Mapped[int | None] = mapped_column(sa.ForeignKey("teams.id"))
    team: Mapped[Team | None] = relationship(back_populates="members")
    groups: Mapped[list["Group"]] = relationship(secondary=member_groups, back_populates="members")


class Group(Base):
    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(30))
    members: Mapped[list[Member]] = relationship(secondary=member_groups, back_populates="groups")


def test_orm_relationships_and_loading(engine):
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        g1, g2 = Group(title="g1"), Group(title="g2")
        red = Team(name="red", members=[Member(name="ann", groups=[g1, g2]), Member(name="ben", groups=[g1])])
        blue = Team(name="blue", members=[Member(name="cat")])
        s.add_all([red, blue])
        s.commit()
        assert [m.id for m in red.members] == [1, 2]

    with Session(engine) as s:
        teams = s.scalars(select(Team).options(selectinload(Team.members).selectinload(Member.groups))
                          .order_by(Team.name)).all()
        assert [(t.name, [(m.name, sorted(g.title for g in m.groups)) for m in t.members]) for t in teams] == [
            ("blue", [("cat", [])]), ("red", [("ann", ["g1", "g2"]), ("ben", ["g1"])])]
        members = s.scalars(select(Member).options(joinedload(Member.team)).order_by(Member.id)).all()
        assert [m.team.name for m in members] == ["red", "red", "blue"]
        assert members[0].joined == datetime.datetime(2024, 1, 1)
        g1 = s.scalars(select(Group).where(Group.title == "g1")).one()
        assert sorted(m.name for m in g1.members) == ["ann", "ben"]

        # Updates, a many-to-many removal and a delete in one flush.
        ben = s.get(Member, 2)
        ben.name = "benedict"
        ben.groups.clear()
        s.delete(s.get(Member, 3))
        s.commit()
        assert s.scalar(select(sa.func.count()).select_from(member_groups)) == 2
        assert s.scalars(select(Member.name).order_by(Member.id)).all() == ["ann", "benedict"]


def test_orm_begin_nested(engine):
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Team(name="kept"))
        with s.begin_nested():
            s.add(Team(name="also kept"))
        nested = s.begin_nested()
        s.add(Team(name="dropped"))
        s.flush()
        nested.rollback()
        s.commit()
    with Session(engine) as s:
        assert s.scalars(select(Team.name).order_by(Team.id)).all() == ["kept", "also kept"]


# -- Alembic --------------------------------------------------------------------------------

def test_alembic_impl_registered(engine):
    from alembic.ddl.impl import DefaultImpl, _impls
    from alembic.migration import MigrationContext

    from terndb.sqla.alembic_impl import TerndbImpl

    assert _impls["terndb"] is TerndbImpl and issubclass(TerndbImpl, DefaultImpl)
    with engine.connect() as c:
        ctx = MigrationContext.configure(c)
        assert isinstance(ctx.impl, TerndbImpl) and ctx.impl.transactional_ddl


def test_alembic_operations_create_table_and_index(engine):
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    with engine.begin() as c:
        op = Operations(MigrationContext.configure(c))
        op.create_table("account", sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("email", sa.String(100), nullable=False))
        op.create_index("ix_account_email", "account", ["email"], unique=True)
        op.bulk_insert(sa.table("account", sa.column("email", sa.String)), [{"email": "a@x"}, {"email": "b@x"}])
    insp = inspect(engine)
    assert insp.get_table_names() == ["account"]
    assert [i["name"] for i in insp.get_indexes("account")] == ["ix_account_email"]
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM account").scalar() == 2


def test_alembic_autogenerate_sees_no_changes(engine):
    # Indexes and uniques reflect the way create_all made them, so a fresh
    # comparison is empty (duckdb_engine's unreflected indexes made it noisy).
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    md, _, _ = make_core_metadata()
    md.create_all(engine)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": False}), md)
    assert diff == []


def test_alembic_batch_add_column(engine):
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(100))")
        c.exec_driver_sql("INSERT INTO account (email) VALUES ('a@x')")
    with engine.begin() as c:
        op = Operations(MigrationContext.configure(c))
        with op.batch_alter_table("account") as batch:
            batch.add_column(sa.Column("active", sa.Boolean, server_default="1"))
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT email, active FROM account").all() == [("a@x", 1)]


# -- the example --------------------------------------------------------------------------

def test_orm_example_runs(tmp_path):
    example = runpy.run_path(str(ROOT / "examples" / "orm_app.py"), run_name="orm_app")
    summary = example["run"](str(tmp_path / "library"))
    assert summary["per_tag"] == {"classic": 2, "sf": 2}
    assert summary["catalogue"]["Stanislaw Lem"] == [("Solaris", ["sf"])]
    assert summary["tables"] == ["authors", "book_tags", "books", "tags"]


def test_orm_example_as_script(tmp_path):
    # Through a fresh interpreter, registering the dialect the way the entry point will.
    boot = ("import sys, runpy; from sqlalchemy.dialects import registry; "
            "registry.register('terndb', 'terndb.sqla.dialect', 'TerndbDialect'); "
            f"sys.argv = ['orm_app.py', {str(tmp_path / 'lib')!r}]; "
            f"runpy.run_path({str(ROOT / 'examples' / 'orm_app.py')!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", boot], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert "The Dispossessed  [classic, sf]" in out.stdout
