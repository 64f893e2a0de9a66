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
(``terndb.engine.repl_nats``); ``nats_options`` also takes the connection's
credentials and TLS files (``user``, ``password``, ``token``,
``credentials``, ``nkey_seed``, ``tls_ca``, ``tls_cert``, ``tls_key``,
``tls_hostname``) and the stream's ``domain`` / ``max_msgs``.

Where the NATS publisher runs: ``start()`` publishes from a child process
(``terndb.engine.repl_publisher``) so that the application's own commits
keep their speed (a publishing thread would share the application's GIL);
``nats_options={"publisher": "thread"}`` keeps it in this process's
replicator thread (``terndb replicate`` does: it is its own process).
``sync_nats()`` always publishes in the calling thread.

Security (``terndb.engine.repl_guard``): every incoming change set is
checked before it is applied; ``grants`` limits what each origin node may
change (tables, columns, insert/update/delete, DDL); ``sign_key`` signs what
this node publishes over NATS and ``trust`` maps origin node ids to the
public keys their change sets must be signed with.  Refused or unappliable
messages are never applied and land in the queryable ``terndb_dead_letters``
table (``dead_letters()``); the replicator keeps running.  Only tables with a
declared PRIMARY KEY replicate.  The node id is the database's own, persisted
(``status()["node_id"]`` in hex, ``"node_label"`` readable); ``node_id=`` here
or in ``terndb.connect`` sets it before the database first writes.
``node_name`` is a label stored with the configuration.
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any, Iterable

from terndb.engine.database import Database, node_label
from terndb.engine.errors import Error, NoSuchObjectError, ProgrammingError
from terndb.engine.repl_apply import Applier, ApplyStats
from terndb.engine.repl_feed import ChangeFeed
from terndb.engine.repl_guard import Guard, Signer, generate_keypair
from terndb.engine.repl_local import LocalPeer, bootstrap
from terndb.engine.repl_versions import (
    CONFLICT_TABLE, DEAD_LETTER_TABLE, DEFAULT_HORIZON_MS, K_CONFIG, TableSet, VersionStore,
    check_replicable,
)

__all__ = ["Replicator", "replicate", "ChangeFeed", "generate_keypair"]


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
                 nats_options: dict | None = None, grants: Any = None, sign_key: Any = None,
                 trust: dict | None = None, require_signatures: bool | None = None,
                 node_id: Any = None) -> None:
        # Configuration errors (bad grants, unreadable keys) surface before anything opens.
        guard = Guard(grants=grants, trust=trust, require_signatures=require_signatures)
        self.signer = Signer(sign_key) if sign_key is not None else None
        self._nats_options = dict(nats_options or {})
        if nats:
            from terndb.engine.repl_nats import NatsSecurity
            NatsSecurity.split(self._nats_options)[0].connect_options()    # files exist, cert has key
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
        self.applier.guard = guard
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
            self._nats = self._nats_replicator()
            self._nats.start()
        self._thread = threading.Thread(target=self._run, name="terndb-replicator", daemon=True)
        self._thread.start()
        return self

    def _nats_replicator(self) -> Any:
        from terndb.engine.repl_nats import NatsReplicator, NatsSecurity
        security, options = NatsSecurity.split(self._nats_options)
        return NatsReplicator(self, self._nats_url, security=security, signer=self.signer, **options)

    def sync_nats(self) -> ApplyStats:
        """Publish everything pending to NATS and apply everything available, once (blocking).

        Raises OperationalError when the server cannot be reached or refuses the credentials."""
        if not self._nats_url:
            raise ProgrammingError("this replicator has no NATS server (nats=URL)")
        total = self._nats_replicator().run_once()
        with self._lock:
            self.totals.add(total)
        return total

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
            "totals": totals, "conflicts": self.conflict_count(), "dead_letters": self.dead_letter_count(),
            "errors": self._errors, "last_error": self.last_error,
        }

    def conflict_count(self) -> int:
        rows = self._conflict_rows("SELECT count(*) FROM " + CONFLICT_TABLE)
        return rows[0][0] if rows else 0

    def dead_letter_count(self) -> int:
        try:
            rows = self._conflict_rows("SELECT count(*) FROM " + DEAD_LETTER_TABLE)
        except NoSuchObjectError:       # created with the first dead letter
            return 0
        return rows[0][0] if rows else 0

    def dead_letters(self, limit: int = 1000) -> list[dict]:
        """Refused or unappliable incoming messages, newest first (see ``terndb.engine.repl_guard``)."""
        try:
            return [dict(r) for r in self._dict_rows(
                f"SELECT * FROM {DEAD_LETTER_TABLE} ORDER BY id DESC LIMIT {int(limit)}")]
        except NoSuchObjectError:
            return []

    def _dict_rows(self, sql: str, params: tuple = ()) -> list[dict]:
        from terndb.engine.session import Session
        s = Session(self.db)
        try:
            res = s.execute(sql, params)
            names = res.names
            return [dict(zip(names, r)) for r in res.fetch(-1)]
        finally:
            s.close()

    def conflicts(self, table: str | None = None, limit: int = 1000) -> list[dict]:
        """Recorded conflicts, newest first, as dicts (JSON columns decoded)."""
        sql = f"SELECT * FROM {CONFLICT_TABLE}"
        params: tuple = ()
        if table:
            sql += " WHERE table_name = ?"
            params = (table,)
        sql += f" ORDER BY id DESC LIMIT {int(limit)}"
        out = []
        for d in self._dict_rows(sql, params):
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
    parser.add_argument("--nats-database", metavar="NAME", default="terndb",
                        help="replicated database name on the NATS server: stream TERNDB_<NAME>, subjects "
                        "terndb.<NAME>.> (default: terndb)")
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
    _add_security_arguments(parser)
    parser.set_defaults(handler=run_cli)
    return parser


