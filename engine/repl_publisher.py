"""The NATS publisher of an in-process replicator, run in a child process.

Why: a ``Replicator`` started inside the writing application would otherwise
publish from a thread of that process.  Publishing costs CPU for every
commit (bringing the version records current, reading the binlog, encoding,
the NATS client): 4-5 us of CPU per single-row change set on this
project's 2-core test machine (``publisher_cpu_us_per_commit`` in the
benchmark; 10-20 us before the per-change-set work was compiled), against
some 20-30 us for the commit itself.  In a thread all of it is taken under the application's GIL, so it
comes straight out of the writer's throughput.  In a child process it runs
on another core when there is one, and the writer meets the publisher only
at the database's write lock, and seldom: the publisher writes the version
records' catch-up and its position when the writer pauses or every few
seconds, not every round (``engine/repl_nats.py``, "The write lock").
Figures: benchmarks/bench_replication.py, section "commit".

The child runs at a lower CPU priority (``PUBLISHER_NICENESS``): where
cores are scarce the application's commits go first and publishing lags a
little more, which is the trade a writer-first embedded database wants.

How: ``PublisherProcess`` starts ``python -m terndb.engine.repl_publisher``
(a fresh interpreter: no fork of a process with open LMDB environments and
running threads, and no re-import of the application's main module as
multiprocessing's spawn would do) and sends it one JSON line on stdin: the
database path, the NATS URL and options, the published tables, the signing
key.  The child opens the same database (LMDB is multi-process safe) and
runs ``NatsReplicator``'s publishing loop unchanged: same binlog reads, batches,
``Nats-Msg-Id`` dedup, position kept in the database, signatures.  It
prints a status line (JSON counters) whenever they change, at most every
``STATUS_INTERVAL`` s, which the parent's reader thread keeps for
``status()``.  Closing the child's stdin stops it (it stores its position
first); so does the parent's death (stdin reaches EOF).  A child that exits
on its own is started again after a pause, with the exit reported in
``status()``.

The key travels on the pipe, never on the command line.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from typing import Any

log = logging.getLogger("terndb.replication")

#: Seconds between the child's status lines (at most; none while nothing changes).
STATUS_INTERVAL = 0.05
#: How much the child lowers its CPU priority (``os.nice``).  Publishing is the application's
#: background work: where the cores are busy (other processes, nats-server), the application's
#: commits should get the CPU and the publisher catch up when they pause, a little later.
#: Measured (benchmarks/bench_replication.py, commit section, 2 cores shared with other work):
#: in-process commit rate with publishing vs off 0.50-0.65 at 0, 0.76-1.27 at 10 (three
#: interleaved pairs).  Without contention it changes nothing.
PUBLISHER_NICENESS = 10
#: Seconds before a publisher process that exited unexpectedly is started again.
RESTART_PAUSE = 1.0


class PublisherProcess:
    """Runs the publishing half of ``nr`` (a ``NatsReplicator``) in a child process."""

    def __init__(self, nr: Any) -> None:
        self.nr = nr
        self.counters: dict[str, Any] = {}      # the child's last status line
        self.restarts = 0
        self.exit_error: str | None = None
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    # -- the parent's side --------------------------------------------------------------------

    def config(self) -> dict:
        nr = self.nr
        signer = nr.signer
        return {"path": os.path.abspath(nr.db.path), "durability": nr.db.store.durability.value,
                "url": nr.url, "database": nr.dbname,
                "publish": nr.rep.publish.to_list(), "horizon_ms": nr.rep.versions.horizon_ms,
                "security": nr.security.as_dict(), "options": nr.child_options(),
                "sign_key": signer.raw_private_key().hex() if signer is not None else None}

    def start(self) -> None:
        self._stopping.clear()
        self._reader = threading.Thread(target=self._run, name="terndb-nats-publisher", daemon=True)
        self._reader.start()

    def _spawn(self) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "terndb.engine.repl_publisher"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                close_fds=True)
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(self.config()) + "\n")
            proc.stdin.flush()
        except OSError:         # it died at once: its exit code tells the reader loop
            pass
        return proc

    def _run(self) -> None:
        """Keep a child running until stopped, reading its status lines."""
        while not self._stopping.is_set():
            try:
                code = self._run_child()
            except Exception as exc:        # noqa: BLE001 - keep publishing alive; status shows it
                code = None
                self.exit_error = f"publisher process failed: {type(exc).__name__}: {exc}"
                log.warning("NATS publisher process failed; restarting", exc_info=True)
            if self._stopping.is_set():
                break
            if code is not None:
                self.exit_error = f"publisher process exited with code {code}; restarting"
                log.warning("NATS publisher process exited with code %s; restarting", code)
            self.restarts += 1
            self._stopping.wait(RESTART_PAUSE)

    def _run_child(self) -> int:
        """Start one child and read its status lines until it exits; its exit code."""
        proc = self._spawn()
        with self._lock:
            self._proc = proc
        if self._stopping.is_set() and proc.stdin is not None:
            proc.stdin.close()                  # stop() ran while it started: let it end at once
        assert proc.stdout is not None
        try:
            for line in proc.stdout:            # blocking reads: the GIL is free meanwhile
                try:
                    self.counters = json.loads(line)
                except ValueError:
                    continue
            return proc.wait()
        finally:
            proc.stdout.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the child to store its position and exit (close its stdin); kill it after ``timeout``."""
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout)
            self._reader = None

    def acked_position(self) -> int | None:
        return self.counters.get("acked")

    def status(self) -> dict:
        c = self.counters
        return {"published": c.get("published", 0), "published_messages": c.get("messages", 0),
                "publish_duplicates": c.get("duplicates", 0), "errors": c.get("errors", 0),
                "last_error": c.get("last_error") or self.exit_error, "pid": self._proc.pid if self._proc else None,
                "restarts": self.restarts}


