"""Replication security: what a node accepts from its peers, and where it puts the rest.

Every incoming wire message passes ``Guard.admit`` before the ``Applier``
touches anything (``engine/repl_apply.py`` calls it where it decodes a
message).  ``admit`` returns a ``Verdict``: the decoded ``Message`` to apply,
or the reason it is refused.  Refused messages are never applied; the
applier records them in the dead-letter table in the same transaction that
moves the channel position, so they are acknowledged (no redelivery loop) and
kept for inspection.  A message that passes the checks but still fails to
apply with a non-transient error (say, a row record that does not decode) is
rolled back on its own and dead-lettered the same way.

Checks, in order
----------------
1. **Envelope and size**: a signed envelope is unwrapped (below); a message
   from the network larger than ``max_message_bytes`` is refused unread.
   A batch message (several change sets of one origin, ``repl_feed``) is
   split here (``admit_all``): the envelope, size and signature checks apply
   to the batch as a whole (a batch mixing origins is refused whole), the
   others to each change set, which is admitted or refused on its own.
2. **Signature** (``trust`` / ``require_signatures``): a signed envelope is
   ``b"TRS1" | 64-byte ed25519 signature | wire message``; the signature covers
   the exact wire-message bytes (a batch's: all its change sets at once) and
   is checked with the public key trusted for the change set's origin node.  When signatures are required, unsigned
   messages, bad signatures and origins without a trusted key are refused.
   Local peers (channels ``local:*``: databases on this host read directly,
   nothing crosses a network) are not asked for signatures.
3. **Structure**: the wire message and every change-set entry decode
   (``decode_changeset`` checks each length against the bytes left, so a
   forged length cannot drive a large allocation); the commit HLC is not
   more than ``max_future_ms`` ahead of this node's wall clock (a far-future
   timestamp would win every last-writer-wins comparison forever); by
   default the limit is the node clock's own drift limit (``HLC.max_drift_ms``).
4. **SQL carried by the message**: each table-map CREATE statement and each
   DDL entry's SQL must be exactly one statement of the expected kind naming
   the expected object (``CREATE TABLE`` without ``AS SELECT``, ``CREATE
   INDEX``, ``CREATE VIEW``), so a peer cannot smuggle other SQL into the
   apply transaction.
5. **Grants** (``Grants``, optional): per origin node (hex id, or ``*``),
   which tables it may change and, per table, which columns and whether it
   may insert, update and delete, and whether it may run DDL (which includes
   creating a table this node does not have yet).  A change set touching
   anything not granted is refused whole: change sets are atomic.

Grant specification (a dict, or a JSON file)::

    {"*":        {"tables": {"readings": "*"}},
     "9f3c...":  {"tables": {"thresholds": ["limit", "note"],
                             "devices": {"columns": "*", "delete": false}},
                  "ddl": true}}

A table value is ``"*"`` (every column, every operation), a list of columns,
or an object with ``columns`` (list or ``"*"``) and ``insert``/``update``/
``delete`` booleans (default true).  ``"tables": "*"`` grants every table.
An origin with no entry (and no ``*``) may change nothing.  Column rules:
an update may change only granted columns; an insert by a column-restricted
origin must leave the other non-key columns NULL.  Primary-key columns name
the row and are always allowed.  Known limit: an update also carries the
writer's current values of the columns it did not change, which last-writer-
wins keeps at the lowest rank (any real write replaces them) to fill in a
row whose insert has not arrived here; from a column-restricted origin those
values can therefore appear in a row this node had not seen yet.

Dead-letter table ``terndb_dead_letters`` (queryable SQL, never replicated):
``id, received_at`` (UTC ISO), ``channel, position`` (transport and its
stream position), ``origin, origin_sequence, hlc`` (when the header
decoded), ``reason``, ``size`` and ``message`` (the raw bytes as received,
cut to ``DEAD_LETTER_KEEP_BYTES``; for one change set refused out of an
admitted batch, that change set as a single wire message).
"""
from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

from terndb._cext import _core as C

from .errors import CorruptDatabaseError, Error, ProgrammingError
from .hlc import hlc_parts
from .repl_feed import MAGIC, Message, ddl_subject, decode_wire, encode_message, is_batch
from .repl_versions import DEAD_LETTER_TABLE, OP_DDL, OP_DELETE, OP_INSERT, OP_UPDATE

