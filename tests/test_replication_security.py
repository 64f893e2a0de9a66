"""Replication security: hostile input, per-origin grants, ed25519 signatures, NATS auth and TLS.

Messages are fed to a node's applier on a network channel (``nats:...``),
exactly as the NATS transport hands over fetched messages; the NATS tests at
the end start real nats-servers on free loopback ports with auth or TLS
configurations (``tests/natsserver.py``).
"""
from __future__ import annotations

import datetime
import json
import random
import subprocess
import sys
import time

import pytest

import terndb
from terndb._cext import _core as C
from terndb.engine.hlc import hlc_from_parts
from terndb.engine.integrity import check_database
from terndb.engine.repl_feed import (
    MAGIC, decode_batch, decode_message, encode_batch, encode_message, read_outgoing, reencode,
)
from terndb.engine.repl_guard import Grants, Guard, Signer, generate_keypair
from terndb.engine.repl_versions import TableSet
from terndb.replication import Replicator

from natsserver import NatsServer

CHANNEL = "nats:TERNDB_test"


def _connect(path) -> terndb.Connection:
    return terndb.connect(str(path), durability="off")


def _own_messages(rep: Replicator, since: int = 0) -> list[bytes]:
    out = read_outgoing(rep.db, since, TableSet("*"), limit=100000, only_origin=rep.db.node_id, skip_empty=True)
    return [o.data for o in out if o.data is not None]


def _feed(rep: Replicator, messages: list[bytes], channel: str = CHANNEL):
    """Apply messages as the next stream positions of ``channel``; returns the ApplyStats."""
    start = rep.applier.position(channel)
    return rep.applier.apply([(start + i + 1, m) for i, m in enumerate(messages)], channel, track_origin=False)


def _own_batch(rep: Replicator, since: int = 0) -> tuple[bytes, int]:
    """All of the node's own change sets after ``since`` as one batch message, and how many."""
    out = [o for o in read_outgoing(rep.db, since, TableSet("*"), limit=100000, only_origin=rep.db.node_id,
                                    skip_empty=True) if o.changeset is not None]
    tables: dict = {}
    for o in out:
        tables.update(o.table_map)
    return encode_batch([o.changeset for o in out], tables), len(out)


def _rows(con, table: str = "kv") -> list[tuple]:
    return con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def _dead(con) -> list[tuple]:
    return con.execute("SELECT reason, origin, size FROM terndb_dead_letters ORDER BY id").fetchall()


def _forge(message: bytes, *, hlc: int | None = None, tables: dict | None = None, entries=None) -> bytes:
    """A copy of a wire message with some parts replaced (a well-formed forgery)."""
    m = decode_message(message)
    header = dict(m.header)
    if hlc is not None:
        header["hlc"] = hlc
    cs = reencode(header, m.entries if entries is None else entries)
    return encode_message(cs, m.tables if tables is None else tables)


def _ddl_message(origin: bytes, payload: dict, seq: int = 10_000) -> bytes:
    col = C.ChangeCollector()
    col.ddl(json.dumps(payload).encode())
    return encode_message(col.finish(hlc_from_parts(int(time.time() * 1000)), origin, seq, 1), {})


@pytest.fixture
def pair(tmp_path):
    """Node a (the writer) and node b (the receiver), each with a Replicator (no threads)."""
    made = []

    def make(name: str, **options) -> tuple[terndb.Connection, Replicator]:
        con = _connect(tmp_path / name)
        rep = Replicator(con, **options)
        made.append((con, rep))
        return con, rep
    yield make
    for con, rep in made:
        rep.close()
        con.close()


# ---------------------------------------------------------------------------------------------
# Hostile input


