"""SQLite's built-in collations (BINARY, NOCASE, RTRIM) and the index keys built under them.

A collation is carried through the planner as a small code (``COLLATIONS``).
Comparing under NOCASE or RTRIM is the same as comparing BINARY after
*folding* both text values (NOCASE: ASCII letters lowered, exactly SQLite's
rule, other characters untouched; RTRIM: trailing spaces removed), so sort
keys, group keys and index keys are folded rather than compared specially.

Index keys.  An index part whose collation is not BINARY (its own ``COLLATE``
in CREATE INDEX, else its column's) stores the folded value in the key, so
that NOCASE/RTRIM-equal values collide in a UNIQUE index (as in SQLite) and an
equality or range probe under that collation finds them; the row keeps the
original value.  Indexes written before keys were folded have raw keys: the
catalog marks every index with its ``key_format`` (absent in old records,
which load as ``INDEX_KEYS_RAW``), and ``index_key_folds`` gives such an
index no folding, so it keeps working as it always did (never searched under
a collation, see ``search_collation``) until REINDEX or re-creation.
``index_key_folds`` is the one place that decides what a key part holds:
every writer of index entries (DML, CREATE INDEX, REINDEX, replication apply,
integrity checks) gets its key expressions from ``dml_planner.build_writer``,
which applies it.  A folded part does not hold its column's value, so an
index scan that wants to read column values from keys (a covering scan) must
take such a column from the row instead (``index_key_folds`` says which).
"""
from __future__ import annotations

import functools
from typing import Any

from sqlglot import exp

from terndb._cext import _core as C

from .catalog import INDEX_KEYS_FOLDED, Index, IndexPart, Table
from .errors import ProgrammingError
from .sqlparse import parse_one

BINARY, NOCASE, RTRIM = 0, 1, 2
COLLATIONS = {"binary": BINARY, "nocase": NOCASE, "rtrim": RTRIM}

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def collation_code(name: str | None) -> int:
    """The code of a collation name (None: BINARY); unknown names are an error, as in SQLite."""
    if not name:
        return BINARY
    code = COLLATIONS.get(name.lower())
    if code is None:
        raise ProgrammingError(f"no such collation sequence: {name}")
    return code


def fold_nocase(v: Any) -> Any:
    """NOCASE compares text with ASCII letters folded (SQLite's rule)."""
    return v.translate(_ASCII_LOWER) if isinstance(v, str) else v


def fold_rtrim(v: Any) -> Any:
    """RTRIM compares text without its trailing spaces."""
    return v.rstrip(" ") if isinstance(v, str) else v


_FOLDERS = {NOCASE: fold_nocase, RTRIM: fold_rtrim}


def fold(v: Any, coll: int) -> Any:
    """``v`` as compared under collation ``coll`` (non-text values are unchanged)."""
    folder = _FOLDERS.get(coll)
    return v if folder is None else folder(v)


def collated_key(key: Any, coll: int) -> Any:
    """A compiled expression whose value compares BINARY as ``key`` compares under ``coll``.

    The key codec orders text by its bytes (BINARY); folding the text first
    makes NOCASE/RTRIM-equal values equal keys and sorts them together.
    """
    folder = _FOLDERS.get(coll)
    return key if folder is None else C.Call(folder, [key])


def index_part_collation(table: Table, part: IndexPart) -> int:
    """The collation an index part orders by: its own COLLATE, else its column's.

    An expression part has no column collation unless it is a (parenthesized)
    column reference, which is SQLite's rule for an expression's collation.
    """
    if part.collation:
        return collation_code(part.collation)
    if part.column is not None:
        return collation_code(table.columns[part.column].collation)
    name = _bare_column(part.expr_sql or "NULL")
    pos = table.find_column(name) if name is not None else None
    return collation_code(table.columns[pos].collation) if pos is not None else BINARY


@functools.lru_cache(maxsize=256)
def _bare_column(expr_sql: str) -> str | None:
    """The column an index expression merely names (``(a)``), else None."""
    node = parse_one("SELECT " + expr_sql).expressions[0]
    while isinstance(node, exp.Paren):
        node = node.this
    return node.name if isinstance(node, exp.Column) else None


def index_key_folds(table: Table, ix: Index) -> list[int]:
    """Per part of ``ix``, the collation its stored keys are folded under (BINARY: raw)."""
    if ix.key_format < INDEX_KEYS_FOLDED:
        return [BINARY] * len(ix.parts)
    return [index_part_collation(table, p) for p in ix.parts]


def search_collation(table: Table, ix: Index, part: IndexPart) -> int | None:
    """The comparison collation under which probes of ``part`` find every match,
    or None when the index cannot be searched by it (a raw-key index on a
    non-BINARY part orders and matches by BINARY while queries compare otherwise)."""
    coll = index_part_collation(table, part)
    if coll != BINARY and ix.key_format < INDEX_KEYS_FOLDED:
        return None
    return coll


def fold_key(key: bytes, folds: list[int]) -> bytes:
    """An encoded key (values, no rowid) with its parts folded as ``folds`` says:
    how a row identity recorded with raw values (a change's primary key) is
    looked up in an index whose keys are folded."""
    if not any(folds):
        return key
    values = C.decode_key(key, b"B" * len(folds))
    return C.encode_key(tuple(fold(v, c) for v, c in zip(values, folds)))


__all__ = ["BINARY", "COLLATIONS", "NOCASE", "RTRIM", "collated_key", "collation_code", "fold", "fold_key",
           "fold_nocase", "fold_rtrim", "index_key_folds", "index_part_collation", "search_collation"]
