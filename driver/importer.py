"""Bulk import of CSV and Parquet files into a table, through pyarrow (shell `.import`).

Files are read in record batches (pyarrow's streaming CSV reader, Parquet row
groups) and each batch goes through ``Connection.ingest``, so memory stays
bounded by the batch size and rows go in through the compiled executemany
path.  The table is created from the file's column names and Arrow types when
it does not exist.  A progress callback receives the running row count.
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
    if fmt in ("csv", "parquet", "pq"):
        return "parquet" if fmt == "pq" else fmt
    raise ProgrammingError(f"cannot tell the format of {path!r}: use --csv or --parquet")


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
                progress: Callable[[int], None] | None = None) -> int:
    """Imports ``path`` into ``table`` (created if missing); returns the number of rows."""
    if not os.path.exists(path):
        raise ProgrammingError(f"no such file: {path}")
    fmt = detect_format(path, fmt)
    total = 0
    for batch in _batches(path, fmt):
        total += connection.ingest(table, batch, create=True)
        if progress is not None:
            progress(total)
    connection.commit()
    return total