SIGNED_MAGIC = b"TRS1"
SIGNATURE_SIZE = 64
#: Raw bytes kept per dead letter (the size column keeps the full length).
DEAD_LETTER_KEEP_BYTES = 1 << 20
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20

DEAD_LETTER_SQL = (
    f"CREATE TABLE IF NOT EXISTS {DEAD_LETTER_TABLE}("
    "id INTEGER PRIMARY KEY, received_at TEXT, channel TEXT, position INTEGER, origin TEXT, "
    "origin_sequence INTEGER, hlc INTEGER, reason TEXT, size INTEGER, message BLOB)")


# ---------------------------------------------------------------------------------------------
# Keys and signatures (the ``cryptography`` package)

def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:      # pragma: no cover - depends on the environment
        raise ProgrammingError("change-set signing needs the 'cryptography' package "
                               "(pip install 'terndb[security]')") from exc
    return ed25519, serialization


def generate_keypair(private_path: str | os.PathLike, public_path: str | os.PathLike | None = None) -> str:
    """Write a new ed25519 private key (PEM, mode 0600) and its public key; return the public path."""
    ed25519, ser = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    private_path = os.fspath(private_path)
    public_path = os.fspath(public_path) if public_path is not None else private_path + ".pub"
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    with open(public_path, "wb") as f:
        f.write(key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    return public_path


def _read_key_file(path: str | os.PathLike, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ProgrammingError(f"cannot read {what} {os.fspath(path)!r}: {exc}") from exc


def load_private_key(key: Any) -> Any:
    """An Ed25519PrivateKey from a key object or a PEM file path."""
    ed25519, ser = _crypto()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    data = _read_key_file(key, "private key")
    try:
        loaded = ser.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ProgrammingError(f"{os.fspath(key)!r} is not a PEM private key: {exc}") from exc
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise ProgrammingError(f"{os.fspath(key)!r} is not an ed25519 private key")
    return loaded


def load_public_key(key: Any) -> Any:
    """An Ed25519PublicKey from a key object, a PEM file path, or 32 raw bytes."""
    ed25519, ser = _crypto()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, (bytes, bytearray)) and len(key) == 32:
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes(key))
    data = _read_key_file(key, "public key")
    try:
        loaded = ser.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ProgrammingError(f"{os.fspath(key)!r} is not a PEM public key: {exc}") from exc
    if not isinstance(loaded, ed25519.Ed25519PublicKey):
        raise ProgrammingError(f"{os.fspath(key)!r} is not an ed25519 public key")
    return loaded


class Signer:
    """Signs outgoing wire messages with this node's ed25519 private key."""

    def __init__(self, key: Any) -> None:
        self._key = load_private_key(key)

    def wrap(self, message: bytes) -> bytes:
        """The signed envelope of ``message`` (signature over its exact bytes)."""
        return SIGNED_MAGIC + self._key.sign(message) + message

    def public_key(self) -> Any:
        return self._key.public_key()

    def raw_private_key(self) -> bytes:
        """The 32-byte private key (for handing to this node's publisher process over a pipe)."""
        _, ser = _crypto()
        return self._key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())

    @classmethod
    def from_raw(cls, raw: bytes) -> "Signer":
        ed25519, _ = _crypto()
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(raw))


def _origin_key(origin: str | bytes) -> str:
    """A node id (16 bytes or 32 hex digits) or ``*`` as the canonical lowercase hex string."""
    if isinstance(origin, (bytes, bytearray)):
        if len(origin) != 16:
            raise ProgrammingError(f"a node id has 16 bytes, not {len(origin)}")
        return bytes(origin).hex()
    text = str(origin).strip().lower()
    if text == "*":
        return text
    try:
        if len(bytes.fromhex(text)) == 16:
            return text
    except ValueError:
        pass
    raise ProgrammingError(f"{origin!r} is not a node id (32 hex digits, as in status()['node_id']) or '*'")


# ---------------------------------------------------------------------------------------------
# Grants

@dataclass(frozen=True)
class TableGrant:
    """What an origin may do to one table."""
    columns: frozenset[str] | None = None     # None: every column
    insert: bool = True
    update: bool = True
    delete: bool = True


@dataclass(frozen=True)
class OriginGrant:
    """What one origin node may change here."""
    tables: Mapping[str, TableGrant] | None    # None: every table, every column
    ddl: bool = False

    def table(self, name: str) -> TableGrant | None:
        if self.tables is None:
            return TableGrant()
        return self.tables.get(name.lower())