def _add_security_arguments(parser: Any) -> None:
    auth = parser.add_argument_group("NATS authentication and TLS")
    auth.add_argument("--nats-user", metavar="USER", help="user name (with --nats-password)")
    auth.add_argument("--nats-password", metavar="PASSWORD",
                      help="password (or set TERNDB_NATS_PASSWORD to keep it out of the process list)")
    auth.add_argument("--nats-token", metavar="TOKEN", help="authentication token (or TERNDB_NATS_TOKEN)")
    auth.add_argument("--nats-creds", metavar="FILE", help="credentials file (user JWT and NKey seed)")
    auth.add_argument("--nats-nkey-seed", metavar="FILE", help="file holding an NKey seed")
    auth.add_argument("--tls-ca", metavar="FILE", help="CA certificates to verify the server with")
    auth.add_argument("--tls-cert", metavar="FILE", help="client certificate (mutual TLS; with --tls-key)")
    auth.add_argument("--tls-key", metavar="FILE", help="client certificate's private key")
    auth.add_argument("--tls-hostname", metavar="NAME", help="host name the server certificate must carry")
    sec = parser.add_argument_group("change-set security")
    sec.add_argument("--grants", metavar="FILE",
                     help="JSON file of per-origin write grants (see terndb.engine.repl_guard)")
    sec.add_argument("--sign-key", metavar="FILE", help="ed25519 private key (PEM) to sign published change sets")
    sec.add_argument("--trust", action="append", default=[], metavar="ORIGIN=PUBFILE",
                     help="trust change sets from node ORIGIN (hex id) signed with this public key (repeatable)")
    sec.add_argument("--require-signatures", action=argparse.BooleanOptionalAction, default=None,
                     help="refuse unsigned change sets from the network (default: on when --trust is given)")


def _security_options(args: Any) -> dict:
    """Replicator keyword arguments from the security flags."""
    nats_options = {k: v for k, v in {
        "user": args.nats_user, "password": args.nats_password or os.environ.get("TERNDB_NATS_PASSWORD"),
        "token": args.nats_token or os.environ.get("TERNDB_NATS_TOKEN"), "credentials": args.nats_creds,
        "nkey_seed": args.nats_nkey_seed, "tls_ca": args.tls_ca, "tls_cert": args.tls_cert,
        "tls_key": args.tls_key, "tls_hostname": args.tls_hostname}.items() if v is not None}
    if "password" in nats_options and "user" not in nats_options:
        del nats_options["password"]      # only from the environment, without a user: unused
    trust = {}
    for item in args.trust:
        origin, sep, path = item.partition("=")
        if not sep or not origin or not path:
            raise ProgrammingError(f"--trust expects ORIGIN=PUBFILE, not {item!r}")
        trust[origin] = path
    nats_options["database"] = args.nats_database
    nats_options["publisher"] = "thread"     # this command is the replicator's own process already
    return {"nats_options": nats_options, "grants": args.grants, "sign_key": args.sign_key,
            "trust": trust, "require_signatures": args.require_signatures}


def add_keygen_parser(subparsers: Any) -> Any:
    """Add the ``keygen`` sub-parser: a new ed25519 key pair for change-set signing."""
    parser = subparsers.add_parser(
        "keygen", help="create an ed25519 key pair for signing replicated change sets",
        description="Write a new ed25519 private key to KEYFILE (PEM, mode 0600) and its public key to "
        "KEYFILE.pub. Give the private key to `terndb replicate --sign-key`, the public key to the "
        "receiving nodes' `--trust ORIGIN=KEYFILE.pub`.")
    parser.add_argument("keyfile", metavar="KEYFILE", help="private key file to create (must not exist)")
    parser.set_defaults(handler=run_keygen)
    return parser


def run_keygen(args: Any, streams: Any, connect: Any, error_class: type[BaseException]) -> int:
    try:
        public = generate_keypair(args.keyfile)
    except FileExistsError:
        streams.stderr.write(f"Error: {args.keyfile} already exists\n")
        return 1
    except (OSError, Error) as exc:
        streams.stderr.write(f"Error: {exc}\n")
        return 1
    streams.stdout.write(json.dumps({"private_key": args.keyfile, "public_key": public}) + "\n")
    return 0


def run_cli(args: Any, streams: Any, connect: Any, error_class: type[BaseException]) -> int:
    if not args.nats and not args.peer:
        streams.stderr.write("Error: replicate needs --nats URL and/or --peer OTHER_DB\n")
        return 2
    try:
        rep = Replicator(args.path, peers=args.peer, nats=args.nats, publish=args.publish or "*",
                         subscribe=args.subscribe or "*", node_name=args.node_id, node_id=args.node_id,
                         **_security_options(args))
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
                try:
                    total.add(rep.sync_nats())
                except Error as exc:
                    streams.stderr.write(f"Error: {exc}\n")
                    return 1
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
