"""Alembic on terndb without batch mode: ALTER operations, table recreation, autogenerate.

``op.alter_column`` / ``op.create_foreign_key`` / ``op.create_unique_constraint``
/ ``op.create_check_constraint`` / ``op.drop_constraint`` run directly (the
implementation recreates the table where the engine has no ALTER for it), keep
rows, indexes and unnamed CHECKs, and roll back whole on failure.  Autogenerate
against a database made from the same metadata finds nothing, across every
column type, server defaults, index kinds and constraint kinds, and does find
real changes.
"""
from __future__ import annotations

import enum

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import exc, inspect
from sqlalchemy.dialects import registry

registry.register("terndb", "terndb.sqla.dialect", "TerndbDialect")


@pytest.fixture
def engine(tmp_path):
    eng = sa.create_engine(f"terndb:///{tmp_path}/db")
    yield eng
    eng.dispose()


def _op(conn: sa.Connection) -> Operations:
    return Operations(MigrationContext.configure(conn))


# -- operations without batch mode ----------------------------------------------------------

@pytest.fixture
def shop(engine):
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE vendor (id INTEGER PRIMARY KEY, code VARCHAR(10))")
        c.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY, name VARCHAR(20), qty INTEGER, "
                          "vendor_code VARCHAR(10), CHECK (qty >= 0))")
        c.exec_driver_sql("CREATE INDEX ix_item_name ON item (name DESC)")
        c.exec_driver_sql("CREATE TABLE line (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES item (id))")
        c.exec_driver_sql("INSERT INTO vendor VALUES (1, 'acme'), (2, 'bolt')")
        c.exec_driver_sql("INSERT INTO item VALUES (1, 'nut', 5, 'acme'), (2, 'bolt', NULL, 'bolt')")
        c.exec_driver_sql("INSERT INTO line VALUES (1, 2)")
    return engine


def _rows(engine, sql="SELECT * FROM item ORDER BY id"):
    with engine.connect() as c:
        return c.exec_driver_sql(sql).all()


def test_alter_column_type_nullable_default_keep_rows_and_indexes(shop):
    with shop.begin() as c:
        op = _op(c)
        op.alter_column("item", "qty", existing_type=sa.Integer, server_default=sa.text("0"))
        op.alter_column("item", "name", existing_type=sa.String(20), type_=sa.String(40), nullable=False)
        op.alter_column("item", "vendor_code", new_column_name="vendor")          # ALTER ... RENAME COLUMN
    insp = inspect(shop)
    cols = {c["name"]: c for c in insp.get_columns("item")}
    assert list(cols) == ["id", "name", "qty", "vendor"]
    assert cols["name"]["type"].length == 40 and cols["name"]["nullable"] is False
    assert cols["qty"]["default"] == "0"
    assert [(i["name"], i["column_names"], i.get("column_sorting")) for i in insp.get_indexes("item")] == [
        ("ix_item_name", ["name"], {"name": ("desc",)})]
    assert [ck["sqltext"] for ck in insp.get_check_constraints("item")] == ["qty >= 0"]   # unnamed, kept
    assert _rows(shop) == [(1, "nut", 5, "acme"), (2, "bolt", None, "bolt")]
    with shop.begin() as c, pytest.raises(exc.IntegrityError):
        c.exec_driver_sql("INSERT INTO item (id, name, qty) VALUES (3, 'x', -1)")
    with shop.begin() as c:
        c.exec_driver_sql("INSERT INTO item (id, name) VALUES (3, 'washer')")
    assert _rows(shop, "SELECT qty FROM item WHERE id = 3") == [(0,)]              # the new default