def _bool(spec: Mapping, key: str, default: bool, where: str) -> bool:
    v = spec.get(key, default)
    if not isinstance(v, bool):
        raise ProgrammingError(f"grants: {where}: {key!r} must be true or false")
    return v


def _columns(spec: Any, where: str) -> frozenset[str] | None:
    if spec == "*":
        return None
    if isinstance(spec, list) and all(isinstance(c, str) for c in spec):
        return frozenset(c.lower() for c in spec)
    raise ProgrammingError(f"grants: {where}: columns must be '*' or a list of names")


def _table_grant(spec: Any, where: str) -> TableGrant:
    if spec == "*" or spec is True:
        return TableGrant()
    if isinstance(spec, list):
        return TableGrant(_columns(spec, where))
    if isinstance(spec, dict):
        unknown = set(spec) - {"columns", "insert", "update", "delete"}
        if unknown:
            raise ProgrammingError(f"grants: {where}: unknown keys {sorted(unknown)}")
        return TableGrant(_columns(spec.get("columns", "*"), where), _bool(spec, "insert", True, where),
                          _bool(spec, "update", True, where), _bool(spec, "delete", True, where))
    raise ProgrammingError(f"grants: {where}: expected '*', a column list or an object")


def _origin_grant(spec: Any, origin: str) -> OriginGrant:
    if not isinstance(spec, dict):
        raise ProgrammingError(f"grants: origin {origin}: expected an object")
    unknown = set(spec) - {"tables", "ddl"}
    if unknown:
        raise ProgrammingError(f"grants: origin {origin}: unknown keys {sorted(unknown)}")
    tables = spec.get("tables", {})
    if tables == "*":
        parsed = None
    elif isinstance(tables, dict):
        parsed = {str(t).lower(): _table_grant(v, f"{origin}.{t}") for t, v in tables.items()}
    else:
        raise ProgrammingError(f"grants: origin {origin}: 'tables' must be '*' or an object")
    return OriginGrant(parsed, _bool(spec, "ddl", False, f"origin {origin}"))


