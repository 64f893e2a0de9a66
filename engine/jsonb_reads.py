"""Which JSON columns a SELECT may read as JSONB documents instead of text.

A JSON column's cells are SQLite JSONB (cext/jsonb.pxi).  Read plainly, each
cell is rendered as its minified text, which is what every SQL value
consumer expects.  When a query level reads the column *only* through path
extractors with a constant path (``doc -> p``, ``doc ->> p``,
``json_extract(doc, p)``, ``json_type(doc[, p])``), or not at all, the
rendering is waste: the compiled extractor walks the JSONB bytes to the leaf
instead (and an unread document is only copied).  This
module finds those columns from the statement's syntax tree; the SELECT
planner then asks the table's readers for them as ``JsonbDoc``
(``TableReader.read_json_docs``).

The test is deliberately syntactic and conservative: every column reference
in the level's tree (subqueries included, as they may be correlated) that
could name the column must sit directly (through parentheses) in one of those
extractor shapes; a ``*``, ``USING`` or ``NATURAL`` anywhere in the tree turns
the optimisation off for the level.  A reference it cannot account for thus
leaves the column as text, never hands a JsonbDoc to a consumer that expects
text.  Extractors whose path proves not to be simple at compile time still
work, and so do the tree-walking functions json_each, json_tree and
json_array_length, which are accepted too: they build their tree from the
JSONB bytes (json.pxi ``_j_parse_ro``), never from text.
"""
from __future__ import annotations

from sqlglot import exp

from .catalog import Table
from .ddl import json_column_positions

# Function-call extractors (terndb's dialect keeps calls as Anonymous): doc is argument 0.
_PATH_FUNCTIONS = ("json_extract", "json_type")
# Functions that walk the document's tree, which a JsonbDoc gives without text
# (json.pxi _j_parse_ro): doc is argument 0, any path after it.
_TREE_FUNCTIONS = ("json_each", "json_tree", "json_array_length")


def json_columns_read_as_jsonb(tree: exp.Expression, alias: str, table: Table) -> list[int]:
    """Positions of ``table``'s JSON columns that ``tree`` reads only through
    path extractors and tree-walking functions (or not at all), when the table
    is the FROM item named ``alias``."""
    positions = json_column_positions(table)
    if not positions or _reads_whole_rows(tree):
        return []
    wanted = {table.columns[i].key: i for i in positions}
    plain: set[str] = set()
    for col in tree.find_all(exp.Column):
        name = col.name.lower()
        if name in wanted and not (col.table and col.table.lower() != alias) and not _is_path_extractor_doc(col):
            plain.add(name)
    return sorted(i for name, i in wanted.items() if name not in plain)


def is_count_star(star: exp.Star) -> bool:
    """Whether ``*`` is count(*)'s (which reads no column), not a column list."""
    call = star.parent
    return isinstance(call, exp.Count) or (isinstance(call, exp.Anonymous) and call.name.lower() == "count")


def _reads_whole_rows(tree: exp.Expression) -> bool:
    """A ``*`` (other than count(*)), ``USING`` or ``NATURAL``: columns are
    referenced without a Column node naming them."""
    for star in tree.find_all(exp.Star):
        if not is_count_star(star):
            return True
    for join in tree.find_all(exp.Join):
        if join.args.get("using") or (join.method or "").upper() == "NATURAL" \
                or (join.kind or "").upper() == "NATURAL":
            return True
    return False


def _is_path_extractor_doc(col: exp.Column) -> bool:
    """True if ``col`` is the document operand of an extractor with a constant
    path or of a tree-walking function."""
    node: exp.Expression = col
    while isinstance(node.parent, exp.Paren):
        node = node.parent
    parent = node.parent
    if isinstance(parent, (exp.JSONExtract, exp.JSONExtractScalar)):
        return parent.this is node and _is_constant_path(parent.expression)
    if isinstance(parent, exp.Anonymous) and parent.name.lower() in _TREE_FUNCTIONS:
        return bool(parent.expressions) and parent.expressions[0] is node
    if isinstance(parent, exp.Anonymous) and parent.name.lower() in _PATH_FUNCTIONS:
        args = parent.expressions
        if len(args) == 1 and parent.name.lower() == "json_type":
            return args[0] is node            # json_type(doc) compiles as json_type(doc, '$')
        return len(args) == 2 and args[0] is node and _is_constant_path(args[1])
    return False


def _is_constant_path(node: exp.Expression | None) -> bool:
    return isinstance(node, exp.JSONPath) or (isinstance(node, exp.Literal) and node.is_string)
