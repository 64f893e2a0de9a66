"""Hybrid logical clock: totally ordered commit timestamps that track wall time.

A timestamp is one unsigned 64-bit int: the high 48 bits are wall-clock
milliseconds since the Unix epoch, the low 16 bits a logical counter.  Plain
integer comparison orders timestamps, which is what last-writer-wins
replication compares.  ``now()`` never repeats or goes backwards, even when
the system clock steps back (NTP, a VM restore): the clock then keeps the
larger millisecond part and counts up.  ``observe()`` is the receive rule of
Kulkarni et al.'s HLC: after seeing a peer's timestamp, every later local
timestamp is larger than it.

A timestamp from a peer whose clock runs far ahead would drag this clock
(and every later write) into the future, so ``observe`` refuses timestamps
more than ``max_drift_ms`` ahead of the local wall clock.

The clock is not persisted by itself: ``Binlog`` feeds it the HLC of the last
stored change set through ``advance_to`` so a restarted process never issues a
smaller timestamp than one already committed.
"""
from __future__ import annotations

import datetime
import time
from typing import Callable

from terndb._cext import _core
from terndb.engine.errors import DataError, OperationalError

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
MAX_TIMESTAMP = (1 << 64) - 1
#: Default tolerance for peer clocks running ahead of ours (5 minutes).
DEFAULT_MAX_DRIFT_MS = 5 * 60 * 1000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _check_timestamp(ts: object, what: str) -> int:
    """Return ``ts`` if it is a valid 64-bit HLC, else raise DataError."""
    if type(ts) is not int or not 0 <= ts <= MAX_TIMESTAMP:
        raise DataError(f"{what} must be an int in [0, 2**64), not {ts!r}")
    return ts


def hlc_parts(ts: int) -> tuple[int, int]:
    """Split a timestamp into ``(wall_ms, logical_counter)``."""
    _check_timestamp(ts, "HLC timestamp")
    return ts >> LOGICAL_BITS, ts & LOGICAL_MASK


def hlc_from_parts(wall_ms: int, logical: int = 0) -> int:
    """Build a timestamp from milliseconds and a counter."""
    if not 0 <= logical <= LOGICAL_MASK:
        raise DataError(f"HLC logical counter {logical} out of range")
    return _check_timestamp((wall_ms << LOGICAL_BITS) | logical, "HLC timestamp")


def hlc_to_datetime(ts: int) -> datetime.datetime:
    """The wall-clock part of a timestamp as an aware UTC datetime."""
    wall_ms, _ = hlc_parts(ts)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return epoch + datetime.timedelta(milliseconds=wall_ms)


class HLC:
    """A thread-safe hybrid logical clock (one per process and database).

    ``wall_clock`` returns milliseconds since the epoch; tests substitute it.
    The last timestamp lives in a compiled ``HLCState`` whose every update is one
    atomic step, so the clock takes no lock.
    """

    __slots__ = ("_state", "_wall", "max_drift_ms")

    def __init__(self, last: int = 0, *,
                 max_drift_ms: int | None = DEFAULT_MAX_DRIFT_MS,
                 wall_clock: Callable[[], int] = _wall_ms) -> None:
        self._state = _core.HLCState(_check_timestamp(last, "initial HLC"))
        self._wall = wall_clock
        #: Largest lead (ms) a peer timestamp may have over our wall clock;
        #: None accepts any timestamp.
        self.max_drift_ms = max_drift_ms

    @property
    def last(self) -> int:
        """The largest timestamp issued or observed so far."""
        return self._state.last

    def now(self) -> int:
        """Issue a new timestamp, larger than every earlier one."""
        wall = self._wall
        # The default clock inlined: now() runs once per commit.
        physical = (time.time_ns() // 1_000_000 if wall is _wall_ms else wall()) << LOGICAL_BITS
        # When the wall clock has not moved past the last timestamp (same
        # millisecond, or it stepped back), count up from the last one; a
        # full counter carries into the millisecond part, still monotonic.
        if not 0 <= physical <= MAX_TIMESTAMP:
            physical = _floor(physical)
        return self._state.move(physical, True)

    def observe(self, remote: int) -> int:
        """Merge a peer's timestamp; return a new local timestamp above both.

        Equivalent to the HLC receive rule: the logical part continues from
        whichever of (local, remote) holds the larger millisecond value and
        restarts at 0 when the wall clock is ahead of both.
        """
        _check_timestamp(remote, "remote HLC timestamp")
        wall = self._wall()
        if (self.max_drift_ms is not None
                and (remote >> LOGICAL_BITS) - wall > self.max_drift_ms):
            raise OperationalError(
                f"peer clock is {(remote >> LOGICAL_BITS) - wall} ms ahead of "
                f"ours (limit {self.max_drift_ms} ms): refusing its timestamp")
        # max(physical, max(last, remote) + 1) == max(max(physical, remote + 1), last + 1)
        return self._state.move(_floor(max(wall << LOGICAL_BITS, remote + 1)), True)

    def advance_to(self, ts: int) -> None:
        """Make every later timestamp larger than ``ts`` (restart recovery).

        Unlike ``observe`` this trusts ``ts`` (it comes from our own storage)
        and issues nothing.
        """
        self._state.move(_check_timestamp(ts, "HLC timestamp"), False)

    def __repr__(self) -> str:
        wall_ms, logical = divmod(self._state.last, 1 << LOGICAL_BITS)
        return f"HLC(last={wall_ms}ms+{logical})"


def _floor(ts: int) -> int:
    """``ts`` as the lower bound of the next timestamp: a wall clock before the epoch
    bounds nothing, one past 64 bits exhausts the clock."""
    if ts > MAX_TIMESTAMP:
        raise OperationalError("HLC exhausted: timestamp exceeds 64 bits")
    return ts if ts > 0 else 0


__all__ = [
    "HLC", "hlc_parts", "hlc_from_parts", "hlc_to_datetime",
    "LOGICAL_BITS", "MAX_TIMESTAMP", "DEFAULT_MAX_DRIFT_MS",
]