# ---------------------------------------------------------------------------------------------
# The child's side

class _PublishOnly:
    """What ``NatsReplicator`` needs of a ``Replicator`` to publish (nothing subscribed)."""

    def __init__(self, db: Any, publish: Any, versions: Any) -> None:
        from .repl_apply import ApplyStats
        from .repl_versions import TableSet
        self.db = db
        self.publish = publish
        self.subscribe = TableSet([])
        self.versions = versions
        self.applier = None
        self.totals = ApplyStats()
        self._lock = threading.Lock()


def _report(nr: Any, done: threading.Event) -> None:
    """Print the publisher's counters whenever they change (at most every STATUS_INTERVAL)."""
    last = None
    while True:
        stopped = done.wait(STATUS_INTERVAL)
        now = {"published": nr.published, "messages": nr.pub_messages, "duplicates": nr.pub_duplicates,
               "errors": nr.error_count, "last_error": nr.last_error, "acked": nr._acked_pos}
        if now != last:
            try:
                print(json.dumps(now), flush=True)
            except (BrokenPipeError, ValueError):
                return
            last = now
        if stopped:
            return


def _lower_priority() -> None:
    """Yield the CPU to the application when they compete (``PUBLISHER_NICENESS``)."""
    try:
        os.nice(PUBLISHER_NICENESS)
    except (AttributeError, OSError):       # no os.nice (Windows), or not permitted: run as is
        pass


def child_main() -> int:
    import asyncio

    from .database import Database
    from .repl_guard import Signer
    from .repl_nats import NatsReplicator, NatsSecurity
    from .repl_versions import TableSet, VersionStore
    config = json.loads(sys.stdin.readline())
    _lower_priority()
    # The application's durability: a "full" catch-up commit here would fsync while holding the
    # write lock the application's commits wait for.
    db = Database.open(config["path"], durability=config["durability"])
    try:
        publish = TableSet(config["publish"])
        versions = VersionStore(db, publish, config["horizon_ms"])
        versions.install()
        signer = Signer.from_raw(bytes.fromhex(config["sign_key"])) if config["sign_key"] else None
        nr = NatsReplicator(_PublishOnly(db, publish, versions), config["url"], database=config["database"],
                            security=NatsSecurity(**config["security"]), signer=signer,
                            serve_snapshots=False, **config["options"])

        def watch_stdin() -> None:          # EOF: the parent stopped us, or died
            sys.stdin.read()
            nr._stop.set()
        threading.Thread(target=watch_stdin, daemon=True).start()
        done = threading.Event()
        reporter = threading.Thread(target=_report, args=(nr, done), daemon=True)
        reporter.start()
        asyncio.run(nr._main())             # stores the position on the way out
        done.set()
        reporter.join(5)
    finally:
        db.release()
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
