"""SQL text to sqlglot AST: terndb's SQLite-flavoured dialect and error wrapping.

terndb reads SQLite's SQL.  sqlglot's stock SQLite dialect normalises function
calls into its own portable node classes (``strftime`` becomes ``TimeToStr``,
``json_extract`` and ``->>`` merge), which loses SQLite semantics; terndb's
dialect keeps every function call as ``Anonymous(name, args)`` so the planner
sees exactly what the user wrote.  Transaction-control statements (BEGIN,
SAVEPOINT, RELEASE, ...) are recognised here directly: sqlglot does not parse
all of SQLite's forms.

Every sqlglot exception is turned into an ``SQLSyntaxError`` naming the
position and the offending text, chained with ``from``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from .errors import SQLSyntaxError


class _CommandFallbackFilter(logging.Filter):
    """Drops sqlglot's "falling back to parsing as a 'Command'" warning.

    terndb turns such statements into a clear NotSupportedError itself, so the
    warning would only be noise on the user's stderr.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_CommandFallbackFilter())


# Words that end a column's type name (the start of a column constraint).
_TYPE_STOP_WORDS = frozenset({
    "CONSTRAINT", "PRIMARY", "NOT", "NULL", "UNIQUE", "CHECK", "DEFAULT", "COLLATE",
    "REFERENCES", "GENERATED", "AS", "ON", "AUTOINCREMENT", "ASC", "DESC", "KEY",
})


class WithoutRowidProperty(exp.Property):
    """``CREATE TABLE ... WITHOUT ROWID``: the table has no rowid (engine/ddl.py)."""
    arg_types: dict = {}


def _parse_without_rowid(parser: Any) -> WithoutRowidProperty:
    if not parser._match_text_seq("ROWID"):
        parser.raise_error("Expecting ROWID after WITHOUT")
    return parser.expression(WithoutRowidProperty())


class TernDialect(SQLite):
    """SQLite's grammar with function calls and type names left uninterpreted."""

    class Parser(SQLite.Parser):
        # SQLite has no arrow lambdas: `a -> b` inside call arguments is the JSON operator.
        LAMBDAS: dict = {}
        # Only CAST keeps its special syntax; every other call becomes
        # Anonymous(this=name, expressions=[args]).
        FUNCTIONS: dict = {}
        FUNCTION_PARSERS = {k: v for k, v in SQLite.Parser.FUNCTION_PARSERS.items() if k in ("CAST",)}
        # terndb's table options, ``CREATE TABLE t (...) WITH (dynamic = true, ...)``, are
        # key = value pairs; sqlglot would read DYNAMIC as Snowflake's table kind instead.
        PROPERTY_PARSERS = {**{k: v for k, v in SQLite.Parser.PROPERTY_PARSERS.items() if k != "DYNAMIC"},
                            "WITHOUT": _parse_without_rowid}

        def _parse_index(self, index: Any = None, anonymous: bool = False):  # type: ignore[override]
            # CREATE INDEX s.ix ON t(...): sqlglot reads only "s" as the index
            # name; take the dotted name and keep the schema as the node's "db".
            qualifier = None
            if index is not None and self._match(TokenType.DOT):
                qualifier, index = index, self._parse_id_var()
            node = super()._parse_index(index=index, anonymous=anonymous)
            if node is not None and qualifier is not None:
                node.set("db", qualifier)
            return node

        def _parse_types(self, check_func: bool = False, schema: bool = False,
                         allow_identifiers: bool = True, **kwargs: Any):  # type: ignore[override]
            # Only where a type name is certain (column definitions, CAST ... AS);
            # elsewhere sqlglot probes for typed literals and must keep its rules.
            if not (schema or kwargs.get("with_collation")):
                return super()._parse_types(check_func=check_func, schema=schema,
                                            allow_identifiers=allow_identifiers, **kwargs)
            start = self._index
            try:
                return self._parse_sqlite_type_name()
            except IndexError:
                # Some statements (ALTER) parse column definitions from a token
                # slice where sqlglot's cursor cannot look back; fall back there.
                self._retreat(start)
                return super()._parse_types(check_func=check_func, schema=schema,
                                            allow_identifiers=allow_identifiers, **kwargs)

        def _parse_column_def_with_exists(self):  # type: ignore[override]
            # SQLite lets ALTER TABLE ... ADD COLUMN name have no type at all
            # (as CREATE TABLE does); sqlglot would give up and keep a Command.
            start = self._index
            self._match(TokenType.COLUMN)
            exists = self._parse_exists(not_=True)
            column = self._parse_field_def()
            if isinstance(column, exp.Identifier):
                column = self.expression(exp.ColumnDef(this=column))
            if not isinstance(column, exp.ColumnDef):
                self._retreat(start)
                return None
            column.set("exists", exists)
            return column

        def _parse_sqlite_type_name(self):
            start = self._index
            first = last = None
            while self._curr is not None:
                tok = self._curr
                text = tok.text
                if tok.token_type.name in ("COMMA", "R_PAREN", "L_PAREN", "SEMICOLON") or not text:
                    break
                if text.split()[0].upper() in _TYPE_STOP_WORDS or not (text[0].isalpha() or text[0] == "_"):
                    break
                first = first or tok
                last = tok
                self._advance()
            if first is None:
                self._retreat(start)
                return None
            if self._curr is not None and self._curr.token_type.name == "L_PAREN":
                while self._curr is not None and self._curr.token_type.name != "R_PAREN":
                    self._advance()
                if self._curr is None:
                    self.raise_error("Expecting ) after type size")
                last = self._curr
                self._advance()
            # The exact source span, as SQLite keeps it.
            return exp.DataType(this=exp.DataType.Type.USERDEFINED, kind=self.sql[first.start:last.end + 1])


    class Generator(SQLite.Generator):
        # Render the table options back (stored CREATE TABLE text, ALTER rewrites).
        PROPERTIES_LOCATION = {**SQLite.Generator.PROPERTIES_LOCATION,
                               exp.Property: exp.Properties.Location.POST_WITH,
                               WithoutRowidProperty: exp.Properties.Location.POST_SCHEMA}
        # SQLite's generator rewrites CREATE TABLE (a table-level PRIMARY KEY moved onto its
        # column, which fails for an untyped column); terndb renders CREATE as written.
        TRANSFORMS = {**{k: v for k, v in SQLite.Generator.TRANSFORMS.items() if k is not exp.Create},
                      WithoutRowidProperty: lambda self, e: "WITHOUT ROWID"}


