"""Edge topology: a hub nats-server and a leaf-node server with its own JetStream domain.

The replication stream lives in the leaf's domain (``edge``), next to the
edge node, so the edge keeps committing and publishing while its link to the
hub is down.  The cloud node talks to the hub and reaches that stream through
the leaf connection (``nats_options={"domain": "edge"}``); when the link
returns, its durable consumer resumes where it stopped.  Both servers run from
config files on free loopback ports; the hub is stopped and restarted on the
same ports to cut and restore the link.
"""
from __future__ import annotations

import pytest

pytest.importorskip("nats")

import terndb  # noqa: E402
from natsserver import NatsServer, free_port, wait_for  # noqa: E402
from terndb.replication import Replicator  # noqa: E402

HUB_CONF = """server_name: hub
listen: "127.0.0.1:{port}"
jetstream {{ store_dir: "{store}", domain: hub }}
leafnodes {{ listen: "127.0.0.1:{leaf_port}" }}
"""
LEAF_CONF = """server_name: leaf
listen: "127.0.0.1:{port}"
jetstream {{ store_dir: "{store}", domain: edge }}
leafnodes {{ remotes: [ {{ url: "nats-leaf://127.0.0.1:{hub_leaf_port}" }} ] }}
"""


@pytest.fixture
def hub_and_leaf(tmp_path):
    hub_port, hub_leaf_port, leaf_port = free_port(), free_port(), free_port()
    hub_conf, leaf_conf = tmp_path / "hub.conf", tmp_path / "leaf.conf"
    hub_conf.write_text(HUB_CONF.format(port=hub_port, leaf_port=hub_leaf_port, store=tmp_path / "hub-js"))
    leaf_conf.write_text(LEAF_CONF.format(port=leaf_port, hub_leaf_port=hub_leaf_port, store=tmp_path / "leaf-js"))
    hub = NatsServer.from_config(hub_conf, hub_port).start()
    try:
        leaf = NatsServer.from_config(leaf_conf, leaf_port).start()
    except BaseException:
        hub.stop()
        raise
    try:
        yield hub, leaf
    finally:
        leaf.stop()
        hub.stop()


def _rows(con) -> list:
    return con.execute("SELECT * FROM readings ORDER BY id").fetchall()


def _wait(pred, timeout: float = 30.0) -> bool:
    return wait_for(pred, timeout, tolerate=(terndb.ProgrammingError,))    # no such table: not there yet


def test_edge_writes_while_cut_off_and_the_cloud_catches_up(hub_and_leaf, tmp_path):
    hub, leaf = hub_and_leaf
    fast = {"fetch_timeout": 0.05, "connect_timeout": 2.0}
    edge = terndb.connect(str(tmp_path / "edge"), durability="off", node_id="edge-1")
    cloud = terndb.connect(str(tmp_path / "cloud"), durability="off", node_id="cloud")
    edge.execute("CREATE TABLE readings(id INTEGER PRIMARY KEY, value REAL, note TEXT)")
    edge.execute("INSERT INTO readings VALUES (1, 20.5, 'linked')")
    edge.commit()
    r_edge = Replicator(edge, nats=leaf.url, nats_options=fast).start()
    r_cloud = Replicator(cloud, nats=hub.url, nats_options={**fast, "domain": "edge"}).start()
    try:
        assert _wait(lambda: _rows(cloud) == _rows(edge)), r_cloud.status()
        # Cut the link: the hub goes away; the edge keeps writing and publishing to its leaf.
        hub.stop()
        for i in range(2, 30):
            edge.execute("INSERT INTO readings VALUES (?, ?, 'cut off')", (i, 20.0 + i))
            edge.commit()
        edge.execute("UPDATE readings SET note = 'edited while cut off' WHERE id = 1")
        edge.commit()
        assert _wait(lambda: r_edge.status()["nats"]["published"] >= 31)    # in the leaf's stream
        assert len(_rows(cloud)) == 1
        # The link returns: the cloud node catches up from its durable consumer on the leaf's stream.
        hub.start()
        assert _wait(lambda: _rows(cloud) == _rows(edge), 60), r_cloud.status()
        assert len(_rows(cloud)) == 29 and _rows(cloud)[0][2] == "edited while cut off"
        # And the other direction: a cloud write reaches the edge.
        cloud.execute("INSERT INTO readings VALUES (100, 0.0, 'from the cloud')")
        cloud.commit()
        assert _wait(lambda: _rows(cloud) == _rows(edge), 60), r_edge.status()
        assert r_cloud.conflict_count() == r_edge.conflict_count() == 0
    finally:
        r_cloud.close()
        r_edge.close()
        edge.close()
        cloud.close()
