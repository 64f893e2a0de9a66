"""The replication node id setting: connect(node_id=...), Replicator(node_id=...), `terndb replicate --node-id`."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

import terndb
from terndb.engine.database import node_label, parse_node_id
from terndb.replication import Replicator


def test_node_id_is_set_persisted_and_shown(tmp_path):
    path = str(tmp_path / "db")
    con = terndb.connect(path, node_id="edge-1", durability="off")
    assert con.node_id == (b"edge-1" + b"\0" * 10).hex()
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("INSERT INTO t VALUES (1, 'x')")
    con.commit()
    con.close()
    con = terndb.connect(path, durability="off")               # persisted
    assert node_label(bytes.fromhex(con.node_id)) == "edge-1"
    con.close()
    con = terndb.connect(path, node_id="edge-1", durability="off")   # same id again: fine
    rep = Replicator(con, peers=[])
    try:
        assert rep.status()["node_label"] == "edge-1"
        # Change sets carry it as their origin.
        assert {c.origin for c in rep.feed.changes("t")} == {con.node_id}
    finally:
        rep.close()
        con.close()


def test_changing_the_node_id_after_writes_is_refused(tmp_path):
    path = str(tmp_path / "db")
    con = terndb.connect(path, durability="off")
    first = con.node_id
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    with pytest.raises(terndb.ProgrammingError, match="break replication convergence"):
        terndb.connect(path, node_id="other")
    con = terndb.connect(path)
    assert con.node_id == first                                   # nothing changed
    con.close()


def test_node_id_can_be_set_on_a_database_that_never_wrote(tmp_path):
    path = str(tmp_path / "db")
    terndb.connect(path).close()
    u = uuid.uuid4()
    con = terndb.connect(path, node_id=str(u))
    assert con.node_id == u.hex
    con.close()
    assert terndb.connect(path, node_id=u.hex.upper()).node_id == u.hex


@pytest.mark.parametrize("bad", ["", "has space", "x" * 17, "é", "0" * 32, b"short", 12, bytes(16)])
def test_bad_node_ids_are_refused_clearly(tmp_path, bad):
    with pytest.raises(terndb.ProgrammingError, match="node_id"):
        terndb.connect(str(tmp_path / "db"), node_id=bad)
    with pytest.raises(terndb.ProgrammingError):
        parse_node_id(bad)


def test_labels_round_trip():
    for value in ("a", "edge.01", "hub:eu-west_1", "1234567890abcdef"):
        assert node_label(parse_node_id(value)) == value
    u = uuid.uuid4()
    assert node_label(parse_node_id(u)) == u.hex


def test_cli_node_id(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    con = terndb.connect(a)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("INSERT INTO t VALUES (1, 'x')")
    con.commit()
    con.close()
    run = [sys.executable, "-m", "terndb", "replicate", b, "--peer", a, "--once", "--node-id", "cloud"]
    out = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout.strip().splitlines()[-1])["status"]
    assert status["node_label"] == "cloud"
    # b wrote (it applied a's rows): another id is now refused with one clear line.
    run[-1] = "other"
    out = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "break replication convergence" in out.stderr