@dataclass(frozen=True)
class TxnControl:
    """A transaction-control statement: kind in begin/commit/rollback/savepoint/release/rollback_to."""
    kind: str
    name: str | None = None
    mode: str | None = None      # DEFERRED / IMMEDIATE / EXCLUSIVE for BEGIN


_IDENT = r'(?:"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[A-Za-z_][A-Za-z_0-9$]*)'
_TXN_PATTERNS = [
    (re.compile(r"^\s*BEGIN(?:\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(?:\s+TRANSACTION(?:\s+" + _IDENT + r")?)?\s*;?\s*$", re.I), "begin"),
    (re.compile(r"^\s*(?:COMMIT|END)(?:\s+TRANSACTION(?:\s+" + _IDENT + r")?)?\s*;?\s*$", re.I), "commit"),
    (re.compile(r"^\s*ROLLBACK(?:\s+TRANSACTION(?:\s+" + _IDENT + r")?)?\s+TO(?:\s+SAVEPOINT)?\s+(" + _IDENT + r")\s*;?\s*$", re.I), "rollback_to"),
    (re.compile(r"^\s*ROLLBACK(?:\s+TRANSACTION(?:\s+" + _IDENT + r")?)?\s*;?\s*$", re.I), "rollback"),
    (re.compile(r"^\s*SAVEPOINT\s+(" + _IDENT + r")\s*;?\s*$", re.I), "savepoint"),
    (re.compile(r"^\s*RELEASE(?:\s+SAVEPOINT)?\s+(" + _IDENT + r")\s*;?\s*$", re.I), "release"),
]
_TXN_WORDS = re.compile(r"^\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.I)


def unquote_identifier(ident: str) -> str:
    """A SQL identifier without its quotes ("x", `x`, [x])."""
    if ident[0] in "\"`[":
        return ident[1:-1].replace('""', '"')
    return ident


def quote_name(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (safe for any text, keywords included)."""
    return '"' + name.replace('"', '""') + '"'


def parse_txn_control(sql: str) -> TxnControl | None:
    """Recognises BEGIN/COMMIT/END/ROLLBACK [TO]/SAVEPOINT/RELEASE; None for other SQL."""
    if not _TXN_WORDS.match(sql):
        return None
    for pattern, kind in _TXN_PATTERNS:
        m = pattern.match(sql)
        if m:
            if kind == "begin":
                return TxnControl(kind, mode=(m.group(1) or "DEFERRED").upper())
            if kind in ("savepoint", "release", "rollback_to"):
                return TxnControl(kind, name=unquote_identifier(m.group(1)).lower())
            return TxnControl(kind)
    # A statement that starts like transaction control but is not well formed
    # (e.g. "BEGIN foo") is a syntax error, not something to pass to sqlglot.
    word = _TXN_WORDS.match(sql).group(1)  # type: ignore[union-attr]
    raise SQLSyntaxError(f'near "{word}": syntax error in "{sql.strip()[:80]}"', 0)


def _syntax_error(sql: str, err: Exception) -> SQLSyntaxError:
    """A SQLite-style message (near "token": syntax error) with line, column and offset."""
    details = getattr(err, "errors", None) or []
    if details:
        d = details[0]
        line, col = d.get("line") or 1, d.get("col") or 1
        near = (d.get("highlight") or "").strip()
        lines = sql.split("\n")
        offset = sum(len(x) + 1 for x in lines[: line - 1]) + max(col - 1, 0)
        where = f'near "{near}": ' if near else ""
        return SQLSyntaxError(f"{where}syntax error at line {line}, column {col}", offset)
    if isinstance(err, TokenError):
        return SQLSyntaxError(f"unrecognized token in: {sql.strip()[:60]!r} (unterminated string or bad character)")
    return SQLSyntaxError(f"syntax error in: {sql.strip()[:60]!r}")


def syntax_error_at_start(sql: str) -> SQLSyntaxError:
    """For text that parses only as a bare expression, not a statement."""
    word = sql.strip().split(None, 1)[0].rstrip(";") if sql.strip() else ""
    return SQLSyntaxError(f'near "{word}": syntax error', max(sql.find(word), 0))


def parse_statements(sql: str) -> list[exp.Expression]:
    """Parses SQL text into statements (empty statements dropped)."""
    try:
        trees = sqlglot.parse(sql, dialect=TernDialect)
    except (ParseError, TokenError) as err:
        raise _syntax_error(sql, err) from err
    except (ValueError, KeyError, AttributeError, TypeError, RecursionError) as err:
        # sqlglot occasionally fails with a plain Python error on hostile input.
        raise SQLSyntaxError(f"could not parse SQL: {err}") from err
    return [t for t in trees if t is not None]


def parse_one(sql: str) -> exp.Expression:
    """Parses exactly one statement."""
    trees = parse_statements(sql)
    if not trees:
        raise SQLSyntaxError("empty statement")
    if len(trees) > 1:
        from .errors import ProgrammingError
        raise ProgrammingError("You can only execute one statement at a time.")
    return trees[0]


def to_sql(node: exp.Expression) -> str:
    """Renders a node back to SQLite SQL (stored CHECK/DEFAULT/view/index text)."""
    return node.sql(dialect=TernDialect)


def split_script(sql: str) -> list[str]:
    """Splits a script into statement texts (for executescript), keeping each one's own text."""
    out: list[str] = []
    try:
        tokens = TernDialect().tokenize(sql)
    except TokenError as err:
        raise _syntax_error(sql, err) from err
    start = 0
    depth_trigger = 0
    prev_word = ""
    for tok in tokens:
        word = tok.text.upper()
        if word == "BEGIN" and prev_word not in ("", ";"):
            depth_trigger += 1          # CREATE TRIGGER ... BEGIN ... END
        elif word == "END" and depth_trigger:
            depth_trigger -= 1
        if tok.token_type.name == "SEMICOLON" and not depth_trigger:
            text = sql[start:tok.end + 1].strip()
            if text.strip(";").strip():
                out.append(text)
            start = tok.end + 1
        prev_word = word if tok.token_type.name != "SEMICOLON" else ";"
    rest = sql[start:].strip()
    if rest:
        out.append(rest)
    return out


def type_name(node: exp.DataType) -> str:
    """The declared type text of a column definition or CAST, as written."""
    if node.this == exp.DataType.Type.USERDEFINED and node.args.get("kind"):
        return str(node.args["kind"])
    return node.sql(dialect="sqlite")


def qualifier_of(tnode: exp.Expression | None) -> str | None:
    """The schema qualifier written before a table/view/index name (``s`` in ``s.t``), or None.

    Only the name is read here; ``Schema.resolve_schema`` decides whether it exists.
    """
    if tnode is None:
        return None
    db = tnode.args.get("db")
    return db.name if db is not None and db.name else None


def qualify_tables(tree: exp.Expression, schema_name: str) -> exp.Expression:
    """Puts ``schema_name`` on every unqualified table reference in ``tree`` (in place).

    A view or trigger stored in a schema other than main reads its unqualified
    names in that schema, as SQLite does; CTE names and table functions are
    left alone.
    """
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if table.args.get("db") is None and isinstance(table.this, exp.Identifier) \
                and table.name.lower() not in ctes:
            table.set("db", exp.to_identifier(schema_name))
    return tree


_CREATE_WORDS = frozenset({"CREATE", "TEMP", "TEMPORARY", "UNIQUE", "TABLE", "VIEW", "INDEX", "TRIGGER",
                           "IF", "NOT", "EXISTS"})


def without_created_qualifier(sql: str) -> str:
    """CREATE text with the new object's schema qualifier removed (``CREATE TABLE s.t`` -> ``CREATE TABLE t``).

    SQLite stores CREATE statements this way in each schema's sqlite_master;
    the object's schema is recorded beside the text.
    """
    try:
        tokens = TernDialect().tokenize(sql)
    except TokenError:
        return sql
    i = 0
    while i + 1 < len(tokens) and tokens[i].token_type != TokenType.IDENTIFIER \
            and tokens[i].text.upper() in _CREATE_WORDS and tokens[i + 1].token_type != TokenType.DOT:
        i += 1
    if i + 2 < len(tokens) and tokens[i + 1].token_type == TokenType.DOT:
        return sql[:tokens[i].start] + sql[tokens[i + 2].start:]
    return sql


_SLOT_MARK = re.compile(r":__s\d+")


def source_text(node: exp.Expression, sql: str | None) -> str | None:
    """The exact text ``node`` was parsed from (SQLite names result columns this way).

    sqlglot records offsets only on leaf tokens, so the span runs from the first
    to the last leaf and is widened until its parentheses balance (a call's
    closing parenthesis, a leading opening one).  Rewritten placeholders
    (``:__sK``) read as ``?`` again.  None when offsets are unavailable.
    """
    if not sql:
        return None
    starts, ends = [], []
    for n in node.walk():
        meta = n.meta if hasattr(n, "meta") else None
        if meta and "start" in meta and "end" in meta:
            starts.append(meta["start"])
            ends.append(meta["end"])
    if not starts:
        return None
    lo, hi = min(starts), max(ends) + 1
    if lo < 0 or hi > len(sql):
        return None
    for _ in range(64):
        text = sql[lo:hi]
        opened, closed = text.count("("), text.count(")")
        if opened > closed:
            nxt = sql.find(")", hi)
            if nxt < 0:
                return None
            hi = nxt + 1
        elif closed > opened:
            prev = sql.rfind("(", 0, lo)
            if prev < 0:
                return None
            lo = prev
        else:
            break
    return _SLOT_MARK.sub("?", sql[lo:hi].strip())


_LIST_END = frozenset({"FROM", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "WINDOW", "UNION",
                       "EXCEPT", "INTERSECT", "SEMICOLON", "RETURNING", "ON"})


def list_item_texts(sql: str, keyword: str = "SELECT") -> list[str] | None:
    """Source texts of the items of the first top-level SELECT (or RETURNING) list.

    Tokens make this robust to strings and nested parentheses: the list runs
    from the keyword to the next clause keyword at parenthesis depth 0 and is
    split at depth-0 commas.
    """
    try:
        tokens = TernDialect().tokenize(sql)
    except TokenError:
        return None
    depth = 0
    start = None
    for i, tok in enumerate(tokens):
        name = tok.token_type.name
        if name == "L_PAREN":
            depth += 1
        elif name == "R_PAREN":
            depth -= 1
        elif depth == 0 and name == keyword:
            start = i + 1
            break
    if start is None:
        return None
    while start < len(tokens) and tokens[start].token_type.name in ("DISTINCT", "ALL"):
        start += 1
    items: list[list] = [[]]
    depth = 0
    for tok in tokens[start:]:
        name = tok.token_type.name
        if depth == 0 and (name in _LIST_END or (tok.text.upper() in _LIST_END and name != "VAR")):
            break
        if name == "L_PAREN":
            depth += 1
        elif name == "R_PAREN":
            depth -= 1
        if depth == 0 and name == "COMMA":
            items.append([])
            continue
        items[-1].append(tok)
    if not items[-1]:
        return None
    return [_SLOT_MARK.sub("?", sql[it[0].start:it[-1].end + 1]) for it in items if it]