class Grants:
    """Per-origin write grants (see the module docstring for the format)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if not isinstance(spec, Mapping):
            raise ProgrammingError("grants must be an object mapping origin node ids (or '*') to grants")
        self._by_origin = {_origin_key(k): _origin_grant(v, str(k)) for k, v in spec.items()}

    @classmethod
    def load(cls, source: "Grants | Mapping | str | os.PathLike") -> "Grants":
        """Grants from an instance, a dict, or a JSON file path."""
        if isinstance(source, Grants):
            return source
        if isinstance(source, Mapping):
            return cls(source)
        text = _read_key_file(source, "grants file").decode("utf-8", "replace")
        try:
            spec = json.loads(text)
        except ValueError as exc:
            raise ProgrammingError(f"grants file {os.fspath(source)!r} is not JSON: {exc}") from exc
        return cls(spec)

    def for_origin(self, origin: bytes) -> OriginGrant | None:
        return self._by_origin.get(origin.hex()) or self._by_origin.get("*")


# ---------------------------------------------------------------------------------------------
# The guard

@dataclass
class Verdict:
    """What ``Guard.admit`` decided about one message."""
    message: Message | None          # the message to apply, or None when refused
    reason: str | None = None
    origin: bytes | None = None      # header fields, when they decoded
    origin_sequence: int | None = None
    hlc: int | None = None
    #: bytes to keep for a dead letter when not the message as received (one change set of a batch)
    raw: bytes | None = None


def _refuse(reason: str, msg: Message | None = None) -> Verdict:
    if msg is None:
        return Verdict(None, reason)
    return Verdict(None, reason, msg.origin, msg.origin_sequence, msg.hlc)


def _create_target(sql: str, kind: str) -> tuple[Any, str]:
    """(parsed node, object name) of a single CREATE ``kind`` statement; ProgrammingError otherwise."""
    from sqlglot import exp

    from .sqlparse import parse_one
    node = parse_one(sql)
    if not isinstance(node, exp.Create) or str(node.args.get("kind", "")).upper() != kind:
        raise ProgrammingError(f"expected CREATE {kind}")
    target = node.this
    if kind == "TABLE":
        if node.expression is not None:
            raise ProgrammingError("CREATE TABLE ... AS SELECT is not accepted from a peer")
        table = target.this if isinstance(target, exp.Schema) else target
        return node, table.name
    return node, target.name


def _add_column_target(sql: str) -> str:
    """The table name of a single ``ALTER TABLE t ADD COLUMN ...``; ProgrammingError otherwise.

    Only ADD COLUMN travels between nodes (document tables grow this way);
    the applier skips other ALTERs, and this check keeps a peer from sending
    anything else under that name.
    """
    from sqlglot import exp

    from .sqlparse import parse_one
    node = parse_one(sql)
    if not isinstance(node, exp.Alter):
        raise ProgrammingError("expected ALTER TABLE ... ADD COLUMN")
    actions = node.args.get("actions") or []
    if str(node.args.get("kind", "")).upper() != "TABLE" or len(actions) != 1 \
            or not isinstance(actions[0], exp.ColumnDef):
        raise ProgrammingError("expected ALTER TABLE ... ADD COLUMN")
    return node.this.name


def _create_columns(node: Any) -> list[str]:
    from sqlglot import exp
    schema = node.this
    if not isinstance(schema, exp.Schema):
        return []
    return [c.name.lower() for c in schema.expressions if isinstance(c, exp.ColumnDef)]


class Guard:
    """Decides which incoming messages a node applies (see the module docstring)."""

    def __init__(self, *, grants: Grants | Mapping | str | os.PathLike | None = None,
                 trust: Mapping[str | bytes, Any] | None = None, require_signatures: bool | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, max_future_ms: int | None = None) -> None:
        self.grants = Grants.load(grants) if grants is not None else None
        self.trust = {bytes.fromhex(_origin_key(k)): load_public_key(v) for k, v in (trust or {}).items()}
        if "*" in {str(k) for k in (trust or {})}:
            raise ProgrammingError("trusted keys are per origin node id, not '*'")
        self.require_signatures = bool(self.trust) if require_signatures is None else require_signatures
        self.max_message_bytes = max_message_bytes
        self.max_future_ms = max_future_ms
        # (kind, name, sql) -> None or the reason it is refused.  Every message repeats the
        # CREATE TABLE of its tables: parsing it each time would dominate the apply cost.
        self._sql_verdicts: dict[tuple[str, str, str], str | None] = {}

    # -- the checks ----------------------------------------------------------------------------

    def admit(self, data: bytes, channel: str | None, schema: Any, subscribe: Any,
              clock_limit_ms: int | None = None) -> Verdict:
        """Check one incoming single-change-set message against the local ``schema``; never raises
        for bad input (a batch is refused here: ``admit_all`` splits batches).

        ``subscribe`` (a TableSet) is what this node applies: grants are checked
        only for the parts of a message that would be applied.  ``clock_limit_ms``
        is how far ahead a commit timestamp may be when the guard has no
        ``max_future_ms`` of its own (the applier passes its clock's drift limit,
        beyond which the clock would refuse the timestamp and stall the stream).
        """
        verdicts = self.admit_all(data, channel, schema, subscribe, clock_limit_ms)
        if len(verdicts) != 1:
            return _refuse("a batch of change sets where one change set was expected")
        return verdicts[0]

    def admit_all(self, data: bytes, channel: str | None, schema: Any, subscribe: Any,
                  clock_limit_ms: int | None = None) -> list[Verdict]:
        """``admit`` for a single message or a batch: one verdict per change set, in order
        (one refusal for the whole message when its envelope, structure or signature fails)."""
        network = channel is None or not channel.startswith("local:")
        if network and len(data) > self.max_message_bytes:
            return [_refuse(f"message of {len(data)} bytes exceeds the limit of {self.max_message_bytes}")]
        signature = None
        if data[:4] == SIGNED_MAGIC:
            if len(data) < 4 + SIGNATURE_SIZE:
                return [_refuse("signed envelope truncated inside its signature")]
            signature, data = data[4:4 + SIGNATURE_SIZE], data[4 + SIGNATURE_SIZE:]
        batch = is_batch(data)
        try:
            msgs = decode_wire(data)
            for msg in msgs:
                msg.entries         # decode every entry now: malformed input is refused whole
        except CorruptDatabaseError as exc:
            return [_refuse(f"malformed: {exc}")]
        except Exception as exc:    # noqa: BLE001 - hostile bytes must never escape as a crash
            return [_refuse(f"malformed: {type(exc).__name__}: {exc}")]
        first = msgs[0]
        if any(m.origin != first.origin for m in msgs):
            return [_refuse("a batch mixing change sets of several origins", first)]
        try:
            reason = self._check_signature(first, data, signature, network)
        except Exception as exc:    # noqa: BLE001 - never a crash on hostile bytes
            reason = f"malformed: {type(exc).__name__}: {exc}"
        if reason is not None:
            return [_refuse(reason, first)]
        limit = self.max_future_ms if self.max_future_ms is not None else clock_limit_ms
        verdicts = [self._check_content(msg, schema, subscribe, limit) for msg in msgs]
        if batch:
            for v, msg in zip(verdicts, msgs):
                if v.message is None:       # a dead letter keeps the refused change set alone
                    v.raw = encode_message(msg.data, msg.tables)
        return verdicts

    def _check_content(self, msg: Message, schema: Any, subscribe: Any, clock_limit_ms: int | None) -> Verdict:
        """Checks 3-5 (clock, carried SQL, grants) of one decoded change set."""
        try:
            reason = self._check_clock(msg, clock_limit_ms)
            if reason is None:
                reason = self._check_sql(msg, schema)
            if reason is None and self.grants is not None:
                reason = self._check_grants(msg, schema, subscribe)
        except Exception as exc:    # noqa: BLE001 - e.g. a row record that does not decode
            reason = f"malformed: {type(exc).__name__}: {exc}"
        return Verdict(msg) if reason is None else _refuse(reason, msg)

    def _check_signature(self, msg: Message, data: bytes, signature: bytes | None, network: bool) -> str | None:
        key = self.trust.get(msg.origin)
        if signature is not None and key is not None:
            from cryptography.exceptions import InvalidSignature
            try:
                key.verify(signature, data)
            except InvalidSignature:
                return f"bad signature for origin {msg.origin.hex()}"
            return None
        if not (self.require_signatures and network):
            return None
        if signature is None:
            return f"unsigned change set from {msg.origin.hex()} (signatures are required)"
        return f"no trusted key for origin {msg.origin.hex()}"

    @staticmethod
    def _check_clock(msg: Message, limit_ms: int | None) -> str | None:
        if limit_ms is None:
            return None
        ahead = hlc_parts(msg.hlc)[0] - int(time.time() * 1000)
        if ahead > limit_ms:
            return f"commit timestamp {ahead} ms ahead of this node's clock (limit {limit_ms} ms)"
        return None

    def _check_sql(self, msg: Message, schema: Any) -> str | None:
        for name, sql in msg.tables.values():
            if sql:
                reason = self._create_verdict("TABLE", name, sql)
                if reason is not None:
                    return f"table map entry {name!r}: {reason}"
        for e in msg.entries:
            if e.op != OP_DDL:
                continue
            reason = self._check_ddl_sql(e.row)
            if reason is not None:
                return reason
        return None

    def _check_ddl_sql(self, payload: bytes) -> str | None:
        try:
            info = json.loads(payload)
        except ValueError:
            return "DDL entry is not JSON"
        if not isinstance(info, dict):
            return "DDL entry is not a JSON object"
        kinds = {"create_table": "TABLE", "create_index": "INDEX", "create_view": "VIEW",
                 "alter_table": "ADD COLUMN"}
        op = info.get("op")
        if op == "drop":
            if info.get("kind") not in ("table", "index", "view") or not isinstance(info.get("name"), str):
                return "DDL drop entry without a kind and name"
            return None
        if op not in kinds:
            return f"unknown DDL operation {op!r}"
        sql, name = info.get("sql"), info.get("name")
        if not isinstance(sql, str) or not isinstance(name, str):
            return f"DDL {op} entry without sql and name"
        reason = self._create_verdict(kinds[op], name, sql)
        return None if reason is None else f"DDL {op}: {reason}"

    def _create_verdict(self, kind: str, name: str, sql: str) -> str | None:
        """None if ``sql`` is one plain CREATE ``kind`` (or ADD COLUMN) of ``name``, else why not (cached)."""
        key = (kind, name, sql)
        if key in self._sql_verdicts:
            return self._sql_verdicts[key]
        try:
            target = _add_column_target(sql) if kind == "ADD COLUMN" else _create_target(sql, kind)[1]
            reason = None if target.lower() == name.lower() else f"names {name!r} but its SQL changes {target!r}"
        except Error as exc:
            reason = f"{name!r}: SQL is not a plain {'ALTER TABLE ... ' if kind == 'ADD COLUMN' else 'CREATE '}{kind}: {exc}"
        if len(self._sql_verdicts) >= 4096:      # bounded: hostile senders can vary the text
            self._sql_verdicts.clear()
        self._sql_verdicts[key] = reason
        return reason

    def _check_grants(self, msg: Message, schema: Any, subscribe: Any) -> str | None:
        origin = msg.origin.hex()
        grant = self.grants.for_origin(msg.origin)
        if grant is None:
            return f"origin {origin} has no write grant here"
        for name, _ in msg.tables.values():
            if name in subscribe and name.lower() not in schema.tables and not grant.ddl:
                return f"origin {origin} may not create table {name!r} (no DDL grant)"
        for e in msg.entries:
            reason = self._check_entry(grant, origin, msg, e, schema, subscribe)
            if reason is not None:
                return reason
        return None

    def _check_entry(self, grant: OriginGrant, origin: str, msg: Message, e: Any, schema: Any,
                     subscribe: Any) -> str | None:
        if e.op == OP_DDL:
            _, tname = ddl_subject(e.row, schema)
            if tname is not None and tname not in subscribe:
                return None     # the applier ignores DDL about tables this node does not take
            if not grant.ddl:
                return f"origin {origin} may not run DDL"
            if tname is not None and grant.table(tname) is None:
                return f"origin {origin} may not change table {tname!r}"
            return None
        name = msg.tables.get(e.table_id, (None, None))[0]
        if name is None or name not in subscribe:
            return None         # entries for unknown or unsubscribed tables are skipped by the applier
        tg = grant.table(name)
        if tg is None:
            return f"origin {origin} may not change table {name!r}"
        op = {OP_INSERT: "insert", OP_UPDATE: "update", OP_DELETE: "delete"}[e.op]
        if not getattr(tg, op):
            return f"origin {origin} may not {op} rows of {name!r}"
        if tg.columns is None or e.op == OP_DELETE:
            return None
        columns, pk = self._table_columns(schema, name, msg, e.table_id)
        if e.op == OP_UPDATE:
            touched = [columns[i] for i in e.changed_columns if i < len(columns)]
        else:
            values = C.decode_row(e.row, len(columns), None)
            touched = [c for c, v in zip(columns, values) if v is not None]
        denied = sorted({c for c in touched if c not in tg.columns and c not in pk})
        if denied:
            return f"origin {origin} may not write columns {denied} of {name!r}"
        return None

    @staticmethod
    def _table_columns(schema: Any, name: str, msg: Message, tid: int) -> tuple[list[str], set[str]]:
        """(column names by position, primary-key column names) of a table, here or from the message."""
        table = schema.tables.get(name.lower())
        if table is not None:
            cols = [c.name.lower() for c in table.columns]
            return cols, {cols[i] for i in table.pk}
        node, _ = _create_target(msg.tables[tid][1], "TABLE")
        from sqlglot import exp
        cols = _create_columns(node)
        pk = set()
        for c in node.this.expressions:
            if isinstance(c, exp.ColumnDef) and c.find(exp.PrimaryKeyColumnConstraint) is not None:
                pk.add(c.name.lower())
            elif isinstance(c, exp.PrimaryKey):
                pk.update(i.name.lower() for i in c.expressions)
        return cols, pk


def dead_letter_row(verdict: Verdict, channel: str | None, position: int, data: bytes) -> tuple:
    """The ``terndb_dead_letters`` row for a refused message (``id`` allocated on insert)."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    return (None, now, channel, position, verdict.origin.hex() if verdict.origin else None,
            verdict.origin_sequence, verdict.hlc, verdict.reason, len(data),
            bytes(data[:DEAD_LETTER_KEEP_BYTES]))


def peek_header(data: bytes) -> Verdict:
    """Header fields of a (possibly signed) message for a dead letter, as far as they decode
    (a batch's first change set)."""
    if data[:4] == SIGNED_MAGIC:
        data = data[4 + SIGNATURE_SIZE:]
    try:
        msg = decode_wire(data)[0]
    except Exception:               # noqa: BLE001 - best effort only
        return Verdict(None)
    return Verdict(None, None, msg.origin, msg.origin_sequence, msg.hlc)


__all__ = ["Guard", "Grants", "OriginGrant", "TableGrant", "Signer", "Verdict", "generate_keypair",
           "load_private_key", "load_public_key", "dead_letter_row", "peek_header", "DEAD_LETTER_SQL",
           "SIGNED_MAGIC", "MAGIC"]
