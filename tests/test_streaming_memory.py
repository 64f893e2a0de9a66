"""Reading a large result in a stream keeps the Python heap bounded, whatever its size.

Issue #7: iterating or batching over a 10M-row result keeps the Python heap peak under
50 MB (``benchmarks/bench_streaming.py`` measures the 10M-row case).  Here a 150k-row
result is read every streaming way while ``tracemalloc`` watches; the same result
fetched whole needs several times the bound, which shows the measurement can fail.
"""
from __future__ import annotations

import tracemalloc
from typing import Any, Callable

import pyarrow as pa
import pytest

import terndb

ROWS = 150_000
BOUND_MB = 10.0


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> Any:
    connection = terndb.connect(str(tmp_path_factory.mktemp("stream") / "db"), durability="off")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT)")
    ids = pa.array(range(ROWS), pa.int64())
    connection.ingest("t", pa.table({
        "id": ids,
        "n": pa.compute.bit_wise_and(ids, pa.scalar(1023, pa.int64())),
        "x": pa.compute.multiply(ids.cast(pa.float64()), pa.scalar(0.25)),
        "s": pa.compute.binary_join_element_wise(pa.scalar("row"), ids.cast(pa.string()), ""),
    }))
    connection.commit()
    yield connection
    connection.close()


def _iterate(cursor: Any) -> int:
    return sum(1 for _row in cursor)


def _fetchmany(cursor: Any) -> int:
    count = 0
    while rows := cursor.fetchmany(5_000):
        count += len(rows)
    return count


def _record_batches(cursor: Any) -> int:
    return sum(batch.num_rows for batch in cursor.fetch_record_batch(rows_per_batch=20_000))


def _fetchall(cursor: Any) -> int:
    return len(cursor.fetchall())


def _heap_peak_mb(con: Any, read: Callable[[Any], int]) -> float:
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        cursor = con.execute("SELECT * FROM t")
        assert read(cursor) == ROWS
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - base) / 1e6


@pytest.mark.parametrize("read", [_iterate, _fetchmany, _record_batches], ids=lambda f: f.__name__[1:])
def test_streaming_reads_keep_the_heap_bounded(con: Any, read: Callable[[Any], int]) -> None:
    assert _heap_peak_mb(con, read) < BOUND_MB


def test_fetching_everything_exceeds_the_bound(con: Any) -> None:
    # The control: holding every row at once costs far more than the streaming bound.
    assert _heap_peak_mb(con, _fetchall) > 2 * BOUND_MB
