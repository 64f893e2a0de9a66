"""Replication between terndb databases: the Python API.

    from terndb.replication import Replicator

    rep = Replicator("node_a/", peers=["node_b/"], publish=["orders"], subscribe=["*"])
    rep.start()                       # background thread: pulls peers, applies, relays
    ...
    rep.status()                      # positions, lag, counters, conflicts, last error
    rep.conflicts()                   # rows of the terndb_conflicts table
    for ch in rep.feed.changes("orders", since=0): ...
    rep.stop()

Model (details in ``terndb.engine.repl_*``): every committed transaction is a
change set in the binlog; replicas merge change sets with last-writer-wins
per column (hybrid logical clock, ties by node id), deletes leave tombstones
that late updates cannot undo, and the merge is idempotent and
order-independent, so duplicated or reordered deliveries converge.  Writes
that lose are recorded in the queryable ``terndb_conflicts`` table.

Transports: ``peers`` are other databases on this host (read directly; a
mesh relays through every node), ``nats`` is a NATS JetStream server URL
(``terndb.engine.repl_nats``).  Only tables with a declared PRIMARY KEY
replicate.  The node id is the database's own, persisted (``status()["node_id"]``
in hex, ``"node_label"`` readable); ``node_id=`` here or in ``terndb.connect``
sets it before the database first writes.  ``node_name`` is a label stored
with the configuration.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Iterable

from terndb.engine.database import Database, node_label
from terndb.engine.errors import Error, ProgrammingError
from terndb.engine.repl_apply import Applier, ApplyStats
from terndb.engine.repl_feed import ChangeFeed
from terndb.engine.repl_local import LocalPeer, bootstrap
from terndb.engine.repl_versions import (
    CONFLICT_TABLE, DEFAULT_HORIZON_MS, K_CONFIG, TableSet, VersionStore, check_replicable,
)

__all__ = ["Replicator", "replicate", "ChangeFeed"]


def _open(database: Any) -> tuple[Database, bool]:
    """(engine Database, whether we opened it and must release it)."""
    inner = getattr(database, "_db", None)
    if isinstance(inner, Database):
        return inner, False
    if isinstance(database, Database):
        return database, False
    return Database.open(os.fspath(database)), True


class Replicator:
    """Replicates one database with local peers and/or a NATS JetStream server."""

    def __init__(self, database: Any, *, publish: Iterable[str] | str = "*",
                 subscribe: Iterable[str] | str = "*", peers: Iterable[Any] = (),
                 nats: str | None = None, node_name: str | None = None, interval: float = 0.05,
                 batch: int = 1000, horizon_ms: int = DEFAULT_HORIZON_MS, relay: bool = True,
                 nats_options: dict | None = None, node_id: Any = None) -> None:
        self.db, self._owns_db = _open(database)
        if node_id is not None:     # persisted; refused if it would change a node that already wrote
            try:
                self.db.set_node_id(node_id)
            except BaseException:
                if self._owns_db:
                    self.db.release()
                raise
        self.publish = TableSet(publish)
        self.subscribe = TableSet(subscribe)
        self.node_name = node_name
        self.interval = interval
        self.batch = batch
        self.versions = VersionStore(self.db, _union(self.publish, self.subscribe), horizon_ms)
        self.applier = Applier(self.db, self.subscribe, self.versions, relay=relay)
        self.feed = ChangeFeed(self.db)
        self._peers: list[LocalPeer] = []
        self._peer_dbs: list[tuple[Database, bool]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.totals = ApplyStats()
        self.last_error: str | None = None
        self._errors = 0
        self._nats: Any = None
        self._nats_url = nats
        self._nats_options = dict(nats_options or {})
        self._configure()
        for p in peers:
            self.add_peer(p)

    # -- setup ----------------------------------------------------------------------------

    def _configure(self) -> None:
        with self.db.store.begin_read() as rt:
            schema = self.db.committed_schema(rt.txn)
        check_replicable(schema, self.publish)
        check_replicable(schema, self.subscribe)
        config = json.dumps({"publish": self.publish.to_list(), "subscribe": self.subscribe.to_list(),
                             "node_name": self.node_name}).encode()

        def work(w: Any) -> None:
            _, sdb = self.versions.handles(w)
            w.txn.put(K_CONFIG, config, db=sdb)
            self.versions.catch_up(w)
        self.db.store.write(work, timeout=30.0)
        self.applier.ensure_conflict_table()
        self.versions.install()

    def add_peer(self, peer: Any) -> LocalPeer:
        """Add a database on this host (path, Connection or engine Database) to pull from."""
        pdb, owned = _open(peer)
        if pdb is self.db or pdb.node_id == self.db.node_id:
            if owned:
                pdb.release()
            raise ProgrammingError("a database cannot be its own replication peer")
        lp = LocalPeer(self.applier, pdb, batch=self.batch)
        with self._lock:
            self._peers.append(lp)
            self._peer_dbs.append((pdb, owned))
        self._wake.set()
        return lp

    def bootstrap(self, peer: Any) -> int:
        """Merge a peer's current state here (rows only the peer has appear; nothing local is
        replaced unless the peer's versions are newer), then follow it from that point."""
        pdb, owned = _open(peer)
        try:
            return bootstrap(self.applier, pdb, channel="local:" + pdb.node_id.hex())
        finally:
            if owned:
                pdb.release()

    # -- running ----------------------------------------------------------------------------

    def sync(self, max_rounds: int = 1000) -> ApplyStats:
        """Pull every local peer until none has anything new (in the calling thread)."""
        total = ApplyStats()
        for _ in range(max_rounds):
            moved = 0
            for lp in list(self._peers):
                stats = lp.pull_all()
                moved += stats.messages
                total.add(stats)
            if not moved:
                break
        with self._lock:
            self.totals.add(total)
        return total

    def start(self) -> "Replicator":
        if self._thread is not None:
            return self
        self._stop.clear()
        if self._nats_url:
            from terndb.engine.repl_nats import NatsReplicator
            self._nats = NatsReplicator(self, self._nats_url, **self._nats_options)
            self._nats.start()
        self._thread = threading.Thread(target=self._run, name="terndb-replicator", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = self.interval
        while not self._stop.is_set():
            try:
                moved = 0
                for lp in list(self._peers):
                    stats = lp.pull_once()
                    moved += stats.messages
                    with self._lock:
                        self.totals.add(stats)
                backoff = self.interval
                self.last_error = None     # recovered: status shows only a current error
                if moved:
                    continue
            except Error as exc:       # keep running: the next round retries from the stored position
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._errors += 1
                backoff = min(2.0, backoff * 2)
            self._wake.wait(backoff)
            self._wake.clear()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._nats is not None:
            self._nats.stop(timeout)
            self._nats = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        """Stop and release the databases this replicator opened."""
        self.stop()
        self.versions.uninstall()
        with self._lock:
            for pdb, owned in self._peer_dbs:
                if owned:
                    pdb.release()
            self._peer_dbs.clear()
            self._peers.clear()
        if self._owns_db:
            self.db.release()
            self._owns_db = False

    def __enter__(self) -> "Replicator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inspection ----------------------------------------------------------------------------

    def status(self) -> dict:
        with self.db.store.begin_read() as rt:
            last = self.db.binlog.last_sequence(rt.txn)
        peers = []
        for lp in list(self._peers):
            peers.append({"path": lp.source.path, "node_id": lp.source.node_id.hex(), "channel": lp.channel,
                          "position": self.applier.position(lp.channel), "lag": lp.lag()})
        with self._lock:
            totals = self.totals.as_dict()
        return {
            "node_id": self.db.node_id.hex(), "node_label": node_label(self.db.node_id),
            "node_name": self.node_name,
            "running": self._thread is not None and self._thread.is_alive(),
            "publish": self.publish.to_list(), "subscribe": self.subscribe.to_list(),
            "binlog_position": last, "peers": peers,
            "nats": self._nats.status() if self._nats is not None else None,
            "totals": totals, "conflicts": self.conflict_count(),
            "errors": self._errors, "last_error": self.last_error,
        }

    def conflict_count(self) -> int:
        rows = self._conflict_rows("SELECT count(*) FROM " + CONFLICT_TABLE)
        return rows[0][0] if rows else 0

    def conflicts(self, table: str | None = None, limit: int = 1000) -> list[dict]:
        """Recorded conflicts, newest first, as dicts (JSON columns decoded)."""
        sql = f"SELECT * FROM {CONFLICT_TABLE}"
        params: tuple = ()
        if table:
            sql += " WHERE table_name = ?"
            params = (table,)
        sql += f" ORDER BY id DESC LIMIT {int(limit)}"
        from terndb.engine.session import Session
        s = Session(self.db)
        try:
            res = s.execute(sql, params)
            names = res.names
            rows = res.fetch(-1)
        finally:
            s.close()
        out = []
        for r in rows:
            d = dict(zip(names, r))
            for k in ("pk", "columns", "winner_row", "loser_row"):
                if d.get(k):
                    d[k] = json.loads(d[k])
            out.append(d)
        return out

    def _conflict_rows(self, sql: str) -> list:
        from terndb.engine.session import Session
        s = Session(self.db)
        try:
            return s.execute(sql).fetch(-1)
        finally:
            s.close()

    def gc_tombstones(self, now_ms: int | None = None) -> int:
        """Drop tombstones older than the horizon (see ``terndb.engine.repl_versions``)."""
        return self.db.store.write(lambda w: self.versions.gc_tombstones(w, now_ms), timeout=30.0)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no local peer has unconsumed change sets (True) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(lp.lag() == 0 for lp in list(self._peers)) and (
                    self._nats is None or self._nats.idle()):
                return True
            self._wake.set()
            time.sleep(0.01)
        return False


def _union(a: TableSet, b: TableSet) -> TableSet:
    if a.all or b.all:
        return TableSet("*")
    return TableSet(list(a.names | b.names))


def replicate(database: Any, *, peer: Any = None, nats: str | None = None, **options: Any) -> Replicator:
    """Start replicating ``database`` with one local ``peer`` and/or a NATS server; returns the replicator."""
    peers = [peer] if peer is not None else []
    return Replicator(database, peers=peers, nats=nats, **options).start()


# ---------------------------------------------------------------------------------------------
# `terndb replicate` (registered in terndb.cli.SUBCOMMANDS)

def add_cli_parser(subparsers: Any) -> Any:
    """Add the ``replicate`` sub-parser (its handler is ``run_cli``)."""
    parser = subparsers.add_parser(
        "replicate", help="replicate a database with peers on this host or through NATS JetStream",
        description="Replicate DB: pull change sets from --peer databases on this host and/or exchange them "
        "through a NATS JetStream server (--nats). Runs until interrupted, or with --once until caught up.")
    parser.add_argument("path", metavar="DB", help="database directory")
    parser.add_argument("--nats", metavar="URL", help="NATS server URL, e.g. nats://127.0.0.1:4222")
    parser.add_argument("--peer", action="append", default=[], metavar="OTHER_DB",
                        help="another database on this host to pull from (repeatable)")
    parser.add_argument("--publish", action="append", default=None, metavar="TABLE",
                        help="table to publish (repeatable; default: every table)")
    parser.add_argument("--subscribe", action="append", default=None, metavar="TABLE",
                        help="table to subscribe to (repeatable; default: every table)")
    parser.add_argument("--node-id", metavar="ID",
                        help="this database's node id, persisted: a name of 1-16 characters [A-Za-z0-9._:-], "
                        "32 hex digits or a UUID (refused if the database already wrote as another node)")
    parser.add_argument("--once", action="store_true", help="catch up once, print statistics and exit")
    parser.add_argument("--bootstrap", action="store_true",
                        help="first merge each --peer's current state (instead of replaying its history)")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds")
    parser.set_defaults(handler=run_cli)
    return parser


def run_cli(args: Any, streams: Any, connect: Any, error_class: type[BaseException]) -> int:
    if not args.nats and not args.peer:
        streams.stderr.write("Error: replicate needs --nats URL and/or --peer OTHER_DB\n")
        return 2
    try:
        rep = Replicator(args.path, peers=args.peer, nats=args.nats, publish=args.publish or "*",
                         subscribe=args.subscribe or "*", node_name=args.node_id, node_id=args.node_id)
    except Exception as exc:  # noqa: BLE001 - one clear line for any failure to start
        streams.stderr.write(f"Error: {exc}\n")
        return 1
    try:
        if args.bootstrap:
            for p in args.peer:
                rep.bootstrap(p)
        if args.once:
            total = rep.sync()
            if args.nats:
                from terndb.engine.repl_nats import NatsReplicator
                total.add(NatsReplicator(rep, args.nats).run_once())
            streams.stdout.write(json.dumps({"status": rep.status(), "applied": total.as_dict()}) + "\n")
            return 0
        rep.start()
        streams.stdout.write(json.dumps({"started": rep.status()}) + "\n")
        streams.stdout.flush()
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
        streams.stdout.write(json.dumps({"stopped": rep.status()}) + "\n")
        return 0
    finally:
        rep.close()