def test_constraints_added_and_dropped_without_batch(shop):
    with shop.begin() as c:
        op = _op(c)
        op.create_unique_constraint("uq_vendor_code", "vendor", ["code"])
        op.create_foreign_key("fk_item_vendor", "item", "vendor", ["vendor_code"], ["code"], ondelete="CASCADE")
        op.create_check_constraint("ck_item_name", "item", sa.text("length(name) > 1"))
    insp = inspect(shop)
    assert [u["name"] for u in insp.get_unique_constraints("vendor")] == ["uq_vendor_code"]
    fks = insp.get_foreign_keys("item")
    assert [(f["name"], f["referred_table"], f["options"].get("ondelete")) for f in fks] == [
        ("fk_item_vendor", "vendor", "CASCADE")]
    assert sorted(ck["name"] or "" for ck in insp.get_check_constraints("item")) == ["", "ck_item_name"]
    with shop.begin() as c, pytest.raises(exc.IntegrityError):
        c.exec_driver_sql("INSERT INTO vendor VALUES (3, 'acme')")
    with shop.begin() as c, pytest.raises(exc.IntegrityError):
        c.exec_driver_sql("INSERT INTO item (id, name) VALUES (9, 'x')")
    # The table another one references was recreated: that reference still works.
    assert _rows(shop, "SELECT line.id, item.name FROM line JOIN item ON item.id = line.item_id") == [(1, "bolt")]
    with shop.begin() as c:
        op = _op(c)
        op.drop_constraint("fk_item_vendor", "item", type_="foreignkey")
        op.drop_constraint("ck_item_name", "item", type_="check")
        op.drop_constraint("uq_vendor_code", "vendor", type_="unique")
    insp = inspect(shop)
    assert insp.get_foreign_keys("item") == [] and insp.get_unique_constraints("vendor") == []
    assert [ck["name"] for ck in insp.get_check_constraints("item")] == [None]
    assert _rows(shop) == [(1, "nut", 5, "acme"), (2, "bolt", None, "bolt")]


def test_failed_recreate_rolls_back(shop):
    # NOT NULL over a column holding a NULL fails while copying the rows: nothing changes.
    with pytest.raises(exc.IntegrityError):
        with shop.begin() as c:
            _op(c).alter_column("item", "qty", existing_type=sa.Integer, nullable=False)
    assert inspect(shop).get_table_names() == ["item", "line", "vendor"]
    assert {c["name"]: c["nullable"] for c in inspect(shop).get_columns("item")}["qty"] is True
    assert _rows(shop) == [(1, "nut", 5, "acme"), (2, "bolt", None, "bolt")]


def test_add_column_with_default_reads_typed_values(shop):
    with shop.begin() as c:
        op = _op(c)
        op.add_column("item", sa.Column("active", sa.Boolean, nullable=False, server_default="1"))
        op.add_column("item", sa.Column("note", sa.Text))                    # plain ALTER ... ADD COLUMN
    assert _rows(shop, "SELECT id, active, note FROM item ORDER BY id") == [(1, 1, None), (2, 1, None)]


def test_batch_mode_still_works(shop):
    # Alembic's batch copy omits unnamed CHECKs it reflects and says so (as on SQLite);
    # batch_alter_table(table_args=...) restates them.
    with shop.begin() as c, pytest.warns(UserWarning, match="Unnamed CHECK"):
        with _op(c).batch_alter_table("item") as batch:
            batch.alter_column("qty", existing_type=sa.Integer, type_=sa.Numeric(10, 2))
            batch.drop_column("vendor_code")
            batch.create_index("ix_item_qty", ["qty"])
    insp = inspect(shop)
    assert [c["name"] for c in insp.get_columns("item")] == ["id", "name", "qty"]
    assert sorted(i["name"] for i in insp.get_indexes("item")) == ["ix_item_name", "ix_item_qty"]
    assert _rows(shop) == [(1, "nut", 5), (2, "bolt", None)]


# -- autogenerate ------------------------------------------------------------------------------

class Mood(enum.Enum):
    happy = "happy"
    sad = "sad"


