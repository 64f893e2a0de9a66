"""Bulk import of CSV, Parquet and JSON-lines files into a table (shell `.import`).

CSV and Parquet files are read in record batches through pyarrow (its
streaming CSV reader, Parquet row groups) and each batch goes through
``Connection.ingest``, so memory stays bounded by the batch size and rows go
in through the compiled executemany path.  The table is created from the
file's column names and Arrow types when it does not exist.  JSON lines
(``.jsonl``, ``.ndjson``) go through the document writer
(terndb/documents.py) into a document table, created dynamic when missing.
A progress callback receives the running row count and, for JSON lines, the
fraction of the file read.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator

from terndb.engine.errors import DataError, ProgrammingError

#: Rows per batch handed to ingest (bounded memory, one executemany each).
BATCH_ROWS = 65_536


def detect_format(path: str, fmt: str | None = None) -> str:
    if fmt:
        fmt = fmt.lower().lstrip(".")
    else:
        fmt = os.path.splitext(path)[1].lower().lstrip(".")
        if fmt in ("tsv", "txt"):
            fmt = "csv"
    if fmt in ("json", "ndjson"):     # JSON lines: one object per line
        fmt = "jsonl"
    if fmt in ("csv", "parquet", "pq", "jsonl"):
        return "parquet" if fmt == "pq" else fmt
    raise ProgrammingError(f"cannot tell the format of {path!r}: use --csv, --parquet or --json")


def _batches(path: str, fmt: str) -> Iterator[Any]:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq
            yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
            return
        import pyarrow.csv as pacsv
        delimiter = "\t" if path.lower().endswith((".tsv", ".txt")) else ","
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 22),
                                parse_options=pacsv.ParseOptions(delimiter=delimiter))
        yield from reader
    except OSError as err:
        raise ProgrammingError(f"cannot read {path!r}: {err}") from err
    except Exception as err:  # pyarrow's ArrowInvalid & co: a malformed file
        if type(err).__module__.startswith("pyarrow"):
            raise DataError(f"cannot parse {path!r}: {err}") from err
        raise


def import_file(connection: Any, path: str, table: str, fmt: str | None = None,
                progress: Callable[..., None] | None = None) -> int:
    """Imports ``path`` into ``table`` (created if missing) and commits; returns the number
    of rows.  ``progress(rows)``, or ``progress(rows, fraction_read)`` for JSON lines."""
    if not os.path.exists(path):
        raise ProgrammingError(f"no such file: {path}")
    fmt = detect_format(path, fmt)
    if fmt == "jsonl":
        return _import_jsonl(connection, path, table, progress)
    total = 0
    for batch in _batches(path, fmt):
        total += connection.ingest(table, batch, create=True)
        if progress is not None:
            progress(total)
    connection.commit()
    return total


def _import_jsonl(connection: Any, path: str, table: str, progress: Callable[..., None] | None) -> int:
    from .documents import ingest_jsonl

    def report(rows: int, done: int, size: int | None) -> None:
        if progress is not None:
            progress(rows, done / size if size else 1.0)
    total = ingest_jsonl(connection, table, path, progress=report)
    connection.commit()
    return total
