"""Temporary tables, views, indexes and triggers: ownership, cleanup and keeping them out of the binlog.

SQLite gives every connection a private ``temp`` database.  terndb keeps temp
objects in the same LMDB environment as everything else, with two rules that
make them private:

* **Ownership.**  Each session gets an owner token when it opens
  (``new_owner_token``): ``"<pid>.<process start time>.<random>"``.  Every temp
  object records it, and its catalog key includes it (``catalog.object_key``),
  so connections' temp objects never clash and name resolution
  (``Schema.for_owner``) shows a session its own only.  Temp rows live in
  ordinary ``t<id>``/``i<id>`` sub-databases that only the owner can name.
* **Lifetime.**  ``Session.close`` drops the session's temp objects.  A
  process that died (or a session dropped without ``close``) leaves them
  behind; the next session opened on the database removes the leftovers of
  every owner that is no longer alive (``dead_owners``): the owner's process
  is gone, or runs with another start time (the pid was reused), or it is this
  very process and no open session holds the token (``_LIVE`` registry).

Why the shared environment rather than a private store: one LMDB transaction
covers temp and main objects, so ROLLBACK, SAVEPOINTs and statement atomicity
treat temp tables exactly like SQLite does (a rolled-back CREATE TEMP TABLE
disappears), and the compiled operators, which run against one LMDB
transaction, can join temp and main tables without change.  The price: writes
to temp tables take the database's write lock like any other write, and
creating or dropping a temp object bumps the shared schema version (other
connections reload a catalog they then filter).

Replication never sees temp objects: their DDL is not recorded, and at commit
``without_temp_changes`` cuts row changes of temp tables (and any DDL entry
about schema temp, such as ALTER TABLE's) from the change set before it
reaches the binlog.
"""
from __future__ import annotations

import json
import os
import secrets
import threading
import weakref
from typing import Any, Iterable

from terndb._cext import _core as C

from .catalog import TEMP, Schema

OP_INSERT, OP_UPDATE, OP_DELETE, OP_DDL = (
    C.CHANGE_OP_INSERT, C.CHANGE_OP_UPDATE, C.CHANGE_OP_DELETE, C.CHANGE_OP_DDL)

_LIVE: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()
# Reentrant: a connection's finalizer (forget_owner) can run inside new_owner_token on
# the same thread, when the insert's allocation triggers a garbage collection.
_LIVE_LOCK = threading.RLock()


def _process_start_time(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), "" when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rfind(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 else ""


_OWN_START = _process_start_time(os.getpid())


def new_owner_token(session: Any) -> str:
    """A fresh owner token for ``session``, registered as alive while the session exists."""
    token = f"{os.getpid()}.{_process_start_time(os.getpid()) or _OWN_START}.{secrets.token_hex(6)}"
    with _LIVE_LOCK:
        _LIVE[token] = session
    return token


def forget_owner(token: str) -> None:
    """The session holding ``token`` closed."""
    with _LIVE_LOCK:
        _LIVE.pop(token, None)


def owner_alive(token: str) -> bool:
    """Whether the session that owns ``token`` may still be running."""
    try:
        pid_text, start, _rand = token.split(".", 2)
        pid = int(pid_text)
    except ValueError:
        return False               # not a token this module made
    if pid == os.getpid():
        with _LIVE_LOCK:
            return token in _LIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                       # someone else's process: it exists
    now = _process_start_time(pid)
    return not (start and now and now != start)


def dead_owners(schema: Schema) -> list[str]:
    """Owners of temp objects in ``schema`` whose sessions are gone."""
    return sorted(token for token in schema.temp_owners() if not owner_alive(token))


def drop_owned(ddl: Any, catalog: Any, wtxn: Any, schema: Schema, owners: Iterable[str]) -> bool:
    """Drops every temp object of ``owners`` in write txn ``wtxn``; True when something went."""
    dropped = False
    for owner in owners:
        for kind, obj in schema.temp_objects_of(owner):
            if kind == "table":
                ddl.drop_table_objects(wtxn, schema, obj)
            elif kind == "view":
                catalog.delete(wtxn, "view", obj.key)
            elif kind == "trigger":
                catalog.delete(wtxn, "trigger", obj.key)   # its table may be a main one, which stays
            else:
                continue        # indexes go with their table
            dropped = True
    if dropped:
        catalog.bump_version(wtxn)
    return dropped


def without_temp_changes(collector: Any, temp_ids: set[int]) -> Any:
    """``collector``'s changes minus those of temp objects (the same collector when there are none).

    ``temp_ids`` are the object ids of the session's temp tables.
    """
    if not temp_ids or collector.count == 0:
        return collector
    _header, entries = C.decode_changeset(collector.finish(0, bytes(16), 0, 0))
    kept_entries = [e for e in entries if not _about_temp(e, temp_ids)]
    if len(kept_entries) == len(entries):
        return collector
    kept = C.ChangeCollector()
    for e in kept_entries:
        if e.op == OP_INSERT:
            kept.insert(e.table_id, e.pk_key, e.row, e.prev_hlc)
        elif e.op == OP_UPDATE:
            kept.update(e.table_id, e.pk_key, e.row, e.changed or 0, e.prev_hlc)
        elif e.op == OP_DELETE:
            kept.delete(e.table_id, e.pk_key, e.prev_hlc, e.row)
        else:
            kept.ddl(e.row)
    return kept


def _about_temp(entry: Any, temp_ids: set[int]) -> bool:
    if entry.op != OP_DDL:
        return entry.table_id in temp_ids
    try:
        payload = json.loads(entry.row)
    except ValueError:
        return False
    return isinstance(payload, dict) and str(payload.get("schema", "")).lower() == TEMP

