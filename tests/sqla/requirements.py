"""What terndb supports today, for SQLAlchemy's compliance suite.

Every property here either opens a suite requirement the engine meets or
closes one it does not meet yet; the comment says which engine feature the
closed ones wait for.  Properties not listed keep SuiteRequirements' defaults.
"""
from __future__ import annotations

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements

open_ = exclusions.open
closed = exclusions.closed


class Requirements(SuiteRequirements):
    # -- DDL -----------------------------------------------------------------
    @property
    def table_ddl_if_exists(self):
        return open_()

    @property
    def index_ddl_if_exists(self):
        return open_()

    @property
    def create_table_as(self):
        return open_()

    @property
    def views(self):
        return open_()

    @property
    def temporary_tables(self):
        return open_()

    @property
    def temp_table_reflection(self):
        return open_()

    @property
    def temp_table_names(self):
        return open_()

    @property
    def has_temp_table(self):
        return open_()

    @property
    def temporary_views(self):
        return open_()

    @property
    def temp_table_reflect_indexes(self):
        return open_()

    @property
    def computed_columns(self):
        return open_()         # GENERATED ALWAYS AS (expr) [STORED|VIRTUAL]

    @property
    def computed_columns_stored(self):
        return open_()

    @property
    def computed_columns_virtual(self):
        return open_()

    @property
    def computed_columns_default_persisted(self):
        return closed()        # omitted persistence means VIRTUAL, as in SQLite (this flag asks for STORED)

    @property
    def computed_columns_reflect_persisted(self):
        return open_()         # reflection reports STORED/VIRTUAL

    @property
    def schemas(self):
        return open_()         # CREATE SCHEMA namespaces (SQLite: ATTACH)

    @property
    def cross_schema_fk_reflection(self):
        return open_()         # REFERENCES s.t is allowed and reflected with referred_schema

    @property
    def schema_create_delete(self):
        return open_()         # CREATE SCHEMA / DROP SCHEMA statements

    # -- reflection ----------------------------------------------------------
    @property
    def reflects_pk_names(self):
        return open_()

    @property
    def implicitly_named_constraints(self):
        return closed()        # like SQLite, unnamed constraints stay unnamed

    @property
    def foreign_key_constraint_name_reflection(self):
        return open_()

    @property
    def foreign_key_constraint_option_reflection_ondelete(self):
        return open_()

    @property
    def foreign_key_constraint_option_reflection_onupdate(self):
        return open_()

    @property
    def fk_constraint_option_reflection_ondelete_restrict(self):
        return open_()

    @property
    def fk_constraint_option_reflection_onupdate_restrict(self):
        return open_()

    @property
    def fk_constraint_option_reflection_ondelete_noaction(self):
        return open_()

    @property
    def check_constraint_reflection(self):
        return open_()

    @property
    def inline_check_constraint_reflection(self):
        return open_()

    @property
    def indexes_with_expressions(self):
        return open_()

    @property
    def reflect_indexes_with_expressions(self):
        return open_()

    @property
    def unique_constraint_reflection(self):
        return open_()

    @property
    def column_collation_reflection(self):
        return open_()

    @property
    def comment_reflection(self):
        return closed()        # SQLite has no comments either

    # -- SQL -----------------------------------------------------------------
    @property
    def intersect(self):
        return open_()

    @property
    def except_(self):
        return open_()

    @property
    def ctes(self):
        return open_()

    @property
    def window_functions(self):
        return open_()

    @property
    def tuple_in(self):
        return open_()         # row values: (a, b) IN ((1, 2), ...) and IN (SELECT x, y ...)

    @property
    def tuple_in_w_empty(self):
        return open_()

    @property
    def nullsordering(self):
        return open_()

    @property
    def update_from(self):
        return open_()

    @property
    def delete_from(self):
        return open_()

    @property
    def insert_returning(self):
        return open_()

    @property
    def update_returning(self):
        return open_()

    @property
    def delete_returning(self):
        return open_()

    @property
    def json_type(self):
        return open_()

    @property
    def json_array_indexes(self):
        return open_()

    @property
    def json_index_supplementary_unicode_element(self):
        return open_()

    @property
    def legacy_unconditional_json_extract(self):
        return open_()         # CAST(json_extract(...)) of any element, as on SQLite

    @property
    def regexp_match(self):
        return open_()         # x REGEXP p -> built-in regexp(p, x), Python's re.search

    @property
    def regexp_replace(self):
        return open_()         # built-in regexp_replace(x, p, r), Python's re.sub

    @property
    def supports_bitwise_and(self):
        return open_()

    @property
    def supports_bitwise_or(self):
        return open_()

    @property
    def supports_bitwise_not(self):
        return open_()

    @property
    def supports_bitwise_shift(self):
        return open_()

    # -- types ---------------------------------------------------------------
    @property
    def datetime_historic(self):
        return open_()

    @property
    def date_historic(self):
        return open_()

    @property
    def datetime_timezone(self):
        return open_()

    @property
    def time_timezone(self):
        return open_()

    @property
    def server_defaults(self):
        return open_()

    @property
    def expression_server_defaults(self):
        return open_()

    @property
    def unicode_ddl(self):
        return open_()

    # -- transactions --------------------------------------------------------
    @property
    def savepoints(self):
        return open_()

    @property
    def autocommit(self):
        return open_()

    @property
    def isolation_level(self):
        return open_()

    def get_isolation_levels(self, config):
        return {"default": "SERIALIZABLE", "supported": ["SERIALIZABLE", "AUTOCOMMIT"]}