def make_metadata(name_length: int = 50, at_desc: bool = True, qty_default: str = "0") -> sa.MetaData:
    """Every column type the dialect maps, server defaults, and each kind of index and constraint."""
    md = sa.MetaData()
    sa.Table("parent", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("code", sa.String(20), nullable=False), sa.UniqueConstraint("code", name="uq_parent_code"))
    t = sa.Table(
        "everything", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("qty", sa.Integer, nullable=False, server_default=qty_default),
        sa.Column("big", sa.BigInteger, server_default=sa.text("42")),
        sa.Column("num", sa.Numeric(12, 3), server_default="1.5"),
        sa.Column("flt", sa.Float),
        sa.Column("name", sa.String(name_length), server_default="it's"),
        sa.Column("body", sa.Text),
        sa.Column("flag", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("at", sa.DateTime, server_default=sa.func.current_timestamp()),
        sa.Column("at_tz", sa.DateTime(timezone=True)),
        sa.Column("day", sa.Date),
        sa.Column("blob", sa.LargeBinary),
        sa.Column("uid", sa.Uuid),
        sa.Column("mood", sa.Enum(Mood)),
        sa.Column("doc", sa.JSON),
        sa.Column("computed_default", sa.Integer, server_default=sa.text("(1 + 2)")),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("parent.id", ondelete="CASCADE")),
        sa.Column("parent_code", sa.String(20)),
        sa.ForeignKeyConstraint(["parent_code"], ["parent.code"], name="fk_everything_code"),
        sa.UniqueConstraint("name", "day", name="uq_name_day"),
        sa.CheckConstraint("qty >= 0", name="ck_qty"),
        sa.CheckConstraint("big < 1000000"),
    )
    sa.Index("ix_everything_name", t.c.name)
    sa.Index("ix_everything_at", t.c.at.desc() if at_desc else t.c.at, t.c.qty)
    sa.Index("ix_everything_lower_name", sa.func.lower(t.c.name))
    sa.Index("ix_everything_doc_kind", t.c.doc["kind"].as_string())
    sa.Index("ux_everything_body", t.c.body, unique=True)
    return md


def _diff(engine, md):
    with engine.connect() as c:
        ctx = MigrationContext.configure(c, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(ctx, md)


def test_autogenerate_up_to_date_database_has_no_diff(engine):
    make_metadata().create_all(engine)
    assert _diff(engine, make_metadata()) == []


def test_autogenerate_up_to_date_after_migrating_with_ops(engine):
    # The database built by Alembic operations (what an autogenerated migration
    # runs), not by create_all, compares equal too.
    from alembic.autogenerate import produce_migrations
    from alembic.operations import ops

    md = make_metadata()
    with engine.begin() as c:
        ctx = MigrationContext.configure(c)
        script = produce_migrations(ctx, md)
        operations = Operations(ctx)
        for op in script.upgrade_ops.ops:
            for step in op.ops if isinstance(op, ops.ModifyTableOps) else [op]:
                operations.invoke(step)
    assert _diff(engine, make_metadata()) == []


def test_autogenerate_finds_real_changes(engine):
    make_metadata().create_all(engine)
    diff = _diff(engine, make_metadata(name_length=80, at_desc=False, qty_default="1"))
    kinds = sorted(d[0][0] if isinstance(d, list) else d[0] for d in diff)
    assert kinds == ["add_index", "modify_default", "modify_type", "remove_index"], diff


def test_drop_key_columns_without_batch(shop):
    with shop.begin() as c:
        op = _op(c)
        op.create_foreign_key("fk_item_vendor", "item", "vendor", ["vendor_code"], ["code"])
        op.create_unique_constraint("uq_vendor_code", "vendor", ["code"])
    with shop.begin() as c:
        op = _op(c)
        op.drop_column("item", "vendor_code")       # in a foreign key: the table is recreated
        op.drop_column("vendor", "code")            # in a unique constraint: likewise
        op.drop_index("ix_item_name", "item")
        op.drop_column("item", "name")              # plain ALTER ... DROP COLUMN
    insp = inspect(shop)
    assert [c["name"] for c in insp.get_columns("item")] == ["id", "qty"]
    assert insp.get_foreign_keys("item") == [] and insp.get_unique_constraints("vendor") == []
    assert [ck["sqltext"] for ck in insp.get_check_constraints("item")] == ["qty >= 0"]
    assert _rows(shop) == [(1, 5), (2, None)]
    assert _rows(shop, "SELECT * FROM vendor ORDER BY id") == [(1,), (2,)]