def test_hostile_messages_are_dead_lettered_never_applied(pair):
    ca, ra = pair("a")
    cb, rb = pair("b")
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
    ca.execute("CREATE TABLE other(id INTEGER PRIMARY KEY)")
    ca.executemany("INSERT INTO kv VALUES (?, ?, ?)", [(i, f"v{i}", i) for i in range(3)])
    ca.commit()
    good = _own_messages(ra)
    assert _feed(rb, good).dead_letters == 0
    expected = cb.execute("SELECT * FROM kv ORDER BY id").fetchall()
    assert len(expected) == 3
    ca.execute("INSERT INTO kv VALUES (7, 'seven', 7)")
    ca.commit()
    sample = _own_messages(ra)[-1]
    meta_len = int.from_bytes(sample[4:8], "big")
    cs_at = 8 + meta_len                               # where the change set starts
    kv_tid = next(t for t, (n, _) in decode_message(sample).tables.items() if n == "kv")
    now_ms = int(time.time() * 1000)
    garbage_row = C.ChangeCollector()
    garbage_row.insert(kv_tid, C.encode_key((99,)), b"\xff\xfe\xfd\xfc" * 4, 0)
    hdr = decode_message(sample).header
    bad_row_msg = encode_message(garbage_row.finish(hdr["hlc"], hdr["origin"], hdr["sequence"] + 50, 1),
                                 decode_message(sample).tables)
    hostile = {
        "empty": b"",
        "garbage": b"not a message at all",
        "magic only": MAGIC,
        "forged table-map length": MAGIC + (0xFFFFFFF0).to_bytes(4, "big") + b"{}",
        "table map not JSON": MAGIC + (3).to_bytes(4, "big") + b"{{{" + sample[cs_at:],
        "wrong change-set version": sample[:cs_at + 2] + b"\x09" + sample[cs_at + 3:],
        "forged entry count": sample[:cs_at + 44] + b"\xff\xff\xff\xff" + sample[cs_at + 48:],
        "trailing bytes": sample + b"\x00",
        "forged signed envelope": b"TRS1" + b"\x00" * 10,
        "far-future clock": _forge(sample, hlc=hlc_from_parts(now_ms + 30 * 86400 * 1000)),
        "multi-statement table map": _forge(sample, tables={kv_tid: (
            "evil", "CREATE TABLE evil(id INTEGER PRIMARY KEY); DROP TABLE kv")}),
        "CTAS table map": _forge(sample, tables={kv_tid: ("evil", "CREATE TABLE evil AS SELECT * FROM kv")}),
        "mismatched table map": _forge(sample, tables={kv_tid: ("kv", "CREATE TABLE other2(id INTEGER PRIMARY KEY)")}),
        "DDL smuggling DML": _ddl_message(ra.db.node_id, {"op": "create_index", "name": "ix", "sql": "DELETE FROM kv"}),
        "ALTER that is not ADD COLUMN": _ddl_message(
            ra.db.node_id, {"op": "alter_table", "name": "kv", "sql": "ALTER TABLE kv DROP COLUMN b"}, seq=10_002),
        "ADD COLUMN naming another table": _ddl_message(
            ra.db.node_id, {"op": "alter_table", "name": "kv", "sql": "ALTER TABLE other ADD COLUMN x"}, seq=10_003),
        "DDL drop of a reserved table": None,     # filled below: refused by subscription, not applied
        "undecodable row": bad_row_msg,
    }
    hostile["DDL drop of a reserved table"] = _ddl_message(
        ra.db.node_id, {"op": "drop", "kind": "table", "name": "terndb_conflicts"}, seq=10_001)
    # Every strict prefix of a real message is malformed.
    truncated = [sample[:n] for n in range(0, len(sample), max(1, len(sample) // 40))]
    batch = list(hostile.values()) + truncated + [sample]      # the real one last: it must still apply
    st = _feed(rb, batch)
    assert st.messages == len(batch) and st.applied == 2       # the reserved-table DROP is a no-op, applied
    assert st.dead_letters == len(batch) - 2
    assert cb.execute("SELECT * FROM kv ORDER BY id").fetchall() == expected + [(7, "seven", 7)]
    assert cb.execute("SELECT count(*) FROM terndb_conflicts").fetchone()[0] == 0
    reasons = [r for r, _, _ in _dead(cb)]
    assert len(reasons) == st.dead_letters and all(reasons)
    assert any("ahead of this node's clock" in r for r in reasons)
    assert any("not a plain CREATE" in r or "AS SELECT" in r for r in reasons)
    assert any(r.startswith("apply failed") for r in reasons)    # the undecodable row, rolled back alone
    assert cb.execute("SELECT * FROM kv WHERE id = 99").fetchall() == []
    # The position moved past everything: a redelivery is skipped, nothing loops.
    assert rb.applier.position(CHANNEL) == len(good) + len(batch)
    assert rb.status()["dead_letters"] == st.dead_letters
    assert check_database(cb._db).ok


def test_random_corruption_never_raises_or_corrupts(pair):
    ca, ra = pair("a")
    cb, rb = pair("b")
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
    for i in range(5):
        ca.execute("INSERT INTO kv VALUES (?, ?, ?)", (i, "x" * i, i))
        ca.commit()
    msgs = _own_messages(ra)
    _feed(rb, msgs[:1])
    rnd = random.Random(8)
    batch = []
    for _ in range(300):
        m = bytearray(rnd.choice(msgs))
        for _ in range(rnd.randint(1, 4)):
            m[rnd.randrange(len(m))] = rnd.randrange(256)
        batch.append(bytes(m))
    for start in range(0, len(batch), 50):
        st = _feed(rb, batch[start:start + 50])
        assert st.applied + st.dead_letters + st.duplicates + st.echoes == st.messages
    assert check_database(cb._db).ok
    assert cb.execute("SELECT count(*) FROM terndb_dead_letters").fetchone()[0] > 0


# ---------------------------------------------------------------------------------------------
# Grants


def test_grants_limit_tables_columns_operations_and_are_atomic(pair):
    ca, ra = pair("a")                  # full rights
    cc, rc = pair("c")                  # may only change kv.b, never delete
    cd, rd = pair("d")                  # no grant at all
    a_id, c_id = ra.db.node_id.hex(), rc.db.node_id.hex()
    grants = {a_id: {"tables": "*", "ddl": True},
              c_id: {"tables": {"kv": {"columns": ["b"], "delete": False}}}}
    cb, rb = pair("b", grants=grants)
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
    ca.executemany("INSERT INTO kv VALUES (?, ?, ?)", [(1, "one", 1), (2, "two", 2)])
    ca.commit()
    for rep in (rb, rc, rd):
        assert _feed(rep, _own_messages(ra), "nats:from_a").dead_letters == 0
    base = len(_own_messages(rc))

    def c_writes(*sql):
        for s in sql:
            cc.execute(s)
        cc.commit()
        return _own_messages(rc)[-1]
    allowed = [c_writes("UPDATE kv SET b = 10 WHERE id = 1"),
               c_writes("INSERT INTO kv VALUES (3, NULL, 3)")]
    refused = [c_writes("UPDATE kv SET a = 'hacked' WHERE id = 1"),
               c_writes("UPDATE kv SET b = 20 WHERE id = 2", "UPDATE kv SET a = 'x' WHERE id = 2"),
               c_writes("DELETE FROM kv WHERE id = 2"),
               c_writes("INSERT INTO kv VALUES (4, 'named', 4)"),
               c_writes("CREATE TABLE extra(id INTEGER PRIMARY KEY)")]
    assert len(_own_messages(rc)) == base + 7
    cd.execute("UPDATE kv SET b = 99 WHERE id = 1")
    cd.commit()
    refused.append(_own_messages(rd)[-1])
    st = _feed(rb, allowed + refused, "nats:from_c")
    assert (st.applied, st.dead_letters) == (2, len(refused))
    # Only the granted changes landed; the two-row transaction is refused whole.
    assert cb.execute("SELECT * FROM kv ORDER BY id").fetchall() == [(1, "one", 10), (2, "two", 2), (3, None, 3)]
    assert "extra" not in [r[0] for r in cb.execute("SELECT name FROM sqlite_master").fetchall()]
    reasons = [r for r, _, _ in _dead(cb)]
    assert sum("may not write columns ['a']" in r for r in reasons) == 3
    assert any("may not delete" in r for r in reasons)
    assert any("may not run DDL" in r for r in reasons)
    assert any(r == f"origin {rd.db.node_id.hex()} has no write grant here" for r in reasons)
    origins = {o for _, o, _ in _dead(cb)}
    assert origins == {c_id, rd.db.node_id.hex()}


@pytest.mark.parametrize("spec, message", [
    ({"nothex": {"tables": "*"}}, "not a node id"),
    ({"*": {"tables": {"kv": 3}}}, "a column list or an object"),
    ({"*": {"tables": {"kv": {"columns": "b"}}}}, "columns must be"),
    ({"*": {"tables": "*", "dml": True}}, "unknown keys"),
    ({"*": {"tables": "*", "ddl": "yes"}}, "true or false"),
    ([1, 2], "must be an object"),
])
def test_bad_grant_specs_are_programming_errors(spec, message):
    with pytest.raises(terndb.ProgrammingError, match=message):
        Grants(spec)


def test_bad_security_config_fails_at_construction(tmp_path):
    con = _connect(tmp_path / "n")
    try:
        with pytest.raises(terndb.ProgrammingError, match="grants file"):
            Replicator(con, grants=str(tmp_path / "missing.json"))
        with pytest.raises(terndb.ProgrammingError, match="private key"):
            Replicator(con, sign_key=str(tmp_path / "missing.key"))
        (tmp_path / "not.pem").write_text("hello")
        with pytest.raises(terndb.ProgrammingError, match="not a PEM public key"):
            Replicator(con, trust={"00" * 16: str(tmp_path / "not.pem")})
        with pytest.raises(terndb.ProgrammingError, match="does not exist"):
            Replicator(con, nats="nats://127.0.0.1:1", nats_options={"tls_ca": str(tmp_path / "nope.pem")})
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Signatures


def test_signatures_verified_per_origin(pair, tmp_path):
    a_pub = generate_keypair(tmp_path / "a.key")
    generate_keypair(tmp_path / "x.key")
    ca, ra = pair("a", sign_key=str(tmp_path / "a.key"))
    cc, rc = pair("c")
    cb, rb = pair("b", trust={ra.db.node_id.hex(): a_pub})
    assert rb.applier.guard.require_signatures
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
    ca.execute("INSERT INTO kv VALUES (1, 'signed')")
    ca.commit()
    msgs = _own_messages(ra)
    signed = [ra.signer.wrap(m) for m in msgs]
    wrong_key = Signer(str(tmp_path / "x.key"))
    tampered = bytearray(signed[-1])
    tampered[-3] ^= 0x01
    _feed(rc, msgs, "local:x")
    cc.execute("INSERT INTO kv VALUES (2, 'from c')")
    cc.commit()
    from_c = Signer(str(tmp_path / "x.key")).wrap(_own_messages(rc)[-1])
    st = _feed(rb, [msgs[-1], wrong_key.wrap(msgs[-1]), bytes(tampered), from_c])
    assert (st.applied, st.dead_letters) == (0, 4)
    reasons = [r for r, _, _ in _dead(cb)]
    assert reasons[0].startswith("unsigned change set")
    assert reasons[1].startswith("bad signature") and reasons[2].startswith("bad signature")
    assert reasons[3] == f"no trusted key for origin {rc.db.node_id.hex()}"
    st = _feed(rb, signed)
    assert st.applied == len(signed) and st.dead_letters == 0
    assert cb.execute("SELECT * FROM kv").fetchall() == [(1, "signed")]
    # Local peers (same host, read directly) are not asked for signatures.
    guard = Guard(trust={ra.db.node_id.hex(): a_pub})
    with rb.db.store.begin_read() as rt:
        schema = rb.db.committed_schema(rt.txn)
    assert guard.admit(msgs[-1], "local:peer", schema, TableSet("*")).message is not None
    assert guard.admit(msgs[-1], CHANNEL, schema, TableSet("*")).message is None
    # Verification without requirement: unsigned passes, a bad signature still does not.
    lax = Guard(trust={ra.db.node_id.hex(): a_pub}, require_signatures=False)
    assert lax.admit(msgs[-1], CHANNEL, schema, TableSet("*")).message is not None
    assert lax.admit(bytes(tampered), CHANNEL, schema, TableSet("*")).reason.startswith("bad signature")


def test_cli_keygen(tmp_path):
    key = tmp_path / "node.key"
    proc = subprocess.run([sys.executable, "-m", "terndb", "keygen", str(key)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["public_key"] == str(key) + ".pub"
    assert (key.stat().st_mode & 0o777) == 0o600
    Signer(str(key))
    again = subprocess.run([sys.executable, "-m", "terndb", "keygen", str(key)], capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 1 and "already exists" in again.stderr


# ---------------------------------------------------------------------------------------------
# NATS: credentials, TLS and signed publishing against real servers


def _nats_pair(tmp_path, url, opts_a, opts_b, **b_options):
    ca, cb = _connect(tmp_path / "a"), _connect(tmp_path / "b")
    ra = Replicator(ca, nats=url, nats_options={"database": "sec", **opts_a})
    rb = Replicator(cb, nats=url, nats_options={"database": "sec", **opts_b}, **b_options)
    return ca, cb, ra, rb


def _close(*things):
    for t in things:
        t.close()


def test_nats_user_password(tmp_path):
    server = NatsServer(tmp_path / "srv", 'authorization { users = [ {user: alice, password: "s3cret"} ] }')
    try:
        good = {"user": "alice", "password": "s3cret"}
        ca, cb, ra, rb = _nats_pair(tmp_path, server.url, good, good)
        try:
            ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
            ca.execute("INSERT INTO kv VALUES (1, 'authenticated')")
            ca.commit()
            ra.sync_nats()
            rb.sync_nats()
            assert cb.execute("SELECT * FROM kv").fetchall() == [(1, "authenticated")]
            bad = Replicator(cb, nats=server.url, nats_options={"database": "sec", "user": "alice",
                                                                 "password": "wrong"})
            with pytest.raises(terndb.OperationalError, match="refused the credentials"):
                bad.sync_nats()
            # In the background the error is reported in status; the thread keeps retrying.
            bad.start()
            deadline = time.monotonic() + 15
            while (bad.status()["nats"]["last_error"] or "") == "" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "refused the credentials" in bad.status()["nats"]["last_error"]
            bad.close()
            with pytest.raises(terndb.OperationalError, match="refused the credentials"):
                Replicator(cb, nats=server.url, nats_options={"database": "sec"}).sync_nats()
        finally:
            _close(ra, rb, ca, cb)
    finally:
        server.stop()


def test_nats_token_through_the_cli(tmp_path):
    server = NatsServer(tmp_path / "srv", 'authorization { token: "t0ken-42" }')
    try:
        ca = _connect(tmp_path / "a")
        ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
        ca.execute("INSERT INTO kv VALUES (1, 'via token')")
        ca.commit()
        ca.close()

        def run(path, token):
            return subprocess.run([sys.executable, "-m", "terndb", "replicate", str(path), "--nats", server.url,
                                   "--nats-token", token, "--once"], capture_output=True, text=True, timeout=60)
        wrong = run(tmp_path / "a", "wrong")
        assert wrong.returncode == 1 and "refused the credentials" in wrong.stderr, wrong.stderr
        for path in (tmp_path / "a", tmp_path / "b"):
            proc = run(path, "t0ken-42")
            assert proc.returncode == 0, proc.stderr
        cb = _connect(tmp_path / "b")
        assert cb.execute("SELECT * FROM kv").fetchall() == [(1, "via token")]
        cb.close()
    finally:
        server.stop()


def _write_pki(d) -> dict:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (PEM files)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject, key, issuer, issuer_key, *, ca=False, san=None, usage=None):
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def save(fname, obj):
        path = str(d / fname)
        with open(path, "wb") as f:
            if hasattr(obj, "private_bytes"):
                f.write(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
            else:
                f.write(obj.public_bytes(serialization.Encoding.PEM))
        return path
    d.mkdir()
    ca_key, srv_key, cli_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_cert = cert("terndb test CA", ca_key, "terndb test CA", ca_key, ca=True)
    srv = cert("127.0.0.1", srv_key, "terndb test CA", ca_key,
               san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
               usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    cli = cert("node", cli_key, "terndb test CA", ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return {"ca": save("ca.pem", ca_cert), "srv_cert": save("srv.pem", srv), "srv_key": save("srv.key", srv_key),
            "cli_cert": save("cli.pem", cli), "cli_key": save("cli.key", cli_key)}


def test_nats_mutual_tls(tmp_path):
    pytest.importorskip("cryptography")
    pki = _write_pki(tmp_path / "pki")
    server = NatsServer(tmp_path / "srv", f'tls {{ cert_file: "{pki["srv_cert"]}", key_file: "{pki["srv_key"]}", '
                                          f'ca_file: "{pki["ca"]}", verify: true, timeout: 2 }}', scheme="tls")
    try:
        tls = {"tls_ca": pki["ca"], "tls_cert": pki["cli_cert"], "tls_key": pki["cli_key"]}
        ca, cb, ra, rb = _nats_pair(tmp_path, server.url, tls, tls)
        try:
            ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
            ca.execute("INSERT INTO kv VALUES (1, 'over tls')")
            ca.commit()
            ra.sync_nats()
            rb.sync_nats()
            assert cb.execute("SELECT * FROM kv").fetchall() == [(1, "over tls")]
            no_client_cert = Replicator(cb, nats=server.url, nats_options={"database": "sec", "tls_ca": pki["ca"]})
            with pytest.raises(terndb.OperationalError):
                no_client_cert.sync_nats()
        finally:
            _close(ra, rb, ca, cb)
    finally:
        server.stop()


def test_signed_change_sets_over_nats(tmp_path):
    server = NatsServer(tmp_path / "srv")
    try:
        a_pub = generate_keypair(tmp_path / "a.key")
        ca, cc = _connect(tmp_path / "a"), _connect(tmp_path / "c")
        ra = Replicator(ca, nats=server.url, nats_options={"database": "sig"}, sign_key=str(tmp_path / "a.key"))
        rc = Replicator(cc, nats=server.url, nats_options={"database": "sig"})     # does not sign
        cb = _connect(tmp_path / "b")
        rb = Replicator(cb, nats=server.url, nats_options={"database": "sig"},
                        trust={ra.db.node_id.hex(): a_pub})
        try:
            ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
            ca.execute("INSERT INTO kv VALUES (1, 'from a')")
            ca.commit()
            ra.sync_nats()
            rc.sync_nats()                     # c takes a's table (c verifies nothing)
            cc.execute("INSERT INTO kv VALUES (2, 'from c, unsigned')")
            cc.commit()
            rc.sync_nats()
            rb.sync_nats()
            assert cb.execute("SELECT * FROM kv").fetchall() == [(1, "from a")]
            dead = rb.dead_letters()
            assert len(dead) == 1 and dead[0]["origin"] == rc.db.node_id.hex()
            assert dead[0]["reason"].startswith("unsigned change set")
            assert rb.status()["dead_letters"] == 1
        finally:
            _close(ra, rb, rc, ca, cb, cc)
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# Batches: several change sets of one origin in one message (what a publisher that is behind sends)


def test_batches_are_signed_whole_and_admitted_per_change_set(pair, tmp_path):
    a_pub = generate_keypair(tmp_path / "a.key")
    ca, ra = pair("a", sign_key=str(tmp_path / "a.key"))
    a_id = ra.db.node_id.hex()
    cb, rb = pair("b", trust={a_id: a_pub})
    cg, rg = pair("g", trust={a_id: a_pub}, grants={a_id: {"tables": {"kv": {"columns": "*", "delete": False}},
                                                           "ddl": True}})
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
    ca.commit()
    for i in range(1, 6):
        ca.execute("INSERT INTO kv VALUES (?, ?)", (i, f"v{i}"))
        ca.commit()
    ca.execute("UPDATE kv SET v = 'changed' WHERE id = 2")
    ca.commit()
    ca.execute("DELETE FROM kv WHERE id = 3")
    ca.commit()
    batch, count = _own_batch(ra)
    assert count == 8 and len(decode_batch(batch)) == 8
    signed = ra.signer.wrap(batch)
    # A tampered or unsigned batch is refused whole: one dead letter, nothing applied.
    tampered = bytearray(signed)
    tampered[-2] ^= 0x01
    st = _feed(rb, [bytes(tampered), batch])
    assert (st.applied, st.dead_letters) == (0, 2)
    assert [r.split(" for")[0].split(" change")[0] for r, _, _ in _dead(cb)] == ["bad signature", "unsigned"]
    # Signed: every change set applies, in order (the update and delete after their inserts).
    st = rb.applier.apply([(3, signed)], CHANNEL, in_order=False)          # as the NATS transport does
    assert (st.messages, st.applied, st.dead_letters) == (1, 8, 0)
    assert _rows(cb) == _rows(ca) == [(1, "v1"), (2, "changed"), (4, "v4"), (5, "v5")]
    again = rb.applier.apply([(3, signed)], CHANNEL, in_order=False)      # redelivered
    assert (again.applied, again.duplicates) == (0, 8)                    # repeats by origin sequence
    # Grants judge each change set: only the delete is refused (and kept alone as a dead letter).
    st = _feed(rg, [signed])
    assert (st.applied, st.dead_letters) == (7, 1)
    assert _rows(cg) == [(1, "v1"), (2, "changed"), (3, "v3"), (4, "v4"), (5, "v5")]
    (reason, origin, size), = _dead(cg)
    assert "may not delete" in reason and origin == a_id
    kept = cg.execute("SELECT message FROM terndb_dead_letters").fetchone()[0]
    assert decode_message(kept).entries[0].op == 3 and size == len(kept)
    # Change sets of two origins in one batch: refused whole.
    cc, rc = pair("c")
    cc.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
    cc.commit()
    mixed = decode_batch(batch)[:1] + decode_batch(_own_batch(rc)[0])
    forged = encode_batch([m.data for m in mixed], {**mixed[0].tables, **mixed[1].tables})
    with rb.db.store.begin_read() as rt:
        schema = rb.db.committed_schema(rt.txn)
    verdicts = Guard().admit_all(forged, CHANNEL, schema, TableSet("*"))
    assert len(verdicts) == 1 and verdicts[0].reason == "a batch mixing change sets of several origins"
    assert Guard().admit(batch, CHANNEL, schema, TableSet("*")).message is None     # admit: one change set


def test_malformed_batches_are_dead_lettered(pair):
    ca, ra = pair("a")
    cb, rb = pair("b")
    ca.execute("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)")
    ca.commit()
    ca.execute("INSERT INTO kv VALUES (1, 'x')")
    ca.commit()
    batch, _ = _own_batch(ra)
    meta_len = int.from_bytes(batch[4:8], "big")
    count_at = 8 + meta_len
    hostile = [batch[:count_at + 2],                                              # cut in its count
               batch[:count_at] + (10 ** 9).to_bytes(4, "big") + batch[count_at + 4:],   # forged count
               batch[:count_at] + (0).to_bytes(4, "big"),                        # empty
               batch[:count_at + 4] + (1 << 31).to_bytes(4, "big") + batch[count_at + 8:],  # forged length
               batch + b"\x00",                                                  # trailing bytes
               batch[:-1]]                                                       # truncated change set
    st = _feed(rb, hostile)
    assert (st.applied, st.dead_letters) == (0, len(hostile))
    assert all(r.startswith("malformed") for r, _, _ in _dead(cb))
    assert _feed(rb, [batch]).applied == 2
