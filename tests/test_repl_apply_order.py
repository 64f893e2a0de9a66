"""Applying a channel that redelivers below its position (JetStream after a timed-out fetch)."""
from __future__ import annotations

import terndb
from terndb.engine.repl_apply import Applier
from terndb.engine.repl_feed import read_outgoing
from terndb.engine.repl_versions import TableSet, VersionStore


def _node(path):
    con = terndb.connect(str(path), durability="off")
    vs = VersionStore(con._db, TableSet("*"))
    vs.install()
    ap = Applier(con._db, TableSet("*"), vs)
    ap.ensure_conflict_table()
    return con, vs, ap


def test_late_redelivery_below_the_position_is_applied_once(tmp_path) -> None:
    src, src_vs, _ = _node(tmp_path / "src")
    dst, dst_vs, ap = _node(tmp_path / "dst")
    try:
        src.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        src.commit()
        for i in range(3):
            src.execute("INSERT INTO t VALUES (?, ?)", (i, f"v{i}"))
            src.commit()
        msgs = [o.data for o in read_outgoing(src._db, 0, TableSet("*"), skip_empty=True) if o.data]
        create, one, two, three = msgs
        ap.apply([(1, create), (2, one), (4, three)], "js", in_order=False)
        assert ap.position("js") == 4
        stats = ap.apply([(3, two), (5, three)], "js", in_order=False)     # late one, and a repeat
        assert (stats.applied, stats.duplicates) == (1, 1)
        assert dst.execute("SELECT * FROM t ORDER BY id").fetchall() == [(0, "v0"), (1, "v1"), (2, "v2")]
        # In order (the default), the same late item is a duplicate by position.
        dst2, dst2_vs, ap2 = _node(tmp_path / "dst2")
        try:
            ap2.apply([(1, create), (2, one), (4, three)], "js")
            assert ap2.apply([(3, two)], "js").duplicates == 1
        finally:
            dst2_vs.uninstall()
            dst2.close()
    finally:
        src_vs.uninstall()
        dst_vs.uninstall()
        src.close()
        dst.close()
